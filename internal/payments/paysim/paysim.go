// Package paysim is the payment provider simulator of cmd/paysim
// (payments.md): the partner's POST /charges, honouring Idempotency-Key,
// answering after a configurable latency with configurable rates of
// declines, 5xx and timeouts, and reporting each new charge's result to the
// BFF by a signed webhook whose delivery is retried with backoff like a
// real provider's. GET /stats returns its counters.
//
// A [Server] is an http.Handler, so tests run it in an httptest.Server;
// [Server.Force] scripts the outcome of the next charge requests so a test
// need not rely on the random rates.
package paysim

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v5"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/shop/bff/internal/config"
	"github.com/shop/bff/internal/httpx"
	"github.com/shop/bff/internal/payments"
)

// Defaults of the command (see [LoadConfig]).
const (
	// DefaultWebhookURL is the BFF's payment webhook on its default port.
	DefaultWebhookURL = "http://127.0.0.1:8080/webhooks/payments"
	// DefaultLatency is how long the command waits before answering.
	DefaultLatency = 800 * time.Millisecond
	// DefaultSecret is the BFF's development webhook secret, so `make run`
	// works without configuration.
	DefaultSecret = config.DevWebhookSecret
	// FailureCodeDeclined is the failureCode of a declined charge.
	FailureCodeDeclined = "card_declined"
	// maxBody caps a charge request's body.
	maxBody = 64 << 10
)

// DefaultAddr is the listen address of the command: the host and port of
// config.DefaultPaymentsURL, where the BFF looks by default.
var DefaultAddr = strings.TrimPrefix(config.DefaultPaymentsURL, "http://")

// Outcome is what the simulator does with one charge request.
type Outcome string

// Outcomes of a charge request (see [Server.Force]).
const (
	// Approve accepts the charge (201, or 200 for a replay); a new charge
	// is reported as payment.succeeded.
	Approve Outcome = "approve"
	// Decline accepts the charge; a new charge is reported as
	// payment.failed with failureCode card_declined.
	Decline Outcome = "decline"
	// Fail answers 503 and records nothing: a retry may succeed.
	Fail Outcome = "error"
	// Timeout processes the request like Approve but never answers: the
	// response is lost, so the client times out and retries with the same
	// key, which then gets the replay.
	Timeout Outcome = "timeout"
)

// Config configures a [Server]. The first six fields are the command's
// settings ([LoadConfig]); the rest are for tests and embedding.
type Config struct {
	// Addr is the listen address (PAYSIM_ADDR); only the command uses it.
	Addr string
	// WebhookURL is the BFF's POST /webhooks/payments (PAYSIM_WEBHOOK_URL).
	// Required.
	WebhookURL string
	// Secret signs webhooks (the first value of WEBHOOK_SECRET). Required.
	Secret []byte
	// Latency is the wait before every answer to POST /charges
	// (PAYSIM_LATENCY); zero answers at once.
	Latency time.Duration
	// DeclineRate, ErrorRate and TimeoutRate (0..1) are the probabilities
	// that a request is declined, answered 503 or never answered
	// (PAYSIM_DECLINE_RATE, PAYSIM_ERROR_RATE, PAYSIM_TIMEOUT_RATE). Each
	// request rolls for an error first, then for a timeout (the charge is
	// approved, its answer lost), then for a decline (which only affects a
	// new charge; a replay answers the existing one).
	DeclineRate, ErrorRate, TimeoutRate float64

	// Client delivers webhooks. Default: an http.Client with a 10s timeout.
	Client *http.Client
	// DeliveryInitialBackoff is the first wait between webhook delivery
	// attempts; it doubles per attempt up to DeliveryMaxBackoff, randomised
	// ±50%. Defaults 500ms and 1m. A Retry-After (seconds) of the BFF is
	// honoured when it is not longer than DeliveryMaxBackoff.
	DeliveryInitialBackoff, DeliveryMaxBackoff time.Duration
	// DeliveryMaxAttempts caps the attempts of one webhook; 0 means no cap
	// other than DeliveryMaxAge.
	DeliveryMaxAttempts int
	// DeliveryMaxAge is how long a webhook is retried before it is
	// abandoned. Default 1h.
	DeliveryMaxAge time.Duration
	// Rand returns numbers in [0, 1) for the rates. Default math/rand/v2.
	Rand func() float64
	// Now is the clock of signatures and events. Default time.Now.
	Now func() time.Time
	// Logger logs charges and deliveries. Default slog.Default().
	Logger *slog.Logger
}

