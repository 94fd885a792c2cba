package stream

import (
	"context"
	"errors"
	"time"

	"github.com/shop/bff/internal/order"
	"github.com/shop/bff/internal/postgres"
)

const (
	// replayPage is the number of events one replay query reads.
	replayPage = 200
	// committedPage is the number of positions one read of committedAfter
	// returns.
	committedPage = 1000
	// maxReplayPasses bounds how often a stream that overflows while it
	// replays starts another pass before it counts as too slow.
	maxReplayPasses = 8
)

// errDropped ends a stream the broker dropped.
var errDropped = errors.New("stream: dropped by the broker")

// cursor is the state of one open stream: what it sees and how far it got.
type cursor struct {
	s       *sub
	scope   postgres.Scope
	orderID string
	// last is the position after which the stream delivers; until is the
	// head at registration (replay covers (last, until], live the rest).
	last, until int64
	// before are positions after until, in order, of events committed
	// before a stream without a resume point opened: not this stream's,
	// although the broker had not handed them out yet.
	before []int64
	// reset is the reason of an `event: reset`, "" for none.
	reset string
	// expires is when the viewer's session ends (zero: never); the stream
	// then ends with `event: reset` (reason session_expired).
	expires time.Time
	// release frees the stream's place in the caps (nil: none taken).
	release func()
}

// open authorizes a stream of viewer over one order (orderID) or all the
// viewer's orders (""), validates the resume point and registers the
// stream (a door that writes to a connection then sets how the broker
// unblocks its writes, sub.setKick). With strict, an unknown or expired
// resume point is a BAD_USER_INPUT error (field "after") instead of a
// reset.
//
// Errors: UNAUTHENTICATED without a viewer, NOT_FOUND for an order that
// does not exist or that the viewer may not see, UNAVAILABLE when
// Postgres fails or the broker shuts down.
func (b *Broker) open(ctx context.Context, viewer *order.User, orderID, resume string, strict bool) (*cursor, error) {
	if viewer == nil {
		return nil, order.Unauthenticated()
	}
	if b.isClosing() {
		return nil, errClosing
	}
	c := &cursor{scope: postgres.ScopeFor(viewer), orderID: orderID}
	if orderID != "" {
		if !postgres.IsUUID(orderID) {
			return nil, order.NotFound("order")
		}
		m, err := b.store.OrdersByIDs(ctx, []string{orderID})
		if err != nil {
			return nil, err
		}
		o, ok := m[orderID]
		if !ok || !order.CanSee(viewer, o) {
			return nil, order.NotFound("order")
		}
	}
	pos := int64(-1) // no resume point: live only
	if resume != "" {
		p, reason, err := b.checkResume(ctx, c.scope, orderID, resume)
		if err != nil {
			return nil, err
		}
		if reason != "" {
			b.cfg.Metrics.Reset(reason)
		}
		if reason != "" && strict {
			return nil, order.BadInput("after", order.ConstraintUnknown,
				"after is not an event id of the replay window: refetch the screen and resubscribe with its lastEventId").
				With("reason", reason)
		}
		c.reset = reason
		if reason == "" {
			pos = p
		}
	}
	c.s = newSub(c.scope.CustomerID, orderID, b.cfg.Buffer)
	h, err := b.register(ctx, c.s)
	if err != nil {
		return nil, err
	}
	c.until = h
	c.last = h
	if pos >= 0 {
		c.last = pos
	} else if c.before, err = b.committedAfter(ctx, c, h); err != nil {
		b.unregister(c.s)
		return nil, err
	}
	return c, nil
}

// committedAfter returns the positions after h of the events of c's
// scope committed by now. A stream without a resume point starts at its
// broker's head, which trails the commits by the time an event takes to
// reach the broker (longer right after the broker starts): those events
// were committed before the stream opened, so it skips them.
func (b *Broker) committedAfter(ctx context.Context, c *cursor, h int64) ([]int64, error) {
	var out []int64
	for {
		page, err := b.store.CommittedPositionsAfter(ctx, c.scope, c.orderID, h, committedPage)
		if err != nil {
			return nil, err
		}
		out = append(out, page...)
		if len(page) < committedPage {
			return out, nil
		}
		h = page[len(page)-1]
	}
}

