package postgres

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
)

// PrunedThroughSQL is a scalar subquery for the pruning horizon W: no
// event after position W was pruned (pruning deletes a prefix of the
// positions, never beyond the recorded stream head), and every position up
// to W is final (committed or empty), so W is an exact resume point. It is
// the position before the oldest event kept, or the recorded stream head
// when that is lower or no event is kept.
const PrunedThroughSQL = `(SELECT CASE WHEN l.low IS NULL THEN h.position ELSE least(l.low - 1, h.position) END
	FROM stream_head h, (SELECT min(position) AS low FROM order_events) l)`

// PruneEvents deletes up to batch of the oldest events, in position
// order, among those up to the newest event older than window and never
// past the recorded stream head (the last position a broker handed out),
// so the events kept are always every event after a position. It returns
// how many it deleted; call it again while that is batch.
func (s *Store) PruneEvents(ctx context.Context, window time.Duration, batch int) (int64, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	tag, err := s.pool.Exec(ctx, `DELETE FROM order_events WHERE position IN (
		SELECT position FROM order_events WHERE position <= least(
			(SELECT position FROM stream_head),
			coalesce((SELECT position FROM order_events WHERE at < now() - $1::interval ORDER BY at DESC LIMIT 1), 0))
		ORDER BY position LIMIT $2)`, window, batch)
	return tag.RowsAffected(), interpretError(err)
}

// VacuumEvents vacuums the events table when the server's autovacuum is
// off, and reports whether it did. The table is a queue: every event is
// written, marked published (a second row version) and pruned within the
// replay window, so without vacuuming its dead rows pile up, and the
// index scans over its ends (the pruning horizon, a customer's newest
// event), run by every screen load, walk them all. With autovacuum on,
// the table's own thresholds (migration 00008) keep it clean. A role that
// does not own the table gets a warning from Postgres, not an error. It
// never truncates the table: giving back its empty tail would take a lock
// that stops every reader and writer of the table, for up to five seconds
// when they keep it busy.
func (s *Store) VacuumEvents(ctx context.Context) (bool, error) {
	return s.vacuumQueue(ctx, "order_events")
}

// vacuumQueue vacuums table, a queue of short-lived rows (see
// VacuumEvents), when the server's autovacuum is off, and reports whether
// it did.
func (s *Store) vacuumQueue(ctx context.Context, table string) (bool, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	var on bool
	if err := s.pool.QueryRow(ctx, `SELECT current_setting('autovacuum')::bool`).Scan(&on); err != nil || on {
		return false, interpretError(err)
	}
	_, err := s.pool.Exec(ctx, `VACUUM (SKIP_LOCKED, TRUNCATE false) `+pgx.Identifier{table}.Sanitize())
	return err == nil, interpretError(err)
}

// CompactOrderTotals folds the rows of the running order totals (migration
// 00009) into one per status and currency, and returns how many rows it
// removed. The rows a write adds while it runs are kept as they are, so
// the sums, which are the totals, are the same before and after in every
// snapshot. Instances take turns (an advisory lock; one that finds it
// taken does nothing). Then the table is vacuumed when the server's
// autovacuum is off (see VacuumEvents).
func (s *Store) CompactOrderTotals(ctx context.Context) (int64, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	var removed int64
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var mine bool
		if err := tx.QueryRow(ctx, `SELECT pg_try_advisory_xact_lock(hashtextextended('order_total_deltas', 0))`).Scan(&mine); err != nil || !mine {
			return err
		}
		// Nothing is rewritten when every row is already alone in its group.
		return tx.QueryRow(ctx, `WITH d AS (DELETE FROM order_total_deltas
				WHERE (SELECT count(*) > count(DISTINCT (status, currency)) FROM order_total_deltas)
				RETURNING status, currency, n, cents),
			f AS (INSERT INTO order_total_deltas (status, currency, n, cents)
				SELECT status, currency, sum(n), sum(cents) FROM d GROUP BY status, currency
				HAVING sum(n) <> 0 OR sum(cents) <> 0 RETURNING 1)
			SELECT (SELECT count(*) FROM d) - (SELECT count(*) FROM f)`).Scan(&removed)
	})
	if err != nil {
		return 0, interpretError(err)
	}
	if removed > 0 {
		if _, err := s.vacuumQueue(ctx, "order_total_deltas"); err != nil {
			return removed, err
		}
	}
	return removed, nil
}
