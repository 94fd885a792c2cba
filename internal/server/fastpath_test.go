package server

import (
	"context"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/shop/bff/internal/gqlhttp"
	"github.com/shop/bff/internal/httpx"
)

// fastHits is how many reads the instance's fast path answered.
func (in *instance) fastHits() int64 { return in.srv.GraphQL().(*gqlhttp.Handler).FastHits() }

// A repeated screen read is answered before parsing, from the response
// cache: with no SQL, the same Cache-Status and extensions as a hit of the
// whole path, never for another viewer, never stale after a write.
func TestFastPathAnswersRepeatedScreenReads(t *testing.T) {
	e := newEnv(t)
	in := e.start(nil, Options{})
	alice, bob := in.token("alice@example.com"), in.token("bob@example.com")
	id, version := pendingOrder(t, in, alice)
	vars := map[string]any{"id": id}

	in.post(alice, orderScreenQuery, vars) // taught (and stored) by the whole path
	before := in.fastHits()
	var r *gqlResponse
	if n := in.sqlOf(func() { r = in.post(alice, orderScreenQuery, vars) }); n != 0 {
		t.Fatalf("a fast hit ran %d SQL statements", n)
	}
	if in.fastHits() != before+1 {
		t.Fatalf("the repeated read was not answered by the fast path: %s", r.Raw)
	}
	if st := field(r.Extensions, "cache", "orderScreen", "status"); st != "hit" || !strings.HasPrefix(r.Header.Get("Cache-Status"), "bff; hit; ttl=") {
		t.Fatalf("fast hit: extensions %v, Cache-Status %q", r.Extensions, r.Header.Get("Cache-Status"))
	}
	if v := int(field(r.Data, "orderScreen", "order", "version").(float64)); v != version || len(r.Errors) > 0 {
		t.Fatalf("fast hit: %s", r.Raw)
	}

	// The same bytes from another viewer: that viewer's own answer.
	for i := 0; i < 2; i++ {
		b := in.post(bob, orderScreenQuery, vars)
		if b.code() != "NOT_FOUND" || b.Data != nil && field(b.Data, "orderScreen") != nil {
			t.Fatalf("bob read alice's order: %s", b.Raw)
		}
	}
	if in.fastHits() != before+1 {
		t.Fatal("the fast path answered another viewer")
	}

	// After a write, the next read shows it (the entry is not current,
	// the whole path loads it), and the one after is fast again.
	m := in.post(alice, updateAddress, map[string]any{"id": id, "v": version, "city": "Fastville"})
	if len(m.Errors) > 0 {
		t.Fatal(string(m.Raw))
	}
	waitPublished(t, in, id, version+1) // no catch-up invalidates its screens again
	for i := 0; i < 2; i++ {
		got := in.post(alice, orderScreenQuery, vars)
		if v := int(field(got.Data, "orderScreen", "order", "version").(float64)); v != version+1 ||
			field(got.Data, "orderScreen", "order", "shippingAddress", "city") != "Fastville" {
			t.Fatalf("read %d after the write: %s", i, got.Raw)
		}
	}
	if in.fastHits() != before+2 {
		t.Fatalf("fast hits %d, want %d (a miss after the write, then a hit)", in.fastHits(), before+2)
	}

	// Cache-Control: no-cache is never answered by the fast path.
	if b := in.post(alice, orderScreenQuery, vars, "Cache-Control: no-cache"); field(b.Extensions, "cache", "orderScreen", "status") != "bypass" {
		t.Fatalf("no-cache: %s", b.Raw)
	}
	// GET: the same rules by query string.
	req, _ := http.NewRequest(http.MethodGet, in.URL+"/graphql?query="+urlEscape(orderScreenQuery)+"&variables="+urlEscape(`{"id":"`+id+`"}`), nil)
	req.Header.Set("Authorization", "Bearer "+alice)
	in.do(req.Clone(req.Context()))
	g := in.do(req)
	if field(g.Extensions, "cache", "orderScreen", "status") != "hit" || in.fastHits() != before+3 {
		t.Fatalf("GET: fast hits %d, %s", in.fastHits(), g.Raw)
	}
}

