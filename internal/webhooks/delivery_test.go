package webhooks_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/shop/bff/internal/order"
	"github.com/shop/bff/internal/postgres"
	"github.com/shop/bff/internal/telemetry"
	"github.com/shop/bff/internal/webhooks"
	"github.com/shop/bff/internal/webhooks/hooksim"
)

// A delivery verifies with the Standard Webhooks Go library and carries
// the event: webhook-id is the event id, the body its type, time and
// fields.
func TestDeliverySignedToStandardWebhooks(t *testing.T) {
	w := newWorld(t)
	obs := newAttempts()
	rcv, url := w.receiver(hooksim.Config{})
	ep := w.endpoint(url)
	run(t, testConfig(w.store, obs))
	ev := w.place()

	got := waitReceived(t, rcv, "the delivery", func(r []hooksim.Received) bool { return len(r) >= 1 })[0]
	hook, err := standardwebhooks.NewWebhook(ep.Secret)
	if err != nil {
		t.Fatal(err)
	}
	if err := hook.Verify(got.Body, got.Header); err != nil {
		t.Fatalf("the spec's library does not verify the delivery: %v (headers %v)", err, got.Header)
	}
	other, _ := standardwebhooks.NewWebhook(webhooks.NewSecret())
	if err := other.Verify(got.Body, got.Header); err == nil {
		t.Fatal("another secret verifies the delivery")
	}
	if err := hook.Verify(append([]byte(" "), got.Body...), got.Header); err == nil {
		t.Fatal("a changed body verifies")
	}
	if got.ID != ev.ID || ev.ID == "" {
		t.Fatalf("webhook-id = %q, want the event id %q", got.ID, ev.ID)
	}
	var body struct {
		Type      string         `json:"type"`
		Timestamp time.Time      `json:"timestamp"`
		Data      map[string]any `json:"data"`
	}
	if err := json.Unmarshal(got.Body, &body); err != nil {
		t.Fatal(err)
	}
	if body.Type != "order.placed" || !body.Timestamp.Equal(ev.At) {
		t.Fatalf("body type %q timestamp %v, want order.placed at %v", body.Type, body.Timestamp, ev.At)
	}
	for k, want := range map[string]any{"id": ev.ID, "orderId": ev.OrderID, "type": "ORDER_PLACED", "fromStatus": nil,
		"toStatus": "PENDING_PAYMENT", "version": float64(1), "actor": w.customer.ID, "status": "PENDING_PAYMENT", "paymentStatus": "UNPAID"} {
		if body.Data[k] != want {
			t.Errorf("data.%s = %v, want %v", k, body.Data[k], want)
		}
	}
	if _, ok := body.Data["at"]; !ok {
		t.Error("data.at is missing")
	}
	if ts, _ := strconv.ParseInt(got.Timestamp, 10, 64); ts == 0 || time.Since(time.Unix(ts, 0)) > time.Hour {
		t.Errorf("webhook-timestamp %q is not the send time", got.Timestamp)
	}
	obs.wait(t, "the delivered attempt", func(as []webhooks.Attempt) bool {
		return count(as, func(a webhooks.Attempt) bool { return a.State == postgres.DeliveryDelivered }) == 1
	})
}

