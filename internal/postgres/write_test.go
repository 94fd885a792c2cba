package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/shop/bff/internal/order"
	"github.com/shop/bff/internal/postgres"
	"github.com/shop/bff/internal/testenv"
)

type writeFixture struct {
	t            *testing.T
	store        *postgres.Store
	db           *pgxpool.Pool // the test's own, for SQL of its own
	alice, staff *order.User
	bob          *order.User
	products     []*order.Product
}

func newWriteFixture(t *testing.T) *writeFixture {
	t.Helper()
	store, url := testenv.Store(t, true, postgres.Config{MaxConns: 6})
	ctx := context.Background()
	f := &writeFixture{t: t, store: store, db: testenv.DB(t, url)}
	var err error
	for email, dst := range map[string]**order.User{"alice@example.com": &f.alice, "bob@example.com": &f.bob, "staff@example.com": &f.staff} {
		if *dst, err = store.UserByEmail(ctx, email); err != nil {
			t.Fatal(err)
		}
	}
	if f.products, _, err = store.Products(ctx, 3, ""); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *writeFixture) count(sql string, args ...any) int {
	f.t.Helper()
	var n int
	if err := f.db.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		f.t.Fatalf("%s: %v", sql, err)
	}
	return n
}

func (f *writeFixture) input() postgres.PlaceOrderInput {
	return postgres.PlaceOrderInput{
		Lines:    []order.LineInput{{ProductID: f.products[0].ID, Quantity: 2}, {ProductID: f.products[1].ID, Quantity: 1}},
		Address:  order.Address{Name: "Alice", Line1: "1 Main St", City: "Springfield", PostalCode: "12345", Country: "US"},
		Currency: "USD",
	}
}

func (f *writeFixture) place() *order.Order {
	f.t.Helper()
	var o *order.Order
	if _, err := f.store.InTx(context.Background(), func(tx *postgres.Tx) error {
		var err error
		o, err = tx.PlaceOrder(context.Background(), f.alice, f.input())
		return err
	}); err != nil {
		f.t.Fatal(err)
	}
	return o
}

