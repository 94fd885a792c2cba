// Package hooksim is a receiver of outbound webhooks for development and
// tests (cmd/hooksim): it answers every POST after a configurable latency,
// fails or hangs a configurable share of them, verifies the Standard
// Webhooks signature with the specification's own Go library when it knows
// the secret, and records what it received (GET /received).
package hooksim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"sync"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/shop/bff/internal/simserver"
)

// Hang is the status [Config.Respond] returns to leave a request
// unanswered (held until the sender gives up, or HangFor).
const Hang = -1

// DefaultAddr is the listen address when HOOKSIM_ADDR is unset.
const DefaultAddr = "127.0.0.1:8091"

// Config configures a [Receiver].
type Config struct {
	// Addr is the listen address of cmd/hooksim.
	Addr string
	// Latency is waited before every answer.
	Latency time.Duration
	// FailureRate is the share of requests answered 503, 0..1.
	FailureRate float64
	// TimeoutRate is the share of requests never answered (held until the
	// sender gives up, or HangFor), 0..1.
	TimeoutRate float64
	// HangFor bounds how long an unanswered request is held. Default 60s.
	HangFor time.Duration
	// Secret, when set, verifies every request's signature (with the
	// Standard Webhooks library); a bad one is answered 401 and recorded
	// as unverified.
	Secret string
	// Respond, when set, decides the answer to a verified request (tests):
	// it returns the status (0: the default behaviour, Hang: no answer)
	// and headers. It may block (a request held in flight).
	Respond func(r Received) (status int, header http.Header)
	// Keep bounds the requests remembered (the oldest are forgotten); 0
	// keeps all.
	Keep int
	// Logger logs every request. Optional.
	Logger *slog.Logger
}

// Received is one request the receiver got.
type Received struct {
	At        time.Time       `json:"at"`
	ID        string          `json:"webhookId"`
	Timestamp string          `json:"webhookTimestamp"`
	Signature string          `json:"webhookSignature"`
	Type      string          `json:"type"`
	OrderID   string          `json:"orderId"`
	Version   int             `json:"version"`
	Body      json.RawMessage `json:"body"`
	// Verified is true when the signature verified with Secret.
	Verified bool `json:"verified"`
	// Status is the answer given (0: none, the request was held).
	Status int `json:"status"`
	// Header holds the request's headers.
	Header http.Header `json:"-"`
}

// Receiver is the simulated receiver; it is an http.Handler.
type Receiver struct {
	cfg  Config
	hook *standardwebhooks.Webhook

	mu       sync.Mutex
	received []Received
	notify   chan struct{}
}

// New returns a receiver.
func New(cfg Config) (*Receiver, error) {
	r := &Receiver{cfg: cfg, notify: make(chan struct{})}
	if cfg.HangFor <= 0 {
		r.cfg.HangFor = 60 * time.Second
	}
	if cfg.Secret != "" {
		h, err := standardwebhooks.NewWebhook(cfg.Secret)
		if err != nil {
			return nil, fmt.Errorf("hooksim: secret: %w", err)
		}
		r.hook = h
	}
	if r.cfg.Logger == nil {
		r.cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return r, nil
}

// ServeHTTP receives a webhook (POST, any path) or lists what was received
// (GET /received).
func (h *Receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodGet && r.URL.Path == "/received" {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(h.Received())
		return
	}
	if r.Method != http.MethodPost {
		http.Error(w, "POST a webhook, or GET /received", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		http.Error(w, "cannot read the body", http.StatusBadRequest)
		return
	}
	rec := Received{At: time.Now(), ID: r.Header.Get("webhook-id"), Timestamp: r.Header.Get("webhook-timestamp"),
		Signature: r.Header.Get("webhook-signature"), Body: append(json.RawMessage(nil), body...), Header: r.Header.Clone()}
	var msg struct {
		Type string `json:"type"`
		Data struct {
			OrderID string `json:"orderId"`
			Version int    `json:"version"`
		} `json:"data"`
	}
	if json.Unmarshal(body, &msg) == nil {
		rec.Type, rec.OrderID, rec.Version = msg.Type, msg.Data.OrderID, msg.Data.Version
	}
	status, header := http.StatusNoContent, http.Header(nil)
	if h.hook != nil {
		rec.Verified = h.hook.Verify(body, r.Header) == nil
		if !rec.Verified {
			status = http.StatusUnauthorized
		}
	}
	hang := false
	if status == http.StatusNoContent {
		if h.cfg.Respond != nil {
			if s, hd := h.cfg.Respond(rec); s == Hang {
				hang = true
			} else if s != 0 {
				status, header = s, hd
			}
		}
		if status == http.StatusNoContent && !hang {
			switch x := rand.Float64(); {
			case x < h.cfg.TimeoutRate:
				hang = true
			case x < h.cfg.TimeoutRate+h.cfg.FailureRate:
				status = http.StatusServiceUnavailable
			}
		}
	}
	if hang {
		status = 0
	}
	rec.Status = status
	h.record(rec)
	h.cfg.Logger.Info("webhook received", "webhook_id", rec.ID, "type", rec.Type, "order_id", rec.OrderID,
		"version", rec.Version, "verified", rec.Verified, "status", status)
	if h.cfg.Latency > 0 && !hang {
		select {
		case <-time.After(h.cfg.Latency):
		case <-r.Context().Done():
			return
		}
	}
	if hang {
		select {
		case <-time.After(h.cfg.HangFor):
		case <-r.Context().Done():
		}
		return
	}
	for k, vs := range header {
		for _, v := range vs {
			w.Header().Add(k, v)
		}
	}
	w.WriteHeader(status)
}

func (h *Receiver) record(rec Received) {
	h.mu.Lock()
	h.received = append(h.received, rec)
	if h.cfg.Keep > 0 && len(h.received) > 2*h.cfg.Keep {
		h.received = append([]Received(nil), h.received[len(h.received)-h.cfg.Keep:]...)
	}
	close(h.notify)
	h.notify = make(chan struct{})
	h.mu.Unlock()
}

// Received returns what was received so far, in arrival order.
func (h *Receiver) Received() []Received {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]Received(nil), h.received...)
}

