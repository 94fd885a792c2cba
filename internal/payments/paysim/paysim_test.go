package paysim_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shop/bff/internal/config"
	"github.com/shop/bff/internal/payments"
	"github.com/shop/bff/internal/payments/paysim"
)

var secret = []byte("test-secret-of-at-least-32-bytes-0123")

// receiver is the BFF's webhook endpoint as the simulator sees it: it
// verifies every signature and answers with the next status of its
// script (200 when the script is used up).
type receiver struct {
	t   *testing.T
	srv *httptest.Server

	mu     sync.Mutex
	script []int
	events []map[string]any
	bad    []string
}

func newReceiver(t *testing.T, script ...int) *receiver {
	rc := &receiver{t: t, script: script}
	rc.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rc.mu.Lock()
		defer rc.mu.Unlock()
		if err := payments.Verify(r.Header.Get(payments.SignatureHeader), body, [][]byte{secret}, time.Now(), payments.DefaultTolerance); err != nil {
			rc.bad = append(rc.bad, err.Error())
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		status := http.StatusOK
		if len(rc.script) > 0 {
			status, rc.script = rc.script[0], rc.script[1:]
		}
		if status == http.StatusOK {
			var ev map[string]any
			if err := json.Unmarshal(body, &ev); err != nil {
				rc.bad = append(rc.bad, "body: "+err.Error())
			}
			rc.events = append(rc.events, ev)
		}
		w.WriteHeader(status)
	}))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) received() []map[string]any {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if len(rc.bad) > 0 {
		rc.t.Errorf("webhooks refused by the receiver: %v", rc.bad)
	}
	return append([]map[string]any(nil), rc.events...)
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// newSim runs a simulator whose webhooks go to rc, with fast retries.
func newSim(t *testing.T, rc *receiver, mod func(*paysim.Config)) (*paysim.Server, *httptest.Server) {
	t.Helper()
	cfg := paysim.Config{WebhookURL: rc.srv.URL + "/webhooks/payments", Secret: secret, Logger: quiet(),
		DeliveryInitialBackoff: time.Millisecond, DeliveryMaxBackoff: 5 * time.Millisecond}
	if mod != nil {
		mod(&cfg)
	}
	sim, err := paysim.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(sim)
	t.Cleanup(func() {
		srv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = sim.Shutdown(ctx)
	})
	return sim, srv
}

const chargeBody = `{"orderId":"o-1","amountCents":19900,"currency":"USD","attempt":1}`

func post(t *testing.T, client *http.Client, url, key, body string) (int, map[string]string, error) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url+"/charges", strings.NewReader(body))
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	var out map[string]string
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out, nil
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestChargeHonoursIdempotencyKey(t *testing.T) {
	rc := newReceiver(t)
	sim, srv := newSim(t, rc, nil)
	st1, b1, err := post(t, srv.Client(), srv.URL, "charge-o-1-1", chargeBody)
	if err != nil || st1 != http.StatusCreated || !strings.HasPrefix(b1["id"], "ch_") || b1["status"] != "pending" {
		t.Fatalf("first charge: %d %v %v", st1, b1, err)
	}
	st2, b2, err := post(t, srv.Client(), srv.URL, "charge-o-1-1", chargeBody)
	if err != nil || st2 != http.StatusOK || b2["id"] != b1["id"] {
		t.Fatalf("replay: %d %v %v, want 200 with charge %s", st2, b2, err, b1["id"])
	}
	// Same request, other formatting: still the same charge.
	if st, b, _ := post(t, srv.Client(), srv.URL, "charge-o-1-1",
		`{ "attempt": 1, "currency": "USD", "amountCents": 19900, "orderId": "o-1" }`); st != http.StatusOK || b["id"] != b1["id"] {
		t.Fatalf("reformatted replay: %d %v", st, b)
	}
	waitFor(t, "the webhook", func() bool { return sim.Stats().WebhooksDelivered == 1 })

	s := sim.Stats()
	if s.Requests != 3 || s.ChargesCreated != 1 || s.Replays != 2 || s.WebhookAttempts != 1 {
		t.Errorf("stats %+v, want 3 requests, 1 charge, 2 replays, 1 webhook attempt", s)
	}
	// GET /stats says the same.
	resp, err := srv.Client().Get(srv.URL + "/stats")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got map[string]int64
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
		t.Fatal(err)
	}
	if got["chargesCreated"] != 1 || got["idempotentReplays"] != 2 || got["webhooksDelivered"] != 1 {
		t.Errorf("GET /stats = %v", got)
	}

	evs := rc.received()
	if len(evs) != 1 {
		t.Fatalf("webhooks %v, want 1", evs)
	}
	ev := evs[0]
	data, _ := ev["data"].(map[string]any)
	if ev["type"] != payments.EventPaymentSucceeded || !strings.HasPrefix(ev["id"].(string), "evt_") || ev["created"] == nil ||
		data["chargeId"] != b1["id"] || data["orderId"] != "o-1" || data["amountCents"] != 19900.0 ||
		data["currency"] != "USD" || data["failureCode"] != nil {
		t.Errorf("webhook body %v", ev)
	}
	if _, ok := data["failureCode"]; !ok {
		t.Error("failureCode must be present (null) on payment.succeeded")
	}
	if c := sim.Charges(); len(c) != 1 || c[0].ID != b1["id"] || c[0].IdempotencyKey != "charge-o-1-1" {
		t.Errorf("charges %+v", c)
	}
}

