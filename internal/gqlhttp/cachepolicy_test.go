package gqlhttp

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"

	"github.com/shop/bff/internal/auth"
	"github.com/shop/bff/internal/order"
)

// CachePolicy adds Authorization and Cookie to whatever Vary the
// middlewares set before it; a later Add to the shared value it may set
// changes no other response.
func TestCachePolicyVary(t *testing.T) {
	tests := []struct {
		name        string
		before, out []string
	}{
		{"none", nil, []string{"Authorization, Cookie"}},
		{"compressor", []string{"Accept-Encoding"}, []string{"Accept-Encoding", "Authorization, Cookie"}},
		{"compressor and CORS", []string{"Accept-Encoding", "Origin"}, []string{"Accept-Encoding", "Origin", "Authorization, Cookie"}},
		{"other", []string{"Origin"}, []string{"Origin", "Authorization, Cookie"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{}
			if tt.before != nil {
				h["Vary"] = slices.Clone(tt.before)
			}
			r := httptest.NewRequest("POST", "/graphql", nil)
			r = r.WithContext(auth.WithUser(r.Context(), &order.User{ID: "u1", Role: order.RoleCustomer}))
			CachePolicy(h, r)
			if !slices.Equal(h["Vary"], tt.out) {
				t.Fatalf("Vary %q, want %q", h["Vary"], tt.out)
			}
			if got := h.Get("Cache-Control"); got != "private, no-store" {
				t.Fatalf("Cache-Control %q", got)
			}
			h.Add("Vary", "X") // a later middleware's
			h2 := http.Header{"Vary": slices.Clone(tt.before)}
			if tt.before == nil {
				h2 = http.Header{}
			}
			CachePolicy(h2, r)
			if !slices.Equal(h2["Vary"], tt.out) {
				t.Fatalf("after a change to another response's headers: Vary %q, want %q", h2["Vary"], tt.out)
			}
		})
	}
}
