package server

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shop/bff/internal/telemetry"
	"github.com/shop/bff/internal/testenv"
)

func TestMetricsAfterTraffic(t *testing.T) {
	e := newEnv(t)
	in := e.start(nil, Options{})
	tok := in.token("alice@example.com")
	in.post(tok, "query Home "+homeQuery, nil)
	in.post(tok, "query Home "+homeQuery, nil)
	in.post(tok, `{ orderScreen(id: "00000000-0000-0000-0000-000000000000") { lastEventId } }`, nil)
	resp, err := http.Get(in.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	body := string(b)
	for _, series := range []string{
		`bff_graphql_requests_total{operation="Home"} 2`,
		`bff_graphql_errors_total{code="NOT_FOUND"`,
		`bff_graphql_request_duration_seconds_bucket{operation="Home"`,
		`bff_cache_requests_total{screen="homeScreen",status="hit"}`,
		`bff_cache_requests_total{screen="homeScreen",status="miss"}`,
		"bff_sse_connections", "bff_outbox_backlog", "bff_pgxpool_", "go_goroutines",
		"bff_payments_", "bff_ratelimit_",
	} {
		if !strings.Contains(body, series) {
			t.Errorf("/metrics lacks %s", series)
		}
	}
	if t.Failed() {
		t.Logf("metrics:\n%s", grepLines(body, "bff_"))
	}
}

func grepLines(s, substr string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, substr) && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func TestRequestLogLine(t *testing.T) {
	shutdown, err := telemetry.SetupTracing(context.Background(), telemetry.TracingConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = shutdown(context.Background()) })
	e := newEnv(t)
	in := e.start(nil, Options{})
	tok := in.token("alice@example.com")
	r := in.post(tok, "query Home "+homeQuery, nil, "X-Request-ID: log-test-1")
	if len(r.Errors) > 0 {
		t.Fatal(string(r.Raw))
	}
	in.post(tok, `{ orderScreen(id: "00000000-0000-0000-0000-000000000000") { lastEventId } }`, nil, "X-Request-ID: log-test-2")
	lines := map[string]map[string]any{}
	for _, l := range strings.Split(in.logs.String(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) == nil && m["msg"] == "request" {
			if id, _ := m["request_id"].(string); id != "" {
				lines[id] = m
			}
		}
	}
	ok := lines["log-test-1"]
	if ok == nil {
		t.Fatalf("no request line for log-test-1:\n%s", in.logs.String())
	}
	for _, k := range []string{"trace_id", "user_id", "operation", "cache", "status", "latency_ms", "method", "path"} {
		if _, has := ok[k]; !has {
			t.Errorf("request line lacks %s: %v", k, ok)
		}
	}
	if ok["operation"] != "Home" || ok["cache"] != "miss" {
		t.Errorf("operation/cache: %v", ok)
	}
	bad := lines["log-test-2"]
	if codes, _ := bad["error_codes"].([]any); len(codes) != 1 || codes[0] != "NOT_FOUND" {
		t.Errorf("error codes of the failing request: %v", bad)
	}
	if strings.Contains(in.logs.String(), tok) {
		t.Error("the bearer token appears in the log")
	}
}

