package server

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/shop/bff/internal/order"
	"github.com/shop/bff/internal/postgres"
	"github.com/shop/bff/internal/webhooks"
	"github.com/shop/bff/internal/webhooks/hooksim"
)

const createHookMutation = `mutation($input: CreateWebhookEndpointInput!) {
  createWebhookEndpoint(input: $input) { secret endpoint { id url eventTypes enabled description } } }`

// Webhook endpoints are managed by staff only: a customer gets FORBIDDEN,
// an anonymous request UNAUTHENTICATED; staff create (secret shown once),
// list, update, rotate and delete; bad URLs are BAD_USER_INPUT, and in
// production a loopback or private address is refused.
func TestWebhookEndpointsStaffOnly(t *testing.T) {
	e := newEnv(t)
	in := e.start(nil, Options{})
	staff, alice := in.token("staff@example.com"), in.token("alice@example.com")
	input := map[string]any{"input": map[string]any{"url": "http://127.0.0.1:9/hook", "eventTypes": []string{"ORDER_SHIPPED"}}}

	for _, tok := range []string{alice, ""} {
		want := "FORBIDDEN"
		if tok == "" {
			want = "UNAUTHENTICATED"
		}
		if r := in.post(tok, createHookMutation, input); r.code() != want {
			t.Fatalf("create as %q: %s, want %s", tok, r.Raw, want)
		}
		if r := in.post(tok, `{ webhookEndpoints { id } }`, nil); r.code() != want {
			t.Fatalf("list as %q: %s, want %s", tok, r.Raw, want)
		}
	}

	r := in.post(staff, createHookMutation, map[string]any{"input": map[string]any{"url": "http://127.0.0.1:9/hook",
		"eventTypes": []string{"ORDER_SHIPPED", "ORDER_DELIVERED"}, "description": "warehouse"}})
	if r.code() != "" {
		t.Fatalf("create: %s", r.Raw)
	}
	secret, _ := field(r.Data, "createWebhookEndpoint", "secret").(string)
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if !strings.HasPrefix(secret, "whsec_") || err != nil || len(key) != 32 {
		t.Fatalf("secret %q is not whsec_ + base64 of 32 bytes", secret)
	}
	id, _ := field(r.Data, "createWebhookEndpoint", "endpoint", "id").(string)

	r = in.post(staff, `{ webhookEndpoints { id url description eventTypes enabled } }`, nil)
	if r.code() != "" || field(r.Data, "webhookEndpoints", 0, "id") != id || field(r.Data, "webhookEndpoints", 0, "description") != "warehouse" {
		t.Fatalf("list: %s", r.Raw)
	}
	r = in.post(staff, `mutation($id: ID!) { updateWebhookEndpoint(id: $id, input: {enabled: false, eventTypes: [ORDER_PLACED]}) { endpoint { enabled eventTypes } } }`,
		map[string]any{"id": id})
	if r.code() != "" || field(r.Data, "updateWebhookEndpoint", "endpoint", "enabled") != false ||
		field(r.Data, "updateWebhookEndpoint", "endpoint", "eventTypes", 0) != "ORDER_PLACED" {
		t.Fatalf("update: %s", r.Raw)
	}
	r = in.post(staff, `mutation($id: ID!) { rotateWebhookSecret(id: $id) { secret endpoint { previousSecretExpiresAt } } }`, map[string]any{"id": id})
	if s, _ := field(r.Data, "rotateWebhookSecret", "secret").(string); r.code() != "" || s == secret || !strings.HasPrefix(s, "whsec_") ||
		field(r.Data, "rotateWebhookSecret", "endpoint", "previousSecretExpiresAt") == nil {
		t.Fatalf("rotate: %s", r.Raw)
	}
	if r := in.post(alice, `mutation($id: ID!) { deleteWebhookEndpoint(id: $id) { deletedId } }`, map[string]any{"id": id}); r.code() != "FORBIDDEN" {
		t.Fatalf("customer delete: %s", r.Raw)
	}
	if r := in.post(staff, `mutation($id: ID!) { deleteWebhookEndpoint(id: $id) { deletedId } }`, map[string]any{"id": id}); r.code() != "" {
		t.Fatalf("delete: %s", r.Raw)
	}
	if r := in.post(staff, `mutation($id: ID!) { deleteWebhookEndpoint(id: $id) { deletedId } }`, map[string]any{"id": id}); r.code() != "NOT_FOUND" {
		t.Fatalf("second delete: %s", r.Raw)
	}

	for _, bad := range []map[string]any{
		{"url": "ftp://example.com/", "eventTypes": []string{"ORDER_SHIPPED"}},
		{"url": "https://example.com/", "eventTypes": []string{}},
	} {
		r := in.post(staff, createHookMutation, map[string]any{"input": bad})
		if r.code() != "BAD_USER_INPUT" || len(r.Errors) == 0 || !strings.HasPrefix(r.Errors[0].Extensions["field"].(string), "input.") {
			t.Fatalf("create %v: %s", bad, r.Raw)
		}
	}
	if r := in.post(staff, `{ webhookDeliveries(endpointId: "x", first: 0) { edges { cursor } } }`, nil); r.code() != "BAD_USER_INPUT" {
		t.Fatalf("first 0: %s", r.Raw)
	}

	// Production refuses non-public addresses at registration.
	cfg := e.config()
	cfg.WebhookAllowPrivate = false
	prod := e.start(cfg, Options{})
	for _, u := range []string{"http://127.0.0.1:9/hook", "http://10.0.0.7/", "http://169.254.169.254/", "http://localhost:8080/"} {
		r := prod.post(prod.token("staff@example.com"), createHookMutation,
			map[string]any{"input": map[string]any{"url": u, "eventTypes": []string{"ORDER_SHIPPED"}}})
		if r.code() != "BAD_USER_INPUT" || r.Errors[0].Extensions["field"] != "input.url" {
			t.Fatalf("production registration of %s: %s", u, r.Raw)
		}
	}
}

