package stream

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/shop/bff/internal/order"
	"github.com/shop/bff/internal/postgres"
	"github.com/shop/bff/internal/testenv"
)

func TestWireFormat(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	b := e.instance(Config{Heartbeat: 50 * time.Millisecond}, nil)
	srv := e.serve(b)

	resp, cancel := request(t, srv, "alice", "stream=orders", "")
	defer cancel()
	resp.Body.Close()
	for k, want := range map[string]string{
		"Content-Type": "text/event-stream", "Cache-Control": "no-store", "X-Accel-Buffering": "no",
	} {
		if got := resp.Header.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}

	e.settle()
	c := connect(t, srv, "alice", "stream=orders", "") // checks the retry line
	// A heartbeat comes while nothing happens.
	for f := c.next(); f.Comment != "ping"; f = c.next() {
		if f.isEvent() {
			t.Fatalf("unexpected event %+v", f)
		}
	}

	_, evs := e.placeOrder(e.alice)
	e.publish(b, evs)
	f := c.nextEvent()
	want := evs[0]
	if f.ID != want.ID || !f.HasID || f.Event != "order.placed" {
		t.Fatalf("frame %+v, want id %s event order.placed", f, want.ID)
	}
	if strings.Contains(f.Data, "\n") {
		t.Fatalf("data is not one line: %q", f.Data)
	}
	var data map[string]any
	if err := json.Unmarshal([]byte(f.Data), &data); err != nil {
		t.Fatalf("data %q: %v", f.Data, err)
	}
	for _, k := range []string{"id", "orderId", "type", "fromStatus", "toStatus", "version", "at", "actor", "status", "paymentStatus"} {
		if _, ok := data[k]; !ok {
			t.Errorf("data lacks %q: %s", k, f.Data)
		}
	}
	if data["id"] != want.ID || data["orderId"] != want.OrderID || data["type"] != "ORDER_PLACED" ||
		data["status"] != "PENDING_PAYMENT" || data["paymentStatus"] != "UNPAID" || data["fromStatus"] != nil {
		t.Errorf("data %s does not describe %+v", f.Data, want)
	}
}

// Events committed and published through instance A reach a client of
// instance B in order; a client that drops after two events and resumes
// on the other instance gets exactly the missed ones, then live ones.
func TestAcrossInstancesAndResume(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a := e.instance(Config{}, nil)
	b := e.instance(Config{}, nil)
	srvA, srvB := e.serve(a), e.serve(b)

	o, _ := e.placeOrder(e.alice)
	e.settle()
	c := connect(t, srvB, "alice", "stream=orders", "")
	first := e.publish(a, e.change(e.alice, o.ID))
	second := e.publish(a, e.change(e.alice, o.ID))
	c.expect(first[0], second[0])
	c.close()

	var missed []order.Event
	for range 3 {
		missed = append(missed, e.publish(a, e.change(e.alice, o.ID))...)
	}
	c2 := connect(t, srvA, "alice", "stream=orders", second[0].ID)
	c2.expect(missed...)
	live := e.publish(b, e.change(e.alice, o.ID)) // committed on B this time
	sentinel := e.publish(a, e.change(e.alice, o.ID))
	c2.expect(live[0], sentinel[0]) // nothing twice, nothing in between

	// The resume point may also come as ?lastEventId= (first connect
	// after a screen read); Last-Event-ID wins over it.
	c3 := connect(t, srvB, "alice", "stream=orders&lastEventId="+url.QueryEscape(missed[1].ID), "")
	c3.expect(missed[2], live[0], sentinel[0])
	c4 := connect(t, srvB, "alice", "stream=orders&lastEventId="+missed[0].ID, live[0].ID)
	c4.expect(sentinel[0])

	// Publish marked them all published (the relay has nothing to do).
	eventually(t, "published events marked", func() bool {
		var n int
		err := e.db.QueryRow(context.Background(), `SELECT count(*) FROM order_events
			WHERE position >= $1 AND published_at IS NULL`, first[0].Position).Scan(&n)
		return err == nil && n == 0
	})
}

