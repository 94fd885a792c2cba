package idempotency_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/parser"

	"github.com/shop/bff/internal/httpx"
	"github.com/shop/bff/internal/idempotency"
	"github.com/shop/bff/internal/order"
	"github.com/shop/bff/internal/postgres"
	"github.com/shop/bff/internal/testenv"
)

// fixture is a seeded store with a keeper over it.
type fixture struct {
	t        *testing.T
	store    *postgres.Store
	db       *pgxpool.Pool // the test's own, for SQL of its own
	alice    *order.User
	bob      *order.User
	products []*order.Product
	commits  *commitLog
	metrics  *countMetrics
	keeper   *idempotency.Keeper
}

type commitLog struct {
	mu     sync.Mutex
	events []order.Event
	calls  int
}

func (c *commitLog) add(_ context.Context, events []order.Event) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls++
	c.events = append(c.events, events...)
}

func (c *commitLog) snapshot() (int, []order.Event) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.calls, append([]order.Event(nil), c.events...)
}

type countMetrics struct {
	mu sync.Mutex
	n  map[idempotency.Outcome]int
}

func (m *countMetrics) Outcome(o idempotency.Outcome) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.n[o]++
}

func (m *countMetrics) get(o idempotency.Outcome) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.n[o]
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	store, url := testenv.Store(t, true, postgres.Config{MaxConns: 8})
	ctx := context.Background()
	f := &fixture{t: t, store: store, db: testenv.DB(t, url), commits: &commitLog{}, metrics: &countMetrics{n: map[idempotency.Outcome]int{}}}
	var err error
	if f.alice, err = store.UserByEmail(ctx, "alice@example.com"); err != nil {
		t.Fatal(err)
	}
	if f.bob, err = store.UserByEmail(ctx, "bob@example.com"); err != nil {
		t.Fatal(err)
	}
	if f.products, _, err = store.Products(ctx, 3, ""); err != nil {
		t.Fatal(err)
	}
	f.keeper = idempotency.New(store, idempotency.Config{OnCommit: f.commits.add, Metrics: f.metrics})
	return f
}

func (f *fixture) count(sql string, args ...any) int {
	f.t.Helper()
	var n int
	if err := f.db.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		f.t.Fatalf("%s: %v", sql, err)
	}
	return n
}

func (f *fixture) orders(u *order.User) int {
	return f.count(`SELECT count(*) FROM orders WHERE customer_id = $1::uuid`, u.ID)
}

func (f *fixture) events() int { return f.count(`SELECT count(*) FROM order_events`) }

func (f *fixture) keys(u *order.User, key string) int {
	return f.count(`SELECT count(*) FROM idempotency_keys WHERE user_id = $1::uuid AND key = $2`, u.ID, key)
}

func (f *fixture) placeInput() postgres.PlaceOrderInput {
	return postgres.PlaceOrderInput{
		Lines:    []order.LineInput{{ProductID: f.products[0].ID, Quantity: 2}, {ProductID: f.products[1].ID, Quantity: 1}},
		Address:  order.Address{Name: "Alice", Line1: "1 Main St", City: "Springfield", PostalCode: "12345", Country: "US"},
		Currency: "USD",
	}
}

// place is an exec function that places an order for u in the keeper's
// transaction and answers with its id.
func (f *fixture) place(u *order.User, placed *string) func(ctx context.Context) idempotency.Response {
	return func(ctx context.Context) idempotency.Response {
		tx, ok := postgres.TxFrom(ctx)
		if !ok {
			f.t.Error("exec runs without the keeper's transaction")
			return idempotency.Response{Status: 500, Transient: true}
		}
		o, err := tx.PlaceOrder(ctx, u, f.placeInput())
		if err != nil {
			f.t.Errorf("place: %v", err)
			return idempotency.Response{Status: 500, Transient: true}
		}
		if placed != nil {
			*placed = o.ID
		}
		return idempotency.Response{Status: 200, Body: []byte(`{"data":{"placeOrder":{"order":{"id":"` + o.ID + `"}}}}`)}
	}
}

