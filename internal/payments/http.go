package payments

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/sony/gobreaker/v2"

	"github.com/shop/bff/internal/config"
)

// HTTPConfig configures an [HTTPProvider].
type HTTPConfig struct {
	// BaseURL is the provider's base URL (PAYMENTS_URL). Default
	// config.DefaultPaymentsURL (the simulator of cmd/paysim).
	BaseURL string
	// Timeout bounds one charge call (PAYMENTS_TIMEOUT). Default
	// config.DefaultPaymentsTimeout.
	Timeout time.Duration
	// Transport carries the requests; the server passes the instrumented
	// transport of internal/telemetry, which makes the client span and
	// sends the W3C traceparent. Default http.DefaultTransport.
	Transport http.RoundTripper
	// BreakerFailures is the number of consecutive retryable failures that
	// opens the circuit breaker. Default 5.
	BreakerFailures uint32
	// BreakerOpenFor is how long the open breaker fails fast before it lets
	// one trial call through (half-open). Default 10s.
	BreakerOpenFor time.Duration
	// Metrics records call outcomes and the breaker state. Optional.
	Metrics *Metrics
}

// HTTPProvider is the [Provider] over the provider's HTTP API:
// POST {BaseURL}/charges with an Idempotency-Key header and a JSON body,
// answered 201 (or 200 for a replay) with {"id":"ch_…","status":"pending"}.
type HTTPProvider struct {
	url     string
	timeout time.Duration
	client  *http.Client
	breaker *gobreaker.CircuitBreaker[ChargeResult]
	metrics *Metrics
}

// NewHTTPProvider validates cfg and returns the provider.
func NewHTTPProvider(cfg HTTPConfig) (*HTTPProvider, error) {
	if cfg.BaseURL == "" {
		cfg.BaseURL = config.DefaultPaymentsURL
	}
	u, err := url.Parse(cfg.BaseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("PAYMENTS_URL: %q is not an http(s) URL", cfg.BaseURL)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = config.DefaultPaymentsTimeout
	}
	if cfg.Transport == nil {
		cfg.Transport = http.DefaultTransport
	}
	if cfg.BreakerFailures == 0 {
		cfg.BreakerFailures = 5
	}
	if cfg.BreakerOpenFor <= 0 {
		cfg.BreakerOpenFor = 10 * time.Second
	}
	p := &HTTPProvider{
		url:     strings.TrimSuffix(cfg.BaseURL, "/") + "/charges",
		timeout: cfg.Timeout,
		client:  &http.Client{Transport: cfg.Transport, Timeout: cfg.Timeout},
		metrics: cfg.Metrics,
	}
	failures := cfg.BreakerFailures
	p.breaker = gobreaker.NewCircuitBreaker[ChargeResult](gobreaker.Settings{
		Name:        "payments",
		MaxRequests: 1,
		Timeout:     cfg.BreakerOpenFor,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= failures },
		// A refusal proves the provider is up; only retryable failures count.
		IsSuccessful: func(err error) bool { return err == nil || IsPermanent(err) },
		// The caller giving up says nothing about the provider.
		IsExcluded: func(err error) bool { return errors.Is(err, context.Canceled) },
	})
	cfg.Metrics.observeBreaker(p.BreakerState)
	return p, nil
}

// BreakerState returns the circuit breaker's current state.
func (p *HTTPProvider) BreakerState() gobreaker.State { return p.breaker.State() }

// chargeBody is the JSON body of POST /charges.
type chargeBody struct {
	OrderID     string `json:"orderId"`
	AmountCents int64  `json:"amountCents"`
	Currency    string `json:"currency"`
	Attempt     int    `json:"attempt"`
}

// Charge implements [Provider]. While the breaker is open it fails fast
// with a retryable error wrapping gobreaker.ErrOpenState.
func (p *HTTPProvider) Charge(ctx context.Context, req ChargeRequest) (ChargeResult, error) {
	res, err := p.breaker.Execute(func() (ChargeResult, error) { return p.charge(ctx, req) })
	switch {
	case err == nil:
		p.metrics.providerCall(OutcomeAccepted)
	case isBreakerRejection(err):
		p.metrics.providerCall(OutcomeBreakerOpen)
		err = &ProviderError{Retryable: true, Message: "circuit breaker open", Err: err}
	case IsPermanent(err):
		p.metrics.providerCall(OutcomePermanent)
	default:
		p.metrics.providerCall(OutcomeRetryable)
	}
	return res, err
}

func (p *HTTPProvider) charge(ctx context.Context, req ChargeRequest) (ChargeResult, error) {
	key := req.IdempotencyKey
	if key == "" {
		key = IdempotencyKey(req.OrderID, req.Attempt)
	}
	body, err := json.Marshal(chargeBody{OrderID: req.OrderID, AmountCents: req.AmountCents,
		Currency: req.Currency, Attempt: req.Attempt})
	if err != nil {
		return ChargeResult{}, &ProviderError{Message: "encode request", Err: err}
	}
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, p.url, bytes.NewReader(body))
	if err != nil {
		return ChargeResult{}, &ProviderError{Message: "build request", Err: err}
	}
	hr.Header.Set("Content-Type", "application/json")
	hr.Header.Set("Accept", "application/json")
	hr.Header.Set("Idempotency-Key", key)

	resp, err := p.client.Do(hr)
	if err != nil {
		if errors.Is(err, context.Canceled) && ctx.Err() != nil && !errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return ChargeResult{}, err // the caller gave up
		}
		return ChargeResult{}, transportError(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return ChargeResult{}, transportError(err)
	}
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusCreated {
		return ChargeResult{}, statusError(resp.StatusCode, snippet(raw))
	}
	var out struct {
		ID     string `json:"id"`
		Status string `json:"status"`
	}
	if err := json.Unmarshal(raw, &out); err != nil || out.ID == "" {
		// Malformed acceptance: retrying with the same key is safe.
		return ChargeResult{}, &ProviderError{StatusCode: resp.StatusCode, Retryable: true,
			Message: "malformed response: " + snippet(raw)}
	}
	return ChargeResult{ChargeID: out.ID}, nil
}

// snippet is a short, single-line excerpt of a response body.
func snippet(b []byte) string {
	s := strings.Join(strings.Fields(string(b)), " ")
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	if s == "" {
		s = "(empty body)"
	}
	return s
}
