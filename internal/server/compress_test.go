package server

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
)

// The web app's screen documents (web/static/js/queries.js), used to
// measure what a real client receives.
const (
	clOrderSummary = `fragment OrderSummary on Order { id number status paymentStatus version createdAt total { formatted } customer { id name email } }`
	clHomeScreen   = `query HomeScreen { homeScreen { viewer { id name email role } recentOrders { ...OrderSummary } statusCounts { status count } openOrders lifetimeSpend { formatted } } } ` + clOrderSummary
	clOrdersScreen = `query OrdersScreen($status: OrderStatus, $first: Int, $after: String) { ordersScreen(status: $status, first: $first, after: $after) { orders { totalCount pageInfo { hasNextPage endCursor } edges { cursor node { ...OrderSummary } } } statusCounts { status count } } } ` + clOrderSummary
	clOrderScreen  = `query OrderScreen($id: ID!) { orderScreen(id: $id) { order { ...OrderSummary trackingNumber updatedAt shippingAddress { name line1 line2 city postalCode country } lines { quantity product { id sku name } unitPrice { formatted } total { formatted } } } timeline { id type fromStatus toStatus version at actor } availableActions lastEventId } } ` + clOrderSummary
)

// clScreens gives alice at least 20 orders and returns the three screens'
// requests (GraphQL-over-HTTP bodies).
func clScreens(t testing.TB, in *instance) (tok string, screens map[string][]byte) {
	t.Helper()
	tok = in.token("alice@example.com")
	ps := mutCatalogue(t, in, 3)
	var id string
	for n := mutInt(t, in, `SELECT count(*) FROM orders o JOIN users u ON u.id = o.customer_id WHERE u.email = 'alice@example.com'`); n < 20; n++ {
		r := in.post(tok, `mutation($in: PlaceOrderInput!) { placeOrder(input: $in) { order { id } } }`,
			map[string]any{"in": mutInput(ps[0].ID, 1, ps[1].ID, 2, ps[2].ID, 1)}, "Idempotency-Key: "+mutKey())
		if r.Status != 200 || len(r.Errors) > 0 {
			t.Fatalf("placeOrder: %d %s", r.Status, r.Raw)
		}
		id, _ = field(r.Data, "placeOrder", "order", "id").(string)
	}
	if id == "" {
		r := in.post(tok, `{ orders(first: 1) { edges { node { id } } } }`, nil)
		id, _ = field(r.Data, "orders", "edges", 0, "node", "id").(string)
	}
	body := func(q string, vars map[string]any) []byte {
		b, _ := json.Marshal(map[string]any{"query": q, "variables": vars})
		return b
	}
	return tok, map[string][]byte{
		"homeScreen":   body(clHomeScreen, nil),
		"ordersScreen": body(clOrdersScreen, map[string]any{"first": 20}),
		"orderScreen":  body(clOrderScreen, map[string]any{"id": id}),
	}
}

// clPost sends body with Accept-Encoding enc (as is: no transparent
// decompression) and returns the response and its raw body.
func clPost(t testing.TB, client *http.Client, url, tok, enc string, body []byte) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+tok)
	if enc != "" {
		req.Header.Set("Accept-Encoding", enc)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, raw
}

// clDecode undoes the response's Content-Encoding.
func clDecode(t testing.TB, enc string, raw []byte) []byte {
	t.Helper()
	var r io.Reader
	switch enc {
	case "":
		return raw
	case "gzip":
		zr, err := gzip.NewReader(bytes.NewReader(raw))
		if err != nil {
			t.Fatalf("gzip: %v", err)
		}
		r = zr
	case "zstd":
		zr, err := zstd.NewReader(bytes.NewReader(raw))
		if err != nil {
			t.Fatalf("zstd: %v", err)
		}
		defer zr.Close()
		r = zr
	default:
		t.Fatalf("unexpected Content-Encoding %q", enc)
	}
	out, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("decode %s: %v", enc, err)
	}
	return out
}