func req(u *order.User, key, fp string) idempotency.Request {
	return idempotency.Request{UserID: u.ID, Key: key, Fingerprint: []byte(fp)}
}

// A transaction that dies after its write and before its commit leaves
// neither the effect nor the key; the retry executes and commits both.
func TestKilledTransactionLeavesNoTrace(t *testing.T) {
	f := newFixture(t)
	orders, events := f.orders(f.alice), f.events()

	t.Run("context cancelled before commit", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		ran := false
		_, outcome, err := f.keeper.Run(ctx, req(f.alice, "killed", "fp"), func(ctx context.Context) idempotency.Response {
			ran = true
			resp := f.place(f.alice, nil)(ctx)
			cancel() // the client went away, the instance is shutting down, the deadline passed
			return resp
		})
		if !ran || err == nil {
			t.Fatalf("ran=%v err=%v outcome=%q: want a failure after exec", ran, err, outcome)
		}
		if c := order.ErrorCode(err); c != order.CodeUnavailable || !c.Retryable() {
			t.Fatalf("error %v: want a retryable UNAVAILABLE", err)
		}
		if outcome == idempotency.OutcomeExecuted {
			t.Fatalf("outcome %q", outcome)
		}
	})
	t.Run("transient response", func(t *testing.T) {
		resp, outcome, err := f.keeper.Run(context.Background(), req(f.alice, "transient", "fp"), func(ctx context.Context) idempotency.Response {
			f.place(f.alice, nil)(ctx)
			return idempotency.Response{Status: 503, Body: []byte(`{"errors":[{"extensions":{"code":"UNAVAILABLE"}}]}`), Transient: true}
		})
		if err != nil || outcome != idempotency.OutcomeNotSaved || resp.Status != 503 {
			t.Fatalf("%v %q %d", err, outcome, resp.Status)
		}
	})
	t.Run("payOrder killed before commit", func(t *testing.T) {
		var o order.Order
		if err := f.db.QueryRow(context.Background(), `SELECT id::text, version FROM orders
			WHERE customer_id = $1::uuid AND status = 'PENDING_PAYMENT' AND payment_status = 'UNPAID' LIMIT 1`, f.alice.ID).Scan(&o.ID, &o.Version); err != nil {
			t.Fatal(err)
		}
		jobs := f.count(`SELECT count(*) FROM charge_jobs WHERE order_id = $1::uuid`, o.ID)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		_, _, err := f.keeper.Run(ctx, req(f.alice, "killed-pay", "fp"), func(ctx context.Context) idempotency.Response {
			tx, _ := postgres.TxFrom(ctx)
			if _, err := tx.ChangeOrder(ctx, postgres.Change{Viewer: f.alice, OrderID: o.ID, ExpectedVersion: o.Version, Action: order.ActionPay}); err != nil {
				t.Errorf("pay: %v", err)
			}
			cancel()
			return idempotency.Response{Status: 200, Body: []byte(`{}`)}
		})
		if err == nil {
			t.Fatal("want a failure")
		}
		if got := f.count(`SELECT version FROM orders WHERE id = $1::uuid`, o.ID); got != o.Version {
			t.Fatalf("version %d -> %d", o.Version, got)
		}
		if got := f.count(`SELECT count(*) FROM charge_jobs WHERE order_id = $1::uuid`, o.ID); got != jobs {
			t.Fatalf("a charge job survived the rollback")
		}
		if got := f.count(`SELECT count(*) FROM order_events WHERE order_id = $1::uuid AND type = 'PAYMENT_REQUESTED' AND version > $2`, o.ID, o.Version); got != 0 {
			t.Fatalf("a PAYMENT_REQUESTED event survived the rollback")
		}
		if f.keys(f.alice, "killed-pay") != 0 {
			t.Fatal("key stored")
		}
		// the retry pays, with one job and one event
		if _, outcome, err := f.keeper.Run(context.Background(), req(f.alice, "killed-pay", "fp"), func(ctx context.Context) idempotency.Response {
			tx, _ := postgres.TxFrom(ctx)
			if _, err := tx.ChangeOrder(ctx, postgres.Change{Viewer: f.alice, OrderID: o.ID, ExpectedVersion: o.Version, Action: order.ActionPay}); err != nil {
				t.Errorf("pay: %v", err)
			}
			return idempotency.Response{Status: 200, Body: []byte(`{}`)}
		}); err != nil || outcome != idempotency.OutcomeExecuted {
			t.Fatalf("retry: %v %q", err, outcome)
		}
		if got := f.count(`SELECT count(*) FROM charge_jobs WHERE order_id = $1::uuid`, o.ID); got != jobs+1 {
			t.Fatalf("%d charge jobs after the retry, want %d", got, jobs+1)
		}
	})
	if got := f.orders(f.alice); got != orders {
		t.Fatalf("orders %d -> %d: a killed transaction left its order", orders, got)
	}
	if got := f.events(); got != events+1 { // + the retried payOrder's event
		t.Fatalf("events %d -> %d", events, got)
	}
	for _, k := range []string{"killed", "transient"} {
		if f.keys(f.alice, k) != 0 {
			t.Fatalf("key %q was stored without its effect", k)
		}
	}
	if calls, _ := f.commits.snapshot(); calls != 1 {
		t.Fatalf("OnCommit called %d times, want once (for the retried payOrder)", calls)
	}
	// The retries succeed, once.
	for _, k := range []string{"killed", "transient"} {
		var id string
		resp, outcome, err := f.keeper.Run(context.Background(), req(f.alice, k, "fp"), f.place(f.alice, &id))
		if err != nil || outcome != idempotency.OutcomeExecuted || resp.Status != 200 {
			t.Fatalf("retry %s: %v %q", k, err, outcome)
		}
		again, outcome, err := f.keeper.Run(context.Background(), req(f.alice, k, "fp"), func(context.Context) idempotency.Response {
			t.Fatal("a replay executed")
			return idempotency.Response{}
		})
		if err != nil || outcome != idempotency.OutcomeReplayed || string(again.Body) != string(resp.Body) || again.Status != 200 {
			t.Fatalf("replay %s: %v %q %s", k, err, outcome, again.Body)
		}
		if f.count(`SELECT count(*) FROM orders WHERE id = $1::uuid`, id) != 1 || f.keys(f.alice, k) != 1 {
			t.Fatalf("retry %s left no order or no key", k)
		}
	}
	if got := f.orders(f.alice); got != orders+2 {
		t.Fatalf("orders %d -> %d, want +2", orders, got)
	}
}

