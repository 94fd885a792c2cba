package server

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/shop/bff/graph"
	"github.com/shop/bff/internal/payments"
)

// The authorization sweep: every Query, Mutation and Subscription field of
// the served schema and every HTTP endpoint, for every kind of caller,
// with the exact outcome. A field added to the schema without a row here
// fails TestAuthorizationSweep.

// Callers. The owner is alice (the orders under test are hers), the other
// customer is bob.
const (
	azOwner = "owner"
	azOther = "other"
	azStaff = "staff"
	azAnon  = "anonymous"
)

var azEmails = map[string]string{azOwner: "alice@example.com", azOther: "bob@example.com", azStaff: "staff@example.com"}

// Outcomes of a GraphQL field: azData (the field has a value, checked by
// the row), azNull (null without an error), or an error code with the
// field null.
const (
	azData = "data"
	azNull = "null"
)

// azWorld is what the rows need: the instance and the callers' tokens.
type azWorld struct {
	t      *testing.T
	in     *instance
	tokens map[string]string
	keys   atomic.Int64
}

func (w *azWorld) key() string {
	return fmt.Sprintf("authz-%d-%d", time.Now().UnixNano(), w.keys.Add(1))
}

// product is the id of a catalogue product.
func (w *azWorld) product() string {
	w.t.Helper()
	r := w.in.post("", `{ products(first: 1) { edges { node { id } } } }`, nil)
	id, _ := field(r.Data, "products", "edges", 0, "node", "id").(string)
	if id == "" {
		w.t.Fatalf("no product: %s", r.Raw)
	}
	return id
}

// pending places a new order of the owner and returns its id and version.
func (w *azWorld) pending() (string, int) {
	w.t.Helper()
	r := w.in.post(w.tokens[azOwner], `mutation($in: PlaceOrderInput!) { placeOrder(input: $in) { order { id version } } }`,
		map[string]any{"in": azPlaceInput(w.product())}, "Idempotency-Key: "+w.key())
	id, _ := field(r.Data, "placeOrder", "order", "id").(string)
	if id == "" {
		w.t.Fatalf("placeOrder: %s", r.Raw)
	}
	return id, int(field(r.Data, "placeOrder", "order", "version").(float64))
}

// seeded returns a seeded order of the owner in status.
func (w *azWorld) seeded(status string) (string, int) {
	w.t.Helper()
	var id string
	var v int
	err := w.in.db().QueryRow(context.Background(), `SELECT o.id::text, o.version FROM orders o
		JOIN users u ON u.id = o.customer_id WHERE u.email = $1 AND o.status = $2 ORDER BY o.created_at LIMIT 1`,
		azEmails[azOwner], status).Scan(&id, &v)
	if err != nil {
		w.t.Fatalf("no %s order of the owner: %v", status, err)
	}
	return id, v
}

func azPlaceInput(product string) map[string]any {
	return map[string]any{"lines": []any{map[string]any{"productId": product, "quantity": 1}},
		"shippingAddress": map[string]any{"name": "A", "line1": "1 Main St", "city": "Springfield", "postalCode": "12345", "country": "US"}}
}

// azField is one row of the GraphQL table.
type azField struct {
	// query selects the field; vars makes the arguments of one cell
	// (fixtures are made fresh per cell where a success changes them).
	query string
	vars  func(w *azWorld, caller string) map[string]any
	// keyed sends an Idempotency-Key.
	keyed bool
	// want is the outcome per caller.
	want map[string]string
	// check verifies a data outcome: value is the field's value.
	check func(w *azWorld, caller string, vars map[string]any, value any) error
	// cached: the owner asks twice, the second answer comes from the
	// screen cache, and the others ask with identical arguments after it.
	cached bool
}

// azOwnOrder checks that value is an order (or holds one at path) with the
// id of the vars.
func azOwnOrder(path ...any) func(*azWorld, string, map[string]any, any) error {
	return func(_ *azWorld, _ string, vars map[string]any, value any) error {
		if got := field(value, path...); got != vars["id"] {
			return fmt.Errorf("order id %v, want %v", got, vars["id"])
		}
		return nil
	}
}

