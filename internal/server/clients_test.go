package server

// Tests of what client developers and their tools expect (clients.md):
// schema details code generators need, CORS headers and HTTP/2 without
// TLS.

import (
	"context"
	"encoding/json"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/shop/bff/internal/httpx"
	"github.com/shop/bff/internal/persisted"
)

// TestSchemaFixesForGenerators: Time names its specification, ErrorCode is
// reachable from a field (generators keep it), subscription arguments are
// described, and the zero values a generated client sends for an absent
// value (after: "", currency: "") mean the absent value.
func TestSchemaFixesForGenerators(t *testing.T) {
	e := newEnv(t)
	in := e.start(nil, Options{})
	tok := in.token("alice@example.com")

	r := in.post("", `{ __type(name: "Time") { specifiedByURL }
		sub: __type(name: "Subscription") { fields { name args { name description } } } }`, nil)
	if r.Status != 200 || len(r.Errors) > 0 {
		t.Fatalf("introspection: %d %s", r.Status, r.Raw)
	}
	if u, _ := field(r.Data, "__type", "specifiedByURL").(string); !strings.Contains(u, "rfc3339") {
		t.Errorf("Time.specifiedByURL = %q, want the RFC 3339 URL", u)
	}
	for _, a := range field(r.Data, "sub", "fields", 0, "args").([]any) {
		if d, _ := field(a, "description").(string); d == "" {
			t.Errorf("subscription argument %v has no description", field(a, "name"))
		}
	}

	r = in.post("", `{ errorCodes { code retryable httpStatus } }`, nil)
	codes := field(r.Data, "errorCodes").([]any)
	if len(codes) != len(httpx.AllCodes) {
		t.Fatalf("errorCodes: %d codes, want %d: %s", len(codes), len(httpx.AllCodes), r.Raw)
	}
	for i, c := range httpx.AllCodes {
		if field(codes[i], "code") != string(c) || field(codes[i], "retryable") != c.Retryable() ||
			field(codes[i], "httpStatus") != float64(httpx.Status(c)) {
			t.Errorf("errorCodes[%d] = %v, want %s retryable=%v status=%d", i, codes[i], c, c.Retryable(), httpx.Status(c))
		}
	}

	const screen = `query S($after: String) { ordersScreen(first: 2, after: $after) { orders { edges { node { id } } } } }`
	absent := in.post(tok, screen, nil)
	empty := in.post(tok, screen, map[string]any{"after": ""})
	if empty.Status != 200 || len(empty.Errors) > 0 {
		t.Fatalf(`after: "" got %d %s`, empty.Status, empty.Raw)
	}
	if a, b := field(absent.Data, "ordersScreen"), field(empty.Data, "ordersScreen"); !jsonEqual(a, b) {
		t.Errorf(`after: "" = %v, want the first page %v`, b, a)
	}

	p := mutCatalogue(t, in, 1)[0]
	input := mutInput(p.ID, 1)
	input["currency"] = ""
	r = in.post(tok, `mutation($in: PlaceOrderInput!) { placeOrder(input: $in) { order { total { currency } } } }`,
		map[string]any{"in": input}, "Idempotency-Key: "+mutKey())
	if got := field(r.Data, "placeOrder", "order", "total", "currency"); got != "USD" {
		t.Errorf(`placeOrder with currency "" = %v (%s), want USD`, got, r.Raw)
	}
}