// End to end through the served binary: staff register the simulator, a
// customer's placeOrder reaches it signed (verified with the spec's
// library), staff see the delivery and redeliver it with the same
// webhook-id.
func TestWebhookDeliveredEndToEnd(t *testing.T) {
	e := newEnv(t)
	cfg := e.config()
	cfg.WebhookWorkers = 2
	recorded := make(chan webhooks.Attempt, 16)
	in := e.start(cfg, Options{WebhookObserve: func(a webhooks.Attempt) { recorded <- a }})
	staff, alice := in.token("staff@example.com"), in.token("alice@example.com")

	rcv, r := hookReceiver(t, in, staff, "ORDER_PLACED")
	secret := field(r.Data, "createWebhookEndpoint", "secret").(string)
	id := field(r.Data, "createWebhookEndpoint", "endpoint", "id").(string)

	placed := placeOrderAs(t, in, alice)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	got, err := rcv.Wait(ctx, func(r []hooksim.Received) bool { return len(r) >= 1 })
	if err != nil {
		t.Fatalf("no delivery: %v", err)
	}
	hook, _ := standardwebhooks.NewWebhook(secret)
	if err := hook.Verify(got[0].Body, got[0].Header); err != nil {
		t.Fatalf("verify: %v", err)
	}
	if got[0].OrderID != placed || got[0].Type != "order.placed" {
		t.Fatalf("received %+v, want order.placed of %s", got[0], placed)
	}

	// Staff see it delivered once the worker recorded it.
	select {
	case a := <-recorded:
		if a.Outcome != "delivered" {
			t.Fatalf("attempt %+v", a)
		}
	case <-ctx.Done():
		t.Fatal("the attempt was not recorded")
	}
	r = in.post(staff, `query($id: ID!) { webhookDeliveries(endpointId: $id, first: 5) { edges { node {
		id webhookId status attempts lastResponseCode attemptLog { number responseCode } } } } }`, map[string]any{"id": id})
	delivery, _ := field(r.Data, "webhookDeliveries", "edges", 0, "node").(map[string]any)
	if r.code() != "" || delivery["status"] != "DELIVERED" || delivery["webhookId"] != got[0].ID || delivery["attempts"] != float64(1) ||
		delivery["lastResponseCode"] != float64(204) || field(delivery, "attemptLog", 0, "responseCode") != float64(204) {
		t.Fatalf("deliveries: %s", r.Raw)
	}

	// The metrics count the attempt and read the backlog.
	resp, err := http.Get(in.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`bff_webhook_attempts_total{endpoint="` + id + `",outcome="delivered"} 1`,
		`bff_webhook_queue_depth{endpoint="` + id + `"} 0`,
		`bff_webhook_oldest_pending_age_seconds{endpoint="` + id + `"} 0`,
		`bff_webhook_dead_letters{endpoint="` + id + `"} 0`,
		`bff_webhook_attempt_duration_seconds_count{endpoint="` + id + `"} 1`,
		`bff_webhook_delivery_latency_seconds_count{endpoint="` + id + `"} 1`,
	} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	r = in.post(staff, `mutation($id: ID!) { redeliverWebhook(deliveryId: $id) { delivery { status } } }`, map[string]any{"id": delivery["id"]})
	if r.code() != "" || field(r.Data, "redeliverWebhook", "delivery", "status") != "PENDING" {
		t.Fatalf("redeliver: %s", r.Raw)
	}
	got, err = rcv.Wait(ctx, func(r []hooksim.Received) bool { return len(r) >= 2 })
	if err != nil || got[1].ID != got[0].ID {
		t.Fatalf("redelivery: %v %+v", err, got)
	}
	if r := in.post(alice, `mutation($id: ID!) { redeliverWebhook(deliveryId: $id) { delivery { status } } }`,
		map[string]any{"id": delivery["id"]}); r.code() != "FORBIDDEN" {
		t.Fatalf("customer redeliver: %s", r.Raw)
	}
}