// After a rotation both secrets sign (the spec's library verifies with
// either) until the overlap ends; then only the new one.
func TestSecretRotation(t *testing.T) {
	w := newWorld(t)
	obs := newAttempts()
	rcv, url := w.receiver(hooksim.Config{})
	ep := w.endpoint(url)
	run(t, testConfig(w.store, obs))
	ctx := context.Background()

	second := webhooks.NewSecret()
	if _, err := w.store.RotateWebhookSecret(ctx, ep.ID, second, time.Hour); err != nil {
		t.Fatal(err)
	}
	w.place()
	got := waitReceived(t, rcv, "a delivery", func(r []hooksim.Received) bool { return len(r) >= 1 })[0]
	if n := len(strings.Fields(got.Signature)); n != 2 {
		t.Fatalf("%d signatures during the overlap, want 2: %q", n, got.Signature)
	}
	for _, s := range []string{ep.Secret, second} {
		h, _ := standardwebhooks.NewWebhook(s)
		if err := h.Verify(got.Body, got.Header); err != nil {
			t.Fatalf("secret %s… does not verify during the overlap: %v", s[:10], err)
		}
	}

	third := webhooks.NewSecret()
	if _, err := w.store.RotateWebhookSecret(ctx, ep.ID, third, 0); err != nil { // no overlap
		t.Fatal(err)
	}
	w.place()
	got = waitReceived(t, rcv, "a second delivery", func(r []hooksim.Received) bool { return len(r) >= 2 })[1]
	if n := len(strings.Fields(got.Signature)); n != 1 {
		t.Fatalf("%d signatures without overlap, want 1", n)
	}
	h, _ := standardwebhooks.NewWebhook(third)
	if err := h.Verify(got.Body, got.Header); err != nil {
		t.Fatalf("the new secret does not verify: %v", err)
	}
	for _, old := range []string{ep.Secret, second} {
		h, _ := standardwebhooks.NewWebhook(old)
		if err := h.Verify(got.Body, got.Header); err == nil {
			t.Fatal("a retired secret still verifies")
		}
	}
}

// 503 is retried with the same webhook-id until it is delivered; a 429's
// Retry-After sets the next attempt.
func TestRetryOn503And429(t *testing.T) {
	w := newWorld(t)
	obs := newAttempts()
	var mu sync.Mutex
	answers := []int{503, 503}
	rcv, url := w.receiver(hooksim.Config{Respond: func(hooksim.Received) (int, http.Header) {
		mu.Lock()
		defer mu.Unlock()
		if len(answers) == 0 {
			return 0, nil
		}
		s := answers[0]
		answers = answers[1:]
		if s == 429 {
			return s, http.Header{"Retry-After": {"3600"}}
		}
		return s, nil
	}})
	ep := w.endpoint(url)
	run(t, testConfig(w.store, obs))
	ev := w.place()

	as := obs.wait(t, "delivery after two 503", func(as []webhooks.Attempt) bool {
		return count(as, func(a webhooks.Attempt) bool { return a.State == postgres.DeliveryDelivered }) == 1
	})
	got := rcv.Received()
	if len(got) != 3 || len(as) != 3 {
		t.Fatalf("%d requests, %d attempts; want 3 (503, 503, 204)", len(got), len(as))
	}
	for i, r := range got {
		if r.ID != ev.ID {
			t.Fatalf("request %d has webhook-id %q, want %q on every retry", i, r.ID, ev.ID)
		}
	}
	for i, a := range as[:2] {
		if a.Outcome != postgres.AttemptRetry || a.Status != 503 || a.Attempt != i+1 {
			t.Fatalf("attempt %d = %+v, want a retry after 503", i+1, a)
		}
		// Full jitter: uniform in [0, cap], the cap 5ms then 10ms.
		if limit := 5 * time.Millisecond << i; a.Delay < 0 || a.Delay > limit {
			t.Fatalf("attempt %d backoff %v outside [0, %v]", i+1, a.Delay, limit)
		}
	}
	ds, _, err := w.store.WebhookDeliveries(context.Background(), ep.ID, "", 10, 0)
	if err != nil || len(ds) != 1 {
		t.Fatalf("deliveries: %v %d", err, len(ds))
	}
	if d := ds[0]; d.State != postgres.DeliveryDelivered || d.Attempts != 3 || len(d.Log) != 3 ||
		*d.Log[0].Status != 503 || *d.Log[2].Status != 204 || d.EventID != ev.ID {
		t.Fatalf("delivery record %+v (log %+v)", d, d.Log)
	}

	// 429 with Retry-After: 3600 waits an hour, not the backoff.
	mu.Lock()
	answers = []int{429}
	mu.Unlock()
	w.place()
	as = obs.wait(t, "the 429", func(as []webhooks.Attempt) bool {
		return count(as, func(a webhooks.Attempt) bool { return a.Status == 429 }) == 1
	})
	last := as[len(as)-1]
	if last.Outcome != postgres.AttemptRetry || last.Delay != time.Hour || last.State != postgres.DeliveryPending {
		t.Fatalf("429 attempt %+v, want a retry in 1h", last)
	}
	ds, _, _ = w.store.WebhookDeliveries(context.Background(), ep.ID, postgres.DeliveryPending, 10, 0)
	if len(ds) != 1 || ds[0].NextAttemptAt == nil || time.Until(*ds[0].NextAttemptAt) < 50*time.Minute {
		t.Fatalf("pending delivery after 429: %+v", ds)
	}
}