// fresh reports whether the event at pos is still to be delivered: after
// the last one delivered, and not committed before a live-only stream
// opened. Events come in position order.
func (c *cursor) fresh(pos int64) bool {
	if pos <= c.last {
		return false
	}
	for len(c.before) > 0 && c.before[0] < pos {
		c.before = c.before[1:]
	}
	if len(c.before) > 0 && c.before[0] == pos {
		c.before = c.before[1:]
		c.last = pos
		return false
	}
	return true
}

func (b *Broker) isClosing() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.closing
}

// replay delivers from Postgres the events of the stream's scope in
// (last, until] through emit (flush, when set, after every page), then
// switches the stream to live. A stream that overflowed meanwhile replays
// again up to the new head (at most maxReplayPasses times).
func (b *Broker) replay(ctx context.Context, c *cursor, emit func(order.Event) error, flush func() error) error {
	for pass := 0; ; pass++ {
		if pass >= maxReplayPasses {
			return errDropped
		}
		if c.last < c.until {
			if pass == 0 {
				b.cfg.Metrics.Replayed(ReplayResume)
			} else {
				b.cfg.Metrics.Replayed(ReplayOverflow)
			}
		}
		for c.last < c.until {
			select {
			case <-c.s.gone:
				return errDropped
			default:
			}
			page, err := b.store.EventsAfter(ctx, c.scope, c.orderID, c.last, replayPage)
			if err != nil {
				return err
			}
			done := len(page) < replayPage
			for _, e := range page {
				if e.Position > c.until {
					done = true
					break
				}
				if !c.fresh(e.Position) {
					continue
				}
				if err := emit(e); err != nil {
					return err
				}
				c.last = e.Position
			}
			if flush != nil {
				if err := flush(); err != nil {
					return err
				}
			}
			if done {
				break
			}
		}
		c.last = max(c.last, c.until)
		until, live := b.endReplay(c.s)
		if live {
			return nil
		}
		c.until = until
	}
}

// Subscribe opens a stream for the GraphQL subscription orderEvents: the
// events of order orderID, or of all the viewer's orders when orderID is
// "" (every order for STAFF), after the event id after ("" for live
// events only), with the same ordering, authorization and ids as GET
// /events. The channel is closed when ctx ends, when the subscriber does
// not keep up (its buffer overflows; it resubscribes with the id of the
// last event it received) and when the broker shuts down.
//
// Errors, before any event: UNAUTHENTICATED without a viewer; NOT_FOUND
// for an order that does not exist or is another customer's;
// BAD_USER_INPUT (field "after", extension reason "unknown" or "expired")
// for an after that is not an event id inside the replay window, where
// GET /events would send `event: reset` (the client refetches its screen
// and resubscribes with the screen's lastEventId); UNAVAILABLE when
// Postgres is down or the broker shuts down.
func (b *Broker) Subscribe(ctx context.Context, viewer *order.User, orderID, after string) (<-chan order.Event, error) {
	c, err := b.open(ctx, viewer, orderID, after, true)
	if err != nil {
		return nil, err
	}
	out := make(chan order.Event)
	go func() {
		defer close(out)
		defer b.unregister(c.s)
		emit := func(e order.Event) error {
			select {
			case out <- e:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			case <-c.s.gone:
				return errDropped
			}
		}
		if err := b.replay(ctx, c, emit, nil); err != nil {
			return
		}
		for {
			select {
			case <-c.s.ready:
				for _, it := range c.s.take() {
					if !c.fresh(it.ev.Position) {
						continue
					}
					if err := emit(it.ev); err != nil {
						return
					}
					b.cfg.Metrics.Delivered(streamKind(c.orderID), lag(it.ev.At))
					c.last = it.ev.Position
				}
			case <-c.s.gone:
				return
			case <-ctx.Done():
				return
			}
		}
	}()
	return out, nil
}
