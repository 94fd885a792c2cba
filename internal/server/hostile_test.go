package server

// Hostile clients: each test replays one reproduction of an attack on a
// running instance and asserts its answer, counting the work it caused
// (parser tokens, selections visited, SQL queries, orders created), never
// time.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/golang-jwt/jwt/v5"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"
	"github.com/vektah/gqlparser/v2/parser"
	"github.com/vektah/gqlparser/v2/validator"

	"github.com/shop/bff/graph"
	"github.com/shop/bff/internal/auth"
	"github.com/shop/bff/internal/config"
	"github.com/shop/bff/internal/httpx"
	"github.com/shop/bff/internal/testenv"
)

// hostileSend sends a request with a body and headers ("Name: value") and
// returns the response with its whole body.
func hostileSend(t testing.TB, method, url, body string, headers ...string) (*http.Response, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for _, h := range headers {
		k, v, _ := strings.Cut(h, ":")
		req.Header.Set(strings.TrimSpace(k), strings.TrimSpace(v))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp, string(raw)
}

// hostileCode is the code of the first error of a JSON body.
func hostileCode(body string) string {
	var b struct {
		Errors []struct {
			Extensions map[string]any `json:"extensions"`
		} `json:"errors"`
	}
	_ = json.Unmarshal([]byte(body), &b)
	if len(b.Errors) == 0 {
		return ""
	}
	c, _ := b.Errors[0].Extensions["code"].(string)
	return c
}

// 1. A query or mutation sent to the graphql-sse door (POST with Accept:
// text/event-stream) is refused with 400 BAD_REQUEST before it runs: no
// order without a key, none for a repeated key, no charge, and a burst
// gets no more effects than the keeper and the rate limit allow.
func TestHostileSSEDoorRunsSubscriptionsOnly(t *testing.T) {
	e := newEnv(t)
	cfg := e.config()
	cfg.RateMutationsPerSecond, cfg.RateMutationsBurst = 1, 20
	in := e.start(cfg, Options{})
	alice := in.token("alice@example.com")
	aliceID := mutUserID(t, in, "alice@example.com")
	ps := mutCatalogue(t, in, 1)
	pending := mutPlace(t, in, alice, mutInput(ps[0].ID, 1))
	orders0 := mutOrderCount(t, in, aliceID)
	jobs := func() int { return mutInt(t, in, `SELECT count(*) FROM charge_jobs`) }
	jobs0 := jobs()

	place := mutBody(mutPlaceQuery, map[string]any{"in": mutInput(ps[0].ID, 1)})
	pay := mutBody(mutPayQuery, map[string]any{"id": pending["id"], "v": pending["version"]})
	sse := []string{"Accept: text/event-stream", "Authorization: Bearer " + alice}
	for _, c := range []struct {
		name, body string
		headers    []string
	}{
		{"placeOrder without a key", place, nil},
		{"placeOrder with a key", place, []string{"Idempotency-Key: sse-same-key"}},
		{"the same key again", place, []string{"Idempotency-Key: sse-same-key"}},
		{"payOrder without a key", pay, nil},
		{"a query", `{"query":"{ viewer { id } }"}`, nil},
	} {
		resp, body := hostileSend(t, http.MethodPost, in.URL+"/graphql", c.body, append(c.headers, sse...)...)
		if resp.StatusCode != http.StatusBadRequest || hostileCode(body) != "BAD_REQUEST" || strings.Contains(body, `"data"`) {
			t.Errorf("%s on the SSE door: %d %s, want 400 BAD_REQUEST", c.name, resp.StatusCode, body)
		}
	}
	if n := mutOrderCount(t, in, aliceID); n != orders0 {
		t.Fatalf("the SSE door created %d orders", n-orders0)
	}
	if n := jobs(); n != jobs0 {
		t.Fatalf("the SSE door queued %d charges", n-jobs0)
	}

	// 30 keyed mutations one after the other through the normal door: the
	// mutation budget (burst 20, 1 per second) admits 20 and what refilled.
	statuses := make(chan int, 30)
	start := time.Now()
	for i := 0; i < 30; i++ {
		statuses <- mutRaw(t, in, alice, place, "Idempotency-Key: "+mutKey()).Status
	}
	refill := int(time.Since(start).Seconds()) + 1 // the budget refills 1 per second
	close(statuses)
	counts := map[int]int{}
	for s := range statuses {
		counts[s]++
	}
	if counts[http.StatusOK] > 20+refill || counts[http.StatusOK]+counts[http.StatusTooManyRequests] != 30 {
		t.Fatalf("burst of 30 mutations: %v, want at most 20 (+%d refilled) × 200 and the rest 429", counts, refill)
	}
	if n := mutOrderCount(t, in, aliceID) - orders0; n != counts[http.StatusOK] {
		t.Fatalf("%d orders for %d successful placeOrder", n, counts[http.StatusOK])
	}
}

// 2. A 26-level chain of fragments that each spread the next one twice
// costs linear work: the cost walk visits each written selection once
// and refuses the operation as QUERY_TOO_COMPLEX; 8,000 repeated
// selections are refused before validation (size, tokens, repeated keys).
func TestHostileCPUBudgets(t *testing.T) {
	e := newEnv(t)
	in := e.start(nil, Options{})

	var b strings.Builder
	b.WriteString("query Chain { ...F0 }\n")
	for i := 0; i < 26; i++ {
		fmt.Fprintf(&b, "fragment F%d on Query { ...F%d ...F%d }\n", i, i+1, i+1)
	}
	b.WriteString("fragment F26 on Query { products(first: 1) { edges { node { id } } } }\n")
	chain := b.String()
	doc, err := parser.ParseQuery(&ast.Source{Input: chain})
	if err != nil {
		t.Fatal(err)
	}
	before := in.queries.n.Load()
	r := in.post("", chain, nil)
	if r.code() != "QUERY_TOO_COMPLEX" {
		t.Fatalf("doubling fragment chain: %d %s, want QUERY_TOO_COMPLEX", r.Status, r.Raw)
	}
	if n := in.queries.n.Load() - before; n != 0 {
		t.Fatalf("the refused chain ran %d SQL queries", n)
	}
	es := graph.Schema(&graph.Resolver{})
	if errs := validateDoc(es, doc); len(errs) > 0 {
		t.Fatalf("chain does not validate: %v", errs)
	}
	m := graph.Measure(context.Background(), es, doc, doc.Operations[0], nil)
	written := 0
	for _, f := range doc.Fragments {
		written += countSelections(f.SelectionSet)
	}
	written += countSelections(doc.Operations[0].SelectionSet)
	if m.Visited > written || m.Cost < 1<<26 {
		t.Fatalf("measure visited %d selections of %d written, cost %d (want the doubled cost without the doubled walk)", m.Visited, written, m.Cost)
	}

	repeat := func(n int) string { return "{" + strings.Repeat("products { edges { node { id } } } ", n) + "}" }
	for _, c := range []struct {
		name, query string
		status      int
		code, ext   string
	}{
		{"8,000 repeats (208 KB)", repeat(8000), http.StatusRequestEntityTooLarge, "PAYLOAD_TOO_LARGE", "limit"},
		{"900 repeats (tokens)", repeat(900), http.StatusOK, "QUERY_TOO_COMPLEX", "tokens"},
		{"3 repeats (same key)", repeat(3), http.StatusOK, "QUERY_TOO_COMPLEX", "sameKey"},
		{"401 selections", "{ products { edges { node { " + aliases("id", 398) + " } } } }", http.StatusOK, "QUERY_TOO_COMPLEX", "selections"},
	} {
		before := in.queries.n.Load()
		r := in.post("", c.query, nil)
		if r.Status != c.status || r.code() != c.code || mutExt(r, c.ext) == nil {
			t.Errorf("%s: %d %.300s, want %d %s with %s", c.name, r.Status, r.Raw, c.status, c.code, c.ext)
		}
		if n := in.queries.n.Load() - before; n != 0 {
			t.Errorf("%s ran %d SQL queries", c.name, n)
		}
	}
}

func aliases(field string, n int) string {
	var b strings.Builder
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "a%d: %s ", i, field)
	}
	return b.String()
}