// azOrderList checks a list of orders: a customer sees only their own, STAFF
// sees more than one customer's.
func azOrderList(path ...any) func(*azWorld, string, map[string]any, any) error {
	return func(_ *azWorld, caller string, _ map[string]any, value any) error {
		edges, _ := field(value, path...).([]any)
		if len(edges) == 0 {
			return fmt.Errorf("no orders")
		}
		seen := map[string]bool{}
		for _, e := range edges {
			email, _ := field(e, "node", "customer", "email").(string)
			seen[email] = true
			if caller != azStaff && email != azEmails[caller] {
				return fmt.Errorf("%s sees an order of %s", azEmails[caller], email)
			}
		}
		if caller == azStaff && len(seen) < 2 {
			return fmt.Errorf("staff sees the orders of %v only", seen)
		}
		return nil
	}
}

// azStatus checks the order status of a mutation payload.
func azStatus(name, status string) func(*azWorld, string, map[string]any, any) error {
	return func(_ *azWorld, _ string, vars map[string]any, value any) error {
		if got := field(value, "order", "id"); vars["id"] != nil && got != vars["id"] {
			return fmt.Errorf("%s changed order %v, want %v", name, got, vars["id"])
		}
		if got := field(value, "order", "status"); status != "" && got != status {
			return fmt.Errorf("%s: status %v, want %s", name, got, status)
		}
		return nil
	}
}

func azMutVars(fixture func(*azWorld) (string, int), extra map[string]any) func(*azWorld, string) map[string]any {
	return func(w *azWorld, _ string) map[string]any {
		id, v := fixture(w)
		out := map[string]any{"id": id, "v": v}
		for k, x := range extra {
			out[k] = x
		}
		return out
	}
}

func azAll(outcome string) map[string]string {
	return map[string]string{azOwner: outcome, azOther: outcome, azStaff: outcome, azAnon: outcome}
}

func azOrderOnly() map[string]string {
	return map[string]string{azOwner: azData, azOther: "NOT_FOUND", azStaff: azData, azAnon: "UNAUTHENTICATED"}
}

const azMutFields = `order { id status customer { email } }`

