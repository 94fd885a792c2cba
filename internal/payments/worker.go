package payments

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v5"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/shop/bff/internal/order"
	"github.com/shop/bff/internal/postgres"
	"github.com/shop/bff/internal/telemetry"
)

// Failure codes the worker passes to [ResultStore.MarkPaymentFailed].
const (
	// FailureRejected: the provider refused the charge (a 4xx other than 429).
	FailureRejected = "charge_rejected"
	// FailureUnavailable: the provider could not be reached within the
	// attempts.
	FailureUnavailable = "provider_unavailable"
)

// WorkerConfig configures a [Worker].
type WorkerConfig struct {
	// Jobs holds the charge jobs (the Postgres store). Required.
	Jobs JobQueue
	// Provider sends charges. Required.
	Provider Provider
	// Store marks payments failed. Required.
	Store ResultStore
	// Notifier is told about PAYMENT_FAILED events the worker causes.
	// Optional.
	Notifier Notifier
	// Concurrency is the number of goroutines [Worker.Run] starts. Default 1.
	Concurrency int
	// PollInterval is the wait between polls when no job is due (cut short
	// by [Worker.Wake]). Default 200ms.
	PollInterval time.Duration
	// MaxAttempts caps the sends of one job (claims refused by an open
	// circuit breaker do not count). Default 8.
	MaxAttempts int
	// InitialBackoff is the cap of the first retry delay; the cap doubles
	// per try up to MaxBackoff, and the delay is uniform in [0, cap] (full
	// jitter). Defaults 500ms and 30s.
	InitialBackoff time.Duration
	MaxBackoff     time.Duration
	// Lease is how long a claimed job stays invisible to other workers; a
	// send is cut off at Lease/2, so two sends of one job never overlap.
	// A job whose worker died is retried after the lease. Default 30s.
	Lease time.Duration
	// Logger logs job outcomes. Default slog.Default().
	Logger *slog.Logger
	// Metrics counts job results. Optional.
	Metrics *Metrics
	// Tracer makes the span of each job, a child of the request that
	// queued it (its stored traceparent). Default: no spans.
	Tracer trace.Tracer
	// Observe is called after every processed claim, once its outcome is
	// recorded in Jobs and counted in Metrics (tests wait on it). Optional.
	Observe func(JobProcessed)
}

// JobProcessed is what became of one claim of a charge job, as
// [WorkerConfig.Observe] is told.
type JobProcessed struct {
	// OrderID and Attempt name the payment; Try is the claim's try.
	OrderID      string
	Attempt, Try int
	// Result is the result counted in bff_payments_charge_jobs_total
	// (done, retry, deferred, failed), or "" when none was: the send
	// failed for good but the payment could not be marked failed, and the
	// job runs again.
	Result string
}

// Worker drains the charge_jobs outbox: it claims due jobs (FOR UPDATE SKIP
// LOCKED), sends them to the [Provider], reschedules retryable failures via
// run_at and marks the payment failed on a permanent error or after
// MaxAttempts sends. A charge the provider's circuit breaker refused
// without sending is rescheduled without using up an attempt, so jobs
// wait while the provider is down. Any number of workers, in any number of
// processes, may run against one database.
type Worker struct {
	cfg  WorkerConfig
	wake chan struct{}
}