func countSelections(set ast.SelectionSet) int {
	n := len(set)
	for _, s := range set {
		switch x := s.(type) {
		case *ast.Field:
			n += countSelections(x.SelectionSet)
		case *ast.InlineFragment:
			n += countSelections(x.SelectionSet)
		}
	}
	return n
}

// 3. Requests that fail parsing or validation are charged to the caller's
// query budget: 250 anonymous `{nope}` get 429 once the burst is spent.
func TestHostileFailuresAreRateLimited(t *testing.T) {
	e := newEnv(t)
	cfg := e.config()
	cfg.RateQueriesPerSecond, cfg.RateQueriesBurst = 1, 10
	in := e.start(cfg, Options{})
	counts := map[int]int{}
	for i := 0; i < 250; i++ {
		q := "{nope}"
		if i%2 == 1 {
			q = "{ products(" // parse failure
		}
		counts[in.post("", q, nil).Status]++
	}
	if counts[http.StatusTooManyRequests] < 200 || counts[http.StatusOK] > 20 {
		t.Fatalf("250 failing requests: %v, want the burst (10, plus refill) answered and the rest 429", counts)
	}
}

// 4. Automatic persisted queries store only documents that parsed and
// validated, under the size cap.
func TestHostileAPQStoresOnlyValidDocuments(t *testing.T) {
	e := newEnv(t)
	in := e.start(nil, Options{})
	rdb, _ := testenv.Redis(t)
	keys := func() int {
		ks, err := rdb.Keys(context.Background(), e.prefix+"apq:*").Result()
		if err != nil {
			t.Fatal(err)
		}
		return len(ks)
	}
	send := func(q string) (*http.Response, string) {
		body, _ := json.Marshal(map[string]any{"query": q, "extensions": map[string]any{
			"persistedQuery": map[string]any{"version": 1, "sha256Hash": sha256Hex(q)}}})
		return hostileSend(t, http.MethodPost, in.URL+"/graphql", string(body))
	}
	big := "#" + strings.Repeat("x", 1000*1000-200) + "\n"
	for i := 0; i < 3; i++ {
		resp, body := send(fmt.Sprintf("%s# %d\n", big, i))
		if resp.StatusCode != http.StatusRequestEntityTooLarge && resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("1 MB comment-only query: %d %.200s", resp.StatusCode, body)
		}
	}
	for _, q := range []string{"# only a comment", "{ nope }", "{ products(first: 1) { edges { node { id } } }"} {
		resp, body := send(q)
		if hostileCode(body) == "" {
			t.Fatalf("%q: %d %s, want an error", q, resp.StatusCode, body)
		}
	}
	if n := keys(); n != 0 {
		t.Fatalf("%d persisted queries stored for invalid documents", n)
	}
	if resp, body := send("{ products(first: 1) { edges { node { id } } } }"); resp.StatusCode != http.StatusOK || hostileCode(body) != "" {
		t.Fatalf("valid persisted query: %d %s", resp.StatusCode, body)
	}
	if n := keys(); n != 1 {
		t.Fatalf("%d persisted queries stored after one valid document, want 1", n)
	}
}

