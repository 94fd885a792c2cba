package server

import (
	"context"
	"io"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// scrapeMetrics reads /metrics of in.
func scrapeMetrics(t *testing.T, in *instance) string {
	t.Helper()
	resp, err := http.Get(in.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics: %d %s", resp.StatusCode, body)
	}
	return string(body)
}

// sample returns the value of the series whose line starts with series
// (name and labels as exposed), failing when it is absent.
func sample(t *testing.T, body, series string) float64 {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("series %s missing from /metrics", series)
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		t.Fatalf("%s: %v", series, err)
	}
	return v
}

// TestPromiseMetricsAfterTraffic runs traffic through the served binary
// (screens missed and hit, keyed mutations new and replayed, a stream
// resumed and one reset, a sentinel probe) and checks that /metrics shows
// every series the operations docs and alert rules name.
func TestPromiseMetricsAfterTraffic(t *testing.T) {
	e := newEnv(t)
	in := e.start(nil, Options{})
	tok := in.token("alice@example.com")
	in.post(tok, homeQuery, nil)
	in.post(tok, homeQuery, nil)
	if r := in.post(tok, orderScreenQuery, map[string]any{"id": "00000000-0000-0000-0000-000000000000"}); r.code() != "NOT_FOUND" {
		t.Fatalf("want NOT_FOUND: %s", r.Raw)
	}
	id, version := pendingOrder(t, in, tok)
	screen := in.post(tok, orderScreenQuery, map[string]any{"id": id})
	last := field(screen.Data, "orderScreen", "lastEventId").(string)

	// a stream that resumes (replay) and one with an unknown resume point (reset)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	open := func(after string) <-chan sseEvent {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, in.URL+"/events?stream=order:"+id+"&lastEventId="+after, nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("GET /events: %v %v", err, resp)
		}
		t.Cleanup(func() { _ = resp.Body.Close() })
		return readEvents(resp.Body)
	}
	if ev := next(t, open("999999999999"), false); ev.event != "reset" {
		t.Fatalf("want a reset, got %+v", ev)
	}
	live := open(last)
	key := "Idempotency-Key: metrics-" + randomID()
	for range 2 { // new, then replay
		r := in.post(tok, updateAddress, map[string]any{"id": id, "v": version, "city": "Metricton"}, key)
		if len(r.Errors) > 0 {
			t.Fatalf("update: %s", r.Raw)
		}
	}
	if ev := next(t, live, false); ev.event != "order.address_updated" {
		t.Fatalf("live event: %+v", ev)
	}
	// a stream resumed before that event replays it
	if ev := next(t, open(last), false); ev.event != "order.address_updated" {
		t.Fatalf("replayed event: %+v", ev)
	}
	if stale, err := in.srv.ProbeStaleness(context.Background()); err != nil || stale {
		t.Fatalf("sentinel probe: stale=%v err=%v", stale, err)
	}

	body := scrapeMetrics(t, in)
	atLeast := func(series string, min float64) {
		t.Helper()
		if v := sample(t, body, series); v < min {
			t.Errorf("%s = %v, want at least %v", series, v, min)
		}
	}
	// RED per operation
	atLeast(`bff_graphql_requests_total{operation="anonymous"}`, 3)
	atLeast(`bff_graphql_request_duration_seconds_count{operation="anonymous"}`, 3)
	// the promises
	atLeast(`bff_commit_to_invalidation_seconds_count{path="inline"}`, 1)
	sample(t, body, `bff_commit_to_invalidation_seconds_count{path="relay"}`)
	atLeast(`bff_event_commit_to_first_delivery_seconds_count`, 1)
	atLeast(`bff_event_delivery_lag_seconds_count{stream="order"}`, 1)
	sample(t, body, `bff_event_delivery_lag_seconds_count{stream="orders"}`)
	atLeast(`bff_stream_replays_total{reason="resume"}`, 1)
	sample(t, body, `bff_stream_replays_total{reason="overflow"}`)
	atLeast(`bff_stream_resets_total{reason="unknown"}`, 1)
	sample(t, body, `bff_stream_resets_total{reason="expired"}`)
	atLeast(`bff_idempotency_outcomes_total{outcome="new"}`, 1)
	atLeast(`bff_idempotency_outcomes_total{outcome="replay"}`, 1)
	sample(t, body, `bff_idempotency_outcomes_total{outcome="in_use"}`)
	sample(t, body, `bff_idempotency_outcomes_total{outcome="reused"}`)
	atLeast(`bff_cache_requests_total{screen="homeScreen",status="miss"}`, 1)
	atLeast(`bff_cache_requests_total{screen="orderScreen",status="miss"}`, 1)
	for _, st := range []string{"hit", "bypass", "error"} {
		sample(t, body, `bff_cache_requests_total{screen="homeScreen",status="`+st+`"}`)
	}
	if v := sample(t, body, `bff_cache_breaker_state`); v != 0 {
		t.Errorf("cache breaker state %v, want 0 (closed)", v)
	}
	sample(t, body, `bff_payments_breaker_state`)
	sample(t, body, `bff_outbox_backlog`)
	sample(t, body, `bff_outbox_oldest_age_seconds`)
	sample(t, body, `bff_charge_jobs_pending`)
	sample(t, body, `bff_charge_jobs_oldest_age_seconds`)
	atLeast(`bff_stale_sentinel_probes_total{result="fresh"}`, 1)
	if v := sample(t, body, `bff_stale_sentinel_probes_total{result="stale"}`); v != 0 {
		t.Errorf("stale sentinel reads %v, want 0", v)
	}
	sample(t, body, `bff_stale_sentinel_probes_total{result="error"}`)
	atLeast(`bff_ratelimit_redis_healthy`, 0)
	atLeast(`bff_sse_connections`, 1)
	// Every bff_ series the alert rules and the dashboard query is served.
	for _, f := range []string{"../../deploy/observability/alerts.yml", "../../deploy/observability/grafana-dashboard.json"} {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range regexp.MustCompile(`\bbff_[a-z_]+`).FindAllString(string(raw), -1) {
			if !regexp.MustCompile(`(?m)^` + name + `[{ ]`).MatchString(body) {
				t.Errorf("%s queries %s, which /metrics does not serve", f, name)
			}
		}
	}
	if t.Failed() {
		var names []string
		for _, l := range strings.Split(body, "\n") {
			if strings.HasPrefix(l, "bff_") {
				names = append(names, l)
			}
		}
		t.Logf("bff series:\n%s", strings.Join(names, "\n"))
	}
}

