package postgres

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/shop/bff/internal/order"
)

// The event stream's reads and the outbox: what the broker, its sequencer
// and its relay ask of order_events and stream_head.

// issuedSQL is the last position the database issued (drawn by a writer;
// committed, in flight, or a hole).
const issuedSQL = `SELECT coalesce(pg_sequence_last_value('order_events_position_seq'), 0)`

// IssuedPosition is the last event position the database issued (drawn
// by a writer; committed, in flight, or a hole).
func (s *Store) IssuedPosition(ctx context.Context) (int64, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	var h int64
	err := s.pool.QueryRow(ctx, issuedSQL).Scan(&h)
	return h, interpretError(err)
}

// SequenceCheck is what one check of the sequencer learnt.
type SequenceCheck struct {
	// Issued was read before the check took the transaction id Xid (so
	// every position up to Issued was drawn by a transaction below Xid);
	// Xmin is the oldest transaction id still running at the check.
	Issued, Xmin, Xid int64
	// Events are the committed events read after the snapshot, in
	// position order, with whether each is marked published.
	Events    []order.Event
	Published []bool
}

// CheckSequence reads, in one round trip and in this order, the issued
// head, a transaction id of its own with the oldest running one (every
// position up to the issued head was drawn by a transaction below that
// id, since writers take their id before they draw), and up to limit
// committed events with after < position <= to (none when to <= after).
// The id costs no write: the batch's transaction commits without touching
// the WAL's flush.
func (s *Store) CheckSequence(ctx context.Context, after, to int64, limit int) (SequenceCheck, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	var r SequenceCheck
	batch := &pgx.Batch{}
	batch.Queue(issuedSQL).QueryRow(func(row pgx.Row) error { return row.Scan(&r.Issued) })
	batch.Queue(`SELECT pg_current_xact_id()::text::bigint, pg_snapshot_xmin(pg_current_snapshot())::text::bigint`).
		QueryRow(func(row pgx.Row) error { return row.Scan(&r.Xid, &r.Xmin) })
	if to > after {
		batch.Queue(`SELECT `+eventCols+`, published_at IS NOT NULL FROM order_events
			WHERE position > $1 AND position <= $2 ORDER BY position LIMIT $3`, after, to, limit).
			Query(func(rows pgx.Rows) error {
				for rows.Next() {
					var p bool
					e, err := scanEventRow(rows, &p)
					if err != nil {
						return err
					}
					r.Events, r.Published = append(r.Events, e), append(r.Published, p)
				}
				return rows.Err()
			})
	}
	if err := s.pool.SendBatch(ctx, batch).Close(); err != nil {
		return SequenceCheck{}, interpretError(err)
	}
	return r, nil
}

// RecordStreamHead records pos, the last event position a broker handed
// out, as the stream head (the resume point of a staff screen), unless a
// broker recorded a later one.
func (s *Store) RecordStreamHead(ctx context.Context, pos int64) error {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	_, err := s.pool.Exec(ctx, `UPDATE stream_head SET position = $1 WHERE position < $1`, pos)
	return interpretError(err)
}

// StreamHead is the stream head a broker recorded.
func (s *Store) StreamHead(ctx context.Context) (int64, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	var h int64
	err := s.pool.QueryRow(ctx, `SELECT position FROM stream_head`).Scan(&h)
	return h, interpretError(err)
}

// UnpublishedUpTo returns the events up to position h not marked
// published, in position order.
func (s *Store) UnpublishedUpTo(ctx context.Context, h int64) ([]order.Event, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	return collectEvents(s.pool.Query(ctx, `SELECT `+eventCols+` FROM order_events
		WHERE published_at IS NULL AND position <= $1 ORDER BY position`, h))
}

// MarkPublished sets published_at of the events at positions.
func (s *Store) MarkPublished(ctx context.Context, positions []int64) error {
	if len(positions) == 0 {
		return nil
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	_, err := s.pool.Exec(ctx, `UPDATE order_events SET published_at = now()
		WHERE position = ANY($1::bigint[]) AND published_at IS NULL`, positions)
	return interpretError(err)
}

// ResumeState is what decides whether a stream may resume after a
// position (see ResumeStateOf).
type ResumeState struct {
	// Issued is the last position the database issued.
	Issued int64
	// PrunedThrough is the pruning horizon: no event after it was pruned.
	PrunedThrough int64
	// Kept reports that the position is 0 or the position of an event of
	// the scope still stored (another customer's event is not Kept, so a
	// customer cannot tell it from one never issued).
	Kept bool
	// NextFresh is whether the first event of the stream after the
	// position is inside the replay window (nil when there is none).
	NextFresh *bool
}

// ResumeStateOf reads, in one query, what decides whether a stream of
// scope (and of orderID, when set) may resume after position pos with a
// replay window of window. Time is compared on the database's clock, the
// clock of the events.
func (s *Store) ResumeStateOf(ctx context.Context, sc Scope, orderID string, pos int64, window time.Duration) (ResumeState, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	var oid *string
	if orderID != "" {
		oid = &orderID
	}
	var r ResumeState
	err := s.pool.QueryRow(ctx, `SELECT (`+issuedSQL+`), `+PrunedThroughSQL+`,
		$1::bigint = 0 OR EXISTS (SELECT 1 FROM order_events WHERE position = $1::bigint AND ($2::uuid IS NULL OR customer_id = $2::uuid)),
		(SELECT at > now() - $4::interval FROM order_events
			WHERE position > $1::bigint AND ($2::uuid IS NULL OR customer_id = $2::uuid) AND ($3::uuid IS NULL OR order_id = $3::uuid)
			ORDER BY position LIMIT 1)`, pos, scopeArg(sc), oid, window).Scan(&r.Issued, &r.PrunedThrough, &r.Kept, &r.NextFresh)
	return r, interpretError(err)
}

// RelayUnpublished takes up to limit events still unpublished grace after
// they were written, in position order, locking their rows (rows locked by
// another instance's relay, or by a publisher marking them, are skipped),
// calls publish with them, marks them published and commits. It returns
// the events relayed (none when nothing was due).
func (s *Store) RelayUnpublished(ctx context.Context, grace time.Duration, limit int, publish func(context.Context, []order.Event)) ([]order.Event, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return nil, interpretError(err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	evs, err := collectEvents(tx.Query(ctx, `SELECT `+eventCols+` FROM order_events
		WHERE published_at IS NULL AND at < now() - $1::interval
		ORDER BY position LIMIT $2 FOR UPDATE SKIP LOCKED`, grace, limit))
	if err != nil || len(evs) == 0 {
		return nil, err
	}
	publish(ctx, evs)
	pos := make([]int64, len(evs))
	for i, e := range evs {
		pos[i] = e.Position
	}
	if _, err := tx.Exec(ctx, `UPDATE order_events SET published_at = now() WHERE position = ANY($1::bigint[])`, pos); err != nil {
		return nil, interpretError(err)
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, interpretError(err)
	}
	return evs, nil
}