// azFields is the GraphQL table, by "Type.field".
var azFields = map[string]azField{
	"Query.viewer": {query: `{ viewer { email } }`,
		want: map[string]string{azOwner: azData, azOther: azData, azStaff: azData, azAnon: azNull},
		check: func(_ *azWorld, caller string, _ map[string]any, v any) error {
			if got := field(v, "email"); got != azEmails[caller] {
				return fmt.Errorf("viewer %v", got)
			}
			return nil
		}},
	"Query.homeScreen": {query: `{ homeScreen { viewer { email } recentOrders { id customer { email } } openOrders } }`,
		want: map[string]string{azOwner: azData, azOther: azData, azStaff: azData, azAnon: "UNAUTHENTICATED"}, cached: true,
		check: func(_ *azWorld, caller string, _ map[string]any, v any) error {
			if got := field(v, "viewer", "email"); got != azEmails[caller] {
				return fmt.Errorf("home screen of %v", got)
			}
			for _, o := range field(v, "recentOrders").([]any) {
				if caller != azStaff && field(o, "customer", "email") != azEmails[caller] {
					return fmt.Errorf("recent order of %v", field(o, "customer", "email"))
				}
			}
			return nil
		}},
	"Query.ordersScreen": {query: `query($first: Int) { ordersScreen(first: $first) { orders { edges { node { id customer { email } } } } statusCounts { status count } } }`,
		vars:  func(*azWorld, string) map[string]any { return map[string]any{"first": 100} },
		want:  map[string]string{azOwner: azData, azOther: azData, azStaff: azData, azAnon: "UNAUTHENTICATED"},
		check: azOrderList("orders", "edges"), cached: true},
	"Query.orderScreen": {query: `query($id: ID!) { orderScreen(id: $id) { order { id customer { email } } availableActions lastEventId timeline { id orderId } } }`,
		vars: func(w *azWorld, _ string) map[string]any {
			id, _ := w.seeded("PENDING_PAYMENT")
			return map[string]any{"id": id}
		},
		want: azOrderOnly(), check: azOwnOrder("order", "id"), cached: true},
	"Query.order": {query: `query($id: ID!) { order(id: $id) { id customer { email } } }`,
		vars: func(w *azWorld, _ string) map[string]any {
			id, _ := w.seeded("DELIVERED")
			return map[string]any{"id": id}
		},
		want: azOrderOnly(), check: azOwnOrder("id")},
	"Query.orders": {query: `{ orders(first: 100) { edges { node { id customer { email } } } totalCount } }`,
		want:  map[string]string{azOwner: azData, azOther: azData, azStaff: azData, azAnon: "UNAUTHENTICATED"},
		check: azOrderList("edges")},
	"Query.products": {query: `{ products(first: 5) { edges { node { id sku price { cents } } } } }`,
		want: azAll(azData),
		check: func(_ *azWorld, _ string, _ map[string]any, v any) error {
			if e, _ := field(v, "edges").([]any); len(e) != 5 {
				return fmt.Errorf("%d products", len(e))
			}
			return nil
		}},
	"Query.errorCodes": {query: `{ errorCodes { code retryable } }`,
		want: azAll(azData),
		check: func(_ *azWorld, _ string, _ map[string]any, v any) error {
			if l, _ := v.([]any); len(l) == 0 {
				return fmt.Errorf("no error codes")
			}
			return nil
		}},

	"Mutation.placeOrder": {query: `mutation($in: PlaceOrderInput!) { placeOrder(input: $in) { ` + azMutFields + ` } }`,
		vars:  func(w *azWorld, _ string) map[string]any { return map[string]any{"in": azPlaceInput(w.product())} },
		keyed: true,
		want:  map[string]string{azOwner: azData, azOther: azData, azStaff: "FORBIDDEN", azAnon: "UNAUTHENTICATED"},
		check: func(_ *azWorld, caller string, _ map[string]any, v any) error {
			if got := field(v, "order", "customer", "email"); got != azEmails[caller] {
				return fmt.Errorf("placed an order of %v", got)
			}
			return nil
		}},
	"Mutation.payOrder": {query: `mutation($id: ID!, $v: Int!) { payOrder(id: $id, expectedVersion: $v) { ` + azMutFields + ` paymentStatus: order { paymentStatus } } }`,
		vars: azMutVars((*azWorld).pending, nil), keyed: true,
		want:  map[string]string{azOwner: azData, azOther: "NOT_FOUND", azStaff: "FORBIDDEN", azAnon: "UNAUTHENTICATED"},
		check: azStatus("payOrder", "PENDING_PAYMENT")},
	"Mutation.cancelOrder": {query: `mutation($id: ID!, $v: Int!) { cancelOrder(id: $id, expectedVersion: $v, reason: "authz") { ` + azMutFields + ` } }`,
		vars: azMutVars((*azWorld).pending, nil), keyed: true,
		want: azOrderOnly(), check: azStatus("cancelOrder", "CANCELLED")},
	"Mutation.updateShippingAddress": {query: `mutation($id: ID!, $v: Int!, $a: AddressInput!) { updateShippingAddress(id: $id, expectedVersion: $v, address: $a) { ` + azMutFields + ` } }`,
		vars: azMutVars((*azWorld).pending, map[string]any{"a": map[string]any{"name": "B", "line1": "2 Side St", "city": "Oakland", "postalCode": "94607", "country": "US"}}),
		want: azOrderOnly(), check: azStatus("updateShippingAddress", "PENDING_PAYMENT")},
	"Mutation.shipOrder": {query: `mutation($id: ID!, $v: Int!) { shipOrder(id: $id, expectedVersion: $v, trackingNumber: "1Z999") { ` + azMutFields + ` } }`,
		vars: azMutVars(func(w *azWorld) (string, int) { return w.seeded("PAID") }, nil),
		want: map[string]string{azOwner: "FORBIDDEN", azOther: "NOT_FOUND", azStaff: azData, azAnon: "UNAUTHENTICATED"}, check: azStatus("shipOrder", "SHIPPED")},
	"Mutation.deliverOrder": {query: `mutation($id: ID!, $v: Int!) { deliverOrder(id: $id, expectedVersion: $v) { ` + azMutFields + ` } }`,
		vars: azMutVars(func(w *azWorld) (string, int) { return w.seeded("SHIPPED") }, nil),
		want: map[string]string{azOwner: "FORBIDDEN", azOther: "NOT_FOUND", azStaff: azData, azAnon: "UNAUTHENTICATED"}, check: azStatus("deliverOrder", "DELIVERED")},

	// Subscriptions run over graphql-sse; after "0" replays the order's
	// events from its first, so an authorized caller gets data at once.
	"Subscription.orderEvents": {query: `subscription($id: ID, $after: String) { orderEvents(orderId: $id, after: $after) { id orderId type } }`,
		vars: func(w *azWorld, _ string) map[string]any {
			id, _ := w.pending() // the seed's events are older than the replay window
			return map[string]any{"id": id, "after": "0"}
		},
		want: azOrderOnly(),
		check: func(_ *azWorld, _ string, vars map[string]any, v any) error {
			if got := field(v, "orderId"); got != vars["id"] {
				return fmt.Errorf("event of order %v, want %v", got, vars["id"])
			}
			if field(v, "type") != "ORDER_PLACED" {
				return fmt.Errorf("first replayed event %v", field(v, "type"))
			}
			return nil
		}},
}