// NewWorker validates cfg and returns a worker; start it with [Worker.Run].
func NewWorker(cfg WorkerConfig) (*Worker, error) {
	if cfg.Jobs == nil || cfg.Provider == nil || cfg.Store == nil {
		return nil, errors.New("payments: WorkerConfig needs Jobs, Provider and Store")
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 1
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = 200 * time.Millisecond
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = 8
	}
	if cfg.InitialBackoff <= 0 {
		cfg.InitialBackoff = 500 * time.Millisecond
	}
	if cfg.MaxBackoff < cfg.InitialBackoff {
		cfg.MaxBackoff = max(30*time.Second, cfg.InitialBackoff)
	}
	if cfg.Lease <= 0 {
		cfg.Lease = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Tracer == nil {
		cfg.Tracer = noop.NewTracerProvider().Tracer("")
	}
	return &Worker{cfg: cfg, wake: make(chan struct{}, cfg.Concurrency)}, nil
}

// Wake makes an idle worker goroutine poll now (payOrder calls it after
// committing a charge job). It never blocks.
func (w *Worker) Wake() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// Run processes jobs with Concurrency goroutines until ctx is cancelled;
// each goroutine finishes the job in hand first. It returns when all have
// stopped.
func (w *Worker) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for range w.cfg.Concurrency {
		wg.Go(func() { w.loop(ctx) })
	}
	wg.Wait()
}

func (w *Worker) loop(ctx context.Context) {
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		worked, err := w.RunOnce(ctx)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			w.cfg.Logger.Error("charge worker: claiming a job failed", "error", err.Error())
		}
		if worked {
			continue
		}
		timer.Reset(w.cfg.PollInterval)
		select {
		case <-ctx.Done():
			return
		case <-w.wake:
		case <-timer.C:
		}
	}
}

// job is a claimed charge_jobs row.
// JobQueue holds the charge jobs: the worker claims one at a time under a
// lease and records what became of it.
type JobQueue interface {
	// ClaimChargeJob leases the oldest due job (nil when none is due).
	ClaimChargeJob(ctx context.Context, lease time.Duration) (*postgres.ChargeJob, error)
	// UpdateChargeJob records the outcome of a claim; held is false when
	// the job is no longer that claim's.
	UpdateChargeJob(ctx context.Context, id int64, tries int, out postgres.ChargeJobOutcome) (held bool, err error)
}

var _ JobQueue = (*postgres.Store)(nil)

type job = postgres.ChargeJob

// RunOnce claims and processes at most one due job. worked is false when
// no job was due. Once a job is claimed it is processed to the end even if
// ctx is cancelled.
func (w *Worker) RunOnce(ctx context.Context) (worked bool, err error) {
	j, err := w.cfg.Jobs.ClaimChargeJob(ctx, w.cfg.Lease)
	if err != nil || j == nil {
		return false, err
	}
	result := w.process(context.WithoutCancel(ctx), *j)
	if w.cfg.Observe != nil {
		w.cfg.Observe(JobProcessed{OrderID: j.OrderID, Attempt: j.Attempt, Try: j.Tries, Result: result})
	}
	return true, nil
}

// process sends the charge of claim j and records the outcome; it returns
// the result it counted ("" for none, see [JobProcessed]).
func (w *Worker) process(ctx context.Context, j job) string {
	ctx, span := w.cfg.Tracer.Start(telemetry.ContextWithTraceParent(ctx, j.TraceParent), "payments.charge",
		trace.WithSpanKind(trace.SpanKindConsumer), trace.WithAttributes(
			attribute.String("bff.order_id", j.OrderID), attribute.Int("bff.payment_attempt", j.Attempt),
			attribute.Int64("bff.charge_job_id", j.ID), attribute.Int("bff.charge_job_try", j.Tries)))
	defer span.End()
	log := w.cfg.Logger.With("order_id", j.OrderID, "attempt", j.Attempt, "job_id", j.ID, "try", j.Tries)
	if j.Tries > w.cfg.MaxAttempts {
		return w.fail(ctx, log, j, FailureUnavailable, "attempts exhausted")
	}
	sendCtx, cancel := context.WithTimeout(ctx, w.cfg.Lease/2)
	res, err := w.cfg.Provider.Charge(sendCtx, ChargeRequest{OrderID: j.OrderID, Attempt: j.Attempt,
		AmountCents: j.AmountCents, Currency: j.Currency, IdempotencyKey: IdempotencyKey(j.OrderID, j.Attempt)})
	cancel()
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	switch {
	case err == nil:
		w.update(ctx, log, j, postgres.ChargeJobOutcome{State: "done"})
		w.cfg.Metrics.chargeJob("done")
		log.Info("charge accepted by the provider", "charge_id", res.ChargeID)
		return "done"
	case IsPermanent(err):
		return w.fail(ctx, log, j, FailureRejected, err.Error())
	case isBreakerRejection(err):
		// Nothing was sent: the claim does not count against MaxAttempts,
		// so jobs wait out an outage instead of failing. They come back
		// after up to the largest backoff, which keeps the polling of an
		// open breaker cheap.
		d := w.backoff(w.cfg.MaxAttempts)
		w.update(ctx, log, j, retry(d, err.Error(), true))
		w.cfg.Metrics.chargeJob("deferred")
		log.Debug("charge not sent: the provider's circuit breaker is open, will retry", "in", d)
		return "deferred"
	case j.Tries >= w.cfg.MaxAttempts:
		return w.fail(ctx, log, j, FailureUnavailable, err.Error())
	default:
		d := w.backoff(j.Tries)
		w.update(ctx, log, j, retry(d, err.Error(), false))
		w.cfg.Metrics.chargeJob("retry")
		log.Warn("charge failed, will retry", "error", err.Error(), "in", d)
		return "retry"
	}
}

