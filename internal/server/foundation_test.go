package server

import (
	"net/http"
	"strings"
	"testing"
)

const homeQuery = `{ homeScreen { viewer { email } recentOrders { id number status total { formatted } } statusCounts { status count } openOrders lifetimeSpend { formatted } } }`

func TestHomeScreenIsTheViewers(t *testing.T) {
	e := newEnv(t)
	in := e.start(nil, Options{})
	for _, email := range []string{"alice@example.com", "bob@example.com"} {
		r := in.post(in.token(email), homeQuery, nil)
		if r.Status != http.StatusOK || len(r.Errors) > 0 {
			t.Fatalf("%s: status %d errors %v", email, r.Status, string(r.Raw))
		}
		if got := field(r.Data, "homeScreen", "viewer", "email"); got != email {
			t.Fatalf("viewer.email = %v, want %s", got, email)
		}
		recent, _ := field(r.Data, "homeScreen", "recentOrders").([]any)
		if len(recent) == 0 || len(recent) > 5 {
			t.Fatalf("%s: %d recent orders, want 1..5", email, len(recent))
		}
		counts, _ := field(r.Data, "homeScreen", "statusCounts").([]any)
		statuses := map[string]bool{}
		open := 0.0
		for _, c := range counts {
			st := field(c, "status").(string)
			statuses[st] = true
			if st == "PENDING_PAYMENT" || st == "PAID" || st == "SHIPPED" {
				open += field(c, "count").(float64)
			}
		}
		for _, st := range []string{"PENDING_PAYMENT", "PAID", "SHIPPED", "DELIVERED", "CANCELLED"} {
			if !statuses[st] {
				t.Errorf("%s: the seed has no %s order (statusCounts %v)", email, st, counts)
			}
		}
		if got := field(r.Data, "homeScreen", "openOrders").(float64); got != open {
			t.Errorf("%s: openOrders %v, want %v from statusCounts", email, got, open)
		}
		if f, _ := field(r.Data, "homeScreen", "lifetimeSpend", "formatted").(string); !strings.HasPrefix(f, "$") {
			t.Errorf("%s: lifetimeSpend %q", email, f)
		}
	}
}

func TestAnotherCustomersOrderIsNotFound(t *testing.T) {
	e := newEnv(t)
	in := e.start(nil, Options{})
	alice, bob := in.token("alice@example.com"), in.token("bob@example.com")
	r := in.post(alice, homeQuery, nil)
	id := field(r.Data, "homeScreen", "recentOrders", 0, "id").(string)

	q := `query($id: ID!) { orderScreen(id: $id) { order { id } availableActions lastEventId timeline { id type } } }`
	own := in.post(alice, q, map[string]any{"id": id})
	if len(own.Errors) > 0 || field(own.Data, "orderScreen", "order", "id") != id {
		t.Fatalf("alice's own order: %s", own.Raw)
	}
	if tl, _ := field(own.Data, "orderScreen", "timeline").([]any); len(tl) == 0 {
		t.Fatalf("empty timeline: %s", own.Raw)
	}
	other := in.post(bob, q, map[string]any{"id": id})
	if other.code() != "NOT_FOUND" || field(other.Data, "orderScreen") != nil {
		t.Fatalf("bob reading alice's order: %s", other.Raw)
	}
	if rid := other.Errors[0].Extensions["requestId"]; rid == nil || rid != other.Header.Get("X-Request-ID") {
		t.Fatalf("requestId %v, header %q", rid, other.Header.Get("X-Request-ID"))
	}
	staff := in.post(in.token("staff@example.com"), q, map[string]any{"id": id})
	if len(staff.Errors) > 0 || field(staff.Data, "orderScreen", "order", "id") != id {
		t.Fatalf("staff reading alice's order: %s", staff.Raw)
	}
	anon := in.post("", q, map[string]any{"id": id})
	if anon.code() != "UNAUTHENTICATED" {
		t.Fatalf("anonymous: %s", anon.Raw)
	}
	viewer := in.post("", `{ viewer { id } }`, nil)
	if len(viewer.Errors) > 0 || field(viewer.Data, "viewer") != nil {
		t.Fatalf("anonymous viewer: %s", viewer.Raw)
	}
	bad := in.post("not-a-token", `{ viewer { id } }`, nil)
	if bad.Status != http.StatusUnauthorized || bad.code() != "UNAUTHENTICATED" {
		t.Fatalf("invalid token: %d %s", bad.Status, bad.Raw)
	}
}

func TestEndpoints(t *testing.T) {
	e := newEnv(t)
	in := e.start(nil, Options{})
	for _, path := range []string{"/livez", "/readyz", "/"} {
		resp, err := http.Get(in.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s: %d", path, resp.StatusCode)
		}
		if resp.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("GET %s: no nosniff", path)
		}
	}
	req, _ := http.NewRequest(http.MethodGet, in.URL+"/livez", nil)
	req.Header.Set("X-Request-ID", "abc-123")
	if r := in.do(req); r.Header.Get("X-Request-ID") != "abc-123" {
		t.Errorf("X-Request-ID not echoed: %q", r.Header.Get("X-Request-ID"))
	}
	req, _ = http.NewRequest(http.MethodGet, in.URL+"/livez", nil)
	req.Header.Set("X-Request-ID", "bad id with spaces")
	if r := in.do(req); r.Header.Get("X-Request-ID") == "" || r.Header.Get("X-Request-ID") == "bad id with spaces" {
		t.Errorf("invalid X-Request-ID kept: %q", r.Header.Get("X-Request-ID"))
	}
	// a mutation over GET is refused
	req, _ = http.NewRequest(http.MethodGet, in.URL+"/graphql?query="+strings.ReplaceAll("mutation { deliverOrder(id: \"x\", expectedVersion: 1) { order { id } } }", " ", "%20"), nil)
	if r := in.do(req); r.Status != http.StatusMethodNotAllowed || r.code() != "BAD_REQUEST" {
		t.Errorf("mutation over GET: %d %s", r.Status, r.Raw)
	}
	// one log line per request, as JSON with the request id
	if !strings.Contains(in.logs.String(), `"request_id":"abc-123"`) {
		t.Errorf("no log line with the request id:\n%s", in.logs.String())
	}
}
