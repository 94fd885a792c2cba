package webhooks

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/sony/gobreaker/v2"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/shop/bff/internal/config"
	"github.com/shop/bff/internal/order"
	"github.com/shop/bff/internal/postgres"
	"github.com/shop/bff/internal/stream"
	"github.com/shop/bff/internal/telemetry"
)

// MaxResponseBytes is the most of an endpoint's answer an attempt reads.
const MaxResponseBytes = 64 << 10

// UserAgent is sent with every delivery.
const UserAgent = "shop-bff-webhooks/1"

// Config configures a [Worker]. Zero fields take their defaults.
type Config struct {
	// Store holds the endpoints and deliveries. Required.
	Store *postgres.Store
	// Workers is the number of concurrent sends of this instance
	// (WEBHOOK_WORKERS). Default config.DefaultWebhookWorkers.
	Workers int
	// PerEndpoint bounds the concurrent sends to one endpoint from this
	// instance (WEBHOOK_ENDPOINT_CONCURRENCY). Default
	// config.DefaultWebhookEndpointConcurrency.
	PerEndpoint int
	// Timeout bounds one attempt: connecting, sending and reading the
	// answer (WEBHOOK_TIMEOUT). Default config.DefaultWebhookTimeout.
	Timeout time.Duration
	// RetryFor is how long a delivery is retried before it is
	// dead-lettered (WEBHOOK_RETRY_FOR). Default config.DefaultWebhookRetryFor.
	RetryFor time.Duration
	// InitialBackoff caps the first retry delay; the cap doubles per
	// attempt up to MaxBackoff and the delay is uniform in [0, cap] (full
	// jitter). Defaults config.DefaultWebhookBackoff and
	// config.DefaultWebhookBackoffMax (WEBHOOK_BACKOFF, WEBHOOK_BACKOFF_MAX).
	InitialBackoff time.Duration
	MaxBackoff     time.Duration
	// DisableAfter disables an endpoint whose attempts have all failed for
	// that long (WEBHOOK_DISABLE_AFTER). Default
	// config.DefaultWebhookDisableAfter.
	DisableAfter time.Duration
	// BreakerFailures consecutive failed attempts open an endpoint's
	// circuit breaker, which then lets one trial attempt through after
	// BreakerOpenFor. Defaults 5 and 30s.
	BreakerFailures uint32
	BreakerOpenFor  time.Duration
	// Lease is how long a claimed delivery is held before another worker
	// may take it over (its sender died or overran it). Default twice
	// Timeout plus 30s: a wait in the queue of at most one attempt, the
	// attempt itself and time to record its result.
	Lease time.Duration
	// PollInterval is the wait between claims when nothing is due (cut
	// short by [Worker.Wake]; WEBHOOK_POLL_INTERVAL). Default
	// config.DefaultWebhookPollInterval.
	PollInterval time.Duration
	// AllowPrivate lets deliveries connect to loopback, private and
	// link-local addresses (development and tests).
	AllowPrivate bool
	// Transport sends the requests. Default: a transport whose dialer
	// refuses non-public addresses unless AllowPrivate, without proxies,
	// wrapped in telemetry.Transport (a client span per attempt).
	Transport http.RoundTripper
	// Tracer makes the span of each delivery attempt (the transport's
	// client span is its child). Default: the global provider's.
	Tracer trace.Tracer
	// Metrics records attempts. Optional.
	Metrics *Metrics
	// Observe is called after every attempt was recorded (tests wait on
	// it). Optional.
	Observe func(Attempt)
	// Logger logs one line per attempt. Default slog.Default().
	Logger *slog.Logger
}

