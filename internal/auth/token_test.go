package auth_test

import (
	"crypto/rand"
	"crypto/rsa"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/shop/bff/internal/auth"
	"github.com/shop/bff/internal/order"
)

var (
	secretNew = []byte("new-secret-0123456789abcdef0123456789")
	secretOld = []byte("old-secret-0123456789abcdef0123456789")
	alice     = &order.User{ID: "6f1c1a52-0000-4000-8000-000000000001", Name: "Alice", Email: "alice@example.com", Role: order.RoleCustomer}
	staff     = &order.User{ID: "6f1c1a52-0000-4000-8000-000000000003", Name: "Staff", Email: "staff@example.com", Role: order.RoleStaff}
)

func newIssuer(t *testing.T, cfg auth.Config) *auth.Issuer {
	t.Helper()
	i, err := auth.NewIssuer(cfg)
	require.NoError(t, err)
	return i
}

func newVerifier(t *testing.T, cfg auth.Config) *auth.Verifier {
	t.Helper()
	v, err := auth.NewVerifier(cfg)
	require.NoError(t, err)
	return v
}

func issue(t *testing.T, i *auth.Issuer, u *order.User) string {
	t.Helper()
	tok, _, err := i.Issue(u)
	require.NoError(t, err)
	return tok
}

// claims builds raw claims for alice with the given nbf and exp offsets.
func claims(now time.Time, nbf, exp time.Duration) jwt.MapClaims {
	c := jwt.MapClaims{"sub": alice.ID, "role": "CUSTOMER", "email": alice.Email, "name": alice.Name,
		"iat": now.Unix(), "nbf": now.Add(nbf).Unix()}
	if exp != 0 {
		c["exp"] = now.Add(exp).Unix()
	}
	return c
}

func sign(t *testing.T, m jwt.SigningMethod, key any, c jwt.Claims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(m, c).SignedString(key)
	require.NoError(t, err)
	return s
}

func TestVerify(t *testing.T) {
	now := time.Now()
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	current := newIssuer(t, auth.Config{Secrets: [][]byte{secretNew}})
	old := newIssuer(t, auth.Config{Secrets: [][]byte{secretOld}})
	yesterday := newIssuer(t, auth.Config{Secrets: [][]byte{secretNew}, Now: func() time.Time { return now.Add(-25 * time.Hour) }})
	rotated := [][]byte{secretNew, secretOld}
	only := [][]byte{secretNew}

	tests := []struct {
		name    string
		token   string
		secrets [][]byte
		ok      bool
		msg     string
	}{
		{"valid", issue(t, current, alice), only, true, ""},
		{"valid staff", issue(t, current, staff), only, true, ""},
		{"expired", issue(t, yesterday, alice), only, false, "session token expired"},
		{"expired within leeway", sign(t, jwt.SigningMethodHS256, secretNew, claims(now, -time.Hour, -10*time.Second)), only, true, ""},
		{"nbf in the future", sign(t, jwt.SigningMethodHS256, secretNew, claims(now, time.Hour, 2*time.Hour)), only, false, "invalid session token"},
		{"nbf within leeway", sign(t, jwt.SigningMethodHS256, secretNew, claims(now, 10*time.Second, time.Hour)), only, true, ""},
		{"no exp", sign(t, jwt.SigningMethodHS256, secretNew, claims(now, 0, 0)), only, false, "invalid session token"},
		{"wrong secret", sign(t, jwt.SigningMethodHS256, []byte("guess"), claims(now, 0, time.Hour)), only, false, "invalid session token"},
		{"alg none", sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, claims(now, 0, time.Hour)), only, false, "invalid session token"},
		{"RS256", sign(t, jwt.SigningMethodRS256, rsaKey, claims(now, 0, time.Hour)), only, false, "invalid session token"},
		{"HS512 with the right secret", sign(t, jwt.SigningMethodHS512, secretNew, claims(now, 0, time.Hour)), only, false, "invalid session token"},
		{"old secret after rotation", issue(t, old, alice), rotated, true, ""},
		{"old secret once dropped", issue(t, old, alice), only, false, "invalid session token"},
		{"no sub", sign(t, jwt.SigningMethodHS256, secretNew, jwt.MapClaims{"role": "CUSTOMER", "exp": now.Add(time.Hour).Unix()}), only, false, "invalid session token"},
		{"unknown role", sign(t, jwt.SigningMethodHS256, secretNew, jwt.MapClaims{"sub": alice.ID, "role": "ADMIN", "exp": now.Add(time.Hour).Unix()}), only, false, "invalid session token"},
		{"malformed", "not.a.jwt", only, false, "invalid session token"},
		{"empty", "", only, false, "invalid session token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := newVerifier(t, auth.Config{Secrets: tt.secrets}).Verify(tt.token)
			if tt.ok {
				require.NoError(t, err)
				assert.Contains(t, []string{alice.ID, staff.ID}, c.Subject)
				return
			}
			require.Error(t, err)
			assert.Nil(t, c)
			assert.Equal(t, order.CodeUnauthenticated, order.ErrorCode(err))
			assert.Equal(t, tt.msg, order.AsError(err).Message)
		})
	}
}

