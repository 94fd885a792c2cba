package auth_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/shop/bff/internal/auth"
)

// TestSecretsTooShortAreRefused: an HS256 secret under 32 bytes can be
// brute-forced from one token, so neither an Issuer nor a Verifier starts
// with one, also as the second secret of a rotation.
func TestSecretsTooShortAreRefused(t *testing.T) {
	short := []byte(strings.Repeat("k", auth.MinSecretLength-1))
	for _, secrets := range [][][]byte{{short}, {secretNew, short}, {[]byte("s3cret")}} {
		_, err := auth.NewIssuer(auth.Config{Secrets: secrets})
		assert.ErrorContains(t, err, "at least 32")
		_, err = auth.NewVerifier(auth.Config{Secrets: secrets})
		assert.ErrorContains(t, err, "JWT_SECRET")
	}
	_, err := auth.NewVerifier(auth.Config{Secrets: [][]byte{[]byte(strings.Repeat("k", auth.MinSecretLength))}})
	require.NoError(t, err)
}