// 5. Only the stream routes are exempt from shedding and the deadline:
// a GET /graphql that accepts text/event-stream is shed like any query.
func TestHostileOnlyStreamRoutesAreExempt(t *testing.T) {
	for _, c := range []struct {
		method, target, accept string
		stream                 bool
	}{
		{http.MethodGet, "/graphql?query={viewer{id}}", "text/event-stream", false},
		{http.MethodGet, "/", "text/event-stream", false},
		{http.MethodPost, "/webhooks/payments", "text/event-stream", false},
		{http.MethodGet, "/events?stream=orders", "", true},
		{http.MethodPost, "/graphql", "text/event-stream", true},
	} {
		r := httptest.NewRequest(c.method, c.target, nil)
		r.Header.Set("Accept", c.accept)
		if got := httpx.IsStream(r); got != c.stream {
			t.Errorf("%s %s (Accept %q): stream %v, want %v", c.method, c.target, c.accept, got, c.stream)
		}
	}
	// With MAX_IN_FLIGHT=1 and one request in flight, a GET query asking
	// for text/event-stream is shed (503), not run.
	inside, release := make(chan struct{}), make(chan struct{})
	h := httpx.Shed(1)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("hold") != "" {
			close(inside)
			<-release
		}
	}))
	go h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/graphql?hold=1", nil))
	<-inside
	for i := 0; i < 3; i++ {
		w := httptest.NewRecorder()
		r := httptest.NewRequest(http.MethodGet, "/graphql?query={viewer{id}}", nil)
		r.Header.Set("Accept", "text/event-stream")
		h.ServeHTTP(w, r)
		if w.Code != http.StatusServiceUnavailable {
			t.Fatalf("GET query with Accept: text/event-stream while full: %d, want 503", w.Code)
		}
	}
	close(release)
}