// Positions follow commit order even when transactions commit in the
// opposite order of their start: a position is drawn by the event insert
// inside Commit, just before the commit, so the transaction that commits
// first gets the earlier position, and a client resuming after the event
// of the transaction that committed first misses nothing.
func TestCommitOrderIsStreamOrder(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	b := e.instance(Config{}, nil)
	srv := e.serve(b)
	ctx := context.Background()
	oa, _ := e.placeOrder(e.alice)
	ob, _ := e.placeOrder(e.bob)
	e.settle()
	staff := connect(t, srv, "staff", "stream=orders", "")

	// 1. tx1 starts (writes, so it holds a transaction id, like an id
	// drawn from a sequence at the start), tx2 starts later, changes an
	// order and commits, then tx1 changes its order and commits.
	tx1, err := e.store.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx1.Rollback(ctx)
	if err := tx1.SaveKeyRecord(ctx, e.alice.ID, "commit-order-test", postgres.KeyRecord{Fingerprint: []byte{1}, Status: 200, Body: []byte("{}")}, time.Hour); err != nil {
		t.Fatal(err)
	}
	ev2 := e.change(e.bob, ob.ID) // tx2: starts after tx1, commits first
	if err := e.changeIn(ctx, tx1, e.alice, oa.ID); err != nil {
		t.Fatal(err)
	}
	if err := tx1.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	ev1 := tx1.Events()
	var xid1, xid2 int64
	if err := e.db.QueryRow(ctx, `SELECT (SELECT xmin::text::bigint FROM order_events WHERE position = $1),
		(SELECT xmin::text::bigint FROM order_events WHERE position = $2)`, ev1[0].Position, ev2[0].Position).Scan(&xid1, &xid2); err != nil {
		t.Fatal(err)
	}
	if !(xid1 < xid2) {
		t.Fatalf("setup: tx1 (xid %d) did not start before tx2 (xid %d)", xid1, xid2)
	}
	if ev2[0].Position+1 != ev1[0].Position {
		t.Fatalf("positions: tx2 (committed first) %d, tx1 %d; want consecutive in commit order", ev2[0].Position, ev1[0].Position)
	}
	// Published in start order (the late committer's publish wins the
	// race): the stream still delivers in commit order.
	e.publish(b, ev1)
	e.publish(b, ev2)
	staff.expect(ev2[0], ev1[0])
	resumed := connect(t, srv, "staff", "stream=orders", ev2[0].ID)
	resumed.expect(ev1[0])

	// 2. tx3 changes an order and stays open; tx4 (another customer's
	// order) starts after it and commits first. Positions are drawn at
	// commit (no lock is held across transactions), so tx4's event comes
	// first and tx3's right after it.
	tx3, err := e.store.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx3.Rollback(ctx)
	if err := e.changeIn(ctx, tx3, e.alice, oa.ID); err != nil {
		t.Fatal(err)
	}
	ev4, err := e.store.InTx(ctx, func(tx4 *postgres.Tx) error { return e.changeIn(ctx, tx4, e.bob, ob.ID) })
	if err != nil {
		t.Fatalf("tx4: %v", err)
	}
	if err := tx3.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	ev3 := tx3.Events()
	if ev4[0].Position+1 != ev3[0].Position {
		t.Fatalf("positions: tx4 (committed first) %d, tx3 %d; want consecutive in commit order", ev4[0].Position, ev3[0].Position)
	}
	e.publish(b, ev3) // the later one first again
	e.publish(b, ev4)
	staff.expect(ev4[0], ev3[0])
	resumed.expect(ev4[0], ev3[0])
	again := connect(t, srv, "staff", "stream=orders", ev1[0].ID)
	again.expect(ev4[0], ev3[0])
}