// Charge is one charge the simulator created.
type Charge struct {
	// ID is the charge id ("ch_…").
	ID string `json:"id"`
	// IdempotencyKey is the key it was created with.
	IdempotencyKey string `json:"idempotencyKey"`
	// OrderID, Attempt, AmountCents and Currency are the request's.
	OrderID     string `json:"orderId"`
	Attempt     int    `json:"attempt"`
	AmountCents int64  `json:"amountCents"`
	Currency    string `json:"currency"`
	// EventID is the id of the webhook event reporting its result.
	EventID string `json:"eventId"`
	// FailureCode is card_declined for a declined charge, empty otherwise.
	FailureCode string `json:"failureCode,omitempty"`
	// Created is when it was created.
	Created time.Time `json:"created"`
}

// Stats are the simulator's counters since start.
type Stats struct {
	// Requests counts POST /charges requests.
	Requests int64 `json:"requests"`
	// ChargesCreated counts charges created (once per idempotency key).
	ChargesCreated int64 `json:"chargesCreated"`
	// Replays counts requests answered with an existing charge.
	Replays int64 `json:"idempotentReplays"`
	// Declined counts created charges that were declined.
	Declined int64 `json:"declined"`
	// Errors counts 5xx answers; Timeouts requests never answered;
	// Rejected 4xx answers (invalid request, key reused).
	Errors   int64 `json:"errors"`
	Timeouts int64 `json:"timeouts"`
	Rejected int64 `json:"rejected"`
	// WebhookAttempts counts delivery attempts, WebhooksDelivered
	// webhooks answered 2xx, WebhooksAbandoned webhooks given up on, and
	// WebhooksPending webhooks still being delivered.
	WebhookAttempts   int64 `json:"webhookAttempts"`
	WebhooksDelivered int64 `json:"webhooksDelivered"`
	WebhooksAbandoned int64 `json:"webhooksAbandoned"`
	WebhooksPending   int64 `json:"webhooksPending"`
}

// counters are the live [Stats].
type counters struct {
	requests, created, replays, declined, errors, timeouts, rejected atomic.Int64
	attempts, delivered, abandoned, pending                          atomic.Int64
}

// Server is the simulator, an http.Handler: POST /charges, GET /stats and
// GET /healthz. It is safe for concurrent use.
type Server struct {
	cfg    Config
	mux    *http.ServeMux
	stats  counters
	ctx    context.Context // cancelled when deliveries are abandoned
	cancel context.CancelFunc

	mu       sync.Mutex
	byKey    map[string]*stored
	forced   []Outcome
	closing  bool
	closed   chan struct{} // closed by Shutdown: releases held requests
	delivery sync.WaitGroup
}

// stored is a charge and the request that created it.
type stored struct {
	req    chargeRequest
	charge Charge
}

// chargeRequest is the body of POST /charges, as payments.HTTPProvider
// sends it.
type chargeRequest struct {
	OrderID     string `json:"orderId"`
	AmountCents int64  `json:"amountCents"`
	Currency    string `json:"currency"`
	Attempt     int    `json:"attempt"`
}

