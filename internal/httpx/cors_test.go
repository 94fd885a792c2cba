package httpx_test

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/shop/bff/internal/httpx"
)

func TestCORS(t *testing.T) {
	mw, err := httpx.CORS(httpx.CORSOptions{Origins: []string{"https://shop.example.com/", "HTTP://localhost:5173"}})
	require.NoError(t, err)
	reached := false
	h := httpx.RequestID(mw(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { reached = true })))
	do := func(method, origin string, hdr ...string) *httptest.ResponseRecorder {
		reached = false
		req := httptest.NewRequest(method, "/graphql", nil)
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}
	corsHeaders := func(rec *httptest.ResponseRecorder) []string {
		var out []string
		for k := range rec.Header() {
			if strings.HasPrefix(k, "Access-Control-") {
				out = append(out, k)
			}
		}
		return out
	}

	t.Run("allowed origin", func(t *testing.T) {
		for _, o := range []string{"https://shop.example.com", "http://localhost:5173"} {
			rec := do("POST", o)
			assert.True(t, reached)
			assert.Equal(t, o, rec.Header().Get("Access-Control-Allow-Origin"))
			assert.Equal(t, "true", rec.Header().Get("Access-Control-Allow-Credentials"))
			assert.Contains(t, rec.Header().Get("Access-Control-Expose-Headers"), "X-Request-ID")
			assert.Contains(t, rec.Header().Values("Vary"), "Origin")
		}
	})
	t.Run("disallowed origins get no CORS headers", func(t *testing.T) {
		for _, o := range []string{"https://evil.example.com", "https://shop.example.com.evil.com", "http://shop.example.com",
			"https://shop.example.com:8443", "null", "*"} {
			rec := do("POST", o)
			assert.True(t, reached, "the request is served; the browser keeps the answer from the page")
			assert.Empty(t, corsHeaders(rec), o)
			assert.Contains(t, rec.Header().Values("Vary"), "Origin")
		}
	})
	t.Run("no origin", func(t *testing.T) {
		rec := do("GET", "")
		assert.True(t, reached)
		assert.Empty(t, corsHeaders(rec))
		assert.Contains(t, rec.Header().Values("Vary"), "Origin")
	})
	t.Run("preflight allowed", func(t *testing.T) {
		rec := do("OPTIONS", "https://shop.example.com", "Access-Control-Request-Method", "POST",
			"Access-Control-Request-Headers", "authorization,content-type,idempotency-key,x-request-id")
		assert.False(t, reached, "a preflight never reaches the handler")
		assert.Equal(t, http.StatusNoContent, rec.Code)
		assert.Equal(t, "https://shop.example.com", rec.Header().Get("Access-Control-Allow-Origin"))
		assert.Equal(t, "true", rec.Header().Get("Access-Control-Allow-Credentials"))
		assert.Contains(t, rec.Header().Get("Access-Control-Allow-Methods"), "POST")
		allow := strings.ToLower(rec.Header().Get("Access-Control-Allow-Headers"))
		for _, want := range []string{"idempotency-key", "authorization", "content-type", "x-request-id", "last-event-id"} {
			assert.Contains(t, allow, want)
		}
		assert.Equal(t, "600", rec.Header().Get("Access-Control-Max-Age"))
		assert.Contains(t, rec.Header().Values("Vary"), "Origin")
	})
	t.Run("preflight disallowed", func(t *testing.T) {
		rec := do("OPTIONS", "https://evil.example.com", "Access-Control-Request-Method", "POST")
		assert.False(t, reached)
		assert.Equal(t, http.StatusForbidden, rec.Code)
		assert.Empty(t, corsHeaders(rec))
	})
	t.Run("plain OPTIONS is not a preflight", func(t *testing.T) {
		do("OPTIONS", "https://shop.example.com")
		assert.True(t, reached)
	})
}