// An attempt that gets no answer within the timeout is retried.
func TestRetryOnTimeout(t *testing.T) {
	w := newWorld(t)
	obs := newAttempts()
	var mu sync.Mutex
	first := true
	rcv, url := w.receiver(hooksim.Config{Respond: func(hooksim.Received) (int, http.Header) {
		mu.Lock()
		defer mu.Unlock()
		if first {
			first = false
			return hooksim.Hang, nil
		}
		return 0, nil
	}})
	w.endpoint(url)
	cfg := testConfig(w.store, obs)
	cfg.Timeout = 300 * time.Millisecond
	run(t, cfg)
	ev := w.place()

	as := obs.wait(t, "delivery after a timeout", func(as []webhooks.Attempt) bool {
		return count(as, func(a webhooks.Attempt) bool { return a.State == postgres.DeliveryDelivered }) == 1
	})
	if len(as) != 2 || as[0].Outcome != postgres.AttemptRetry || as[0].Status != 0 || as[0].Error != "timeout" {
		t.Fatalf("attempts %+v, want a timeout then a delivery", as)
	}
	got := rcv.Received()
	if len(got) != 2 || got[0].ID != ev.ID || got[1].ID != ev.ID {
		t.Fatalf("received %+v", got)
	}
}

// While an endpoint fails an order's first event, the order's later event
// waits; another order's events are not held up.
func TestInOrderPerOrderWhileOneEventFails(t *testing.T) {
	w := newWorld(t)
	obs := newAttempts()
	var mu sync.Mutex
	failing := map[string]int{} // webhook-id → 503s left
	rcv, url := w.receiver(hooksim.Config{Respond: func(r hooksim.Received) (int, http.Header) {
		mu.Lock()
		defer mu.Unlock()
		if failing[r.ID] > 0 {
			failing[r.ID]--
			return 503, nil
		}
		return 0, nil
	}})
	w.endpoint(url)
	// Commit the events before the worker starts, so the later event is
	// due while the earlier one fails.
	a1 := w.place()
	mu.Lock()
	failing[a1.ID] = 3
	mu.Unlock()
	a2 := w.cancel(a1.OrderID, 1)
	b1 := w.place()
	run(t, testConfig(w.store, obs))

	got := waitReceived(t, rcv, "every event delivered", func(r []hooksim.Received) bool {
		ok := map[string]bool{}
		for _, x := range r {
			if x.Status == 204 {
				ok[x.ID] = true
			}
		}
		return ok[a1.ID] && ok[a2.ID] && ok[b1.ID]
	})
	var seq []string
	for _, x := range got {
		if x.OrderID == a1.OrderID {
			seq = append(seq, x.ID+"/"+strconv.Itoa(x.Status))
		}
	}
	want := []string{a1.ID + "/503", a1.ID + "/503", a1.ID + "/503", a1.ID + "/204", a2.ID + "/204"}
	if strings.Join(seq, " ") != strings.Join(want, " ") {
		t.Fatalf("order A received %v, want %v (the cancellation after the placement is delivered)", seq, want)
	}
	for i, x := range got {
		if x.ID == b1.ID && x.Status == 204 && i > 3 {
			t.Logf("order B delivered as request %d", i)
		}
	}
}

