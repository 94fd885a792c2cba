package httpx

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/shop/bff/internal/order"
)

// Defaults of [CORSOptions].
var (
	// DefaultCORSAllowHeaders are the request headers a web app may send
	// cross-origin: credentials, JSON bodies, idempotency keys, request
	// ids, the CSRF marker headers, the SSE resume point, revalidation and
	// cache bypass, the client name and version of GraphQL clients (for
	// persisted-operation manifests and metrics) and trace context
	// (W3C, Sentry).
	DefaultCORSAllowHeaders = []string{"Accept", "Authorization", "Content-Type", "Idempotency-Key", "X-Request-ID",
		"X-Requested-With", "Apollo-Require-Preflight", "Last-Event-ID", "Cache-Control", "If-None-Match",
		"apollographql-client-name", "apollographql-client-version", "graphql-client-name", "graphql-client-version",
		"traceparent", "tracestate", "sentry-trace", "baggage"}
	// DefaultCORSExposeHeaders are the response headers a web app may read.
	DefaultCORSExposeHeaders = []string{"X-Request-ID", "Retry-After", "RateLimit-Limit", "RateLimit-Remaining",
		"RateLimit-Reset", "Idempotent-Replayed", "Cache-Status", "ETag"}
	// DefaultCORSAllowMethods are the methods of the API.
	DefaultCORSAllowMethods = []string{"GET", "POST", "DELETE"}
)

// DefaultCORSMaxAge is how long a browser may cache a preflight answer.
const DefaultCORSMaxAge = 10 * time.Minute

// CORSOptions configures [CORS].
type CORSOptions struct {
	// Origins are the web origins ("https://shop.example.com") allowed to
	// call the API with credentials (CORS_ORIGINS). "*" is refused.
	Origins []string
	// AllowHeaders default to DefaultCORSAllowHeaders.
	AllowHeaders []string
	// ExposeHeaders default to DefaultCORSExposeHeaders.
	ExposeHeaders []string
	// AllowMethods default to DefaultCORSAllowMethods.
	AllowMethods []string
	// MaxAge of a preflight answer (default DefaultCORSMaxAge).
	MaxAge time.Duration
}

// CORS lets the configured origins, and only those, call the API from a
// browser with credentials:
//
//   - a request whose Origin is allowed gets Access-Control-Allow-Origin
//     echoing that origin (never "*"), Access-Control-Allow-Credentials:
//     true and Access-Control-Expose-Headers;
//   - a preflight (OPTIONS with Access-Control-Request-Method) from an
//     allowed origin is answered 204 with the allowed methods, headers and
//     max-age, without reaching the handler;
//   - a request from any other origin gets no CORS header at all (a
//     preflight from one is refused with 403), so the browser keeps the
//     response from the page;
//   - every response carries Vary: Origin, so no cache hands one origin's
//     answer to another.
//
// With no origins it does nothing. An origin that is not
// scheme://host[:port] (http or https) is an error naming it.
func CORS(opts CORSOptions) (Middleware, error) {
	allowed := make(map[string]bool, len(opts.Origins))
	for _, o := range opts.Origins {
		c, err := canonicalOrigin(o)
		if err != nil {
			return nil, err
		}
		allowed[c] = true
	}
	if len(allowed) == 0 {
		return func(next http.Handler) http.Handler { return next }, nil
	}
	allowHeaders := strings.Join(orDefault(opts.AllowHeaders, DefaultCORSAllowHeaders), ", ")
	exposeHeaders := strings.Join(orDefault(opts.ExposeHeaders, DefaultCORSExposeHeaders), ", ")
	allowMethods := strings.Join(orDefault(opts.AllowMethods, DefaultCORSAllowMethods), ", ")
	maxAge := opts.MaxAge
	if maxAge <= 0 {
		maxAge = DefaultCORSMaxAge
	}
	maxAgeSeconds := strconv.Itoa(int(maxAge.Seconds()))
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			h := w.Header()
			h.Add("Vary", "Origin")
			origin := r.Header.Get("Origin")
			preflight := r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != ""
			if preflight {
				h.Add("Vary", "Access-Control-Request-Method")
				h.Add("Vary", "Access-Control-Request-Headers")
			}
			if origin == "" {
				next.ServeHTTP(w, r)
				return
			}
			ok := allowed[strings.ToLower(origin)]
			if preflight {
				if !ok {
					WriteError(w, r, http.StatusForbidden, order.Forbidden("origin is not allowed to call this API"))
					return
				}
				h.Set("Access-Control-Allow-Origin", origin)
				h.Set("Access-Control-Allow-Credentials", "true")
				h.Set("Access-Control-Allow-Methods", allowMethods)
				h.Set("Access-Control-Allow-Headers", allowHeaders)
				h.Set("Access-Control-Max-Age", maxAgeSeconds)
				w.WriteHeader(http.StatusNoContent)
				return
			}
			if ok {
				h.Set("Access-Control-Allow-Origin", origin)
				h.Set("Access-Control-Allow-Credentials", "true")
				h.Set("Access-Control-Expose-Headers", exposeHeaders)
			}
			next.ServeHTTP(w, r)
		})
	}, nil
}

// canonicalOrigin returns o as a browser serializes an origin (lower-case
// scheme and host, no trailing slash), or an error when o is not one.
func canonicalOrigin(o string) (string, error) {
	o = strings.TrimSpace(o)
	u, err := url.Parse(o)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil ||
		(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || strings.Contains(u.Host, "*") {
		return "", fmt.Errorf("%q is not an origin like https://shop.example.com", o)
	}
	return strings.ToLower(u.Scheme + "://" + u.Host), nil
}

func orDefault(v, def []string) []string {
	if len(v) == 0 {
		return def
	}
	return v
}
