package payments

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strconv"
	"testing"
	"time"
)

func TestSignMatchesTheSpec(t *testing.T) {
	at := time.Unix(1795000000, 0)
	body := []byte(`{"id":"evt_1"}`)
	h := hmac.New(sha256.New, []byte("s3cret"))
	h.Write([]byte("1795000000." + string(body)))
	want := "t=1795000000,v1=" + hex.EncodeToString(h.Sum(nil))
	if got := Sign([]byte("s3cret"), at, body); got != want {
		t.Fatalf("Sign = %q, want %q", got, want)
	}
}

func TestVerify(t *testing.T) {
	now := time.Unix(1795000000, 0)
	body := []byte(`{"id":"evt_1","type":"payment.succeeded"}`)
	cur, old, other := []byte("current"), []byte("previous"), []byte("other")
	sig := func(secret []byte, at time.Time) string { return Sign(secret, at, body) }
	v1 := func(secret []byte, at time.Time) string { return sig(secret, at)[len("t=1795000000,"):] }
	ts := "t=" + strconv.FormatInt(now.Unix(), 10)

	tests := []struct {
		name    string
		header  string
		body    []byte
		secrets [][]byte
		want    error
	}{
		{"valid", sig(cur, now), body, [][]byte{cur}, nil},
		{"second secret during rotation", sig(old, now), body, [][]byte{cur, old}, nil},
		{"first secret during rotation", sig(cur, now), body, [][]byte{cur, old}, nil},
		{"several v1, one matches", ts + ",v1=" + hex.EncodeToString(make([]byte, 32)) + "," + v1(cur, now), body, [][]byte{cur}, nil},
		{"spaces and unknown schemes ignored", ts + ", v0=abc, " + v1(cur, now), body, [][]byte{cur}, nil},
		{"4m59s old", sig(cur, now.Add(-4*time.Minute-59*time.Second)), body, [][]byte{cur}, nil},
		{"4m59s ahead", sig(cur, now.Add(4*time.Minute+59*time.Second)), body, [][]byte{cur}, nil},
		{"exactly 5m old", sig(cur, now.Add(-5*time.Minute)), body, [][]byte{cur}, nil},
		{"5m1s old", sig(cur, now.Add(-5*time.Minute-time.Second)), body, [][]byte{cur}, ErrSignatureTimestamp},
		{"5m1s ahead", sig(cur, now.Add(5*time.Minute+time.Second)), body, [][]byte{cur}, ErrSignatureTimestamp},
		{"wrong secret", sig(other, now), body, [][]byte{cur, old}, ErrSignatureMismatch},
		{"no secrets", sig(cur, now), body, nil, ErrSignatureMismatch},
		{"body changed", sig(cur, now), []byte(`{"id":"evt_2","type":"payment.succeeded"}`), [][]byte{cur}, ErrSignatureMismatch},
		{"timestamp changed", "t=1795000001," + v1(cur, now), body, [][]byte{cur}, ErrSignatureMismatch},
		{"missing", "", body, [][]byte{cur}, ErrSignatureMissing},
		{"blank", "   ", body, [][]byte{cur}, ErrSignatureMissing},
		{"no t", v1(cur, now), body, [][]byte{cur}, ErrSignatureMalformed},
		{"no v1", ts, body, [][]byte{cur}, ErrSignatureMalformed},
		{"two t", ts + "," + ts + "," + v1(cur, now), body, [][]byte{cur}, ErrSignatureMalformed},
		{"t not a number", "t=abc," + v1(cur, now), body, [][]byte{cur}, ErrSignatureMalformed},
		{"t negative", "t=-5," + v1(cur, now), body, [][]byte{cur}, ErrSignatureMalformed},
		{"v1 not hex", ts + ",v1=zz", body, [][]byte{cur}, ErrSignatureMalformed},
		{"v1 too short", ts + ",v1=abcd", body, [][]byte{cur}, ErrSignatureMalformed},
		{"part without =", ts + ",garbage," + v1(cur, now), body, [][]byte{cur}, ErrSignatureMalformed},
		{"empty key", ts + ",=x," + v1(cur, now), body, [][]byte{cur}, ErrSignatureMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := Verify(tc.header, tc.body, tc.secrets, now, DefaultTolerance)
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Fatalf("Verify(%q) = %v, want %v", tc.header, err, tc.want)
			}
		})
	}
}

func TestParseSecrets(t *testing.T) {
	tests := map[string][]string{
		"dev-webhook-secret": {"dev-webhook-secret"},
		"new, old":           {"new", "old"},
		"a,,b,":              {"a", "b"},
		"":                   nil,
	}
	for in, want := range tests {
		got := ParseSecrets(in)
		if len(got) != len(want) {
			t.Fatalf("ParseSecrets(%q) = %q, want %q", in, got, want)
		}
		for i := range want {
			if string(got[i]) != want[i] {
				t.Errorf("ParseSecrets(%q)[%d] = %q, want %q", in, i, got[i], want[i])
			}
		}
	}
}