// While a request with a key runs, a second one with the key gets IN_USE at
// once and runs nothing; another user's identical key is unaffected.
func TestInFlightIsInUse(t *testing.T) {
	f := newFixture(t)
	entered, release := make(chan struct{}), make(chan struct{})
	type result struct {
		resp    idempotency.Response
		outcome idempotency.Outcome
		err     error
	}
	first := make(chan result, 1)
	go func() {
		place := f.place(f.alice, nil)
		resp, outcome, err := f.keeper.Run(context.Background(), req(f.alice, "busy", "fp"), func(ctx context.Context) idempotency.Response {
			r := place(ctx)
			close(entered)
			<-release
			return r
		})
		first <- result{resp, outcome, err}
	}()
	<-entered
	for _, fp := range []string{"fp", "other"} { // IN_USE wins over REUSED: the record is not there yet
		_, outcome, err := f.keeper.Run(context.Background(), req(f.alice, "busy", fp), func(context.Context) idempotency.Response {
			t.Error("the repeat executed while the first was in flight")
			return idempotency.Response{}
		})
		var oe *order.Error
		if !errors.As(err, &oe) || oe.Code != order.CodeIdempotencyKeyInUse || outcome != idempotency.OutcomeInUse {
			t.Fatalf("repeat in flight: %v %q", err, outcome)
		}
		if oe.Extensions["retryAfterSeconds"] != 1 || !oe.Code.Retryable() || httpx.Status(oe.Code) != 409 {
			t.Fatalf("IN_USE error %+v", oe)
		}
	}
	// bob's "busy" is his own. (His exec writes nothing: every event
	// append waits for the stream head that the first transaction holds
	// until it commits, see postgres.Tx.appendEvent.)
	bobRan := false
	if _, outcome, err := f.keeper.Run(context.Background(), req(f.bob, "busy", "fp"), func(context.Context) idempotency.Response {
		bobRan = true
		return idempotency.Response{Status: 200, Body: []byte(`{}`)}
	}); err != nil || outcome != idempotency.OutcomeExecuted || !bobRan {
		t.Fatalf("bob: %v %q", err, outcome)
	}
	close(release)
	r := <-first
	if r.err != nil || r.outcome != idempotency.OutcomeExecuted {
		t.Fatalf("first: %v %q", r.err, r.outcome)
	}
	again, outcome, err := f.keeper.Run(context.Background(), req(f.alice, "busy", "fp"), nil)
	if err != nil || outcome != idempotency.OutcomeReplayed || string(again.Body) != string(r.resp.Body) {
		t.Fatalf("after the first: %v %q", err, outcome)
	}
	if f.metrics.get(idempotency.OutcomeInUse) != 2 || f.metrics.get(idempotency.OutcomeExecuted) != 2 || f.metrics.get(idempotency.OutcomeReplayed) != 1 {
		t.Fatalf("metrics %v", f.metrics.n)
	}
}

