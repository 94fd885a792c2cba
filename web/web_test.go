package web

import (
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

func get(t *testing.T, h http.Handler, path string, header ...string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, path, nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func TestHandlerServesFilesWithTypesAndCSP(t *testing.T) {
	h := Handler()
	cases := []struct {
		path, contentType, contains string
	}{
		{"/", "text/html; charset=utf-8", `<script type="module" src="/js/app.js">`},
		{"/index.html", "text/html; charset=utf-8", `data-testid="live-badge"`},
		{"/js/app.js", "text/javascript; charset=utf-8", "import * as api from './api.js'"},
		{"/js/api.js", "text/javascript; charset=utf-8", "Idempotency-Key"},
		{"/js/queries.js", "text/javascript; charset=utf-8", "orderScreen"},
		{"/css/app.css", "text/css; charset=utf-8", ".banner"},
		{"/favicon.svg", "image/svg+xml", "<svg"},
		// Client-side routes fall back to the page.
		{"/orders", "text/html; charset=utf-8", "<main"},
		{"/order/abc", "text/html; charset=utf-8", "<main"},
	}
	for _, c := range cases {
		rec := get(t, h, c.path)
		if rec.Code != http.StatusOK {
			t.Errorf("%s: status %d", c.path, rec.Code)
			continue
		}
		if got := rec.Header().Get("Content-Type"); got != c.contentType {
			t.Errorf("%s: Content-Type %q, want %q", c.path, got, c.contentType)
		}
		if got := rec.Header().Get("Content-Security-Policy"); got != CSP {
			t.Errorf("%s: CSP %q", c.path, got)
		}
		if got := rec.Header().Get("X-Content-Type-Options"); got != "nosniff" {
			t.Errorf("%s: X-Content-Type-Options %q", c.path, got)
		}
		if got := rec.Header().Get("Cache-Control"); got != "no-cache" {
			t.Errorf("%s: Cache-Control %q", c.path, got)
		}
		if !strings.Contains(rec.Body.String(), c.contains) {
			t.Errorf("%s: body lacks %q", c.path, c.contains)
		}
	}
	if !strings.Contains(CSP, "default-src 'self'") || !strings.Contains(CSP, "frame-ancestors 'none'") {
		t.Errorf("CSP too weak: %s", CSP)
	}
}

func TestHandlerNotFoundAndMethods(t *testing.T) {
	h := Handler()
	for _, p := range []string{"/js/missing.js", "/nope.png", "/css/other"} {
		if rec := get(t, h, p); rec.Code != http.StatusNotFound {
			t.Errorf("%s: status %d, want 404", p, rec.Code)
		}
	}
	req := httptest.NewRequest(http.MethodPost, "/", strings.NewReader("x"))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST /: status %d, want 405", rec.Code)
	}
}

func TestHandlerRevalidatesWithETag(t *testing.T) {
	h := Handler()
	first := get(t, h, "/js/api.js")
	etag := first.Header().Get("ETag")
	if etag == "" {
		t.Fatal("no ETag")
	}
	if rec := get(t, h, "/js/api.js", "If-None-Match", etag); rec.Code != http.StatusNotModified {
		t.Errorf("If-None-Match: status %d, want 304", rec.Code)
	}
	if other := get(t, h, "/js/app.js").Header().Get("ETag"); other == etag {
		t.Errorf("different files share ETag %s", etag)
	}
}

// TestNoExternalResources scans every embedded file: the app must load
// nothing from another origin, and must not need inline script or style.
func TestNoExternalResources(t *testing.T) {
	external := regexp.MustCompile(`(?i)(https?:)?//[a-z0-9.-]+\.[a-z]{2,}`)
	inline := regexp.MustCompile(`(?i)<script(\s[^>]*)?>\s*[^<\s]|<style|\sstyle=|\son[a-z]+=|javascript:|@import\s+url\(`)
	const svgNS = `xmlns="http://www.w3.org/2000/svg"` // an XML namespace, never fetched
	for _, bad := range []string{`<script src="https://cdn.example.com/x.js">`, `url(//fonts.example.org/a)`} {
		if !external.MatchString(bad) {
			t.Fatalf("scanner misses %s", bad)
		}
	}
	for _, bad := range []string{"<script>go()</script>", `<b style="x">`, `<a onclick="x()">`} {
		if !inline.MatchString(bad) {
			t.Fatalf("scanner misses %s", bad)
		}
	}
	n := 0
	err := fs.WalkDir(Files(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		n++
		b, err := fs.ReadFile(Files(), p)
		if err != nil {
			return err
		}
		for _, m := range external.FindAllString(strings.ReplaceAll(string(b), svgNS, ""), -1) {
			t.Errorf("%s references an external URL: %s", p, m)
		}
		if strings.HasSuffix(p, ".html") || strings.HasSuffix(p, ".svg") {
			if m := inline.FindString(string(b)); m != "" {
				t.Errorf("%s has inline script/style/handler: %q", p, m)
			}
		}
		if strings.HasSuffix(p, ".js") && strings.Contains(string(b), "innerHTML") {
			t.Errorf("%s uses innerHTML; build elements instead", p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 5 {
		t.Fatalf("only %d embedded files", n)
	}
}

// TestAPIModule runs the node unit tests of the retry and idempotency rules in api.js.
func TestAPIModule(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("node is required for the api.js tests (install Node.js 20+, e.g. apt-get install nodejs): %v", err)
	}
	out, err := exec.Command(node, "--test", "testdata/").CombinedOutput()
	if err != nil {
		t.Fatalf("node --test failed: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "# fail 0") {
		t.Fatalf("unexpected node output:\n%s", out)
	}
}
