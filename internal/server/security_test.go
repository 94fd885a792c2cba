package server

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/shop/bff/internal/payments"
	"github.com/shop/bff/web"
)

// secCert writes a self-signed certificate for 127.0.0.1 into a temporary
// directory and returns the file names and a pool that trusts it.
func secCert(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "bff test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

// secRequest sends a request with "Name: value" headers through client
// (http.DefaultClient when nil) and returns the response with its body.
func secRequest(t *testing.T, client *http.Client, method, url, body string, headers ...string) (*http.Response, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range headers {
		k, v, _ := strings.Cut(h, ":")
		req.Header.Add(strings.TrimSpace(k), strings.TrimSpace(v))
	}
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// secSessionCookie signs in as email through POST /session and returns the
// session cookie of the response.
func secSessionCookie(t *testing.T, client *http.Client, base, email string, headers ...string) *http.Cookie {
	t.Helper()
	resp, body := secRequest(t, client, "POST", base+"/session", `{"email":"`+email+`"}`,
		append([]string{"Content-Type: application/json"}, headers...)...)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("sign-in: %d %s", resp.StatusCode, body)
	}
	for _, c := range resp.Cookies() {
		if c.Name == "bff_session" {
			return c
		}
	}
	t.Fatalf("sign-in set no session cookie: %v", resp.Header.Values("Set-Cookie"))
	return nil
}

func TestTLS(t *testing.T) {
	certFile, keyFile, pool := secCert(t)
	e := newEnv(t)
	cfg := e.config()
	cfg.TLSCertFile, cfg.TLSKeyFile = certFile, keyFile
	in := e.start(cfg, Options{})
	base := strings.Replace(in.URL, "http://", "https://", 1)
	addr := strings.TrimPrefix(in.URL, "http://")
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}}
	defer client.CloseIdleConnections()

	t.Run("HTTP/2 with HSTS and nosniff", func(t *testing.T) {
		for _, path := range []string{"/livez", "/readyz", "/", "/graphql?query=%7B__typename%7D"} {
			resp, body := secRequest(t, client, "GET", base+path, "")
			if resp.StatusCode != http.StatusOK {
				t.Errorf("GET %s: %d %s", path, resp.StatusCode, body)
			}
			if resp.ProtoMajor != 2 {
				t.Errorf("GET %s over %s, want HTTP/2", path, resp.Proto)
			}
			if resp.TLS == nil || resp.TLS.Version < tls.VersionTLS12 {
				t.Errorf("GET %s: TLS state %+v", path, resp.TLS)
			}
			if got := resp.Header.Get("Strict-Transport-Security"); !strings.HasPrefix(got, "max-age=") {
				t.Errorf("GET %s: Strict-Transport-Security %q", path, got)
			}
			if resp.Header.Get("X-Content-Type-Options") != "nosniff" {
				t.Errorf("GET %s: no nosniff", path)
			}
		}
	})
	t.Run("Secure session cookie", func(t *testing.T) {
		c := secSessionCookie(t, client, base, "alice@example.com")
		if !c.Secure || !c.HttpOnly || c.SameSite != http.SameSiteLaxMode {
			t.Fatalf("cookie %+v: want Secure, HttpOnly, SameSite=Lax", c)
		}
		resp, body := secRequest(t, client, "POST", base+"/graphql", `{"query":"{ viewer { email } }"}`,
			"Content-Type: application/json", "Cookie: bff_session="+c.Value)
		if resp.StatusCode != 200 || !strings.Contains(body, "alice@example.com") {
			t.Fatalf("cookie request over HTTP/2: %d %s", resp.StatusCode, body)
		}
	})
	t.Run("event stream over HTTP/2", func(t *testing.T) {
		req, _ := http.NewRequest("GET", base+"/events?stream=orders", nil)
		req.Header.Set("Authorization", "Bearer "+in.token("alice@example.com"))
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != 200 || resp.ProtoMajor != 2 {
			t.Fatalf("GET /events: %d over %s", resp.StatusCode, resp.Proto)
		}
		line, err := bufio.NewReader(resp.Body).ReadString('\n')
		if err != nil || !strings.HasPrefix(line, "retry: ") {
			t.Fatalf("first line %q, %v", line, err)
		}
	})
	t.Run("TLS 1.1 refused, TLS 1.2 accepted", func(t *testing.T) {
		d := &net.Dialer{Timeout: 5 * time.Second}
		conn, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11})
		if err == nil {
			v := conn.ConnectionState().Version
			conn.Close()
			t.Fatalf("a TLS 1.1 handshake succeeded (version %x)", v)
		}
		if !strings.Contains(err.Error(), "version") {
			t.Errorf("TLS 1.1 refused, but not for its version: %v", err)
		}
		conn, err = tls.DialWithDialer(d, "tcp", addr, &tls.Config{RootCAs: pool, MaxVersion: tls.VersionTLS12, NextProtos: []string{"h2"}})
		if err != nil {
			t.Fatalf("TLS 1.2: %v", err)
		}
		st := conn.ConnectionState()
		conn.Close()
		if st.Version != tls.VersionTLS12 || st.NegotiatedProtocol != "h2" {
			t.Fatalf("TLS 1.2 handshake: version %x, ALPN %q", st.Version, st.NegotiatedProtocol)
		}
	})
}

