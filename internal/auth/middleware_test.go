package auth_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/shop/bff/internal/auth"
	"github.com/shop/bff/internal/httpx"
	"github.com/shop/bff/internal/order"
)

// memUsers is an in-memory user directory that counts its lookups.
type memUsers struct {
	mu    sync.Mutex
	users []*order.User
	calls int
	err   error         // returned instead of a lookup when set
	gate  chan struct{} // when set, lookups wait for it to close
}

func (m *memUsers) UserByID(ctx context.Context, id string) (*order.User, error) {
	m.mu.Lock()
	m.calls++
	gate, fail := m.gate, m.err
	m.mu.Unlock()
	if gate != nil {
		<-gate
	}
	if fail != nil {
		return nil, fail
	}
	for _, u := range m.users {
		if u.ID == id {
			c := *u
			return &c, nil
		}
	}
	return nil, order.NotFound("user")
}

func (m *memUsers) UserByEmail(ctx context.Context, email string) (*order.User, error) {
	for _, u := range m.users {
		if strings.EqualFold(u.Email, email) {
			c := *u
			return &c, nil
		}
	}
	return nil, order.NotFound("user")
}

func (m *memUsers) Calls() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.calls
}

// whoami answers the signed-in user's id, or "anonymous".
var whoami = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	if u, ok := auth.UserFrom(r.Context()); ok {
		_, _ = w.Write([]byte(u.ID))
		return
	}
	_, _ = w.Write([]byte("anonymous"))
})

type reqOpt func(*http.Request)

func bearer(tok string) reqOpt {
	return func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+tok) }
}
func header(k, v string) reqOpt {
	return func(r *http.Request) { r.Header.Set(k, v) }
}
func cookie(tok string) reqOpt {
	return func(r *http.Request) { r.AddCookie(&http.Cookie{Name: "bff_session", Value: tok}) }
}

func serve(h http.Handler, method, path string, opts ...reqOpt) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, strings.NewReader(`{}`))
	for _, o := range opts {
		o(req)
	}
	rec := httptest.NewRecorder()
	httpx.RequestID(h).ServeHTTP(rec, req)
	return rec
}

func errorCode(t *testing.T, rec *httptest.ResponseRecorder) map[string]any {
	t.Helper()
	var body httpx.ErrorBody
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &body), rec.Body.String())
	require.Len(t, body.Errors, 1)
	return body.Errors[0].Extensions
}

