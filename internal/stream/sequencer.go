package stream

import (
	"cmp"
	"context"
	"slices"
	"time"

	"github.com/shop/bff/internal/order"
)

// fillPage bounds one read of the sequencer from Postgres.
const fillPage = 500

// sequence is the sequencer loop (see the package doc): it hands events to
// the streams in position order, each once, filling gaps from Postgres.
func (b *Broker) sequence(ctx context.Context) {
	for ctx.Err() == nil {
		if err := b.ensureHead(ctx); err == nil {
			break
		} else {
			b.log.Warn("stream: cannot read the stream head, retrying", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(b.cfg.RelayInterval):
		}
	}
	tick := time.NewTicker(b.cfg.RelayInterval)
	defer tick.Stop()
	var seen int64 // the database's head at the previous tick
	for {
		select {
		case <-ctx.Done():
			return
		case evs := <-b.in:
			// Take what else is queued, to sort and hand out in one go.
			for more := true; more && len(evs) < fillPage; {
				select {
				case e := <-b.in:
					evs = append(evs, e...)
				default:
					more = false
				}
			}
			b.accept(ctx, evs)
		case <-b.poke:
			if h, err := b.dbHead(ctx); err != nil {
				b.log.Warn("stream: catch-up failed", "err", err)
			} else {
				b.fillLogged(ctx, h)
			}
		case <-tick.C:
			h, err := b.dbHead(ctx)
			if err != nil {
				b.log.Debug("stream: reading the stream head failed", "err", err)
				continue
			}
			// Fill only what has been committed for a whole interval:
			// younger events are normally on their way through Redis.
			b.fillLogged(ctx, min(h, seen))
			seen = h
		}
	}
}

// accept hands out events that arrived from Publish, the relay or Redis
// (their screens were invalidated by whoever published them).
func (b *Broker) accept(ctx context.Context, evs []order.Event) {
	slices.SortFunc(evs, func(x, y order.Event) int { return cmp.Compare(x.Position, y.Position) })
	head, _ := b.currentHead()
	var run []*item
	for _, e := range evs {
		if e.Position <= head {
			continue // a duplicate, or already read from Postgres
		}
		if e.Position > head+1 {
			b.dispatch(run)
			run = nil
			// Positions below a committed one are committed: read them.
			if err := b.fill(ctx, e.Position-1); err != nil {
				b.log.Warn("stream: filling a gap from postgres failed; retrying on the next tick", "err", err)
				return
			}
		}
		run = append(run, newItem(e))
		head = e.Position
	}
	b.dispatch(run)
}

func (b *Broker) fillLogged(ctx context.Context, to int64) {
	if err := b.fill(ctx, to); err != nil {
		b.log.Warn("stream: catch-up from postgres failed", "err", err)
	}
}

// fill hands out the events after head up to position to, read from
// Postgres. Events nobody marked published get BeforePublish first.
func (b *Broker) fill(ctx context.Context, to int64) error {
	head, _ := b.currentHead()
	for head < to {
		evs, published, err := b.eventsBetween(ctx, head, to, fillPage)
		if err != nil {
			return err
		}
		if len(evs) == 0 { // no rows left up to to: nothing to hand out
			b.advance(to)
			return nil
		}
		var fresh []order.Event
		items := make([]*item, len(evs))
		for i, e := range evs {
			if !published[i] {
				fresh = append(fresh, e)
			}
			items[i] = newItem(e)
		}
		b.beforePublish(ctx, fresh)
		b.dispatch(items)
		head = evs[len(evs)-1].Position
	}
	return nil
}

// advance moves head to pos when it is behind.
func (b *Broker) advance(pos int64) {
	b.mu.Lock()
	b.head = max(b.head, pos)
	b.mu.Unlock()
}