// TestSecurityHeadersEverywhere checks nosniff on every endpoint and
// outcome, no HSTS on plain HTTP, the web app's CSP, and Secure cookies
// with HSTS under COOKIE_SECURE.
func TestSecurityHeadersEverywhere(t *testing.T) {
	e := newEnv(t)
	in := e.start(nil, Options{})
	tok := in.token("alice@example.com")
	type call struct {
		method, path, body string
		headers            []string
		status             int
	}
	calls := []call{
		{"GET", "/livez", "", nil, 200},
		{"GET", "/readyz", "", nil, 200},
		{"GET", "/metrics", "", nil, 200},
		{"GET", "/", "", nil, 200},
		{"GET", "/orders/123", "", nil, 200},
		{"GET", "/nope.js", "", nil, 404},
		{"GET", "/graphiql", "", nil, 200},
		{"GET", "/graphql?query=%7B__typename%7D", "", nil, 200},
		{"POST", "/graphql", `{"query":"{ viewer { id } }"}`, []string{"Content-Type: application/json"}, 200},
		{"POST", "/graphql", `not json`, []string{"Content-Type: application/json"}, 400},
		{"POST", "/graphql", `{"query":"{ viewer { id } }"}`, []string{"Content-Type: application/json", "Authorization: Bearer nope"}, 401},
		{"GET", "/events?stream=orders", "", nil, 401},
		{"GET", "/events?stream=bad", "", []string{"Authorization: Bearer " + tok}, 400},
		{"POST", "/webhooks/payments", `{}`, nil, 401},
		{"POST", "/session", `{"email":"alice@example.com"}`, []string{"Content-Type: application/json"}, 200},
		{"GET", "/session", "", nil, 405},
	}
	for _, c := range calls {
		resp, body := secRequest(t, nil, c.method, in.URL+c.path, c.body, c.headers...)
		if resp.StatusCode != c.status {
			t.Errorf("%s %s: %d, want %d: %s", c.method, c.path, resp.StatusCode, c.status, body)
		}
		if resp.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s %s (%d): no X-Content-Type-Options: nosniff", c.method, c.path, resp.StatusCode)
		}
		if hsts := resp.Header.Get("Strict-Transport-Security"); hsts != "" {
			t.Errorf("%s %s: HSTS %q over plain HTTP without COOKIE_SECURE", c.method, c.path, hsts)
		}
		if strings.HasPrefix(c.path, "/session") {
			for _, ck := range resp.Cookies() {
				if ck.Secure {
					t.Errorf("cookie Secure over plain HTTP without COOKIE_SECURE")
				}
			}
		}
	}

	// An open event stream (hijacked HTTP/1.1) and a graphql-sse
	// subscription carry the headers too.
	for _, c := range []struct{ method, path, body string }{
		{"GET", "/events?stream=orders", ""},
		{"POST", "/graphql", `{"query":"subscription { orderEvents { id } }"}`},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		req, _ := http.NewRequestWithContext(ctx, c.method, in.URL+c.path, strings.NewReader(c.body))
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Accept", "text/event-stream")
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", c.method, c.path, err)
		}
		if resp.StatusCode != 200 || resp.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("stream %s %s: %d, nosniff %q", c.method, c.path, resp.StatusCode, resp.Header.Get("X-Content-Type-Options"))
		}
		resp.Body.Close()
		cancel()
	}

	// The web app: its CSP allows only its own origin.
	for _, path := range []string{"/", "/index.html", "/orders/123"} {
		resp, _ := secRequest(t, nil, "GET", in.URL+path, "")
		if got := resp.Header.Get("Content-Security-Policy"); got != web.CSP {
			t.Errorf("GET %s: CSP %q, want web.CSP", path, got)
		}
	}
	directives := map[string][]string{}
	for _, d := range strings.Split(web.CSP, ";") {
		f := strings.Fields(d)
		if len(f) == 0 {
			continue
		}
		directives[f[0]] = f[1:]
		for _, src := range f[1:] {
			switch {
			case src == "'self'", src == "'none'":
			case src == "data:" && f[0] == "img-src": // inline images only, no other origin
			default:
				t.Errorf("CSP %s allows %s: only the app's own origin may be allowed", f[0], src)
			}
		}
	}
	for _, d := range []string{"default-src", "script-src", "connect-src", "frame-ancestors", "base-uri", "form-action"} {
		if _, ok := directives[d]; !ok {
			t.Errorf("CSP has no %s", d)
		}
	}

	// COOKIE_SECURE=true (TLS terminated elsewhere): Secure cookie and HSTS.
	cfg := e.config()
	cfg.CookieSecure = true
	sec := e.start(cfg, Options{})
	c := secSessionCookie(t, nil, sec.URL, "alice@example.com")
	if !c.Secure {
		t.Errorf("COOKIE_SECURE=true: cookie not Secure")
	}
	for _, path := range []string{"/livez", "/graphql?query=%7B__typename%7D", "/events?stream=orders"} {
		resp, _ := secRequest(t, nil, "GET", sec.URL+path, "")
		if !strings.HasPrefix(resp.Header.Get("Strict-Transport-Security"), "max-age=") {
			t.Errorf("COOKIE_SECURE=true: GET %s (%d) has no HSTS", path, resp.StatusCode)
		}
	}
}

