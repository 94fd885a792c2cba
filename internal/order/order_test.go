package order

import "testing"

func TestMoneyFormatted(t *testing.T) {
	cases := map[Money]string{
		{19900, "USD"}:     "$199.00",
		{5, "USD"}:         "$0.05",
		{123456789, "EUR"}: "€1,234,567.89",
		{-250, "GBP"}:      "-£2.50",
		{1000, "CHF"}:      "10.00 CHF",
	}
	for m, want := range cases {
		if got := m.Formatted(); got != want {
			t.Errorf("%v: got %q want %q", m, got, want)
		}
	}
}

func TestValidateLines(t *testing.T) {
	ok := []LineInput{{"a", 1}, {"b", 99}}
	if err := ValidateLines("input.lines", ok); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		lines []LineInput
		field string
		c     Constraint
	}{
		{nil, "input.lines", ConstraintRange},
		{make([]LineInput, 51), "input.lines", ConstraintRange},
		{[]LineInput{{"a", 1}, {"b", 1}, {"c", 0}}, "input.lines[2].quantity", ConstraintRange},
		{[]LineInput{{"a", 100}}, "input.lines[0].quantity", ConstraintRange},
		{[]LineInput{{"", 1}}, "input.lines[0].productId", ConstraintRequired},
		{[]LineInput{{"a", 1}, {"a", 2}}, "input.lines[1].productId", ConstraintDuplicate},
	}
	for _, c := range cases {
		err := ValidateLines("input.lines", c.lines)
		if err == nil || err.Extensions["field"] != c.field || err.Extensions["constraint"] != string(c.c) {
			t.Errorf("%v: got %v", c.lines, err)
		}
	}
}

func TestValidateAddress(t *testing.T) {
	good := Address{Name: " Alice ", Line1: "1 Main St", City: "Springfield", PostalCode: "12345", Country: "us"}
	a, err := ValidateAddress("input.shippingAddress", good)
	if err != nil || a.Name != "Alice" || a.Country != "US" {
		t.Fatalf("%+v %v", a, err)
	}
	bad := good
	bad.Country = "XX"
	if _, err := ValidateAddress("a", bad); err == nil || err.Extensions["field"] != "a.country" {
		t.Fatalf("country: %v", err)
	}
	bad = good
	bad.City = "  "
	if _, err := ValidateAddress("a", bad); err == nil || err.Extensions["field"] != "a.city" || err.Extensions["constraint"] != "required" {
		t.Fatalf("city: %v", err)
	}
	bad = good
	bad.Line1 = string(make([]byte, 201))
	if _, err := ValidateAddress("a", bad); err == nil || err.Extensions["constraint"] != "length" {
		t.Fatalf("length: %v", err)
	}
}

func TestPriceLines(t *testing.T) {
	products := map[string]*Product{"p1": {ID: "p1", SKU: "S1", Price: Money{250, "USD"}}, "p2": {ID: "p2", SKU: "S2", Price: Money{1000, "USD"}}}
	lines, total, err := PriceLines([]LineInput{{"p1", 2}, {"p2", 3}}, products, "USD")
	if err != nil || total.Cents != 3500 || len(lines) != 2 || lines[1].UnitPrice.Cents != 1000 {
		t.Fatalf("%v %v %v", lines, total, err)
	}
	if _, _, err := PriceLines([]LineInput{{"p1", 1}, {"zz", 1}}, products, "USD"); err == nil || err.Extensions["field"] != "input.lines[1].productId" {
		t.Fatalf("unknown: %v", err)
	}
	if _, _, err := PriceLines([]LineInput{{"p1", 1}}, products, "EUR"); err == nil || err.Extensions["field"] != "input.currency" {
		t.Fatalf("currency: %v", err)
	}
}
