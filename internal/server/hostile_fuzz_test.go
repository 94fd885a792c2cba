package server

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/lexer"
	"github.com/vektah/gqlparser/v2/parser"

	"github.com/shop/bff/internal/config"
)

// fuzzTokens counts the tokens of a document (comments aside), -1 when it
// does not lex.
func fuzzTokens(doc string) int {
	lx := lexer.New(&ast.Source{Input: doc})
	n := 0
	for {
		tok, err := lx.ReadToken()
		if err != nil {
			return -1
		}
		if tok.Kind == lexer.EOF {
			return n
		}
		if tok.Kind != lexer.Comment {
			n++
		}
	}
}

// fuzzMaxSQL bounds the SQL statements one admitted operation may cause
// (20 root fields of the costliest screen, plus the background jobs'
// statements that land in the same window).
const fuzzMaxSQL = 400

// FuzzGraphQLHandler sends random documents, variables, headers and
// transports (GET, POST, graphql-sse, multipart; JSON or
// graphql-response+json; with or without a user, an Idempotency-Key, a
// broken Content-Type) through the whole handler of a running instance,
// and checks: never INTERNAL (or any 5xx but 503), never more work than
// the budget (an admitted document has at most the parser's token limit
// and the selection limit, and its cost walk visits no more selections
// than it wrote; bounded SQL), never an order or a charge without an
// Idempotency-Key.
func FuzzGraphQLHandler(f *testing.F) {
	for _, s := range []struct {
		doc, vars string
		hdr, door uint8
	}{
		{"{ products(first: 2) { edges { node { id name price { cents } } } } }", "", 0, 0},
		{"query S { homeScreen { viewer { id } recentOrders { id status } } }", "", 1, 1},
		{"query O($s: OrderStatus) { ordersScreen(status: $s, first: 5) { orders { edges { node { id } } } } }", `{"s":"PENDING_PAYMENT"}`, 1, 0},
		{mutPlaceQuery, `{"in":{"lines":[{"productId":"$P","quantity":1}],"shippingAddress":{"name":"A","line1":"1","city":"C","postalCode":"1","country":"US"}}}`, 1, 0},
		{mutPlaceQuery, `{"in":{"lines":[{"productId":"$P","quantity":1}],"shippingAddress":{"name":"A","line1":"1","city":"C","postalCode":"1","country":"US"}}}`, 3, 0},
		{mutPlaceQuery, `{"in":{"lines":[{"productId":"$P","quantity":1}],"shippingAddress":{"name":"A","line1":"1","city":"C","postalCode":"1","country":"US"}}}`, 1, 4},
		{"mutation { a: placeOrder(input: {lines: [], shippingAddress: {name: \"\", line1: \"\", city: \"\", postalCode: \"\", country: \"\"}}) { order { id } } }", "", 1, 0},
		{"subscription { orderEvents { id type } }", "", 1, 4},
		{"subscription { orderEvents { id type } }", "", 1, 8},
		{"{ __schema { types { name fields { name type { name ofType { name } } } } } }", "", 0, 2},
		{"query Chain { ...F0 } fragment F0 on Query { ...F1 ...F1 } fragment F1 on Query { ...F2 ...F2 } fragment F2 on Query { viewer { id } }", "", 0, 0},
		{"{ products { edges { node { id id id } } } }", "", 0, 0},
		{"{nope}", "", 0, 0},
		{"{ products(first: ", "{", 8, 0},
		{"# only a comment", "[]", 0, 2},
		{"query A { viewer { id } } query B { viewer { email } }", `{"x":1}`, 1, 0},
	} {
		f.Add(s.doc, s.vars, s.hdr, s.door)
	}
	e := newEnv(f)
	in := e.start(nil, Options{})
	alice := in.token("alice@example.com")
	aliceID := mutUserID(f, in, "alice@example.com")
	product := mutCatalogue(f, in, 1)[0].ID
	h := in.srv.Handler()
	count := func(t *testing.T, sql string, args ...any) int { return mutInt(t, in, sql, args...) }
	key := 0

	f.Fuzz(func(t *testing.T, doc, vars string, hdr, door uint8) {
		vars = strings.ReplaceAll(vars, "$P", product)
		wait := 30 * time.Second
		if d := (door >> 1) & 7; d == 2 || d == 4 {
			wait = 300 * time.Millisecond // an admitted subscription streams until then
		}
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		params := map[string]any{"query": doc}
		if json.Valid([]byte(vars)) {
			params["variables"] = json.RawMessage(vars)
		}
		if hdr&64 != 0 {
			params["operationName"] = "A"
		}
		var req *http.Request
		if door&1 == 1 { // GET
			q := url.Values{"query": {doc}}
			if v, ok := params["variables"]; ok {
				q.Set("variables", string(v.(json.RawMessage)))
			}
			req = httptest.NewRequestWithContext(ctx, http.MethodGet, "/graphql?"+q.Encode(), nil)
		} else {
			body, _ := json.Marshal(params)
			req = httptest.NewRequestWithContext(ctx, http.MethodPost, "/graphql", strings.NewReader(string(body)))
			req.Header.Set("Content-Type", "application/json")
		}
		switch (door >> 1) & 7 {
		case 1:
			req.Header.Set("Accept", "application/graphql-response+json")
		case 2:
			req.Header.Set("Accept", "text/event-stream")
		case 4:
			req.Header.Set("Accept", `multipart/mixed;subscriptionSpec="1.0"`)
		case 5:
			req.Header.Set("Accept", "text/html")
		}
		if hdr&1 != 0 {
			req.Header.Set("Authorization", "Bearer "+alice)
		}
		keyed := hdr&2 != 0
		if keyed {
			key++
			req.Header.Set("Idempotency-Key", "fuzz-"+time.Now().Format("150405.000000")+"-"+strings.Repeat("k", key%7))
		}
		if hdr&4 != 0 {
			req.Header.Set("Cache-Control", "no-cache")
		}
		if hdr&8 != 0 {
			req.Header.Set("Content-Type", "text/plain")
		}
		orders0 := count(t, `SELECT count(*) FROM orders WHERE customer_id = $1::uuid`, aliceID)
		jobs0 := count(t, `SELECT count(*) FROM charge_jobs`)
		sql0 := in.queries.n.Load()

		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		body := rec.Body.String()

		if rec.Code >= 500 && rec.Code != http.StatusServiceUnavailable || strings.Contains(body, `"INTERNAL"`) {
			t.Fatalf("%d %.500s", rec.Code, body)
		}
		if n := in.queries.n.Load() - sql0; n > fuzzMaxSQL {
			t.Fatalf("%d SQL statements for one request (budget %d)", n, fuzzMaxSQL)
		}
		if !keyed {
			if n := count(t, `SELECT count(*) FROM orders WHERE customer_id = $1::uuid`, aliceID); n != orders0 {
				t.Fatalf("an order without an Idempotency-Key: %d %.300s", rec.Code, body)
			}
			if n := count(t, `SELECT count(*) FROM charge_jobs`); n != jobs0 {
				t.Fatalf("a charge without an Idempotency-Key: %d %.300s", rec.Code, body)
			}
		}
		if strings.Contains(body, `"data":{`) || strings.Contains(body, "event: next") || strings.Contains(body, `"payload":{`) {
			// Admitted: the document fits the budgets.
			if n := fuzzTokens(doc); n > config.DefaultQueryMaxTokens {
				t.Fatalf("admitted a document of %d tokens", n)
			}
			parsed, err := parser.ParseQuery(&ast.Source{Input: doc})
			if err != nil {
				t.Fatalf("admitted a document that does not parse: %v", err)
			}
			written := 0
			for _, op := range parsed.Operations {
				written += countSelections(op.SelectionSet)
			}
			for _, fr := range parsed.Fragments {
				written += countSelections(fr.SelectionSet)
			}
			if written > config.DefaultQueryMaxSelections {
				t.Fatalf("admitted %d selections", written)
			}
		}
	})
}
