package httpx

import "net/http"

// HeaderValue is a response header value made once and shared by every
// response that sends it, so setting it allocates nothing. Nothing may
// modify its slice in place: net/http and the middlewares read response
// headers, replace them (Set) or append to them (Add), and an append to
// its full slice copies it.
type HeaderValue []string

// NewHeaderValue returns the shared header value v.
func NewHeaderValue(v string) HeaderValue { return HeaderValue{v}[:1:1] }

// Set sets the header key, in canonical form (see
// http.CanonicalHeaderKey), of h to v.
func (v HeaderValue) Set(h http.Header, key string) { h[key] = v }

// SetDefault sets the header key of h (canonical form) to v unless h has
// it already.
func (v HeaderValue) SetDefault(h http.Header, key string) {
	if _, ok := h[key]; !ok {
		h[key] = v
	}
}