func TestCORS(t *testing.T) {
	e := newEnv(t)
	cfg := e.config()
	cfg.CORSOrigins = []string{"https://shop.example.com", "http://localhost:5173"}
	in := e.start(cfg, Options{})
	tok := in.token("alice@example.com")
	const allowed, evil = "https://shop.example.com", "https://evil.example.com"
	q := `{"query":"{ viewer { email } }"}`

	hasCORS := func(resp *http.Response) bool {
		for k := range resp.Header {
			if strings.HasPrefix(k, "Access-Control-") {
				return true
			}
		}
		return false
	}
	varyOrigin := func(resp *http.Response) bool {
		for _, v := range resp.Header.Values("Vary") {
			for _, f := range strings.Split(v, ",") {
				if strings.EqualFold(strings.TrimSpace(f), "Origin") {
					return true
				}
			}
		}
		return false
	}

	// Preflights of the endpoints a web app calls.
	for _, path := range []string{"/graphql", "/session", "/events?stream=orders"} {
		resp, body := secRequest(t, nil, "OPTIONS", in.URL+path, "", "Origin: "+allowed,
			"Access-Control-Request-Method: POST",
			"Access-Control-Request-Headers: authorization, content-type, idempotency-key, x-request-id")
		if resp.StatusCode != http.StatusNoContent {
			t.Errorf("preflight %s: %d %s", path, resp.StatusCode, body)
		}
		if got := resp.Header.Get("Access-Control-Allow-Origin"); got != allowed {
			t.Errorf("preflight %s: Allow-Origin %q", path, got)
		}
		if resp.Header.Get("Access-Control-Allow-Credentials") != "true" {
			t.Errorf("preflight %s: no Allow-Credentials", path)
		}
		allow := strings.ToLower(resp.Header.Get("Access-Control-Allow-Headers"))
		for _, h := range []string{"idempotency-key", "authorization", "content-type", "x-request-id"} {
			if !strings.Contains(allow, h) {
				t.Errorf("preflight %s: Allow-Headers %q lacks %s", path, allow, h)
			}
		}
		if m := resp.Header.Get("Access-Control-Allow-Methods"); !strings.Contains(m, "POST") || !strings.Contains(m, "GET") {
			t.Errorf("preflight %s: Allow-Methods %q", path, m)
		}
		if !varyOrigin(resp) {
			t.Errorf("preflight %s: no Vary: Origin", path)
		}
		resp, _ = secRequest(t, nil, "OPTIONS", in.URL+path, "", "Origin: "+evil, "Access-Control-Request-Method: POST")
		if hasCORS(resp) || resp.StatusCode < 400 {
			t.Errorf("preflight %s from a disallowed origin: %d with %v", path, resp.StatusCode, resp.Header)
		}
	}

	// Actual requests: successes and failures alike carry the headers for
	// an allowed origin (so the app can read error codes and request ids).
	for _, c := range []struct {
		name    string
		headers []string
		status  int
	}{
		{"bearer", []string{"Authorization: Bearer " + tok}, 200},
		{"anonymous", nil, 200},
		{"bad token", []string{"Authorization: Bearer nope"}, 401},
	} {
		resp, body := secRequest(t, nil, "POST", in.URL+"/graphql", q,
			append([]string{"Content-Type: application/json", "Origin: " + allowed}, c.headers...)...)
		if resp.StatusCode != c.status {
			t.Errorf("%s: %d %s", c.name, resp.StatusCode, body)
		}
		if got := resp.Header.Get("Access-Control-Allow-Origin"); got != allowed {
			t.Errorf("%s: Allow-Origin %q, want the origin echoed (never *)", c.name, got)
		}
		if resp.Header.Get("Access-Control-Allow-Credentials") != "true" || !varyOrigin(resp) {
			t.Errorf("%s: credentials %q, Vary %v", c.name, resp.Header.Get("Access-Control-Allow-Credentials"), resp.Header.Values("Vary"))
		}
		if !strings.Contains(resp.Header.Get("Access-Control-Expose-Headers"), "X-Request-ID") {
			t.Errorf("%s: X-Request-ID not exposed", c.name)
		}

		resp, _ = secRequest(t, nil, "POST", in.URL+"/graphql", q,
			append([]string{"Content-Type: application/json", "Origin: " + evil}, c.headers...)...)
		if hasCORS(resp) {
			t.Errorf("%s from a disallowed origin got CORS headers: %v", c.name, resp.Header)
		}
		if !varyOrigin(resp) {
			t.Errorf("%s from a disallowed origin: no Vary: Origin", c.name)
		}
	}
	resp, _ := secRequest(t, nil, "GET", in.URL+"/events?stream=orders", "", "Origin: http://localhost:5173")
	if resp.StatusCode != 401 || resp.Header.Get("Access-Control-Allow-Origin") != "http://localhost:5173" {
		t.Errorf("GET /events anonymous from an allowed origin: %d, Allow-Origin %q", resp.StatusCode, resp.Header.Get("Access-Control-Allow-Origin"))
	}
	resp, _ = secRequest(t, nil, "GET", in.URL+"/livez", "")
	if hasCORS(resp) {
		t.Errorf("a request without Origin got CORS headers")
	}

	// A wildcard or malformed origin never starts.
	bad := e.config()
	bad.CORSOrigins = []string{"https://*.example.com"}
	if _, err := New(t.Context(), bad, Options{}); err == nil || !strings.Contains(err.Error(), "CORS_ORIGINS") {
		t.Errorf("a wildcard origin: %v", err)
	}
}

