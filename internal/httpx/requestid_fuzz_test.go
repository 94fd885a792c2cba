package httpx_test

import (
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/shop/bff/internal/httpx"
)

// requestIDRule is the X-Request-ID rule of errors.md, as a regexp.
var requestIDRule = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,128}$`)

// FuzzRequestID checks ValidRequestID against the rule of errors.md and
// the RequestID middleware on arbitrary header values: a valid id is kept
// exactly, anything else is replaced by a new UUID; the echoed header and
// the context always carry the same valid id, with nothing that could
// split a header or a log line.
func FuzzRequestID(f *testing.F) {
	for _, s := range []string{"abc-123_x.y:z", strings.Repeat("a", 128), strings.Repeat("a", 129), "a b", "a\r\nX-Evil: 1", "ü", "", "\x00", "01HZX3N5W6Q7R8S9T0V1W2X3Y4"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		valid := httpx.ValidRequestID(id)
		if valid != requestIDRule.MatchString(id) {
			t.Fatalf("ValidRequestID(%q) = %v, the rule says %v", id, valid, !valid)
		}
		var seen string
		h := httpx.RequestID(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			seen = httpx.RequestIDFrom(r.Context())
		}))
		req := httptest.NewRequest("GET", "/", nil)
		req.Header[http.CanonicalHeaderKey(httpx.HeaderRequestID)] = []string{id} // raw, as a client could send it
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		got := rec.Header().Get(httpx.HeaderRequestID)
		if got != seen || !requestIDRule.MatchString(got) {
			t.Fatalf("header %q, context %q", got, seen)
		}
		if valid && got != id {
			t.Fatalf("valid id %q replaced by %q", id, got)
		}
		if !valid {
			if got == id {
				t.Fatalf("invalid id %q kept", id)
			}
			if _, err := uuid.Parse(got); err != nil {
				t.Fatalf("generated id %q is no UUID", got)
			}
		}
	})
}