// placeOrderAs places an order of the first product as token and returns
// its id.
func placeOrderAs(t *testing.T, in *instance, token string) string {
	t.Helper()
	var pid string
	if err := in.db().QueryRow(context.Background(), `SELECT id::text FROM products ORDER BY sku LIMIT 1`).Scan(&pid); err != nil {
		t.Fatal(err)
	}
	r := in.post(token, `mutation($in: PlaceOrderInput!) { placeOrder(input: $in) { order { id } } }`, map[string]any{"in": map[string]any{
		"lines":           []any{map[string]any{"productId": pid, "quantity": 1}},
		"shippingAddress": map[string]any{"name": "Alice", "line1": "Main St 1", "city": "Berlin", "postalCode": "10115", "country": "DE"}}},
		"Idempotency-Key: webhooks-"+pid+"-"+strings.ReplaceAll(t.Name(), "/", "-"))
	id, _ := field(r.Data, "placeOrder", "order", "id").(string)
	if r.code() != "" || id == "" {
		t.Fatalf("placeOrder: %s", r.Raw)
	}
	return id
}

// The rows of the authorization sweep (TestAuthorizationSweep) for the
// webhook fields: STAFF only.
func init() {
	staffOnly := map[string]string{azOwner: "FORBIDDEN", azOther: "FORBIDDEN", azStaff: azData, azAnon: "UNAUTHENTICATED"}
	endpointVars := func(w *azWorld, _ string) map[string]any { return map[string]any{"id": w.hookEndpoint()} }
	sameID := func(path ...any) func(*azWorld, string, map[string]any, any) error {
		return func(_ *azWorld, _ string, vars map[string]any, v any) error {
			if got := field(v, path...); got != vars["id"] {
				return fmt.Errorf("%v, want %v", got, vars["id"])
			}
			return nil
		}
	}
	anything := func(*azWorld, string, map[string]any, any) error { return nil }
	rows := map[string]azField{
		"Query.webhookEndpoints": {query: `{ webhookEndpoints { id url } }`, want: staffOnly, check: anything},
		"Query.webhookEndpoint": {query: `query($id: ID!) { webhookEndpoint(id: $id) { id } }`, vars: endpointVars,
			want: map[string]string{azOwner: "FORBIDDEN", azOther: "FORBIDDEN", azStaff: azData, azAnon: "UNAUTHENTICATED"}, check: sameID("id")},
		"Query.webhookDeliveries": {query: `query($id: ID!) { webhookDeliveries(endpointId: $id) { edges { node { id } } } }`,
			vars: endpointVars, want: staffOnly, check: anything},
		"Mutation.createWebhookEndpoint": {query: `mutation { createWebhookEndpoint(input: {url: "http://127.0.0.1:9/az", eventTypes: [ORDER_SHIPPED]}) { secret endpoint { id } } }`,
			want: staffOnly, check: func(_ *azWorld, _ string, _ map[string]any, v any) error {
				if s, _ := field(v, "secret").(string); !strings.HasPrefix(s, "whsec_") {
					return fmt.Errorf("secret %q", s)
				}
				return nil
			}},
		"Mutation.updateWebhookEndpoint": {query: `mutation($id: ID!) { updateWebhookEndpoint(id: $id, input: {description: "az"}) { endpoint { id } } }`,
			vars: endpointVars, want: staffOnly, check: sameID("endpoint", "id")},
		"Mutation.rotateWebhookSecret": {query: `mutation($id: ID!) { rotateWebhookSecret(id: $id) { secret endpoint { id } } }`,
			vars: endpointVars, want: staffOnly, check: sameID("endpoint", "id")},
		"Mutation.deleteWebhookEndpoint": {query: `mutation($id: ID!) { deleteWebhookEndpoint(id: $id) { deletedId } }`,
			vars: endpointVars, want: staffOnly, check: sameID("deletedId")},
		"Mutation.redeliverWebhook": {query: `mutation($id: ID!) { redeliverWebhook(deliveryId: $id) { delivery { id } } }`,
			vars: func(w *azWorld, _ string) map[string]any { return map[string]any{"id": w.hookDelivery()} },
			want: staffOnly, check: sameID("delivery", "id")},
		"Mutation.replayWebhooks": {query: `mutation($id: ID!) { replayWebhooks(endpointId: $id, since: "2020-01-01T00:00:00Z") { queued } }`,
			vars: endpointVars, want: staffOnly, check: anything},
	}
	for k, v := range rows {
		azFields[k] = v
	}
}