func TestMiddleware(t *testing.T) {
	issuer := newIssuer(t, auth.Config{Secrets: [][]byte{secretNew}})
	v := newVerifier(t, auth.Config{Secrets: [][]byte{secretNew}})
	yesterday := newIssuer(t, auth.Config{Secrets: [][]byte{secretNew}, Now: func() time.Time { return time.Now().Add(-48 * time.Hour) }})
	ghost := &order.User{ID: "6f1c1a52-0000-4000-8000-0000000000ff", Role: order.RoleCustomer}
	promoted := &order.User{ID: alice.ID, Role: order.RoleStaff} // token claims STAFF, alice is a CUSTOMER
	aliceTok, staffTok := issue(t, issuer, alice), issue(t, issuer, staff)
	forged := sign(t, jwtHS256(), []byte("guess"), claims(time.Now(), 0, time.Hour))

	tests := []struct {
		name       string
		users      *memUsers
		method     string
		opts       []reqOpt
		status     int
		body       string // for 200
		code       string // for errors
		clears     bool   // the session cookie is cleared
		csrfExempt []string
	}{
		{name: "anonymous", method: "GET", status: 200, body: "anonymous"},
		{name: "anonymous POST needs no CSRF header", method: "POST", status: 200, body: "anonymous"},
		{name: "bearer", method: "POST", opts: []reqOpt{bearer(aliceTok)}, status: 200, body: alice.ID},
		{name: "bearer scheme case-insensitive", method: "GET", opts: []reqOpt{header("Authorization", "bearer "+staffTok)}, status: 200, body: staff.ID},
		{name: "cookie GET", method: "GET", opts: []reqOpt{cookie(aliceTok)}, status: 200, body: alice.ID},
		{name: "header wins over cookie", method: "GET", opts: []reqOpt{bearer(staffTok), cookie(aliceTok)}, status: 200, body: staff.ID},
		{name: "bad signature", method: "GET", opts: []reqOpt{bearer(forged)}, status: 401, code: "UNAUTHENTICATED"},
		{name: "expired", method: "GET", opts: []reqOpt{bearer(issue(t, yesterday, alice))}, status: 401, code: "UNAUTHENTICATED"},
		{name: "malformed token", method: "GET", opts: []reqOpt{bearer("abc")}, status: 401, code: "UNAUTHENTICATED"},
		{name: "basic auth", method: "GET", opts: []reqOpt{header("Authorization", "Basic YTpi")}, status: 401, code: "UNAUTHENTICATED"},
		{name: "bearer without token", method: "GET", opts: []reqOpt{header("Authorization", "Bearer ")}, status: 401, code: "UNAUTHENTICATED"},
		{name: "unknown user", method: "GET", opts: []reqOpt{bearer(issue(t, issuer, ghost))}, status: 401, code: "UNAUTHENTICATED"},
		{name: "role differs from the user's", method: "GET", opts: []reqOpt{bearer(issue(t, issuer, promoted))}, status: 401, code: "UNAUTHENTICATED"},
		{name: "invalid cookie is cleared", method: "GET", opts: []reqOpt{cookie(forged)}, status: 401, code: "UNAUTHENTICATED", clears: true},
		{name: "store unavailable", users: &memUsers{err: order.Unavailable("postgres", errors.New("refused"))},
			method: "GET", opts: []reqOpt{bearer(aliceTok)}, status: 503, code: "UNAVAILABLE"},
		{name: "store deadline", users: &memUsers{err: context.DeadlineExceeded},
			method: "GET", opts: []reqOpt{bearer(aliceTok)}, status: 503, code: "UNAVAILABLE"},
		{name: "store failure", users: &memUsers{err: errors.New("bug")},
			method: "GET", opts: []reqOpt{bearer(aliceTok)}, status: 500, code: "INTERNAL"},
		// CSRF: cookie-authenticated writes.
		{name: "cookie form post refused", method: "POST", opts: []reqOpt{cookie(aliceTok), header("Content-Type", "application/x-www-form-urlencoded")}, status: 403, code: "FORBIDDEN"},
		{name: "cookie text/plain post refused", method: "POST", opts: []reqOpt{cookie(aliceTok), header("Content-Type", "text/plain")}, status: 403, code: "FORBIDDEN"},
		{name: "cookie post without type refused", method: "POST", opts: []reqOpt{cookie(aliceTok)}, status: 403, code: "FORBIDDEN"},
		{name: "cookie DELETE refused", method: "DELETE", opts: []reqOpt{cookie(aliceTok)}, status: 403, code: "FORBIDDEN"},
		{name: "cookie JSON post", method: "POST", opts: []reqOpt{cookie(aliceTok), header("Content-Type", "application/json; charset=utf-8")}, status: 200, body: alice.ID},
		{name: "cookie graphql-response+json post", method: "PUT", opts: []reqOpt{cookie(aliceTok), header("Content-Type", "application/graphql-response+json")}, status: 200, body: alice.ID},
		{name: "cookie post with X-Requested-With", method: "PATCH", opts: []reqOpt{cookie(aliceTok), header("Content-Type", "text/plain"), header("X-Requested-With", "XMLHttpRequest")}, status: 200, body: alice.ID},
		{name: "cookie post with Apollo-Require-Preflight", method: "POST", opts: []reqOpt{cookie(aliceTok), header("Apollo-Require-Preflight", "true")}, status: 200, body: alice.ID},
		{name: "cookie form post on exempt path", method: "POST", opts: []reqOpt{cookie(aliceTok), header("Content-Type", "text/plain")}, status: 200, body: alice.ID, csrfExempt: []string{"/graphql"}},
		{name: "bearer form post allowed", method: "POST", opts: []reqOpt{bearer(aliceTok), header("Content-Type", "text/plain")}, status: 200, body: alice.ID},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			users := tt.users
			if users == nil {
				users = &memUsers{users: []*order.User{alice, staff}}
			}
			h := auth.Middleware(v, users, auth.MiddlewareOptions{CSRFExempt: tt.csrfExempt})(whoami)
			rec := serve(h, tt.method, "/graphql", tt.opts...)
			require.Equal(t, tt.status, rec.Code, rec.Body.String())
			if tt.status == 200 {
				assert.Equal(t, tt.body, rec.Body.String())
				return
			}
			ext := errorCode(t, rec)
			assert.Equal(t, tt.code, ext["code"])
			assert.Equal(t, rec.Header().Get("X-Request-ID"), ext["requestId"])
			assert.Equal(t, tt.code == "UNAVAILABLE", ext["retryable"])
			assert.Equal(t, "application/json", rec.Header().Get("Content-Type"))
			if tt.code == "UNAVAILABLE" {
				assert.Equal(t, "1", rec.Header().Get("Retry-After"))
			}
			if tt.code == "UNAUTHENTICATED" {
				assert.Contains(t, rec.Header().Get("WWW-Authenticate"), "Bearer")
			}
			cleared := strings.Contains(rec.Header().Get("Set-Cookie"), "bff_session=;")
			assert.Equal(t, tt.clears, cleared, rec.Header().Get("Set-Cookie"))
		})
	}
}

func TestMiddlewareRecordsUserInAccessLog(t *testing.T) {
	issuer := newIssuer(t, auth.Config{Secrets: [][]byte{secretNew}})
	v := newVerifier(t, auth.Config{Secrets: [][]byte{secretNew}})
	users := &memUsers{users: []*order.User{alice}}
	var seen string
	h := httpx.AccessLog(nil)(auth.Middleware(v, users, auth.MiddlewareOptions{})(
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			seen = httpx.Info(r.Context()).Fields().UserID
		})))
	serve(h, "GET", "/", bearer(issue(t, issuer, alice)))
	assert.Equal(t, alice.ID, seen)
}

