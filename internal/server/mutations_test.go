package server

// End-to-end tests of the six mutations (spec/idempotency.md,
// spec/concurrency.md, spec/errors.md) against real Postgres and Redis,
// with two instances on one database wherever concurrency is claimed.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shop/bff/internal/postgres"
)

const mutPlaceQuery = `mutation Place($in: PlaceOrderInput!) {
  placeOrder(input: $in) {
    order { id number version status paymentStatus total { cents currency }
      lines { quantity unitPrice { cents currency } total { cents } product { id price { cents } } } }
  }
}`

const mutOrderFields = `order { id version status paymentStatus trackingNumber shippingAddress { name line1 city postalCode country } updatedAt }`

var (
	mutPayQuery     = `mutation($id: ID!, $v: Int!) { payOrder(id: $id, expectedVersion: $v) { ` + mutOrderFields + ` } }`
	mutCancelQuery  = `mutation($id: ID!, $v: Int!) { cancelOrder(id: $id, expectedVersion: $v, reason: "test") { ` + mutOrderFields + ` } }`
	mutAddressQuery = `mutation($id: ID!, $v: Int!, $a: AddressInput!) { updateShippingAddress(id: $id, expectedVersion: $v, address: $a) { ` + mutOrderFields + ` } }`
	mutShipQuery    = `mutation($id: ID!, $v: Int!) { shipOrder(id: $id, expectedVersion: $v, trackingNumber: "1Z999") { ` + mutOrderFields + ` } }`
	mutDeliverQuery = `mutation($id: ID!, $v: Int!) { deliverOrder(id: $id, expectedVersion: $v) { ` + mutOrderFields + ` } }`
)

// mutActionQuery is the mutation of each action, with its field name.
var mutActionQuery = map[string][2]string{
	"PAY":                     {mutPayQuery, "payOrder"},
	"CANCEL":                  {mutCancelQuery, "cancelOrder"},
	"UPDATE_SHIPPING_ADDRESS": {mutAddressQuery, "updateShippingAddress"},
	"SHIP":                    {mutShipQuery, "shipOrder"},
	"DELIVER":                 {mutDeliverQuery, "deliverOrder"},
}

var mutAddress = map[string]any{"name": "Alice Example", "line1": "2 Side Street", "city": "Oakland", "postalCode": "94607", "country": "US"}

// mutKeys hands out unique idempotency keys.
var mutKeys struct {
	sync.Mutex
	n int
}

func mutKey() string {
	mutKeys.Lock()
	defer mutKeys.Unlock()
	mutKeys.n++
	return fmt.Sprintf("test-key-%d", mutKeys.n)
}

type mutProduct struct {
	ID    string
	Cents int64
}

// mutCatalogue returns the first n products of the catalogue from Postgres.
func mutCatalogue(t testing.TB, in *instance, n int) []mutProduct {
	t.Helper()
	rows, err := in.db().Query(context.Background(), `SELECT id::text, price_cents FROM products ORDER BY sku LIMIT $1`, n)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []mutProduct
	for rows.Next() {
		var p mutProduct
		if err := rows.Scan(&p.ID, &p.Cents); err != nil {
			t.Fatal(err)
		}
		out = append(out, p)
	}
	if len(out) < n {
		t.Fatalf("catalogue has %d products, want %d", len(out), n)
	}
	return out
}

// mutInput is a placeOrder input of the given (productId, quantity) pairs.
func mutInput(lines ...any) map[string]any {
	ls := []any{}
	for i := 0; i+1 < len(lines); i += 2 {
		ls = append(ls, map[string]any{"productId": lines[i], "quantity": lines[i+1]})
	}
	addr := map[string]any{}
	for k, v := range mutAddress {
		addr[k] = v
	}
	return map[string]any{"lines": ls, "shippingAddress": addr}
}