// New validates cfg and returns the simulator. Deliveries run until
// [Server.Shutdown].
func New(cfg Config) (*Server, error) {
	if err := validWebhookURL(cfg.WebhookURL); err != nil {
		return nil, fmt.Errorf("paysim: webhook URL: %w", err)
	}
	if len(cfg.Secret) < payments.MinSecretLength {
		return nil, fmt.Errorf("paysim: a webhook secret of at least %d bytes is required", payments.MinSecretLength)
	}
	if cfg.Latency < 0 {
		return nil, errors.New("paysim: latency must not be negative")
	}
	for name, r := range map[string]float64{"decline": cfg.DeclineRate, "error": cfg.ErrorRate, "timeout": cfg.TimeoutRate} {
		if err := validRate(r); err != nil {
			return nil, fmt.Errorf("paysim: %s rate: %w", name, err)
		}
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: 10 * time.Second}
	}
	if cfg.DeliveryInitialBackoff <= 0 {
		cfg.DeliveryInitialBackoff = 500 * time.Millisecond
	}
	if cfg.DeliveryMaxBackoff < cfg.DeliveryInitialBackoff {
		cfg.DeliveryMaxBackoff = max(time.Minute, cfg.DeliveryInitialBackoff)
	}
	if cfg.DeliveryMaxAge <= 0 {
		cfg.DeliveryMaxAge = time.Hour
	}
	if cfg.Rand == nil {
		cfg.Rand = mrand.Float64
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Server{cfg: cfg, mux: http.NewServeMux(), byKey: map[string]*stored{}, closed: make(chan struct{})}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.mux.HandleFunc("POST /charges", s.serveCharge)
	s.mux.HandleFunc("GET /stats", func(w http.ResponseWriter, _ *http.Request) { httpx.WriteJSON(w, http.StatusOK, s.Stats()) })
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		httpx.WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	return s, nil
}

func validWebhookURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%q is not an http(s) URL", raw)
	}
	return nil
}

func validRate(r float64) error {
	if math.IsNaN(r) || r < 0 || r > 1 {
		return fmt.Errorf("%v is not a rate in [0, 1]", r)
	}
	return nil
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// Force makes the next len(outcomes) charge requests take these outcomes,
// in order, instead of rolling the rates.
func (s *Server) Force(outcomes ...Outcome) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.forced = append(s.forced, outcomes...)
}

// Stats returns the counters.
func (s *Server) Stats() Stats {
	c := &s.stats
	return Stats{Requests: c.requests.Load(), ChargesCreated: c.created.Load(), Replays: c.replays.Load(),
		Declined: c.declined.Load(), Errors: c.errors.Load(), Timeouts: c.timeouts.Load(), Rejected: c.rejected.Load(),
		WebhookAttempts: c.attempts.Load(), WebhooksDelivered: c.delivered.Load(),
		WebhooksAbandoned: c.abandoned.Load(), WebhooksPending: c.pending.Load()}
}

// Charges returns the charges created so far, in no particular order.
func (s *Server) Charges() []Charge {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Charge, 0, len(s.byKey))
	for _, st := range s.byKey {
		out = append(out, st.charge)
	}
	return out
}

// next is the outcome of a request: forced, or rolled from the rates.
func (s *Server) next() Outcome {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.forced) > 0 {
		o := s.forced[0]
		s.forced = s.forced[1:]
		return o
	}
	switch {
	case s.cfg.Rand() < s.cfg.ErrorRate:
		return Fail
	case s.cfg.Rand() < s.cfg.TimeoutRate:
		return Timeout
	case s.cfg.Rand() < s.cfg.DeclineRate:
		return Decline
	}
	return Approve
}