// The same key with another fingerprint is REUSED and runs nothing.
func TestReusedKey(t *testing.T) {
	f := newFixture(t)
	if _, _, err := f.keeper.Run(context.Background(), req(f.alice, "k", "one"), f.place(f.alice, nil)); err != nil {
		t.Fatal(err)
	}
	orders := f.orders(f.alice)
	_, outcome, err := f.keeper.Run(context.Background(), req(f.alice, "k", "two"), func(context.Context) idempotency.Response {
		t.Fatal("a REUSED request executed")
		return idempotency.Response{}
	})
	if order.ErrorCode(err) != order.CodeIdempotencyKeyReused || outcome != idempotency.OutcomeReused || httpx.Status(order.CodeIdempotencyKeyReused) != 422 {
		t.Fatalf("%v %q", err, outcome)
	}
	if f.orders(f.alice) != orders || f.metrics.get(idempotency.OutcomeReused) != 1 {
		t.Fatal("REUSED changed something")
	}
}

// Deterministic failures are final outcomes: stored and replayed.
func TestDeterministicFailureIsStored(t *testing.T) {
	f := newFixture(t)
	body := []byte(`{"errors":[{"extensions":{"code":"INVALID_TRANSITION"}}],"data":null}`)
	calls := 0
	exec := func(context.Context) idempotency.Response {
		calls++
		return idempotency.Response{Status: 200, Body: body}
	}
	for i := 0; i < 3; i++ {
		resp, _, err := f.keeper.Run(context.Background(), req(f.alice, "det", "fp"), exec)
		if err != nil || string(resp.Body) != string(body) {
			t.Fatalf("%v %s", err, resp.Body)
		}
	}
	if calls != 1 || f.keys(f.alice, "det") != 1 {
		t.Fatalf("executed %d times", calls)
	}
}

// Without a key (or a user) the mutation runs in one transaction and
// nothing is stored.
func TestUnkeyedRunsAndCommits(t *testing.T) {
	f := newFixture(t)
	orders := f.orders(f.alice)
	for i := 0; i < 2; i++ {
		if _, outcome, err := f.keeper.Run(context.Background(), idempotency.Request{UserID: f.alice.ID}, f.place(f.alice, nil)); err != nil || outcome != idempotency.OutcomeNone {
			t.Fatalf("%v %q", err, outcome)
		}
	}
	if got := f.orders(f.alice); got != orders+2 {
		t.Fatalf("orders %d -> %d", orders, got)
	}
	if f.count(`SELECT count(*) FROM idempotency_keys`) != 0 {
		t.Fatal("an unkeyed request stored a record")
	}
	calls, events := f.commits.snapshot()
	if calls != 2 || len(events) != 2 || events[0].Type != order.EventOrderPlaced {
		t.Fatalf("OnCommit: %d calls, %v", calls, events)
	}
}

