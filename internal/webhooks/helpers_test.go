package webhooks_test

import (
	"context"
	"io"
	"log/slog"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/shop/bff/internal/order"
	"github.com/shop/bff/internal/postgres"
	"github.com/shop/bff/internal/testenv"
	"github.com/shop/bff/internal/webhooks"
	"github.com/shop/bff/internal/webhooks/hooksim"
)

// waitTimeout bounds every wait of these tests (they wait on events, this
// only turns a hang into a failure).
const waitTimeout = 60 * time.Second

// world is a seeded database with a customer and products, on which
// workers (instances) run.
type world struct {
	t        testing.TB
	store    *postgres.Store
	url      string
	customer *order.User
	products []*order.Product
}

func newWorld(t testing.TB) *world {
	t.Helper()
	store, url := testenv.Store(t, true, postgres.Config{MaxConns: 8})
	ctx := context.Background()
	cust, err := store.UserByEmail(ctx, "alice@example.com")
	if err != nil {
		t.Fatal(err)
	}
	ps, _, err := store.Products(ctx, 5, "")
	if err != nil || len(ps) == 0 {
		t.Fatalf("products: %v", err)
	}
	return &world{t: t, store: store, url: url, customer: cust, products: ps}
}

// openStore opens another pool on the world's schema (another instance).
func (w *world) openStore() *postgres.Store {
	w.t.Helper()
	s, err := postgres.Open(context.Background(), postgres.Config{URL: w.url, MaxConns: 8})
	if err != nil {
		w.t.Fatal(err)
	}
	w.t.Cleanup(s.Close)
	return s
}

// receiver starts a simulated receiver on a real HTTP server.
func (w *world) receiver(cfg hooksim.Config) (*hooksim.Receiver, string) {
	w.t.Helper()
	r, err := hooksim.New(cfg)
	if err != nil {
		w.t.Fatal(err)
	}
	srv := httptest.NewServer(r)
	w.t.Cleanup(srv.Close)
	return r, srv.URL
}

// endpoint registers an endpoint for every event type (the store, not the
// staff API: addresses are the tests' own loopback servers).
func (w *world) endpoint(url string) *postgres.WebhookEndpoint {
	w.t.Helper()
	e, err := w.store.CreateWebhookEndpoint(context.Background(), postgres.NewWebhookEndpoint{URL: url,
		EventTypes: allTypes(), Secret: webhooks.NewSecret()})
	if err != nil {
		w.t.Fatal(err)
	}
	return e
}

func allTypes() []order.EventType {
	return []order.EventType{order.EventOrderPlaced, order.EventPaymentRequested, order.EventPaymentSucceeded,
		order.EventPaymentFailed, order.EventShippingAddressUpdated, order.EventOrderShipped, order.EventOrderDelivered,
		order.EventOrderCancelled}
}

// place commits a new order of the customer and returns its event.
func (w *world) place() order.Event {
	w.t.Helper()
	evs, err := w.store.InTx(context.Background(), func(tx *postgres.Tx) error {
		_, err := tx.PlaceOrder(context.Background(), w.customer, postgres.PlaceOrderInput{
			Lines:    []order.LineInput{{ProductID: w.products[0].ID, Quantity: 1}},
			Address:  order.Address{Name: "Alice", Line1: "Main St 1", City: "Berlin", PostalCode: "10115", Country: "DE"},
			Currency: w.products[0].Price.Currency})
		return err
	})
	if err != nil || len(evs) != 1 {
		w.t.Fatalf("place order: %v (%d events)", err, len(evs))
	}
	return evs[0]
}

// cancel commits the cancellation of an order at version v.
func (w *world) cancel(orderID string, v int) order.Event {
	w.t.Helper()
	evs, err := w.store.InTx(context.Background(), func(tx *postgres.Tx) error {
		_, err := tx.ChangeOrder(context.Background(), postgres.Change{Viewer: w.customer, OrderID: orderID,
			ExpectedVersion: v, Action: order.ActionCancel})
		return err
	})
	if err != nil || len(evs) != 1 {
		w.t.Fatalf("cancel order: %v", err)
	}
	return evs[0]
}

// attempts collects the attempts a worker reports and lets tests wait on
// them.
type attempts struct {
	mu     sync.Mutex
	all    []webhooks.Attempt
	notify chan struct{}
}

func newAttempts() *attempts { return &attempts{notify: make(chan struct{})} }

func (a *attempts) observe(x webhooks.Attempt) {
	a.mu.Lock()
	a.all = append(a.all, x)
	close(a.notify)
	a.notify = make(chan struct{})
	a.mu.Unlock()
}

// wait returns the attempts once cond holds for them.
func (a *attempts) wait(t *testing.T, what string, cond func([]webhooks.Attempt) bool) []webhooks.Attempt {
	t.Helper()
	timeout := time.After(waitTimeout)
	for {
		a.mu.Lock()
		got := append([]webhooks.Attempt(nil), a.all...)
		ch := a.notify
		a.mu.Unlock()
		if cond(got) {
			return got
		}
		select {
		case <-ch:
		case <-timeout:
			t.Fatalf("timed out waiting for %s; attempts: %+v", what, got)
		}
	}
}

// count returns how many attempts match.
func count(as []webhooks.Attempt, match func(webhooks.Attempt) bool) int {
	n := 0
	for _, a := range as {
		if match(a) {
			n++
		}
	}
	return n
}

// testConfig is a worker configuration with tiny backoffs and a short
// poll (nothing waits on it: the tests wake the worker or wait on
// attempts).
func testConfig(store *postgres.Store, obs *attempts) webhooks.Config {
	return webhooks.Config{Store: store, Workers: 4, PerEndpoint: 2, Timeout: 5 * time.Second,
		InitialBackoff: 5 * time.Millisecond, MaxBackoff: 20 * time.Millisecond, PollInterval: 20 * time.Millisecond,
		AllowPrivate: true, Observe: obs.observe, BreakerFailures: 1000,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
}

// run starts a worker until the test ends.
func run(t *testing.T, cfg webhooks.Config) *webhooks.Worker {
	t.Helper()
	w, err := webhooks.NewWorker(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); w.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return w
}

// waitReceived waits until the receiver's requests satisfy cond.
func waitReceived(t *testing.T, r *hooksim.Receiver, what string, cond func([]hooksim.Received) bool) []hooksim.Received {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	got, err := r.Wait(ctx, cond)
	if err != nil {
		t.Fatalf("timed out waiting for %s; received %d: %+v", what, len(got), got)
	}
	return got
}
