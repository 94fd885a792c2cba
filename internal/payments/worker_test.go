package payments

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/sony/gobreaker/v2"

	"github.com/shop/bff/internal/httpx"
	"github.com/shop/bff/internal/order"
	"github.com/shop/bff/internal/postgres"
)

// fakeProvider is a real HTTP server standing in for the provider; it
// counts requests per idempotency key and how many overlap.
type fakeProvider struct {
	srv *httptest.Server
	// respond decides the status of the n-th (1-based) request of key.
	respond func(key string, n int) int
	// hold, when set, is waited on before answering.
	hold chan struct{}

	mu          sync.Mutex
	requests    map[string]int
	accepted    map[string]int
	inFlight    map[string]int
	maxInFlight int
	bodies      map[string]chargeBody
	started     chan string
}

func newFakeProvider(t *testing.T, respond func(key string, n int) int) *fakeProvider {
	f := &fakeProvider{respond: respond, requests: map[string]int{}, accepted: map[string]int{},
		inFlight: map[string]int{}, bodies: map[string]chargeBody{}, started: make(chan string, 1000)}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeProvider) serve(w http.ResponseWriter, r *http.Request) {
	key := r.Header.Get("Idempotency-Key")
	var b chargeBody
	raw, _ := io.ReadAll(r.Body)
	_ = json.Unmarshal(raw, &b)
	f.mu.Lock()
	f.requests[key]++
	n := f.requests[key]
	f.inFlight[key]++
	f.maxInFlight = max(f.maxInFlight, f.inFlight[key])
	f.bodies[key] = b
	f.mu.Unlock()
	f.started <- key
	if f.hold != nil {
		<-f.hold
	} else {
		time.Sleep(2 * time.Millisecond) // widen the window for overlaps
	}
	status := f.respond(key, n)
	f.mu.Lock()
	f.inFlight[key]--
	if status == http.StatusCreated {
		f.accepted[key]++
	}
	f.mu.Unlock()
	if status == http.StatusCreated {
		httpx.WriteJSON(w, status, map[string]string{"id": "ch_" + key, "status": "pending"})
		return
	}
	httpx.WriteJSON(w, status, map[string]string{"error": "no"})
}

func (f *fakeProvider) count(key string) (requests, accepted int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.requests[key], f.accepted[key]
}

// recordingStore records MarkPaymentFailed calls; the worker uses no other
// store method.
type recordingStore struct {
	mu     sync.Mutex
	failed []string // "orderID/attempt/code"
	err    error
}

func (s *recordingStore) ApplyPaymentResult(context.Context, WebhookResult) (*order.Event, bool, error) {
	return nil, false, errors.New("not used by the worker")
}

func (s *recordingStore) MarkPaymentFailed(_ context.Context, orderID string, attempt int, code string) (*order.Event, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return nil, s.err
	}
	s.failed = append(s.failed, strings.Join([]string{orderID, itoa(attempt), code}, "/"))
	return &order.Event{OrderID: orderID, Type: order.EventPaymentFailed}, nil
}

func (s *recordingStore) calls() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.failed...)
}

type recordingNotifier struct {
	mu     sync.Mutex
	events []order.Event
}

func (n *recordingNotifier) Committed(_ context.Context, evs []order.Event) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.events = append(n.events, evs...)
}

func (n *recordingNotifier) all() []order.Event {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]order.Event(nil), n.events...)
}

func itoa(i int) string { b, _ := json.Marshal(i); return string(b) }

