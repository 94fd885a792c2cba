package auth_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/golang-jwt/jwt/v5"

	"github.com/shop/bff/internal/auth"
	"github.com/shop/bff/internal/order"
)

// fuzzNow is the clock of the token fuzz targets, so that the seed corpus
// means the same on every run.
var fuzzNow = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

func fuzzClock() time.Time { return fuzzNow }

// FuzzVerifyToken feeds arbitrary strings to the Verifier. It never
// panics, refuses with UNAUTHENTICATED, and accepts only a token whose
// header says HS256 (no other algorithm, never none), whose signature is
// the HMAC-SHA256 of its first two segments under one of the secrets
// (recomputed here independently), with a subject, a known role and an
// expiry that has not passed beyond the leeway.
func FuzzVerifyToken(f *testing.F) {
	issuer, err := auth.NewIssuer(auth.Config{Secrets: [][]byte{secretNew}, Now: fuzzClock})
	if err != nil {
		f.Fatal(err)
	}
	old, _ := auth.NewIssuer(auth.Config{Secrets: [][]byte{secretOld}, Now: fuzzClock})
	good, _, _ := issuer.Issue(alice)
	rotated, _, _ := old.Issue(staff)
	f.Add(good)
	f.Add(rotated)
	c := jwt.MapClaims{"sub": alice.ID, "role": "CUSTOMER", "exp": fuzzNow.Add(time.Hour).Unix()}
	none, _ := jwt.NewWithClaims(jwt.SigningMethodNone, c).SignedString(jwt.UnsafeAllowNoneSignatureType)
	f.Add(none)
	hs512, _ := jwt.NewWithClaims(jwt.SigningMethodHS512, c).SignedString(secretNew)
	f.Add(hs512)
	f.Add(strings.Replace(good, ".", "..", 1))
	f.Add("eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.")
	f.Add("a.b.c")
	f.Add("")
	verifier, err := auth.NewVerifier(auth.Config{Secrets: [][]byte{secretNew, secretOld}, Now: fuzzClock})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, token string) {
		claims, err := verifier.Verify(token)
		if err != nil {
			if claims != nil {
				t.Fatal("claims with an error")
			}
			if order.ErrorCode(err) != order.CodeUnauthenticated {
				t.Fatalf("refusal with code %s", order.ErrorCode(err))
			}
			return
		}
		parts := strings.Split(token, ".")
		if len(parts) != 3 {
			t.Fatalf("accepted a token of %d segments", len(parts))
		}
		hdr, err := base64.RawURLEncoding.DecodeString(parts[0])
		if err != nil {
			t.Fatalf("accepted a token with an undecodable header: %v", err)
		}
		var h struct {
			Alg string `json:"alg"`
		}
		if err := json.Unmarshal(hdr, &h); err != nil || h.Alg != "HS256" {
			t.Fatalf("accepted alg %q (%v)", h.Alg, err)
		}
		sig, err := base64.RawURLEncoding.DecodeString(parts[2])
		if err != nil {
			t.Fatalf("accepted an undecodable signature: %v", err)
		}
		signed := false
		for _, s := range [][]byte{secretNew, secretOld} {
			m := hmac.New(sha256.New, s)
			m.Write([]byte(parts[0] + "." + parts[1]))
			if hmac.Equal(m.Sum(nil), sig) {
				signed = true
			}
		}
		if !signed {
			t.Fatalf("accepted a token no secret signed: %q", token)
		}
		if claims.Subject == "" || (claims.Role != order.RoleCustomer && claims.Role != order.RoleStaff) {
			t.Fatalf("accepted claims %+v", claims)
		}
		if claims.ExpiresAt == nil || claims.ExpiresAt.Add(auth.DefaultLeeway).Before(fuzzNow) {
			t.Fatalf("accepted an expired token: %v", claims.ExpiresAt)
		}
		if claims.NotBefore != nil && claims.NotBefore.After(fuzzNow.Add(auth.DefaultLeeway)) {
			t.Fatalf("accepted a token before its nbf: %v", claims.NotBefore)
		}
	})
}

// FuzzIssueVerify: a token issued for any user verifies to that user's
// claims (a user without an id or with an unknown role is refused), with
// the first secret only.
func FuzzIssueVerify(f *testing.F) {
	f.Add(alice.ID, alice.Email, alice.Name, "CUSTOMER")
	f.Add(staff.ID, staff.Email, "Ståff \"quoted\"", "STAFF")
	f.Add("", "x@example.com", "", "CUSTOMER")
	f.Add("id", "", "", "ADMIN")
	issuer, _ := auth.NewIssuer(auth.Config{Secrets: [][]byte{secretNew, secretOld}, Now: fuzzClock})
	verifier, _ := auth.NewVerifier(auth.Config{Secrets: [][]byte{secretNew}, Now: fuzzClock})
	oldOnly, _ := auth.NewVerifier(auth.Config{Secrets: [][]byte{secretOld}, Now: fuzzClock})
	f.Fuzz(func(t *testing.T, id, email, name, role string) {
		if !utf8.ValidString(id) {
			return // user ids are UUIDs; JSON cannot carry other bytes unchanged
		}
		u := &order.User{ID: id, Email: email, Name: name, Role: order.Role(role)}
		tok, exp, err := issuer.Issue(u)
		if err != nil {
			t.Fatalf("issue: %v", err)
		}
		if !exp.Equal(fuzzNow.Add(auth.DefaultTTL)) {
			t.Fatalf("expires %v", exp)
		}
		if _, err := oldOnly.Verify(tok); err == nil {
			t.Fatal("the second secret signed a new token")
		}
		c, err := verifier.Verify(tok)
		valid := id != "" && (u.Role == order.RoleCustomer || u.Role == order.RoleStaff)
		if !valid {
			if err == nil {
				t.Fatalf("accepted a token for %+v", u)
			}
			return
		}
		if err != nil {
			t.Fatalf("token for %+v refused: %v", u, err)
		}
		if c.Subject != id || c.Role != u.Role {
			t.Fatalf("claims %+v for %+v", c, u)
		}
		// encoding/json replaces each invalid UTF-8 byte with U+FFFD, as
		// converting to runes does.
		if want := string([]rune(email)); c.Email != want {
			t.Fatalf("email %q for %q (want %q)", c.Email, email, want)
		}
		if want := string([]rune(name)); c.Name != want {
			t.Fatalf("name %q for %q (want %q)", c.Name, name, want)
		}
	})
}
