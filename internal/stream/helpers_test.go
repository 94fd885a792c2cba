package stream

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/r3labs/sse/v2"
	"github.com/redis/go-redis/v9"

	"github.com/shop/bff/internal/auth"
	"github.com/shop/bff/internal/order"
	"github.com/shop/bff/internal/postgres"
	"github.com/shop/bff/internal/testenv"
)

// wait is how long a test waits for something that should happen soon.
// It is generous on purpose: tests assert what arrives, never how fast.
const wait = 15 * time.Second

// env is one test's world: a seeded schema, a Redis channel of its own,
// the demo users, and a record of the invalidations.
type env struct {
	t                 testing.TB
	store             *postgres.Store
	url               string
	db                *pgxpool.Pool // the test's own, for SQL of its own
	rdb               redis.UniversalClient
	channel           string
	alice, bob, staff *order.User
	inval             *invalidations
	brokers           []*Broker
}

// schemaMu serializes schema creation: postgres.Store.Migrate sets
// goose's package-level state, which races when parallel tests migrate.
var schemaMu sync.Mutex

func newEnv(t testing.TB) *env {
	t.Helper()
	schemaMu.Lock()
	store, url := testenv.Store(t, true, postgres.Config{})
	schemaMu.Unlock()
	rdb, prefix := testenv.Redis(t)
	e := &env{t: t, store: store, url: url, db: testenv.DB(t, url), rdb: rdb, channel: prefix + "events", inval: newInvalidations()}
	e.alice, e.bob, e.staff = e.user("alice@example.com"), e.user("bob@example.com"), e.user("staff@example.com")
	return e
}

// TestMain keeps go-redis quiet about the Redis the tests kill, unless
// STREAM_TEST_LOG is set.
func TestMain(m *testing.M) {
	if os.Getenv("STREAM_TEST_LOG") == "" {
		redis.SetLogger(quietRedis{})
	}
	os.Exit(m.Run())
}

type quietRedis struct{}

func (quietRedis) Printf(context.Context, string, ...any) {}

func (e *env) user(email string) *order.User {
	e.t.Helper()
	u, err := e.store.UserByEmail(context.Background(), email)
	if err != nil {
		e.t.Fatalf("user %s: %v", email, err)
	}
	return u
}

// invalidations records the positions BeforePublish was called for, by
// any broker of the test and by the test's own "mutations".
type invalidations struct {
	mu    sync.Mutex
	count map[int64]int
}

func newInvalidations() *invalidations { return &invalidations{count: map[int64]int{}} }

func (iv *invalidations) record(_ context.Context, events []order.Event) {
	iv.mu.Lock()
	defer iv.mu.Unlock()
	for _, e := range events {
		iv.count[e.Position]++
	}
}

// times is how many times the event at pos was invalidated.
func (iv *invalidations) times(pos int64) int {
	iv.mu.Lock()
	defer iv.mu.Unlock()
	return iv.count[pos]
}

func (iv *invalidations) done(pos int64) bool {
	iv.mu.Lock()
	defer iv.mu.Unlock()
	return iv.count[pos] > 0
}

var testLogger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: logLevel()}))

func logLevel() slog.Level {
	if os.Getenv("STREAM_TEST_LOG") != "" {
		return slog.LevelDebug
	}
	return slog.LevelError
}

