package server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/shop/bff/internal/auth"
	"github.com/shop/bff/internal/config"
	"github.com/shop/bff/internal/httpx"
	"github.com/shop/bff/internal/postgres"
	"github.com/shop/bff/internal/testenv"
)

// queryCounter is a pgx tracer counting the SQL statements and the round
// trips (a query, or a whole batch) that the server runs for requests:
// those of background jobs (relay, reaper, metrics), whose contexts carry
// no request id, are not counted.
type queryCounter struct{ n, trips atomic.Int64 }

func (q *queryCounter) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	if httpx.RequestIDFrom(ctx) != "" {
		q.n.Add(1)
		q.trips.Add(1)
	}
	return ctx
}

func (q *queryCounter) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

func (q *queryCounter) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	if httpx.RequestIDFrom(ctx) != "" {
		q.trips.Add(1)
	}
	return ctx
}

func (q *queryCounter) TraceBatchQuery(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchQueryData) {
	if httpx.RequestIDFrom(ctx) != "" {
		q.n.Add(1)
	}
}

func (q *queryCounter) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData) {}

// logBuffer collects the server's log lines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// instance is one running BFF on a random port.
type instance struct {
	t       testing.TB
	srv     *Server
	URL     string
	cfg     *config.Config
	queries *queryCounter
	logs    *logBuffer
	dbOnce  sync.Once
	pool    *pgxpool.Pool
	cancel  context.CancelFunc
	done    chan error
}

// db is a pool of the test's own on the instance's database, for tests
// that arrange or inspect rows with SQL.
func (in *instance) db() *pgxpool.Pool {
	in.dbOnce.Do(func() { in.pool = testenv.DB(in.t, in.cfg.DatabaseURL) })
	return in.pool
}

// env is the state tests share: one migrated, seeded schema and a Redis
// key prefix, on which any number of instances run.
type env struct {
	t      testing.TB
	dbURL  string
	prefix string
}

func newEnv(t testing.TB) *env {
	t.Helper()
	_, url := testenv.Store(t, true, postgres.Config{MaxConns: 4})
	_, prefix := testenv.Redis(t)
	return &env{t: t, dbURL: url, prefix: prefix}
}

// config returns the configuration of a test instance; change it before
// start.
func (e *env) config() *config.Config {
	cfg, err := config.Load(func(name string) string {
		switch name {
		case "APP_ENV":
			return "development"
		case "DATABASE_URL":
			return e.dbURL
		case "REDIS_URL":
			return testenv.RedisURL()
		case "RATE_LIMIT_QUERIES_PER_SECOND", "RATE_LIMIT_MUTATIONS_PER_SECOND":
			return "0"
		case "PAYMENT_WORKERS", "WEBHOOK_WORKERS":
			return "0"
		case "SHUTDOWN_GRACE":
			return "3s"
		case "STALE_SENTINEL_INTERVAL":
			return "0" // tests probe with Server.ProbeStaleness
		}
		return ""
	})
	if err != nil {
		e.t.Fatalf("config: %v", err)
	}
	return cfg
}

