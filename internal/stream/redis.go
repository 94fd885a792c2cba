package stream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/shop/bff/internal/order"
)

// wireEvent is an event in a Redis message: the public fields plus what
// the broker routes and orders by.
type wireEvent struct {
	Position    int64       `json:"p"`
	CustomerSeq int64       `json:"s"`
	CustomerID  string      `json:"c"`
	TraceParent string      `json:"t,omitempty"`
	Event       order.Event `json:"e"`
}

// wireMessage is one Redis message: the events of one publication.
type wireMessage struct {
	Events []wireEvent `json:"events"`
}

func encodeMessage(events []order.Event) ([]byte, error) {
	m := wireMessage{Events: make([]wireEvent, len(events))}
	for i, e := range events {
		m.Events[i] = wireEvent{Position: e.Position, CustomerSeq: e.CustomerSeq, CustomerID: e.CustomerID,
			TraceParent: e.TraceParent, Event: e}
	}
	return json.Marshal(m)
}

func decodeMessage(payload string) ([]order.Event, error) {
	var m wireMessage
	if err := json.Unmarshal([]byte(payload), &m); err != nil {
		return nil, err
	}
	out := make([]order.Event, 0, len(m.Events))
	for _, w := range m.Events {
		e := w.Event
		e.Position, e.CustomerSeq, e.CustomerID, e.TraceParent = w.Position, w.CustomerSeq, w.CustomerID, w.TraceParent
		if e.Position <= 0 || e.OrderID == "" || e.CustomerID == "" {
			return nil, fmt.Errorf("malformed event at position %d", e.Position)
		}
		out = append(out, e)
	}
	return out, nil
}

func (b *Broker) publishRedis(ctx context.Context, events []order.Event) error {
	payload, err := encodeMessage(events)
	if err != nil {
		return err
	}
	return b.rdb.Publish(ctx, b.cfg.Channel, payload).Err()
}

// redisLoop keeps one subscription to the channel, resubscribing with
// backoff whenever Redis fails or restarts. Every (re)subscription asks the
// sequencer for a catch-up from Postgres, which brings what was published
// while this instance was not subscribed.
func (b *Broker) redisLoop(ctx context.Context) {
	const minBackoff, maxBackoff = 50 * time.Millisecond, 2 * time.Second
	backoff := minBackoff
	for ctx.Err() == nil {
		subscribed, err := b.redisSession(ctx)
		if ctx.Err() != nil {
			return
		}
		if subscribed {
			backoff = minBackoff
		}
		b.log.Warn("stream: redis subscription lost, resubscribing", "err", err, "in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// redisSession subscribes once and relays messages to the sequencer until
// the subscription fails. It reports whether the subscription was
// confirmed.
func (b *Broker) redisSession(ctx context.Context) (bool, error) {
	ps := b.rdb.Subscribe(ctx)
	defer ps.Close()
	stop := context.AfterFunc(ctx, func() { _ = ps.Close() })
	defer stop()
	if err := ps.Subscribe(ctx, b.cfg.Channel); err != nil {
		return false, err
	}
	subscribed := false
	pinged := false
	idle := max(b.cfg.Heartbeat, 5*time.Second)
	for {
		msg, err := ps.ReceiveTimeout(ctx, idle)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() && !pinged {
				// Quiet channel: make sure the connection is alive.
				if err := ps.Ping(ctx); err != nil {
					return subscribed, err
				}
				pinged = true
				continue
			}
			return subscribed, err
		}
		pinged = false
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind == "subscribe" && m.Channel == b.cfg.Channel {
				subscribed = true
				b.wakeSequencer()
			}
		case *redis.Message:
			evs, err := decodeMessage(m.Payload)
			if err != nil {
				b.log.Warn("stream: ignoring a malformed redis message", "err", err)
				continue
			}
			select {
			case b.in <- evs:
			case <-ctx.Done():
				return subscribed, ctx.Err()
			}
		case *redis.Pong:
		}
	}
}