// A position drawn by a transaction that has not committed yet holds back
// every later one: a reader never hands out a position while a lower one
// can still appear, so a resume after the later event cannot skip the
// earlier one. Of one customer, positions follow commit order even when
// the later transaction started first.
func TestInFlightPositionHoldsLaterOnes(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	b := e.instance(Config{}, nil)
	srv := e.serve(b)
	ctx := context.Background()
	oa, _ := e.placeOrder(e.alice)
	ob, _ := e.placeOrder(e.bob)
	e.settle()
	staff := connect(t, srv, "staff", "stream=orders", "")
	bobs := connect(t, srv, "bob", "stream=orders", "")

	// slow draws its position (bob's event) and stays open before its
	// commit, as a commit delayed by its fsync would.
	slow, err := e.db.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = slow.Rollback(ctx) }()
	var slowPos int64
	if err := slow.QueryRow(ctx, `WITH o AS (UPDATE orders SET version = version + 1 WHERE id = $2::uuid RETURNING version),
		s AS (UPDATE users SET event_seq = event_seq + 1 WHERE id = $1::uuid RETURNING event_seq)
		INSERT INTO order_events (customer_id, customer_seq, order_id, type, from_status, to_status, version, actor, status, payment_status)
		SELECT $1::uuid, s.event_seq, $2::uuid, 'SHIPPING_ADDRESS_UPDATED', 'PENDING_PAYMENT', 'PENDING_PAYMENT', o.version, $1, 'PENDING_PAYMENT', 'UNPAID' FROM s, o
		RETURNING position`, e.bob.ID, ob.ID).Scan(&slowPos); err != nil {
		t.Fatal(err)
	}
	// alice's change draws the next position and commits first.
	fast := e.publish(b, e.change(e.alice, oa.ID))
	if fast[0].Position <= slowPos {
		t.Fatalf("setup: fast position %d not after the in-flight %d", fast[0].Position, slowPos)
	}
	// Let the sequencer look at Postgres twice while the lower position
	// is in flight (it must neither hand out the later event nor take
	// the lower position for a hole).
	b.sequencerChecks.Store(0)
	eventually(t, "sequencer checked postgres twice", func() bool { return b.sequencerChecks.Load() >= 2 })
	if err := slow.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	evs, err := e.store.EventsAfter(ctx, postgres.Scope{}, ob.ID, slowPos-1, 1)
	if err != nil || len(evs) != 1 || evs[0].Position != slowPos {
		t.Fatalf("slow event: %v %v", evs, err)
	}
	e.publish(b, evs)
	// In position order, each once.
	staff.expect(evs[0], fast[0])
	resumed := connect(t, srv, "staff", "stream=orders", evs[0].ID)
	resumed.expect(fast[0])
	// bob's next change waits for bob's row, so it commits after slow,
	// and its position is later although its transaction began earlier.
	tx, err := e.store.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if err := e.changeIn(ctx, tx, e.bob, ob.ID); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	later := e.publish(b, tx.Events())
	if later[0].Position <= slowPos || later[0].CustomerSeq != evs[0].CustomerSeq+1 {
		t.Fatalf("bob's next event: position %d seq %d after position %d seq %d", later[0].Position, later[0].CustomerSeq, slowPos, evs[0].CustomerSeq)
	}
	bobs.expect(evs[0], later[0])
	staff.expect(later[0])
}

// A position drawn by a transaction that rolled back stays empty: the
// sequencer steps over it once it is final, with the events on both
// sides delivered in order, each once.
func TestRolledBackPositionIsSkipped(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	b := e.instance(Config{}, nil)
	srv := e.serve(b)
	ctx := context.Background()
	o, _ := e.placeOrder(e.alice)
	e.settle()
	c := connect(t, srv, "alice", "stream=orders", "")
	before := e.publish(b, e.change(e.alice, o.ID))
	// A transaction draws a position (after taking an id, as the event
	// insert does) and rolls back.
	tx, err := e.db.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var hole int64
	if err := tx.QueryRow(ctx, `SELECT pg_current_xact_id() IS NOT NULL, nextval('order_events_position_seq')`).Scan(new(bool), &hole); err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	after := e.publish(b, e.change(e.alice, o.ID))
	if hole != before[0].Position+1 || after[0].Position != hole+1 {
		t.Fatalf("setup: positions %d, hole %d, %d", before[0].Position, hole, after[0].Position)
	}
	c.expect(before[0], after[0])
	connect(t, srv, "alice", "stream=orders", before[0].ID).expect(after[0])
	eventually(t, "head past the hole", func() bool { h, _ := b.currentHead(); return h >= after[0].Position })
}

// Redis killed and restarted mid-stream: no event is lost or doubled.
func TestRedisRestart(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	proc := testenv.StartRedis(t)
	a := e.instance(Config{}, testenv.Connect(t, proc.URL()))
	b := e.instance(Config{}, testenv.Connect(t, proc.URL()))
	srvB := e.serve(b)
	o, _ := e.placeOrder(e.alice)
	e.settle()
	c := connect(t, srvB, "alice", "stream=order:"+o.ID, "")

	var all []order.Event
	all = append(all, e.publish(a, e.change(e.alice, o.ID))...)
	c.expect(all[0])

	proc.Kill()
	down := e.publish(a, e.change(e.alice, o.ID))
	down = append(down, e.publish(a, e.change(e.alice, o.ID))...)
	all = append(all, down...)
	c.expect(down...) // through Postgres while Redis is down

	proc.Start()
	after := e.publish(a, e.change(e.alice, o.ID))
	after = append(after, e.publish(b, e.change(e.alice, o.ID))...)
	all = append(all, after...)
	c.expect(after...)

	// A client resuming from the start of this test gets them all, once.
	c2 := connect(t, srvB, "alice", "stream=order:"+o.ID, all[0].ID)
	sentinel := e.publish(a, e.change(e.alice, o.ID))
	c2.expect(append(slices.Clone(all[1:]), sentinel...)...)
}