func TestIssueClaims(t *testing.T) {
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	clock := func() time.Time { return now }
	i := newIssuer(t, auth.Config{Secrets: [][]byte{secretNew, secretOld}, TTL: time.Hour, Now: clock})
	tok, exp, err := i.Issue(staff)
	require.NoError(t, err)
	assert.Equal(t, now.Add(time.Hour), exp)

	c, err := newVerifier(t, auth.Config{Secrets: [][]byte{secretNew}, Now: clock}).Verify(tok)
	require.NoError(t, err, "new tokens are signed with the first secret")
	assert.Equal(t, staff.ID, c.Subject)
	assert.Equal(t, order.RoleStaff, c.Role)
	assert.Equal(t, staff.Email, c.Email)
	assert.Equal(t, staff.Name, c.Name)
	assert.True(t, now.Add(time.Hour).Equal(c.ExpiresAt.Time))

	_, err = newVerifier(t, auth.Config{Secrets: [][]byte{secretOld}, Now: clock}).Verify(tok)
	assert.Error(t, err, "the second secret does not sign")

	_, err = newVerifier(t, auth.Config{Secrets: [][]byte{secretNew}, Now: func() time.Time { return now.Add(time.Hour + time.Minute) }}).Verify(tok)
	assert.Error(t, err, "expired past the leeway")
}

func TestConfigNeedsSecret(t *testing.T) {
	_, err := auth.NewIssuer(auth.Config{})
	assert.Error(t, err)
	_, err = auth.NewVerifier(auth.Config{Secrets: [][]byte{secretNew, {}}})
	assert.Error(t, err)
	i := newIssuer(t, auth.Config{Secrets: [][]byte{secretNew}})
	assert.Equal(t, auth.DefaultTTL, i.TTL())
}

func TestUserContext(t *testing.T) {
	_, ok := auth.UserFrom(t.Context())
	assert.False(t, ok)
	u, ok := auth.UserFrom(auth.WithUser(t.Context(), alice))
	assert.True(t, ok)
	assert.Same(t, alice, u)
	_, ok = auth.UserFrom(auth.WithUser(t.Context(), nil))
	assert.False(t, ok)
}

func jwtHS256() jwt.SigningMethod { return jwt.SigningMethodHS256 }

// A remembered token is still refused once it expires, and a changed
// claim is a different token.
func TestVerifiedTokensExpire(t *testing.T) {
	now := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	clock := now
	tick := func() time.Time { return clock }
	i := newIssuer(t, auth.Config{Secrets: [][]byte{secretNew}, TTL: 30 * time.Second, Now: tick})
	v := newVerifier(t, auth.Config{Secrets: [][]byte{secretNew}, Now: tick, Leeway: time.Second})
	tok, _, err := i.Issue(&order.User{ID: "7b6f5f2e-0000-4000-8000-000000000001", Role: order.RoleCustomer})
	if err != nil {
		t.Fatal(err)
	}
	for n := 0; n < 3; n++ {
		if c, err := v.Verify(tok); err != nil || c.Role != order.RoleCustomer {
			t.Fatalf("verify %d: %v %v", n, c, err)
		}
	}
	clock = now.Add(45 * time.Second) // past exp and the leeway
	if _, err := v.Verify(tok); err == nil {
		t.Fatal("an expired token was accepted from the cache of verified tokens")
	}
	if _, err := v.Verify(tok[:len(tok)-2] + "xx"); err == nil {
		t.Fatal("a tampered token was accepted")
	}
}