func TestTrustedProxies(t *testing.T) {
	e := newEnv(t)
	// The limiter's clock stands still: a budget spent stays spent, however
	// long the requests take, so each 429 below depends only on who was
	// charged.
	frozen := time.Now()
	limited := func(trusted []string) *instance {
		cfg := e.config()
		cfg.TrustedProxies = trusted
		cfg.RateQueriesPerSecond, cfg.RateQueriesBurst = 1, 2
		return e.start(cfg, Options{RateLimitClock: func() time.Time { return frozen }})
	}
	anon := func(in *instance, headers ...string) int {
		resp, _ := secRequest(t, nil, "POST", in.URL+"/graphql", `{"query":"{ viewer { id } }"}`,
			append([]string{"Content-Type: application/json"}, headers...)...)
		return resp.StatusCode
	}

	// Behind a trusted proxy (the test client at 127.0.0.1): the client
	// address of X-Forwarded-For keys the anonymous budget.
	proxied := limited([]string{"127.0.0.0/8", "10.0.0.0/8"})
	for i := range 3 {
		want := 200
		if i == 2 {
			want = 429
		}
		if got := anon(proxied, "X-Forwarded-For: 198.51.100.1"); got != want {
			t.Errorf("client 198.51.100.1 request %d: %d, want %d", i+1, got, want)
		}
	}
	if got := anon(proxied, "X-Forwarded-For: 198.51.100.2"); got != 200 {
		t.Errorf("another client behind the proxy shares the first one's budget: %d", got)
	}
	if got := anon(proxied, "X-Forwarded-For: 198.51.100.1, 10.0.0.9"); got != 429 { // 10.0.0.9 is a trusted hop
		t.Errorf("client 198.51.100.1 behind a second proxy: %d, want 429", got)
	}
	// X-Forwarded-Proto: https from the trusted proxy: HSTS and a Secure cookie.
	resp, _ := secRequest(t, nil, "GET", proxied.URL+"/livez", "", "X-Forwarded-Proto: https")
	if !strings.HasPrefix(resp.Header.Get("Strict-Transport-Security"), "max-age=") {
		t.Errorf("X-Forwarded-Proto https from a trusted proxy: no HSTS")
	}
	if c := secSessionCookie(t, nil, proxied.URL, "alice@example.com", "X-Forwarded-Proto: https"); !c.Secure {
		t.Errorf("X-Forwarded-Proto https from a trusted proxy: cookie not Secure")
	}
	if c := secSessionCookie(t, nil, proxied.URL, "alice@example.com", "X-Forwarded-Proto: http"); c.Secure {
		t.Errorf("X-Forwarded-Proto http: cookie Secure")
	}

	// Not a trusted proxy: X-Forwarded-* are ignored; spoofed addresses
	// share the peer's budget and claim no https.
	direct := limited([]string{"192.0.2.0/24"})
	codes := []int{}
	for i := range 3 {
		codes = append(codes, anon(direct, "X-Forwarded-For: 203.0.113."+string(rune('1'+i))))
	}
	if codes[0] != 200 || codes[2] != 429 {
		t.Errorf("spoofed X-Forwarded-For from an untrusted peer escaped the budget: %v", codes)
	}
	resp, _ = secRequest(t, nil, "GET", direct.URL+"/livez", "", "X-Forwarded-Proto: https")
	if resp.Header.Get("Strict-Transport-Security") != "" {
		t.Errorf("X-Forwarded-Proto from an untrusted peer was believed")
	}
	if c := secSessionCookie(t, nil, direct.URL, "alice@example.com", "X-Forwarded-Proto: https"); c.Secure {
		t.Errorf("X-Forwarded-Proto from an untrusted peer made the cookie Secure")
	}

	bad := e.config()
	bad.TrustedProxies = []string{"10.0.0.0/33"}
	if _, err := New(t.Context(), bad, Options{}); err == nil || !strings.Contains(err.Error(), "TRUSTED_PROXIES") {
		t.Errorf("an invalid CIDR: %v", err)
	}
}