// A delivery failing for its whole retry window is dead-lettered (and
// counted), and a redelivery sends it again with the same webhook-id. A
// final refusal (410) is not retried.
func TestDeadLetterAndRedelivery(t *testing.T) {
	w := newWorld(t)
	obs := newAttempts()
	var mu sync.Mutex
	status := 503
	rcv, url := w.receiver(hooksim.Config{Respond: func(hooksim.Received) (int, http.Header) {
		mu.Lock()
		defer mu.Unlock()
		return status, nil
	}})
	ep := w.endpoint(url)
	cfg := testConfig(w.store, obs)
	cfg.RetryFor = 30 * time.Millisecond
	run(t, cfg)
	ev := w.place()
	ctx := context.Background()

	as := obs.wait(t, "the dead letter", func(as []webhooks.Attempt) bool {
		return count(as, func(a webhooks.Attempt) bool { return a.State == postgres.DeliveryDead }) == 1
	})
	dead := as[len(as)-1]
	if dead.Outcome != postgres.DeliveryDead || dead.WebhookID != ev.ID {
		t.Fatalf("last attempt %+v", dead)
	}
	qs, err := w.store.WebhookQueues(ctx)
	if err != nil || len(qs) != 1 || qs[0].Dead != 1 || qs[0].Pending != 0 {
		t.Fatalf("queues %+v %v, want one dead letter", qs, err)
	}
	n := len(rcv.Received())

	mu.Lock()
	status = 0 // the endpoint is back
	mu.Unlock()
	d, err := w.store.RedeliverWebhook(ctx, strconv.FormatInt(dead.DeliveryID, 10))
	if err != nil || d.State != postgres.DeliveryPending {
		t.Fatalf("redeliver: %+v %v", d, err)
	}
	obs.wait(t, "the redelivery", func(as []webhooks.Attempt) bool {
		return count(as, func(a webhooks.Attempt) bool { return a.State == postgres.DeliveryDelivered }) == 1
	})
	got := rcv.Received()
	if len(got) != n+1 || got[n].ID != ev.ID || got[n].Status != 204 {
		t.Fatalf("redelivery received %+v", got[n:])
	}
	if qs, _ := w.store.WebhookQueues(ctx); qs[0].Dead != 0 {
		t.Fatalf("dead letters after redelivery: %+v", qs)
	}

	// 410 Gone: final at the first attempt.
	mu.Lock()
	status = 410
	mu.Unlock()
	w.place()
	as = obs.wait(t, "the refusal", func(as []webhooks.Attempt) bool {
		return count(as, func(a webhooks.Attempt) bool { return a.Status == 410 }) == 1
	})
	if last := as[len(as)-1]; last.State != postgres.DeliveryFailed || last.Outcome != postgres.AttemptFailed {
		t.Fatalf("410 attempt %+v, want failed", last)
	}
	if ds, _, _ := w.store.WebhookDeliveries(ctx, ep.ID, postgres.DeliveryFailed, 10, 0); len(ds) != 1 || ds[0].Attempts != 1 {
		t.Fatalf("failed deliveries %+v", ds)
	}

	// Replay queues the finished deliveries again.
	mu.Lock()
	status = 0
	mu.Unlock()
	queued, err := w.store.ReplayWebhooks(ctx, ep.ID, ev.At)
	if err != nil || queued != 2 {
		t.Fatalf("replay queued %d (%v), want 2", queued, err)
	}
	obs.wait(t, "the replay", func(as []webhooks.Attempt) bool {
		return count(as, func(a webhooks.Attempt) bool { return a.State == postgres.DeliveryDelivered }) == 3
	})
}

