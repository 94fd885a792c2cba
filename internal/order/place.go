package order

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// Limits of an order request.
const (
	MaxLines       = 50
	MaxQuantity    = 99
	MaxAddressText = 200
	MaxTracking    = 64
	MaxReason      = 500
)

// LineInput is one requested line: a product and a quantity.
type LineInput struct {
	ProductID string
	Quantity  int
}

// ValidateLines checks the count and quantities of the lines at path
// (e.g. "input.lines"). Two lines of the same product are rejected as
// duplicate: a client sends one line per product with its quantity.
func ValidateLines(path string, lines []LineInput) *Error {
	if len(lines) < 1 || len(lines) > MaxLines {
		e := OutOfRange(path, 1, MaxLines)
		e.Message = fmt.Sprintf("an order has 1 to %d lines", MaxLines)
		return e
	}
	seen := make(map[string]int, len(lines))
	for i, l := range lines {
		p := fmt.Sprintf("%s[%d]", path, i)
		if strings.TrimSpace(l.ProductID) == "" {
			return BadInput(p+".productId", ConstraintRequired, "productId is required")
		}
		if l.Quantity < 1 || l.Quantity > MaxQuantity {
			return OutOfRange(p+".quantity", 1, MaxQuantity)
		}
		if j, dup := seen[l.ProductID]; dup {
			return BadInput(p+".productId", ConstraintDuplicate,
				fmt.Sprintf("the product of %s[%d] again; send one line per product with its total quantity", path, j))
		}
		seen[l.ProductID] = i
	}
	return nil
}

// ValidateAddress checks an address at path (e.g. "input.shippingAddress")
// and returns it trimmed, with the country upper-cased.
func ValidateAddress(path string, a Address) (Address, *Error) {
	req := []struct {
		name string
		v    *string
	}{{"name", &a.Name}, {"line1", &a.Line1}, {"city", &a.City}, {"postalCode", &a.PostalCode}, {"country", &a.Country}}
	for _, f := range req {
		*f.v = strings.TrimSpace(*f.v)
		if *f.v == "" {
			return a, BadInput(path+"."+f.name, ConstraintRequired, f.name+" is required")
		}
		if utf8.RuneCountInString(*f.v) > MaxAddressText {
			return a, lengthError(path+"."+f.name, MaxAddressText)
		}
		if err := CheckText(path+"."+f.name, *f.v); err != nil {
			return a, err
		}
	}
	if a.Line2 != nil {
		v := strings.TrimSpace(*a.Line2)
		if utf8.RuneCountInString(v) > MaxAddressText {
			return a, lengthError(path+".line2", MaxAddressText)
		}
		if err := CheckText(path+".line2", v); err != nil {
			return a, err
		}
		if v == "" {
			a.Line2 = nil
		} else {
			a.Line2 = &v
		}
	}
	if utf8.RuneCountInString(a.PostalCode) > 16 {
		return a, lengthError(path+".postalCode", 16)
	}
	a.Country = strings.ToUpper(a.Country)
	if !IsCountry(a.Country) {
		return a, BadInput(path+".country", ConstraintFormat, "country must be an ISO 3166-1 alpha-2 code, e.g. US")
	}
	return a, nil
}

// CheckText rejects text at path that holds a control character (C0, DEL
// or C1: a NUL cannot even be stored in Postgres text, and no address line
// or tracking number has a line break or an escape sequence) with
// BAD_USER_INPUT, constraint format.
func CheckText(path, v string) *Error {
	return checkText(path, v, false)
}

// checkText is [CheckText]; with lines, the line breaks and tabs of free
// text (a cancellation reason typed in a text area) are allowed.
func checkText(path, v string, lines bool) *Error {
	for _, r := range v {
		if lines && (r == '\n' || r == '\r' || r == '\t') {
			continue
		}
		if r < 0x20 || r >= 0x7f && r < 0xa0 {
			return BadInput(path, ConstraintFormat, path+" must not contain control characters")
		}
	}
	return nil
}

func lengthError(field string, max int) *Error {
	return &Error{Code: CodeBadUserInput, Message: fmt.Sprintf("%s is longer than %d characters", field, max),
		Extensions: map[string]any{"field": field, "constraint": string(ConstraintLength), "min": 1, "max": max}}
}

// ValidateTracking checks a tracking number at path and returns it
// trimmed: required, at most MaxTracking characters, printable text.
func ValidateTracking(path, t string) (string, *Error) {
	t = strings.TrimSpace(t)
	if t == "" {
		return t, BadInput(path, ConstraintRequired, path+" is required")
	}
	if utf8.RuneCountInString(t) > MaxTracking {
		return t, lengthError(path, MaxTracking)
	}
	if err := CheckText(path, t); err != nil {
		return t, err
	}
	return t, nil
}

// ValidateReason checks an optional cancellation reason at path and returns
// it trimmed, or nil when it is absent or blank: at most MaxReason
// characters of text, line breaks and tabs allowed but no other control
// character. The reason is kept with the ORDER_CANCELLED event (Event.Reason).
func ValidateReason(path string, r *string) (*string, *Error) {
	if r == nil {
		return nil, nil
	}
	v := strings.TrimSpace(*r)
	if utf8.RuneCountInString(v) > MaxReason {
		e := lengthError(path, MaxReason)
		e.Extensions["min"] = 0
		return nil, e
	}
	if err := checkText(path, v, true); err != nil {
		return nil, err
	}
	if v == "" {
		return nil, nil
	}
	return &v, nil
}

// ValidateCurrency checks that c looks like an ISO 4217 code.
func ValidateCurrency(path, c string) *Error {
	if !IsCurrency(c) {
		return BadInput(path, ConstraintFormat, "currency must be an ISO 4217 code, e.g. USD")
	}
	return nil
}

// PriceLines prices lines from the catalogue products (never from the
// client): every product must exist and be sold in currency.
func PriceLines(in []LineInput, products map[string]*Product, currency string) ([]Line, Money, *Error) {
	total := Money{Currency: currency}
	out := make([]Line, len(in))
	for i, l := range in {
		p, ok := products[l.ProductID]
		if !ok {
			return nil, total, BadInput(fmt.Sprintf("input.lines[%d].productId", i), ConstraintUnknown, "no such product")
		}
		if p.Price.Currency != currency {
			return nil, total, BadInput("input.currency", ConstraintUnknown,
				fmt.Sprintf("the catalogue sells %s in %s, not %s", p.SKU, p.Price.Currency, currency))
		}
		out[i] = Line{ProductID: p.ID, Quantity: l.Quantity, UnitPrice: p.Price}
		total.Cents += p.Price.Cents * int64(l.Quantity)
	}
	return out, total, nil
}