// mutInt runs a query returning one integer.
func mutInt(t testing.TB, in *instance, sql string, args ...any) int {
	t.Helper()
	var n int
	if err := in.db().QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

// mutUserID is the id of a seeded user.
func mutUserID(t testing.TB, in *instance, email string) string {
	t.Helper()
	u, err := in.srv.Store().UserByEmail(context.Background(), email)
	if err != nil {
		t.Fatal(err)
	}
	return u.ID
}

type mutOrderRow struct {
	ID, Status, Payment string
	Version             int
}

// mutOrderOf returns an order of the customer in status/payment, from
// Postgres.
func mutOrderOf(t testing.TB, in *instance, email, status, payment string) mutOrderRow {
	t.Helper()
	var o mutOrderRow
	err := in.db().QueryRow(context.Background(), `SELECT o.id::text, o.status, o.payment_status, o.version
		FROM orders o JOIN users u ON u.id = o.customer_id
		WHERE u.email = $1 AND o.status = $2 AND o.payment_status = $3 ORDER BY o.created_at LIMIT 1`, email, status, payment).
		Scan(&o.ID, &o.Status, &o.Payment, &o.Version)
	if err != nil {
		t.Fatalf("no %s/%s order of %s: %v", status, payment, email, err)
	}
	return o
}

// mutRow reads an order's state from Postgres.
func mutRow(t testing.TB, in *instance, id string) mutOrderRow {
	t.Helper()
	o := mutOrderRow{ID: id}
	if err := in.db().QueryRow(context.Background(), `SELECT status, payment_status, version FROM orders WHERE id = $1::uuid`, id).
		Scan(&o.Status, &o.Payment, &o.Version); err != nil {
		t.Fatal(err)
	}
	return o
}

// mutSend posts a raw JSON body; safe to call from any goroutine.
func mutSend(url, token, body string, headers ...string) (*gqlResponse, error) {
	req, err := http.NewRequest(http.MethodPost, url+"/graphql", strings.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for _, h := range headers {
		k, v, _ := strings.Cut(h, ":")
		req.Header.Set(strings.TrimSpace(k), strings.TrimSpace(v))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	out := &gqlResponse{Status: resp.StatusCode, Header: resp.Header, Raw: raw}
	var parsed struct {
		Data       map[string]any `json:"data"`
		Errors     []gqlError     `json:"errors"`
		Extensions map[string]any `json:"extensions"`
	}
	if err := json.Unmarshal(raw, &parsed); err == nil {
		out.Data, out.Errors, out.Extensions = parsed.Data, parsed.Errors, parsed.Extensions
	}
	return out, nil
}

// mutRaw posts a raw JSON body from the test goroutine.
func mutRaw(t testing.TB, in *instance, token, body string, headers ...string) *gqlResponse {
	t.Helper()
	r, err := mutSend(in.URL, token, body, headers...)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func mutBody(query string, vars map[string]any) string {
	b, _ := json.Marshal(map[string]any{"query": query, "variables": vars})
	return string(b)
}

// mutPlace places an order for token with a fresh key and returns it.
func mutPlace(t testing.TB, in *instance, token string, input map[string]any) map[string]any {
	t.Helper()
	r := in.post(token, mutPlaceQuery, map[string]any{"in": input}, "Idempotency-Key: "+mutKey())
	if r.Status != http.StatusOK || len(r.Errors) > 0 {
		t.Fatalf("placeOrder: %d %s", r.Status, r.Raw)
	}
	return field(r.Data, "placeOrder", "order").(map[string]any)
}

// mutChange runs action on order id at version v as token (with a fresh
// key: payOrder needs one, the others accept it).
func mutChange(t testing.TB, in *instance, token, action, id string, v int) *gqlResponse {
	t.Helper()
	q := mutActionQuery[action]
	vars := map[string]any{"id": id, "v": v}
	if action == "UPDATE_SHIPPING_ADDRESS" {
		vars["a"] = mutAddress
	}
	return in.post(token, q[0], vars, "Idempotency-Key: "+mutKey())
}

func mutExt(r *gqlResponse, name string) any {
	if len(r.Errors) == 0 {
		return nil
	}
	return r.Errors[0].Extensions[name]
}

func mutOrderCount(t testing.TB, in *instance, customerID string) int {
	return mutInt(t, in, `SELECT count(*) FROM orders WHERE customer_id = $1::uuid`, customerID)
}

func mutEventCount(t testing.TB, in *instance, orderID string) int {
	return mutInt(t, in, `SELECT count(*) FROM order_events WHERE order_id = $1::uuid`, orderID)
}

// ------------------------------------------------------------ idempotency

func TestPlaceOrderConcurrentKeyedAcrossInstances(t *testing.T) {
	e := newEnv(t)
	a, b := e.start(nil, Options{}), e.start(nil, Options{})
	alice := a.token("alice@example.com")
	aliceID := mutUserID(t, a, "alice@example.com")
	ps := mutCatalogue(t, a, 2)
	before := mutOrderCount(t, a, aliceID)
	body := mutBody(mutPlaceQuery, map[string]any{"in": mutInput(ps[0].ID, 2, ps[1].ID, 1)})
	const n = 20
	results := make([]*gqlResponse, n)
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		url := a.URL
		if i%2 == 1 {
			url = b.URL
		}
		wg.Add(1)
		go func(i int, url string) {
			defer wg.Done()
			<-start
			results[i], errs[i] = mutSend(url, alice, body, "Idempotency-Key: same-key-20")
		}(i, url)
	}
	close(start)
	wg.Wait()

	var first []byte
	ok, inUse := 0, 0
	for i, r := range results {
		if errs[i] != nil {
			t.Fatalf("request %d: %v", i, errs[i])
		}
		switch r.Status {
		case http.StatusOK:
			ok++
			if len(r.Errors) > 0 {
				t.Fatalf("request %d: %s", i, r.Raw)
			}
			if first == nil {
				first = r.Raw
			} else if !bytes.Equal(first, r.Raw) {
				t.Fatalf("request %d: body differs:\n%s\n%s", i, first, r.Raw)
			}
		case http.StatusConflict:
			inUse++
			if r.code() != "IDEMPOTENCY_KEY_IN_USE" || r.Header.Get("Retry-After") != "1" || mutExt(r, "retryable") != true || mutExt(r, "retryAfterSeconds") != 1.0 {
				t.Fatalf("request %d: %d Retry-After %q %s", i, r.Status, r.Header.Get("Retry-After"), r.Raw)
			}
		default:
			t.Fatalf("request %d: %d %s", i, r.Status, r.Raw)
		}
	}
	if ok == 0 {
		t.Fatalf("no request succeeded (%d in use)", inUse)
	}
	t.Logf("%d succeeded or replayed, %d IDEMPOTENCY_KEY_IN_USE", ok, inUse)
	if got := mutOrderCount(t, a, aliceID) - before; got != 1 {
		t.Fatalf("%d orders created, want 1", got)
	}
	var resp struct {
		Data struct {
			PlaceOrder struct {
				Order struct {
					ID      string
					Version int
					Lines   []any
				}
			}
		}
	}
	if err := json.Unmarshal(first, &resp); err != nil {
		t.Fatal(err)
	}
	o := resp.Data.PlaceOrder.Order
	if o.Version != 1 || len(o.Lines) != 2 {
		t.Fatalf("placed order: %s", first)
	}
	if got := mutInt(t, a, `SELECT count(*) FROM order_events WHERE order_id = $1::uuid AND type = 'ORDER_PLACED' AND version = 1`, o.ID); got != 1 || mutEventCount(t, a, o.ID) != 1 {
		t.Fatalf("%d ORDER_PLACED events (%d in all), want exactly 1", got, mutEventCount(t, a, o.ID))
	}
	if got := mutInt(t, a, `SELECT count(*) FROM idempotency_keys WHERE user_id = $1::uuid AND key = 'same-key-20'`, aliceID); got != 1 {
		t.Fatalf("%d key records", got)
	}
	// A later retry, on either instance, replays the stored response.
	for _, in := range []*instance{a, b} {
		r := mutRaw(t, in, alice, body, "Idempotency-Key: same-key-20")
		if r.Status != http.StatusOK || !bytes.Equal(r.Raw, first) || r.Header.Get("Idempotent-Replayed") != "true" {
			t.Fatalf("replay: %d replayed=%q\n%s\nwant\n%s", r.Status, r.Header.Get("Idempotent-Replayed"), r.Raw, first)
		}
	}
	if got := mutOrderCount(t, a, aliceID) - before; got != 1 {
		t.Fatalf("%d orders after the replays, want 1", got)
	}
	// Observable: the log line says idempotency=replayed, and the metrics
	// count the outcomes.
	for _, in := range []*instance{a, b} {
		if !strings.Contains(in.logs.String(), `"idempotency":"replayed"`) {
			t.Errorf("no log line with idempotency=replayed")
		}
		resp, err := http.Get(in.URL + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		m, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if v := sample(t, string(m), `bff_idempotency_outcomes_total{outcome="replay"}`); v < 1 {
			t.Errorf("metrics do not count replays:\n%s", m)
		}
	}
	if !strings.Contains(a.logs.String()+b.logs.String(), `"idempotency":"executed"`) {
		t.Errorf("no log line with idempotency=executed")
	}
	if inUse > 0 && !strings.Contains(a.logs.String()+b.logs.String(), `"idempotency":"in_use"`) {
		t.Errorf("no log line with idempotency=in_use")
	}
}

func TestIdempotencyFingerprint(t *testing.T) {
	e := newEnv(t)
	in := e.start(nil, Options{})
	alice := in.token("alice@example.com")
	aliceID := mutUserID(t, in, "alice@example.com")
	ps := mutCatalogue(t, in, 3)
	line := func(p mutProduct, q int) string {
		return fmt.Sprintf(`{"productId":%q,"quantity":%d}`, p.ID, q)
	}
	addr := `{"name":"A","line1":"1 St","city":"X","postalCode":"1","country":"US"}`
	addrReordered := `{"country":"US","postalCode":"1","city":"X","line1":"1 St","name":"A"}`
	query := `mutation Place($in: PlaceOrderInput!) { placeOrder(input: $in) { order { id version } } }`
	body := fmt.Sprintf(`{"query":%q,"operationName":"Place","variables":{"in":{"lines":[%s],"shippingAddress":%s}}}`, query, line(ps[0], 1), addr)

	first := mutRaw(t, in, alice, body, "Idempotency-Key: fp")
	if first.Status != http.StatusOK || len(first.Errors) > 0 {
		t.Fatalf("first: %d %s", first.Status, first.Raw)
	}
	count := mutOrderCount(t, in, aliceID)

	// The same request, written differently: replayed.
	same := map[string]string{
		"whitespace": fmt.Sprintf(`{"query":%q,"operationName":"Place","variables":{"in":{"lines":[%s],"shippingAddress":%s}}}`,
			"mutation   Place(\n\t$in: PlaceOrderInput!\n) {\n  placeOrder(input: $in) {\n    order { id\n version }\n  }\n}\n", line(ps[0], 1), addr),
		"comments": fmt.Sprintf(`{"query":%q,"operationName":"Place","variables":{"in":{"lines":[%s],"shippingAddress":%s}}}`,
			"# place it\nmutation Place($in: PlaceOrderInput!) { # the order\n placeOrder(input: $in) { order { id version } } }", line(ps[0], 1), addr),
		"variable order": fmt.Sprintf(`{"variables":{"in":{"shippingAddress":%s,"lines":[%s]}},"operationName":"Place","query":%q}`,
			addrReordered, `{"quantity":1,"productId":"`+ps[0].ID+`"}`, query),
	}
	for name, b := range same {
		r := mutRaw(t, in, alice, b, "Idempotency-Key: fp")
		if r.Status != http.StatusOK || !bytes.Equal(r.Raw, first.Raw) || r.Header.Get("Idempotent-Replayed") != "true" {
			t.Errorf("%s: %d replayed=%q %s", name, r.Status, r.Header.Get("Idempotent-Replayed"), r.Raw)
		}
	}

	// A different request with the key: REUSED, nothing executed.
	other := map[string]string{
		"other quantity": fmt.Sprintf(`{"query":%q,"operationName":"Place","variables":{"in":{"lines":[%s],"shippingAddress":%s}}}`, query, line(ps[0], 2), addr),
		"other product":  fmt.Sprintf(`{"query":%q,"operationName":"Place","variables":{"in":{"lines":[%s],"shippingAddress":%s}}}`, query, line(ps[1], 1), addr),
		"extra line": fmt.Sprintf(`{"query":%q,"operationName":"Place","variables":{"in":{"lines":[%s,%s],"shippingAddress":%s}}}`,
			query, line(ps[0], 1), line(ps[2], 1), addr),
		"other selection": fmt.Sprintf(`{"query":%q,"variables":{"in":{"lines":[%s],"shippingAddress":%s}}}`,
			`mutation Place($in: PlaceOrderInput!) { placeOrder(input: $in) { order { id version status } } }`, line(ps[0], 1), addr),
		"other operation name": fmt.Sprintf(`{"query":%q,"variables":{"in":{"lines":[%s],"shippingAddress":%s}}}`,
			`mutation PlaceAgain($in: PlaceOrderInput!) { placeOrder(input: $in) { order { id version } } }`, line(ps[0], 1), addr),
		"inline values": fmt.Sprintf(`{"query":%q}`,
			fmt.Sprintf(`mutation Place { placeOrder(input: {lines: [{productId: %q, quantity: 1}], shippingAddress: {name: "A", line1: "1 St", city: "X", postalCode: "1", country: "US"}}) { order { id version } } }`, ps[0].ID)),
	}
	for name, b := range other {
		r := mutRaw(t, in, alice, b, "Idempotency-Key: fp")
		if r.Status != http.StatusUnprocessableEntity || r.code() != "IDEMPOTENCY_KEY_REUSED" || mutExt(r, "retryable") != false {
			t.Errorf("%s: %d %s", name, r.Status, r.Raw)
		}
		if r.Header.Get("Idempotent-Replayed") != "" {
			t.Errorf("%s: marked replayed", name)
		}
	}
	if got := mutOrderCount(t, in, aliceID); got != count {
		t.Fatalf("%d orders after the retries, want %d", got, count)
	}
	// A different mutation under the same key is also REUSED, and does not run.
	o := mutOrderOf(t, in, "alice@example.com", "PENDING_PAYMENT", "UNPAID")
	r := in.post(alice, mutCancelQuery, map[string]any{"id": o.ID, "v": o.Version}, "Idempotency-Key: fp")
	if r.Status != http.StatusUnprocessableEntity || r.code() != "IDEMPOTENCY_KEY_REUSED" {
		t.Fatalf("cancel under a used key: %d %s", r.Status, r.Raw)
	}
	if got := mutRow(t, in, o.ID); got.Version != o.Version || got.Status != o.Status {
		t.Fatalf("the REUSED cancel changed the order: %+v", got)
	}
}

func TestIdempotencyKeysAreScopedToTheUser(t *testing.T) {
	e := newEnv(t)
	in := e.start(nil, Options{})
	alice, bob := in.token("alice@example.com"), in.token("bob@example.com")
	ps := mutCatalogue(t, in, 1)
	vars := map[string]any{"in": mutInput(ps[0].ID, 1)}
	ra := in.post(alice, mutPlaceQuery, vars, "Idempotency-Key: shared")
	rb := in.post(bob, mutPlaceQuery, vars, "Idempotency-Key: shared")
	for name, r := range map[string]*gqlResponse{"alice": ra, "bob": rb} {
		if r.Status != http.StatusOK || len(r.Errors) > 0 || r.Header.Get("Idempotent-Replayed") != "" {
			t.Fatalf("%s: %d replayed=%q %s", name, r.Status, r.Header.Get("Idempotent-Replayed"), r.Raw)
		}
	}
	ida, idb := field(ra.Data, "placeOrder", "order", "id"), field(rb.Data, "placeOrder", "order", "id")
	if ida == idb {
		t.Fatalf("alice and bob got the same order %v", ida)
	}
	if got := mutInt(t, in, `SELECT count(*) FROM orders WHERE id IN ($1::uuid, $2::uuid) AND customer_id <> $3::uuid`, ida, idb, mutUserID(t, in, "alice@example.com")); got != 1 {
		t.Fatalf("bob's order is not bob's")
	}
	// bob with a different body under the same key string is not REUSED:
	// alice's record is not his.
	r := in.post(bob, mutPlaceQuery, map[string]any{"in": mutInput(ps[0].ID, 5)}, "Idempotency-Key: shared-2")
	r2 := in.post(alice, mutPlaceQuery, map[string]any{"in": mutInput(ps[0].ID, 6)}, "Idempotency-Key: shared-2")
	if r.Status != http.StatusOK || r2.Status != http.StatusOK || len(r.Errors)+len(r2.Errors) > 0 {
		t.Fatalf("bob %d %s / alice %d %s", r.Status, r.Raw, r2.Status, r2.Raw)
	}
}

func TestIdempotencyKeyRequiredAndValid(t *testing.T) {
	e := newEnv(t)
	in := e.start(nil, Options{})
	alice := in.token("alice@example.com")
	aliceID := mutUserID(t, in, "alice@example.com")
	ps := mutCatalogue(t, in, 1)
	o := mutOrderOf(t, in, "alice@example.com", "PENDING_PAYMENT", "UNPAID")
	orders := mutOrderCount(t, in, aliceID)
	jobs := mutInt(t, in, `SELECT count(*) FROM charge_jobs`)
	place := mutBody(mutPlaceQuery, map[string]any{"in": mutInput(ps[0].ID, 1)})
	pay := mutBody(mutPayQuery, map[string]any{"id": o.ID, "v": o.Version})
	aliased := mutBody(`mutation($in: PlaceOrderInput!) { buy: placeOrder(input: $in) { order { id } } }`, map[string]any{"in": mutInput(ps[0].ID, 1)})
	fragment := mutBody(`mutation($id: ID!, $v: Int!) { ... on Mutation { payOrder(id: $id, expectedVersion: $v) { order { id } } } }`, map[string]any{"id": o.ID, "v": o.Version})

	for name, b := range map[string]string{"placeOrder": place, "payOrder": pay, "aliased placeOrder": aliased, "payOrder in a fragment": fragment} {
		r := mutRaw(t, in, alice, b)
		if r.Status != http.StatusBadRequest || r.code() != "IDEMPOTENCY_KEY_REQUIRED" || mutExt(r, "retryable") != false {
			t.Errorf("%s without a key: %d %s", name, r.Status, r.Raw)
		}
	}
	long := strings.Repeat("k", 256)
	invalid := map[string]string{
		"empty":     "",
		"256 chars": long,
		"non-ASCII": "schlüssel",
		"tab":       "a\tb",
	}
	for name, key := range invalid {
		for op, b := range map[string]string{"placeOrder": place, "payOrder": pay} {
			req, _ := http.NewRequest(http.MethodPost, in.URL+"/graphql", strings.NewReader(b))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Authorization", "Bearer "+alice)
			req.Header["Idempotency-Key"] = []string{key}
			r := in.do(req)
			if r.Status != http.StatusBadRequest || r.code() != "IDEMPOTENCY_KEY_INVALID" {
				t.Errorf("%s with a %s key: %d %s", op, name, r.Status, r.Raw)
			}
		}
	}
	// Two values of the header are invalid too.
	req, _ := http.NewRequest(http.MethodPost, in.URL+"/graphql", strings.NewReader(place))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+alice)
	req.Header["Idempotency-Key"] = []string{"k1", "k2"}
	if r := in.do(req); r.Status != http.StatusBadRequest || r.code() != "IDEMPOTENCY_KEY_INVALID" {
		t.Errorf("two keys: %d %s", r.Status, r.Raw)
	}
	// An invalid key is refused on every mutation, not only the two that need one.
	cancel := mutBody(mutCancelQuery, map[string]any{"id": o.ID, "v": o.Version})
	if r := mutRaw(t, in, alice, cancel, "Idempotency-Key: "+long); r.Status != http.StatusBadRequest || r.code() != "IDEMPOTENCY_KEY_INVALID" {
		t.Errorf("cancel with a 256-character key: %d %s", r.Status, r.Raw)
	}
	if got := mutOrderCount(t, in, aliceID); got != orders {
		t.Fatalf("orders %d -> %d: a refused request executed", orders, got)
	}
	if got := mutRow(t, in, o.ID); got != o {
		t.Fatalf("order changed: %+v -> %+v", o, got)
	}
	if got := mutInt(t, in, `SELECT count(*) FROM charge_jobs`); got != jobs {
		t.Fatalf("charge jobs %d -> %d", jobs, got)
	}
	if got := mutInt(t, in, `SELECT count(*) FROM idempotency_keys`); got != 0 {
		t.Fatalf("%d key records after refused requests", got)
	}
	// 255 printable ASCII characters, spaces and symbols included, are fine.
	max := strings.Repeat("a", 250) + " -_~!"
	if r := mutRaw(t, in, alice, place, "Idempotency-Key: "+max); r.Status != http.StatusOK || len(r.Errors) > 0 {
		t.Fatalf("255-character key: %d %s", r.Status, r.Raw)
	}
	// The key is optional on the other mutations, and ignored on queries.
	if r := mutRaw(t, in, alice, cancel); r.Status != http.StatusOK || len(r.Errors) > 0 {
		t.Fatalf("cancel without a key: %d %s", r.Status, r.Raw)
	}
	if r := in.post(alice, `{ viewer { email } }`, nil, "Idempotency-Key: "+long); r.Status != http.StatusOK || len(r.Errors) > 0 {
		t.Fatalf("query with an invalid key: %d %s", r.Status, r.Raw)
	}
}

func TestIdempotencyStoresDeterministicErrors(t *testing.T) {
	e := newEnv(t)
	in := e.start(nil, Options{})
	alice := in.token("alice@example.com")
	o := mutOrderOf(t, in, "alice@example.com", "DELIVERED", "SUCCEEDED")
	body := mutBody(mutCancelQuery, map[string]any{"id": o.ID, "v": o.Version})
	first := mutRaw(t, in, alice, body, "Idempotency-Key: bad-cancel")
	if first.code() != "INVALID_TRANSITION" {
		t.Fatalf("cancel a delivered order: %s", first.Raw)
	}
	again := mutRaw(t, in, alice, body, "Idempotency-Key: bad-cancel")
	if !bytes.Equal(again.Raw, first.Raw) || again.Header.Get("Idempotent-Replayed") != "true" || again.Status != first.Status {
		t.Fatalf("replay of a deterministic error: %d %q %s", again.Status, again.Header.Get("Idempotent-Replayed"), again.Raw)
	}
}

// ------------------------------------------------------------ versions

func TestConcurrentCancelsOneVersionAcrossInstances(t *testing.T) {
	e := newEnv(t)
	a, b := e.start(nil, Options{}), e.start(nil, Options{})
	alice, staff := a.token("alice@example.com"), b.token("staff@example.com")
	ps := mutCatalogue(t, a, 1)
	for round := 0; round < 5; round++ {
		o := mutPlace(t, a, alice, mutInput(ps[0].ID, 1))
		id := o["id"].(string)
		body := mutBody(mutCancelQuery, map[string]any{"id": id, "v": 1})
		// the customer on one instance, staff on the other, same version
		var ra, rb *gqlResponse
		var ea, eb error
		start := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(2)
		go func() { defer wg.Done(); <-start; ra, ea = mutSend(a.URL, alice, body) }()
		go func() { defer wg.Done(); <-start; rb, eb = mutSend(b.URL, staff, body, "Idempotency-Key: cancel-"+id) }()
		close(start)
		wg.Wait()
		if ea != nil || eb != nil {
			t.Fatal(ea, eb)
		}
		var won, lost *gqlResponse
		switch {
		case len(ra.Errors) == 0 && rb.code() == "CONFLICT":
			won, lost = ra, rb
		case len(rb.Errors) == 0 && ra.code() == "CONFLICT":
			won, lost = rb, ra
		default:
			t.Fatalf("round %d: want one success and one CONFLICT:\n%s\n%s", round, ra.Raw, rb.Raw)
		}
		if field(won.Data, "cancelOrder", "order", "version") != 2.0 || field(won.Data, "cancelOrder", "order", "status") != "CANCELLED" {
			t.Fatalf("winner: %s", won.Raw)
		}
		if mutExt(lost, "currentVersion") != 2.0 || mutExt(lost, "currentStatus") != "CANCELLED" || mutExt(lost, "retryable") != false {
			t.Fatalf("loser: %s", lost.Raw)
		}
		if n := mutEventCount(t, a, id); n != 2 {
			t.Fatalf("round %d: %d events, want ORDER_PLACED and one ORDER_CANCELLED", round, n)
		}
		if got := mutRow(t, a, id); got.Version != 2 || got.Status != "CANCELLED" {
			t.Fatalf("round %d: %+v", round, got)
		}
	}
}

func TestStaleVersionIsConflict(t *testing.T) {
	e := newEnv(t)
	in := e.start(nil, Options{})
	alice, staff := in.token("alice@example.com"), in.token("staff@example.com")
	pending := mutOrderOf(t, in, "alice@example.com", "PENDING_PAYMENT", "UNPAID")
	paid := mutOrderOf(t, in, "alice@example.com", "PAID", "SUCCEEDED")
	shipped := mutOrderOf(t, in, "alice@example.com", "SHIPPED", "SUCCEEDED")
	cases := []struct {
		token, action string
		o             mutOrderRow
	}{
		{alice, "PAY", pending}, {alice, "CANCEL", pending}, {alice, "UPDATE_SHIPPING_ADDRESS", pending},
		{staff, "CANCEL", paid}, {staff, "UPDATE_SHIPPING_ADDRESS", paid}, {staff, "SHIP", paid}, {staff, "DELIVER", shipped},
	}
	jobs := mutInt(t, in, `SELECT count(*) FROM charge_jobs`)
	for _, c := range cases {
		for _, v := range []int{c.o.Version - 1, c.o.Version + 1, 0} {
			events := mutEventCount(t, in, c.o.ID)
			r := mutChange(t, in, c.token, c.action, c.o.ID, v)
			if r.code() != "CONFLICT" || mutExt(r, "currentVersion") != float64(c.o.Version) || mutExt(r, "currentStatus") != c.o.Status {
				t.Errorf("%s on %s/%s at version %d (current %d): %s", c.action, c.o.Status, c.o.Payment, v, c.o.Version, r.Raw)
			}
			if field(r.Data, mutActionQuery[c.action][1]) != nil {
				t.Errorf("%s: data %v", c.action, r.Data)
			}
			if got := mutRow(t, in, c.o.ID); got != c.o {
				t.Fatalf("%s at a stale version changed the order: %+v -> %+v", c.action, c.o, got)
			}
			if got := mutEventCount(t, in, c.o.ID); got != events {
				t.Fatalf("%s at a stale version wrote an event", c.action)
			}
		}
	}
	if got := mutInt(t, in, `SELECT count(*) FROM charge_jobs`); got != jobs {
		t.Fatalf("a stale payOrder queued a charge job")
	}
}

// mutAllowed is the table of spec/concurrency.md, written out on its own:
// whether role may take action on an order in status/payment, and whether
// the role may take it at all.
func mutAllowed(role, status, payment, action string) (roleOK, ok bool) {
	switch action {
	case "PAY":
		return role == "CUSTOMER", role == "CUSTOMER" && status == "PENDING_PAYMENT" && (payment == "UNPAID" || payment == "FAILED")
	case "CANCEL":
		return true, (status == "PENDING_PAYMENT" && payment != "PROCESSING") || status == "PAID"
	case "UPDATE_SHIPPING_ADDRESS":
		return true, status == "PENDING_PAYMENT" || status == "PAID"
	case "SHIP":
		return role == "STAFF", role == "STAFF" && status == "PAID"
	case "DELIVER":
		return role == "STAFF", role == "STAFF" && status == "SHIPPED"
	}
	return false, false
}

func TestEveryIllegalTransition(t *testing.T) {
	e := newEnv(t)
	in := e.start(nil, Options{})
	tokens := map[string]string{"CUSTOMER": in.token("alice@example.com"), "STAFF": in.token("staff@example.com")}
	// One of alice's orders in every state the seed has, plus PROCESSING.
	processing := mutOrderOf(t, in, "alice@example.com", "PENDING_PAYMENT", "FAILED")
	if r := mutChange(t, in, tokens["CUSTOMER"], "PAY", processing.ID, processing.Version); len(r.Errors) > 0 {
		t.Fatalf("pay: %s", r.Raw)
	}
	states := [][2]string{
		{"PENDING_PAYMENT", "UNPAID"}, {"PENDING_PAYMENT", "PROCESSING"}, {"PAID", "SUCCEEDED"},
		{"SHIPPED", "SUCCEEDED"}, {"DELIVERED", "SUCCEEDED"}, {"CANCELLED", "UNPAID"}, {"CANCELLED", "REFUNDED"},
	}
	actions := []string{"PAY", "CANCEL", "UPDATE_SHIPPING_ADDRESS", "SHIP", "DELIVER"}
	screen := `query($id: ID!) { orderScreen(id: $id) { availableActions } }`
	illegal, forbidden := 0, 0
	for _, st := range states {
		o := mutOrderOf(t, in, "alice@example.com", st[0], st[1])
		for _, role := range []string{"CUSTOMER", "STAFF"} {
			var want []string
			for _, a := range actions {
				if _, ok := mutAllowed(role, st[0], st[1], a); ok {
					want = append(want, a)
				}
			}
			sr := in.post(tokens[role], screen, map[string]any{"id": o.ID}, "Cache-Control: no-cache")
			var avail []string
			for _, a := range field(sr.Data, "orderScreen", "availableActions").([]any) {
				avail = append(avail, a.(string))
			}
			if !reflect.DeepEqual(avail, want) {
				t.Errorf("%s %s/%s: availableActions %v, want %v", role, st[0], st[1], avail, want)
			}
			for _, a := range actions {
				roleOK, ok := mutAllowed(role, st[0], st[1], a)
				if ok {
					continue
				}
				r := mutChange(t, in, tokens[role], a, o.ID, o.Version)
				name := fmt.Sprintf("%s %s on %s/%s", role, a, st[0], st[1])
				if !roleOK {
					forbidden++
					if r.code() != "FORBIDDEN" {
						t.Errorf("%s: %s", name, r.Raw)
					}
					continue
				}
				illegal++
				got := []string{}
				if aa, _ := mutExt(r, "allowedActions").([]any); aa != nil {
					for _, x := range aa {
						got = append(got, x.(string))
					}
				}
				if want == nil {
					want = []string{}
				}
				if r.code() != "INVALID_TRANSITION" || mutExt(r, "currentStatus") != st[0] || !reflect.DeepEqual(got, want) || mutExt(r, "retryable") != false {
					t.Errorf("%s: %s (want allowedActions %v)", name, r.Raw, want)
				}
				if got := mutRow(t, in, o.ID); got != o {
					t.Fatalf("%s changed the order: %+v", name, got)
				}
			}
		}
	}
	t.Logf("%d INVALID_TRANSITION and %d FORBIDDEN cells checked", illegal, forbidden)
}

func TestChecksInTheOrderOfTheSpec(t *testing.T) {
	e := newEnv(t)
	in := e.start(nil, Options{})
	alice, bob, staff := in.token("alice@example.com"), in.token("bob@example.com"), in.token("staff@example.com")
	paid := mutOrderOf(t, in, "alice@example.com", "PAID", "SUCCEEDED")
	shipped := mutOrderOf(t, in, "alice@example.com", "SHIPPED", "SUCCEEDED")
	delivered := mutOrderOf(t, in, "alice@example.com", "DELIVERED", "SUCCEEDED")
	pending := mutOrderOf(t, in, "alice@example.com", "PENDING_PAYMENT", "UNPAID")
	cases := []struct {
		name, token, action, id string
		v                       int
		want                    string
	}{
		// NOT_FOUND first: another customer's order, whatever else is wrong.
		{"bob ships alice's order", bob, "SHIP", paid.ID, paid.Version, "NOT_FOUND"},
		{"bob delivers alice's order at a stale version", bob, "DELIVER", shipped.ID, 99, "NOT_FOUND"},
		{"bob cancels alice's order at a stale version", bob, "CANCEL", delivered.ID, 99, "NOT_FOUND"},
		{"bob pays alice's order", bob, "PAY", pending.ID, pending.Version, "NOT_FOUND"},
		{"bob updates alice's address", bob, "UPDATE_SHIPPING_ADDRESS", pending.ID, pending.Version, "NOT_FOUND"},
		{"an order that does not exist", alice, "CANCEL", "00000000-0000-4000-8000-000000000000", 1, "NOT_FOUND"},
		{"a malformed id", alice, "CANCEL", "not-an-id", 1, "NOT_FOUND"},
		{"a malformed id, staff", staff, "SHIP", "A-10001", 1, "NOT_FOUND"},
		// then FORBIDDEN: the role may never do it, even at a stale version.
		{"alice ships her order", alice, "SHIP", paid.ID, paid.Version, "FORBIDDEN"},
		{"alice delivers her order", alice, "DELIVER", shipped.ID, shipped.Version, "FORBIDDEN"},
		{"alice ships her order at a stale version", alice, "SHIP", paid.ID, 99, "FORBIDDEN"},
		{"alice delivers a delivered order at a stale version", alice, "DELIVER", delivered.ID, 99, "FORBIDDEN"},
		{"staff pays alice's order", staff, "PAY", pending.ID, pending.Version, "FORBIDDEN"},
		// then CONFLICT, before INVALID_TRANSITION.
		{"alice cancels a delivered order at a stale version", alice, "CANCEL", delivered.ID, delivered.Version - 1, "CONFLICT"},
		{"staff ships a shipped order at a stale version", staff, "SHIP", shipped.ID, shipped.Version + 1, "CONFLICT"},
		{"alice cancels a delivered order", alice, "CANCEL", delivered.ID, delivered.Version, "INVALID_TRANSITION"},
		{"staff ships a shipped order", staff, "SHIP", shipped.ID, shipped.Version, "INVALID_TRANSITION"},
	}
	for _, c := range cases {
		r := mutChange(t, in, c.token, c.action, c.id, c.v)
		if r.code() != c.want || r.Status != http.StatusOK {
			t.Errorf("%s: %d %s, want %s", c.name, r.Status, r.Raw, c.want)
		}
		if c.want == "NOT_FOUND" && strings.Contains(string(r.Raw), "currentStatus") {
			t.Errorf("%s: NOT_FOUND leaks the state: %s", c.name, r.Raw)
		}
	}
	for _, o := range []mutOrderRow{paid, shipped, delivered, pending} {
		if got := mutRow(t, in, o.ID); got != o {
			t.Fatalf("order changed: %+v -> %+v", o, got)
		}
	}
	// Placing orders is for customers.
	ps := mutCatalogue(t, in, 1)
	r := in.post(staff, mutPlaceQuery, map[string]any{"in": mutInput(ps[0].ID, 1)}, "Idempotency-Key: staff-order")
	if r.code() != "FORBIDDEN" {
		t.Fatalf("staff placeOrder: %s", r.Raw)
	}
	// Anonymous mutations fail with UNAUTHENTICATED.
	r = in.post("", mutCancelQuery, map[string]any{"id": pending.ID, "v": pending.Version})
	if r.code() != "UNAUTHENTICATED" {
		t.Fatalf("anonymous cancel: %s", r.Raw)
	}
}

// ------------------------------------------------------------ effects

func TestEveryChangeIncrementsTheVersionWithOneEvent(t *testing.T) {
	e := newEnv(t)
	a, b := e.start(nil, Options{}), e.start(nil, Options{})
	alice, staff := a.token("alice@example.com"), b.token("staff@example.com")
	ps := mutCatalogue(t, a, 2)
	o := mutPlace(t, a, alice, mutInput(ps[0].ID, 3, ps[1].ID, 1))
	id := o["id"].(string)
	total := int(ps[0].Cents*3 + ps[1].Cents)
	steps := []struct {
		in       *instance
		token    string
		action   string
		event    string
		from, to string
		payment  string
	}{
		{a, alice, "UPDATE_SHIPPING_ADDRESS", "SHIPPING_ADDRESS_UPDATED", "PENDING_PAYMENT", "PENDING_PAYMENT", "UNPAID"},
		{a, alice, "PAY", "PAYMENT_REQUESTED", "PENDING_PAYMENT", "PENDING_PAYMENT", "PROCESSING"},
	}
	version := 1
	for _, s := range steps {
		r := mutChange(t, s.in, s.token, s.action, id, version)
		if len(r.Errors) > 0 {
			t.Fatalf("%s: %s", s.action, r.Raw)
		}
		version++
		mutCheckChange(t, a, r, id, s.action, s.event, s.from, s.to, s.payment, version)
	}
	// PAY queued exactly one charge job, for the order's total, in its transaction.
	var jobs, amount, attempt int
	if err := a.db().QueryRow(context.Background(), `SELECT count(*), max(amount_cents), max(attempt) FROM charge_jobs WHERE order_id = $1::uuid`, id).
		Scan(&jobs, &amount, &attempt); err != nil {
		t.Fatal(err)
	}
	if jobs != 1 || amount != total || attempt != 1 {
		t.Fatalf("charge jobs: %d, amount %d (want %d), attempt %d", jobs, amount, total, attempt)
	}
	// The provider's result moves it to PAID (version +1, one event), then staff ship and deliver.
	if _, applied, err := a.srv.Store().ApplyPaymentResult(context.Background(), paymentResult(id, total)); err != nil || !applied {
		t.Fatalf("payment result: %v %v", applied, err)
	}
	version++
	if got := mutRow(t, a, id); got.Version != version || got.Status != "PAID" {
		t.Fatalf("after the payment: %+v", got)
	}
	// The client still holds the version it saw before the webhook: CONFLICT, not a lost update.
	if r := mutChange(t, a, alice, "UPDATE_SHIPPING_ADDRESS", id, version-1); r.code() != "CONFLICT" ||
		mutExt(r, "currentVersion") != float64(version) || mutExt(r, "currentStatus") != "PAID" {
		t.Fatalf("a change at the version before the webhook: %s", r.Raw)
	}
	for _, s := range []struct {
		action, event, from, to string
	}{
		{"UPDATE_SHIPPING_ADDRESS", "SHIPPING_ADDRESS_UPDATED", "PAID", "PAID"},
		{"SHIP", "ORDER_SHIPPED", "PAID", "SHIPPED"},
		{"DELIVER", "ORDER_DELIVERED", "SHIPPED", "DELIVERED"},
	} {
		r := mutChange(t, b, staff, s.action, id, version)
		if len(r.Errors) > 0 {
			t.Fatalf("%s: %s", s.action, r.Raw)
		}
		version++
		mutCheckChange(t, a, r, id, s.action, s.event, s.from, s.to, "SUCCEEDED", version)
	}
	if got := field(mutChange(t, b, staff, "DELIVER", id, version).Data, "deliverOrder"); got != nil {
		t.Fatalf("delivered twice")
	}
	// The timeline has one event per version, 1..version.
	rows, err := a.db().Query(context.Background(), `SELECT version FROM order_events WHERE order_id = $1::uuid ORDER BY position`, id)
	if err != nil {
		t.Fatal(err)
	}
	var versions []int
	for rows.Next() {
		var v int
		_ = rows.Scan(&v)
		versions = append(versions, v)
	}
	rows.Close()
	for i, v := range versions {
		if v != i+1 {
			t.Fatalf("event versions %v", versions)
		}
	}
	if len(versions) != version {
		t.Fatalf("event versions %v, order at %d", versions, version)
	}

	// Cancelling a paid order refunds it: one event, version +1.
	o2 := mutPlace(t, a, alice, mutInput(ps[0].ID, 1))
	id2 := o2["id"].(string)
	if r := mutChange(t, a, alice, "PAY", id2, 1); len(r.Errors) > 0 {
		t.Fatal(string(r.Raw))
	}
	if _, _, err := a.srv.Store().ApplyPaymentResult(context.Background(), paymentResult(id2, int(ps[0].Cents))); err != nil {
		t.Fatal(err)
	}
	r := mutChange(t, a, alice, "CANCEL", id2, 3)
	if len(r.Errors) > 0 {
		t.Fatal(string(r.Raw))
	}
	mutCheckChange(t, a, r, id2, "CANCEL", "ORDER_CANCELLED", "PAID", "CANCELLED", "REFUNDED", 4)
}

// A keyed change makes three round trips to Postgres: the key's claim; the
// order's locking read with its lines and customer; the update, the key
// record, the event and the COMMIT.
func TestKeyedChangeRoundTrips(t *testing.T) {
	e := newEnv(t)
	in := e.start(nil, Options{})
	alice := in.token("alice@example.com")
	ps := mutCatalogue(t, in, 1)
	id := mutPlace(t, in, alice, mutInput(ps[0].ID, 1))["id"].(string)
	for v, action := range []string{"UPDATE_SHIPPING_ADDRESS", "PAY"} {
		var r *gqlResponse
		got := in.costOf(func() { r = mutChange(t, in, alice, action, id, v+1) })
		if len(r.Errors) > 0 {
			t.Fatalf("%s: %s", action, r.Raw)
		}
		if got.RoundTrips != 3 {
			t.Errorf("%s: %d round trips (%d statements), want 3", action, got.RoundTrips, got.Statements)
		}
	}
}

var paymentEvents struct {
	sync.Mutex
	n int
}

func paymentResult(orderID string, cents int) postgres.PaymentResult {
	paymentEvents.Lock()
	defer paymentEvents.Unlock()
	paymentEvents.n++
	return postgres.PaymentResult{EventID: fmt.Sprintf("evt_test_%d", paymentEvents.n), Type: "payment.succeeded",
		OrderID: orderID, ChargeID: "ch_test", AmountCents: int64(cents), Currency: "USD", Succeeded: true}
}

// mutCheckChange checks the response and the database after one committed
// change: the new version, and exactly one event carrying it.
func mutCheckChange(t testing.TB, in *instance, r *gqlResponse, id, action, event, from, to, payment string, version int) {
	t.Helper()
	f := mutActionQuery[action][1]
	if got := field(r.Data, f, "order", "version"); got != float64(version) {
		t.Fatalf("%s: version %v, want %d: %s", action, got, version, r.Raw)
	}
	if got := field(r.Data, f, "order", "status"); got != to {
		t.Fatalf("%s: status %v, want %s", action, got, to)
	}
	if got := field(r.Data, f, "order", "paymentStatus"); got != payment {
		t.Fatalf("%s: paymentStatus %v, want %s", action, got, payment)
	}
	if got := mutRow(t, in, id); got.Version != version || got.Status != to || got.Payment != payment {
		t.Fatalf("%s: row %+v", action, got)
	}
	// The response shows the row as the change wrote it.
	var tracking *string
	var city, country string
	var updated time.Time
	if err := in.db().QueryRow(context.Background(), `SELECT tracking_number, ship_city, ship_country, updated_at FROM orders WHERE id = $1::uuid`, id).
		Scan(&tracking, &city, &country, &updated); err != nil {
		t.Fatal(err)
	}
	shown, err := time.Parse(time.RFC3339Nano, field(r.Data, f, "order", "updatedAt").(string))
	if err != nil || !shown.Equal(updated) {
		t.Fatalf("%s: updatedAt %v (%v), the row's %v", action, shown, err, updated)
	}
	if got := field(r.Data, f, "order", "trackingNumber"); (tracking == nil) != (got == nil) || tracking != nil && got != *tracking {
		t.Fatalf("%s: trackingNumber %v, the row's %v", action, got, tracking)
	}
	if c, k := field(r.Data, f, "order", "shippingAddress", "city"), field(r.Data, f, "order", "shippingAddress", "country"); c != city || k != country {
		t.Fatalf("%s: shipping city %v %v, the row's %s %s", action, c, k, city, country)
	}
	var n int
	var typ, fromS, toS string
	err = in.db().QueryRow(context.Background(), `SELECT count(*) OVER (), type, coalesce(from_status, ''), to_status
		FROM order_events WHERE order_id = $1::uuid AND version = $2`, id, version).Scan(&n, &typ, &fromS, &toS)
	if err != nil || n != 1 || typ != event || fromS != from || toS != to {
		t.Fatalf("%s: %d events at version %d: %s %s->%s (%v), want %s %s->%s", action, n, version, typ, fromS, toS, err, event, from, to)
	}
	if got := mutInt(t, in, `SELECT count(*) FROM order_events WHERE order_id = $1::uuid AND version > $2`, id, version); got != 0 {
		t.Fatalf("%s: events beyond the version", action)
	}
}

func TestPricesComeFromTheCatalogue(t *testing.T) {
	e := newEnv(t)
	in := e.start(nil, Options{})
	alice := in.token("alice@example.com")
	ps := mutCatalogue(t, in, 3)
	o := mutPlace(t, in, alice, mutInput(ps[0].ID, 2, ps[1].ID, 1, ps[2].ID, 99))
	want := ps[0].Cents*2 + ps[1].Cents + ps[2].Cents*99
	if got := field(o, "total", "cents"); got != float64(want) {
		t.Fatalf("total %v, want %d", got, want)
	}
	if field(o, "total", "currency") != "USD" || o["version"] != 1.0 || o["status"] != "PENDING_PAYMENT" || o["paymentStatus"] != "UNPAID" {
		t.Fatalf("order %v", o)
	}
	lines, _ := o["lines"].([]any)
	if len(lines) != 3 {
		t.Fatalf("the response has %d lines: %v", len(lines), o)
	}
	for i, q := range []int64{2, 1, 99} {
		l := lines[i]
		if field(l, "product", "id") != ps[i].ID || field(l, "quantity") != float64(q) ||
			field(l, "unitPrice", "cents") != float64(ps[i].Cents) || field(l, "total", "cents") != float64(ps[i].Cents*q) {
			t.Fatalf("line %d: %v", i, l)
		}
	}
	id := o["id"].(string)
	if got := mutInt(t, in, `SELECT total_cents FROM orders WHERE id = $1::uuid`, id); got != int(want) {
		t.Fatalf("stored total %d", got)
	}
	if got := mutInt(t, in, `SELECT sum(unit_price_cents * quantity) FROM order_lines l JOIN products p ON p.id = l.product_id
		WHERE l.order_id = $1::uuid AND l.unit_price_cents = p.price_cents`, id); got != int(want) {
		t.Fatalf("stored lines sum to %d", got)
	}
	// The client cannot send a price: the input type has no such field.
	in2 := mutInput(ps[0].ID, 1)
	in2["lines"].([]any)[0].(map[string]any)["unitPrice"] = 1
	in2["total"] = map[string]any{"cents": 1}
	r := in.post(alice, mutPlaceQuery, map[string]any{"in": in2}, "Idempotency-Key: "+mutKey())
	if len(r.Errors) == 0 || field(r.Data, "placeOrder") != nil {
		t.Fatalf("a client price was accepted: %s", r.Raw)
	}
	// The order reads back the same through the query API.
	q := in.post(alice, `query($id: ID!) { order(id: $id) { total { cents } lines { unitPrice { cents } } } }`, map[string]any{"id": id})
	if field(q.Data, "order", "total", "cents") != float64(want) {
		t.Fatalf("order query: %s", q.Raw)
	}
}

func TestPlaceOrderValidation(t *testing.T) {
	e := newEnv(t)
	in := e.start(nil, Options{})
	alice := in.token("alice@example.com")
	aliceID := mutUserID(t, in, "alice@example.com")
	ps := mutCatalogue(t, in, 42)
	before := mutOrderCount(t, in, aliceID)
	many := func(n int) map[string]any {
		var args []any
		for i := 0; i < n; i++ {
			args = append(args, ps[i%len(ps)].ID, 1)
		}
		return mutInput(args...)
	}
	withAddr := func(k string, v any) map[string]any {
		x := mutInput(ps[0].ID, 1)
		x["shippingAddress"].(map[string]any)[k] = v
		return x
	}
	withCurrency := func(c string) map[string]any {
		x := mutInput(ps[0].ID, 1)
		x["currency"] = c
		return x
	}
	// 51 distinct lines are needed to test the count, not the duplicate rule.
	fiftyOne := many(42)
	for i := 0; i < 9; i++ {
		fiftyOne["lines"] = append(fiftyOne["lines"].([]any), map[string]any{"productId": fmt.Sprintf("00000000-0000-4000-8000-%012d", i), "quantity": 1})
	}
	cases := []struct {
		name       string
		input      map[string]any
		field      string
		constraint string
		min, max   any
	}{
		{"no lines", mutInput(), "input.lines", "range", 1.0, 50.0},
		{"51 lines", fiftyOne, "input.lines", "range", 1.0, 50.0},
		{"quantity 0", mutInput(ps[0].ID, 1, ps[1].ID, 0), "input.lines[1].quantity", "range", 1.0, 99.0},
		{"quantity 100", mutInput(ps[0].ID, 100), "input.lines[0].quantity", "range", 1.0, 99.0},
		{"negative quantity", mutInput(ps[0].ID, -1), "input.lines[0].quantity", "range", 1.0, 99.0},
		{"unknown product (uuid)", mutInput(ps[0].ID, 1, "00000000-0000-4000-8000-000000000000", 1), "input.lines[1].productId", "unknown", nil, nil},
		{"unknown product (not a uuid)", mutInput("SKU-001", 1), "input.lines[0].productId", "unknown", nil, nil},
		{"empty product id", mutInput("", 1), "input.lines[0].productId", "required", nil, nil},
		{"duplicate product", mutInput(ps[0].ID, 1, ps[1].ID, 1, ps[0].ID, 2), "input.lines[2].productId", "duplicate", nil, nil},
		{"duplicate product, other case", mutInput(ps[0].ID, 1, strings.ToUpper(ps[0].ID), 2), "input.lines[1].productId", "duplicate", nil, nil},
		{"empty name", withAddr("name", ""), "input.shippingAddress.name", "required", nil, nil},
		{"blank line1", withAddr("line1", "   "), "input.shippingAddress.line1", "required", nil, nil},
		{"empty city", withAddr("city", ""), "input.shippingAddress.city", "required", nil, nil},
		{"empty postal code", withAddr("postalCode", ""), "input.shippingAddress.postalCode", "required", nil, nil},
		{"empty country", withAddr("country", ""), "input.shippingAddress.country", "required", nil, nil},
		{"long name", withAddr("name", strings.Repeat("n", 201)), "input.shippingAddress.name", "length", nil, 200.0},
		{"NUL in the name", withAddr("name", "A\x00B"), "input.shippingAddress.name", "format", nil, nil},
		{"line break in line2", withAddr("line2", "Apt 4\nrear"), "input.shippingAddress.line2", "format", nil, nil},
		{"bad country", withAddr("country", "XX"), "input.shippingAddress.country", "format", nil, nil},
		{"three-letter country", withAddr("country", "USA"), "input.shippingAddress.country", "format", nil, nil},
		{"bad currency", withCurrency("DOLLARS"), "input.currency", "format", nil, nil},
		{"currency not in the catalogue", withCurrency("EUR"), "input.currency", "unknown", nil, nil},
	}
	for _, c := range cases {
		r := in.post(alice, mutPlaceQuery, map[string]any{"in": c.input}, "Idempotency-Key: "+mutKey())
		ext := map[string]any{}
		if len(r.Errors) > 0 {
			ext = r.Errors[0].Extensions
		}
		if r.code() != "BAD_USER_INPUT" || ext["field"] != c.field || ext["constraint"] != c.constraint || ext["retryable"] != false {
			t.Errorf("%s: %d %s, want field %s constraint %s", c.name, r.Status, r.Raw, c.field, c.constraint)
			continue
		}
		if c.min != nil && ext["min"] != c.min || c.max != nil && ext["max"] != c.max {
			t.Errorf("%s: min/max %v/%v, want %v/%v", c.name, ext["min"], ext["max"], c.min, c.max)
		}
		if field(r.Data, "placeOrder") != nil {
			t.Errorf("%s: data %v", c.name, r.Data)
		}
	}
	if got := mutOrderCount(t, in, aliceID); got != before {
		t.Fatalf("invalid requests created %d orders", got-before)
	}
	// Many lines, lower-case country and currency, and an upper-case
	// product id are all accepted (and normalized).
	o := mutPlace(t, in, alice, many(42))
	if l, _ := o["lines"].([]any); len(l) != 42 {
		t.Fatalf("42 lines: got %d", len(l))
	}
	low := withAddr("country", "us")
	low["currency"] = "usd"
	low["lines"] = []any{map[string]any{"productId": strings.ToUpper(ps[0].ID), "quantity": 1}}
	o = mutPlace(t, in, alice, low)
	if field(o, "total", "currency") != "USD" || field(o, "lines", 0, "product", "id") != ps[0].ID {
		t.Fatalf("normalized order: %v", o)
	}

	// updateShippingAddress validates with its own path.
	p := mutOrderOf(t, in, "alice@example.com", "PENDING_PAYMENT", "UNPAID")
	bad := map[string]any{}
	for k, v := range mutAddress {
		bad[k] = v
	}
	bad["country"] = "ZZ"
	r := in.post(alice, mutAddressQuery, map[string]any{"id": p.ID, "v": p.Version, "a": bad})
	if r.code() != "BAD_USER_INPUT" || mutExt(r, "field") != "address.country" || mutExt(r, "constraint") != "format" {
		t.Fatalf("updateShippingAddress with a bad country: %s", r.Raw)
	}
	if got := mutRow(t, in, p.ID); got != p {
		t.Fatalf("order changed")
	}

	// shipOrder validates the tracking number (a NUL is not storable).
	paid := mutOrderOf(t, in, "alice@example.com", "PAID", "SUCCEEDED")
	ship := `mutation($id: ID!, $v: Int!, $t: String!) { shipOrder(id: $id, expectedVersion: $v, trackingNumber: $t) { order { id } } }`
	staff := in.token("staff@example.com")
	for tracking, constraint := range map[string]string{"1Z\x00": "format", "  ": "required", strings.Repeat("9", 65): "length"} {
		r := in.post(staff, ship, map[string]any{"id": paid.ID, "v": paid.Version, "t": tracking})
		if r.code() != "BAD_USER_INPUT" || mutExt(r, "field") != "trackingNumber" || mutExt(r, "constraint") != constraint {
			t.Errorf("tracking number %q: %s", tracking, r.Raw)
		}
	}
	if got := mutRow(t, in, paid.ID); got != paid {
		t.Fatalf("order changed")
	}
}

// TestPlaceOrderFiftyLines checks the upper bound with 50 distinct
// products: the seeded catalogue has 42, so eight more are added.
func TestPlaceOrderFiftyLines(t *testing.T) {
	e := newEnv(t)
	in := e.start(nil, Options{})
	alice := in.token("alice@example.com")
	for i := 0; i < 8; i++ {
		if _, err := in.db().Exec(context.Background(), `INSERT INTO products (sku, name, price_cents, currency) VALUES ($1, $2, 100, 'USD')`,
			fmt.Sprintf("SKU-X%02d", i), "Extra"); err != nil {
			t.Fatal(err)
		}
	}
	ps := mutCatalogue(t, in, 50)
	var args []any
	var want int64
	for _, p := range ps {
		args = append(args, p.ID, 1)
		want += p.Cents
	}
	o := mutPlace(t, in, alice, mutInput(args...))
	if l, _ := o["lines"].([]any); len(l) != 50 || field(o, "total", "cents") != float64(want) {
		t.Fatalf("50 lines: %d lines, total %v (want %d)", len(l), field(o, "total", "cents"), want)
	}
}

// ------------------------------------------------------------ retention

func TestExpiredKeysAreReapedAndReusable(t *testing.T) {
	e := newEnv(t)
	in := e.start(nil, Options{})
	alice := in.token("alice@example.com")
	aliceID := mutUserID(t, in, "alice@example.com")
	ps := mutCatalogue(t, in, 1)
	vars := map[string]any{"in": mutInput(ps[0].ID, 1)}
	first := in.post(alice, mutPlaceQuery, vars, "Idempotency-Key: old")
	if len(first.Errors) > 0 {
		t.Fatal(string(first.Raw))
	}
	pool := in.db()
	ctx := context.Background()
	// The record expires: the key is new again even before the reaper runs.
	if _, err := pool.Exec(ctx, `UPDATE idempotency_keys SET expires_at = now() - interval '1 second' WHERE key = 'old'`); err != nil {
		t.Fatal(err)
	}
	before := mutOrderCount(t, in, aliceID)
	again := in.post(alice, mutPlaceQuery, vars, "Idempotency-Key: old")
	if len(again.Errors) > 0 || again.Header.Get("Idempotent-Replayed") != "" ||
		field(again.Data, "placeOrder", "order", "id") == field(first.Data, "placeOrder", "order", "id") {
		t.Fatalf("expired key replayed: %s", again.Raw)
	}
	if mutOrderCount(t, in, aliceID) != before+1 {
		t.Fatal("expired key did not execute anew")
	}
	// The fresh record lives again and replays.
	if r := in.post(alice, mutPlaceQuery, vars, "Idempotency-Key: old"); r.Header.Get("Idempotent-Replayed") != "true" || !bytes.Equal(r.Raw, again.Raw) {
		t.Fatalf("renewed key: %s", r.Raw)
	}
	// A different body under an expired key is not REUSED either.
	if _, err := pool.Exec(ctx, `UPDATE idempotency_keys SET expires_at = now() - interval '1 second' WHERE key = 'old'`); err != nil {
		t.Fatal(err)
	}
	if r := in.post(alice, mutPlaceQuery, map[string]any{"in": mutInput(ps[0].ID, 7)}, "Idempotency-Key: old"); len(r.Errors) > 0 {
		t.Fatalf("expired key with another body: %s", r.Raw)
	}
	// The reaper deletes expired records in batches and keeps live ones.
	if _, err := pool.Exec(ctx, `INSERT INTO idempotency_keys (user_id, key, fingerprint, status, body, expires_at)
		SELECT $1::uuid, 'expired-' || g, '\x00', 200, '{}', now() - interval '1 hour' FROM generate_series(1, 1200) g`, aliceID); err != nil {
		t.Fatal(err)
	}
	live := mutInt(t, in, `SELECT count(*) FROM idempotency_keys WHERE expires_at > now()`)
	n, err := in.srv.Store().DeleteExpiredKeys(ctx, 500)
	if err != nil || n != 500 {
		t.Fatalf("one batch deleted %d (%v), want 500", n, err)
	}
	for {
		n, err := in.srv.Store().DeleteExpiredKeys(ctx, 500)
		if err != nil {
			t.Fatal(err)
		}
		if n < 500 {
			break
		}
	}
	if got := mutInt(t, in, `SELECT count(*) FROM idempotency_keys WHERE expires_at <= now()`); got != 0 {
		t.Fatalf("%d expired records left", got)
	}
	if got := mutInt(t, in, `SELECT count(*) FROM idempotency_keys`); got != live {
		t.Fatalf("%d records left, want the %d live ones", got, live)
	}
}

// ------------------------------------------------------------ benchmarks

// BenchmarkPlaceOrderKeyed places one order per iteration, each with a
// fresh Idempotency-Key: the full keyed path (advisory lock, record
// lookup, order, event, stored response, commit).
func BenchmarkPlaceOrderKeyed(b *testing.B) {
	e := newEnv(b)
	in := e.start(nil, Options{})
	alice := in.token("alice@example.com")
	ps := mutCatalogue(b, in, 2)
	body := mutBody(mutPlaceQuery, map[string]any{"in": mutInput(ps[0].ID, 1, ps[1].ID, 2)})
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r, err := mutSend(in.URL, alice, body, fmt.Sprintf("Idempotency-Key: bench-%d", i))
		if err != nil || r.Status != http.StatusOK || len(r.Errors) > 0 {
			b.Fatalf("%v %s", err, r.Raw)
		}
	}
}

// BenchmarkPlaceOrderReplay replays one stored placeOrder response.
func BenchmarkPlaceOrderReplay(b *testing.B) {
	e := newEnv(b)
	in := e.start(nil, Options{})
	alice := in.token("alice@example.com")
	ps := mutCatalogue(b, in, 2)
	body := mutBody(mutPlaceQuery, map[string]any{"in": mutInput(ps[0].ID, 1, ps[1].ID, 2)})
	if r, err := mutSend(in.URL, alice, body, "Idempotency-Key: bench-replay"); err != nil || len(r.Errors) > 0 {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r, err := mutSend(in.URL, alice, body, "Idempotency-Key: bench-replay")
		if err != nil || r.Header.Get("Idempotent-Replayed") != "true" {
			b.Fatalf("%v %s", err, r.Raw)
		}
	}
}

// benchAddress runs updateShippingAddress on one order, keyed or not.
// placeOrder cannot run without a key, so the keyed/unkeyed comparison
// of the mutation path uses this mutation.
func benchAddress(b *testing.B, keyed bool) {
	e := newEnv(b)
	in := e.start(nil, Options{})
	alice := in.token("alice@example.com")
	o := mutOrderOf(b, in, "alice@example.com", "PENDING_PAYMENT", "UNPAID")
	v := o.Version
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		body := mutBody(mutAddressQuery, map[string]any{"id": o.ID, "v": v, "a": mutAddress})
		var headers []string
		if keyed {
			headers = append(headers, fmt.Sprintf("Idempotency-Key: bench-addr-%d", i))
		}
		r, err := mutSend(in.URL, alice, body, headers...)
		if err != nil || len(r.Errors) > 0 {
			b.Fatalf("%v %s", err, r.Raw)
		}
		v++
	}
}

// BenchmarkPlaceOrderUnkeyed is the unkeyed baseline of the mutation
// path (updateShippingAddress without a key; see benchAddress).
func BenchmarkPlaceOrderUnkeyed(b *testing.B) { benchAddress(b, false) }

// BenchmarkPlaceOrderKeyedAddress is the keyed twin of
// BenchmarkPlaceOrderUnkeyed: the same mutation with a fresh key each time.
func BenchmarkPlaceOrderKeyedAddress(b *testing.B) { benchAddress(b, true) }

// BenchmarkPlaceOrderKeyedVsUnkeyed alternates keyed and unkeyed
// updateShippingAddress calls on one order, so that both see the same
// machine load, and reports the mean of each and their ratio
// (keyed-ns/op ÷ unkeyed-ns/op) as custom metrics.
func BenchmarkPlaceOrderKeyedVsUnkeyed(b *testing.B) {
	e := newEnv(b)
	in := e.start(nil, Options{})
	alice := in.token("alice@example.com")
	o := mutOrderOf(b, in, "alice@example.com", "PENDING_PAYMENT", "UNPAID")
	v := o.Version
	var keyed, unkeyed time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for _, withKey := range []bool{i%2 == 0, i%2 == 1} {
			body := mutBody(mutAddressQuery, map[string]any{"id": o.ID, "v": v, "a": mutAddress})
			var headers []string
			if withKey {
				headers = append(headers, fmt.Sprintf("Idempotency-Key: bench-vs-%d", i))
			}
			start := time.Now()
			r, err := mutSend(in.URL, alice, body, headers...)
			d := time.Since(start)
			if err != nil || len(r.Errors) > 0 {
				b.Fatalf("%v %s", err, r.Raw)
			}
			if withKey {
				keyed += d
			} else {
				unkeyed += d
			}
			v++
		}
	}
	b.ReportMetric(float64(keyed.Nanoseconds())/float64(b.N), "keyed-ns/op")
	b.ReportMetric(float64(unkeyed.Nanoseconds())/float64(b.N), "unkeyed-ns/op")
	b.ReportMetric(float64(keyed)/float64(unkeyed), "keyed/unkeyed")
}