func (c *Config) defaults() {
	if c.Workers <= 0 {
		c.Workers = config.DefaultWebhookWorkers
	}
	if c.PerEndpoint <= 0 {
		c.PerEndpoint = config.DefaultWebhookEndpointConcurrency
	}
	if c.Timeout <= 0 {
		c.Timeout = config.DefaultWebhookTimeout
	}
	if c.RetryFor <= 0 {
		c.RetryFor = config.DefaultWebhookRetryFor
	}
	if c.InitialBackoff <= 0 {
		c.InitialBackoff = config.DefaultWebhookBackoff
	}
	if c.MaxBackoff < c.InitialBackoff {
		c.MaxBackoff = max(config.DefaultWebhookBackoffMax, c.InitialBackoff)
	}
	if c.DisableAfter <= 0 {
		c.DisableAfter = config.DefaultWebhookDisableAfter
	}
	if c.BreakerFailures == 0 {
		c.BreakerFailures = 5
	}
	if c.BreakerOpenFor <= 0 {
		c.BreakerOpenFor = 30 * time.Second
	}
	if c.PollInterval <= 0 {
		c.PollInterval = config.DefaultWebhookPollInterval
	}
	if c.Lease <= 0 {
		c.Lease = 2*c.Timeout + 30*time.Second
	}
	if c.Transport == nil {
		c.Transport = telemetry.Transport(NewTransport(c.AllowPrivate, c.Timeout))
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Tracer == nil {
		c.Tracer = otel.Tracer("github.com/shop/bff/internal/webhooks")
	}
}

// NewTransport returns the HTTP transport of deliveries: no proxy (a
// proxy would connect on our behalf, past the address check), and unless
// allowPrivate a dialer that refuses every address that is not public.
func NewTransport(allowPrivate bool, timeout time.Duration) *http.Transport {
	d := &net.Dialer{Timeout: min(timeout, 5*time.Second), KeepAlive: 30 * time.Second}
	if !allowPrivate {
		d.Control = dialControl
	}
	return &http.Transport{
		Proxy:                  nil,
		DialContext:            d.DialContext,
		ForceAttemptHTTP2:      true,
		MaxIdleConns:           256,
		MaxIdleConnsPerHost:    16,
		IdleConnTimeout:        90 * time.Second,
		TLSHandshakeTimeout:    min(timeout, 5*time.Second),
		ResponseHeaderTimeout:  timeout,
		MaxResponseHeaderBytes: 16 << 10,
	}
}

// Worker sends the deliveries of the webhook outbox (see the package doc).
// Any number of workers, in any number of processes, may run against one
// database.
type Worker struct {
	cfg    Config
	store  *postgres.Store
	client *http.Client
	log    *slog.Logger
	tracer trace.Tracer

	wake chan struct{}
	done chan string // endpoint id of a finished send
	// quiet is set while the database has no enabled endpoint (checked
	// at every poll): a commit's Wake then claims nothing and is skipped.
	quiet atomic.Bool

	mu       sync.Mutex
	breakers map[string]*gobreaker.CircuitBreaker[attemptResult]
}

// NewWorker returns a worker; start it with [Worker.Run].
func NewWorker(cfg Config) (*Worker, error) {
	if cfg.Store == nil {
		return nil, errors.New("webhooks: Config needs Store")
	}
	cfg.defaults()
	return &Worker{
		cfg:   cfg,
		store: cfg.Store,
		client: &http.Client{Transport: cfg.Transport, Timeout: cfg.Timeout,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
		log:      cfg.Logger.With("component", "webhooks"),
		tracer:   cfg.Tracer,
		wake:     make(chan struct{}, 1),
		done:     make(chan string, 2*cfg.Workers),
		breakers: map[string]*gobreaker.CircuitBreaker[attemptResult]{},
	}, nil
}

// Wake makes the worker claim now (after a commit that wrote events),
// unless the last poll found no enabled endpoint (no delivery can have
// been written; an endpoint enabled by another instance meanwhile is
// found by the next poll, WEBHOOK_POLL_INTERVAL). It never blocks.
func (w *Worker) Wake() {
	if w.quiet.Load() {
		return
	}
	w.Refresh()
}

// Refresh makes the worker claim now, whatever the last poll found (after
// an endpoint was created or enabled, or deliveries were queued by
// staff). It never blocks.
func (w *Worker) Refresh() {
	w.quiet.Store(false)
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// Run claims and sends deliveries until ctx ends, then waits for the sends
// in flight (each bounded by Timeout), gives back the claimed deliveries
// not yet sent, and returns.
//
// One dispatcher claims and Workers senders send. The dispatcher holds at
// most twice Workers deliveries (in flight or queued for a sender), and
// once it holds some it claims again only when it can take a batch of
// Workers/2, so a backlog is claimed in batches rather than one query per
// send. At most PerEndpoint of the held deliveries belong to one endpoint.
func (w *Worker) Run(ctx context.Context) {
	capacity := 2 * w.cfg.Workers
	batch := max(1, w.cfg.Workers/2)
	held := map[string]int{} // endpoint → deliveries held
	total := 0
	var queue []postgres.ClaimedDelivery
	jobs := make(chan postgres.ClaimedDelivery)
	var wg sync.WaitGroup
	for range w.cfg.Workers {
		wg.Go(func() {
			for d := range jobs {
				w.deliver(context.WithoutCancel(ctx), d)
				w.done <- d.EndpointID
			}
		})
	}
	defer func() {
		close(jobs)
		go func() {
			for range w.done { // let the senders finish
			}
		}()
		wg.Wait()
		close(w.done)
		w.giveBack(ctx, queue)
	}()
	finished := func(ep string) {
		total--
		if held[ep]--; held[ep] <= 0 {
			delete(held, ep)
		}
	}
	tick := time.NewTicker(w.cfg.PollInterval)
	defer tick.Stop()
	claim := true
	for ctx.Err() == nil {
		if claim && (total == 0 || capacity-total >= batch) {
			limit := capacity - total
			ds, err := w.store.ClaimWebhookDeliveries(ctx, postgres.WebhookClaim{Limit: limit, PerEndpoint: w.cfg.PerEndpoint,
				InFlight: w.busy(held), Lease: w.lease()})
			if err != nil && ctx.Err() == nil {
				w.log.Warn("webhooks: claiming deliveries failed", "error", err)
			}
			for _, d := range ds {
				total++
				held[d.EndpointID]++
			}
			queue = append(queue, ds...)
			claim = len(ds) == limit // more may be due
			continue
		}
		var send chan postgres.ClaimedDelivery
		var next postgres.ClaimedDelivery
		if len(queue) > 0 {
			send, next = jobs, queue[0]
		}
		select {
		case <-ctx.Done():
		case send <- next:
			queue = queue[1:]
		case ep := <-w.done:
			finished(ep)
			claim = true
		case <-w.wake:
			claim = true
		case <-tick.C:
			claim = true
			w.checkQuiet(ctx)
		}
	}
}

// checkQuiet records whether the database has an enabled endpoint (see
// Wake); when it cannot tell, the worker is not quiet.
func (w *Worker) checkQuiet(ctx context.Context) {
	has, err := w.store.HasEnabledWebhookEndpoint(ctx)
	w.quiet.Store(err == nil && !has)
}

// giveBack returns claimed deliveries that were never sent to the queue
// at once (not after their lease), their claim not counted as an attempt.
func (w *Worker) giveBack(ctx context.Context, ds []postgres.ClaimedDelivery) {
	if len(ds) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	for _, d := range ds {
		if _, err := w.store.RecordWebhookResult(ctx, postgres.WebhookResult{DeliveryID: d.ID, Attempt: d.Attempt,
			Outcome: postgres.AttemptDeferred, Error: "not sent: the worker stopped"}); err != nil {
			w.log.Warn("webhooks: giving back a delivery failed; it is retried after its lease", "delivery_id", d.ID, "error", err)
			return
		}
	}
}

// busy returns the endpoints the next claim must limit: the sends in
// flight of each, and PerEndpoint (none) for an endpoint whose breaker is
// open.
func (w *Worker) busy(inFlight map[string]int) map[string]int {
	out := make(map[string]int, len(inFlight))
	for ep, n := range inFlight {
		out[ep] = n
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for ep, b := range w.breakers {
		switch b.State() {
		case gobreaker.StateOpen:
			out[ep] = w.cfg.PerEndpoint
		case gobreaker.StateHalfOpen:
			out[ep] = max(out[ep], w.cfg.PerEndpoint-1) // one trial at a time
		}
	}
	return out
}

// lease is how long a claimed delivery is held (Config.Lease).
func (w *Worker) lease() time.Duration { return w.cfg.Lease }

// breaker returns the circuit breaker of an endpoint.
func (w *Worker) breaker(ep string) *gobreaker.CircuitBreaker[attemptResult] {
	w.mu.Lock()
	defer w.mu.Unlock()
	b := w.breakers[ep]
	if b == nil {
		failures := w.cfg.BreakerFailures
		b = gobreaker.NewCircuitBreaker[attemptResult](gobreaker.Settings{
			Name:        "webhook " + ep,
			MaxRequests: 1,
			Timeout:     w.cfg.BreakerOpenFor,
			ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= failures },
			// Only failures that say the endpoint is down or overloaded
			// count; a refusal (4xx) proves it is up.
			IsSuccessful: func(err error) bool { return err == nil || errors.Is(err, errRefused) },
		})
		w.breakers[ep] = b
	}
	return b
}

// errRetryable and errRefused classify a failed attempt for the breaker.
var (
	errRetryable = errors.New("retryable failure")
	errRefused   = errors.New("refused")
)

// Attempt describes one recorded attempt, for [Config.Observe].
type Attempt struct {
	EndpointID string
	DeliveryID int64
	// WebhookID is the event id ("" when the event is no longer kept).
	WebhookID string
	Attempt   int
	// Outcome is delivered, retry, failed, deferred or dead.
	Outcome string
	// State is the delivery's state afterwards; "" when it is gone (its
	// endpoint was deleted) or was taken over after its lease.
	State  string
	Status int
	Error  string
	// Delay is the wait before the next attempt (retry, deferred).
	Delay time.Duration
	// Disabled is the reason when this attempt disabled the endpoint.
	Disabled string
	// Err is a failure to record the result.
	Err error
}

// attemptResult is what one HTTP attempt gave.
type attemptResult struct {
	status     int
	retryAfter time.Duration
	err        string
}

// Message is the JSON body of a delivery (Standard Webhooks).
type Message struct {
	// Type is the event's wire name, e.g. "order.shipped".
	Type string `json:"type"`
	// Timestamp is when the event happened.
	Timestamp time.Time `json:"timestamp"`
	// Data holds the OrderEvent fields and the order's status and
	// paymentStatus after the event (as on GET /events).
	Data order.Event `json:"data"`
}

// NewMessage returns the body of event e.
func NewMessage(e order.Event) ([]byte, error) {
	return json.Marshal(Message{Type: stream.EventName(e.Type), Timestamp: e.At, Data: e})
}

// deliver makes one attempt of d and records its result.
func (w *Worker) deliver(ctx context.Context, d postgres.ClaimedDelivery) {
	start := time.Now()
	log := w.log.With("endpoint_id", d.EndpointID, "delivery_id", d.ID, "attempt", d.Attempt)
	r := postgres.WebhookResult{DeliveryID: d.ID, Attempt: d.Attempt, RetryFor: w.cfg.RetryFor, DisableAfter: w.cfg.DisableAfter}
	if d.Event == nil {
		r.Outcome, r.Error = postgres.AttemptFailed, "the event is no longer kept"
		w.record(ctx, log, d, r, start)
		return
	}
	log = log.With("webhook_id", d.Event.ID, "type", stream.EventName(d.Event.Type), "order_id", d.Event.OrderID)
	ctx, span := w.tracer.Start(ctx, "webhook.deliver", trace.WithSpanKind(trace.SpanKindInternal),
		trace.WithAttributes(attribute.String("webhook.endpoint_id", d.EndpointID), attribute.String("webhook.id", d.Event.ID),
			attribute.Int64("webhook.delivery_id", d.ID), attribute.Int("webhook.attempt", d.Attempt)))
	defer span.End()
	res, err := w.breaker(d.EndpointID).Execute(func() (attemptResult, error) {
		res := w.send(ctx, d)
		switch {
		case res.status >= 200 && res.status < 300:
			return res, nil
		case retryable(res.status):
			return res, errRetryable
		}
		return res, errRefused
	})
	r.Duration = time.Since(start)
	if res.status != 0 {
		s := res.status
		r.Status = &s
	}
	r.Error = res.err
	switch {
	case err == nil:
		r.Outcome = postgres.AttemptDelivered
	case errors.Is(err, gobreaker.ErrOpenState) || errors.Is(err, gobreaker.ErrTooManyRequests):
		r.Outcome, r.Delay, r.Error = postgres.AttemptDeferred, w.cfg.BreakerOpenFor, "not sent: the endpoint's circuit breaker is open"
	case errors.Is(err, errRefused):
		r.Outcome = postgres.AttemptFailed
	default:
		r.Outcome, r.Delay = postgres.AttemptRetry, w.backoff(d.Attempt)
		if res.retryAfter > 0 {
			r.Delay = min(res.retryAfter, w.cfg.RetryFor)
		}
	}
	if r.Outcome != postgres.AttemptDelivered {
		span.SetStatus(codes.Error, r.Outcome)
	}
	w.record(ctx, log, d, r, start)
}

// retryable reports whether an attempt that got status (0: no answer) is
// tried again.
func retryable(status int) bool {
	return status == 0 || status == http.StatusRequestTimeout || status == http.StatusTooManyRequests || status >= 500
}

// send POSTs d once.
func (w *Worker) send(ctx context.Context, d postgres.ClaimedDelivery) attemptResult {
	body, err := NewMessage(*d.Event)
	if err != nil {
		return attemptResult{status: 0, err: "encode: " + err.Error()}
	}
	ts := time.Now()
	sig, err := Sign(d.Event.ID, ts, body, d.Secrets)
	if err != nil {
		return attemptResult{err: err.Error()}
	}
	ctx, cancel := context.WithTimeout(ctx, w.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.URL, bytes.NewReader(body))
	if err != nil {
		return attemptResult{err: "request: " + err.Error()}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", UserAgent)
	req.Header.Set("webhook-id", d.Event.ID)
	req.Header.Set("webhook-timestamp", strconv.FormatInt(ts.Unix(), 10))
	req.Header.Set("webhook-signature", sig)
	resp, err := w.client.Do(req)
	if err != nil {
		return attemptResult{err: transportError(err)}
	}
	defer resp.Body.Close()
	// The answer is read (bounded) so the connection can be reused; its
	// body means nothing.
	n, rerr := io.Copy(io.Discard, io.LimitReader(resp.Body, MaxResponseBytes+1))
	res := attemptResult{status: resp.StatusCode}
	switch {
	case rerr != nil && resp.StatusCode >= 200 && resp.StatusCode < 300:
		// A 2xx whose body did not arrive in time still delivered.
	case n > MaxResponseBytes:
		res.err = fmt.Sprintf("answer longer than %d bytes (not read further)", MaxResponseBytes)
	}
	if resp.StatusCode < 200 || resp.StatusCode >= 300 {
		res.err = strings.TrimSpace(resp.Status)
		if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable {
			res.retryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
		}
	}
	return res
}

// transportError is a one-line, URL-free description of a failed request.
func transportError(err error) string {
	var ue interface{ Unwrap() error }
	if errors.As(err, &ue) && ue.Unwrap() != nil {
		err = ue.Unwrap()
	}
	switch {
	case errors.Is(err, ErrForbiddenAddress):
		return err.Error()
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "timeout"
	}
	return err.Error()
}

// parseRetryAfter reads a Retry-After value (seconds or an HTTP date); 0
// when absent or malformed.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n <= 0 {
			return 0
		}
		return time.Duration(min(n, int64(7*24*3600))) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// backoff is the delay after the failed attempt n: uniform in [0, cap]
// where the cap is the exponential interval of the attempt (full jitter).
func (w *Worker) backoff(n int) time.Duration {
	b := &backoff.ExponentialBackOff{InitialInterval: w.cfg.InitialBackoff, Multiplier: 2,
		MaxInterval: w.cfg.MaxBackoff, RandomizationFactor: 0}
	b.Reset()
	ceiling := w.cfg.InitialBackoff
	for range min(max(n, 1), 64) {
		ceiling = b.NextBackOff()
	}
	return time.Duration(rand.Int64N(int64(ceiling) + 1))
}

// record stores the result of an attempt and logs it.
func (w *Worker) record(ctx context.Context, log *slog.Logger, d postgres.ClaimedDelivery, r postgres.WebhookResult, start time.Time) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	rec, err := w.store.RecordWebhookResult(ctx, r)
	outcome := r.Outcome
	if err == nil && rec.State == postgres.DeliveryDead {
		outcome = postgres.DeliveryDead
	}
	w.cfg.Metrics.attempt(d.EndpointID, outcome, r.Duration)
	if outcome == postgres.AttemptDelivered {
		w.cfg.Metrics.delivered(d.EndpointID, time.Since(d.Event.At))
	}
	attrs := []any{"outcome", outcome, "durationMs", r.Duration.Milliseconds()}
	if r.Status != nil {
		attrs = append(attrs, "status", *r.Status)
	}
	if r.Error != "" {
		attrs = append(attrs, "error", r.Error)
	}
	if outcome == postgres.AttemptRetry || outcome == postgres.AttemptDeferred {
		attrs = append(attrs, "retryIn", r.Delay.String())
	}
	switch {
	case err != nil:
		log.Error("webhook attempt: recording the result failed; the delivery is retried after its lease", append(attrs, "error", err)...)
	case rec.State == "":
		log.Warn("webhook attempt: the delivery is gone (endpoint deleted) or was taken over", attrs...)
	case outcome == postgres.AttemptDelivered || outcome == postgres.AttemptDeferred:
		log.Info("webhook attempt", attrs...)
	default:
		log.Warn("webhook attempt", attrs...)
	}
	if rec.Disabled != "" {
		log.Error("webhook endpoint disabled", "reason", rec.Disabled)
	}
	if w.cfg.Observe != nil {
		a := Attempt{EndpointID: d.EndpointID, DeliveryID: d.ID, Attempt: d.Attempt, Outcome: outcome, State: rec.State,
			Error: r.Error, Delay: r.Delay, Disabled: rec.Disabled, Err: err}
		if d.Event != nil {
			a.WebhookID = d.Event.ID
		}
		if r.Status != nil {
			a.Status = *r.Status
		}
		w.cfg.Observe(a)
	}
}
