package auth

import (
	"errors"
	"mime"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/shop/bff/internal/httpx"
	"github.com/shop/bff/internal/order"
)

// DefaultCookieName is the name of the session cookie.
const DefaultCookieName = "bff_session"

// MiddlewareOptions configures [Middleware].
type MiddlewareOptions struct {
	// CookieName is the session cookie (default "bff_session").
	CookieName string
	// CookieSecure marks the cookie that clears an invalid session as
	// Secure (set it like CookieConfig.Secure); on a secure request
	// (httpx.IsSecure) it is Secure regardless.
	CookieSecure bool
	// CSRFExempt lists request paths whose cookie-authenticated writes are
	// not checked for CSRF safety.
	CSRFExempt []string
	// UserCacheTTL is how long user lookups are cached (default 60s); a
	// negative value disables the cache (users is then asked every time,
	// for example when users is already a *UserCache).
	UserCacheTTL time.Duration
	// UserCacheSize bounds the cache (default 10000 users).
	UserCacheSize int
}

// Middleware identifies the caller. It reads "Authorization: Bearer <jwt>"
// or, without that header, the session cookie:
//
//   - no credentials: the request goes on anonymously (no user in the
//     context);
//   - credentials present but invalid (malformed, bad signature, expired,
//     unknown user, or a role claim that differs from the user's role):
//     the whole request fails with 401 UNAUTHENTICATED, and an invalid
//     session cookie is cleared;
//   - a user lookup that fails with UNAVAILABLE: 503 UNAVAILABLE;
//   - a cookie-authenticated POST, PUT, PATCH or DELETE that is not
//     CSRF-safe (see [CSRFSafe]) and whose path is not exempt: 403
//     FORBIDDEN;
//   - otherwise the user is put in the context ([UserFrom]) and in the
//     access log ([httpx.RequestInfo.SetUser]).
//
// Lookups are cached in process (see [MiddlewareOptions.UserCacheTTL]), so
// a warm request path asks users nothing.
func Middleware(v *Verifier, users UserLookup, opts MiddlewareOptions) httpx.Middleware {
	if opts.CookieName == "" {
		opts.CookieName = DefaultCookieName
	}
	if _, cached := users.(*UserCache); !cached && opts.UserCacheTTL >= 0 {
		users = NewUserCache(users, opts.UserCacheTTL, opts.UserCacheSize)
	}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			token, fromCookie, err := credentials(r, opts.CookieName)
			if err != nil {
				reject(w, r, unauthenticated("malformed Authorization header", err), false, opts)
				return
			}
			if token == "" {
				next.ServeHTTP(w, r)
				return
			}
			claims, err := v.Verify(token)
			if err != nil {
				reject(w, r, order.AsError(err), fromCookie, opts)
				return
			}
			u, err := users.UserByID(r.Context(), claims.Subject)
			if err != nil {
				e := order.AsError(err)
				if e.Code == order.CodeNotFound {
					e = unauthenticated("unknown user", err)
				}
				reject(w, r, e, fromCookie, opts)
				return
			}
			if u.Role != claims.Role {
				reject(w, r, unauthenticated("session token is out of date, sign in again",
					errors.New("role claim differs from the user's role")), fromCookie, opts)
				return
			}
			if fromCookie && !slices.Contains(opts.CSRFExempt, r.URL.Path) && unsafeMethod(r.Method) && !CSRFSafe(r) {
				httpx.WriteError(w, r, http.StatusForbidden, order.Forbidden(
					"cookie-authenticated writes need Content-Type: application/json or an X-Requested-With header"))
				return
			}
			httpx.Info(r.Context()).SetUser(u.ID)
			var exp time.Time
			if claims.ExpiresAt != nil {
				exp = claims.ExpiresAt.Time
			}
			next.ServeHTTP(w, r.WithContext(WithSession(r.Context(), u, exp)))
		})
	}
}

// credentials returns the token of r and whether it came from the cookie.
// An Authorization header that is not a bearer token is an error.
func credentials(r *http.Request, cookieName string) (token string, fromCookie bool, err error) {
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, tok, ok := strings.Cut(h, " ")
		tok = strings.TrimSpace(tok)
		if !ok || !strings.EqualFold(scheme, "Bearer") || tok == "" {
			return "", false, errors.New("authorization header is not a bearer token")
		}
		return tok, false, nil
	}
	if c, err := r.Cookie(cookieName); err == nil && c.Value != "" {
		return c.Value, true, nil
	}
	return "", false, nil
}

// reject fails the request with e. Invalid credentials get 401 (and an
// invalid session cookie is cleared); other failures get their code's status.
func reject(w http.ResponseWriter, r *http.Request, e *order.Error, fromCookie bool, opts MiddlewareOptions) {
	status := httpx.Status(e.Code)
	if e.Code == order.CodeUnauthenticated {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		if fromCookie {
			http.SetCookie(w, clearCookie(opts.CookieName, opts.CookieSecure || httpx.IsSecure(r)))
		}
	}
	if status < 400 {
		status = http.StatusInternalServerError
	}
	httpx.WriteError(w, r, status, e)
}

func unsafeMethod(m string) bool {
	switch m {
	case http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete:
		return true
	}
	return false
}

// CSRFSafe reports whether a browser could only have sent r from a page of
// an allowed origin (a cross-site form cannot): its Content-Type is
// application/json or application/graphql-response+json, or it carries an
// X-Requested-With or Apollo-Require-Preflight header.
func CSRFSafe(r *http.Request) bool {
	if r.Header.Get("X-Requested-With") != "" || r.Header.Get("Apollo-Require-Preflight") != "" {
		return true
	}
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil {
		return false
	}
	return mt == httpx.ContentTypeJSON || mt == httpx.ContentTypeGraphQLResponse
}