// An endpoint whose attempts keep failing past DisableAfter is disabled,
// with the reason kept for staff; its deliveries are not sent meanwhile.
func TestEndpointDisabledAfterFailingTooLong(t *testing.T) {
	w := newWorld(t)
	obs := newAttempts()
	_, url := w.receiver(hooksim.Config{Respond: func(hooksim.Received) (int, http.Header) { return 500, nil }})
	ep := w.endpoint(url)
	cfg := testConfig(w.store, obs)
	cfg.DisableAfter = time.Millisecond
	run(t, cfg)
	w.place()
	as := obs.wait(t, "the endpoint disabled", func(as []webhooks.Attempt) bool {
		return count(as, func(a webhooks.Attempt) bool { return a.Disabled != "" }) == 1
	})
	e, err := w.store.WebhookEndpoint(context.Background(), ep.ID)
	if err != nil || e.Enabled || e.DisabledReason == nil || !strings.Contains(*e.DisabledReason, "500") {
		t.Fatalf("endpoint %+v %v, want disabled with a reason naming the failure", e, err)
	}
	t.Logf("disabled after %d attempts: %s", len(as), *e.DisabledReason)
}

// The circuit breaker opens after consecutive failures: deliveries of the
// endpoint then wait without attempts.
func TestBreakerStopsAttempts(t *testing.T) {
	w := newWorld(t)
	obs := newAttempts()
	rcv, url := w.receiver(hooksim.Config{Respond: func(hooksim.Received) (int, http.Header) { return 503, nil }})
	w.endpoint(url)
	cfg := testConfig(w.store, obs)
	cfg.BreakerFailures, cfg.BreakerOpenFor = 3, time.Hour
	cfg.PerEndpoint, cfg.Workers = 1, 1
	run(t, cfg)
	w.place()
	w.place()
	obs.wait(t, "three failures", func(as []webhooks.Attempt) bool { return len(as) >= 3 })
	// A healthy endpoint's delivery proves the worker went on claiming.
	ok, okURL := w.receiver(hooksim.Config{})
	w.endpoint(okURL)
	w.place()
	waitReceived(t, ok, "the healthy endpoint's delivery", func(r []hooksim.Received) bool { return len(r) == 1 })
	if n := len(rcv.Received()); n != 3 {
		t.Fatalf("the failing endpoint got %d requests, want 3 (the breaker opened)", n)
	}
}

// At registration and again at connect time, non-public addresses are
// refused unless allowed.
func TestSSRFRefused(t *testing.T) {
	ctx := context.Background()
	for _, u := range []string{"http://127.0.0.1:8080/hook", "http://localhost/x", "http://10.1.2.3/", "http://192.168.0.10/",
		"http://172.16.5.4/", "http://169.254.169.254/latest/meta-data", "http://[::1]:80/", "http://[fe80::1]/",
		"http://0.0.0.0/", "http://[::ffff:127.0.0.1]/", "http://100.64.0.1/", "http://foo.localhost/"} {
		err := webhooks.CheckURL(ctx, u, "input.url", false, nil)
		if oe := order.AsError(err); err == nil || oe.Code != order.CodeBadUserInput || oe.Extensions["field"] != "input.url" {
			t.Errorf("%s accepted: %v", u, err)
		}
		if err := webhooks.CheckURL(ctx, u, "input.url", true, nil); err != nil {
			t.Errorf("%s refused with private addresses allowed: %v", u, err)
		}
	}
	for _, u := range []string{"ftp://example.com/", "example.com/hook", "http://user:pw@example.com/", "http:///x", "javascript:alert(1)"} {
		if err := webhooks.CheckURL(ctx, u, "input.url", true, nil); err == nil {
			t.Errorf("%s accepted", u)
		}
	}
	if err := webhooks.CheckURL(ctx, "https://93.184.216.34/hooks", "input.url", false, nil); err != nil {
		t.Errorf("a public address is refused: %v", err)
	}

	// Connect time: an endpoint on loopback (registered while allowed, or
	// a name that now resolves there) is never connected to.
	w := newWorld(t)
	obs := newAttempts()
	rcv, url := w.receiver(hooksim.Config{})
	w.endpoint(url)
	cfg := testConfig(w.store, obs)
	cfg.AllowPrivate = false
	run(t, cfg)
	w.place()
	as := obs.wait(t, "a refused attempt", func(as []webhooks.Attempt) bool { return len(as) >= 1 })
	if as[0].Outcome != postgres.AttemptRetry || !strings.Contains(as[0].Error, "not a public address") {
		t.Fatalf("attempt %+v, want a refused connection", as[0])
	}
	if n := len(rcv.Received()); n != 0 {
		t.Fatalf("the loopback receiver got %d requests", n)
	}
	if !errors.Is(webhooksDialError(t), webhooks.ErrForbiddenAddress) {
		t.Fatal("the transport dials a loopback address")
	}
}