// azSubscribe runs a subscription over graphql-sse and returns its first
// payload as a response.
func (w *azWorld) azSubscribe(token, query string, vars map[string]any) *gqlResponse {
	w.t.Helper()
	body, _ := json.Marshal(map[string]any{"query": query, "variables": vars})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "POST", w.in.URL+"/graphql", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "text/event-stream")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		w.t.Fatalf("subscribe: %v", err)
	}
	defer resp.Body.Close()
	out := &gqlResponse{Status: resp.StatusCode, Header: resp.Header}
	if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		var buf bytes.Buffer
		_, _ = buf.ReadFrom(resp.Body)
		out.Raw = buf.Bytes()
		_ = json.Unmarshal(out.Raw, &struct {
			Data   *map[string]any `json:"data"`
			Errors *[]gqlError     `json:"errors"`
		}{&out.Data, &out.Errors})
		return out
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	event := ""
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "event:"):
			event = strings.TrimSpace(strings.TrimPrefix(line, "event:"))
		case strings.HasPrefix(line, "data:") && event == "next":
			out.Raw = []byte(strings.TrimSpace(strings.TrimPrefix(line, "data:")))
			_ = json.Unmarshal(out.Raw, &struct {
				Data   *map[string]any `json:"data"`
				Errors *[]gqlError     `json:"errors"`
			}{&out.Data, &out.Errors})
			return out
		case event == "complete":
			out.Raw = []byte("complete before any payload")
			return out
		}
	}
	out.Raw = []byte(fmt.Sprintf("stream ended: %v", sc.Err()))
	return out
}

// azHTTP is one row of the HTTP table: a request and the status per caller.
type azHTTP struct {
	method, path, body string
	headers            func(w *azWorld) []string
	want               map[string]int
}

func azStatuses(owner, other, staff, anon int) map[string]int {
	return map[string]int{azOwner: owner, azOther: other, azStaff: staff, azAnon: anon}
}

// azEndpoints are the HTTP doors of operations.md; each row is keyed by
// the endpoint it covers (method and path as mounted).
var azEndpoints = map[string][]azHTTP{
	"/graphql": {
		{method: "GET", path: "/graphql?query=%7Bviewer%7Bid%7D%7D", want: azStatuses(200, 200, 200, 200)},
		{method: "POST", path: "/graphql", body: `{"query":"{ viewer { id } }"}`, want: azStatuses(200, 200, 200, 200)},
	},
	"GET /events": {
		{method: "GET", path: "/events?stream=order:{owner-order}", want: azStatuses(200, 404, 200, 401)},
		{method: "GET", path: "/events?stream=orders", want: azStatuses(200, 200, 200, 401)},
		{method: "GET", path: "/events?stream=order:{missing-order}", want: azStatuses(404, 404, 404, 401)},
		{method: "GET", path: "/events?stream=order:not-a-uuid", want: azStatuses(404, 404, 404, 401)},
		{method: "GET", path: "/events?stream=everything", want: azStatuses(400, 400, 400, 401)},
		{method: "GET", path: "/events?stream=order:{owner-order}&lastEventId=0", want: azStatuses(200, 404, 200, 401)},
	},
	"POST /webhooks/payments": {
		// The caller's credentials grant nothing: only the signature does.
		{method: "POST", path: "/webhooks/payments", body: `{}`, want: azStatuses(401, 401, 401, 401)},
		{method: "POST", path: "/webhooks/payments", body: `{}`,
			headers: func(*azWorld) []string { return []string{"Webhook-Signature: t=1,v1=" + strings.Repeat("00", 32)} },
			want:    azStatuses(401, 401, 401, 401)},
		{method: "POST", path: "/webhooks/payments", body: "{signed}", want: azStatuses(404, 404, 404, 404)},
	},
	"/session": {
		{method: "POST", path: "/session", body: `{"email":"bob@example.com"}`, want: azStatuses(200, 200, 200, 200)},
		{method: "DELETE", path: "/session", want: azStatuses(204, 204, 204, 204)},
	},
	"GET /metrics": {{method: "GET", path: "/metrics", want: azStatuses(200, 200, 200, 200)}},
	"GET /readyz":  {{method: "GET", path: "/readyz", want: azStatuses(200, 200, 200, 200)}},
	"GET /livez":   {{method: "GET", path: "/livez", want: azStatuses(200, 200, 200, 200)}},
}