// instance starts another instance: a broker with its own Postgres pool
// on the test's schema, running until the test ends. rdb nil means the
// test's shared Redis.
func (e *env) instance(cfg Config, rdb redis.UniversalClient) *Broker {
	e.t.Helper()
	ctx := context.Background()
	store, err := postgres.Open(ctx, postgres.Config{URL: e.url, MaxConns: 8})
	if err != nil {
		e.t.Fatalf("open store: %v", err)
	}
	if rdb == nil {
		rdb = e.rdb
	}
	if cfg.Channel == "" {
		cfg.Channel = e.channel
	}
	if cfg.BeforePublish == nil {
		cfg.BeforePublish = e.inval.record
	}
	if cfg.RelayInterval == 0 {
		cfg.RelayInterval = 100 * time.Millisecond
	}
	cfg.Logger = testLogger
	b, err := New(store, rdb, cfg)
	if err != nil {
		e.t.Fatalf("New: %v", err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = b.Run(runCtx) }()
	e.t.Cleanup(func() {
		cancel()
		<-done
		store.Close()
	})
	e.brokers = append(e.brokers, b)
	return b
}

// settle waits until every broker of the test has handed out everything
// committed so far (setup events that nobody published are picked up by
// the sequencers' catch-up), so a stream opened next starts after them.
func (e *env) settle() {
	e.t.Helper()
	h, err := e.brokers[0].dbHead(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	for _, b := range e.brokers {
		eventually(e.t, "broker caught up", func() bool {
			head, ok := b.currentHead()
			return ok && head >= h
		})
	}
}

// withTestUser is the tiny auth middleware of the tests: X-Test-User names
// the signed-in demo user; without it the request is anonymous.
func (e *env) withTestUser(h http.Handler) http.Handler {
	users := map[string]*order.User{"alice": e.alice, "bob": e.bob, "staff": e.staff}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, ok := users[r.Header.Get("X-Test-User")]; ok {
			r = r.WithContext(auth.WithUser(r.Context(), u))
		}
		h.ServeHTTP(w, r)
	})
}

// serve serves b's Handler at /events on a test server.
func (e *env) serve(b *Broker) *httptest.Server {
	mux := http.NewServeMux()
	mux.Handle("/events", e.withTestUser(b.Handler()))
	srv := httptest.NewServer(mux)
	e.t.Cleanup(srv.Close)
	return srv
}

// ------------------------------------------------------------ SSE client

// frame is one parsed SSE message.
type frame struct {
	ID, Event, Data, Retry, Comment string
	HasID                           bool
}

func (f frame) isEvent() bool { return f.Event != "" || f.Data != "" }

func parseFrame(raw []byte) frame {
	var f frame
	for _, line := range strings.Split(strings.TrimRight(string(raw), "\n"), "\n") {
		if c, ok := strings.CutPrefix(line, ":"); ok {
			f.Comment = strings.TrimPrefix(c, " ")
			continue
		}
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "id":
			f.ID, f.HasID = value, true
		case "event":
			f.Event = value
		case "data":
			if f.Data != "" {
				f.Data += "\n"
			}
			f.Data += value
		case "retry":
			f.Retry = value
		}
	}
	return f
}

// client is an SSE connection read in the background with r3labs/sse's
// EventStreamReader.
type client struct {
	t      *testing.T
	resp   *http.Response
	frames chan frame
	cancel context.CancelFunc
}

// request opens GET /events?query as user ("" = anonymous) with an
// optional Last-Event-ID; it returns the response as is.
func request(t *testing.T, srv *httptest.Server, user, query, lastID string) (*http.Response, context.CancelFunc) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/events?"+query, nil)
	if err != nil {
		t.Fatal(err)
	}
	if user != "" {
		req.Header.Set("X-Test-User", user)
	}
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	req.Header.Set("Accept", "text/event-stream")
	resp, err := srv.Client().Do(req)
	if err != nil {
		cancel()
		t.Fatalf("GET /events?%s: %v", query, err)
	}
	return resp, cancel
}

