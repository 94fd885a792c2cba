package payments

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sony/gobreaker/v2"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/shop/bff/internal/httpx"
	"github.com/shop/bff/internal/telemetry"
)

// metricValue reads one sample of a gathered metric family.
func metricValue(t *testing.T, reg *prometheus.Registry, name, label, value string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			match := label == ""
			for _, lp := range m.GetLabel() {
				if lp.GetName() == label && lp.GetValue() == value {
					match = true
				}
			}
			if !match {
				continue
			}
			if m.Counter != nil {
				return m.Counter.GetValue()
			}
			return m.Gauge.GetValue()
		}
	}
	return 0
}

func TestHTTPProviderSendsTheCharge(t *testing.T) {
	var got struct {
		method, path, key, ctype, traceparent string
		body                                  chargeBody
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got.method, got.path = r.Method, r.URL.Path
		got.key, got.ctype = r.Header.Get("Idempotency-Key"), r.Header.Get("Content-Type")
		got.traceparent = r.Header.Get("traceparent")
		raw, _ := io.ReadAll(r.Body)
		_ = json.Unmarshal(raw, &got.body)
		httpx.WriteJSON(w, http.StatusCreated, map[string]string{"id": "ch_123", "status": "pending"})
	}))
	defer srv.Close()
	// The instrumented transport sends the traceparent (the provider
	// writes no trace header itself).
	p, err := NewHTTPProvider(HTTPConfig{BaseURL: srv.URL + "/",
		Transport: telemetry.Transport(nil, telemetry.WithPropagator(propagation.TraceContext{}))})
	if err != nil {
		t.Fatal(err)
	}
	tid, _ := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
	sid, _ := trace.SpanIDFromHex("00f067aa0ba902b7")
	ctx := trace.ContextWithSpanContext(context.Background(),
		trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled}))

	res, err := p.Charge(ctx, ChargeRequest{OrderID: "o-1", Attempt: 2, AmountCents: 19900, Currency: "USD"})
	if err != nil || res.ChargeID != "ch_123" {
		t.Fatalf("Charge = %+v, %v", res, err)
	}
	if got.method != "POST" || got.path != "/charges" || got.ctype != "application/json" {
		t.Errorf("request %s %s (%s)", got.method, got.path, got.ctype)
	}
	if got.key != "charge-o-1-2" {
		t.Errorf("Idempotency-Key = %q, want the key derived from order and attempt", got.key)
	}
	if want := "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"; got.traceparent != want {
		t.Errorf("traceparent = %q, want %q", got.traceparent, want)
	}
	if got.body != (chargeBody{OrderID: "o-1", AmountCents: 19900, Currency: "USD", Attempt: 2}) {
		t.Errorf("body = %+v", got.body)
	}
}

func TestHTTPProviderClassifiesErrors(t *testing.T) {
	tests := []struct {
		name      string
		status    int
		body      string
		sleep     bool
		retryable bool
		ok        bool
	}{
		{"201", 201, `{"id":"ch_1","status":"pending"}`, false, false, true},
		{"200 replay", 200, `{"id":"ch_1","status":"pending"}`, false, false, true},
		{"400", 400, `{"error":"bad"}`, false, false, false},
		{"402", 402, ``, false, false, false},
		{"404", 404, ``, false, false, false},
		{"409", 409, ``, false, false, false},
		{"422", 422, `{"error":"key reused"}`, false, false, false},
		{"429", 429, ``, false, true, false},
		{"500", 500, ``, false, true, false},
		{"502", 502, ``, false, true, false},
		{"503", 503, ``, false, true, false},
		{"malformed success", 201, `{"status":"pending"}`, false, true, false},
		{"timeout", 201, `{"id":"ch_1"}`, true, true, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// The slow handler never answers on its own: the server notices
			// a client that hung up only once the request body has been
			// read (that is when it starts watching the connection), so
			// waiting on r.Context() alone blocked srv.Close forever. It
			// drains the body and is also released before srv.Close runs
			// (deferred calls run last-in first-out).
			release := make(chan struct{})
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if tc.sleep {
					_, _ = io.Copy(io.Discard, r.Body)
					select {
					case <-r.Context().Done():
					case <-release:
					}
					return
				}
				w.WriteHeader(tc.status)
				_, _ = io.WriteString(w, tc.body)
			}))
			defer srv.Close()
			defer close(release)
			p, err := NewHTTPProvider(HTTPConfig{BaseURL: srv.URL, Timeout: 100 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			_, err = p.Charge(context.Background(), ChargeRequest{OrderID: "o", Attempt: 1, AmountCents: 1, Currency: "USD"})
			if tc.ok {
				if err != nil {
					t.Fatalf("Charge: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("Charge succeeded, want an error")
			}
			if IsRetryable(err) != tc.retryable || IsPermanent(err) == tc.retryable {
				t.Errorf("err %v: retryable=%v permanent=%v, want retryable=%v", err, IsRetryable(err), IsPermanent(err), tc.retryable)
			}
		})
	}
}