// azMounted are the endpoints the sweep must cover (operations.md).
var azMounted = []string{"/graphql", "GET /events", "POST /webhooks/payments", "/session", "GET /metrics", "GET /readyz", "GET /livez"}

func TestAuthorizationSweep(t *testing.T) {
	schema := graph.NewExecutableSchema(graph.Config{}).Schema()
	var served []string
	for _, def := range []struct {
		name string
		ok   bool
	}{{"Query", schema.Query != nil}, {"Mutation", schema.Mutation != nil}, {"Subscription", schema.Subscription != nil}} {
		if !def.ok {
			continue
		}
		for _, f := range schema.Types[def.name].Fields {
			if !strings.HasPrefix(f.Name, "__") {
				served = append(served, def.name+"."+f.Name)
			}
		}
	}
	for _, name := range served {
		if _, ok := azFields[name]; !ok {
			t.Errorf("%s is served but has no row in azFields: add its outcome for every caller", name)
		}
	}
	for name, row := range azFields {
		if !slices.Contains(served, name) {
			t.Errorf("azFields has %s, which the schema does not serve", name)
		}
		for _, c := range []string{azOwner, azOther, azStaff, azAnon} {
			if _, ok := row.want[c]; !ok {
				t.Errorf("%s has no outcome for %s", name, c)
			}
		}
	}
	for _, ep := range azMounted {
		if len(azEndpoints[ep]) == 0 {
			t.Errorf("endpoint %s has no row", ep)
		}
	}
	if t.Failed() {
		t.FailNow()
	}

	e := newEnv(t)
	in := e.start(nil, Options{})
	w := &azWorld{t: t, in: in, tokens: map[string]string{azAnon: ""}}
	for c, email := range azEmails {
		w.tokens[c] = in.token(email)
	}
	cells := 0

	sort.Strings(served)
	for _, name := range served {
		row := azFields[name]
		order := []string{azAnon, azOther, azOwner, azStaff} // mutations: the successes last
		if row.cached {
			order = []string{azOwner, azOwner, azOther, azStaff, azAnon} // the owner's cached screen first
		} else if strings.HasPrefix(name, "Query.") {
			order = []string{azOwner, azOther, azStaff, azAnon}
		}
		var cachedVars map[string]any
		for i, caller := range order {
			t.Run(name+"/"+caller, func(t *testing.T) {
				w.t = t // fixtures fail the cell that needs them
				vars := map[string]any{}
				switch {
				case row.cached && cachedVars != nil:
					vars = cachedVars // identical arguments
				case row.vars != nil:
					vars = row.vars(w, caller)
				}
				if row.cached && cachedVars == nil {
					cachedVars = vars
				}
				var r *gqlResponse
				if strings.HasPrefix(name, "Subscription.") {
					r = w.azSubscribe(w.tokens[caller], row.query, vars)
				} else {
					var hdr []string
					if row.keyed {
						hdr = append(hdr, "Idempotency-Key: "+w.key())
					}
					r = in.post(w.tokens[caller], row.query, vars, hdr...)
				}
				cells++
				fieldName := name[strings.Index(name, ".")+1:]
				if r.Status != http.StatusOK {
					t.Fatalf("status %d: %s", r.Status, r.Raw)
				}
				value := field(r.Data, fieldName)
				switch want := row.want[caller]; want {
				case azData:
					if len(r.Errors) > 0 || value == nil {
						t.Fatalf("want data: %s", r.Raw)
					}
					if err := row.check(w, caller, vars, value); err != nil {
						t.Fatalf("%v: %s", err, r.Raw)
					}
				case azNull:
					if len(r.Errors) > 0 || value != nil {
						t.Fatalf("want null without errors: %s", r.Raw)
					}
				default:
					if r.code() != want || value != nil {
						t.Fatalf("want %s and null: %s", want, r.Raw)
					}
				}
				if row.cached && caller == azOwner && i == 1 && !strings.Contains(r.Header.Get("Cache-Status"), "hit") {
					t.Errorf("the owner's second read was not a cache hit (Cache-Status %q): the check of the others proves less", r.Header.Get("Cache-Status"))
				}
			})
		}
	}

	// HTTP endpoints.
	w.t = t
	ownerOrder, _ := w.seeded("PENDING_PAYMENT")
	secret := []byte(in.cfg.WebhookSecrets[0])
	for _, ep := range azMounted {
		for _, row := range azEndpoints[ep] {
			for _, caller := range []string{azOwner, azOther, azStaff, azAnon} {
				path := strings.NewReplacer("{owner-order}", ownerOrder, "{missing-order}", uuid.NewString()).Replace(row.path)
				t.Run(ep+"/"+row.method+" "+path+"/"+caller, func(t *testing.T) {
					body := row.body
					var hdr []string
					if row.headers != nil {
						hdr = row.headers(w)
					}
					if body == "{signed}" {
						raw := fmt.Sprintf(`{"id":"evt_authz_%s","type":"payment.succeeded","created":%d,"data":{"chargeId":"ch_1","orderId":"%s","amountCents":100,"currency":"USD","failureCode":null}}`,
							uuid.NewString(), time.Now().Unix(), uuid.NewString())
						body = raw
						hdr = append(hdr, "Webhook-Signature: "+payments.Sign(secret, time.Now(), []byte(raw)))
					}
					if body != "" {
						hdr = append(hdr, "Content-Type: application/json")
					}
					if tok := w.tokens[caller]; tok != "" {
						hdr = append(hdr, "Authorization: Bearer "+tok)
					}
					status, got := azDo(t, in.URL, row.method, path, body, hdr)
					cells++
					if status != row.want[caller] {
						t.Fatalf("status %d, want %d: %s", status, row.want[caller], got)
					}
				})
			}
		}
	}

	// Invalid credentials fail every door that reads them with 401.
	for _, door := range []string{"/graphql?query=%7B__typename%7D", "/events?stream=orders", "/metrics", "/livez"} {
		status, body := azDo(t, in.URL, "GET", door, "", []string{"Authorization: Bearer forged.token.value"})
		cells++
		if status != http.StatusUnauthorized {
			t.Errorf("GET %s with a forged token: %d %s", door, status, body)
		}
	}

	// Outside development the demo sign-in is not mounted; with METRICS_ADDR
	// the metrics leave the API port.
	cfg := e.config()
	cfg.Env = "production"
	cfg.MetricsAddr = "127.0.0.1:0"
	prod := e.start(cfg, Options{})
	for _, c := range []struct{ method, path string }{{"POST", "/session"}, {"DELETE", "/session"}, {"GET", "/metrics"}} {
		status, body := azDo(t, prod.URL, c.method, c.path, `{"email":"alice@example.com"}`, []string{"Content-Type: application/json"})
		cells++
		switch {
		case c.path == "/metrics" && !strings.Contains(body, "# HELP"): // the web app's client-side route
		case status == http.StatusNotFound, status == http.StatusMethodNotAllowed:
		default:
			t.Errorf("production %s %s: %d %s, want 404", c.method, c.path, status, body)
		}
	}
	t.Logf("authorization sweep: %d cells checked (%d GraphQL fields, %d endpoints)", cells, len(served), len(azMounted))
}

// azDo sends one request; for an event stream it reads only the status.
func azDo(t *testing.T, base, method, path, body string, headers []string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var rd *strings.Reader
	if body != "" {
		rd = strings.NewReader(body)
	} else {
		rd = strings.NewReader("")
	}
	req, err := http.NewRequestWithContext(ctx, method, base+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range headers {
		k, v, _ := strings.Cut(h, ":")
		req.Header.Set(strings.TrimSpace(k), strings.TrimSpace(v))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		line, _ := bufio.NewReader(resp.Body).ReadString('\n')
		return resp.StatusCode, line
	}
	var buf bytes.Buffer
	_, _ = buf.ReadFrom(resp.Body)
	return resp.StatusCode, buf.String()
}
