package shop

import (
	"encoding/base64"
	"strconv"
	"strings"
	"time"

	"github.com/shop/bff/internal/order"
	"github.com/shop/bff/internal/postgres"
)

// Cursors are opaque to clients: base64url of a typed, versioned position.

// EncodeOrderCursor encodes a keyset position in the order list.
func EncodeOrderCursor(c postgres.OrderCursor) string {
	return base64.RawURLEncoding.EncodeToString([]byte("o1:" + strconv.FormatInt(c.CreatedAt.UnixMicro(), 10) + ":" + c.ID))
}

// DecodeOrderCursor decodes an order cursor; a cursor it did not make is
// BAD_USER_INPUT on field "after".
func DecodeOrderCursor(s string) (*postgres.OrderCursor, error) {
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return nil, badCursor()
	}
	parts := strings.SplitN(string(raw), ":", 3)
	if len(parts) != 3 || parts[0] != "o1" || !postgres.IsUUID(parts[2]) || strings.ToLower(parts[2]) != parts[2] {
		return nil, badCursor()
	}
	us, err := strconv.ParseInt(parts[1], 10, 64)
	if err != nil || strconv.FormatInt(us, 10) != parts[1] {
		return nil, badCursor()
	}
	return &postgres.OrderCursor{CreatedAt: time.UnixMicro(us).UTC(), ID: parts[2]}, nil
}

// EncodeProductCursor encodes a position in the catalogue (by SKU).
func EncodeProductCursor(sku string) string {
	return base64.RawURLEncoding.EncodeToString([]byte("p1:" + sku))
}

// DecodeProductCursor decodes a product cursor.
func DecodeProductCursor(s string) (string, error) {
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || !strings.HasPrefix(string(raw), "p1:") || len(raw) == 3 {
		return "", badCursor()
	}
	return string(raw[3:]), nil
}

func badCursor() error {
	return order.BadInput("after", order.ConstraintFormat, "after is not a cursor this API issued")
}

// MaxFirst caps page sizes.
const MaxFirst = 100

// pageSize validates `first`.
func pageSize(first *int) (int, error) {
	n := 20
	if first != nil {
		n = *first
	}
	if n < 1 || n > MaxFirst {
		return 0, order.OutOfRange("first", 1, MaxFirst)
	}
	return n, nil
}
