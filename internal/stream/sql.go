package stream

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/shop/bff/internal/order"
	"github.com/shop/bff/internal/postgres"
)

// The broker's own queries on the tables of internal/postgres (through
// Store.Pool): the outbox flag published_at is not part of the store's API.

// queryTimeout bounds one query of the broker.
const queryTimeout = 5 * time.Second

// eventCols and scanEvent read events as the store does.
const eventCols = postgres.EventColumns

var scanEvent = postgres.ScanEvent

// dbErr maps a database error to the domain's UNAVAILABLE (the only thing
// a caller of the broker can act on).
func dbErr(err error) error {
	if err == nil {
		return nil
	}
	var oe *order.Error
	if errors.As(err, &oe) {
		return err
	}
	return order.Unavailable("postgres", err)
}

func withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, queryTimeout)
}

// issuedSQL is the last position the database issued (drawn by a
// writer; committed, in flight, or a hole).
const issuedSQL = `SELECT coalesce(pg_sequence_last_value('order_events_position_seq'), 0)`

// dbHead is the last position the database issued.
func (b *Broker) dbHead(ctx context.Context) (int64, error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	var h int64
	err := b.store.Pool().QueryRow(ctx, issuedSQL).Scan(&h)
	return h, dbErr(err)
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

// check reads, in one round trip and in this order, the issued head, a
// transaction id of its own with the oldest running one (every position
// up to issued was drawn by a transaction below that id, since writers
// take their id before they draw), and up to limit committed events with
// after < position <= to (none when to <= after). The id costs no write:
// the batch's transaction commits without touching the WAL's flush.
func (b *Broker) check(ctx context.Context, after, to int64, limit int) (checkResult, error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	r := checkResult{readTo: max(after, to)}
	batch := &pgx.Batch{}
	batch.Queue(issuedSQL).QueryRow(func(row pgx.Row) error { return row.Scan(&r.issued) })
	batch.Queue(`SELECT pg_current_xact_id()::text::bigint, pg_snapshot_xmin(pg_current_snapshot())::text::bigint`).
		QueryRow(func(row pgx.Row) error { return row.Scan(&r.xid, &r.xmin) })
	if to > after {
		batch.Queue(`SELECT `+eventCols+`, published_at IS NOT NULL FROM order_events
			WHERE position > $1 AND position <= $2 ORDER BY position LIMIT $3`, after, to, limit).
			Query(func(rows pgx.Rows) error {
				for rows.Next() {
					var p bool
					e, err := scanEvent(rows, &p)
					if err != nil {
						return err
					}
					r.events, r.published = append(r.events, e), append(r.published, p)
				}
				return rows.Err()
			})
	}
	if err := b.store.Pool().SendBatch(ctx, batch).Close(); err != nil {
		return checkResult{}, dbErr(err)
	}
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
	_, err := b.store.Pool().Exec(ctx, `UPDATE stream_head SET position = $1 WHERE position < $1`, pos)
	return dbErr(err)
}

// storedHead is the stream head a broker recorded.
func (b *Broker) storedHead(ctx context.Context) (int64, error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	var h int64
	err := b.store.Pool().QueryRow(ctx, `SELECT position FROM stream_head`).Scan(&h)
	return h, dbErr(err)
}

// unpublishedUpTo returns the events up to position h not marked published.
func (b *Broker) unpublishedUpTo(ctx context.Context, h int64) ([]order.Event, error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	rows, err := b.store.Pool().Query(ctx, `SELECT `+eventCols+` FROM order_events
		WHERE published_at IS NULL AND position <= $1 ORDER BY position`, h)
	if err != nil {
		return nil, dbErr(err)
	}
	defer rows.Close()
	var out []order.Event
	for rows.Next() {
		e, err := scanEvent(rows)
		if err != nil {
			return nil, dbErr(err)
		}
		out = append(out, e)
	}
	return out, dbErr(rows.Err())
}

// eventsBetween returns up to limit events with after < position <= to, in
// position order, and for each whether it is marked published.
func (b *Broker) eventsBetween(ctx context.Context, after, to int64, limit int) ([]order.Event, []bool, error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	rows, err := b.store.Pool().Query(ctx, `SELECT `+eventCols+`, published_at IS NOT NULL FROM order_events
		WHERE position > $1 AND position <= $2 ORDER BY position LIMIT $3`, after, to, limit)
	if err != nil {
		return nil, nil, dbErr(err)
	}
	defer rows.Close()
	var evs []order.Event
	var pub []bool
	for rows.Next() {
		var p bool
		e, err := scanEvent(rows, &p)
		if err != nil {
			return nil, nil, dbErr(err)
		}
		evs, pub = append(evs, e), append(pub, p)
	}
	return evs, pub, dbErr(rows.Err())
}

// markPublished sets published_at of the events at positions.
func (b *Broker) markPublished(ctx context.Context, pos []int64) error {
	if len(pos) == 0 {
		return nil
	}
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	_, err := b.store.Pool().Exec(ctx, `UPDATE order_events SET published_at = now()
		WHERE position = ANY($1::bigint[]) AND published_at IS NULL`, pos)
	return dbErr(err)
}

// Reasons of an `event: reset`.
const (
	resetUnknown = "unknown"
	resetExpired = "expired"
)

// checkResume validates the resume point id for a stream of scope (and
// orderID): it returns the position to resume after, or the reason of a
// reset. A valid id is a position the database issued ("0" stands for
// "before the viewer's first event", the lastEventId of a screen read
// before any event) from which the replay is still exact: no event after
// it was pruned (it is not below the pruning horizon, which is itself a
// valid resume point), and the first event of the stream after it is
// inside the replay window, or there is none yet. So a screen read's
// lastEventId stays a valid resume point however old its event is, as
// long as nothing newer has aged out of the window.
// Time is compared on the database's clock, the clock of the events.
func (b *Broker) checkResume(ctx context.Context, sc postgres.Scope, orderID, id string) (int64, string, error) {
	pos, err := strconv.ParseInt(id, 10, 64)
	if err != nil || pos < 0 || strconv.FormatInt(pos, 10) != id {
		return 0, resetUnknown, nil
	}
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	var cust, oid *string
	if sc.CustomerID != "" {
		cust = &sc.CustomerID
	}
	if orderID != "" {
		oid = &orderID
	}
	var head, pruned int64
	var issued bool
	var nextFresh *bool
	err = b.store.Pool().QueryRow(ctx, `SELECT (`+issuedSQL+`), `+postgres.PrunedThroughSQL+`,
		$1::bigint = 0 OR EXISTS (SELECT 1 FROM order_events WHERE position = $1::bigint),
		(SELECT at > now() - $4::interval FROM order_events
			WHERE position > $1::bigint AND ($2::uuid IS NULL OR customer_id = $2::uuid) AND ($3::uuid IS NULL OR order_id = $3::uuid)
			ORDER BY position LIMIT 1)`, pos, cust, oid, b.cfg.ReplayWindow).Scan(&head, &pruned, &issued, &nextFresh)
	if err != nil {
		return 0, "", dbErr(err)
	}
	switch {
	case pos > head:
		return 0, resetUnknown, nil // never issued
	case pos < pruned:
		return 0, resetExpired, nil // events after it may have been pruned
	case pos != pruned && !issued:
		return 0, resetExpired, nil // issued, but no longer kept
	case nextFresh != nil && !*nextFresh:
		return 0, resetExpired, nil // events after it have aged out of the window
	}
	return pos, "", nil
}