// webhooksDialError dials loopback through the production transport.
func webhooksDialError(t *testing.T) error {
	tr := webhooks.NewTransport(false, time.Second)
	_, err := tr.DialContext(context.Background(), "tcp", "127.0.0.1:1")
	return err
}

// An endpoint deleted while one of its deliveries is in flight: the
// attempt finishes, its result finds nothing to record, nothing more is
// sent to it and the worker goes on with other endpoints.
func TestEndpointDeletedMidRetry(t *testing.T) {
	w := newWorld(t)
	obs := newAttempts()
	inFlight := make(chan struct{}, 1)
	release := make(chan struct{})
	var once sync.Once
	rcv, url := w.receiver(hooksim.Config{Respond: func(hooksim.Received) (int, http.Header) {
		select {
		case inFlight <- struct{}{}:
		default:
		}
		<-release
		return 503, nil
	}})
	t.Cleanup(func() { once.Do(func() { close(release) }) }) // before the receiver closes
	ep := w.endpoint(url)
	run(t, testConfig(w.store, obs))
	w.place()
	select {
	case <-inFlight:
	case <-time.After(waitTimeout):
		t.Fatal("no attempt")
	}
	if err := w.store.DeleteWebhookEndpoint(context.Background(), ep.ID); err != nil {
		t.Fatal(err)
	}
	once.Do(func() { close(release) })
	as := obs.wait(t, "the orphaned attempt", func(as []webhooks.Attempt) bool { return len(as) == 1 })
	if as[0].State != "" || as[0].Err != nil {
		t.Fatalf("attempt %+v, want nothing recorded (the delivery is gone)", as[0])
	}
	ok, okURL := w.receiver(hooksim.Config{})
	w.endpoint(okURL)
	w.place()
	waitReceived(t, ok, "the other endpoint's delivery", func(r []hooksim.Received) bool { return len(r) == 1 })
	if n := len(rcv.Received()); n != 1 {
		t.Fatalf("the deleted endpoint got %d requests, want 1", n)
	}
}