// A client that never reads is disconnected when its buffer overflows; a
// healthy client on the same stream receives every event meanwhile.
func TestSlowClientIsDropped(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	b := e.instance(Config{Buffer: 16}, nil)
	srv := smallBufferServer(t, e.withTestUser(b.Handler()))
	o, _ := e.placeOrder(e.alice)

	e.settle()
	stalled := stalledClient(t, srv, "alice", "/events?stream=orders")
	defer stalled.Close()
	healthy := connect(t, srv, "alice", "stream=orders", "")
	eventually(t, "both streams open", func() bool { return b.OpenStreams() == 2 })

	// The healthy client reads each event before the next is made, as a
	// client that keeps up does however busy the machine is; only the
	// stalled one falls behind.
	var sent []order.Event
	for b.OpenStreams() == 2 {
		if len(sent) > 5000 {
			t.Fatalf("the stalled client was not dropped after %d events", len(sent))
		}
		evs := e.publish(b, e.change(e.alice, o.ID))
		healthy.expect(evs...)
		sent = append(sent, evs...)
	}
	t.Logf("stalled client dropped after %d events", len(sent))
	healthy.expect(e.publish(b, e.change(e.alice, o.ID))...)
	if n := b.OpenStreams(); n != 1 {
		t.Fatalf("open streams = %d, want 1", n)
	}
}

func TestAuthorization(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	b := e.instance(Config{}, nil)
	srv := e.serve(b)
	oa, _ := e.placeOrder(e.alice)

	for _, tc := range []struct {
		name, user, query string
		status            int
		code              string
	}{
		{"anonymous", "", "stream=orders", 401, "UNAUTHENTICATED"},
		{"anonymous order", "", "stream=order:" + oa.ID, 401, "UNAUTHENTICATED"},
		{"other customer's order", "bob", "stream=order:" + oa.ID, 404, "NOT_FOUND"},
		{"missing order", "alice", "stream=order:00000000-0000-0000-0000-000000000000", 404, "NOT_FOUND"},
		{"malformed order id", "alice", "stream=order:nope", 404, "NOT_FOUND"},
		{"bad stream", "alice", "stream=everything", 400, "BAD_USER_INPUT"},
		{"no stream", "alice", "", 400, "BAD_USER_INPUT"},
		{"empty order id", "alice", "stream=order:", 400, "BAD_USER_INPUT"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, cancel := request(t, srv, tc.user, tc.query, "")
			defer cancel()
			defer resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
			}
			if ct := resp.Header.Get("Content-Type"); strings.HasPrefix(ct, "text/event-stream") {
				t.Fatalf("an error response is a stream (%s)", ct)
			}
			if code := errorCode(t, resp); code != tc.code {
				t.Fatalf("code %s, want %s", code, tc.code)
			}
		})
	}
	if n := b.OpenStreams(); n != 0 {
		t.Fatalf("refused requests left %d open streams", n)
	}
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/events?stream=orders", nil)
	req.Header.Set("X-Test-User", "alice")
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("POST: status %d, want 405", resp.StatusCode)
	}
}

// Each viewer sees its own events; STAFF with stream=orders sees every
// order's; stream=order:<id> carries that order only.
func TestScopes(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	b := e.instance(Config{}, nil)
	srv := e.serve(b)
	oa, _ := e.placeOrder(e.alice)
	oa2, _ := e.placeOrder(e.alice)
	ob, _ := e.placeOrder(e.bob)

	e.settle()
	staff := connect(t, srv, "staff", "stream=orders", "")
	alice := connect(t, srv, "alice", "stream=orders", "")
	bob := connect(t, srv, "bob", "stream=orders", "")
	one := connect(t, srv, "alice", "stream=order:"+oa.ID, "")
	staffOne := connect(t, srv, "staff", "stream=order:"+oa2.ID, "")

	b1 := e.publish(b, e.change(e.bob, ob.ID))
	a1 := e.publish(b, e.change(e.alice, oa.ID))
	a2 := e.publish(b, e.change(e.alice, oa2.ID))
	s1 := e.publish(b, e.change(e.staff, oa.ID)) // staff acts on alice's order
	b2 := e.publish(b, e.change(e.bob, ob.ID))

	staff.expect(b1[0], a1[0], a2[0], s1[0], b2[0])
	alice.expect(a1[0], a2[0], s1[0])
	bob.expect(b1[0], b2[0])
	one.expect(a1[0], s1[0])
	staffOne.expect(a2[0])
	// Sentinels prove nothing else was queued for them.
	a3 := e.publish(b, e.change(e.alice, oa.ID))
	alice.expect(a3[0])
	one.expect(a3[0])
	a4 := e.publish(b, e.change(e.alice, oa2.ID))
	staffOne.expect(a4[0])
}