// Expired records do not replay: the key is new again, before and after
// the reaper has deleted them; the reaper deletes in batches and keeps
// live records.
func TestExpiredRecordsAndReaper(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	var first string
	if _, _, err := f.keeper.Run(ctx, req(f.alice, "old", "fp"), f.place(f.alice, &first)); err != nil {
		t.Fatal(err)
	}
	if _, err := f.db.Exec(ctx, `UPDATE idempotency_keys SET expires_at = now() - interval '1 second'`); err != nil {
		t.Fatal(err)
	}
	var second string
	_, outcome, err := f.keeper.Run(ctx, req(f.alice, "old", "another fingerprint"), f.place(f.alice, &second))
	if err != nil || outcome != idempotency.OutcomeExecuted || second == "" || second == first {
		t.Fatalf("expired key: %v %q", err, outcome)
	}
	if f.count(`SELECT count(*) FROM idempotency_keys WHERE key = 'old' AND expires_at > now() + interval '23 hours'`) != 1 {
		t.Fatal("the expired record was not replaced by a fresh one with the default TTL of 24h")
	}

	// a short configured TTL
	short := idempotency.New(f.store, idempotency.Config{TTL: time.Minute})
	if _, _, err := short.Run(ctx, req(f.alice, "short", "fp"), f.place(f.alice, nil)); err != nil {
		t.Fatal(err)
	}
	if f.count(`SELECT count(*) FROM idempotency_keys WHERE key = 'short' AND expires_at <= now() + interval '1 minute'`) != 1 {
		t.Fatal("the configured TTL was not applied")
	}

	// 1,234 expired records (of two users) and the live ones
	for _, u := range []*order.User{f.alice, f.bob} {
		if _, err := f.db.Exec(ctx, `INSERT INTO idempotency_keys (user_id, key, fingerprint, status, body, expires_at)
			SELECT $1::uuid, 'exp-' || g, '\x00', 200, '{}', now() - g * interval '1 minute' FROM generate_series(1, 617) g`, u.ID); err != nil {
			t.Fatal(err)
		}
	}
	live := f.count(`SELECT count(*) FROM idempotency_keys WHERE expires_at > now()`)
	if live != 2 {
		t.Fatalf("%d live records", live)
	}
	n, err := f.store.DeleteExpiredKeys(ctx, 100)
	if err != nil || n != 100 {
		t.Fatalf("a batch of 100 deleted %d: %v", n, err)
	}
	rctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { f.keeper.Reap(rctx, time.Hour, 100); close(done) }()
	deadline := time.Now().Add(20 * time.Second)
	for f.count(`SELECT count(*) FROM idempotency_keys WHERE expires_at <= now()`) > 0 {
		if time.Now().After(deadline) {
			t.Fatal("the reaper did not delete the expired records")
		}
		time.Sleep(10 * time.Millisecond)
	}
	stop()
	<-done
	if got := f.count(`SELECT count(*) FROM idempotency_keys`); got != live {
		t.Fatalf("%d records left, want the %d live ones", got, live)
	}
	// a reaped key is new
	if _, outcome, err := f.keeper.Run(ctx, req(f.bob, "exp-5", "fp"), f.place(f.bob, nil)); err != nil || outcome != idempotency.OutcomeExecuted {
		t.Fatalf("reaped key: %v %q", err, outcome)
	}
}

func TestParseKey(t *testing.T) {
	valid := []string{"k", "0b6c1d1e-6f4e-4c1e-9a57-5a3b1c7d9e2f", strings.Repeat("x", 255), "a b", "!~{}|"}
	for _, k := range valid {
		if got, err := idempotency.ParseKey(k, true); err != nil || got != k {
			t.Errorf("%q: %q %v", k, got, err)
		}
	}
	invalid := []string{"", strings.Repeat("x", 256), "schlüssel", "\x00", "a\tb", "a\nb", "a\x7f", "\x1b[0m", "ключ"}
	for _, k := range invalid {
		if _, err := idempotency.ParseKey(k, true); order.ErrorCode(err) != order.CodeIdempotencyKeyInvalid {
			t.Errorf("%q: %v, want IDEMPOTENCY_KEY_INVALID", k, err)
		}
	}
	if got, err := idempotency.ParseKey("", false); got != "" || err != nil {
		t.Errorf("absent: %q %v", got, err)
	}
	if httpx.Status(order.CodeIdempotencyKeyInvalid) != 400 || httpx.Status(order.CodeIdempotencyKeyRequired) != 400 {
		t.Error("statuses")
	}
}