// connect opens a stream and fails the test unless it is a 200 stream
// whose first bytes are the retry line.
func connect(t *testing.T, srv *httptest.Server, user, query, lastID string) *client {
	t.Helper()
	resp, cancel := request(t, srv, user, query, lastID)
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		cancel()
		t.Fatalf("GET /events?%s as %q: status %d, body %s", query, user, resp.StatusCode, body)
	}
	br := bufio.NewReader(resp.Body)
	first := make([]byte, len("retry: 3000\n\n"))
	if _, err := io.ReadFull(br, first); err != nil || string(first) != "retry: 3000\n\n" {
		cancel()
		t.Fatalf("first bytes of the stream: %q (%v), want %q", first, err, "retry: 3000\n\n")
	}
	c := &client{t: t, resp: resp, frames: make(chan frame, 4096), cancel: cancel}
	go func() {
		defer close(c.frames)
		r := sse.NewEventStreamReader(br, 1<<20)
		for {
			raw, err := r.ReadEvent()
			if err != nil {
				return
			}
			c.frames <- parseFrame(raw)
		}
	}()
	t.Cleanup(c.close)
	return c
}

func (c *client) close() {
	c.cancel()
	_ = c.resp.Body.Close()
}

// next returns the next frame, failing the test when none comes within
// wait or the stream ends.
func (c *client) next() frame {
	c.t.Helper()
	select {
	case f, ok := <-c.frames:
		if !ok {
			c.t.Fatalf("stream ended while a frame was expected")
		}
		return f
	case <-time.After(wait):
		c.t.Fatalf("no frame within %s", wait)
	}
	return frame{}
}

// nextEvent returns the next message that is an event (skipping
// heartbeats and retry hints).
func (c *client) nextEvent() frame {
	c.t.Helper()
	for {
		if f := c.next(); f.isEvent() {
			return f
		}
	}
}

// expect reads the next events and checks they are exactly want, in order.
func (c *client) expect(want ...order.Event) {
	c.t.Helper()
	for i, w := range want {
		f := c.nextEvent()
		if f.ID != w.ID || f.Event != EventName(w.Type) {
			c.t.Fatalf("event %d of %d: got id %q %q, want id %q %q", i+1, len(want), f.ID, f.Event, w.ID, EventName(w.Type))
		}
	}
}

// ended waits for the end of the stream, skipping frames.
func (c *client) ended() []frame {
	c.t.Helper()
	var seen []frame
	deadline := time.After(wait)
	for {
		select {
		case f, ok := <-c.frames:
			if !ok {
				return seen
			}
			seen = append(seen, f)
		case <-deadline:
			c.t.Fatalf("stream did not end within %s", wait)
		}
	}
}

// ------------------------------------------------------------- mutations

var testAddress = order.Address{Name: "Test", Line1: "1 Test Street", City: "Testville", PostalCode: "12345", Country: "US"}

// placeOrder places a new order for u through the store's write path and
// returns it with its event. Nothing is published.
func (e *env) placeOrder(u *order.User) (*order.Order, []order.Event) {
	e.t.Helper()
	ctx := context.Background()
	products, _, err := e.store.Products(ctx, 2, "")
	if err != nil {
		e.t.Fatal(err)
	}
	var o *order.Order
	evs, err := e.store.InTx(ctx, func(tx *postgres.Tx) error {
		var err error
		o, err = tx.PlaceOrder(ctx, u, postgres.PlaceOrderInput{
			Lines:   []order.LineInput{{ProductID: products[0].ID, Quantity: 1}},
			Address: testAddress, Currency: "USD"})
		return err
	})
	if err != nil {
		e.t.Fatalf("place order: %v", err)
	}
	return o, evs
}

// change updates the shipping address of order id (as u) through the
// store's write path and returns the event. Nothing is published.
func (e *env) change(u *order.User, id string) []order.Event {
	e.t.Helper()
	ctx := context.Background()
	m, err := e.store.OrdersByIDs(ctx, []string{id})
	if err != nil || m[id] == nil {
		e.t.Fatalf("order %s: %v", id, err)
	}
	addr := testAddress
	addr.Line1 = fmt.Sprintf("%d Test Street", m[id].Version+1)
	evs, err := e.store.InTx(ctx, func(tx *postgres.Tx) error {
		_, err := tx.ChangeOrder(ctx, postgres.Change{Viewer: u, OrderID: id, ExpectedVersion: m[id].Version,
			Action: order.ActionUpdateShippingAddress, Address: &addr})
		return err
	})
	if err != nil {
		e.t.Fatalf("change order %s: %v", id, err)
	}
	return evs
}