// The fast path charges the query budget like the whole path.
func TestFastPathIsRateLimited(t *testing.T) {
	e := newEnv(t)
	cfg := e.config()
	cfg.RateQueriesPerSecond, cfg.RateQueriesBurst = 1, 5
	in := e.start(cfg, Options{})
	tok := in.token("alice@example.com")
	ok, limited := 0, 0
	for i := 0; i < 12; i++ {
		r := in.post(tok, homeQuery, nil)
		switch r.Status {
		case http.StatusOK:
			ok++
		case http.StatusTooManyRequests:
			limited++
			if r.code() != "RATE_LIMITED" {
				t.Fatalf("429: %s", r.Raw)
			}
		default:
			t.Fatalf("status %d: %s", r.Status, r.Raw)
		}
	}
	if in.fastHits() == 0 {
		t.Fatal("no read went the fast path")
	}
	if ok > 6 || limited == 0 {
		t.Fatalf("%d allowed, %d limited; want the burst of 5 (+1 refill)", ok, limited)
	}
}

// requestTrips counts the Redis round trips made for requests (contexts
// with a request id): commands sent alone and pipelines.
type requestTrips struct{ singles, pipelines atomic.Int64 }

func (c *requestTrips) DialHook(next redis.DialHook) redis.DialHook { return next }
func (c *requestTrips) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if httpx.RequestIDFrom(ctx) != "" {
			c.singles.Add(1)
		}
		return next(ctx, cmd)
	}
}
func (c *requestTrips) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if httpx.RequestIDFrom(ctx) != "" {
			c.pipelines.Add(1)
		}
		return next(ctx, cmds)
	}
}

// A fast hit with the query budget on costs one Redis round trip: the
// charge rides in the pipeline of the cache's read.
func TestFastPathChargesInTheCacheRoundTrip(t *testing.T) {
	e := newEnv(t)
	cfg := e.config()
	cfg.RateQueriesPerSecond, cfg.RateQueriesBurst = 1000, 1000
	in := e.start(cfg, Options{})
	tok := in.token("alice@example.com")
	in.post(tok, homeQuery, nil) // taught (and stored) by the whole path
	in.post(tok, homeQuery, nil) // the script and a pipeline connection ready
	trips := &requestTrips{}
	in.srv.rdb.AddHook(trips)
	before := in.fastHits()
	r := in.post(tok, homeQuery, nil)
	if r.Status != http.StatusOK || in.fastHits() != before+1 {
		t.Fatalf("not a fast hit: %d %s", r.Status, r.Raw)
	}
	if r.Header.Get("RateLimit-Limit") != "1000" || r.Header.Get("RateLimit-Remaining") == "" {
		t.Fatalf("the charge's headers are missing: %v", r.Header)
	}
	if s, p := trips.singles.Load(), trips.pipelines.Load(); s != 0 || p != 1 {
		t.Fatalf("a fast hit made %d single commands and %d pipelines, want one pipeline", s, p)
	}

	// A revalidation (GET): 304 from the generations, charged in the same
	// round trip.
	get := func(headers ...string) *gqlResponse {
		req, _ := http.NewRequest(http.MethodGet, in.URL+"/graphql?query="+urlEscape(homeQuery), nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		for _, h := range headers {
			k, v, _ := strings.Cut(h, ":")
			req.Header.Set(strings.TrimSpace(k), strings.TrimSpace(v))
		}
		return in.do(req)
	}
	etag := get().Header.Get("ETag") // taught by the whole path
	get()
	s, p := trips.singles.Load(), trips.pipelines.Load()
	nm := get("If-None-Match: " + etag)
	if nm.Status != http.StatusNotModified || nm.Header.Get("RateLimit-Remaining") == "" {
		t.Fatalf("revalidation: %d %v", nm.Status, nm.Header)
	}
	if s2, p2 := trips.singles.Load()-s, trips.pipelines.Load()-p; s2 != 0 || p2 != 1 {
		t.Fatalf("a fast revalidation made %d single commands and %d pipelines, want one pipeline", s2, p2)
	}
}
