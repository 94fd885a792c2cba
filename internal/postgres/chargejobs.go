package postgres

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
)

// ChargeJob is a queued charge (the outbox of payOrder): one attempt of
// an order's payment, sent to the provider by the payment worker.
type ChargeJob struct {
	ID          int64
	OrderID     string
	Attempt     int
	AmountCents int64
	Currency    string
	// Tries counts the claims, this one included; it fences the updates
	// of a worker whose lease expired.
	Tries int
	// TraceParent is the W3C traceparent of the request that queued it.
	TraceParent string
}

// ClaimChargeJob takes the oldest due pending job, skipping rows other
// workers hold, and leases it by pushing its run time lease ahead; nil
// when no job is due.
func (s *Store) ClaimChargeJob(ctx context.Context, lease time.Duration) (*ChargeJob, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	var j ChargeJob
	err := s.pool.QueryRow(ctx, `
UPDATE charge_jobs SET tries = tries + 1, run_at = now() + make_interval(secs => $1), updated_at = now()
WHERE id = (
    SELECT id FROM charge_jobs
    WHERE state = 'pending' AND run_at <= now()
    ORDER BY run_at, id
    LIMIT 1
    FOR UPDATE SKIP LOCKED)
RETURNING id, order_id::text, attempt, amount_cents, currency, tries, coalesce(traceparent, '')`, lease.Seconds()).
		Scan(&j.ID, &j.OrderID, &j.Attempt, &j.AmountCents, &j.Currency, &j.Tries, &j.TraceParent)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, interpretError(err)
	}
	return &j, nil
}

// ChargeJobOutcome is what became of a claimed job.
type ChargeJobOutcome struct {
	// State is "done", "failed", or "pending" (to run again after RetryIn).
	State string
	// RetryIn is the delay before a pending job runs again.
	RetryIn time.Duration
	// Unclaim takes back the claim's try (nothing was sent).
	Unclaim bool
	// LastError is the job's last error (nil: none).
	LastError *string
}

// UpdateChargeJob records the outcome of the job claimed with tries. held
// is false when the job is no longer this claim's (its lease expired and
// another worker claimed it, or it is no longer pending).
func (s *Store) UpdateChargeJob(ctx context.Context, id int64, tries int, out ChargeJobOutcome) (held bool, err error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	unclaim := 0
	if out.Unclaim {
		unclaim = 1
	}
	tag, err := s.pool.Exec(ctx, `UPDATE charge_jobs SET state = $3, tries = tries - $4,
		run_at = CASE WHEN $3 = 'pending' THEN now() + make_interval(secs => $5) ELSE run_at END,
		last_error = $6, updated_at = now()
		WHERE id = $1 AND tries = $2 AND state = 'pending'`, id, tries, out.State, unclaim, out.RetryIn.Seconds(), out.LastError)
	if err != nil {
		return false, interpretError(err)
	}
	return tag.RowsAffected() > 0, nil
}