// A rolled-back change writes no delivery; a committed one writes one per
// subscribed endpoint, in its transaction.
func TestDeliveriesCommitWithTheirEvent(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	a := w.endpoint("http://a.example/")
	b, err := w.store.CreateWebhookEndpoint(ctx, postgres.NewWebhookEndpoint{URL: "http://b.example/",
		EventTypes: []order.EventType{order.EventOrderCancelled}, Secret: webhooks.NewSecret()})
	if err != nil {
		t.Fatal(err)
	}
	boom := errors.New("roll back")
	_, err = w.store.InTx(ctx, func(tx *postgres.Tx) error {
		if _, err := tx.PlaceOrder(ctx, w.customer, postgres.PlaceOrderInput{
			Lines:   []order.LineInput{{ProductID: w.products[0].ID, Quantity: 1}},
			Address: order.Address{Name: "A", Line1: "B", City: "C", PostalCode: "1", Country: "DE"}, Currency: w.products[0].Price.Currency}); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("InTx: %v", err)
	}
	for _, e := range []string{a.ID, b.ID} {
		if ds, _, _ := w.store.WebhookDeliveries(ctx, e, "", 10, 0); len(ds) != 0 {
			t.Fatalf("a rolled-back change has deliveries: %+v", ds)
		}
	}
	p := w.place()
	c := w.cancel(p.OrderID, 1)
	da, _, _ := w.store.WebhookDeliveries(ctx, a.ID, "", 10, 0)
	db, _, _ := w.store.WebhookDeliveries(ctx, b.ID, "", 10, 0)
	if len(da) != 2 || len(db) != 1 || db[0].EventID != c.ID || da[0].EventID != c.ID || da[1].EventID != p.ID {
		t.Fatalf("deliveries a=%+v b=%+v", da, db)
	}
}

// Two instances (workers with their own pools) on one database deliver
// every event to every endpoint once, in order per order.
func TestTwoInstancesDeliverWithoutDuplicates(t *testing.T) {
	w := newWorld(t)
	obs := newAttempts()
	var recvs []*hooksim.Receiver
	for range 2 {
		r, url := w.receiver(hooksim.Config{})
		w.endpoint(url)
		recvs = append(recvs, r)
	}
	for range 2 {
		cfg := testConfig(w.openStore(), obs)
		run(t, cfg)
	}
	const orders = 30
	want := map[string]bool{}
	var wg sync.WaitGroup
	var mu sync.Mutex
	for range 3 {
		wg.Go(func() {
			for range orders / 3 {
				p := w.place()
				c := w.cancel(p.OrderID, 1)
				mu.Lock()
				want[p.ID], want[c.ID] = true, true
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	obs.wait(t, "every delivery recorded", func(as []webhooks.Attempt) bool {
		return count(as, func(a webhooks.Attempt) bool { return a.State == postgres.DeliveryDelivered }) >= 2*len(want)
	})
	for i, r := range recvs {
		got := waitReceived(t, r, "every event", func(r []hooksim.Received) bool { return len(r) >= len(want) })
		seen := map[string]int{}
		versions := map[string]int{}
		for _, x := range got {
			seen[x.ID]++
			if x.Version <= versions[x.OrderID] {
				t.Fatalf("endpoint %d: order %s version %d after %d", i, x.OrderID, x.Version, versions[x.OrderID])
			}
			versions[x.OrderID] = x.Version
		}
		for id := range want {
			if seen[id] != 1 {
				t.Fatalf("endpoint %d received event %s %d times", i, id, seen[id])
			}
		}
		if len(got) != len(want) {
			t.Fatalf("endpoint %d received %d requests for %d events", i, len(got), len(want))
		}
	}
}

// A sender that overruns its lease (or dies mid-attempt) loses the
// delivery: it is claimed again (by another instance, or by the same one)
// and sent again with the same webhook-id; the late sender's result is
// not recorded.
func TestLeaseOverrunResendsWithSameWebhookID(t *testing.T) {
	w := newWorld(t)
	obs := newAttempts()
	release := make(chan struct{})
	var once sync.Once
	var mu sync.Mutex
	n := 0
	rcv, url := w.receiver(hooksim.Config{Respond: func(hooksim.Received) (int, http.Header) {
		mu.Lock()
		n++
		first := n == 1
		mu.Unlock()
		if first {
			<-release // the first attempt hangs past its lease
		}
		return 0, nil
	}})
	t.Cleanup(func() { once.Do(func() { close(release) }) }) // before the receiver closes
	w.endpoint(url)
	for _, s := range []*postgres.Store{w.store, w.openStore()} { // two instances
		cfg := testConfig(s, obs)
		cfg.Lease = 50 * time.Millisecond
		run(t, cfg)
	}
	ev := w.place()
	obs.wait(t, "the takeover", func(as []webhooks.Attempt) bool {
		return count(as, func(a webhooks.Attempt) bool { return a.Attempt >= 2 && a.State == postgres.DeliveryDelivered }) == 1
	})
	once.Do(func() { close(release) })
	as := obs.wait(t, "the late result", func(as []webhooks.Attempt) bool {
		return count(as, func(a webhooks.Attempt) bool { return a.Attempt == 1 }) == 1
	})
	for _, a := range as {
		if a.Attempt == 1 && a.State != "" {
			t.Fatalf("the late sender recorded %+v", a)
		}
	}
	got := rcv.Received()
	if len(got) < 2 {
		t.Fatalf("received %d requests, want the event again after the lease", len(got))
	}
	for _, r := range got {
		if r.ID != ev.ID {
			t.Fatalf("received webhook-id %s, want %s on every send", r.ID, ev.ID)
		}
	}
	ds, _, _ := w.store.WebhookDeliveries(context.Background(), as[0].EndpointID, "", 5, 0)
	if len(ds) != 1 || ds[0].State != postgres.DeliveryDelivered || ds[0].Attempts < 2 {
		t.Fatalf("delivery %+v", ds)
	}
}

// Every attempt is a span with the outbound call's client span under it,
// and the receiver gets its traceparent.
func TestAttemptSpans(t *testing.T) {
	w := newWorld(t)
	obs := newAttempts()
	rcv, url := w.receiver(hooksim.Config{})
	w.endpoint(url)
	rec := tracetest.NewSpanRecorder()
	ended := &endSignal{ch: make(chan string, 16)}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec), sdktrace.WithSpanProcessor(ended))
	cfg := testConfig(w.store, obs)
	cfg.Tracer = tp.Tracer("test")
	cfg.Transport = telemetry.Transport(webhooks.NewTransport(true, time.Second),
		telemetry.WithTracerProvider(tp), telemetry.WithPropagator(propagation.TraceContext{}))
	run(t, cfg)
	ev := w.place()
	obs.wait(t, "the delivery", func(as []webhooks.Attempt) bool { return len(as) == 1 })
	for name := ""; name != "webhook.deliver"; {
		select {
		case name = <-ended.ch:
		case <-time.After(waitTimeout):
			t.Fatal("the attempt's span did not end")
		}
	}
	var parent, client sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		switch {
		case s.Name() == "webhook.deliver":
			parent = s
		case s.SpanKind() == trace.SpanKindClient:
			client = s
		}
	}
	if parent == nil || client == nil {
		t.Fatalf("spans %v, want webhook.deliver and a client span", rec.Ended())
	}
	if client.Parent().SpanID() != parent.SpanContext().SpanID() || client.SpanContext().TraceID() != parent.SpanContext().TraceID() {
		t.Fatal("the client span is not a child of the attempt's span")
	}
	attrs := map[string]string{}
	for _, a := range parent.Attributes() {
		attrs[string(a.Key)] = a.Value.Emit()
	}
	if attrs["webhook.id"] != ev.ID || attrs["webhook.attempt"] != "1" {
		t.Fatalf("attempt span attributes %v", attrs)
	}
	tp2 := rcv.Received()[0].Header.Get("traceparent")
	if !strings.Contains(tp2, client.SpanContext().TraceID().String()) {
		t.Fatalf("traceparent %q, want the trace %s", tp2, client.SpanContext().TraceID())
	}
}

// endSignal tells the names of ended spans.
type endSignal struct{ ch chan string }

func (e *endSignal) OnStart(context.Context, sdktrace.ReadWriteSpan) {}
func (e *endSignal) OnEnd(s sdktrace.ReadOnlySpan)                   { e.ch <- s.Name() }
func (e *endSignal) Shutdown(context.Context) error                  { return nil }
func (e *endSignal) ForceFlush(context.Context) error                { return nil }