// TestCompressionNegotiated: screens are compressed with the encoding the
// client accepts (zstd preferred over gzip), decode to the same data, vary
// on Accept-Encoding; small responses and clients that accept nothing get
// identity; event streams are never compressed and deliver their first
// bytes at once.
func TestCompressionNegotiated(t *testing.T) {
	e := newEnv(t)
	in := e.start(nil, Options{})
	tok, screens := clScreens(t, in)
	client := &http.Client{Transport: &http.Transport{DisableCompression: true}}
	url := in.URL + "/graphql"
	dataOf := func(b []byte) string {
		var v struct{ Data json.RawMessage }
		if err := json.Unmarshal(b, &v); err != nil {
			t.Fatalf("not JSON: %v: %.200s", err, b)
		}
		return string(v.Data)
	}
	for name, body := range screens {
		_, plain := clPost(t, client, url, tok, "", body)
		for _, c := range []struct{ accept, want string }{
			{"", ""}, {"gzip", "gzip"}, {"zstd", "zstd"}, {"gzip, deflate, br, zstd", "zstd"}, {"br", ""}, {"identity", ""},
		} {
			resp, raw := clPost(t, client, url, tok, c.accept, body)
			got := resp.Header.Get("Content-Encoding")
			if got != c.want {
				t.Errorf("%s with Accept-Encoding %q: Content-Encoding %q, want %q", name, c.accept, got, c.want)
				continue
			}
			if !strings.Contains(strings.Join(resp.Header.Values("Vary"), ","), "Accept-Encoding") {
				t.Errorf("%s: Vary %v lacks Accept-Encoding", name, resp.Header.Values("Vary"))
			}
			decoded := clDecode(t, got, raw)
			if dataOf(decoded) != dataOf(plain) {
				t.Errorf("%s (%s): decoded data differs from the identity response", name, got)
			}
			if got != "" && len(raw) >= len(decoded)*3/4 {
				t.Errorf("%s: %s gave %d bytes for %d", name, got, len(raw), len(decoded))
			}
		}
	}

	// below the threshold: identity
	resp, raw := clPost(t, client, url, tok, "gzip", []byte(`{"query":"{ __typename }"}`))
	if resp.Header.Get("Content-Encoding") != "" || !bytes.Contains(raw, []byte("Query")) {
		t.Errorf("a %d-byte response was encoded %q", len(raw), resp.Header.Get("Content-Encoding"))
	}

	// streams: never compressed, first bytes flushed before any event
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for _, req := range []*http.Request{
		func() *http.Request {
			r, _ := http.NewRequestWithContext(ctx, http.MethodGet, in.URL+"/events?stream=orders", nil)
			return r
		}(),
		func() *http.Request {
			r, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(`{"query":"subscription { orderEvents { id } }"}`))
			r.Header.Set("Content-Type", "application/json")
			r.Header.Set("Accept", "text/event-stream")
			return r
		}(),
	} {
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Accept-Encoding", "gzip, zstd")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if ce := resp.Header.Get("Content-Encoding"); ce != "" || resp.StatusCode != 200 {
			t.Errorf("%s %s: status %d, Content-Encoding %q, want 200 uncompressed", req.Method, req.URL.Path, resp.StatusCode, ce)
		}
		line, err := bufio.NewReader(resp.Body).ReadString('\n') // arrives although no event was sent
		if err != nil || line == "" {
			t.Errorf("%s %s: first line %q, %v", req.Method, req.URL.Path, line, err)
		}
		resp.Body.Close()
	}
}

// BenchmarkScreenCompression measures the bytes and the server CPU of one
// screen response (hot cache, in process through the whole middleware
// chain) without compression, with gzip and with zstd. resp-bytes is the
// body on the wire; cpu-µs/op the process's user+system CPU per response.
func BenchmarkScreenCompression(b *testing.B) {
	e := newEnv(b)
	in := e.start(nil, Options{Logger: discardLogger()})
	tok, screens := clScreens(b, in)
	for _, name := range []string{"homeScreen", "ordersScreen", "orderScreen"} {
		body := screens[name]
		for _, enc := range []string{"identity", "gzip", "zstd"} {
			b.Run(name+"/"+enc, func(b *testing.B) {
				serve := func() *httptest.ResponseRecorder {
					req := httptest.NewRequest(http.MethodPost, "/graphql", bytes.NewReader(body))
					req.Header.Set("Content-Type", "application/json")
					req.Header.Set("Authorization", "Bearer "+tok)
					req.Header.Set("Accept-Encoding", enc)
					rec := httptest.NewRecorder()
					in.srv.Handler().ServeHTTP(rec, req)
					if rec.Code != http.StatusOK {
						b.Fatalf("status %d", rec.Code)
					}
					return rec
				}
				rec := serve() // fills the cache
				if enc != "identity" && rec.Header().Get("Content-Encoding") != enc {
					b.Fatalf("Content-Encoding %q, want %s", rec.Header().Get("Content-Encoding"), enc)
				}
				size := rec.Body.Len()
				b.ReportAllocs()
				cpu0 := clCPU()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					serve()
				}
				b.StopTimer()
				b.ReportMetric(float64(size), "resp-bytes")
				b.ReportMetric(float64((clCPU()-cpu0).Microseconds())/float64(b.N), "cpu-µs/op")
			})
		}
	}
}

// clCPU is the user and system CPU time the process has used.
func clCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