// serveCharge is POST /charges: Idempotency-Key required (1..255
// printable ASCII), body {"orderId","amountCents","currency","attempt"};
// 201 {"id","status":"pending"} for a new charge, 200 with the same body
// for a replay of its key, 422 for a key reused with a different body, 400
// for an invalid request, 503 for a simulated error or while shutting
// down.
func (s *Server) serveCharge(w http.ResponseWriter, r *http.Request) {
	s.stats.requests.Add(1)
	// Reading the whole body first also lets the server notice a client
	// that hangs up while the answer is held.
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		s.reject(w, http.StatusRequestEntityTooLarge, "body too large or unreadable")
		return
	}
	if !s.wait(r.Context(), s.cfg.Latency) {
		s.unavailable(w, r)
		return
	}
	key := r.Header.Get("Idempotency-Key")
	if !validKey(key) {
		s.reject(w, http.StatusBadRequest, "Idempotency-Key header of 1..255 printable ASCII characters is required")
		return
	}
	var req chargeRequest
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		s.reject(w, http.StatusBadRequest, "body is not a charge request: "+err.Error())
		return
	}
	if msg := req.invalid(); msg != "" {
		s.reject(w, http.StatusBadRequest, msg)
		return
	}

	outcome := s.next()
	if outcome == Fail {
		s.stats.errors.Add(1)
		httpx.WriteJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "simulated provider error"})
		return
	}

	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		s.unavailable(w, r)
		return
	}
	status := http.StatusOK
	st, replay := s.byKey[key]
	switch {
	case replay && st.req != req:
		s.mu.Unlock()
		s.reject(w, http.StatusUnprocessableEntity, "Idempotency-Key was used for a different charge request")
		return
	case replay:
		s.stats.replays.Add(1)
	default:
		status = http.StatusCreated
		st = &stored{req: req, charge: Charge{ID: "ch_" + randomHex(12), IdempotencyKey: key, OrderID: req.OrderID,
			Attempt: req.Attempt, AmountCents: req.AmountCents, Currency: req.Currency,
			EventID: "evt_" + randomHex(12), Created: s.cfg.Now()}}
		if outcome == Decline {
			st.charge.FailureCode = FailureCodeDeclined
			s.stats.declined.Add(1)
		}
		s.byKey[key] = st
		s.stats.created.Add(1)
		// The webhook continues the trace of the charge request (W3C
		// trace context), so a trace shows the charge and its result.
		tc := trace.SpanContextFromContext(propagation.TraceContext{}.Extract(r.Context(), propagation.HeaderCarrier(r.Header)))
		s.startDelivery(st.charge, tc) // under mu, so Shutdown never misses it
	}
	charge := st.charge
	s.mu.Unlock()

	log := s.cfg.Logger.With("charge_id", charge.ID, "order_id", charge.OrderID, "idempotency_key", key)
	if status == http.StatusCreated {
		log.Info("paysim: charge created", "declined", charge.FailureCode != "")
	} else {
		log.Info("paysim: idempotent replay")
	}
	if outcome == Timeout {
		s.stats.timeouts.Add(1)
		log.Info("paysim: withholding the answer (simulated timeout)")
		select {
		case <-r.Context().Done():
		case <-s.closed:
		}
		panic(http.ErrAbortHandler) // drop the connection without an answer
	}
	httpx.WriteJSON(w, status, map[string]string{"id": charge.ID, "status": "pending"})
}

func (req chargeRequest) invalid() string {
	switch {
	case req.OrderID == "":
		return "orderId is required"
	case req.AmountCents <= 0:
		return "amountCents must be positive"
	case len(req.Currency) != 3:
		return "currency must be a 3-letter code"
	case req.Attempt < 1:
		return "attempt must be at least 1"
	}
	return ""
}

func validKey(k string) bool {
	if len(k) == 0 || len(k) > 255 {
		return false
	}
	for i := 0; i < len(k); i++ {
		if k[i] < 0x20 || k[i] > 0x7e {
			return false
		}
	}
	return true
}

// wait sleeps d; false if the client left or the simulator is shutting
// down first.
func (s *Server) wait(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
	case <-s.closed:
	}
	return false
}

func (s *Server) reject(w http.ResponseWriter, status int, msg string) {
	s.stats.rejected.Add(1)
	httpx.WriteJSON(w, status, map[string]string{"error": msg})
}

func (s *Server) unavailable(w http.ResponseWriter, r *http.Request) {
	if r.Context().Err() != nil {
		return // nobody is listening
	}
	s.stats.errors.Add(1)
	w.Header().Set("Retry-After", "1")
	httpx.WriteJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "shutting down"})
}

// webhookEvent is the body of a webhook (payments.md).
type webhookEvent struct {
	ID      string      `json:"id"`
	Type    string      `json:"type"`
	Created int64       `json:"created"`
	Data    webhookData `json:"data"`
}

type webhookData struct {
	ChargeID    string  `json:"chargeId"`
	OrderID     string  `json:"orderId"`
	AmountCents int64   `json:"amountCents"`
	Currency    string  `json:"currency"`
	FailureCode *string `json:"failureCode"`
}

// event is the webhook body reporting c's result.
func (c Charge) event() webhookEvent {
	ev := webhookEvent{ID: c.EventID, Type: payments.EventPaymentSucceeded, Created: c.Created.Unix(),
		Data: webhookData{ChargeID: c.ID, OrderID: c.OrderID, AmountCents: c.AmountCents, Currency: c.Currency}}
	if c.FailureCode != "" {
		ev.Type = payments.EventPaymentFailed
		code := c.FailureCode
		ev.Data.FailureCode = &code
	}
	return ev
}