// 6. A body sent slower than BODY_READ_TIMEOUT fails with 400 and frees
// its in-flight slot.
func TestHostileSlowBodyHasADeadline(t *testing.T) {
	e := newEnv(t)
	cfg := e.config()
	cfg.MaxInFlight = 1
	cfg.BodyReadTimeout = 300 * time.Millisecond
	in := e.start(cfg, Options{})
	pr, pw := io.Pipe()
	defer pw.Close()
	req, _ := http.NewRequest(http.MethodPost, in.URL+"/graphql", pr)
	req.Header.Set("Content-Type", "application/json")
	go func() { _, _ = pw.Write([]byte(`{"query":`)) }() // and nothing more
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || hostileCode(string(raw)) != "BAD_REQUEST" {
		t.Fatalf("slow body: %d %s, want 400 BAD_REQUEST", resp.StatusCode, raw)
	}
	if r := in.post("", "{ products(first: 1) { edges { node { id } } } }", nil); r.Status != http.StatusOK {
		t.Fatalf("after the slow body: %d %s (slot not freed?)", r.Status, r.Raw)
	}
	// The payment webhook reads its body under the same deadline.
	pr2, pw2 := io.Pipe()
	defer pw2.Close()
	req2, _ := http.NewRequest(http.MethodPost, in.URL+"/webhooks/payments", pr2)
	req2.Header.Set("Content-Type", "application/json")
	go func() { _, _ = pw2.Write([]byte(`{"type":`)) }()
	resp2, err := http.DefaultClient.Do(req2)
	if err != nil {
		t.Fatal(err)
	}
	resp2.Body.Close()
	if resp2.StatusCode != http.StatusBadRequest {
		t.Fatalf("slow webhook body: %d, want 400", resp2.StatusCode)
	}
}

