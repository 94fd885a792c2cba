package stream

import (
	"context"
	"math"
	"time"

	"github.com/shop/bff/internal/order"
)

const (
	// fillPage bounds one read of the sequencer from Postgres.
	fillPage = 500
	// maxCandidates bounds the horizon candidates the sequencer keeps
	// while a long transaction holds the database's xmin back.
	maxCandidates = 256
	// gapWait is how long the sequencer waits for a missing position to
	// arrive by itself (from Publish or Redis) before it asks Postgres.
	gapWait = 2 * time.Millisecond
)

// candidate is a possible horizon: every position up to issued was drawn
// by a transaction whose id is below xid, so once the database's oldest
// running transaction id reaches xid, every position up to issued is
// final (committed, or a hole that stays empty).
type candidate struct{ issued, xid int64 }

// seqState is the sequencer goroutine's own state.
type seqState struct {
	// pending are events after head+1 that wait for the positions before
	// them.
	pending map[int64]order.Event
	maxPend int64
	// cands are horizon candidates not final yet; final is the highest
	// final horizon known.
	cands []candidate
	final int64
	// issued is the last position the database issued at the latest check.
	issued int64
}

// sequence is the sequencer loop (see the package doc): it hands events to
// the streams in position order, each once, filling gaps from Postgres and
// skipping a missing position only once it is known final.
func (b *Broker) sequence(ctx context.Context) {
	for ctx.Err() == nil {
		if err := b.ensureHead(ctx); err == nil {
			break
		} else {
			b.log.Warn("stream: cannot read the stream head, retrying", "error", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(b.cfg.RelayInterval):
		}
	}
	tick := time.NewTicker(b.cfg.RelayInterval)
	defer tick.Stop()
	gap := time.NewTimer(time.Hour)
	gap.Stop()
	gapArmed, gapDelay := false, gapWait
	var target int64 // the issued head at the previous tick
	var recorded int64
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
			b.accept(evs)
		case <-b.poke:
			b.catchUp(ctx, math.MaxInt64)
		case <-gap.C:
			gapArmed = false
			b.catchUp(ctx, b.seq.maxPend)
			gapDelay = min(2*gapDelay, b.cfg.RelayInterval)
		case <-tick.C:
			// Fill only what was issued a whole interval ago: younger
			// events are normally on their way through Redis.
			b.catchUp(ctx, target)
			target = b.seq.issued
			if last := b.lastHanded(); last > recorded {
				if err := b.recordHead(ctx, last); err != nil {
					b.log.Debug("stream: recording the stream head failed", "error", err)
				} else {
					recorded = last
				}
			}
		}
		switch {
		case len(b.seq.pending) == 0:
			if gapArmed {
				gap.Stop()
				gapArmed = false
			}
			gapDelay = gapWait
		case !gapArmed:
			gap.Reset(gapDelay)
			gapArmed = true
		}
	}
}

// takeQueued accepts the events already queued by Publish, the relay or
// Redis before a catch-up reads Postgres, so that the catch-up does not
// take them for events nobody published.
func (b *Broker) takeQueued() {
	for {
		select {
		case evs := <-b.in:
			b.accept(evs)
		default:
			return
		}
	}
}

// accept takes events that arrived from Publish, the relay or Redis
// (their screens were invalidated by whoever published them): committed,
// so they are handed out as soon as every position before them is.
func (b *Broker) accept(evs []order.Event) {
	head, _ := b.currentHead()
	for _, e := range evs {
		b.hold(e, head)
	}
	b.drain(0)
}

// hold keeps e until the positions before it are handed out. Of two
// copies of a held event, the one that carries the trace context of the
// request that committed it (from Publish or Redis, not from Postgres) is
// kept: its deliveries are spans of that request's trace.
func (b *Broker) hold(e order.Event, head int64) {
	if e.Position <= head {
		return // a duplicate, or already read from Postgres
	}
	if held, ok := b.seq.pending[e.Position]; ok && (held.TraceParent != "" || e.TraceParent == "") {
		return
	}
	if b.seq.pending == nil {
		b.seq.pending = map[int64]order.Event{}
	}
	b.seq.pending[e.Position] = e
	b.seq.maxPend = max(b.seq.maxPend, e.Position)
}

// drain hands out the held events that follow head without a gap. A
// missing position up to holesTo is a hole (known final and known absent)
// and is skipped.
func (b *Broker) drain(holesTo int64) {
	head, _ := b.currentHead()
	var run []*item
	for len(b.seq.pending) > 0 || head < holesTo {
		next := head + 1
		if e, ok := b.seq.pending[next]; ok {
			delete(b.seq.pending, next)
			run = append(run, newItem(e))
			head = next
			continue
		}
		if next > holesTo {
			break
		}
		// A hole: hand out what precedes it, then step over it.
		b.dispatch(run)
		run = nil
		if len(b.seq.pending) == 0 {
			head = holesTo
		} else {
			head = min(holesTo, b.lowestPending()-1)
		}
		b.advance(head)
	}
	b.dispatch(run)
	if len(b.seq.pending) == 0 {
		b.seq.maxPend = 0
	}
}

func (b *Broker) lowestPending() int64 {
	low := int64(math.MaxInt64)
	for p := range b.seq.pending {
		low = min(low, p)
	}
	return low
}

// catchUp reads from Postgres the committed events after head up to
// position to, learns which positions are final, and hands out what it
// can. Events nobody marked published get BeforePublish first. The events
// already queued by Publish, the relay or Redis are taken first.
func (b *Broker) catchUp(ctx context.Context, to int64) {
	b.takeQueued()
	after, _ := b.currentHead()
	if len(b.seq.pending) > 0 {
		to = max(to, b.seq.maxPend)
	}
	for {
		r, err := b.check(ctx, after, to, fillPage)
		if err != nil {
			b.log.Warn("stream: catch-up from postgres failed", "error", err)
			return
		}
		b.sequencerChecks.Add(1)
		b.learn(r)
		head, _ := b.currentHead()
		var fresh []order.Event
		for i, e := range r.events {
			// An event already held came from Publish, the relay or Redis:
			// its publisher invalidated its screens, and doing it again
			// would make the screens loaded since then miss once more.
			if _, held := b.seq.pending[e.Position]; !held && !r.published[i] && e.Position > head {
				fresh = append(fresh, e)
			}
			b.hold(e, head)
		}
		b.beforePublish(ctx, fresh)
		// The read came after the horizon was learnt: a position up to
		// both that it did not return is final and empty.
		b.drain(min(b.seq.final, r.readTo))
		if !r.more {
			return
		}
		after = r.readTo
	}
}

// learn records the issued head and horizon of a check and moves the
// final horizon up to every candidate the database's xmin has passed.
func (b *Broker) learn(r checkResult) {
	b.seq.issued = max(b.seq.issued, r.issued)
	if len(b.seq.cands) < maxCandidates {
		b.seq.cands = append(b.seq.cands, candidate{issued: r.issued, xid: r.xid})
	}
	keep := b.seq.cands[:0]
	for _, c := range b.seq.cands {
		if c.xid <= r.xmin {
			b.seq.final = max(b.seq.final, c.issued)
		} else {
			keep = append(keep, c)
		}
	}
	b.seq.cands = keep
}

// lastHanded is the position of the last event handed to the streams.
func (b *Broker) lastHanded() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.lastEvent
}

// advance moves head to pos when it is behind.
func (b *Broker) advance(pos int64) {
	b.mu.Lock()
	b.head = max(b.head, pos)
	b.mu.Unlock()
}