// startDelivery delivers c's webhook in the background. The caller holds
// s.mu and has checked that the simulator is not closing.
func (s *Server) startDelivery(c Charge, tc trace.SpanContext) {
	s.delivery.Add(1)
	s.stats.pending.Add(1)
	go func() {
		defer s.delivery.Done()
		defer s.stats.pending.Add(-1)
		s.deliver(c, tc)
	}()
}

// deliver posts c's event until the BFF answers 2xx, signing every attempt
// anew, with exponential backoff between attempts. Each attempt carries
// the traceparent of the charge request (tc), when it had one.
func (s *Server) deliver(c Charge, tc trace.SpanContext) {
	body, _ := json.Marshal(c.event())
	log := s.cfg.Logger.With("event_id", c.EventID, "charge_id", c.ID, "order_id", c.OrderID)
	attempt := func() (struct{}, error) {
		s.stats.attempts.Add(1)
		req, err := http.NewRequestWithContext(s.ctx, http.MethodPost, s.cfg.WebhookURL, bytes.NewReader(body))
		if err != nil {
			return struct{}{}, backoff.Permanent(err)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("User-Agent", "paysim")
		propagation.TraceContext{}.Inject(trace.ContextWithRemoteSpanContext(req.Context(), tc), propagation.HeaderCarrier(req.Header))
		req.Header.Set(payments.SignatureHeader, payments.Sign(s.cfg.Secret, s.cfg.Now(), body))
		resp, err := s.cfg.Client.Do(req)
		if err != nil {
			return struct{}{}, err
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxBody))
		_ = resp.Body.Close()
		if resp.StatusCode/100 == 2 {
			return struct{}{}, nil
		}
		err = fmt.Errorf("webhook answered %s", resp.Status)
		if secs, perr := strconv.Atoi(resp.Header.Get("Retry-After")); perr == nil && secs > 0 &&
			time.Duration(secs)*time.Second <= s.cfg.DeliveryMaxBackoff {
			return struct{}{}, errors.Join(err, backoff.RetryAfter(secs))
		}
		return struct{}{}, err
	}
	b := &backoff.ExponentialBackOff{InitialInterval: s.cfg.DeliveryInitialBackoff, RandomizationFactor: 0.5,
		Multiplier: 2, MaxInterval: s.cfg.DeliveryMaxBackoff}
	opts := []backoff.RetryOption{backoff.WithBackOff(b), backoff.WithMaxElapsedTime(s.cfg.DeliveryMaxAge),
		backoff.WithNotify(func(err error, next time.Duration) {
			log.Warn("paysim: webhook delivery failed, will retry", "error", err.Error(), "in", next)
		})}
	if s.cfg.DeliveryMaxAttempts > 0 {
		opts = append(opts, backoff.WithMaxTries(uint(s.cfg.DeliveryMaxAttempts)))
	}
	if _, err := backoff.Retry(s.ctx, attempt, opts...); err != nil {
		s.stats.abandoned.Add(1)
		log.Error("paysim: webhook abandoned", "error", err.Error())
		return
	}
	s.stats.delivered.Add(1)
	log.Info("paysim: webhook delivered", "type", c.event().Type)
}

// Shutdown stops taking charges (503), releases requests held by
// simulated timeouts and waits for webhook deliveries in progress until
// ctx is done; then it abandons the rest and returns ctx's error.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if !s.closing {
		s.closing = true
		close(s.closed)
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.delivery.Wait(); close(done) }()
	select {
	case <-done:
		s.cancel()
		return nil
	case <-ctx.Done():
		s.cancel()
		<-done
		return ctx.Err()
	}
}

// Serve serves the simulator on ln until ctx is done, then shuts down
// gracefully within grace: it stops accepting, ends held requests, waits
// for requests and webhook deliveries in progress, and returns nil (or the
// error that stopped serving).
func (s *Server) Serve(ctx context.Context, ln net.Listener, grace time.Duration) error {
	srv := &http.Server{Handler: s, ReadHeaderTimeout: 5 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
	}
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	shutErr := s.Shutdown(sctx)
	if err := srv.Shutdown(sctx); err != nil && shutErr == nil {
		shutErr = err
	}
	if serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) {
		return serveErr
	}
	return shutErr
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