// An unknown or expired resume point gets `event: reset` without an id,
// then live events.
func TestReset(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	b := e.instance(Config{}, nil)
	srv := e.serve(b)
	o, _ := e.placeOrder(e.alice)
	e.settle()

	for _, tc := range []struct{ id, reason string }{
		{"999999999", "unknown"}, // never issued
		{"abc", "unknown"},
		{"-1", "unknown"},
		{"007", "unknown"},
		{"1", "expired"}, // the seed's first event is days old
		{"0", "expired"}, // before alice's first event, which is days old
	} {
		c := connect(t, srv, "alice", "stream=orders", tc.id)
		f := c.next()
		if f.Event != "reset" || f.HasID || f.Data != `{"reason":"`+tc.reason+`"}` {
			t.Fatalf("Last-Event-ID %q: first message %+v, want reset %s without id", tc.id, f, tc.reason)
		}
		live := e.publish(b, e.change(e.alice, o.ID))
		c.expect(live[0])
		c.close()
	}

	// A window of 24h still covers a fresh resume point; a tiny one not.
	fresh := e.publish(b, e.change(e.alice, o.ID))
	next := e.publish(b, e.change(e.alice, o.ID))
	connect(t, srv, "alice", "stream=orders", fresh[0].ID).expect(next[0])
	short := e.instance(Config{ReplayWindow: time.Millisecond}, nil)
	time.Sleep(5 * time.Millisecond) // let the event age past the tiny window
	c := connect(t, e.serve(short), "alice", "stream=orders", fresh[0].ID)
	if f := c.next(); f.Event != "reset" || f.Data != `{"reason":"expired"}` {
		t.Fatalf("expired resume point: %+v", f)
	}
}

// An event whose position is not the next one (its own publication was
// lost) is filled from Postgres, after BeforePublish.
func TestGapIsFilledFromPostgres(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a := e.instance(Config{RelayInterval: time.Hour}, nil) // no relay, no tick: only the gap fill
	b := e.instance(Config{RelayInterval: time.Hour}, nil)
	o, placed := e.placeOrder(e.alice)
	e.publish(a, placed)
	e.settle()
	c := connect(t, e.serve(b), "alice", "stream=orders", "")

	lost := e.change(e.alice, o.ID) // committed; its publisher "crashed"
	next := e.publish(a, e.change(e.alice, o.ID))
	c.expect(lost[0], next[0])
	if !e.inval.done(lost[0].Position) {
		t.Fatal("the filled event was delivered without BeforePublish")
	}
}

// An event that arrived from its publisher (invalidated by it) and waits
// for a gap is read again by the catch-up that fills the gap, before its
// publisher marked it published. The catch-up invalidates the missing
// event's screens, not the waiting one's again (which would make the
// screens loaded since its publisher's invalidation miss once more), and
// the waiting event keeps its publisher's copy, with the trace context of
// the request that committed it (its delivery is a span of that trace).
func TestWaitingEventStaysThePublishers(t *testing.T) {
	t.Parallel()
	const parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	e := newEnv(t)
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	b := e.instance(Config{RelayInterval: time.Hour, Tracer: tp.Tracer("test")}, nil) // no relay, no tick: only the gap fill
	o, placed := e.placeOrder(e.alice)
	e.publish(b, placed)
	e.settle()
	c := connect(t, e.serve(b), "alice", "stream=orders", "")

	lost := e.change(e.alice, o.ID) // committed; its publisher "crashed"
	next := e.change(e.alice, o.ID)
	next[0].TraceParent = parent
	e.inval.record(context.Background(), next)
	b.in <- next // as from Redis: its publisher has not marked it published yet
	c.expect(lost[0], next[0])
	if !e.inval.done(lost[0].Position) {
		t.Fatal("the filled event was delivered without BeforePublish")
	}
	if n := e.inval.times(next[0].Position); n != 1 {
		t.Fatalf("the waiting event was invalidated %d times, want once (by its publisher)", n)
	}
	eventually(t, "the waiting event's delivery span, in its request's trace", func() bool {
		for _, s := range rec.Ended() {
			if strings.HasPrefix(s.Name(), "sse.deliver ") && s.Parent().TraceID().String() == "4bf92f3577b34da6a3ce929d0e0e4736" {
				return true
			}
		}
		return false
	})
}