func doc(t *testing.T, q string) *ast.QueryDocument {
	t.Helper()
	d, err := parser.ParseQuery(&ast.Source{Input: q})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func vars(t *testing.T, s string) map[string]any {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestFingerprint(t *testing.T) {
	q := `mutation Place($in: PlaceOrderInput!) { placeOrder(input: $in) { order { id } } }`
	v := `{"in":{"lines":[{"productId":"p1","quantity":2}],"currency":"USD","shippingAddress":{"name":"A","country":"US"}}}`
	base := idempotency.Fingerprint("Place", doc(t, q), vars(t, v))
	same := map[string][2]string{
		"whitespace":     {"mutation Place(\n  $in: PlaceOrderInput!\n)\n{\n\tplaceOrder(input: $in) {order{id}}\n}\n", v},
		"comments":       {"# a comment\nmutation Place($in: PlaceOrderInput!) { # here\n placeOrder(input: $in) { order { id } } # and there\n}", v},
		"commas":         {`mutation Place($in: PlaceOrderInput!,) { placeOrder(input: $in,) { order { id, } } }`, v},
		"variable order": {q, `{"in":{"shippingAddress":{"country":"US","name":"A"},"currency":"USD","lines":[{"quantity":2,"productId":"p1"}]}}`},
		"number form":    {q, `{"in":{"lines":[{"productId":"p1","quantity":2.0}],"currency":"USD","shippingAddress":{"name":"A","country":"US"}}}`},
	}
	for name, c := range same {
		if got := idempotency.Fingerprint("Place", doc(t, c[0]), vars(t, c[1])); string(got) != string(base) {
			t.Errorf("%s changed the fingerprint", name)
		}
	}
	differ := map[string][2]string{
		"quantity":      {q, `{"in":{"lines":[{"productId":"p1","quantity":3}],"currency":"USD","shippingAddress":{"name":"A","country":"US"}}}`},
		"line order":    {q, `{"in":{"lines":[{"productId":"p2","quantity":1},{"productId":"p1","quantity":2}],"currency":"USD","shippingAddress":{"name":"A","country":"US"}}}`},
		"string vs int": {q, `{"in":{"lines":[{"productId":"p1","quantity":"2"}],"currency":"USD","shippingAddress":{"name":"A","country":"US"}}}`},
		"selection":     {`mutation Place($in: PlaceOrderInput!) { placeOrder(input: $in) { order { id version } } }`, v},
		"argument":      {`mutation Place($in: PlaceOrderInput!) { placeOrder(input: $in) { order { id } } } query X { viewer { id } }`, v},
	}
	for name, c := range differ {
		if got := idempotency.Fingerprint("Place", doc(t, c[0]), vars(t, c[1])); string(got) == string(base) {
			t.Errorf("%s did not change the fingerprint", name)
		}
	}
	if got := idempotency.Fingerprint("Other", doc(t, q), vars(t, v)); string(got) == string(base) {
		t.Error("the operation name did not change the fingerprint")
	}
	// the operation name and the document do not run into each other
	a := idempotency.Fingerprint("ab", doc(t, `{ x }`), nil)
	b := idempotency.Fingerprint("a", doc(t, `{ x }`), nil)
	if string(a) == string(b) || len(a) != 32 {
		t.Error("fingerprint framing")
	}
}

// Two keepers (two instances) racing with one key produce one effect.
func TestTwoKeepersOneEffect(t *testing.T) {
	f := newFixture(t)
	other := idempotency.New(f.store, idempotency.Config{})
	orders := f.orders(f.alice)
	const n = 8
	var wg sync.WaitGroup
	outcomes := make([]idempotency.Outcome, n)
	errs := make([]error, n)
	start := make(chan struct{})
	for i := 0; i < n; i++ {
		k := f.keeper
		if i%2 == 1 {
			k = other
		}
		wg.Add(1)
		go func(i int, k *idempotency.Keeper) {
			defer wg.Done()
			<-start
			_, outcomes[i], errs[i] = k.Run(context.Background(), req(f.alice, "race", "fp"), f.place(f.alice, nil))
		}(i, k)
	}
	close(start)
	wg.Wait()
	executed := 0
	for i := range outcomes {
		switch {
		case errs[i] == nil && outcomes[i] == idempotency.OutcomeExecuted:
			executed++
		case errs[i] == nil && outcomes[i] == idempotency.OutcomeReplayed:
		case order.ErrorCode(errs[i]) == order.CodeIdempotencyKeyInUse:
		default:
			t.Fatalf("run %d: %q %v", i, outcomes[i], errs[i])
		}
	}
	if executed != 1 || f.orders(f.alice) != orders+1 {
		t.Fatalf("%d executions, %d orders", executed, f.orders(f.alice)-orders)
	}
}

// A replay first settles what its effect may have left undone (the
// instance that committed it may have stopped before invalidating): the
// hook runs before the stored answer is returned, never on the first
// execution, and when it fails the request fails (retryable) instead of
// answering.
func TestReplaySettlesFirst(t *testing.T) {
	f := newFixture(t)
	var settled int
	var fail error
	k := idempotency.New(f.store, idempotency.Config{OnReplay: func(context.Context) error {
		settled++
		return fail
	}})
	if _, outcome, err := k.Run(context.Background(), req(f.alice, "s", "fp"), f.place(f.alice, nil)); err != nil || outcome != idempotency.OutcomeExecuted {
		t.Fatalf("%v %q", err, outcome)
	}
	if settled != 0 {
		t.Fatalf("settled %d times on the first execution", settled)
	}
	resp, outcome, err := k.Run(context.Background(), req(f.alice, "s", "fp"), f.place(f.alice, nil))
	if err != nil || outcome != idempotency.OutcomeReplayed || len(resp.Body) == 0 || settled != 1 {
		t.Fatalf("replay: %v %q settled=%d", err, outcome, settled)
	}
	fail = order.Errorf(order.CodeUnavailable, "postgres is unavailable")
	resp, _, err = k.Run(context.Background(), req(f.alice, "s", "fp"), f.place(f.alice, nil))
	if order.ErrorCode(err) != order.CodeUnavailable || len(resp.Body) != 0 || settled != 2 {
		t.Fatalf("replay with a failing settle: %v %s settled=%d", err, resp.Body, settled)
	}
}

// A replay's settling reads Postgres on a connection of its own: the key's
// transaction has given its connection back by then, so a replay never
// holds one connection while waiting for another (with a pool of one, it
// would wait for itself until its deadline).
func TestReplaySettlesOnItsOwnConnection(t *testing.T) {
	store, _ := testenv.Store(t, true, postgres.Config{MaxConns: 1})
	f := &fixture{t: t, store: store}
	alice, err := store.UserByEmail(context.Background(), "alice@example.com")
	if err != nil {
		t.Fatal(err)
	}
	if f.products, _, err = store.Products(context.Background(), 3, ""); err != nil {
		t.Fatal(err)
	}
	k := idempotency.New(store, idempotency.Config{OnReplay: func(ctx context.Context) error {
		_, err := store.QueueStats(ctx) // a read on the pool
		return err
	}})
	run := func() (idempotency.Outcome, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, outcome, err := k.Run(ctx, req(alice, "one-conn", "fp"), f.place(alice, nil))
		return outcome, err
	}
	if outcome, err := run(); err != nil || outcome != idempotency.OutcomeExecuted {
		t.Fatalf("%v %q", err, outcome)
	}
	if outcome, err := run(); err != nil || outcome != idempotency.OutcomeReplayed {
		t.Fatalf("replay with a pool of one connection: %v %q", err, outcome)
	}
}