// fail marks the payment failed, then the job, and returns "failed". If
// the store cannot mark the payment, the job stays pending and runs again
// later, and fail returns "" (nothing counted).
func (w *Worker) fail(ctx context.Context, log *slog.Logger, j job, code, reason string) string {
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	ev, err := w.cfg.Store.MarkPaymentFailed(sctx, j.OrderID, j.Attempt, code)
	cancel()
	if err != nil {
		d := w.backoff(min(j.Tries, w.cfg.MaxAttempts))
		w.update(ctx, log, j, retry(d, fmt.Sprintf("%s; marking the payment failed: %v", reason, err), false))
		log.Error("charge failed but the payment could not be marked failed; will retry", "error", err.Error())
		return ""
	}
	w.update(ctx, log, j, postgres.ChargeJobOutcome{State: "failed", LastError: &reason})
	w.cfg.Metrics.chargeJob("failed")
	log.Warn("charge failed for good", "failure_code", code, "reason", reason)
	if ev != nil && w.cfg.Notifier != nil {
		w.cfg.Notifier.Committed(ctx, []order.Event{*ev})
	}
	return "failed"
}

// retry is the outcome of a job that runs again after d; unclaim when
// nothing was sent.
func retry(d time.Duration, lastErr string, unclaim bool) postgres.ChargeJobOutcome {
	return postgres.ChargeJobOutcome{State: "pending", RetryIn: d, Unclaim: unclaim, LastError: &lastErr}
}

// update records the outcome of a job this worker still holds (same tries).
func (w *Worker) update(ctx context.Context, log *slog.Logger, j job, out postgres.ChargeJobOutcome) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	held, err := w.cfg.Jobs.UpdateChargeJob(ctx, j.ID, j.Tries, out)
	switch {
	case err != nil:
		// The lease expires and the job runs again with the same key.
		log.Error("charge worker: updating the job failed", "error", err.Error())
	case !held:
		log.Warn("charge worker: job was taken over after its lease expired")
	}
}

// backoff is the delay before try+1: uniform in [0, cap] where the cap is
// the exponential interval of the try (full jitter).
func (w *Worker) backoff(try int) time.Duration {
	b := &backoff.ExponentialBackOff{InitialInterval: w.cfg.InitialBackoff, Multiplier: 2,
		MaxInterval: w.cfg.MaxBackoff, RandomizationFactor: 0}
	b.Reset()
	ceiling := w.cfg.InitialBackoff
	for range max(try, 1) {
		ceiling = b.NextBackOff()
	}
	return time.Duration(rand.Int64N(int64(ceiling) + 1))
}