func TestMiddlewareCachesUsers(t *testing.T) {
	issuer := newIssuer(t, auth.Config{Secrets: [][]byte{secretNew}})
	v := newVerifier(t, auth.Config{Secrets: [][]byte{secretNew}})
	ghost := &order.User{ID: "6f1c1a52-0000-4000-8000-0000000000ff", Role: order.RoleCustomer}

	t.Run("warm path asks nothing", func(t *testing.T) {
		users := &memUsers{users: []*order.User{alice, staff}}
		h := auth.Middleware(v, users, auth.MiddlewareOptions{})(whoami)
		for range 10 {
			require.Equal(t, 200, serve(h, "GET", "/", bearer(issue(t, issuer, alice))).Code)
		}
		assert.Equal(t, 1, users.Calls())
		require.Equal(t, 200, serve(h, "GET", "/", bearer(issue(t, issuer, staff))).Code)
		assert.Equal(t, 2, users.Calls(), "one lookup per user")
	})
	t.Run("unknown users are cached too", func(t *testing.T) {
		users := &memUsers{users: []*order.User{alice}}
		h := auth.Middleware(v, users, auth.MiddlewareOptions{})(whoami)
		tok := issue(t, issuer, ghost)
		for range 5 {
			require.Equal(t, 401, serve(h, "GET", "/", bearer(tok)).Code)
		}
		assert.Equal(t, 1, users.Calls())
	})
	t.Run("failures are not cached", func(t *testing.T) {
		users := &memUsers{users: []*order.User{alice}, err: order.Unavailable("postgres", nil)}
		h := auth.Middleware(v, users, auth.MiddlewareOptions{})(whoami)
		tok := issue(t, issuer, alice)
		require.Equal(t, 503, serve(h, "GET", "/", bearer(tok)).Code)
		users.mu.Lock()
		users.err = nil
		users.mu.Unlock()
		require.Equal(t, 200, serve(h, "GET", "/", bearer(tok)).Code)
		assert.Equal(t, 2, users.Calls())
	})
	t.Run("cache disabled", func(t *testing.T) {
		users := &memUsers{users: []*order.User{alice}}
		h := auth.Middleware(v, users, auth.MiddlewareOptions{UserCacheTTL: -1})(whoami)
		for range 3 {
			serve(h, "GET", "/", bearer(issue(t, issuer, alice)))
		}
		assert.Equal(t, 3, users.Calls())
	})
}

func TestUserCacheExpires(t *testing.T) {
	users := &memUsers{users: []*order.User{alice}}
	c := auth.NewUserCache(users, time.Minute, 10)
	now := time.Now()
	c.Now = func() time.Time { return now }
	for range 3 {
		_, err := c.UserByID(t.Context(), alice.ID)
		require.NoError(t, err)
	}
	assert.Equal(t, 1, users.Calls())
	now = now.Add(61 * time.Second)
	_, err := c.UserByID(t.Context(), alice.ID)
	require.NoError(t, err)
	assert.Equal(t, 2, users.Calls(), "an expired entry is looked up again")
	c.Forget(alice.ID)
	_, _ = c.UserByID(t.Context(), alice.ID)
	assert.Equal(t, 3, users.Calls())
}

func TestUserCacheIsBounded(t *testing.T) {
	var all []*order.User
	for i := range 20 {
		all = append(all, &order.User{ID: string(rune('a' + i)), Role: order.RoleCustomer})
	}
	users := &memUsers{users: all}
	c := auth.NewUserCache(users, time.Minute, 5)
	for _, u := range all {
		_, _ = c.UserByID(t.Context(), u.ID)
	}
	_, _ = c.UserByID(t.Context(), all[0].ID)
	assert.Equal(t, 21, users.Calls(), "the oldest entry was evicted")
	_, _ = c.UserByID(t.Context(), all[19].ID)
	assert.Equal(t, 21, users.Calls(), "the newest entry is kept")
}

func TestUserCacheCollapsesConcurrentMisses(t *testing.T) {
	users := &memUsers{users: []*order.User{alice}}
	c := auth.NewUserCache(users, time.Minute, 10)
	synctest.Test(t, func(t *testing.T) {
		gate := make(chan struct{})
		users.mu.Lock()
		users.gate = gate
		users.mu.Unlock()
		var wg sync.WaitGroup
		for range 50 {
			wg.Go(func() {
				u, err := c.UserByID(context.Background(), alice.ID)
				if assert.NoError(t, err) {
					assert.Equal(t, alice.ID, u.ID)
				}
			})
		}
		synctest.Wait() // every goroutine is waiting on the one lookup
		close(gate)
		wg.Wait()
	})
	assert.Equal(t, 1, users.Calls())
}
