package payments_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/sony/gobreaker/v2"

	"github.com/shop/bff/internal/order"
	"github.com/shop/bff/internal/payments"
	"github.com/shop/bff/internal/payments/paysim"
	"github.com/shop/bff/internal/postgres"
	"github.com/shop/bff/internal/testenv"
)

var testSecret = []byte("e2e-webhook-secret-of-32-bytes-or-more")

// env is the payment path of one test, wired as the server wires it: a
// worker with the HTTP provider pointed at the simulator, and the
// simulator's webhooks going to the webhook handler over the Postgres
// store (through NewStoreAdapter).
type env struct {
	t        *testing.T
	store    *postgres.Store
	db       *pgxpool.Pool // the test's own, for SQL of its own
	alice    *order.User
	sim      *paysim.Server
	simAddr  string
	simHTTP  *http.Server // nil while the simulator is down
	provider *payments.HTTPProvider
	worker   *payments.Worker
	hook     *httptest.Server
	reg      *prometheus.Registry
	logger   *slog.Logger
	jobs     jobLog // what the worker made of its claims
}

// jobLog records the claims the worker processed (WorkerConfig.Observe).
type jobLog struct {
	mu   sync.Mutex
	seen []payments.JobProcessed
	// changed is closed, and replaced, on every record.
	changed chan struct{}
}

func (l *jobLog) record(p payments.JobProcessed) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.seen = append(l.seen, p)
	close(l.changed)
	l.changed = make(chan struct{})
}

// results returns the results of the claims of one payment, in order.
func (l *jobLog) results(orderID string, attempt int) ([]string, <-chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, p := range l.seen {
		if p.OrderID == orderID && p.Attempt == attempt {
			out = append(out, p.Result)
		}
	}
	return out, l.changed
}

type envOptions struct {
	http      payments.HTTPConfig
	worker    payments.WorkerConfig
	simDown   bool // the simulator starts down
	runWorker bool
}

