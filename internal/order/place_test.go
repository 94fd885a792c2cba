package order

import (
	"strings"
	"testing"
)

func TestDuplicateLinesAreRejected(t *testing.T) {
	err := ValidateLines("input.lines", []LineInput{{"a", 1}, {"b", 2}, {"a", 3}})
	if err == nil || err.Extensions["field"] != "input.lines[2].productId" || err.Extensions["constraint"] != string(ConstraintDuplicate) {
		t.Fatalf("got %v", err)
	}
	if !strings.Contains(err.Message, "input.lines[0]") {
		t.Fatalf("the message does not name the first line: %q", err.Message)
	}
}

func TestValidateLinesBounds(t *testing.T) {
	fifty := make([]LineInput, MaxLines)
	for i := range fifty {
		fifty[i] = LineInput{ProductID: string(rune('A' + i)), Quantity: MaxQuantity}
	}
	if err := ValidateLines("input.lines", fifty); err != nil {
		t.Fatalf("50 lines of 99: %v", err)
	}
	err := ValidateLines("input.lines", append(fifty, LineInput{"zz", 1}))
	if err == nil || err.Extensions["min"] != 1 || err.Extensions["max"] != MaxLines {
		t.Fatalf("51 lines: %v", err)
	}
	err = ValidateLines("input.lines", []LineInput{{"a", 0}})
	if err == nil || err.Extensions["min"] != 1 || err.Extensions["max"] != MaxQuantity {
		t.Fatalf("quantity 0: %v", err)
	}
}

func TestControlCharactersAreBadInput(t *testing.T) {
	good := Address{Name: "Alice", Line1: "1 Main St", City: "Springfield", PostalCode: "12345", Country: "US"}
	for _, bad := range []string{"A\x00B", "A\nB", "A\tB", "A\x1b[31mB", "A\x7fB", "A\u0085B"} {
		for _, fieldName := range []string{"name", "line1", "line2", "city", "postalCode"} {
			a := good
			v := bad
			switch fieldName {
			case "name":
				a.Name = v
			case "line1":
				a.Line1 = v
			case "line2":
				a.Line2 = &v
			case "city":
				a.City = v
			case "postalCode":
				a.PostalCode = v
			}
			_, err := ValidateAddress("input.shippingAddress", a)
			if err == nil || err.Code != CodeBadUserInput || err.Extensions["field"] != "input.shippingAddress."+fieldName || err.Extensions["constraint"] != string(ConstraintFormat) {
				t.Errorf("%s = %q: %v", fieldName, bad, err)
			}
		}
	}
	for _, ok := range []string{"Zürich", "東京都", "O'Brien & Söhne", "Apt. #4 – rear"} {
		a := good
		a.Line1 = ok
		if _, err := ValidateAddress("a", a); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	if err := CheckText("trackingNumber", "1Z\x00"); err == nil || err.Extensions["field"] != "trackingNumber" {
		t.Errorf("tracking: %v", err)
	}
}

func TestValidateTrackingAndReason(t *testing.T) {
	if got, err := ValidateTracking("trackingNumber", "  1Z999  "); err != nil || got != "1Z999" {
		t.Errorf("ValidateTracking(padded) = %q, %v", got, err)
	}
	for name, in := range map[string]string{"empty": "  ", "too long": strings.Repeat("x", MaxTracking+1), "control": "1Z\x00"} {
		if _, err := ValidateTracking("trackingNumber", in); err == nil || err.Code != CodeBadUserInput || err.Extensions["field"] != "trackingNumber" {
			t.Errorf("ValidateTracking(%s) = %v, want BAD_USER_INPUT on trackingNumber", name, err)
		}
	}
	if _, err := ValidateTracking("trackingNumber", strings.Repeat("x", MaxTracking)); err != nil {
		t.Errorf("ValidateTracking(MaxTracking characters) = %v", err)
	}
	ok, long := strings.Repeat("é", MaxReason), strings.Repeat("é", MaxReason+1)
	if got, err := ValidateReason("reason", &ok); err != nil || got == nil || *got != ok {
		t.Errorf("ValidateReason(MaxReason characters) = %v, %v", got, err)
	}
	padded := " \t" + ok + "\n "
	if got, err := ValidateReason("reason", &padded); err != nil || got == nil || *got != ok {
		t.Errorf("ValidateReason(MaxReason characters, padded) = %v, %v: the length counts after trimming", got, err)
	}
	lines := "wrong size\r\nwill reorder\tsoon"
	if got, err := ValidateReason("reason", &lines); err != nil || got == nil || *got != lines {
		t.Errorf("ValidateReason(line breaks and tabs) = %v, %v", got, err)
	}
	for name, in := range map[string]*string{"nil": nil, "empty": new(string), "blank": ptr(" \n\t ")} {
		if got, err := ValidateReason("reason", in); err != nil || got != nil {
			t.Errorf("ValidateReason(%s) = %v, %v, want no reason", name, got, err)
		}
	}
	if _, err := ValidateReason("reason", &long); err == nil || err.Extensions["constraint"] != string(ConstraintLength) || err.Extensions["max"] != MaxReason {
		t.Errorf("ValidateReason(too long) = %v", err)
	}
	for _, bad := range []string{"a\x00b", "a\x1b[31mb", "a\u0085b", "a\x7fb"} {
		if _, err := ValidateReason("reason", &bad); err == nil || err.Extensions["constraint"] != string(ConstraintFormat) || err.Extensions["field"] != "reason" {
			t.Errorf("ValidateReason(%q) = %v, want a format error on reason", bad, err)
		}
	}
}

func ptr(s string) *string { return &s }
