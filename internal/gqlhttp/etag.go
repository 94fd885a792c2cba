package gqlhttp

import (
	"context"
	"net/http"
	"strconv"
	"strings"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/ast"

	"github.com/shop/bff/internal/httpx"
)

// HTTP caching of GraphQL responses (caching.md rule 11):
//
//   - a screen query's response carries a weak ETag derived from its cache
//     key (screen, operation fingerprint, viewer, role) and the
//     generations its value is stored under, with Cache-Control: private,
//     no-cache and Vary: Authorization, Cookie;
//   - a GET with a matching If-None-Match is answered 304 after one Redis
//     round trip (the generations), without running a resolver;
//   - the public catalogue (a query of products only) gets Cache-Control:
//     public, max-age;
//   - other queries are private, no-cache; mutations no-store.
//
// A POST carries the same headers, but only GET (and HEAD) can be
// revalidated: HTTP defines 304 for them alone.

// ProductsMaxAge is the max-age, in seconds, of the public catalogue.
const ProductsMaxAge = 60

// Cache-Control values of GraphQL responses.
const (
	ccPersonal = "private, no-cache"
	ccMutation = "no-store"
)

var ccProducts = "public, max-age=" + strconv.Itoa(ProductsMaxAge)

// Shared header values of every response (see httpx.HeaderValue).
var (
	hvPersonal = httpx.NewHeaderValue(ccPersonal)
	hvPrivate  = httpx.NewHeaderValue("private, no-store")
	hvVary     = httpx.NewHeaderValue("Authorization, Cookie")
	// hvVaryCompressed is hvVary after the compressor's Accept-Encoding.
	hvVaryCompressed = httpx.HeaderValue{"Accept-Encoding", "Authorization, Cookie"}[:2:2]
	hvJSON           = httpx.NewHeaderValue(ctJSON)
	hvGraphQLJSON    = httpx.NewHeaderValue(ctGraphQLJSON)
)

// Header keys, canonical.
const (
	cacheControlKey = "Cache-Control"
	contentTypeKey  = "Content-Type"
	cacheStatusKey  = "Cache-Status"
)

// setContentType sets the Content-Type of h to ct.
func setContentType(h http.Header, ct string) {
	switch ct {
	case ctJSON:
		hvJSON.Set(h, contentTypeKey)
	case ctGraphQLJSON:
		hvGraphQLJSON.Set(h, contentTypeKey)
	default:
		h.Set(contentTypeKey, ct)
	}
}

// etagKey is the ETag header as net/http keeps it (canonical, "Etag"):
// setting it costs no conversion.
var etagKey = http.CanonicalHeaderKey("ETag")

// validatorKey carries the validator of the response being served.
type validatorKey struct{}

// withValidator returns ctx in which Serve records the validator of the
// response it serves.
func withValidator(ctx context.Context) (context.Context, *string) {
	v := new(string)
	return context.WithValue(ctx, validatorKey{}, v), v
}

func setValidator(ctx context.Context, v string) {
	if p, ok := ctx.Value(validatorKey{}).(*string); ok {
		*p = v
	}
}

// ETag is the entity tag of a response with the cache validator v ("" when
// there is none).
func ETag(v string) string {
	if v == "" {
		return ""
	}
	return `W/"` + v + `"`
}

// NotModified answers a revalidation without running the operation: when r
// is a GET (or HEAD) whose If-None-Match matches the current ETag of the
// screen query rc, it writes 304 with the response's caching headers and
// returns true, after one Redis round trip. Without a cacheable screen, an
// If-None-Match, or Redis, it returns false and the caller serves the
// query.
func (r *Responses) NotModified(ctx context.Context, w http.ResponseWriter, req *http.Request, rc *graphql.OperationContext) bool {
	if r == nil || req.Method != http.MethodGet && req.Method != http.MethodHead {
		return false
	}
	inm := req.Header.Get("If-None-Match")
	if inm == "" {
		return false
	}
	key, _, ok := r.key(ctx, rc)
	if !ok {
		return false
	}
	v, err := r.c.Validator(ctx, key)
	if err != nil {
		return false
	}
	return writeNotModified(w, req, ETag(v))
}

// writeNotModified answers 304 with the screen's caching headers when req
// is a GET (or HEAD) whose If-None-Match matches etag. Every path that
// knows a screen's current ETag (the whole path, the fast path) answers a
// revalidation through it.
func writeNotModified(w http.ResponseWriter, req *http.Request, etag string) bool {
	if req.Method != http.MethodGet && req.Method != http.MethodHead || !etagMatches(req.Header.Get("If-None-Match"), etag) {
		return false
	}
	screenHeaders(w.Header(), etag)
	w.WriteHeader(http.StatusNotModified)
	return true
}

// screenHeaders sets the caching headers of a screen query's response
// (its Vary: Authorization, Cookie is every /graphql response's, set once
// by CachePolicy).
func screenHeaders(h http.Header, etag string) {
	hvPersonal.Set(h, cacheControlKey)
	if etag != "" {
		h.Set(etagKey, etag)
	}
}

// cacheHeaders sets the caching headers of a query's response; etag is
// the response's ETag ("" for none).
func cacheHeaders(h http.Header, op *ast.OperationDefinition, etag string) {
	if op != nil && op.Operation == ast.Mutation {
		h.Set("Cache-Control", ccMutation)
		return
	}
	if publicOnly(op) {
		h.Set("Cache-Control", ccProducts)
		return
	}
	screenHeaders(h, etag)
}

// publicOnly reports whether op reads public data only: the catalogue
// (products), the same for every caller.
func publicOnly(op *ast.OperationDefinition) bool {
	if op == nil || op.Operation != ast.Query || len(op.SelectionSet) == 0 {
		return false
	}
	for _, s := range op.SelectionSet {
		f, ok := s.(*ast.Field)
		if !ok || f.Name != "products" && f.Name != "__typename" {
			return false
		}
	}
	return true
}

// etagMatches is the weak comparison of If-None-Match (RFC 9110 13.1.2):
// "*" or any listed tag with the same opaque value.
func etagMatches(header, etag string) bool {
	if etag == "" {
		return false
	}
	want := strings.TrimPrefix(etag, "W/")
	for _, t := range strings.Split(header, ",") {
		t = strings.TrimSpace(t)
		if t == "*" || strings.TrimPrefix(t, "W/") == want {
			return true
		}
	}
	return false
}
