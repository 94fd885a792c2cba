package postgres

import (
	"context"
	"time"
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
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	var on bool
	if err := s.pool.QueryRow(ctx, `SELECT current_setting('autovacuum')::bool`).Scan(&on); err != nil || on {
		return false, interpretError(err)
	}
	_, err := s.pool.Exec(ctx, `VACUUM (SKIP_LOCKED, TRUNCATE false) order_events`)
	return err == nil, interpretError(err)
}