func TestChargeRejectsInvalidRequests(t *testing.T) {
	rc := newReceiver(t)
	sim, srv := newSim(t, rc, nil)
	if st, _, _ := post(t, srv.Client(), srv.URL, "k", chargeBody); st != http.StatusCreated {
		t.Fatalf("charge: %d", st)
	}
	tests := []struct {
		name, key, body string
		want            int
	}{
		{"key reused for another amount", "k", `{"orderId":"o-1","amountCents":1,"currency":"USD","attempt":1}`, 422},
		{"no key", "", chargeBody, 400},
		{"key not printable", "a\tb", chargeBody, 400},
		{"key too long", strings.Repeat("k", 256), chargeBody, 400},
		{"not JSON", "k2", `{`, 400},
		{"unknown field", "k2", `{"orderId":"o","amountCents":1,"currency":"USD","attempt":1,"card":"4242"}`, 400},
		{"no order", "k2", `{"amountCents":1,"currency":"USD","attempt":1}`, 400},
		{"zero amount", "k2", `{"orderId":"o","amountCents":0,"currency":"USD","attempt":1}`, 400},
		{"bad currency", "k2", `{"orderId":"o","amountCents":1,"currency":"US","attempt":1}`, 400},
		{"no attempt", "k2", `{"orderId":"o","amountCents":1,"currency":"USD"}`, 400},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if st, _, err := post(t, srv.Client(), srv.URL, tc.key, tc.body); st != tc.want {
				t.Errorf("status %d (%v), want %d", st, err, tc.want)
			}
		})
	}
	if resp, err := srv.Client().Get(srv.URL + "/charges"); err != nil || resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET /charges: %v %v, want 405", resp.StatusCode, err)
	}
	if s := sim.Stats(); s.ChargesCreated != 1 || s.Rejected != int64(len(tests)) {
		t.Errorf("stats %+v, want 1 charge and %d rejections", s, len(tests))
	}
}

func TestForcedErrorsThenSuccess(t *testing.T) {
	rc := newReceiver(t)
	sim, srv := newSim(t, rc, nil)
	sim.Force(paysim.Fail, paysim.Fail)
	for i, want := range []int{503, 503, 201, 200} {
		if st, _, err := post(t, srv.Client(), srv.URL, "k", chargeBody); st != want {
			t.Fatalf("request %d: %d (%v), want %d", i+1, st, err, want)
		}
	}
	waitFor(t, "the webhook", func() bool { return sim.Stats().WebhooksDelivered == 1 })
	if s := sim.Stats(); s.Errors != 2 || s.ChargesCreated != 1 || s.Replays != 1 {
		t.Errorf("stats %+v, want 2 errors, 1 charge, 1 replay", s)
	}
}