// changeIn updates the shipping address of order id in tx (as u).
func (e *env) changeIn(ctx context.Context, tx *postgres.Tx, u *order.User, id string) error {
	m, err := e.store.OrdersByIDs(ctx, []string{id})
	if err != nil || m[id] == nil {
		return fmt.Errorf("order %s: %v", id, err)
	}
	addr := testAddress
	_, err = tx.ChangeOrder(ctx, postgres.Change{Viewer: u, OrderID: id, ExpectedVersion: m[id].Version,
		Action: order.ActionUpdateShippingAddress, Address: &addr})
	return err
}

// publish does what the mutation path does after commit: invalidate, then
// publish through b.
func (e *env) publish(b *Broker, evs []order.Event) []order.Event {
	e.inval.record(context.Background(), evs)
	b.Publish(context.Background(), evs)
	return evs
}

// eventually polls cond until it holds, failing the test after wait.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, wait)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// errorCode decodes the code of a JSON error response.
func errorCode(t *testing.T, resp *http.Response) string {
	t.Helper()
	var body struct {
		Errors []struct {
			Extensions map[string]any `json:"extensions"`
		} `json:"errors"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || len(body.Errors) == 0 {
		t.Fatalf("error body: %v", err)
	}
	code, _ := body.Errors[0].Extensions["code"].(string)
	return code
}

// ---------------------------------------------------------- test servers

// newServer starts a test server for h, configured by configure.
func newServer(t *testing.T, h http.Handler, configure func(*http.Server)) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(h)
	if configure != nil {
		configure(srv.Config)
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv
}

// smallBufferListener gives accepted connections a small kernel send
// buffer, so that a client that does not read blocks the server's writes
// after a few kilobytes instead of megabytes.
type smallBufferListener struct{ net.Listener }

func (l smallBufferListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetWriteBuffer(4096)
	}
	return c, err
}

// smallBufferServer serves h with small send buffers (see above).
func smallBufferServer(t *testing.T, h http.Handler) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(h)
	srv.Listener = smallBufferListener{srv.Listener}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv
}

// rawStream opens GET path as user on a plain TCP connection (with a
// small receive buffer when small), reads up to the retry line and returns
// the connection, which the caller may never read again.
func rawStream(tb testing.TB, addr, user, path string, small bool) net.Conn {
	return rawStreamUntil(tb, addr, user, path, small, "retry: 3000\n\n")
}

// rawStreamUntil is rawStream reading up to until.
func rawStreamUntil(tb testing.TB, addr, user, path string, small bool, until string) net.Conn {
	tb.Helper()
	d := net.Dialer{}
	if small {
		d.Control = func(_, _ string, rc syscall.RawConn) error {
			var serr error
			err := rc.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
			})
			if err != nil {
				return err
			}
			return serr
		}
	}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		tb.Fatalf("dial: %v", err)
	}
	if _, err := fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: test\r\nX-Test-User: %s\r\nAccept: text/event-stream\r\n\r\n", path, user); err != nil {
		tb.Fatalf("write request: %v", err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(wait))
	var got []byte
	buf := make([]byte, 1)
	for !strings.HasSuffix(string(got), until) {
		if _, err := conn.Read(buf); err != nil {
			tb.Fatalf("read stream start: %v (got %q)", err, got)
		}
		got = append(got, buf[0])
	}
	_ = conn.SetReadDeadline(time.Time{})
	return conn
}

// stalledClient opens a stream of srv and never reads it.
func stalledClient(t *testing.T, srv *httptest.Server, user, path string) net.Conn {
	t.Helper()
	return rawStream(t, srv.Listener.Addr().String(), user, path, true)
}
