package shop

import (
	"encoding/base64"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/shop/bff/internal/order"
	"github.com/shop/bff/internal/postgres"
)

// Cursors are opaque to clients: base64url of a typed, versioned position.
// Decoding is strict (no padding, no non-zero trailing bits, no line
// breaks), so one position has exactly one cursor, and a decoded position is one Postgres
// can compare: anything else is BAD_USER_INPUT on "after", never a
// database error.

// cursorEncoding is unpadded base64url that refuses non-zero trailing bits.
var cursorEncoding = base64.RawURLEncoding.Strict()

// decodeCursor decodes s when it is the canonical encoding of its bytes:
// encoding/base64 skips '\r' and '\n' anywhere, even in strict mode, so a
// decoded cursor must also encode back to s.
func decodeCursor(s string) ([]byte, bool) {
	raw, err := cursorEncoding.DecodeString(s)
	if err != nil || cursorEncoding.EncodeToString(raw) != s {
		return nil, false
	}
	return raw, true
}

// maxCursorMicros bounds the time of an order cursor (the end of year
// 9999, in microseconds since 1970): no order was created outside
// 1970..9999, so a cursor beyond is not one the API issued.
const maxCursorMicros int64 = 253402300799999999

// maxSKULength bounds the SKU of a product cursor.
const maxSKULength = 200

// EncodeOrderCursor encodes a keyset position in the order list.
func EncodeOrderCursor(c postgres.OrderCursor) string {
	return cursorEncoding.EncodeToString([]byte("o1:" + strconv.FormatInt(c.CreatedAt.UnixMicro(), 10) + ":" + c.ID))
}

// DecodeOrderCursor decodes an order cursor; a cursor it did not make is
// BAD_USER_INPUT on field "after".
func DecodeOrderCursor(s string) (*postgres.OrderCursor, error) {
	raw, ok := decodeCursor(s)
	if !ok {
		return nil, badCursor()
	}
	parts := strings.SplitN(string(raw), ":", 3)
	if len(parts) != 3 || parts[0] != "o1" || !postgres.IsUUID(parts[2]) || strings.ToLower(parts[2]) != parts[2] {
		return nil, badCursor()
	}
	us, err := strconv.ParseInt(parts[1], 10, 64)
	if err != nil || strconv.FormatInt(us, 10) != parts[1] || us < 0 || us > maxCursorMicros {
		return nil, badCursor()
	}
	return &postgres.OrderCursor{CreatedAt: time.UnixMicro(us).UTC(), ID: parts[2]}, nil
}

// EncodeProductCursor encodes a position in the catalogue (by SKU).
func EncodeProductCursor(sku string) string {
	return cursorEncoding.EncodeToString([]byte("p1:" + sku))
}

// DecodeProductCursor decodes a product cursor: its SKU is valid UTF-8
// without NUL (Postgres text cannot hold anything else), 1..200 bytes.
func DecodeProductCursor(s string) (string, error) {
	raw, ok := decodeCursor(s)
	if !ok || !strings.HasPrefix(string(raw), "p1:") {
		return "", badCursor()
	}
	sku := string(raw[3:])
	if sku == "" || len(sku) > maxSKULength || !utf8.ValidString(sku) || strings.ContainsRune(sku, 0) {
		return "", badCursor()
	}
	return sku, nil
}

func badCursor() error {
	return order.BadInput("after", order.ConstraintFormat, "after is not a cursor this API issued")
}

// Page sizes and lengths of the screens (the schema's `first: Int = 20`
// states DefaultFirst to clients; a request without `first` gets it here).
const (
	// DefaultFirst is the page size when `first` is absent.
	DefaultFirst = 20
	// MaxFirst caps page sizes.
	MaxFirst = 100
	// RecentOrders is how many orders the home screen shows.
	RecentOrders = 5
)

// pageSize validates `first`.
func pageSize(first *int) (int, error) {
	n := DefaultFirst
	if first != nil {
		n = *first
	}
	if n < 1 || n > MaxFirst {
		return 0, order.OutOfRange("first", 1, MaxFirst)
	}
	return n, nil
}