// hookEndpoint registers an endpoint for ORDER_PLACED and returns its id.
func (w *azWorld) hookEndpoint() string {
	w.t.Helper()
	e, err := w.in.srv.Store().CreateWebhookEndpoint(context.Background(), postgres.NewWebhookEndpoint{
		URL: "http://127.0.0.1:9/az", EventTypes: []order.EventType{order.EventOrderPlaced}, Secret: webhooks.NewSecret()})
	if err != nil {
		w.t.Fatal(err)
	}
	return e.ID
}

// hookDelivery returns the id of a delivery of a new endpoint.
func (w *azWorld) hookDelivery() string {
	w.t.Helper()
	ep := w.hookEndpoint()
	w.pending()
	ds, _, err := w.in.srv.Store().WebhookDeliveries(context.Background(), ep, "", 1, 0)
	if err != nil || len(ds) != 1 {
		w.t.Fatalf("deliveries: %v %d", err, len(ds))
	}
	return strconv.FormatInt(ds[0].ID, 10)
}

// The staff page of the web app lists the endpoints and their recent
// deliveries; its Redeliver button sends a refused delivery again.
func TestBrowserStaffWebhooksPage(t *testing.T) {
	chromiumPath(t) // fail first, before any setup, without a browser
	st := newBrowserStack(t, 0)
	// A second instance on the stack's database runs the webhook worker.
	cfg := st.e.config()
	cfg.WebhookWorkers = 1
	recorded := make(chan webhooks.Attempt, 16)
	st.e.start(cfg, Options{WebhookObserve: func(a webhooks.Attempt) { recorded <- a }})
	var refuse atomic.Bool
	refuse.Store(true)
	rcv, err := hooksim.New(hooksim.Config{Respond: func(hooksim.Received) (int, http.Header) {
		if refuse.Load() {
			return http.StatusGone, nil
		}
		return 0, nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(rcv)
	defer srv.Close()
	ep, err := st.in.srv.Store().CreateWebhookEndpoint(context.Background(), postgres.NewWebhookEndpoint{URL: srv.URL + "/warehouse",
		Description: "warehouse", EventTypes: []order.EventType{order.EventOrderPlaced}, Secret: webhooks.NewSecret()})
	if err != nil {
		t.Fatal(err)
	}
	placeOrderAs(t, st.in, st.in.token("alice@example.com"))
	waitAttempt := func(what string) webhooks.Attempt {
		select {
		case a := <-recorded:
			return a
		case <-time.After(time.Minute):
			t.Fatalf("no attempt recorded: %s", what)
		}
		return webhooks.Attempt{}
	}
	if a := waitAttempt("the refusal"); a.Status != http.StatusGone || a.State != "failed" {
		t.Fatalf("first attempt %+v, want a final 410", a)
	}

	b := newBrowser(t)
	staff := b.tab("staff", screenshotDir(t))
	staff.signIn(st.base, "staff")
	staff.click(`[data-testid="nav-webhooks"]`)
	row := fmt.Sprintf(`[data-testid="endpoint-%s"] [data-testid="deliveries-table"] tbody tr`, ep.ID)
	staff.waitFor("the endpoint's deliveries", fmt.Sprintf(`document.querySelector(%q) !== null`, row), 20*time.Second)
	if got := staff.text(row + ` [data-testid="delivery-status"]`); got != "FAILED" {
		staff.fail("delivery status %q, want FAILED", got)
	}
	refuse.Store(false)
	staff.click(row + ` [data-testid="redeliver"]`)
	if a := waitAttempt("the redelivery"); a.Status != http.StatusNoContent || a.State != "delivered" {
		t.Fatalf("redelivery %+v", a)
	}
	got := rcv.Received()
	if len(got) != 2 || got[0].ID != got[1].ID {
		t.Fatalf("received %+v, want the same webhook-id twice", got)
	}
	staff.do("show delivered", chromedp.Evaluate[chromedp.Void](`location.hash = '#/webhooks?status=DELIVERED'`))
	staff.waitFor("the delivered row", fmt.Sprintf(`document.querySelector(%q)?.textContent === 'DELIVERED'`, row+` [data-testid="delivery-status"]`), 20*time.Second)
	staff.screenshot("01-staff-webhooks")

	alice := b.tab("alice", screenshotDir(t))
	alice.signIn(st.base, "alice")
	if jsEval[bool](alice, `!document.querySelector('[data-testid="nav-webhooks"]').hidden`) {
		alice.fail("a customer sees the webhooks link")
	}
}

// hookReceiver starts a webhook receiver (closed when the test ends) and
// registers it, as staff, as an endpoint of eventTypes; it returns the
// receiver and createWebhookEndpoint's answer.
func hookReceiver(t *testing.T, in *instance, staff string, eventTypes ...string) (*hooksim.Receiver, *gqlResponse) {
	t.Helper()
	rcv, err := hooksim.New(hooksim.Config{})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(rcv)
	t.Cleanup(srv.Close)
	r := in.post(staff, createHookMutation, map[string]any{"input": map[string]any{"url": srv.URL + "/hooks",
		"eventTypes": eventTypes}})
	if r.code() != "" {
		t.Fatalf("create endpoint: %s", r.Raw)
	}
	return rcv, r
}