// TestCORSAllowsClientHeaders: a preflight from an allowed origin lists
// the headers GraphQL clients send (cache bypass and revalidation, client
// name and version, trace context), and CORS_ALLOW_HEADERS replaces them.
func TestCORSAllowsClientHeaders(t *testing.T) {
	e := newEnv(t)
	preflight := func(in *instance) []string {
		req, _ := http.NewRequest(http.MethodOptions, in.URL+"/graphql", nil)
		req.Header.Set("Origin", "https://shop.example.com")
		req.Header.Set("Access-Control-Request-Method", "POST")
		req.Header.Set("Access-Control-Request-Headers", "apollographql-client-name, content-type")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent {
			t.Fatalf("preflight: %d", resp.StatusCode)
		}
		var out []string
		for _, h := range strings.Split(resp.Header.Get("Access-Control-Allow-Headers"), ",") {
			out = append(out, strings.ToLower(strings.TrimSpace(h)))
		}
		return out
	}
	cfg := e.config()
	cfg.CORSOrigins = []string{"https://shop.example.com"}
	got := preflight(e.start(cfg, Options{}))
	for _, h := range []string{"cache-control", "if-none-match", "apollographql-client-name", "apollographql-client-version",
		"graphql-client-name", "graphql-client-version", "traceparent", "sentry-trace", "baggage", "last-event-id"} {
		if !slices.Contains(got, h) {
			t.Errorf("Access-Control-Allow-Headers %v lacks %s", got, h)
		}
	}
	cfg = e.config()
	cfg.CORSOrigins = []string{"https://shop.example.com"}
	cfg.CORSAllowHeaders = []string{"Content-Type", "X-Custom"}
	if got := preflight(e.start(cfg, Options{})); !slices.Equal(got, []string{"content-type", "x-custom"}) {
		t.Errorf("with CORS_ALLOW_HEADERS: %v, want [content-type x-custom]", got)
	}
}

