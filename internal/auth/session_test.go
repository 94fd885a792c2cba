package auth_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/shop/bff/internal/auth"
	"github.com/shop/bff/internal/httpx"
	"github.com/shop/bff/internal/order"
)

func sessionRequest(method, contentType, body string) *http.Request {
	req := httptest.NewRequest(method, "/session", strings.NewReader(body))
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	return req
}

func TestSessionSignIn(t *testing.T) {
	issuer := newIssuer(t, auth.Config{Secrets: [][]byte{secretNew}})
	v := newVerifier(t, auth.Config{Secrets: [][]byte{secretNew}})
	users := &memUsers{users: []*order.User{alice, staff}}

	for _, secure := range []bool{false, true} {
		h := auth.SessionHandler(issuer, users, auth.CookieConfig{Secure: secure})
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, sessionRequest("POST", "application/json", `{"email":" Alice@Example.com "}`))
		require.Equal(t, 200, rec.Code, rec.Body.String())
		assert.Equal(t, "application/json", rec.Header().Get("Content-Type"))

		var resp auth.SessionResponse
		require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &resp))
		assert.Equal(t, auth.SessionUser{ID: alice.ID, Name: alice.Name, Email: alice.Email, Role: order.RoleCustomer}, resp.User)
		c, err := v.Verify(resp.Token)
		require.NoError(t, err, "the returned token verifies")
		assert.Equal(t, alice.ID, c.Subject)

		cookies := rec.Result().Cookies()
		require.Len(t, cookies, 1)
		ck := cookies[0]
		assert.Equal(t, "bff_session", ck.Name)
		assert.Equal(t, resp.Token, ck.Value)
		assert.True(t, ck.HttpOnly)
		assert.Equal(t, http.SameSiteLaxMode, ck.SameSite)
		assert.Equal(t, "/", ck.Path)
		assert.Equal(t, secure, ck.Secure)
		assert.Equal(t, int(auth.DefaultTTL.Seconds()), ck.MaxAge)

		// The cookie authenticates a following request.
		mw := auth.Middleware(v, users, auth.MiddlewareOptions{})(whoami)
		next := httptest.NewRequest("GET", "/graphql", nil)
		next.AddCookie(ck)
		rec = httptest.NewRecorder()
		mw.ServeHTTP(rec, next)
		assert.Equal(t, alice.ID, rec.Body.String())
	}
}

func TestSessionErrors(t *testing.T) {
	issuer := newIssuer(t, auth.Config{Secrets: [][]byte{secretNew}})
	tests := []struct {
		name        string
		users       auth.EmailLookup
		method      string
		contentType string
		body        string
		status      int
		code        string
	}{
		{"unknown email", nil, "POST", "application/json", `{"email":"mallory@example.com"}`, 404, "NOT_FOUND"},
		{"missing email", nil, "POST", "application/json", `{}`, 400, "BAD_USER_INPUT"},
		{"not JSON", nil, "POST", "application/json", `email=alice@example.com`, 400, "BAD_REQUEST"},
		{"form post", nil, "POST", "application/x-www-form-urlencoded", `{"email":"alice@example.com"}`, 400, "BAD_REQUEST"},
		{"too large", nil, "POST", "application/json", `{"email":"` + strings.Repeat("a", 5000) + `"}`, 413, "PAYLOAD_TOO_LARGE"},
		{"store down", failingEmails{}, "POST", "application/json", `{"email":"alice@example.com"}`, 503, "UNAVAILABLE"},
		{"GET", nil, "GET", "", "", 405, "BAD_REQUEST"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			users := tt.users
			if users == nil {
				users = &memUsers{users: []*order.User{alice}}
			}
			h := httpx.RequestID(auth.SessionHandler(issuer, users, auth.CookieConfig{}))
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, sessionRequest(tt.method, tt.contentType, tt.body))
			require.Equal(t, tt.status, rec.Code, rec.Body.String())
			ext := errorCode(t, rec)
			assert.Equal(t, tt.code, ext["code"])
			assert.NotEmpty(t, ext["requestId"])
			assert.Empty(t, rec.Result().Cookies(), "no cookie on failure")
		})
	}
}

// failingEmails is an e-mail directory whose store is down.
type failingEmails struct{}

func (failingEmails) UserByEmail(_ context.Context, _ string) (*order.User, error) {
	return nil, order.Unavailable("postgres", errors.New("connection refused"))
}

func TestSessionSignOut(t *testing.T) {
	issuer := newIssuer(t, auth.Config{Secrets: [][]byte{secretNew}})
	h := auth.SessionHandler(issuer, &memUsers{}, auth.CookieConfig{Secure: true})
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, sessionRequest("DELETE", "", ""))
	assert.Equal(t, 204, rec.Code)
	cookies := rec.Result().Cookies()
	require.Len(t, cookies, 1)
	assert.Equal(t, "bff_session", cookies[0].Name)
	assert.Empty(t, cookies[0].Value)
	assert.Less(t, cookies[0].MaxAge, 0, "the cookie is deleted")
	assert.True(t, cookies[0].Secure)
	assert.True(t, cookies[0].HttpOnly)
}