func TestCORSConfig(t *testing.T) {
	for _, bad := range []string{"*", "shop.example.com", "ftp://x", "https://x/path", "https://user@x", "https://*.example.com", "https://x?q"} {
		_, err := httpx.CORS(httpx.CORSOptions{Origins: []string{bad}})
		assert.Error(t, err, bad)
	}
	mw, err := httpx.CORS(httpx.CORSOptions{})
	require.NoError(t, err)
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("GET", "/", nil)
	req.Header.Set("Origin", "https://any.example.com")
	mw(http.NotFoundHandler()).ServeHTTP(rec, req)
	assert.Empty(t, rec.Header().Get("Access-Control-Allow-Origin"), "no origins: no CORS")
}

func TestTrustedProxies(t *testing.T) {
	p, err := httpx.NewTrustedProxies([]string{"10.0.0.0/8", "192.0.2.7", "fd00::/8"})
	require.NoError(t, err)
	_, err = httpx.NewTrustedProxies([]string{"10.0.0.0/8", "not-an-ip"})
	assert.ErrorContains(t, err, "not-an-ip")

	type seen struct {
		remote, peer string
		secure       bool
		xff          string
	}
	serve := func(remote string, hdr ...string) seen {
		var s seen
		h := p.Middleware()(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			s = seen{r.RemoteAddr, httpx.PeerAddr(r), httpx.IsSecure(r), r.Header.Get("X-Forwarded-For")}
		}))
		req := httptest.NewRequest("GET", "/", nil)
		req.RemoteAddr = remote
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Add(hdr[i], hdr[i+1])
		}
		h.ServeHTTP(httptest.NewRecorder(), req)
		return s
	}
	tests := []struct {
		name, remote string
		hdr          []string
		wantIP       string
		secure       bool
	}{
		{"direct client", "203.0.113.5:4711", nil, "203.0.113.5", false},
		{"untrusted peer's XFF ignored", "203.0.113.5:4711", []string{"X-Forwarded-For", "198.51.100.1", "X-Forwarded-Proto", "https"}, "203.0.113.5", false},
		{"trusted proxy", "10.1.2.3:80", []string{"X-Forwarded-For", "198.51.100.1", "X-Forwarded-Proto", "https"}, "198.51.100.1", true},
		{"single trusted address", "192.0.2.7:80", []string{"X-Forwarded-For", "198.51.100.1"}, "198.51.100.1", false},
		{"spoofed left entries ignored", "10.1.2.3:80", []string{"X-Forwarded-For", "1.1.1.1, 198.51.100.1"}, "198.51.100.1", false},
		{"chain of proxies", "10.1.2.3:80", []string{"X-Forwarded-For", "198.51.100.1, 10.9.9.9", "X-Forwarded-For", "10.8.8.8"}, "198.51.100.1", false},
		{"all hops trusted", "10.1.2.3:80", []string{"X-Forwarded-For", "10.5.5.5"}, "10.5.5.5", false},
		{"garbage hop", "10.1.2.3:80", []string{"X-Forwarded-For", "198.51.100.1, junk"}, "10.1.2.3", false},
		{"no XFF", "10.1.2.3:80", []string{"X-Forwarded-Proto", "HTTPS"}, "10.1.2.3", true},
		{"last proto wins", "10.1.2.3:80", []string{"X-Forwarded-Proto", "https, http"}, "10.1.2.3", false},
		{"ipv6 proxy and client", "[fd00::1]:80", []string{"X-Forwarded-For", "2001:db8::1"}, "2001:db8::1", false},
		{"ipv4-mapped proxy", "[::ffff:10.1.2.3]:80", []string{"X-Forwarded-For", "198.51.100.1"}, "198.51.100.1", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := serve(tt.remote, tt.hdr...)
			host := s.remote
			if ap, err := netip.ParseAddrPort(s.remote); err == nil {
				host = ap.Addr().String()
			}
			assert.Equal(t, tt.wantIP, host)
			assert.Equal(t, tt.secure, s.secure)
			assert.Equal(t, tt.remote, s.peer)
			if tt.name == "untrusted peer's XFF ignored" {
				assert.Empty(t, s.xff, "forwarded headers of an untrusted peer are removed")
			}
		})
	}
	var nobody *httpx.TrustedProxies
	assert.False(t, nobody.Trusted(netip.MustParseAddr("10.0.0.1")))
}