// 7. Rate limits count operations: each mutation root field is charged to
// the mutation budget, and root fields are capped.
func TestHostileRootFieldsAreCharged(t *testing.T) {
	e := newEnv(t)
	cfg := e.config()
	cfg.RateMutationsPerSecond, cfg.RateMutationsBurst = 1, 20
	in := e.start(cfg, Options{})
	alice := in.token("alice@example.com")
	aliceID := mutUserID(t, in, "alice@example.com")
	ps := mutCatalogue(t, in, 1)
	orders0 := mutOrderCount(t, in, aliceID)
	aliased := func(n int) string {
		var b strings.Builder
		b.WriteString("mutation($in: PlaceOrderInput!) {")
		for i := 0; i < n; i++ {
			fmt.Fprintf(&b, " p%d: placeOrder(input: $in) { order { id } }", i)
		}
		return b.String() + " }"
	}
	vars := map[string]any{"in": mutInput(ps[0].ID, 1)}
	r := in.post(alice, aliased(60), vars, "Idempotency-Key: "+mutKey())
	if r.code() != "QUERY_TOO_COMPLEX" || mutExt(r, "rootFields") == nil {
		t.Fatalf("60 aliased placeOrder: %d %s, want QUERY_TOO_COMPLEX (rootFields)", r.Status, r.Raw)
	}
	if n := mutOrderCount(t, in, aliceID) - orders0; n != 0 {
		t.Fatalf("60 aliased placeOrder created %d orders", n)
	}
	r = in.post(alice, aliased(15), vars, "Idempotency-Key: "+mutKey())
	if r.Status != http.StatusOK || len(r.Errors) > 0 {
		t.Fatalf("15 aliased placeOrder: %d %s", r.Status, r.Raw)
	}
	r = in.post(alice, aliased(15), vars, "Idempotency-Key: "+mutKey())
	if r.Status != http.StatusTooManyRequests || r.code() != "RATE_LIMITED" {
		t.Fatalf("another 15 within the burst of 20: %d %s, want 429", r.Status, r.Raw)
	}
	if n := mutOrderCount(t, in, aliceID) - orders0; n != 15 {
		t.Fatalf("%d orders, want 15", n)
	}

	// 1,600 aliased products(first: 1): refused before any SQL.
	before := in.queries.n.Load()
	var b strings.Builder
	b.WriteString("{")
	for i := 0; i < 1600; i++ {
		fmt.Fprintf(&b, " p%d: products(first: 1) { edges { node { id } } }", i)
	}
	b.WriteString(" }")
	r = in.post("", b.String(), nil)
	if r.Status != http.StatusRequestEntityTooLarge {
		t.Fatalf("1,600 aliased products: %d %.300s, want 413", r.Status, r.Raw)
	}
	r = in.post("", "{"+strings.Repeat(" products(first: 1) { edges { node { id } } }", 1)+aliasedProducts(21)+" }", nil)
	if r.code() != "QUERY_TOO_COMPLEX" || mutExt(r, "rootFields") == nil {
		t.Fatalf("22 root fields: %d %.300s, want QUERY_TOO_COMPLEX (rootFields)", r.Status, r.Raw)
	}
	if n := in.queries.n.Load() - before; n != 0 {
		t.Fatalf("refused operations ran %d SQL queries", n)
	}
}

func aliasedProducts(n int) string {
	var b strings.Builder
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, " p%d: products(first: 1) { edges { node { id } } }", i)
	}
	return b.String()
}

