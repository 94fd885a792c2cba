package shop

import (
	"encoding/base64"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/shop/bff/internal/order"
	"github.com/shop/bff/internal/postgres"
)

// FuzzOrderCursor feeds arbitrary `after` values to DecodeOrderCursor: a
// cursor that decodes re-encodes to the same string (one position has one
// cursor), holds a canonical lower-case order id and a time Postgres can
// store; any other value is BAD_USER_INPUT on field "after".
func FuzzOrderCursor(f *testing.F) {
	f.Add(EncodeOrderCursor(postgres.OrderCursor{CreatedAt: time.Date(2026, 11, 30, 12, 0, 0, 123456000, time.UTC), ID: "6f1c1a52-0000-4000-8000-000000000001"}))
	f.Add("")
	f.Add("bzE6MTIzOmFiYw")
	f.Add(base64.RawURLEncoding.EncodeToString([]byte("o1:-1:6f1c1a52-0000-4000-8000-000000000001")))
	f.Add(base64.RawURLEncoding.EncodeToString([]byte("o1:9223372036854775807:6f1c1a52-0000-4000-8000-000000000001")))
	f.Add(base64.StdEncoding.EncodeToString([]byte("o1:1:6f1c1a52-0000-4000-8000-000000000001")))
	f.Fuzz(func(t *testing.T, s string) {
		c, err := DecodeOrderCursor(s)
		if err != nil {
			if c != nil {
				t.Fatalf("error %v with a cursor", err)
			}
			assertBadAfter(t, err)
			return
		}
		if got := EncodeOrderCursor(*c); got != s {
			t.Fatalf("%q decodes to %+v, which encodes to %q", s, c, got)
		}
		if !postgres.IsUUID(c.ID) || strings.ToLower(c.ID) != c.ID {
			t.Fatalf("%q: id %q", s, c.ID)
		}
		if y := c.CreatedAt.Year(); y < 1970 || y > 9999 {
			t.Fatalf("%q: time %v is no order's creation time", s, c.CreatedAt)
		}
	})
}

// FuzzOrderCursorEncode checks the other direction: every position an
// order can have encodes to a cursor that decodes to it.
func FuzzOrderCursorEncode(f *testing.F) {
	f.Add(int64(1795000000123456), []byte("0123456789abcdef"))
	f.Add(int64(0), make([]byte, 16))
	f.Add(int64(253402300799999999), []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, micros int64, raw []byte) {
		if len(raw) != 16 || micros < 0 || micros > maxCursorMicros {
			return
		}
		const hex = "0123456789abcdef"
		var b strings.Builder
		for i, x := range raw {
			if i == 4 || i == 6 || i == 8 || i == 10 {
				b.WriteByte('-')
			}
			b.WriteByte(hex[x>>4])
			b.WriteByte(hex[x&15])
		}
		in := postgres.OrderCursor{CreatedAt: time.UnixMicro(micros).UTC(), ID: b.String()}
		s := EncodeOrderCursor(in)
		out, err := DecodeOrderCursor(s)
		if err != nil {
			t.Fatalf("%+v encodes to %q, which does not decode: %v", in, s, err)
		}
		if !out.CreatedAt.Equal(in.CreatedAt) || out.ID != in.ID {
			t.Fatalf("%+v round-trips to %+v", in, out)
		}
	})
}

// FuzzProductCursor: a product cursor that decodes re-encodes to the same
// string and holds a SKU that Postgres can compare (valid UTF-8, no NUL,
// bounded); every such SKU encodes to a cursor that decodes to it.
func FuzzProductCursor(f *testing.F) {
	f.Add(EncodeProductCursor("SKU-001"), "SKU-001")
	f.Add("", "")
	f.Add("cDE6", "x")
	f.Add(base64.RawURLEncoding.EncodeToString([]byte("p1:\x00")), "a\x00b")
	f.Add(base64.RawURLEncoding.EncodeToString([]byte("p1:\xff\xfe")), "\xff")
	f.Add("cDE6U0tVLTAwMQ", strings.Repeat("S", 300))
	f.Fuzz(func(t *testing.T, s, sku string) {
		got, err := DecodeProductCursor(s)
		if err != nil {
			if got != "" {
				t.Fatalf("error %v with sku %q", err, got)
			}
			assertBadAfter(t, err)
		} else {
			if enc := EncodeProductCursor(got); enc != s {
				t.Fatalf("%q decodes to %q, which encodes to %q", s, got, enc)
			}
			if !validSKU(got) {
				t.Fatalf("%q decodes to SKU %q, which Postgres cannot compare", s, got)
			}
		}
		if validSKU(sku) {
			back, err := DecodeProductCursor(EncodeProductCursor(sku))
			if err != nil || back != sku {
				t.Fatalf("SKU %q round-trips to %q, %v", sku, back, err)
			}
		}
	})
}

func validSKU(s string) bool {
	return s != "" && len(s) <= maxSKULength && utf8.ValidString(s) && !strings.ContainsRune(s, 0)
}

func assertBadAfter(t *testing.T, err error) {
	t.Helper()
	e := order.AsError(err)
	if e.Code != order.CodeBadUserInput || e.Extensions["field"] != "after" {
		t.Fatalf("error %v: code %s field %v, want BAD_USER_INPUT on after", err, e.Code, e.Extensions["field"])
	}
}
