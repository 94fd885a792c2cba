package payments

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strconv"
	"strings"
	"time"
)

// SignatureHeader is the header that carries a webhook's signature.
const SignatureHeader = "Webhook-Signature"

// DefaultTolerance is how far a signature's timestamp may be from now, in
// either direction.
const DefaultTolerance = 5 * time.Minute

// Errors of [Verify]; all of them mean 401 with no effect.
var (
	ErrSignatureMissing   = errors.New("webhook signature: missing header")
	ErrSignatureMalformed = errors.New("webhook signature: malformed header")
	ErrSignatureTimestamp = errors.New("webhook signature: timestamp outside the tolerance")
	ErrSignatureMismatch  = errors.New("webhook signature: no signature matches")
)

// Sign returns the Webhook-Signature header value for body sent at t:
// "t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>".
func Sign(secret []byte, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	return "t=" + ts + ",v1=" + hex.EncodeToString(mac(secret, ts, body))
}

func mac(secret []byte, ts string, body []byte) []byte {
	h := hmac.New(sha256.New, secret)
	h.Write([]byte(ts))
	h.Write([]byte{'.'})
	h.Write(body)
	return h.Sum(nil)
}

// Verify checks a Webhook-Signature header against the raw body. The header
// holds one t= and one or more v1= values (other schemes are ignored); it
// is valid when its timestamp is within tolerance of now (both ways) and
// some v1 value equals the HMAC under some secret (several secrets during
// rotation). Comparisons are constant-time. Errors: [ErrSignatureMissing],
// [ErrSignatureMalformed], [ErrSignatureTimestamp], [ErrSignatureMismatch].
func Verify(header string, body []byte, secrets [][]byte, now time.Time, tolerance time.Duration) error {
	header = strings.TrimSpace(header)
	if header == "" {
		return ErrSignatureMissing
	}
	var ts string
	var sigs [][]byte
	for _, part := range strings.Split(header, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok || k == "" {
			return ErrSignatureMalformed
		}
		switch k {
		case "t":
			if ts != "" {
				return ErrSignatureMalformed
			}
			ts = v
		case "v1":
			sig, err := hex.DecodeString(v)
			if err != nil || len(sig) != sha256.Size {
				return ErrSignatureMalformed
			}
			sigs = append(sigs, sig)
		}
	}
	if ts == "" || len(sigs) == 0 {
		return ErrSignatureMalformed
	}
	unix, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || unix <= 0 {
		return ErrSignatureMalformed
	}
	if d := now.Sub(time.Unix(unix, 0)); d > tolerance || d < -tolerance {
		return ErrSignatureTimestamp
	}
	ok := false
	for _, secret := range secrets {
		if len(secret) == 0 {
			continue
		}
		want := mac(secret, ts, body)
		for _, sig := range sigs {
			// No early exit: the work done does not depend on which matches.
			if hmac.Equal(want, sig) {
				ok = true
			}
		}
	}
	if !ok {
		return ErrSignatureMismatch
	}
	return nil
}

// ParseSecrets splits a WEBHOOK_SECRET value ("current" or
// "current,previous" during rotation) into secrets, dropping empty parts.
func ParseSecrets(s string) [][]byte {
	var out [][]byte
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, []byte(p))
		}
	}
	return out
}