// start runs an instance with cfg (nil: the default test config).
func (e *env) start(cfg *config.Config, opt Options) *instance {
	t := e.t
	t.Helper()
	if cfg == nil {
		cfg = e.config()
	}
	qc := &queryCounter{}
	logs := &logBuffer{}
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	if opt.PGTracer == nil {
		opt.PGTracer = qc
	}
	opt.CachePrefix = e.prefix
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := New(ctx, cfg, opt)
	if err != nil {
		cancel()
		t.Fatalf("server: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	in := &instance{t: t, srv: srv, URL: "http://" + ln.Addr().String(), cfg: cfg, queries: qc, logs: logs, cancel: cancel, done: make(chan error, 1)}
	go func() { in.done <- srv.Serve(ctx, ln) }()
	t.Cleanup(in.stop)
	return in
}

// stop shuts the instance down and waits for it.
func (in *instance) stop() {
	if in.cancel == nil {
		return
	}
	in.cancel()
	select {
	case <-in.done:
	case <-time.After(20 * time.Second):
		in.t.Errorf("server did not stop")
	}
	in.srv.Close()
	in.cancel = nil
	if in.t.Failed() {
		logs := in.logs.String()
		if len(logs) > 8000 {
			logs = "…" + logs[len(logs)-8000:]
		}
		in.t.Logf("server log:\n%s", logs)
	}
}

// token issues a bearer token for a seeded user.
func (in *instance) token(email string) string {
	in.t.Helper()
	u, err := in.srv.Store().UserByEmail(context.Background(), email)
	if err != nil {
		in.t.Fatalf("user %s: %v", email, err)
	}
	secrets := [][]byte{[]byte(in.cfg.JWTSecrets[0])}
	iss, err := auth.NewIssuer(auth.Config{Secrets: secrets})
	if err != nil {
		in.t.Fatal(err)
	}
	tok, _, err := iss.Issue(u)
	if err != nil {
		in.t.Fatal(err)
	}
	return tok
}

// gqlResponse is a decoded GraphQL response.
type gqlResponse struct {
	Status     int
	Header     http.Header
	Raw        []byte
	Data       map[string]any
	Errors     []gqlError
	Extensions map[string]any
}

type gqlError struct {
	Message    string         `json:"message"`
	Path       []any          `json:"path"`
	Extensions map[string]any `json:"extensions"`
}

// code is the code of the first error, "" without errors.
func (r *gqlResponse) code() string {
	if len(r.Errors) == 0 {
		return ""
	}
	c, _ := r.Errors[0].Extensions["code"].(string)
	return c
}

// post sends a GraphQL request as JSON; headers are "Name: value" pairs.
func (in *instance) post(token, query string, vars map[string]any, headers ...string) *gqlResponse {
	in.t.Helper()
	body, _ := json.Marshal(map[string]any{"query": query, "variables": vars})
	req, _ := http.NewRequest(http.MethodPost, in.URL+"/graphql", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for _, h := range headers {
		k, v, _ := strings.Cut(h, ":")
		req.Header.Set(strings.TrimSpace(k), strings.TrimSpace(v))
	}
	return in.do(req)
}

func (in *instance) do(req *http.Request) *gqlResponse {
	in.t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		in.t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	out := &gqlResponse{Status: resp.StatusCode, Header: resp.Header, Raw: raw}
	var parsed struct {
		Data       map[string]any `json:"data"`
		Errors     []gqlError     `json:"errors"`
		Extensions map[string]any `json:"extensions"`
	}
	if err := json.Unmarshal(raw, &parsed); err == nil {
		out.Data, out.Errors, out.Extensions = parsed.Data, parsed.Errors, parsed.Extensions
	}
	return out
}

// field walks a decoded JSON value by keys and indexes.
func field(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, _ := v.(map[string]any)
			v = m[k]
		case int:
			a, _ := v.([]any)
			if k >= len(a) {
				return nil
			}
			v = a[k]
		}
	}
	return v
}

func sha256Hex(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

func urlEscape(s string) string { return url.QueryEscape(s) }

// discardLogger drops the logs (benchmarks).
func discardLogger() *slog.Logger { return slog.New(slog.NewJSONHandler(io.Discard, nil)) }

// waitPublished waits until the event of order id at version is marked
// published, and returns its position. Until then a broker's catch-up that
// reads it invalidates its screens once more (harmless: a read after it
// loads again), so a test that counts misses waits for it first.
func waitPublished(t testing.TB, in *instance, id string, version int) int64 {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var pos int64
		var published bool
		err := in.db().QueryRow(context.Background(), `SELECT position, published_at IS NOT NULL FROM order_events
			WHERE order_id = $1 AND version = $2`, id, version).Scan(&pos, &published)
		if err != nil {
			t.Fatal(err)
		}
		if published {
			return pos
		}
		if time.Now().After(deadline) {
			t.Fatalf("the event of order %s at version %d was never marked published", id, version)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