func TestErrorRateOne(t *testing.T) {
	rc := newReceiver(t)
	sim, srv := newSim(t, rc, func(c *paysim.Config) { c.ErrorRate = 1 })
	for range 3 {
		if st, _, _ := post(t, srv.Client(), srv.URL, "k", chargeBody); st != http.StatusServiceUnavailable {
			t.Fatalf("status %d, want 503", st)
		}
	}
	if s := sim.Stats(); s.Errors != 3 || s.ChargesCreated != 0 {
		t.Errorf("stats %+v", s)
	}
}

func TestDeclineIsReportedByWebhook(t *testing.T) {
	rc := newReceiver(t)
	sim, srv := newSim(t, rc, func(c *paysim.Config) { c.DeclineRate = 1 })
	if st, _, _ := post(t, srv.Client(), srv.URL, "k", chargeBody); st != http.StatusCreated {
		t.Fatalf("a decline is still an accepted charge: %d", st)
	}
	waitFor(t, "the webhook", func() bool { return sim.Stats().WebhooksDelivered == 1 })
	ev := rc.received()[0]
	if ev["type"] != payments.EventPaymentFailed || ev["data"].(map[string]any)["failureCode"] != paysim.FailureCodeDeclined {
		t.Errorf("webhook %v, want payment.failed with card_declined", ev)
	}
	if s := sim.Stats(); s.Declined != 1 {
		t.Errorf("stats %+v", s)
	}
}

// A simulated timeout processes the charge but never answers; the retry
// with the same key gets the charge that was created.
func TestTimeoutLosesTheAnswerNotTheCharge(t *testing.T) {
	rc := newReceiver(t)
	sim, srv := newSim(t, rc, nil)
	sim.Force(paysim.Timeout)
	client := &http.Client{Timeout: 100 * time.Millisecond}
	if _, _, err := post(t, client, srv.URL, "k", chargeBody); err == nil {
		t.Fatal("the timed-out request was answered")
	}
	st, b, err := post(t, srv.Client(), srv.URL, "k", chargeBody)
	if err != nil || st != http.StatusOK {
		t.Fatalf("retry: %d %v, want the 200 replay", st, err)
	}
	waitFor(t, "the webhook", func() bool { return sim.Stats().WebhooksDelivered == 1 })
	if s := sim.Stats(); s.Timeouts != 1 || s.ChargesCreated != 1 || s.Replays != 1 {
		t.Errorf("stats %+v", s)
	}
	if c := sim.Charges(); len(c) != 1 || c[0].ID != b["id"] {
		t.Errorf("charges %+v, replay %v", c, b)
	}
}

// Delivery is retried, signed anew each time, until the BFF answers 2xx.
func TestWebhookDeliveryIsRetried(t *testing.T) {
	rc := newReceiver(t, 500, 503, 404)
	sim, srv := newSim(t, rc, nil)
	if st, _, _ := post(t, srv.Client(), srv.URL, "k", chargeBody); st != http.StatusCreated {
		t.Fatal(st)
	}
	waitFor(t, "the webhook", func() bool { return sim.Stats().WebhooksDelivered == 1 })
	if s := sim.Stats(); s.WebhookAttempts != 4 || s.WebhooksPending != 0 {
		t.Errorf("stats %+v, want 4 attempts", s)
	}
	if evs := rc.received(); len(evs) != 1 {
		t.Errorf("received %d webhooks, want 1", len(evs))
	}
}