// The relay publishes an event that was committed but never published,
// calling BeforePublish first, and marks it published.
func TestRelayPublishesCrashedEvents(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	ps := e.rdb.Subscribe(ctx, e.channel)
	defer ps.Close()
	if _, err := ps.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	a := e.instance(Config{}, nil)
	b := e.instance(Config{}, nil)
	o, _ := e.placeOrder(e.alice)
	e.settle()
	c := connect(t, e.serve(b), "alice", "stream=orders", "")
	_ = a

	crashed := e.change(e.alice, o.ID) // no invalidation, no Publish
	pos := crashed[0].Position
	c.expect(crashed[0])
	if !e.inval.done(pos) {
		t.Fatal("delivered before BeforePublish")
	}
	// On the Redis channel, the relay's message comes after BeforePublish.
	ch := ps.Channel()
	deadline := time.After(wait)
	for found := false; !found; {
		select {
		case m := <-ch:
			evs, err := decodeMessage(m.Payload)
			if err != nil {
				t.Fatal(err)
			}
			for _, ev := range evs {
				if ev.Position == pos {
					found = true
				}
			}
		case <-deadline:
			t.Fatal("the relay did not publish the event on redis")
		}
	}
	eventually(t, "event marked published", func() bool {
		var published bool
		err := e.db.QueryRow(ctx, `SELECT published_at IS NOT NULL FROM order_events WHERE position = $1`, pos).Scan(&published)
		return err == nil && published
	})
	sentinel := e.publish(a, e.change(e.alice, o.ID))
	c.expect(sentinel[0]) // once, not twice
}