func TestHTTPProviderConnectionErrorIsRetryable(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	p, err := NewHTTPProvider(HTTPConfig{BaseURL: url})
	if err != nil {
		t.Fatal(err)
	}
	_, err = p.Charge(context.Background(), ChargeRequest{OrderID: "o", Attempt: 1})
	if !IsRetryable(err) {
		t.Fatalf("connection refused: %v, want retryable", err)
	}
	if IsRetryable(nil) || IsPermanent(nil) {
		t.Error("nil must be neither retryable nor permanent")
	}
}

func TestHTTPProviderBreakerFailsFast(t *testing.T) {
	var hits, status atomic.Int64
	status.Store(503)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.WriteHeader(int(status.Load()))
		_, _ = io.WriteString(w, `{"id":"ch_1"}`)
	}))
	defer srv.Close()
	reg := prometheus.NewRegistry()
	m := NewMetrics()
	if err := m.Register(reg); err != nil {
		t.Fatal(err)
	}
	p, err := NewHTTPProvider(HTTPConfig{BaseURL: srv.URL, BreakerFailures: 3, BreakerOpenFor: time.Hour, Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	charge := func() error {
		_, err := p.Charge(context.Background(), ChargeRequest{OrderID: "o", Attempt: 1})
		return err
	}

	// Permanent refusals prove the provider is up: they never trip it.
	status.Store(400)
	for range 5 {
		if err := charge(); !IsPermanent(err) {
			t.Fatalf("400: %v", err)
		}
	}
	if p.BreakerState() != gobreaker.StateClosed {
		t.Fatalf("breaker %v after permanent errors, want closed", p.BreakerState())
	}

	status.Store(503)
	for range 3 {
		_ = charge()
	}
	if p.BreakerState() != gobreaker.StateOpen {
		t.Fatalf("breaker %v after 3 failures, want open", p.BreakerState())
	}
	before := hits.Load()
	err = charge()
	if hits.Load() != before {
		t.Error("the open breaker let a call through")
	}
	if !IsRetryable(err) || !errors.Is(err, gobreaker.ErrOpenState) {
		t.Errorf("open breaker: %v, want a retryable ErrOpenState", err)
	}
	if v := metricValue(t, reg, "bff_payments_breaker_state", "", ""); v != 2 {
		t.Errorf("breaker gauge = %v, want 2 (open)", v)
	}
	for outcome, want := range map[string]float64{OutcomePermanent: 5, OutcomeRetryable: 3, OutcomeBreakerOpen: 1, OutcomeAccepted: 0} {
		if v := metricValue(t, reg, "bff_payments_provider_calls_total", "outcome", outcome); v != want {
			t.Errorf("calls{outcome=%s} = %v, want %v", outcome, v, want)
		}
	}
}

func TestHTTPProviderHalfOpenRecovers(t *testing.T) {
	var status atomic.Int64
	status.Store(500)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(int(status.Load()))
		_, _ = io.WriteString(w, `{"id":"ch_1","status":"pending"}`)
	}))
	defer srv.Close()
	p, err := NewHTTPProvider(HTTPConfig{BaseURL: srv.URL, BreakerFailures: 1, BreakerOpenFor: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	_, _ = p.Charge(context.Background(), ChargeRequest{OrderID: "o", Attempt: 1})
	if p.BreakerState() != gobreaker.StateOpen {
		t.Fatalf("breaker %v, want open", p.BreakerState())
	}
	status.Store(201)
	waitFor(t, "half-open", func() bool { return p.BreakerState() == gobreaker.StateHalfOpen })
	if _, err := p.Charge(context.Background(), ChargeRequest{OrderID: "o", Attempt: 1}); err != nil {
		t.Fatalf("trial call: %v", err)
	}
	if p.BreakerState() != gobreaker.StateClosed {
		t.Errorf("breaker %v after a successful trial, want closed", p.BreakerState())
	}
}

func TestNewHTTPProviderRejectsBadURL(t *testing.T) {
	for _, u := range []string{"ftp://x", "not a url", "http://"} {
		if _, err := NewHTTPProvider(HTTPConfig{BaseURL: u}); err == nil {
			t.Errorf("NewHTTPProvider(%q) accepted", u)
		}
	}
}
