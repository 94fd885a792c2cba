package stream

import (
	"context"
	"strconv"
	"time"

	"github.com/shop/bff/internal/order"
	"github.com/shop/bff/internal/postgres"
)

// The broker's reads and writes of the event record, through the store
// (the SQL lives in internal/postgres), each bounded by queryTimeout.

// queryTimeout bounds one query of the broker.
const queryTimeout = 5 * time.Second

func withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, queryTimeout)
}

// dbHead is the last position the database issued.
func (b *Broker) dbHead(ctx context.Context) (int64, error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	return b.store.IssuedPosition(ctx)
}

// checkResult is what one check of the sequencer learnt.
type checkResult struct {
	// issued was read before the check took the transaction id xid (so
	// every position up to issued was drawn by a transaction below xid);
	// xmin is the oldest transaction id still running at the check.
	issued, xmin, xid int64
	// events are the committed events read after the snapshot, in
	// position order, with whether each is marked published.
	events    []order.Event
	published []bool
	// readTo is how far the read covered; more when the page was full.
	readTo int64
	more   bool
}

// check reads, in one round trip, the issued head, a transaction id with
// the oldest running one, and up to limit committed events with after <
// position <= to (see postgres.Store.CheckSequence).
func (b *Broker) check(ctx context.Context, after, to int64, limit int) (checkResult, error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	sc, err := b.store.CheckSequence(ctx, after, to, limit)
	if err != nil {
		return checkResult{}, err
	}
	r := checkResult{issued: sc.Issued, xmin: sc.Xmin, xid: sc.Xid, events: sc.Events, published: sc.Published,
		readTo: max(after, to)}
	if limit > 0 && len(r.events) == limit {
		r.readTo, r.more = r.events[len(r.events)-1].Position, true
	}
	return r, nil
}

// recordHead records pos, the last event position handed out here, as the
// stream head (the resume point of a staff screen), unless a broker
// recorded a later one.
func (b *Broker) recordHead(ctx context.Context, pos int64) error {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	return b.store.RecordStreamHead(ctx, pos)
}

// storedHead is the stream head a broker recorded.
func (b *Broker) storedHead(ctx context.Context) (int64, error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	return b.store.StreamHead(ctx)
}

// unpublishedUpTo returns the events up to position h not marked published.
func (b *Broker) unpublishedUpTo(ctx context.Context, h int64) ([]order.Event, error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	return b.store.UnpublishedUpTo(ctx, h)
}

// markPublished sets published_at of the events at positions.
func (b *Broker) markPublished(ctx context.Context, pos []int64) error {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	return b.store.MarkPublished(ctx, pos)
}

// Reasons of an `event: reset`.
const (
	resetUnknown = "unknown"
	resetExpired = "expired"
	// resetSessionExpired ends a stream whose session token expired.
	resetSessionExpired = "session_expired"
)

// checkResume validates the resume point id for a stream of scope (and
// orderID): it returns the position to resume after, or the reason of a
// reset. A valid id is the position of an event in the viewer's scope (its
// own events; any for STAFF), the pruning horizon, or "0" ("before the
// viewer's first event", the lastEventId of a screen read before any
// event), from which the replay is still exact: no event after it was
// pruned (it is not below the pruning horizon), and the first event of the
// stream after it is inside the replay window, or there is none yet. So a
// screen read's lastEventId stays a valid resume point however old its
// event is, as long as nothing newer has aged out of the window. Any other
// id, whether another customer's or never issued, is "unknown" alike: a
// customer cannot learn the shop's activity from the answers. Time is
// compared on the database's clock, the clock of the events.
func (b *Broker) checkResume(ctx context.Context, sc postgres.Scope, orderID, id string) (int64, string, error) {
	pos, err := strconv.ParseInt(id, 10, 64)
	if err != nil || pos < 0 || strconv.FormatInt(pos, 10) != id {
		return 0, resetUnknown, nil
	}
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	st, err := b.store.ResumeStateOf(ctx, sc, orderID, pos, b.cfg.ReplayWindow)
	if err != nil {
		return 0, "", err
	}
	head, pruned, known, nextFresh := st.Issued, st.PrunedThrough, st.Kept, st.NextFresh
	switch {
	case pos > head:
		return 0, resetUnknown, nil // never issued
	case pos < pruned:
		return 0, resetExpired, nil // events after it may have been pruned
	case pos != pruned && !known:
		return 0, resetUnknown, nil // not the viewer's (or gone): indistinguishable from never issued
	case nextFresh != nil && !*nextFresh:
		return 0, resetExpired, nil // events after it have aged out of the window
	}
	return pos, "", nil
}