// Shutdown tells clients to reconnect, ends their streams, and refuses new
// ones; the client resumes on the restarted instance without a gap.
func TestShutdownAndRestart(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	b := e.instance(Config{}, nil)
	srv := e.serve(b)
	o, _ := e.placeOrder(e.alice)
	e.settle()
	c := connect(t, srv, "alice", "stream=orders", "")
	sctx, scancel := context.WithCancel(context.Background())
	defer scancel()
	ch, err := b.Subscribe(sctx, e.alice, "", "")
	if err != nil {
		t.Fatal(err)
	}
	seen := e.publish(b, e.change(e.alice, o.ID))
	c.expect(seen[0])

	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	b.Shutdown(ctx)
	if n := b.OpenStreams(); n != 0 {
		t.Fatalf("open streams after Shutdown: %d", n)
	}
	frames := c.ended()
	if len(frames) == 0 || frames[len(frames)-1].Retry == "" || frames[len(frames)-1].Comment != "reconnect" {
		t.Fatalf("last frames %+v, want a retry hint with ': reconnect'", frames)
	}
	for range ch { // the subscription got the event, then was closed
	}
	resp, cancelReq := request(t, srv, "alice", "stream=orders", "")
	defer cancelReq()
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("after shutdown: status %d, Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}

	// Committed while no instance serves the client; then the instance
	// comes back (a new broker on the same database and Redis).
	during := e.change(e.alice, o.ID)
	restarted := e.instance(Config{}, nil)
	c2 := connect(t, e.serve(restarted), "alice", "stream=orders", seen[0].ID)
	c2.expect(during[0])
	after := e.publish(restarted, e.change(e.alice, o.ID))
	c2.expect(after[0])
}

// The GraphQL door: same events, same ids, same authorization.
func TestSubscribe(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a := e.instance(Config{}, nil)
	b := e.instance(Config{}, nil)
	o, placed := e.placeOrder(e.alice)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	if _, err := b.Subscribe(ctx, nil, "", ""); order.ErrorCode(err) != order.CodeUnauthenticated {
		t.Fatalf("anonymous: %v", err)
	}
	if _, err := b.Subscribe(ctx, e.bob, o.ID, ""); order.ErrorCode(err) != order.CodeNotFound {
		t.Fatalf("bob on alice's order: %v", err)
	}
	if _, err := b.Subscribe(ctx, e.alice, o.ID, "999999999"); order.ErrorCode(err) != order.CodeBadUserInput {
		t.Fatalf("unknown after: %v", err)
	}

	first := e.publish(a, e.change(e.alice, o.ID))
	ch, err := b.Subscribe(ctx, e.alice, o.ID, placed[0].ID) // replay, then live
	if err != nil {
		t.Fatal(err)
	}
	second := e.publish(a, e.change(e.alice, o.ID))
	for _, want := range append(first, second...) {
		select {
		case got, ok := <-ch:
			if !ok || got.ID != want.ID || got.Position != want.Position || got.Type != want.Type {
				t.Fatalf("got %+v (open %v), want %s", got, ok, want.ID)
			}
		case <-time.After(wait):
			t.Fatalf("no event %s", want.ID)
		}
	}
	cancel()
	for range ch { // closed once ctx ends
	}
	eventually(t, "subscription closed", func() bool { return b.OpenStreams() == 0 })
}

// A server WriteTimeout and ReadTimeout do not end streams: writes have
// their own deadlines.
func TestServerTimeoutsDoNotKillStreams(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	b := e.instance(Config{Heartbeat: 50 * time.Millisecond}, nil)
	srv := newServer(t, e.withTestUser(b.Handler()), func(s *http.Server) {
		s.WriteTimeout = 200 * time.Millisecond
		s.ReadTimeout = 200 * time.Millisecond
	})
	o, _ := e.placeOrder(e.alice)
	e.settle()
	c := connect(t, srv, "alice", "stream=orders", "")
	for pings := 0; pings < 12; { // well past both timeouts
		if f := c.next(); f.Comment == "ping" {
			pings++
		}
	}
	live := e.publish(b, e.change(e.alice, o.ID))
	c.expect(live[0])
}

// Over HTTP/2 a connection cannot be hijacked: the stream goes through
// the ResponseWriter with per-write deadlines from the
// ResponseController, and server timeouts still do not end it.
func TestHTTP2Stream(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	b := e.instance(Config{Heartbeat: 50 * time.Millisecond}, nil)
	srv := httptest.NewUnstartedServer(e.withTestUser(b.Handler()))
	srv.EnableHTTP2 = true
	// The server's timeouts also bound the TLS handshake, so they leave
	// room for a busy machine; the stream outlives them many times over.
	srv.Config.WriteTimeout = time.Second
	srv.Config.ReadTimeout = time.Second
	srv.StartTLS()
	t.Cleanup(srv.Close)
	o, _ := e.placeOrder(e.alice)
	e.settle()

	c := connect(t, srv, "alice", "stream=orders", "")
	if c.resp.ProtoMajor != 2 {
		t.Fatalf("protocol %s, want HTTP/2", c.resp.Proto)
	}
	if got := c.resp.Header.Get("X-Accel-Buffering"); got != "no" {
		t.Fatalf("X-Accel-Buffering = %q", got)
	}
	for pings := 0; pings < 60; { // well past both timeouts
		if f := c.next(); f.Comment == "ping" {
			pings++
		}
	}
	first := e.publish(b, e.change(e.alice, o.ID))
	second := e.publish(b, e.change(e.alice, o.ID))
	c.expect(first[0], second[0])
	resumed := connect(t, srv, "alice", "stream=orders", first[0].ID)
	resumed.expect(second[0])

	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	b.Shutdown(ctx)
	frames := c.ended()
	if len(frames) == 0 || frames[len(frames)-1].Comment != "reconnect" {
		t.Fatalf("last frames %+v, want the reconnect hint", frames)
	}
}

// A client that goes away is noticed at the next heartbeat, though nobody
// reads a hijacked connection.
func TestClosedClientIsNoticed(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	b := e.instance(Config{Heartbeat: 50 * time.Millisecond}, nil)
	srv := e.serve(b)
	e.settle()
	c := connect(t, srv, "alice", "stream=orders", "")
	conn := rawStream(t, srv.Listener.Addr().String(), "bob", "/events?stream=orders", false)
	eventually(t, "streams open", func() bool { return b.OpenStreams() == 2 })
	c.close()
	conn.Close()
	eventually(t, "closed streams noticed", func() bool { return b.OpenStreams() == 0 })
}

// Events older than the replay window are pruned oldest first, in bounded
// batches, never past the last position a broker handed out; a resume
// point whose following events were pruned gets `event: reset`, the
// pruning horizon itself and everything after it resume exactly, and a
// screen's resume point for a customer whose events were all pruned is
// the horizon.
func TestRetentionPrunesOldEvents(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	b := e.instance(Config{PruneInterval: time.Hour, PruneBatch: 3}, nil)
	srv := e.serve(b)
	ctx := context.Background()
	oa, _ := e.placeOrder(e.alice)
	ob, _ := e.placeOrder(e.bob)
	e.settle()
	old := e.publish(b, e.change(e.alice, oa.ID))
	bobOld := e.publish(b, e.change(e.bob, ob.ID))
	edge := e.publish(b, e.change(e.alice, oa.ID))
	kept := e.publish(b, e.change(e.alice, oa.ID))
	connect(t, srv, "alice", "stream=orders", old[0].ID).expect(edge[0], kept[0])
	// The clock the test controls: everything up to edge is two days old.
	var nOld int64
	if err := e.db.QueryRow(ctx, `WITH u AS (UPDATE order_events SET at = at - interval '2 days'
		WHERE position <= $1 RETURNING 1) SELECT count(*) FROM u`, edge[0].Position).Scan(&nOld); err != nil {
		t.Fatal(err)
	}
	// Nothing past the recorded stream head is pruned: wait until the
	// broker recorded the last event it handed out.
	eventually(t, "stream head recorded", func() bool {
		h, err := b.storedHead(ctx)
		return err == nil && h >= kept[0].Position
	})

	// Bounded batches: each delete takes at most PruneBatch events.
	var total int64
	for {
		n, err := e.store.PruneEvents(ctx, 24*time.Hour, 3)
		if err != nil {
			t.Fatal(err)
		}
		if n > 3 {
			t.Fatalf("one prune deleted %d events, batch is 3", n)
		}
		total += n
		if n == 0 {
			break
		}
	}
	if total != nOld {
		t.Fatalf("pruned %d events, want the %d older than the window", total, nOld)
	}
	var left, low int64
	if err := e.db.QueryRow(ctx, `SELECT count(*), min(position) FROM order_events`).Scan(&left, &low); err != nil {
		t.Fatal(err)
	}
	if left != 1 || low != kept[0].Position {
		t.Fatalf("after pruning: %d events from position %d, want only %d", left, low, kept[0].Position)
	}

	// A resume point with pruned events after it: reset, then live.
	c := connect(t, srv, "alice", "stream=orders", old[0].ID)
	if f := c.nextEvent(); f.Event != "reset" || f.Data != `{"reason":"expired"}` {
		t.Fatalf("resume before pruned events: %+v", f)
	}
	// The horizon (edge, pruned itself) and later points resume exactly.
	connect(t, srv, "alice", "stream=orders", edge[0].ID).expect(kept[0])
	live := connect(t, srv, "alice", "stream=orders", kept[0].ID)
	// bob's events are all pruned: his screen's resume point is the
	// horizon, which is valid and replays nothing he missed.
	var bt postgres.Batch
	lastRead := bt.LastPosition(postgres.ScopeFor(e.bob))
	if err := e.store.Run(ctx, &bt); err != nil {
		t.Fatal(err)
	}
	last := lastRead.Value()
	if last != edge[0].Position || last <= bobOld[0].Position {
		t.Fatalf("bob's resume point %d, want the horizon %d", last, edge[0].Position)
	}
	bobs := connect(t, srv, "bob", "stream=orders", strconv.FormatInt(last, 10))
	next := e.publish(b, e.change(e.bob, ob.ID))
	bobs.expect(next[0])
	sentinel := e.publish(b, e.change(e.alice, oa.ID))
	c.expect(sentinel[0])
	live.expect(sentinel[0])

	// The broker's own pruner does the same on its interval.
	if _, err := e.db.Exec(ctx, `UPDATE order_events SET at = at - interval '2 days' WHERE position <= $1`, next[0].Position); err != nil {
		t.Fatal(err)
	}
	eventually(t, "stream head recorded", func() bool {
		h, err := b.storedHead(ctx)
		return err == nil && h >= sentinel[0].Position
	})
	e.instance(Config{PruneInterval: 50 * time.Millisecond, PruneBatch: 2}, nil)
	eventually(t, "pruned by the broker", func() bool {
		var n int64
		err := e.db.QueryRow(ctx, `SELECT count(*) FROM order_events WHERE position <= $1`, next[0].Position).Scan(&n)
		return err == nil && n == 0
	})
	atHorizon := connect(t, srv, "bob", "stream=orders", next[0].ID) // the horizon now
	beforeIt := connect(t, srv, "alice", "stream=orders", kept[0].ID)
	if f := beforeIt.nextEvent(); f.Event != "reset" {
		t.Fatalf("resume before pruned events: %+v", f)
	}
	final := e.publish(b, e.change(e.bob, ob.ID))
	atHorizon.expect(final[0])
}