// TestH2CPlainPort: the plain port speaks HTTP/2 with prior knowledge, and
// a stream and a query share one connection.
func TestH2CPlainPort(t *testing.T) {
	e := newEnv(t)
	in := e.start(nil, Options{})
	var dials int
	tr := &http.Transport{Protocols: new(http.Protocols)}
	tr.Protocols.SetUnencryptedHTTP2(true)
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		dials++
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}
	client := &http.Client{Transport: tr}
	defer tr.CloseIdleConnections()

	req, _ := http.NewRequest(http.MethodGet, in.URL+"/events?stream=orders", nil)
	req.Header.Set("Authorization", "Bearer "+in.token("alice@example.com"))
	stream, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Body.Close()
	if stream.Proto != "HTTP/2.0" || stream.StatusCode != 200 {
		t.Fatalf("stream over h2c: %s %d", stream.Proto, stream.StatusCode)
	}
	resp, err := client.Get(in.URL + "/graphql?query=" + urlEscape("{ __typename }"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Proto != "HTTP/2.0" || resp.StatusCode != 200 {
		t.Fatalf("query over h2c: %s %d", resp.Proto, resp.StatusCode)
	}
	if dials != 1 {
		t.Errorf("%d connections for a stream and a query, want 1 (multiplexed)", dials)
	}
}

// jsonEqual compares two decoded JSON values.
func jsonEqual(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

// TestPersistedOperationsOnly: with PERSISTED_OPERATIONS=require only the
// manifests' operations run: the web app's (built in) and a mobile app's
// (from PERSISTED_OPERATIONS_DIR) by documentId over GET and POST or by
// Apollo's persistedQuery hash, and the web app's documents as text; an
// unknown id is PERSISTED_QUERY_NOT_FOUND, any other document BAD_REQUEST.
// Requests are counted per client name and version.
func TestPersistedOperationsOnly(t *testing.T) {
	e := newEnv(t)
	dir := t.TempDir()
	const mobile = "query MobileViewer { viewer { email } }"
	if err := os.MkdirAll(filepath.Join(dir, "ios"), 0o755); err != nil {
		t.Fatal(err)
	}
	manifest, _ := json.Marshal(map[string]string{persisted.ID(mobile): mobile})
	if err := os.WriteFile(filepath.Join(dir, "ios", "2.3.0.json"), manifest, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := e.config()
	cfg.PersistedOperations = "require"
	cfg.PersistedOperationsDir = dir
	in := e.start(cfg, Options{})
	tok := in.token("alice@example.com")
	ios := []string{"apollographql-client-name: ios", "apollographql-client-version: 2.3.0"}
	get := func(params string, headers ...string) *gqlResponse {
		req, _ := http.NewRequest(http.MethodGet, in.URL+"/graphql?"+params, nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		for _, h := range headers {
			k, v, _ := strings.Cut(h, ":")
			req.Header.Set(k, strings.TrimSpace(v))
		}
		return in.do(req)
	}
	post := func(body map[string]any, headers ...string) *gqlResponse {
		b, _ := json.Marshal(body)
		req, _ := http.NewRequest(http.MethodPost, in.URL+"/graphql", strings.NewReader(string(b)))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+tok)
		for _, h := range headers {
			k, v, _ := strings.Cut(h, ":")
			req.Header.Set(k, strings.TrimSpace(v))
		}
		return in.do(req)
	}
	web := persisted.BuiltinFS()
	raw, err := fs.ReadFile(web, "web/1.json")
	if err != nil {
		t.Fatal(err)
	}
	var webDocs map[string]string
	_ = json.Unmarshal(raw, &webDocs)
	var homeID, home string
	for id, doc := range webDocs {
		if strings.HasPrefix(doc, "query HomeScreen") {
			homeID, home = id, doc
		}
	}

	if r := get("documentId=sha256:" + homeID); field(r.Data, "homeScreen", "viewer", "email") != "alice@example.com" {
		t.Errorf("web documentId over GET: %d %s", r.Status, r.Raw)
	}
	if r := post(map[string]any{"documentId": persisted.ID(mobile)}, ios...); field(r.Data, "viewer", "email") != "alice@example.com" {
		t.Errorf("ios documentId over POST: %d %s", r.Status, r.Raw)
	}
	apq := map[string]any{"persistedQuery": map[string]any{"version": 1, "sha256Hash": persisted.ID(mobile)}}
	if r := get("extensions="+urlEscape(mustJSON(apq)), ios...); field(r.Data, "viewer", "email") != "alice@example.com" {
		t.Errorf("ios persistedQuery hash over GET: %d %s", r.Status, r.Raw)
	}
	if r := post(map[string]any{"query": home}); field(r.Data, "homeScreen", "viewer", "email") != "alice@example.com" {
		t.Errorf("the web app's document as text: %d %s", r.Status, r.Raw)
	}
	if r := post(map[string]any{"documentId": homeID}, ios...); r.code() != "PERSISTED_QUERY_NOT_FOUND" {
		t.Errorf("the web app's id from ios 2.3.0 (not in its manifest): %d %s", r.Status, r.Raw)
	}
	if r := get("documentId=" + persisted.ID("query Unknown { viewer { id } }")); r.code() != "PERSISTED_QUERY_NOT_FOUND" {
		t.Errorf("unknown id: %d %s", r.Status, r.Raw)
	}
	if r := post(map[string]any{"query": "{ viewer { email } }"}); r.code() != "BAD_REQUEST" {
		t.Errorf("arbitrary document: %d %s", r.Status, r.Raw)
	}
	if r := post(map[string]any{"query": "{ viewer { email } }"}, "graphql-client-name: made-up", "graphql-client-version: 1"); r.code() != "BAD_REQUEST" {
		t.Errorf("arbitrary document from an unknown client: %d %s", r.Status, r.Raw)
	}

	resp, err := http.Get(in.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, want := range []string{
		`bff_graphql_client_requests_total{client_name="ios",client_version="2.3.0",kind="persisted"} 2`,
		`bff_graphql_client_requests_total{client_name="other",client_version="other",kind="persisted"} 1`,
	} {
		if !strings.Contains(string(b), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if strings.Contains(string(b), "made-up") {
		t.Errorf("an unknown client name became a label")
	}

	// development: any document runs, ids too
	cfg = e.config()
	in2 := e.start(cfg, Options{})
	if r := in2.post(tok, "{ viewer { email } }", nil); field(r.Data, "viewer", "email") != "alice@example.com" {
		t.Errorf("development, arbitrary document: %s", r.Raw)
	}
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// TestDeferIsNotAdvertised: the BFF answers in one response, so
// introspection does not list @defer and a document using it is refused
// as invalid rather than answered inline.
func TestDeferIsNotAdvertised(t *testing.T) {
	e := newEnv(t)
	in := e.start(nil, Options{})
	r := in.post("", `{ __schema { directives { name } } }`, nil)
	var names []string
	for _, d := range field(r.Data, "__schema", "directives").([]any) {
		names = append(names, field(d, "name").(string))
	}
	if slices.Contains(names, "defer") || !slices.Contains(names, "skip") {
		t.Errorf("directives %v: want skip and no defer", names)
	}
	r = in.post(in.token("alice@example.com"), `{ viewer { id ... @defer { email } } }`, nil)
	if r.code() != "GRAPHQL_VALIDATION_FAILED" || r.Data != nil {
		t.Errorf("@defer: %d %s", r.Status, r.Raw)
	}
}