// Wait returns what was received once cond holds for it, or an error
// when ctx ends first. It waits on arrivals, never polls.
func (h *Receiver) Wait(ctx context.Context, cond func([]Received) bool) ([]Received, error) {
	for {
		h.mu.Lock()
		got := append([]Received(nil), h.received...)
		ch := h.notify
		h.mu.Unlock()
		if cond(got) {
			return got, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return got, ctx.Err()
		}
	}
}

// Serve serves the receiver on ln until ctx ends.
func (h *Receiver) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// settings is the table behind [LoadConfig] and `hooksim -h`.
var settings = simserver.Settings[Config]{
	Command: "hooksim",
	About: `hooksim receives the BFF's outbound webhooks: it answers every POST with
204 (or 503, or never, at the configured rates) after the configured
latency, verifies signatures when it knows the secret, and lists what it
received at GET /received. Every setting is read from its environment
variable; a flag overrides it.
`,
	List: []simserver.Setting[Config]{
		{Env: "HOOKSIM_ADDR", Flag: "addr", Default: DefaultAddr, Doc: "listen address (host:port)",
			Set: simserver.HostPort(func(c *Config) *string { return &c.Addr })},
		{Env: "HOOKSIM_LATENCY", Flag: "latency", Default: "0s", Doc: "wait before every answer (e.g. 50ms)",
			Set: simserver.Duration(func(c *Config) *time.Duration { return &c.Latency }, "50ms")},
		{Env: "HOOKSIM_FAILURE_RATE", Flag: "failure-rate", Default: "0", Doc: "share of requests answered 503, 0..1",
			Set: simserver.Rate(func(c *Config) *float64 { return &c.FailureRate })},
		{Env: "HOOKSIM_TIMEOUT_RATE", Flag: "timeout-rate", Default: "0", Doc: "share of requests never answered, 0..1",
			Set: simserver.Rate(func(c *Config) *float64 { return &c.TimeoutRate })},
		{Env: "HOOKSIM_SECRET", Flag: "secret", Default: "",
			Doc: "the endpoint's whsec_ secret: verify every signature (401 when it does not verify); empty: no check (prefer the variable: flags show in ps)",
			Set: func(c *Config, v string) error {
				if v != "" {
					if _, err := standardwebhooks.NewWebhook(v); err != nil {
						return errors.New("not a whsec_ secret")
					}
				}
				c.Secret = v
				return nil
			}},
	},
}

// LoadConfig reads the settings of cmd/hooksim: each from its variable,
// overridden by its flag. -h prints them and returns flag.ErrHelp.
func LoadConfig(args []string, getenv func(string) string, usage io.Writer) (Config, error) {
	c, err := settings.Load(args, getenv, usage)
	if err != nil {
		return Config{}, err
	}
	if c.FailureRate+c.TimeoutRate > 1 {
		return Config{}, errors.New("HOOKSIM_FAILURE_RATE + HOOKSIM_TIMEOUT_RATE is more than 1")
	}
	return c, nil
}
