package payments

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"
)

// fuzzSecret and fuzzOther are the secrets of the signature fuzz targets.
var (
	fuzzSecret = []byte("whsec-fuzz-current")
	fuzzOther  = []byte("whsec-fuzz-other")
)

// FuzzVerify feeds arbitrary Webhook-Signature headers and bodies to
// Verify. It never panics, every refusal is one of the documented errors,
// and an accepted header really carries the HMAC of the body under the
// secret, for a timestamp within the tolerance: the header's own t= value
// and a v1= equal to HMAC-SHA256(secret, "<t>.<body>"), recomputed here
// independently. A header accepted with the secret is refused with
// another one.
func FuzzVerify(f *testing.F) {
	now := time.Unix(1795000000, 0)
	body := []byte(`{"id":"evt_1","type":"payment.succeeded","created":1795000000,"data":{"orderId":"o","amountCents":100,"currency":"USD"}}`)
	good := Sign(fuzzSecret, now, body)
	f.Add(good, body)
	f.Add(good+",v1="+strings.Repeat("0", 64), body)
	f.Add("v1="+strings.Repeat("ab", 32)+",t=1795000000", body)
	f.Add(good, []byte(`{"id":"evt_2"}`))
	f.Add("t=1795000000", body)
	f.Add("t=+1795000000,v1="+strings.Repeat("00", 32), []byte{})
	f.Add("t=1795000000,t=1795000001,v1=00", body)
	f.Add(" , ,=,t=,v1=", []byte("x"))
	f.Add("t=99999999999999999999,v1="+strings.Repeat("ff", 32), body)
	f.Add("t=1795000000,v0=abc,v1="+strings.Repeat("AB", 32), body)
	f.Fuzz(func(t *testing.T, header string, body []byte) {
		err := Verify(header, body, [][]byte{fuzzSecret}, now, DefaultTolerance)
		if err != nil {
			if !errors.Is(err, ErrSignatureMissing) && !errors.Is(err, ErrSignatureMalformed) &&
				!errors.Is(err, ErrSignatureTimestamp) && !errors.Is(err, ErrSignatureMismatch) {
				t.Fatalf("undocumented error %v", err)
			}
			return
		}
		ts, sigs := splitHeader(header)
		want := hmac.New(sha256.New, fuzzSecret)
		want.Write([]byte(ts + "."))
		want.Write(body)
		sum := want.Sum(nil)
		found := false
		for _, s := range sigs {
			if b, err := hex.DecodeString(s); err == nil && hmac.Equal(b, sum) {
				found = true
			}
		}
		if !found {
			t.Fatalf("accepted %q without the body's HMAC under the secret", header)
		}
		if err := Verify(header, body, [][]byte{fuzzOther}, now, DefaultTolerance); err == nil {
			t.Fatalf("accepted %q with another secret too", header)
		}
		if err := Verify(header, body, [][]byte{fuzzSecret}, now.Add(DefaultTolerance+2*time.Second), DefaultTolerance); err == nil {
			// Only a t= ahead of now can still be in tolerance later.
			if err2 := Verify(header, body, [][]byte{fuzzSecret}, now.Add(-DefaultTolerance-2*time.Second), DefaultTolerance); err2 == nil {
				t.Fatalf("%q is accepted at any time", header)
			}
		}
	})
}

// FuzzSignVerify: what Sign produces verifies with the secret, at its
// time and within the tolerance, also during a rotation; it fails with
// another secret, with a changed body, and outside the tolerance.
func FuzzSignVerify(f *testing.F) {
	f.Add([]byte("whsec"), []byte(`{"id":"evt_1"}`), int64(1795000000))
	f.Add([]byte("s"), []byte{}, int64(1))
	f.Add([]byte("a,b"), []byte("\x00\xff"), int64(4102444800))
	f.Fuzz(func(t *testing.T, secret, body []byte, unix int64) {
		if len(secret) == 0 || unix <= 0 || unix > 1<<40 {
			return
		}
		at := time.Unix(unix, 0)
		h := Sign(secret, at, body)
		if err := Verify(h, body, [][]byte{secret}, at, DefaultTolerance); err != nil {
			t.Fatalf("Sign(%q) does not verify: %v", secret, err)
		}
		if err := Verify(h, body, [][]byte{secret}, at.Add(DefaultTolerance), DefaultTolerance); err != nil {
			t.Fatalf("within the tolerance: %v", err)
		}
		if err := Verify(h, body, [][]byte{fuzzOther, secret}, at, DefaultTolerance); err != nil {
			t.Fatalf("rotation (second secret): %v", err)
		}
		other := append([]byte{}, secret...)
		other[0] ^= 1
		if err := Verify(h, body, [][]byte{other}, at, DefaultTolerance); !errors.Is(err, ErrSignatureMismatch) {
			t.Fatalf("another secret: %v", err)
		}
		changed := append(append([]byte{}, body...), ' ')
		if err := Verify(h, changed, [][]byte{secret}, at, DefaultTolerance); !errors.Is(err, ErrSignatureMismatch) {
			t.Fatalf("a changed body: %v", err)
		}
		if err := Verify(h, body, [][]byte{secret}, at.Add(DefaultTolerance+time.Second), DefaultTolerance); !errors.Is(err, ErrSignatureTimestamp) {
			t.Fatalf("too late: %v", err)
		}
		if err := Verify(h, body, [][]byte{secret}, at.Add(-DefaultTolerance-time.Second), DefaultTolerance); !errors.Is(err, ErrSignatureTimestamp) {
			t.Fatalf("too early: %v", err)
		}
	})
}

// splitHeader returns the t= value and the v1= values of a header, as the
// spec describes it.
func splitHeader(h string) (ts string, v1 []string) {
	for _, part := range strings.Split(strings.TrimSpace(h), ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		switch k {
		case "t":
			ts = v
		case "v1":
			v1 = append(v1, v)
		}
	}
	return ts, v1
}
