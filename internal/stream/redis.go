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
	if b.sharded() {
		return b.rdb.SPublish(ctx, b.cfg.Channel, payload).Err()
	}
	return b.rdb.Publish(ctx, b.cfg.Channel, payload).Err()
}

// sharded reports whether the fan-out uses sharded pub/sub (SPUBLISH and
// SSUBSCRIBE, Redis 7): on a Redis Cluster a message then travels only to
// the shard that owns the channel's slot instead of being broadcast over
// the cluster bus to every node, and the subscription follows that
// shard's master through a failover.
func (b *Broker) sharded() bool {
	_, ok := b.rdb.(*redis.ClusterClient)
	return ok
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
		b.log.Warn("stream: redis subscription lost, resubscribing", "error", err, "in", backoff)
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
	// On a Redis Cluster the subscription is sharded; a lost one may mean
	// a failover, so the slot map is asked for again and the next
	// subscription goes to the new master.
	var ps *redis.PubSub
	confirm, lost := "subscribe", "unsubscribe"
	if cc, ok := b.rdb.(*redis.ClusterClient); ok {
		defer cc.ReloadState(ctx)
		ps, confirm, lost = cc.SSubscribe(ctx), "ssubscribe", "sunsubscribe"
	} else {
		ps = b.rdb.Subscribe(ctx)
	}
	defer ps.Close()
	stop := context.AfterFunc(ctx, func() { _ = ps.Close() })
	defer stop()
	subscribe := ps.Subscribe
	if confirm == "ssubscribe" {
		subscribe = ps.SSubscribe
	}
	if err := subscribe(ctx, b.cfg.Channel); err != nil {
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
			switch {
			case m.Kind == confirm && m.Channel == b.cfg.Channel:
				subscribed = true
				b.wakeSequencer()
			case m.Kind == lost:
				// The shard gave the channel's slot away (a failover or
				// a resharding): subscribe again where it lives now.
				return subscribed, fmt.Errorf("redis ended the subscription to %s", m.Channel)
			}
		case *redis.Message:
			evs, err := decodeMessage(m.Payload)
			if err != nil {
				b.log.Warn("stream: ignoring a malformed redis message", "error", err)
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