// The reads of a Tx see its own uncommitted rows; the store's do not.
func TestTxReadsSeeTheirOwnWrites(t *testing.T) {
	f := newWriteFixture(t)
	ctx := context.Background()
	tx, err := f.store.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	o, err := tx.PlaceOrder(ctx, f.alice, f.input())
	if err != nil {
		t.Fatal(err)
	}
	want := f.products[0].Price.Cents*2 + f.products[1].Price.Cents
	if o.Version != 1 || o.Total.Cents != want || o.Status != order.StatusPendingPayment || o.PaymentStatus != order.PaymentUnpaid {
		t.Fatalf("placed %+v, want total %d", o, want)
	}
	set := postgres.OrderSet{IDs: []string{o.ID, "not-a-uuid"}}
	var outside postgres.Batch
	outLines := outside.LinesOf(set)
	outOrders := outside.Orders(set)
	if err := f.store.Run(ctx, &outside); err != nil {
		t.Fatal(err)
	}
	if len(outLines.Value().ByOrder) != 0 || len(outOrders.Value().Orders) != 0 {
		t.Fatalf("uncommitted rows visible outside: %+v %+v", outLines.Value(), outOrders.Value())
	}
	var inside postgres.Batch
	lines, customers, orders := inside.LinesOf(set), inside.CustomersOf(set), inside.Orders(set)
	if err := tx.Run(ctx, &inside); err != nil {
		t.Fatal(err)
	}
	ls := lines.Value()
	if l := ls.ByOrder[o.ID]; len(l) != 2 || l[0].Quantity != 2 || l[1].UnitPrice != f.products[1].Price ||
		ls.Products[l[0].ProductID] == nil || ls.Products[l[1].ProductID].SKU != f.products[1].SKU {
		t.Fatalf("lines %+v", ls)
	}
	if c := customers.Value()[f.alice.ID]; c == nil || c.Email != "alice@example.com" || len(customers.Value()) != 1 {
		t.Fatalf("customers %+v", customers.Value())
	}
	if p := orders.Value(); len(p.Orders) != 1 || p.Orders[0].ID != o.ID || p.More {
		t.Fatalf("orders %+v", p)
	}
	if evs := tx.Events(); len(evs) != 0 {
		t.Fatalf("events before commit %+v: they are written at commit", evs)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if evs := tx.Events(); len(evs) != 1 || evs[0].Type != order.EventOrderPlaced || evs[0].Version != 1 || evs[0].FromStatus != nil || evs[0].Position == 0 {
		t.Fatalf("events %+v", evs)
	}
}

// A change's writes ride with the transaction's next round trip: what the
// transaction runs after it (a read, another change, a single statement)
// sees them, and the order it returns is the row it wrote.
func TestStatementsAfterAChangeSeeIt(t *testing.T) {
	f := newWriteFixture(t)
	ctx := context.Background()
	o := f.place()
	addr := order.Address{Name: "Alice", Line1: "2 Side St", City: "Oakland", PostalCode: "94607", Country: "US"}
	var first, second *order.Order
	events, err := f.store.InTx(ctx, func(tx *postgres.Tx) error {
		var err error
		if first, err = tx.ChangeOrder(ctx, postgres.Change{Viewer: f.alice, OrderID: o.ID, ExpectedVersion: 1,
			Action: order.ActionUpdateShippingAddress, Address: &addr}); err != nil {
			return err
		}
		var b postgres.Batch
		orders := b.Orders(postgres.OrderSet{IDs: []string{o.ID}})
		if err := tx.Run(ctx, &b); err != nil {
			return err
		}
		if p := orders.Value(); len(p.Orders) != 1 || *p.Orders[0] != *first {
			t.Errorf("read after the change: %+v, want %+v", p.Orders, first)
		}
		// The second change locks and reads the row the first one wrote.
		if second, err = tx.ChangeOrder(ctx, postgres.Change{Viewer: f.alice, OrderID: o.ID, ExpectedVersion: 2,
			Action: order.ActionPay}); err != nil {
			return err
		}
		// A statement sent on its own (PlaceOrder's catalogue read, then its
		// insert) also comes after the pending writes.
		_, err = tx.PlaceOrder(ctx, f.alice, f.input())
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if first.Version != 2 || first.Address != addr || second.Version != 3 || second.PaymentStatus != order.PaymentProcessing || second.Address != addr {
		t.Fatalf("changes %+v, %+v", first, second)
	}
	if len(events) != 3 || events[0].Version != 2 || events[1].Version != 3 {
		t.Fatalf("events %+v", events)
	}
	var stored postgres.Batch
	orders := stored.Orders(postgres.OrderSet{IDs: []string{o.ID}})
	if err := f.store.Run(ctx, &stored); err != nil {
		t.Fatal(err)
	}
	if p := orders.Value(); len(p.Orders) != 1 || *p.Orders[0] != *second {
		t.Fatalf("committed row %+v, the change returned %+v", p.Orders, second)
	}
	if got := f.count(`SELECT count(*) FROM charge_jobs WHERE order_id = $1::uuid AND attempt = 1`, o.ID); got != 1 {
		t.Fatalf("%d charge jobs", got)
	}
}

// Each change increments the version by one and writes one event with the
// new version; PAY queues one charge job in the same transaction.
func TestChangeOrderVersionAndEvent(t *testing.T) {
	f := newWriteFixture(t)
	ctx := context.Background()
	o := f.place()
	addr := order.Address{Name: "Alice", Line1: "2 Side St", City: "Oakland", PostalCode: "94607", Country: "US"}
	steps := []struct {
		viewer *order.User
		action order.Action
		event  order.EventType
		to     order.Status
	}{
		{f.alice, order.ActionUpdateShippingAddress, order.EventShippingAddressUpdated, order.StatusPendingPayment},
		{f.alice, order.ActionPay, order.EventPaymentRequested, order.StatusPendingPayment},
	}
	for _, s := range steps {
		var n *order.Order
		events, err := f.store.InTx(ctx, func(tx *postgres.Tx) error {
			var err error
			n, err = tx.ChangeOrder(ctx, postgres.Change{Viewer: s.viewer, OrderID: o.ID, ExpectedVersion: o.Version, Action: s.action, Address: &addr})
			return err
		})
		if err != nil {
			t.Fatalf("%s: %v", s.action, err)
		}
		if n.Version != o.Version+1 || n.Status != s.to {
			t.Fatalf("%s: %+v", s.action, n)
		}
		if len(events) != 1 || events[0].Version != n.Version || events[0].Type != s.event || *events[0].FromStatus != o.Status || events[0].ToStatus != s.to || events[0].Actor != s.viewer.ID {
			t.Fatalf("%s: events %+v", s.action, events)
		}
		o = n
	}
	if o.Address != addr || o.PaymentStatus != order.PaymentProcessing {
		t.Fatalf("%+v", o)
	}
	if got := f.count(`SELECT count(*) FROM charge_jobs WHERE order_id = $1::uuid AND attempt = 1 AND amount_cents = $2 AND state = 'pending'`, o.ID, o.Total.Cents); got != 1 {
		t.Fatalf("%d charge jobs", got)
	}
	if got := f.count(`SELECT count(*) FROM order_events WHERE order_id = $1::uuid`, o.ID); got != o.Version {
		t.Fatalf("%d events at version %d", got, o.Version)
	}
}

// Checks come in the order of concurrency.md, under the row lock.
func TestChangeOrderCheckOrder(t *testing.T) {
	f := newWriteFixture(t)
	ctx := context.Background()
	o := f.place()
	change := func(v *order.User, a order.Action, version int) order.Code {
		_, err := f.store.InTx(ctx, func(tx *postgres.Tx) error {
			_, err := tx.ChangeOrder(ctx, postgres.Change{Viewer: v, OrderID: o.ID, ExpectedVersion: version, Action: a, TrackingNumber: "1Z"})
			return err
		})
		return order.ErrorCode(err)
	}
	cases := []struct {
		v       *order.User
		a       order.Action
		version int
		want    order.Code
	}{
		{f.bob, order.ActionShip, 9, order.CodeNotFound},
		{f.bob, order.ActionCancel, 1, order.CodeNotFound},
		{f.alice, order.ActionShip, 9, order.CodeForbidden},
		{f.staff, order.ActionPay, 9, order.CodeForbidden},
		{f.alice, order.ActionCancel, 9, order.CodeConflict},
		{f.staff, order.ActionDeliver, 9, order.CodeConflict},
		{f.staff, order.ActionDeliver, 1, order.CodeInvalidTransition},
	}
	for _, c := range cases {
		if got := change(c.v, c.a, c.version); got != c.want {
			t.Errorf("%s %s at %d: %s, want %s", c.v.Email, c.a, c.version, got, c.want)
		}
	}
	if got := f.count(`SELECT version FROM orders WHERE id = $1::uuid`, o.ID); got != 1 {
		t.Fatalf("version %d", got)
	}
}

// Of concurrent changes with one expectedVersion exactly one commits.
func TestConcurrentChangesOneWins(t *testing.T) {
	f := newWriteFixture(t)
	ctx := context.Background()
	o := f.place()
	const n = 4
	var wg sync.WaitGroup
	codes := make([]order.Code, n)
	start := make(chan struct{})
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			<-start
			v := f.alice
			if i%2 == 1 {
				v = f.staff
			}
			_, err := f.store.InTx(ctx, func(tx *postgres.Tx) error {
				_, err := tx.ChangeOrder(ctx, postgres.Change{Viewer: v, OrderID: o.ID, ExpectedVersion: 1, Action: order.ActionCancel})
				return err
			})
			codes[i] = order.ErrorCode(err)
			var oe *order.Error
			if errors.As(err, &oe) && oe.Code == order.CodeConflict && (oe.Extensions["currentVersion"] != 2 || oe.Extensions["currentStatus"] != "CANCELLED") {
				t.Errorf("conflict %+v", oe.Extensions)
			}
		}(i)
	}
	close(start)
	wg.Wait()
	won := 0
	for _, c := range codes {
		switch c {
		case "":
			won++
		case order.CodeConflict:
		default:
			t.Fatalf("codes %v", codes)
		}
	}
	if won != 1 || f.count(`SELECT count(*) FROM order_events WHERE order_id = $1::uuid`, o.ID) != 2 {
		t.Fatalf("%d won: %v", won, codes)
	}
}

// A live record is never overwritten; an expired one is replaced.
func TestSaveKeyRecord(t *testing.T) {
	f := newWriteFixture(t)
	ctx := context.Background()
	save := func(fp string) error {
		_, err := f.store.InTx(ctx, func(tx *postgres.Tx) error {
			return tx.SaveKeyRecord(ctx, f.alice.ID, "k", postgres.KeyRecord{Fingerprint: []byte(fp), Status: 200, Body: []byte(fp)}, time.Hour)
		})
		return err
	}
	if err := save("one"); err != nil {
		t.Fatal(err)
	}
	if err := save("two"); order.ErrorCode(err) != order.CodeInternal {
		t.Fatalf("overwriting a live record: %v", err)
	}
	if _, err := f.store.InTx(ctx, func(tx *postgres.Tx) error {
		tx.SaveKeyRecordAtCommit(f.alice.ID, "k", postgres.KeyRecord{Fingerprint: []byte("two"), Status: 200, Body: []byte("two")}, time.Hour)
		return nil
	}); order.ErrorCode(err) != order.CodeInternal {
		t.Fatalf("overwriting a live record at commit: %v", err)
	}
	read := func() *postgres.KeyRecord {
		var rec *postgres.KeyRecord
		if _, err := f.store.InTx(ctx, func(tx *postgres.Tx) error {
			locked, r, err := tx.ClaimKey(ctx, f.alice.ID, "k")
			if !locked && err == nil {
				t.Error("the key's lock is taken although no request holds it")
			}
			rec = r
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return rec
	}
	if rec := read(); rec == nil || string(rec.Body) != "one" {
		t.Fatalf("record %+v", rec)
	}
	if _, err := f.db.Exec(ctx, `UPDATE idempotency_keys SET expires_at = now() - interval '1 second'`); err != nil {
		t.Fatal(err)
	}
	if rec := read(); rec != nil {
		t.Fatalf("an expired record is live: %+v", rec)
	}
	if err := save("three"); err != nil {
		t.Fatal(err)
	}
	if rec := read(); rec == nil || string(rec.Body) != "three" {
		t.Fatalf("record %+v", rec)
	}
	// the reaper's batch deletes only expired records, at most batch of them
	if _, err := f.db.Exec(ctx, `INSERT INTO idempotency_keys (user_id, key, fingerprint, status, body, expires_at)
		SELECT $1::uuid, 'e' || g, '\x00', 200, '{}', now() - interval '1 hour' FROM generate_series(1, 7) g`, f.alice.ID); err != nil {
		t.Fatal(err)
	}
	for _, want := range []int64{5, 2, 0} {
		if n, err := f.store.DeleteExpiredKeys(ctx, 5); err != nil || n != want {
			t.Fatalf("deleted %d (%v), want %d", n, err, want)
		}
	}
	if f.count(`SELECT count(*) FROM idempotency_keys`) != 1 {
		t.Fatal("the live record was deleted")
	}
}

// Commit sends the transaction's last writes (the key record, the events)
// and its COMMIT in one round trip: when one of them fails, nothing of the
// transaction is committed; either way its connection goes back to the
// pool.
func TestCommitInTheLastRoundTrip(t *testing.T) {
	f := newWriteFixture(t)
	ctx := context.Background()
	o := f.place()
	addr := order.Address{Name: "Alice", Line1: "2 Side St", City: "Oakland", PostalCode: "94607", Country: "US"}
	rec := postgres.KeyRecord{Fingerprint: []byte("one"), Status: 200, Body: []byte("one")}
	if _, err := f.store.InTx(ctx, func(tx *postgres.Tx) error {
		tx.SaveKeyRecordAtCommit(f.alice.ID, "live", rec, time.Hour)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	change := func(key string) ([]order.Event, error) {
		return f.store.InTx(ctx, func(tx *postgres.Tx) error {
			_, err := tx.ChangeOrder(ctx, postgres.Change{Viewer: f.alice, OrderID: o.ID, ExpectedVersion: 1,
				Action: order.ActionUpdateShippingAddress, Address: &addr})
			tx.SaveKeyRecordAtCommit(f.alice.ID, key, rec, time.Hour)
			return err
		})
	}
	events := f.count(`SELECT count(*) FROM order_events`)

	if _, err := change("live"); order.ErrorCode(err) != order.CodeInternal {
		t.Fatalf("a live record of the key at commit: %v", err)
	}
	if v := f.count(`SELECT version FROM orders WHERE id = $1::uuid`, o.ID); v != 1 {
		t.Fatalf("version %d: the change committed although its key record failed", v)
	}
	if n := f.count(`SELECT count(*) FROM order_events`); n != events {
		t.Fatalf("%d events, want %d: an event committed although the key record failed", n, events)
	}
	if n := f.store.AcquiredConns(); n != 0 {
		t.Fatalf("%d connections still in use after the rollback", n)
	}

	evs, err := change("fresh")
	if err != nil {
		t.Fatal(err)
	}
	if v := f.count(`SELECT version FROM orders WHERE id = $1::uuid`, o.ID); v != 2 {
		t.Fatalf("version %d after the commit", v)
	}
	if len(evs) != 1 || evs[0].Position == 0 || f.count(`SELECT count(*) FROM order_events`) != events+1 {
		t.Fatalf("events %+v", evs)
	}
	if f.count(`SELECT count(*) FROM idempotency_keys WHERE key = 'fresh'`) != 1 {
		t.Fatal("the key record did not commit")
	}
	if n := f.store.AcquiredConns(); n != 0 {
		t.Fatalf("%d connections still in use after the commit", n)
	}
}

// The migrations give the database the planner settings the store's
// statements are written for (migration 00007): sessions opened after
// them plan every prepared statement once, and prefer index probes.
func TestPlannerSettings(t *testing.T) {
	_, url := testenv.Store(t, false, postgres.Config{})
	db := testenv.DB(t, url) // a session opened after the migrations
	for name, want := range map[string]string{"plan_cache_mode": "force_generic_plan", "random_page_cost": "1.1"} {
		var got string
		if err := db.QueryRow(context.Background(), "SELECT current_setting($1)", name).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("%s = %s, want %s", name, got, want)
		}
	}
}

// The pruner's vacuum runs exactly when the server's autovacuum is off,
// and then vacuums the events table.
func TestVacuumEvents(t *testing.T) {
	f := newWriteFixture(t)
	ctx := context.Background()
	f.place()
	var autovacuum bool
	if err := f.db.QueryRow(ctx, `SELECT current_setting('autovacuum')::bool`).Scan(&autovacuum); err != nil {
		t.Fatal(err)
	}
	ran, err := f.store.VacuumEvents(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ran == autovacuum {
		t.Fatalf("vacuumed %v with autovacuum %v", ran, autovacuum)
	}
	vacuums := f.count(`SELECT vacuum_count FROM pg_stat_user_tables WHERE relid = 'order_events'::regclass`)
	if ran && vacuums != 1 {
		t.Fatalf("the events table was vacuumed %d times", vacuums)
	}
}

// The status counts and spend of every order (a STAFF screen's) come from
// the running totals the writes keep: under concurrent writes, a rolled
// back one and compactions running beside them, they equal what the
// orders table says, and a compaction leaves one row per status and
// currency.
func TestStaffTotalsFollowTheOrders(t *testing.T) {
	f := newWriteFixture(t)
	ctx := context.Background()
	truth := func() *postgres.Summary {
		s := &postgres.Summary{Counts: map[order.Status]int{}, LifetimeSpend: map[string]int64{}}
		rows, err := f.db.Query(ctx, `SELECT status, currency, count(*), sum(total_cents) FROM orders GROUP BY status, currency`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		for rows.Next() {
			var st, cur string
			var n int
			var cents int64
			if err := rows.Scan(&st, &cur, &n, &cents); err != nil {
				t.Fatal(err)
			}
			s.Counts[order.Status(st)] += n
			if order.Status(st) != order.StatusCancelled {
				s.LifetimeSpend[cur] += cents
			}
		}
		return s
	}
	staff := func() *postgres.Summary {
		var b postgres.Batch
		s := b.Summary(postgres.Scope{})
		if err := f.store.Run(ctx, &b); err != nil {
			t.Fatal(err)
		}
		return s.Value()
	}
	change := func(o *order.Order, a order.Action) *order.Order {
		var n *order.Order
		if _, err := f.store.InTx(ctx, func(tx *postgres.Tx) error {
			var err error
			n, err = tx.ChangeOrder(ctx, postgres.Change{Viewer: f.alice, OrderID: o.ID, ExpectedVersion: o.Version, Action: a})
			return err
		}); err != nil {
			t.Error(err)
		}
		return n
	}

	stop := make(chan struct{})
	compacted := make(chan int64)
	go func() { // compactions beside the writes
		var removed int64
		defer func() { compacted <- removed }()
		for {
			select {
			case <-stop:
				return
			default:
			}
			n, err := f.store.CompactOrderTotals(ctx)
			if err != nil {
				t.Error(err)
				return
			}
			removed += n
		}
	}()
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < 6; i++ {
				o := f.place()
				switch (w + i) % 3 {
				case 0:
					change(o, order.ActionCancel)
				case 1:
					if p := change(o, order.ActionPay); p != nil {
						if _, _, err := f.store.ApplyPaymentResult(ctx, postgres.PaymentResult{EventID: fmt.Sprintf("evt_totals_%d_%d", w, i),
							Type: "payment.succeeded", OrderID: o.ID, ChargeID: "ch", AmountCents: o.Total.Cents, Currency: o.Total.Currency, Succeeded: true}); err != nil {
							t.Error(err)
						}
					}
				}
			}
		}(w)
	}
	// A change that rolls back leaves the totals alone.
	o := f.place()
	if _, err := f.store.InTx(ctx, func(tx *postgres.Tx) error {
		if _, err := tx.ChangeOrder(ctx, postgres.Change{Viewer: f.alice, OrderID: o.ID, ExpectedVersion: 1, Action: order.ActionCancel}); err != nil {
			return err
		}
		return errors.New("changed my mind")
	}); err == nil {
		t.Fatal("the transaction committed")
	}
	wg.Wait()
	close(stop)
	if removed := <-compacted; removed == 0 {
		t.Error("no compaction removed a row")
	}
	want := truth()
	if want.Counts[order.StatusCancelled] == 0 || want.Counts[order.StatusPaid] == 0 || want.Counts[order.StatusPendingPayment] == 0 {
		t.Fatalf("the writes did not reach every status: %+v", want)
	}
	if got := staff(); !reflect.DeepEqual(got, want) {
		t.Fatalf("staff totals %+v, the orders say %+v", got, want)
	}
	if _, err := f.store.CompactOrderTotals(ctx); err != nil {
		t.Fatal(err)
	}
	if got := staff(); !reflect.DeepEqual(got, want) {
		t.Fatalf("after a compaction: %+v, the orders say %+v", got, want)
	}
	if n, groups := f.count(`SELECT count(*) FROM order_total_deltas`), f.count(`SELECT count(DISTINCT (status, currency)) FROM orders`); n != groups {
		t.Fatalf("%d rows after a compaction, for %d statuses and currencies", n, groups)
	}
}

// A compaction with nothing to fold rewrites nothing.
func TestCompactTotalsAreLeftAlone(t *testing.T) {
	f := newWriteFixture(t)
	ctx := context.Background()
	f.place()
	if _, err := f.store.CompactOrderTotals(ctx); err != nil {
		t.Fatal(err)
	}
	var xmin string
	if err := f.db.QueryRow(ctx, `SELECT string_agg(xmin::text, ',' ORDER BY status, currency) FROM order_total_deltas`).Scan(&xmin); err != nil {
		t.Fatal(err)
	}
	if n, err := f.store.CompactOrderTotals(ctx); err != nil || n != 0 {
		t.Fatalf("second compaction: %d rows removed, %v", n, err)
	}
	var again string
	if err := f.db.QueryRow(ctx, `SELECT string_agg(xmin::text, ',' ORDER BY status, currency) FROM order_total_deltas`).Scan(&again); err != nil {
		t.Fatal(err)
	}
	if again != xmin {
		t.Fatalf("the rows were rewritten: %s, then %s", xmin, again)
	}
}