func TestWebhookAbandonedAfterMaxAttempts(t *testing.T) {
	rc := newReceiver(t, 500, 500, 500, 500)
	sim, srv := newSim(t, rc, func(c *paysim.Config) { c.DeliveryMaxAttempts = 3 })
	if st, _, _ := post(t, srv.Client(), srv.URL, "k", chargeBody); st != http.StatusCreated {
		t.Fatal(st)
	}
	waitFor(t, "the webhook to be abandoned", func() bool { return sim.Stats().WebhooksAbandoned == 1 })
	if s := sim.Stats(); s.WebhookAttempts != 3 || s.WebhooksDelivered != 0 {
		t.Errorf("stats %+v", s)
	}
}

// Serve shuts down on cancel: held requests end, the delivery in progress
// finishes, and new requests are refused.
func TestServeShutsDownGracefully(t *testing.T) {
	rc := newReceiver(t)
	sim, err := paysim.New(paysim.Config{WebhookURL: rc.srv.URL, Secret: secret, Logger: quiet(),
		DeliveryInitialBackoff: time.Millisecond, DeliveryMaxBackoff: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- sim.Serve(ctx, ln, 10*time.Second) }()

	sim.Force(paysim.Timeout)
	held := make(chan error, 1)
	go func() {
		_, _, err := post(t, http.DefaultClient, url, "k", chargeBody)
		held <- err
	}()
	waitFor(t, "the held request", func() bool { return sim.Stats().Timeouts == 1 })
	cancel()
	if err := <-held; err == nil {
		t.Error("the held request got an answer; want the connection dropped")
	}
	if err := <-served; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	if s := sim.Stats(); s.WebhooksDelivered != 1 || s.WebhooksPending != 0 {
		t.Errorf("stats after shutdown %+v, want the webhook delivered", s)
	}
	if _, _, err := post(t, http.DefaultClient, url, "k2", chargeBody); err == nil {
		t.Error("served after shutdown")
	}
}

// A request waiting out the latency is answered 503 on shutdown.
func TestShutdownEndsTheLatencyWait(t *testing.T) {
	rc := newReceiver(t)
	sim, srv := newSim(t, rc, func(c *paysim.Config) { c.Latency = time.Hour })
	done := make(chan int, 1)
	go func() {
		st, _, _ := post(t, srv.Client(), srv.URL, "k", chargeBody)
		done <- st
	}()
	waitFor(t, "the request", func() bool { return sim.Stats().Requests == 1 })
	if err := sim.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if st := <-done; st != http.StatusServiceUnavailable {
		t.Errorf("status %d, want 503", st)
	}
	if s := sim.Stats(); s.ChargesCreated != 0 {
		t.Errorf("stats %+v", s)
	}
}

func TestNewValidates(t *testing.T) {
	ok := paysim.Config{WebhookURL: "http://127.0.0.1:1/w", Secret: secret}
	for name, mod := range map[string]func(*paysim.Config){
		"no webhook URL":    func(c *paysim.Config) { c.WebhookURL = "" },
		"ftp webhook URL":   func(c *paysim.Config) { c.WebhookURL = "ftp://x" },
		"no secret":         func(c *paysim.Config) { c.Secret = nil },
		"negative latency":  func(c *paysim.Config) { c.Latency = -time.Second },
		"decline rate 1.5":  func(c *paysim.Config) { c.DeclineRate = 1.5 },
		"error rate -0.1":   func(c *paysim.Config) { c.ErrorRate = -0.1 },
		"timeout rate 1.01": func(c *paysim.Config) { c.TimeoutRate = 1.01 },
	} {
		c := ok
		mod(&c)
		if _, err := paysim.New(c); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := paysim.New(ok); err != nil {
		t.Errorf("valid config: %v", err)
	}
}

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestLoadConfigDefaults(t *testing.T) {
	c, err := paysim.LoadConfig(nil, env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	want := paysim.Config{Addr: "127.0.0.1:8090", WebhookURL: "http://127.0.0.1:8080/webhooks/payments",
		Secret: []byte(paysim.DefaultSecret), Latency: 800 * time.Millisecond}
	if c.Addr != want.Addr || c.WebhookURL != want.WebhookURL || !bytes.Equal(c.Secret, want.Secret) ||
		c.Latency != want.Latency || c.DeclineRate != 0 || c.ErrorRate != 0 || c.TimeoutRate != 0 {
		t.Errorf("defaults %+v, want %+v", c, want)
	}
	if "http://"+c.Addr != config.DefaultPaymentsURL {
		t.Errorf("the default address %s is not where the BFF looks (%s)", c.Addr, config.DefaultPaymentsURL)
	}
}

func TestLoadConfigEnvAndFlags(t *testing.T) {
	e := env(map[string]string{"PAYSIM_ADDR": "0.0.0.0:9000", "PAYSIM_WEBHOOK_URL": "https://bff.example/webhooks/payments",
		"WEBHOOK_SECRET": "new, old", "PAYSIM_LATENCY": "0", "PAYSIM_DECLINE_RATE": "0.25",
		"PAYSIM_ERROR_RATE": "0.5", "PAYSIM_TIMEOUT_RATE": "1"})
	c, err := paysim.LoadConfig(nil, e, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.Addr != "0.0.0.0:9000" || c.WebhookURL != "https://bff.example/webhooks/payments" || string(c.Secret) != "new" ||
		c.Latency != 0 || c.DeclineRate != 0.25 || c.ErrorRate != 0.5 || c.TimeoutRate != 1 {
		t.Errorf("from env: %+v", c)
	}
	c, err = paysim.LoadConfig([]string{"-addr", ":1", "-latency=2s", "-decline-rate=0", "-webhook-secret=flagged",
		"-error-rate", "0.1", "-timeout-rate", "0.2", "-webhook-url", "http://x/w"}, e, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.Addr != ":1" || c.Latency != 2*time.Second || c.DeclineRate != 0 || string(c.Secret) != "flagged" ||
		c.ErrorRate != 0.1 || c.TimeoutRate != 0.2 || c.WebhookURL != "http://x/w" {
		t.Errorf("flags over env: %+v", c)
	}
}

func TestLoadConfigNamesTheInvalidSetting(t *testing.T) {
	for name, value := range map[string]string{"PAYSIM_ADDR": "nope", "PAYSIM_WEBHOOK_URL": "ftp://x",
		"WEBHOOK_SECRET": " , ", "PAYSIM_LATENCY": "fast", "PAYSIM_DECLINE_RATE": "2",
		"PAYSIM_ERROR_RATE": "-1", "PAYSIM_TIMEOUT_RATE": "NaN"} {
		_, err := paysim.LoadConfig(nil, env(map[string]string{name: value}), io.Discard)
		if err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s=%q: %v, want an error naming %s", name, value, err, name)
		}
	}
	_, err := paysim.LoadConfig([]string{"-timeout-rate=7"}, env(nil), io.Discard)
	if err == nil || !strings.Contains(err.Error(), "-timeout-rate") {
		t.Errorf("-timeout-rate=7: %v, want an error naming the flag", err)
	}
	if _, err := paysim.LoadConfig([]string{"extra"}, env(nil), io.Discard); err == nil {
		t.Error("a positional argument was accepted")
	}
}

func TestHelpListsEverySetting(t *testing.T) {
	var out bytes.Buffer
	_, err := paysim.LoadConfig([]string{"-h"}, env(nil), &out)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("-h: %v, want flag.ErrHelp", err)
	}
	for _, s := range []string{"-addr", "PAYSIM_ADDR", "-webhook-url", "PAYSIM_WEBHOOK_URL", "-webhook-secret", "WEBHOOK_SECRET",
		"-latency", "PAYSIM_LATENCY", "800ms", "-decline-rate", "PAYSIM_DECLINE_RATE", "-error-rate", "PAYSIM_ERROR_RATE",
		"-timeout-rate", "PAYSIM_TIMEOUT_RATE", "127.0.0.1:8090", "http://127.0.0.1:8080/webhooks/payments"} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("-h does not mention %s:\n%s", s, out.String())
		}
	}
}