// openStream opens GET /events or a graphql-sse subscription for token and
// returns the response (its body open on 200).
func openStream(t testing.TB, in *instance, token string, graphqlSSE bool, lastEventID string) *http.Response {
	t.Helper()
	var req *http.Request
	if graphqlSSE {
		req, _ = http.NewRequest(http.MethodPost, in.URL+"/graphql", strings.NewReader(`{"query":"subscription { orderEvents { id type } }"}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "text/event-stream")
	} else {
		req, _ = http.NewRequest(http.MethodGet, in.URL+"/events?stream=orders", nil)
		if lastEventID != "" {
			req.Header.Set("Last-Event-ID", lastEventID)
		}
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// 8. A user's streams are capped, on both doors together: open ones and
// opens per minute, with 429 and Retry-After beyond.
func TestHostileStreamCaps(t *testing.T) {
	e := newEnv(t)
	cfg := e.config()
	cfg.StreamMaxOpen, cfg.StreamOpensPerMinute = 3, 1000
	in := e.start(cfg, Options{})
	alice := in.token("alice@example.com")
	for i, sse := range []bool{false, true, false} {
		if r := openStream(t, in, alice, sse, ""); r.StatusCode != http.StatusOK {
			t.Fatalf("stream %d: %d", i+1, r.StatusCode)
		}
	}
	for _, sse := range []bool{false, true} {
		r := openStream(t, in, alice, sse, "")
		if r.StatusCode != http.StatusTooManyRequests || r.Header.Get("Retry-After") == "" {
			t.Fatalf("4th stream (graphql-sse %v): %d, want 429 with Retry-After", sse, r.StatusCode)
		}
	}
	if r := openStream(t, in, in.token("bob@example.com"), false, ""); r.StatusCode != http.StatusOK {
		t.Fatalf("another user's stream: %d", r.StatusCode)
	}

	cfg2 := e.config()
	cfg2.StreamMaxOpen, cfg2.StreamOpensPerMinute = 1000, 5
	in2 := e.start(cfg2, Options{})
	bob := in2.token("bob@example.com")
	for i := 0; i < 5; i++ {
		r := openStream(t, in2, bob, i%2 == 0, "")
		if r.StatusCode != http.StatusOK {
			t.Fatalf("open %d: %d", i+1, r.StatusCode)
		}
		r.Body.Close()
	}
	r := openStream(t, in2, bob, false, "")
	if r.StatusCode != http.StatusTooManyRequests || r.Header.Get("Retry-After") == "" {
		t.Fatalf("6th open in a minute: %d, want 429 with Retry-After", r.StatusCode)
	}
}

// 9. A stream ends with `event: reset` {"reason":"session_expired"} when
// its token expires, on both doors.
func TestHostileStreamsEndWhenTheSessionExpires(t *testing.T) {
	e := newEnv(t)
	in := e.start(nil, Options{})
	u, err := in.srv.Store().UserByEmail(context.Background(), "alice@example.com")
	if err != nil {
		t.Fatal(err)
	}
	iss, err := auth.NewIssuer(auth.Config{Secrets: [][]byte{[]byte(in.cfg.JWTSecrets[0])}, TTL: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	tok, _, err := iss.Issue(u)
	if err != nil {
		t.Fatal(err)
	}
	for _, sse := range []bool{false, true} {
		r := openStream(t, in, tok, sse, "")
		if r.StatusCode != http.StatusOK {
			t.Fatalf("open (graphql-sse %v): %d", sse, r.StatusCode)
		}
		evs := readEvents(r.Body)
		ev := next(t, evs, true)
		for ev.event != "reset" && ev.event != "complete" { // events the relay publishes meanwhile
			ev = next(t, evs, true)
		}
		if ev.event != "reset" || ev.data != `{"reason":"session_expired"}` || ev.id != "" {
			t.Fatalf("graphql-sse %v: %+v, want reset session_expired", sse, ev)
		}
	}
}

// 10. The graphql-sse door answers an undecodable body with 400
// BAD_REQUEST without echoing it or naming Go types, and logs only JSON.
func TestHostileSSEDoorDecodeErrors(t *testing.T) {
	e := newEnv(t)
	in := e.start(nil, Options{})
	forged := "{\"query\": 1}\n{\"level\":\"ERROR\",\"msg\":\"forged-line\"}"
	for _, body := range []string{forged, "not json\nforged-line", `{"query":["forged-line"]}`} {
		resp, raw := hostileSend(t, http.MethodPost, in.URL+"/graphql", body, "Accept: text/event-stream")
		if resp.StatusCode != http.StatusBadRequest || hostileCode(raw) != "BAD_REQUEST" ||
			strings.Contains(raw, "forged-line") || strings.Contains(raw, "json:") || strings.Contains(raw, "graphql.RawParams") {
			t.Fatalf("%q: %d %s", body, resp.StatusCode, raw)
		}
	}
	for _, line := range strings.Split(strings.TrimSpace(in.logs.String()), "\n") {
		if !json.Valid([]byte(line)) || strings.Contains(line, "forged-line") {
			t.Fatalf("log line %q", line)
		}
	}
}

// 11. Personal responses are private and vary with the credentials: never
// stored by a shared cache, and not reused by the browser without
// revalidation (no-store, or no-cache with an ETag on screens).
func TestHostilePersonalResponsesArePrivate(t *testing.T) {
	e := newEnv(t)
	in := e.start(nil, Options{})
	resp, body := hostileSend(t, http.MethodGet, in.URL+"/graphql?query="+urlEscape("{ viewer { id email } }"), "",
		"Authorization: Bearer "+in.token("alice@example.com"))
	cc := resp.Header.Get("Cache-Control")
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(cc, "private, no-") || strings.Contains(cc, "public") || strings.Contains(cc, "max-age") ||
		!strings.Contains(strings.Join(resp.Header.Values("Vary"), ","), "Authorization, Cookie") {
		t.Fatalf("personal GET: %d Cache-Control %q Vary %q %s", resp.StatusCode, resp.Header.Get("Cache-Control"), resp.Header.Values("Vary"), body)
	}
}

// 12. A resume point outside the viewer's scope is "unknown" exactly like
// one beyond the stream head, so the shop's activity cannot be probed.
func TestHostileResumePointsInTheViewersScope(t *testing.T) {
	e := newEnv(t)
	in := e.start(nil, Options{})
	alice := in.token("alice@example.com")
	mutPlace(t, in, alice, mutInput(mutCatalogue(t, in, 1)[0].ID, 1))
	aliceEvent := mutInt(t, in, `SELECT max(position)::int FROM order_events e JOIN users u ON u.id = e.customer_id WHERE u.email = 'alice@example.com'`)
	bob := in.token("bob@example.com")
	first := func(id string) sseEvent {
		r := openStream(t, in, bob, false, id)
		if r.StatusCode != http.StatusOK {
			t.Fatalf("resume %s: %d", id, r.StatusCode)
		}
		return next(t, readEvents(r.Body), false)
	}
	other, beyond := first(fmt.Sprint(aliceEvent)), first(fmt.Sprint(aliceEvent+1_000_000))
	if other.event != "reset" || other != beyond || other.data != `{"reason":"unknown"}` {
		t.Fatalf("another customer's event id: %+v; beyond the head: %+v; want the same unknown reset", other, beyond)
	}
	// Alice's own id resumes.
	r := openStream(t, in, alice, false, fmt.Sprint(aliceEvent))
	go func() {
		mutPlace(t, in, alice, mutInput(mutCatalogue(t, in, 1)[0].ID, 1))
	}()
	if ev := next(t, readEvents(r.Body), false); ev.event == "reset" {
		t.Fatalf("alice's own resume point: %+v", ev)
	}
}

// 13. Only validated operation names become metric labels, and /metrics
// is not on the API port in production.
func TestHostileMetricsLabelsAndPort(t *testing.T) {
	e := newEnv(t)
	in := e.start(nil, Options{})
	for i := 0; i < 30; i++ {
		in.post("", "query Real { products(first: 1) { edges { node { id } } } }", nil, "X-Ignored: 1")
		body, _ := json.Marshal(map[string]any{"query": "query Real { products(first: 1) { edges { node { id } } } }", "operationName": fmt.Sprintf("junk%d", i)})
		hostileSend(t, http.MethodPost, in.URL+"/graphql", string(body))
	}
	_, metrics := hostileSend(t, http.MethodGet, in.URL+"/metrics", "")
	if strings.Contains(metrics, "junk") || !strings.Contains(metrics, `"Real"`) {
		t.Fatalf("metrics: junk operation names present or Real missing")
	}
	prod := e.config()
	prod.Env = "production"
	prod.JWTSecrets = []string{strings.Repeat("p", 40)}
	prod.WebhookSecrets = []string{strings.Repeat("w", 40)}
	pin := e.start(prod, Options{})
	if _, body := hostileSend(t, http.MethodGet, pin.URL+"/metrics", ""); strings.Contains(body, "# HELP") {
		t.Fatal("production serves /metrics on the API port")
	}
	if resp, body := hostileSend(t, http.MethodGet, pin.URL+"/graphiql", ""); strings.Contains(strings.ToLower(body), "graphiql") {
		t.Fatalf("production serves GraphiQL: %d", resp.StatusCode)
	}
	if resp, _ := hostileSend(t, http.MethodPost, pin.URL+"/session", `{"email":"alice@example.com"}`); resp.StatusCode == http.StatusOK || len(resp.Cookies()) > 0 {
		t.Fatalf("production signs in without a password: %d", resp.StatusCode)
	}
}

// 14. Tokens from the future, with a huge lifetime or, when configured,
// the wrong issuer or audience are refused; a production configuration
// is the default and refuses short secrets.
func TestHostileTokensAndDefaults(t *testing.T) {
	if _, err := config.Load(func(string) string { return "" }); err == nil {
		t.Fatal("no configuration started (APP_ENV must default to production, which needs secrets)")
	}
	e := newEnv(t)
	cfg := e.config()
	cfg.JWTIssuer, cfg.JWTAudience = "https://shop.example", "shop-bff"
	in := e.start(cfg, Options{})
	u, err := in.srv.Store().UserByEmail(context.Background(), "alice@example.com")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	sign := func(iat, exp time.Time, iss, aud string) string {
		c := auth.Claims{Role: u.Role, RegisteredClaims: jwt.RegisteredClaims{Subject: u.ID, IssuedAt: jwt.NewNumericDate(iat),
			ExpiresAt: jwt.NewNumericDate(exp), Issuer: iss, Audience: jwt.ClaimStrings{aud}}}
		s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString([]byte(cfg.JWTSecrets[0]))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	iss, aud := cfg.JWTIssuer, cfg.JWTAudience
	for name, tok := range map[string]string{
		"iat ten years ahead": sign(now.AddDate(10, 0, 0), now.AddDate(10, 0, 1), iss, aud),
		"100-year lifetime":   sign(now, now.AddDate(100, 0, 0), iss, aud),
		"wrong issuer":        sign(now, now.Add(time.Hour), "https://evil.example", aud),
		"wrong audience":      sign(now, now.Add(time.Hour), iss, "other"),
		"no issuer":           sign(now, now.Add(time.Hour), "", aud),
	} {
		if r := in.post(tok, "{ viewer { id } }", nil); r.Status != http.StatusUnauthorized || r.code() != "UNAUTHENTICATED" {
			t.Errorf("%s: %d %s, want 401", name, r.Status, r.Raw)
		}
	}
	if r := in.post(sign(now, now.Add(time.Hour), iss, aud), "{ viewer { id } }", nil); r.Status != http.StatusOK || field(r.Data, "viewer", "id") != u.ID {
		t.Fatalf("a good token: %d %s", r.Status, r.Raw)
	}
}

// 15. A document of 20,000 unused fragments is refused by its size, and
// any response carries at most 20 errors.
func TestHostileErrorCap(t *testing.T) {
	e := newEnv(t)
	in := e.start(nil, Options{})
	var b strings.Builder
	b.WriteString("{ viewer { id } }\n")
	for i := 0; i < 20000; i++ {
		fmt.Fprintf(&b, "fragment U%d on Query { viewer { id } }\n", i)
	}
	r := in.post("", b.String(), nil)
	if r.Status != http.StatusRequestEntityTooLarge || len(r.Raw) > 2000 {
		t.Fatalf("20,000 unused fragments: %d, %d bytes", r.Status, len(r.Raw))
	}
	b.Reset()
	b.WriteString("{ viewer { id } }\n")
	for i := 0; i < 60; i++ {
		fmt.Fprintf(&b, "fragment U%d on Query { viewer { id } }\n", i)
	}
	r = in.post("", b.String(), nil)
	if r.code() != "GRAPHQL_VALIDATION_FAILED" || len(r.Errors) != 20 || !strings.Contains(r.Errors[19].Message, "41 more errors") {
		t.Fatalf("60 unused fragments: %d errors %.400s, want 20 (the last counting the rest)", len(r.Errors), r.Raw)
	}
}

// 16. GraphiQL is served in development only, never framed.
func TestHostileGraphiQL(t *testing.T) {
	e := newEnv(t)
	in := e.start(nil, Options{})
	resp, _ := hostileSend(t, http.MethodGet, in.URL+"/graphiql", "")
	csp := resp.Header.Get("Content-Security-Policy")
	if resp.StatusCode != http.StatusOK || !strings.Contains(csp, "frame-ancestors 'none'") || resp.Header.Get("X-Frame-Options") != "DENY" {
		t.Fatalf("GraphiQL in development: %d CSP %q", resp.StatusCode, csp)
	}
}

// validateDoc validates doc against the served schema.
func validateDoc(es graphql.ExecutableSchema, doc *ast.QueryDocument) gqlerror.List {
	return validator.Validate(es.Schema(), doc)
}
