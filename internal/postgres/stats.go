package postgres

import (
	"context"
	"time"
)

// QueueStats are the depths of the two outboxes and the ages of their
// oldest entries (on the database clock), for the metrics.
type QueueStats struct {
	// EventsUnpublished counts events committed but not yet published.
	EventsUnpublished int64
	// EventsOldest is the age of the oldest of them (0 when none).
	EventsOldest time.Duration
	// ChargeJobsPending counts charge jobs not yet done or failed.
	ChargeJobsPending int64
	// ChargeJobsOldest is the age of the oldest of them (0 when none).
	ChargeJobsOldest time.Duration
}

// QueueStats reads the outbox depths in one round trip (both counts use
// partial indexes on the pending rows).
func (s *Store) QueueStats(ctx context.Context) (QueueStats, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	var st QueueStats
	var evAge, jobAge float64
	err := s.pool.QueryRow(ctx, `SELECT
		(SELECT count(*) FROM order_events WHERE published_at IS NULL),
		coalesce((SELECT extract(epoch FROM now() - min(at)) FROM order_events WHERE published_at IS NULL), 0)::float8,
		(SELECT count(*) FROM charge_jobs WHERE state = 'pending'),
		coalesce((SELECT extract(epoch FROM now() - min(created_at)) FROM charge_jobs WHERE state = 'pending'), 0)::float8`).
		Scan(&st.EventsUnpublished, &evAge, &st.ChargeJobsPending, &jobAge)
	st.EventsOldest = time.Duration(max(evAge, 0) * float64(time.Second))
	st.ChargeJobsOldest = time.Duration(max(jobAge, 0) * float64(time.Second))
	return st, interpretError(err)
}