// TestStaleSentinel: probes on two instances sharing the cache (their
// writes interleave on the one sentinel order) are all fresh; an instance
// that skips invalidation (a broken invariant) reads the screen the
// others cached instead of its write, and counts a stale read.
func TestStaleSentinel(t *testing.T) {
	e := newEnv(t)
	// a runs only persisted operations (the production default): the
	// sentinel's documents are a manifest of their own.
	cfgA := e.config()
	cfgA.PersistedOperations = "require"
	a, b := e.start(cfgA, Options{}), e.start(nil, Options{})
	for i := range 6 {
		in := []*instance{a, b}[i%2]
		stale, err := in.srv.ProbeStaleness(context.Background())
		if err != nil || stale {
			t.Fatalf("probe %d on instance %d: stale=%v err=%v", i, i%2, stale, err)
		}
	}
	for _, in := range []*instance{a, b} {
		body := scrapeMetrics(t, in)
		if v := sample(t, body, `bff_stale_sentinel_probes_total{result="fresh"}`); v != 3 {
			t.Errorf("fresh probes %v, want 3", v)
		}
		if v := sample(t, body, `bff_stale_sentinel_probes_total{result="stale"}`); v != 0 {
			t.Errorf("stale probes %v, want 0", v)
		}
	}

	// The healthy probes left the order's screen cached: a write that does
	// not invalidate it is followed by a stale read.
	broken := e.start(nil, Options{SkipInvalidation: true})
	stale, err := broken.srv.ProbeStaleness(context.Background())
	if err != nil || !stale {
		t.Fatalf("the sentinel did not notice a missing invalidation: stale=%v err=%v", stale, err)
	}
	if v := sample(t, scrapeMetrics(t, broken), `bff_stale_sentinel_probes_total{result="stale"}`); v != 1 {
		t.Errorf("stale probes %v, want 1", v)
	}
}