func TestRateLimitedAcrossInstances(t *testing.T) {
	e := newEnv(t)
	cfg := e.config()
	cfg.RateQueriesPerSecond, cfg.RateQueriesBurst = 1, 5
	a, b := e.start(cfg, Options{}), e.start(cfg, Options{})
	tok := a.token("bob@example.com")
	ok, limited := 0, 0
	var last *gqlResponse
	for i := 0; i < 12; i++ {
		in := []*instance{a, b}[i%2]
		r := in.post(tok, `{ viewer { id } }`, nil)
		switch r.Status {
		case http.StatusOK:
			ok++
		case http.StatusTooManyRequests:
			limited++
			last = r
		default:
			t.Fatalf("status %d: %s", r.Status, r.Raw)
		}
	}
	// the budget is shared through Redis: 5 of burst plus at most one refill
	if ok < 5 || ok > 7 || limited == 0 {
		t.Fatalf("%d allowed, %d limited across two instances; want the shared burst of 5 (+1 refill)", ok, limited)
	}
	if last.code() != "RATE_LIMITED" || last.Header.Get("Retry-After") == "" || last.Header.Get("RateLimit-Limit") == "" ||
		last.Header.Get("RateLimit-Remaining") != "0" || last.Header.Get("RateLimit-Reset") == "" {
		t.Fatalf("429 without its headers: %v %s", last.Header, last.Raw)
	}
	if last.Errors[0].Extensions["retryable"] != true {
		t.Fatalf("RATE_LIMITED not retryable: %s", last.Raw)
	}
}

func TestPostgresDownIsUnavailable(t *testing.T) {
	e := newEnv(t)
	u, _ := url.Parse(e.dbURL)
	proxy := testenv.StartProxy(t, u.Host)
	cfg := e.config()
	u.Host = proxy.Addr()
	cfg.DatabaseURL = u.String()
	cfg.CacheEnabled = false
	cfg.RequestTimeout = 2 * time.Second
	in := e.start(cfg, Options{})
	tok := in.token("alice@example.com")
	if r := in.post(tok, homeQuery, nil); len(r.Errors) > 0 {
		t.Fatalf("before the outage: %s", r.Raw)
	}
	proxy.Cut()
	r := in.post(tok, homeQuery, nil)
	if r.code() != "UNAVAILABLE" || r.Errors[0].Extensions["retryable"] != true {
		t.Fatalf("with Postgres unreachable: %d %s", r.Status, r.Raw)
	}
	resp, err := http.Get(in.URL + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("/readyz with Postgres down: %d", resp.StatusCode)
	}
	proxy.Restore()
	deadline := time.Now().Add(15 * time.Second)
	for {
		r := in.post(tok, homeQuery, nil)
		if len(r.Errors) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("did not recover after Postgres came back: %s", r.Raw)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestGracefulShutdownFinishesRequests(t *testing.T) {
	e := newEnv(t)
	var entered sync.WaitGroup
	entered.Add(20)
	release := make(chan struct{})
	// every request below is held inside the server, between its load and
	// its cache store, until the shutdown has begun
	var stores atomic.Int32 // a request stores twice: its screen model, then its response
	in := e.start(nil, Options{CacheStoreDelay: func(context.Context) {
		if stores.Add(1) <= 20 {
			entered.Done()
		}
		<-release
	}})
	tok := in.token("alice@example.com")
	tokens := make([]string, 20) // one user each, so that no two requests share a cache flight
	for i := range tokens {
		tokens[i] = in.token(customerWithOrders(t, in, 1).Email)
		in.post(tokens[i], `{ viewer { id } }`, nil)
	}
	// an open event stream is told to reconnect and closed
	req, _ := http.NewRequest(http.MethodGet, in.URL+"/events?stream=orders", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("open stream: %v %v", err, resp)
	}
	var wg sync.WaitGroup
	results := make(chan int, 20)
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := in.post(tokens[i], homeQuery, nil, "Cache-Control: no-cache")
			results <- r.Status
		}()
	}
	entered.Wait()
	stopped := make(chan struct{})
	go func() { in.stop(); close(stopped) }()
	time.Sleep(200 * time.Millisecond) // the shutdown is under way
	if r, err := http.Get(in.URL + "/livez"); err == nil {
		r.Body.Close()
		t.Errorf("a new request was served during the shutdown: %d", r.StatusCode)
	}
	close(release)
	wg.Wait()
	<-stopped
	close(results)
	for st := range results {
		if st != http.StatusOK {
			t.Errorf("a request in flight at shutdown got %d", st)
		}
	}
	done := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the event stream was not closed by the shutdown")
	}
}