func newTestWorker(t *testing.T, pool *pgxpool.Pool, url string, store ResultStore, mod func(*WorkerConfig)) *Worker {
	t.Helper()
	p, err := NewHTTPProvider(HTTPConfig{BaseURL: url, BreakerFailures: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	cfg := WorkerConfig{Jobs: storeOf(t, pool), Provider: p, Store: store, PollInterval: 5 * time.Millisecond,
		InitialBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond}
	if mod != nil {
		mod(&cfg)
	}
	w, err := NewWorker(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// waitFor polls cond until it holds; the bound only keeps a broken test
// from hanging.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func pendingJobs(t *testing.T, p *pgxpool.Pool) int {
	var n int
	if err := p.QueryRow(context.Background(), `SELECT count(*) FROM charge_jobs WHERE state = 'pending'`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// Many workers in several "processes" (one pool each) drain the outbox:
// every job is accepted exactly once and no key is ever sent twice at the
// same time, including jobs whose first send failed and was retried.
func TestWorkersNeverSendAJobTwiceConcurrently(t *testing.T) {
	db := newTestDB(t)
	setup := db.pool(t, 4)
	const jobs = 150
	ids := seedJobs(t, setup, jobs)

	// About a quarter of the keys fail once with 503, so retries race with
	// claims too.
	fp := newFakeProvider(t, func(key string, n int) int {
		if n == 1 && strings.ContainsRune("0123", rune(key[len(key)-3])) {
			return http.StatusServiceUnavailable
		}
		return http.StatusCreated
	})
	store := &recordingStore{}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range 4 { // four processes
		w := newTestWorker(t, db.pool(t, 6), fp.srv.URL, store, func(c *WorkerConfig) { c.Concurrency = 5 })
		wg.Go(func() { w.Run(ctx) })
	}
	waitFor(t, "all jobs to finish", func() bool { return pendingJobs(t, setup) == 0 })
	cancel()
	wg.Wait()

	fp.mu.Lock()
	defer fp.mu.Unlock()
	if fp.maxInFlight != 1 {
		t.Errorf("a key was sent %d times concurrently, want never more than once", fp.maxInFlight)
	}
	retried := 0
	for _, id := range ids {
		key := IdempotencyKey(id, 1)
		req, acc := fp.requests[key], fp.accepted[key]
		if acc != 1 {
			t.Errorf("order %s accepted %d times, want 1", id, acc)
		}
		if req > 2 {
			t.Errorf("order %s sent %d times, want at most 2", id, req)
		}
		if req == 2 {
			retried++
		}
		if r := readJob(t, setup, id); r.State != "done" {
			t.Errorf("job of %s: %v, want done", id, r)
		}
		if b := fp.bodies[key]; b.OrderID != id || b.Attempt != 1 || b.Currency != "USD" || b.AmountCents < 1000 {
			t.Errorf("body of %s = %+v", key, b)
		}
	}
	if retried == 0 {
		t.Error("no job was retried; the test did not exercise retries")
	}
	if c := store.calls(); len(c) != 0 {
		t.Errorf("MarkPaymentFailed called: %v", c)
	}
}

func TestWorkerPermanentErrorMarksPaymentFailed(t *testing.T) {
	db := newTestDB(t)
	pool := db.pool(t, 4)
	ids := seedJobs(t, pool, 1)
	fp := newFakeProvider(t, func(string, int) int { return http.StatusBadRequest })
	store, notifier := &recordingStore{}, &recordingNotifier{}
	w := newTestWorker(t, pool, fp.srv.URL, store, func(c *WorkerConfig) { c.Notifier = notifier })

	worked, err := w.RunOnce(context.Background())
	if !worked || err != nil {
		t.Fatalf("RunOnce = %v, %v", worked, err)
	}
	if r := readJob(t, pool, ids[0]); r.State != "failed" || r.Tries != 1 || r.LastError == nil || !strings.Contains(*r.LastError, "400") {
		t.Errorf("job: %v, want failed after 1 try with the 400 recorded", r)
	}
	if c := store.calls(); len(c) != 1 || c[0] != ids[0]+"/1/"+FailureRejected {
		t.Errorf("MarkPaymentFailed calls = %v", c)
	}
	if ev := notifier.all(); len(ev) != 1 || ev[0].OrderID != ids[0] {
		t.Errorf("notified %v, want the PAYMENT_FAILED event", ev)
	}
	if req, _ := fp.count(IdempotencyKey(ids[0], 1)); req != 1 {
		t.Errorf("sent %d times, a permanent error must not be retried", req)
	}
	if worked, _ := w.RunOnce(context.Background()); worked {
		t.Error("a failed job was claimed again")
	}
}

func TestWorkerRetriesRetryableErrorsUpToTheCap(t *testing.T) {
	db := newTestDB(t)
	pool := db.pool(t, 4)
	ids := seedJobs(t, pool, 1)
	fp := newFakeProvider(t, func(string, int) int { return http.StatusServiceUnavailable })
	store := &recordingStore{}
	w := newTestWorker(t, pool, fp.srv.URL, store, func(c *WorkerConfig) { c.MaxAttempts = 3 })

	// The first failure reschedules the job (run_at) instead of sleeping.
	if worked, err := w.RunOnce(context.Background()); !worked || err != nil {
		t.Fatalf("RunOnce = %v, %v", worked, err)
	}
	if r := readJob(t, pool, ids[0]); r.State != "pending" || r.Tries != 1 || r.LastError == nil || !strings.Contains(*r.LastError, "503") {
		t.Fatalf("after one failure: %v, want pending with the error recorded", r)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { w.Run(ctx); close(done) }()
	waitFor(t, "the job to fail", func() bool { return readJob(t, pool, ids[0]).State != "pending" })
	cancel()
	<-done

	r := readJob(t, pool, ids[0])
	if r.State != "failed" || r.Tries != 3 {
		t.Errorf("job: %v, want failed after 3 tries", r)
	}
	if req, _ := fp.count(IdempotencyKey(ids[0], 1)); req != 3 {
		t.Errorf("sent %d times, want 3", req)
	}
	if c := store.calls(); len(c) != 1 || c[0] != ids[0]+"/1/"+FailureUnavailable {
		t.Errorf("MarkPaymentFailed calls = %v", c)
	}
}

func TestWorkerRetryThenSuccess(t *testing.T) {
	db := newTestDB(t)
	pool := db.pool(t, 4)
	ids := seedJobs(t, pool, 1)
	fp := newFakeProvider(t, func(_ string, n int) int {
		if n < 3 {
			return http.StatusTooManyRequests
		}
		return http.StatusCreated
	})
	store := &recordingStore{}
	w := newTestWorker(t, pool, fp.srv.URL, store, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { w.Run(ctx); close(done) }()
	waitFor(t, "the job to finish", func() bool { return readJob(t, pool, ids[0]).State != "pending" })
	cancel()
	<-done
	if r := readJob(t, pool, ids[0]); r.State != "done" || r.Tries != 3 || r.LastError != nil {
		t.Errorf("job: %v, want done after 3 tries", r)
	}
	if len(store.calls()) != 0 {
		t.Errorf("payment marked failed: %v", store.calls())
	}
}

// A job whose claims were used up by crashed workers is failed without
// another send.
func TestWorkerFailsExhaustedJobWithoutSending(t *testing.T) {
	db := newTestDB(t)
	pool := db.pool(t, 4)
	ids := seedJobs(t, pool, 1)
	if _, err := pool.Exec(context.Background(), `UPDATE charge_jobs SET tries = 8`); err != nil {
		t.Fatal(err)
	}
	fp := newFakeProvider(t, func(string, int) int { return http.StatusCreated })
	store := &recordingStore{}
	w := newTestWorker(t, pool, fp.srv.URL, store, nil)
	if worked, err := w.RunOnce(context.Background()); !worked || err != nil {
		t.Fatalf("RunOnce = %v, %v", worked, err)
	}
	if req, _ := fp.count(IdempotencyKey(ids[0], 1)); req != 0 {
		t.Errorf("sent %d times, want 0", req)
	}
	if r := readJob(t, pool, ids[0]); r.State != "failed" {
		t.Errorf("job: %v, want failed", r)
	}
	if c := store.calls(); len(c) != 1 {
		t.Errorf("MarkPaymentFailed calls = %v", c)
	}
}

// When the store cannot record the failure, the job stays pending so the
// payment is not left PROCESSING forever.
func TestWorkerKeepsJobWhenStoreFails(t *testing.T) {
	db := newTestDB(t)
	pool := db.pool(t, 4)
	ids := seedJobs(t, pool, 1)
	fp := newFakeProvider(t, func(string, int) int { return http.StatusUnprocessableEntity })
	store := &recordingStore{err: order.Unavailable("postgres", errors.New("down"))}
	w := newTestWorker(t, pool, fp.srv.URL, store, nil)
	if worked, err := w.RunOnce(context.Background()); !worked || err != nil {
		t.Fatalf("RunOnce = %v, %v", worked, err)
	}
	if r := readJob(t, pool, ids[0]); r.State != "pending" || r.LastError == nil || !strings.Contains(*r.LastError, "marking the payment failed") {
		t.Errorf("job: %v, want pending with the store error", r)
	}
}

// Cancelling the context lets the job in hand finish, then Run returns.
func TestWorkerFinishesCurrentJobOnCancel(t *testing.T) {
	db := newTestDB(t)
	pool := db.pool(t, 4)
	ids := seedJobs(t, pool, 1)
	fp := newFakeProvider(t, func(string, int) int { return http.StatusCreated })
	fp.hold = make(chan struct{})
	w := newTestWorker(t, pool, fp.srv.URL, &recordingStore{}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { w.Run(ctx); close(done) }()
	<-fp.started // the send is in flight
	cancel()
	close(fp.hold)
	<-done
	if r := readJob(t, pool, ids[0]); r.State != "done" {
		t.Errorf("job: %v, want done: the send in flight must complete", r)
	}
}

// Wake makes an idle worker poll at once instead of after PollInterval.
func TestWorkerWake(t *testing.T) {
	db := newTestDB(t)
	pool := db.pool(t, 4)
	fp := newFakeProvider(t, func(string, int) int { return http.StatusCreated })
	w := newTestWorker(t, pool, fp.srv.URL, &recordingStore{}, func(c *WorkerConfig) { c.PollInterval = time.Hour })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { w.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	time.Sleep(50 * time.Millisecond) // let the worker go idle on the empty table
	ids := seedJobs(t, pool, 1)
	for range 3 {
		w.Wake() // never blocks, even when repeated
	}
	waitFor(t, "the woken worker to send the job", func() bool { return readJob(t, pool, ids[0]).State == "done" })
}

func TestBackoffIsFullJitterUnderTheExponentialCap(t *testing.T) {
	w, err := NewWorker(WorkerConfig{Jobs: &postgres.Store{}, Provider: &HTTPProvider{}, Store: &recordingStore{},
		InitialBackoff: 100 * time.Millisecond, MaxBackoff: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	for try, ceiling := range map[int]time.Duration{1: 100 * time.Millisecond, 2: 200 * time.Millisecond,
		3: 400 * time.Millisecond, 4: 800 * time.Millisecond, 5: time.Second, 12: time.Second} {
		var maxSeen time.Duration
		for range 2000 {
			d := w.backoff(try)
			if d < 0 || d > ceiling {
				t.Fatalf("backoff(%d) = %v, want within [0, %v]", try, d, ceiling)
			}
			maxSeen = max(maxSeen, d)
		}
		if maxSeen < ceiling/2 {
			t.Errorf("backoff(%d) never exceeded %v in 2000 draws; ceiling %v", try, maxSeen, ceiling)
		}
	}
}

// A claim the open breaker refuses sends nothing and does not use up an
// attempt: the job waits for the provider instead of failing.
func TestWorkerBreakerRejectionDoesNotUseAnAttempt(t *testing.T) {
	db := newTestDB(t)
	pool := db.pool(t, 4)
	ids := seedJobs(t, pool, 1)
	fp := newFakeProvider(t, func(string, int) int { return http.StatusServiceUnavailable })
	p, err := NewHTTPProvider(HTTPConfig{BaseURL: fp.srv.URL, BreakerFailures: 1, BreakerOpenFor: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	store := &recordingStore{}
	w, err := NewWorker(WorkerConfig{Jobs: storeOf(t, pool), Provider: p, Store: store, MaxAttempts: 2,
		InitialBackoff: time.Millisecond, MaxBackoff: 2 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	runDue := func() {
		t.Helper()
		waitFor(t, "the job to be due", func() bool {
			worked, err := w.RunOnce(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			return worked
		})
	}
	runDue() // sent, 503: the breaker opens
	if p.BreakerState() != gobreaker.StateOpen {
		t.Fatalf("breaker %v, want open", p.BreakerState())
	}
	for range 5 { // refused by the breaker, more often than MaxAttempts
		runDue()
	}
	r := readJob(t, pool, ids[0])
	if r.State != "pending" || r.Tries != 1 || r.LastError == nil || !strings.Contains(*r.LastError, "circuit breaker open") {
		t.Errorf("job: %v, want pending after 1 counted try with the breaker recorded", r)
	}
	if req, _ := fp.count(IdempotencyKey(ids[0], 1)); req != 1 {
		t.Errorf("sent %d times, want 1: the open breaker must not send", req)
	}
	if c := store.calls(); len(c) != 0 {
		t.Errorf("MarkPaymentFailed called: %v", c)
	}
}