func newEnv(t *testing.T, opt envOptions) *env {
	t.Helper()
	store, url := testenv.Store(t, true, postgres.Config{})
	alice, err := store.UserByEmail(context.Background(), "alice@example.com")
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, store: store, db: testenv.DB(t, url), alice: alice, reg: prometheus.NewRegistry(),
		logger: slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})),
		jobs:   jobLog{changed: make(chan struct{})}}
	m := payments.NewMetrics()
	if err := m.Register(e.reg); err != nil {
		t.Fatal(err)
	}
	results := payments.NewStoreAdapter(store)

	h, err := payments.NewWebhookHandler(payments.WebhookConfig{Secrets: [][]byte{testSecret}, Store: results,
		Logger: e.logger, Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	e.hook = httptest.NewServer(h)
	t.Cleanup(e.hook.Close)

	e.sim, err = paysim.New(paysim.Config{WebhookURL: e.hook.URL + "/webhooks/payments", Secret: testSecret,
		Logger: e.logger, DeliveryInitialBackoff: time.Millisecond, DeliveryMaxBackoff: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := e.sim.Shutdown(ctx); err != nil {
			t.Errorf("simulator shutdown: %v", err)
		}
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.simAddr = ln.Addr().String()
	if opt.simDown {
		_ = ln.Close()
	} else {
		e.serveSim(ln)
	}
	t.Cleanup(e.stopSim)

	hc := opt.http
	hc.BaseURL, hc.Metrics = "http://"+e.simAddr, m
	if e.provider, err = payments.NewHTTPProvider(hc); err != nil {
		t.Fatal(err)
	}
	wc := opt.worker
	wc.Jobs, wc.Provider, wc.Store, wc.Metrics, wc.Logger = store, e.provider, results, m, e.logger
	wc.Observe = e.jobs.record
	if wc.PollInterval == 0 {
		wc.PollInterval = 5 * time.Millisecond
	}
	if wc.InitialBackoff == 0 {
		wc.InitialBackoff, wc.MaxBackoff = time.Millisecond, 5*time.Millisecond
	}
	if e.worker, err = payments.NewWorker(wc); err != nil {
		t.Fatal(err)
	}
	if opt.runWorker {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { e.worker.Run(ctx); close(done) }()
		t.Cleanup(func() { cancel(); <-done })
	}
	return e
}

// serveSim serves the simulator on ln (its fixed address).
func (e *env) serveSim(ln net.Listener) {
	e.simHTTP = &http.Server{Handler: e.sim}
	go func() { _ = e.simHTTP.Serve(ln) }()
}

// startSim brings the simulator (back) up on its address.
func (e *env) startSim() {
	e.t.Helper()
	ln, err := net.Listen("tcp", e.simAddr)
	if err != nil {
		e.t.Fatalf("restart the simulator on %s: %v", e.simAddr, err)
	}
	e.serveSim(ln)
}

// stopSim takes the simulator down: its port refuses connections.
func (e *env) stopSim() {
	if e.simHTTP != nil {
		_ = e.simHTTP.Close()
		e.simHTTP = nil
	}
}

// place creates an order of alice at version 1 (PENDING_PAYMENT, UNPAID).
func (e *env) place() *order.Order {
	e.t.Helper()
	ctx := context.Background()
	products, _, err := e.store.Products(ctx, 2, "")
	if err != nil {
		e.t.Fatal(err)
	}
	var o *order.Order
	if _, err := e.store.InTx(ctx, func(tx *postgres.Tx) error {
		o, err = tx.PlaceOrder(ctx, e.alice, postgres.PlaceOrderInput{Currency: "USD",
			Lines:   []order.LineInput{{ProductID: products[0].ID, Quantity: 1}, {ProductID: products[1].ID, Quantity: 2}},
			Address: order.Address{Name: "Alice", Line1: "1 Main St", City: "Berlin", PostalCode: "10115", Country: "DE"}})
		return err
	}); err != nil {
		e.t.Fatal(err)
	}
	return o
}

// change applies a customer action to the order at expectedVersion, as
// the payOrder and cancelOrder mutations do.
func (e *env) change(orderID string, expectedVersion int, a order.Action) (*order.Order, error) {
	ctx := context.Background()
	var o *order.Order
	_, err := e.store.InTx(ctx, func(tx *postgres.Tx) error {
		var err error
		o, err = tx.ChangeOrder(ctx, postgres.Change{Viewer: e.alice, OrderID: orderID, ExpectedVersion: expectedVersion, Action: a})
		return err
	})
	return o, err
}

// pay is payOrder: the order's payment becomes PROCESSING and a charge job
// is queued; the worker is woken.
func (e *env) pay(o *order.Order) *order.Order {
	e.t.Helper()
	n, err := e.change(o.ID, o.Version, order.ActionPay)
	if err != nil {
		e.t.Fatalf("pay %s at v%d: %v", o.ID, o.Version, err)
	}
	e.worker.Wake()
	return n
}

func (e *env) order(id string) *order.Order {
	e.t.Helper()
	m, err := e.store.OrdersByIDs(context.Background(), []string{id})
	if err != nil || m[id] == nil {
		e.t.Fatalf("read order %s: %v", id, err)
	}
	return m[id]
}

// timeline returns the order's event types and checks that every version
// has exactly one event: versions 1..current, in order.
func (e *env) timeline(id string) []order.EventType {
	e.t.Helper()
	evs, err := e.store.Timeline(context.Background(), id)
	if err != nil {
		e.t.Fatal(err)
	}
	o := e.order(id)
	types := make([]order.EventType, len(evs))
	for i, ev := range evs {
		types[i] = ev.Type
		if ev.Version != i+1 {
			e.t.Errorf("order %s: event %d (%s) has version %d, want %d", id, i, ev.Type, ev.Version, i+1)
		}
	}
	if len(evs) != o.Version {
		e.t.Errorf("order %s at version %d has %d events %v, want one per version", id, o.Version, len(evs), types)
	}
	return types
}

func (e *env) chargeID(id string) *string {
	e.t.Helper()
	var c *string
	if err := e.db.QueryRow(context.Background(), `SELECT charge_id FROM orders WHERE id = $1`, id).Scan(&c); err != nil {
		e.t.Fatal(err)
	}
	return c
}

type job struct {
	State string
	Tries int
}

func (e *env) job(orderID string, attempt int) job {
	e.t.Helper()
	var j job
	if err := e.db.QueryRow(context.Background(), `SELECT state, tries FROM charge_jobs WHERE order_id = $1 AND attempt = $2`,
		orderID, attempt).Scan(&j.State, &j.Tries); err != nil {
		e.t.Fatalf("job of %s/%d: %v", orderID, attempt, err)
	}
	return j
}

func (e *env) metric(name, label, value string) float64 {
	return payments.MetricValue(e.t, e.reg, name, label, value)
}

func (e *env) waitPayment(id string, want order.PaymentStatus) {
	e.t.Helper()
	payments.WaitFor(e.t, fmt.Sprintf("payment of %s to be %s", id, want), func() bool { return e.order(id).PaymentStatus == want })
}

// waitDelivered waits until the simulator has seen n webhooks answered
// 2xx (it counts after the answer, so later than the database shows the
// effect).
func (e *env) waitDelivered(n int64) {
	e.t.Helper()
	payments.WaitFor(e.t, fmt.Sprintf("%d webhooks delivered", n), func() bool { return e.sim.Stats().WebhooksDelivered >= n })
}

// waitJob waits until the worker has processed a claim of the payment
// (orderID, attempt) with result (recorded and counted by then), and
// returns the results of all its claims so far, in order.
func (e *env) waitJob(orderID string, attempt int, result string) []string {
	e.t.Helper()
	guard := time.NewTimer(time.Minute) // only against a hang
	defer guard.Stop()
	for {
		got, changed := e.jobs.results(orderID, attempt)
		if slices.Contains(got, result) {
			return got
		}
		select {
		case <-changed:
		case <-guard.C:
			e.t.Fatalf("the worker never processed a claim of %s/%d with result %q (results %v)", orderID, attempt, result, got)
		}
	}
}

func equalTypes(got []order.EventType, want ...order.EventType) bool {
	return fmt.Sprint(got) == fmt.Sprint(want)
}

// The provider adapter against the simulator: the same charge sent twice
// (the same idempotency key) is one charge at the provider.
func TestSimulatorHonoursIdempotencyKey(t *testing.T) {
	e := newEnv(t, envOptions{})
	o := e.pay(e.place())
	req := payments.ChargeRequest{OrderID: o.ID, Attempt: 1, AmountCents: o.Total.Cents, Currency: o.Total.Currency}
	first, err := e.provider.Charge(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	second, err := e.provider.Charge(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if first.ChargeID == "" || second.ChargeID != first.ChargeID {
		t.Errorf("charge ids %q and %q, want the same charge", first.ChargeID, second.ChargeID)
	}
	e.waitPayment(o.ID, order.PaymentSucceeded)
	e.waitDelivered(1)
	s := e.sim.Stats()
	if s.Requests != 2 || s.ChargesCreated != 1 || s.Replays != 1 || s.WebhooksDelivered != 1 {
		t.Errorf("simulator stats %+v, want 2 requests, 1 charge, 1 replay, 1 webhook", s)
	}
	if c := e.sim.Charges(); len(c) != 1 || c[0].IdempotencyKey != payments.IdempotencyKey(o.ID, 1) {
		t.Errorf("charges %+v", c)
	}
}

// 503 twice, then success: the worker retries with the same key, the
// provider creates exactly one charge, and the webhook makes the order
// PAID with the charge recorded.
func TestChargeRetriedThroughProviderErrorsThenPaid(t *testing.T) {
	e := newEnv(t, envOptions{runWorker: true})
	e.sim.Force(paysim.Fail, paysim.Fail)
	o := e.pay(e.place())
	e.waitPayment(o.ID, order.PaymentSucceeded)

	got := e.order(o.ID)
	if got.Status != order.StatusPaid || got.Version != 3 {
		t.Errorf("order %s v%d, want PAID at v3", got.Status, got.Version)
	}
	if types := e.timeline(o.ID); !equalTypes(types, order.EventOrderPlaced, order.EventPaymentRequested, order.EventPaymentSucceeded) {
		t.Errorf("timeline %v", types)
	}
	// The worker counts a claim's result after recording it: once it has
	// reported the done claim, the job is done and the counts are final.
	if results := e.waitJob(o.ID, 1, "done"); !slices.Equal(results, []string{"retry", "retry", "done"}) {
		t.Errorf("claims of the job: %v, want retry, retry, done", results)
	}
	e.waitDelivered(1)
	if j := e.job(o.ID, 1); j.State != "done" || j.Tries != 3 {
		t.Errorf("job %+v, want done after 3 tries", j)
	}
	s := e.sim.Stats()
	if s.Requests != 3 || s.Errors != 2 || s.ChargesCreated != 1 || s.Replays != 0 || s.WebhooksDelivered != 1 {
		t.Errorf("simulator stats %+v, want 3 requests, 2 errors, exactly 1 charge, 1 webhook", s)
	}
	charges := e.sim.Charges()
	if len(charges) != 1 || charges[0].IdempotencyKey != payments.IdempotencyKey(o.ID, 1) || charges[0].AmountCents != o.Total.Cents {
		t.Fatalf("charges %+v", charges)
	}
	if c := e.chargeID(o.ID); c == nil || *c != charges[0].ID {
		t.Errorf("charge_id %v, want %s", c, charges[0].ID)
	}
	const calls, jobs = "bff_payments_provider_calls_total", "bff_payments_charge_jobs_total"
	if r, a := e.metric(calls, "outcome", payments.OutcomeRetryable), e.metric(calls, "outcome", payments.OutcomeAccepted); r != 2 || a != 1 {
		t.Errorf("provider calls: %v retryable, %v accepted; want 2 and 1", r, a)
	}
	if r, d := e.metric(jobs, "result", "retry"), e.metric(jobs, "result", "done"); r != 2 || d != 1 {
		t.Errorf("charge jobs: %v retry, %v done; want 2 and 1", r, d)
	}
	if v := e.metric("bff_payments_webhooks_total", "result", "applied"); v != 1 {
		t.Errorf("webhooks applied = %v, want 1", v)
	}
	t.Logf("provider: %d requests (%d answered 503), %d charge; job tries %d", s.Requests, s.Errors, s.ChargesCreated, e.job(o.ID, 1).Tries)
}

// The provider is down: after BreakerFailures connection errors the
// breaker opens and fails fast; the jobs wait (the refusals use up no
// attempt) and complete once the provider is back, one charge each.
func TestBreakerOpensWhileProviderDownAndJobsComplete(t *testing.T) {
	const jobsN, maxAttempts = 3, 5
	e := newEnv(t, envOptions{simDown: true, runWorker: true,
		http:   payments.HTTPConfig{BreakerFailures: 3, BreakerOpenFor: time.Second, Timeout: time.Second},
		worker: payments.WorkerConfig{Concurrency: 2, MaxAttempts: maxAttempts}})
	ids := make([]string, jobsN)
	for i := range ids {
		ids[i] = e.pay(e.place()).ID
	}
	const calls = "bff_payments_provider_calls_total"
	payments.WaitFor(t, "the breaker to open", func() bool { return e.provider.BreakerState() == gobreaker.StateOpen })
	// More fail-fast refusals than all the jobs' attempts together.
	payments.WaitFor(t, "fail-fast refusals", func() bool {
		return e.metric(calls, "outcome", payments.OutcomeBreakerOpen) > jobsN*maxAttempts
	})
	for _, id := range ids {
		if j := e.job(id, 1); j.State != "pending" || j.Tries >= maxAttempts {
			t.Errorf("job of %s while down: %+v, want pending with attempts left", id, j)
		}
		if p := e.order(id).PaymentStatus; p != order.PaymentProcessing {
			t.Errorf("payment of %s while down: %s, want PROCESSING", id, p)
		}
	}
	sent := e.metric(calls, "outcome", payments.OutcomeRetryable)
	refused := e.metric(calls, "outcome", payments.OutcomeBreakerOpen)
	if s := e.sim.Stats(); s.Requests != 0 {
		t.Fatalf("the simulator is down but counted %d requests", s.Requests)
	}

	e.startSim()
	for _, id := range ids {
		e.waitPayment(id, order.PaymentSucceeded)
		payments.WaitFor(t, "the job to be done", func() bool { return e.job(id, 1).State == "done" })
		if types := e.timeline(id); !equalTypes(types, order.EventOrderPlaced, order.EventPaymentRequested, order.EventPaymentSucceeded) {
			t.Errorf("timeline of %s: %v", id, types)
		}
		if j := e.job(id, 1); j.Tries > maxAttempts {
			t.Errorf("job of %s: %+v", id, j)
		}
	}
	e.waitDelivered(jobsN)
	if st := e.provider.BreakerState(); st != gobreaker.StateClosed {
		t.Errorf("breaker %v after the provider came back, want closed", st)
	}
	s := e.sim.Stats()
	if s.ChargesCreated != jobsN || s.Requests != jobsN || s.WebhooksDelivered != jobsN {
		t.Errorf("simulator stats %+v, want exactly %d requests, charges and webhooks", s, jobsN)
	}
	t.Logf("while down: %v sends failed (connection refused), %v refused by the open breaker; after: %d requests, %d charges, %v deferred job runs in all",
		sent, refused, s.Requests, s.ChargesCreated, e.metric("bff_payments_charge_jobs_total", "result", "deferred"))
}

// A decline fails the payment (PAYMENT_FAILED); paying again is a new
// attempt with a new key, and it succeeds.
func TestDeclineThenPayAgain(t *testing.T) {
	e := newEnv(t, envOptions{runWorker: true})
	e.sim.Force(paysim.Decline)
	o := e.pay(e.place())
	e.waitPayment(o.ID, order.PaymentFailed)
	failed := e.order(o.ID)
	if failed.Status != order.StatusPendingPayment || failed.Version != 3 {
		t.Errorf("after the decline: %s v%d, want PENDING_PAYMENT at v3", failed.Status, failed.Version)
	}
	if types := e.timeline(o.ID); !equalTypes(types, order.EventOrderPlaced, order.EventPaymentRequested, order.EventPaymentFailed) {
		t.Errorf("timeline %v", types)
	}

	again := e.pay(failed)
	if again.PaymentStatus != order.PaymentProcessing || again.Version != 4 {
		t.Fatalf("second payOrder: %s v%d", again.PaymentStatus, again.Version)
	}
	e.waitPayment(o.ID, order.PaymentSucceeded)
	if got := e.order(o.ID); got.Status != order.StatusPaid || got.Version != 5 {
		t.Errorf("after the second attempt: %s v%d, want PAID at v5", got.Status, got.Version)
	}
	if types := e.timeline(o.ID); !equalTypes(types, order.EventOrderPlaced, order.EventPaymentRequested, order.EventPaymentFailed,
		order.EventPaymentRequested, order.EventPaymentSucceeded) {
		t.Errorf("timeline %v", types)
	}
	e.waitDelivered(2)
	s := e.sim.Stats()
	if s.ChargesCreated != 2 || s.Declined != 1 || s.WebhooksDelivered != 2 {
		t.Errorf("simulator stats %+v, want 2 charges (1 declined), 2 webhooks", s)
	}
	keys := map[string]bool{}
	for _, c := range e.sim.Charges() {
		keys[c.IdempotencyKey] = true
	}
	if !keys[payments.IdempotencyKey(o.ID, 1)] || !keys[payments.IdempotencyKey(o.ID, 2)] {
		t.Errorf("charge keys %v, want one per attempt", keys)
	}
}

// event is a webhook body as the provider sends it.
func event(id, typ, orderID string, amount int64, currency string) []byte {
	var code any
	if typ == payments.EventPaymentFailed {
		code = "card_declined"
	}
	b, _ := json.Marshal(map[string]any{"id": id, "type": typ, "created": time.Now().Unix(),
		"data": map[string]any{"chargeId": "ch_" + id, "orderId": orderID, "amountCents": amount, "currency": currency, "failureCode": code}})
	return b
}

// send posts a webhook body with the given signature header (none when
// empty) and returns the status.
func (e *env) send(body []byte, signature string) int {
	e.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, e.hook.URL+"/webhooks/payments", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if signature != "" {
		req.Header.Set(payments.SignatureHeader, signature)
	}
	resp, err := e.hook.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return resp.StatusCode
}

func sign(body []byte) string { return payments.Sign(testSecret, time.Now(), body) }

// snapshot is what a webhook can change in the database: the order, and
// the counts of all order events and recorded webhooks.
type snapshot struct {
	Status        order.Status
	PaymentStatus order.PaymentStatus
	Version       int
	ChargeID      string
	Events        int
	WebhookEvents int
}

func (e *env) snapshot(orderID string) snapshot {
	e.t.Helper()
	var s snapshot
	err := e.db.QueryRow(context.Background(), `SELECT o.status, o.payment_status, o.version, coalesce(o.charge_id, ''),
		(SELECT count(*) FROM order_events), (SELECT count(*) FROM webhook_events) FROM orders o WHERE o.id = $1`, orderID).
		Scan(&s.Status, &s.PaymentStatus, &s.Version, &s.ChargeID, &s.Events, &s.WebhookEvents)
	if err != nil {
		e.t.Fatal(err)
	}
	return s
}

// Refused webhooks change nothing in the database.
func TestWebhookRefusalsHaveNoEffect(t *testing.T) {
	e := newEnv(t, envOptions{})
	o := e.pay(e.place())
	before := e.snapshot(o.ID)
	good := event("evt_good", payments.EventPaymentSucceeded, o.ID, o.Total.Cents, o.Total.Currency)
	big := []byte(`{"id":"evt_big","pad":"` + strings.Repeat("x", payments.MaxWebhookBody) + `"}`)
	unknown := event("evt_refund", "payment.refunded", o.ID, o.Total.Cents, o.Total.Currency)
	tests := []struct {
		name      string
		body      []byte
		signature string
		want      int
	}{
		{"missing header", good, "", http.StatusUnauthorized},
		{"malformed header", good, "v1=abc", http.StatusUnauthorized},
		{"bad signature", good, payments.Sign([]byte("not-the-secret"), time.Now(), good), http.StatusUnauthorized},
		{"signature of another body", good, sign([]byte(`{"id":"evt_other"}`)), http.StatusUnauthorized},
		{"timestamp 6 minutes old", good, payments.Sign(testSecret, time.Now().Add(-6*time.Minute), good), http.StatusUnauthorized},
		{"timestamp 6 minutes ahead", good, payments.Sign(testSecret, time.Now().Add(6*time.Minute), good), http.StatusUnauthorized},
		{"oversized body", big, sign(big), http.StatusRequestEntityTooLarge},
		{"unknown type", unknown, sign(unknown), http.StatusBadRequest},
		{"amount differs", event("evt_amt", payments.EventPaymentSucceeded, o.ID, o.Total.Cents+1, o.Total.Currency), "", http.StatusBadRequest},
		{"currency differs", event("evt_cur", payments.EventPaymentSucceeded, o.ID, o.Total.Cents, "EUR"), "", http.StatusBadRequest},
		{"unknown order", event("evt_404", payments.EventPaymentSucceeded, "00000000-0000-4000-8000-000000000000", 1, "USD"), "", http.StatusNotFound},
		{"not JSON", []byte(`{"id":`), "", http.StatusBadRequest},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sig := tc.signature
			if sig == "" && tc.want != http.StatusUnauthorized {
				sig = sign(tc.body)
			}
			if got := e.send(tc.body, sig); got != tc.want {
				t.Errorf("status %d, want %d", got, tc.want)
			}
			if after := e.snapshot(o.ID); after != before {
				t.Errorf("the refused webhook changed the database: %+v, was %+v", after, before)
			}
		})
	}
	// The genuine webhook still applies: the refusals left nothing behind
	// (not even its event id).
	if got := e.send(good, sign(good)); got != http.StatusOK {
		t.Fatalf("genuine webhook: %d", got)
	}
	if got := e.order(o.ID); got.Status != order.StatusPaid || got.Version != before.Version+1 {
		t.Errorf("order %s v%d, want PAID at v%d", got.Status, got.Version, before.Version+1)
	}
	for result, want := range map[string]float64{"unauthenticated": 6, "too_large": 1, "bad_request": 4, "not_found": 1, "applied": 1} {
		if v := e.metric("bff_payments_webhooks_total", "result", result); v != want {
			t.Errorf("webhooks{result=%s} = %v, want %v", result, v, want)
		}
	}
}

// The same webhook twice has one effect; a late result for a payment that
// is no longer PROCESSING has none.
func TestDuplicateWebhookHasOneEffect(t *testing.T) {
	e := newEnv(t, envOptions{})
	o := e.pay(e.place())
	before := e.snapshot(o.ID)
	body := event("evt_dup", payments.EventPaymentSucceeded, o.ID, o.Total.Cents, o.Total.Currency)
	for i := range 2 {
		if got := e.send(body, sign(body)); got != http.StatusOK {
			t.Fatalf("delivery %d: %d, want 200", i+1, got)
		}
	}
	after := e.snapshot(o.ID)
	if after.PaymentStatus != order.PaymentSucceeded || after.Version != 3 || after.ChargeID != "ch_evt_dup" ||
		after.Events != before.Events+1 || after.WebhookEvents != before.WebhookEvents+1 {
		t.Errorf("after two deliveries: %+v, want SUCCEEDED at v3 with one more event and one recorded webhook (before: %+v)", after, before)
	}
	if types := e.timeline(o.ID); !equalTypes(types, order.EventOrderPlaced, order.EventPaymentRequested, order.EventPaymentSucceeded) {
		t.Errorf("timeline %v", types)
	}
	late := event("evt_late", payments.EventPaymentFailed, o.ID, o.Total.Cents, o.Total.Currency)
	if got := e.send(late, sign(late)); got != http.StatusOK {
		t.Fatalf("late result: %d, want 200", got)
	}
	if s := e.snapshot(o.ID); s.Status != after.Status || s.PaymentStatus != after.PaymentStatus || s.Version != after.Version || s.Events != after.Events {
		t.Errorf("the late result changed the order: %+v, was %+v", s, after)
	}
	if a, i := e.metric("bff_payments_webhooks_total", "result", "applied"), e.metric("bff_payments_webhooks_total", "result", "ignored"); a != 1 || i != 2 {
		t.Errorf("webhooks: %v applied, %v ignored; want 1 and 2", a, i)
	}
}

// A payment webhook and the customer's cancel at the version they saw,
// at the same moment, on many orders: exactly one of the two changes each
// order, and every version has exactly one event. (While the payment is
// PROCESSING a cancel is illegal, so it loses either way: CONFLICT when
// the webhook committed first, INVALID_TRANSITION when it came first.)
// Then the converse: a cancel racing a late webhook for a payment that is
// no longer PROCESSING; the cancel wins and the webhook is a no-op.
func TestWebhookRacingCancel(t *testing.T) {
	e := newEnv(t, envOptions{})
	const n = 12
	type result struct {
		hook      int
		cancelErr error
	}
	orders := make([]*order.Order, n)
	for i := range orders {
		orders[i] = e.pay(e.place())
	}
	results := make([]result, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i, o := range orders {
		typ := payments.EventPaymentSucceeded
		if i%2 == 1 {
			typ = payments.EventPaymentFailed
		}
		body := event(fmt.Sprintf("evt_race_%d", i), typ, o.ID, o.Total.Cents, o.Total.Currency)
		wg.Go(func() { <-start; results[i].hook = e.send(body, sign(body)) })
		wg.Go(func() { <-start; _, results[i].cancelErr = e.change(o.ID, o.Version, order.ActionCancel) })
	}
	close(start)
	wg.Wait()
	codes := map[order.Code]int{}
	for i, o := range orders {
		r := results[i]
		got := e.order(o.ID)
		if r.hook != http.StatusOK {
			t.Errorf("order %d: webhook %d, want 200", i, r.hook)
		}
		if r.cancelErr == nil {
			t.Errorf("order %d: the cancel of a PROCESSING payment succeeded", i)
			continue
		}
		code := order.ErrorCode(r.cancelErr)
		codes[code]++
		if code != order.CodeConflict && code != order.CodeInvalidTransition {
			t.Errorf("order %d: cancel failed with %v, want CONFLICT or INVALID_TRANSITION", i, r.cancelErr)
		}
		want := order.PaymentSucceeded
		if i%2 == 1 {
			want = order.PaymentFailed
		}
		if got.PaymentStatus != want || got.Version != o.Version+1 {
			t.Errorf("order %d: %s/%s v%d, want %s at v%d (the webhook's change only)", i, got.Status, got.PaymentStatus, got.Version, want, o.Version+1)
		}
		e.timeline(o.ID)
	}
	t.Logf("cancels lost with %v", codes)

	// The converse: the payment failed (v3), the customer cancels at v3
	// while a late success arrives for it.
	for i := 1; i < n; i += 2 {
		o := e.order(orders[i].ID)
		body := event(fmt.Sprintf("evt_late_%d", i), payments.EventPaymentSucceeded, o.ID, o.Total.Cents, o.Total.Currency)
		var hook int
		var cancelled *order.Order
		var cerr error
		start := make(chan struct{})
		var wg sync.WaitGroup
		wg.Go(func() { <-start; hook = e.send(body, sign(body)) })
		wg.Go(func() { <-start; cancelled, cerr = e.change(o.ID, o.Version, order.ActionCancel) })
		close(start)
		wg.Wait()
		if hook != http.StatusOK || cerr != nil || cancelled.Status != order.StatusCancelled {
			t.Errorf("order %d: webhook %d, cancel %v, want 200 and the cancel applied", i, hook, cerr)
		}
		if got := e.order(o.ID); got.Status != order.StatusCancelled || got.PaymentStatus != order.PaymentFailed || got.Version != o.Version+1 {
			t.Errorf("order %d: %s/%s v%d, want CANCELLED with the payment FAILED at v%d", i, got.Status, got.PaymentStatus, got.Version, o.Version+1)
		}
		e.timeline(o.ID)
	}
}