// TestSessionTokensEndToEnd checks the JWT rules through the server:
// alg none, RS256, HS512, expired, future nbf and foreign-secret tokens
// get 401; during a rotation tokens of the second secret are accepted and
// new tokens are signed with the first; cookie-authenticated mutations
// need a CSRF-safe request.
func TestSessionTokensEndToEnd(t *testing.T) {
	e := newEnv(t)
	cfg := e.config()
	const newSecret, oldSecret = "rotated-new-secret-0123456789abcdef", "rotated-old-secret-0123456789abcdef"
	cfg.JWTSecrets = []string{newSecret, oldSecret}
	in := e.start(cfg, Options{})
	alice := in.token("alice@example.com") // signed with the first secret
	parsed, _, err := jwt.NewParser().ParseUnverified(alice, jwt.MapClaims{})
	if err != nil {
		t.Fatal(err)
	}
	claims := parsed.Claims.(jwt.MapClaims)
	sub := claims["sub"].(string)
	now := time.Now()
	mk := func(m jwt.SigningMethod, key any, mutate func(jwt.MapClaims)) string {
		c := jwt.MapClaims{"sub": sub, "role": "CUSTOMER", "iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(time.Hour).Unix()}
		if mutate != nil {
			mutate(c)
		}
		s, err := jwt.NewWithClaims(m, c).SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	rsaKey := secRSAKey(t)
	viewer := `{ viewer { email } }`
	for _, c := range []struct {
		name, token string
		ok          bool
	}{
		{"issued", alice, true},
		{"second secret (rotation)", mk(jwt.SigningMethodHS256, []byte(oldSecret), nil), true},
		{"expired within leeway", mk(jwt.SigningMethodHS256, []byte(newSecret), func(c jwt.MapClaims) { c["exp"] = now.Add(-5 * time.Second).Unix() }), true},
		{"expired", mk(jwt.SigningMethodHS256, []byte(newSecret), func(c jwt.MapClaims) { c["exp"] = now.Add(-5 * time.Minute).Unix() }), false},
		{"nbf ahead", mk(jwt.SigningMethodHS256, []byte(newSecret), func(c jwt.MapClaims) { c["nbf"] = now.Add(5 * time.Minute).Unix() }), false},
		{"no exp", mk(jwt.SigningMethodHS256, []byte(newSecret), func(c jwt.MapClaims) { delete(c, "exp") }), false},
		{"alg none", mk(jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, nil), false},
		{"RS256", mk(jwt.SigningMethodRS256, rsaKey, nil), false},
		{"HS512 with the secret", mk(jwt.SigningMethodHS512, []byte(newSecret), nil), false},
		{"foreign secret", mk(jwt.SigningMethodHS256, []byte("guessed"), nil), false},
		{"staff role claimed by a customer", mk(jwt.SigningMethodHS256, []byte(newSecret), func(c jwt.MapClaims) { c["role"] = "STAFF" }), false},
	} {
		r := in.post(c.token, viewer, nil)
		if c.ok && (r.Status != 200 || field(r.Data, "viewer", "email") != "alice@example.com") {
			t.Errorf("%s: %d %s", c.name, r.Status, r.Raw)
		}
		if !c.ok && (r.Status != 401 || r.code() != "UNAUTHENTICATED") {
			t.Errorf("%s: %d %s, want 401 UNAUTHENTICATED", c.name, r.Status, r.Raw)
		}
	}
	// The sign-in signs with the first secret only.
	ck := secSessionCookie(t, nil, in.URL, "alice@example.com")
	if _, err := jwt.Parse(ck.Value, func(*jwt.Token) (any, error) { return []byte(newSecret), nil }, jwt.WithValidMethods([]string{"HS256"})); err != nil {
		t.Errorf("a new session token does not verify with the first secret: %v", err)
	}
	if _, err := jwt.Parse(ck.Value, func(*jwt.Token) (any, error) { return []byte(oldSecret), nil }); err == nil {
		t.Errorf("a new session token verifies with the second secret")
	}

	// Cookie-authenticated mutations: JSON or a custom header, never a form.
	const mutation = `mutation { cancelOrder(id: "00000000-0000-4000-8000-000000000000", expectedVersion: 1) { order { id } } }`
	cookie := "Cookie: bff_session=" + ck.Value
	key := "Idempotency-Key: csrf-" + time.Now().Format("150405.000000000")
	form := "query=" + strings.ReplaceAll(mutation, " ", "+")
	for _, c := range []struct {
		name    string
		body    string
		headers []string
		status  int
		code    string
	}{
		{"form post", form, []string{"Content-Type: application/x-www-form-urlencoded"}, 403, "FORBIDDEN"},
		{"multipart", "--x--", []string{"Content-Type: multipart/form-data; boundary=x"}, 403, "FORBIDDEN"},
		{"text/plain JSON", `{"query":` + jsonString(mutation) + `}`, []string{"Content-Type: text/plain"}, 403, "FORBIDDEN"},
		{"JSON", `{"query":` + jsonString(mutation) + `}`, []string{"Content-Type: application/json"}, 200, "NOT_FOUND"},
		{"custom header", `{"query":` + jsonString(mutation) + `}`, []string{"Content-Type: text/plain", "X-Requested-With: XMLHttpRequest"}, 0, ""},
	} {
		resp, body := secRequest(t, nil, "POST", in.URL+"/graphql", c.body, append([]string{cookie, key + c.name}, c.headers...)...)
		if c.status == 0 { // past the CSRF check; what the GraphQL handler makes of text/plain is its business
			if resp.StatusCode == 403 && strings.Contains(body, "FORBIDDEN") {
				t.Errorf("%s: refused by the CSRF check: %s", c.name, body)
			}
			continue
		}
		if resp.StatusCode != c.status || !strings.Contains(body, `"`+c.code+`"`) {
			t.Errorf("%s: %d %s, want %d %s", c.name, resp.StatusCode, body, c.status, c.code)
		}
	}
}

func TestShortJWTSecretRefusedAtStart(t *testing.T) {
	e := newEnv(t)
	cfg := e.config()
	cfg.JWTSecrets = []string{"0123456789abcdef0123456789abcdef", "too-short-to-be-safe"}
	_, err := New(t.Context(), cfg, Options{Logger: slog.New(slog.NewJSONHandler(io.Discard, nil))})
	if err == nil || !strings.Contains(err.Error(), "JWT_SECRET") {
		t.Fatalf("a 20-byte JWT secret: %v", err)
	}
}

func jsonString(s string) string {
	var b bytes.Buffer
	b.WriteByte('"')
	for _, r := range s {
		switch r {
		case '"', '\\':
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	b.WriteByte('"')
	return b.String()
}

func secRSAKey(t *testing.T) *rsa.PrivateKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestNoSecretsInLogsResponsesOrMetrics runs an end-to-end flow (sign-in,
// queries, a keyed mutation and its replay, an invalid token, webhooks
// with bad signatures, /metrics) and greps every log line, every response
// (headers and bodies) and the /metrics output for the session token, the
// JWT and webhook secrets and the database password. The only place a
// token may appear is the sign-in answer that hands it out.
func TestNoSecretsInLogsResponsesOrMetrics(t *testing.T) {
	e := newEnv(t)
	cfg := e.config()
	const (
		jwtSecret     = "jwt-secret-Vq8mT3kX9pL2rW7zN4cY-5gHj"
		webhookSecret = "whsec-secret-Hb6nJ1sD5fG8kQ3tM0-x7Zq"
		dbPassword    = "pg-password-Rz4wE7uI2oP9aS6d"
	)
	cfg.JWTSecrets = []string{jwtSecret}
	cfg.WebhookSecrets = []string{webhookSecret}
	u, err := url.Parse(cfg.DatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword(u.User.Username(), dbPassword) // trust auth: Postgres ignores it
	cfg.DatabaseURL = u.String()
	in := e.start(cfg, Options{})

	var seen bytes.Buffer // every response except the sign-in's token
	record := func(resp *http.Response, body string) {
		for k, vs := range resp.Header {
			if k == "Set-Cookie" {
				continue
			}
			fmt.Fprintf(&seen, "%s: %s\n", k, strings.Join(vs, ", "))
		}
		seen.WriteString(body + "\n")
	}
	send := func(method, path, body string, headers ...string) (*http.Response, string) {
		resp, b := secRequest(t, nil, method, in.URL+path, body, headers...)
		record(resp, b)
		return resp, b
	}

	// Sign-in: the token is handed out here, and only here.
	resp, body := secRequest(t, nil, "POST", in.URL+"/session", `{"email":"alice@example.com"}`, "Content-Type: application/json")
	var session struct{ Token string }
	if err := json.Unmarshal([]byte(body), &session); err != nil || session.Token == "" {
		t.Fatalf("sign-in: %d %s", resp.StatusCode, body)
	}
	tok := session.Token
	bearer := "Authorization: Bearer " + tok
	cookie := "Cookie: bff_session=" + tok
	jsonCT := "Content-Type: application/json"

	send("POST", "/graphql", `{"query":"query Home { homeScreen { viewer { email } recentOrders { id } } }"}`, jsonCT, bearer)
	send("POST", "/graphql", `{"query":"query Home { homeScreen { viewer { email } recentOrders { id } } }"}`, jsonCT, cookie)
	send("GET", "/graphql?query=%7Bviewer%7Bid%7D%7D", "", bearer)
	send("POST", "/graphql", `{"query":"{ orderScreen(id: \"00000000-0000-4000-8000-000000000000\") { lastEventId } }"}`, jsonCT, bearer)
	send("POST", "/graphql", `{"query":"{ viewer { "}`, jsonCT, bearer)
	send("POST", "/graphql", `{"query":"mutation { cancelOrder(id: \"x\", expectedVersion: 1) { order { id } } }"}`, "Content-Type: text/plain", cookie)
	r := in.post(tok, `{ products(first: 1) { edges { node { id } } } }`, nil)
	product := field(r.Data, "products", "edges", 0, "node", "id")
	place, _ := json.Marshal(map[string]any{"query": `mutation($in: PlaceOrderInput!) { placeOrder(input: $in) { order { id } } }`,
		"variables": map[string]any{"in": azPlaceInput(fmt.Sprint(product))}})
	for range 2 { // the second is a replay
		resp, b := send("POST", "/graphql", string(place), jsonCT, bearer, "Idempotency-Key: secrets-test-key")
		if resp.StatusCode != 200 || !strings.Contains(b, `"placeOrder"`) {
			t.Fatalf("placeOrder: %d %s", resp.StatusCode, b)
		}
	}
	send("POST", "/graphql", string(place), jsonCT, bearer) // no key: IDEMPOTENCY_KEY_REQUIRED

	// Invalid credentials carrying secret-looking material.
	tampered := tok[:len(tok)-4] + "AAAA"
	for _, h := range []string{"Authorization: Bearer " + tampered, "Cookie: bff_session=" + tampered, "Authorization: Basic " + tok} {
		if resp, _ := send("POST", "/graphql", `{"query":"{ viewer { id } }"}`, jsonCT, h); resp.StatusCode != 401 {
			t.Errorf("%s: %d", h[:20], resp.StatusCode)
		}
	}
	send("GET", "/events?stream=order:"+tok, "", bearer)
	send("GET", "/events?stream=orders&lastEventId="+tampered, "", "Authorization: Bearer "+tampered)

	// Webhooks with bad signatures: another secret, and the right secret
	// over another body.
	hook := `{"id":"evt_secret_test","type":"payment.succeeded","created":1,"data":{"orderId":"00000000-0000-4000-8000-000000000000","amountCents":1,"currency":"USD"}}`
	for _, sig := range []string{
		payments.Sign([]byte("some-other-secret"), time.Now(), []byte(hook)),
		payments.Sign([]byte(webhookSecret), time.Now(), []byte(`{"id":"other"}`)),
		"t=1,v1=" + strings.Repeat("0", 64),
		"garbage " + webhookSecret,
	} {
		if resp, _ := send("POST", "/webhooks/payments", hook, jsonCT, "Webhook-Signature: "+sig); resp.StatusCode != 401 {
			t.Errorf("bad webhook signature: %d", resp.StatusCode)
		}
	}
	send("GET", "/readyz", "")
	_, metrics := send("GET", "/metrics", "")

	logs := in.logs.String()
	if !strings.Contains(logs, `"path":"/webhooks/payments"`) || !strings.Contains(metrics, "bff_") {
		t.Fatalf("the flow left no trace to check: logs %d bytes, metrics %d bytes", len(logs), len(metrics))
	}
	parts := strings.Split(tok, ".")
	secrets := map[string]string{
		"session token":           tok,
		"session token payload":   parts[1],
		"session token signature": parts[2],
		"tampered token":          tampered,
		"JWT secret":              jwtSecret,
		"webhook secret":          webhookSecret,
		"database password":       dbPassword,
	}
	for name, s := range secrets {
		for where, text := range map[string]string{"logs": logs, "responses": seen.String(), "/metrics": metrics} {
			if strings.Contains(text, s) {
				i := strings.Index(text, s)
				t.Errorf("the %s appears in the %s: …%s…", name, where, text[max(0, i-200):min(len(text), i+len(s)+50)])
			}
		}
	}

	// A database that cannot be reached: the error names no password.
	bad := e.config()
	bu, _ := url.Parse(bad.DatabaseURL)
	bu.User = url.UserPassword("postgres", dbPassword)
	bu.Host = "127.0.0.1:1"
	bad.DatabaseURL = bu.String()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := New(ctx, bad, Options{Logger: slog.New(slog.NewJSONHandler(io.Discard, nil))}); err == nil {
		t.Errorf("a server started without its database")
	} else if strings.Contains(err.Error(), dbPassword) {
		t.Errorf("the start-up error shows the database password: %v", err)
	}
}

// TestUndecodableCursorsAreBadInput: an `after` the API did not issue is
// BAD_USER_INPUT on "after" (errors.md), also when it decodes to bytes
// Postgres cannot store (NUL, invalid UTF-8: these were INTERNAL errors),
// is a second spelling of an issued cursor, or holds a time no order has.
func TestUndecodableCursorsAreBadInput(t *testing.T) {
	e := newEnv(t)
	in := e.start(nil, Options{})
	tok := in.token("alice@example.com")
	b64 := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	for _, c := range []struct{ query, after string }{
		{"products", b64("p1:\x00")},
		{"products", b64("p1:SKU\xff")},
		{"products", b64("p1:")},
		{"products", "cDE6U0tVLTAwMR"},   // non-canonical spelling of p1:SKU-001
		{"products", "cDE6U0tV\nLTAwMQ"}, // base64 skips line breaks
		{"orders", b64("o1:-99999999999999999:6f1c1a52-0000-4000-8000-000000000001")},
		{"ordersScreen", b64("o1:9223372036854775807:6f1c1a52-0000-4000-8000-000000000001")},
	} {
		sel := "edges { cursor }"
		if c.query == "ordersScreen" {
			sel = "orders { edges { cursor } }"
		}
		r := in.post(tok, `query($a: String) { `+c.query+`(first: 1, after: $a) { `+sel+` } }`, map[string]any{"a": c.after})
		if r.code() != "BAD_USER_INPUT" || r.Errors[0].Extensions["field"] != "after" {
			t.Errorf("%s(after: %q): %s", c.query, c.after, r.Raw)
		}
	}
}
