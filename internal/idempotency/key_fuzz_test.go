package idempotency_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/formatter"
	"github.com/vektah/gqlparser/v2/parser"

	"github.com/shop/bff/internal/idempotency"
	"github.com/shop/bff/internal/order"
)

// FuzzParseKey checks ParseKey against the rule of errors.md, written out
// on its own: 1..255 printable ASCII characters, not only spaces. A valid
// key round-trips unchanged; an invalid one is IDEMPOTENCY_KEY_INVALID.
func FuzzParseKey(f *testing.F) {
	for _, s := range []string{"0b6f3a52-8f1e-4f4e-9a51-6c1d2e3f4a5b", "k", " ", "  x  ", "a\tb", "é", "\x7f", strings.Repeat("k", 255), strings.Repeat("k", 256), ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, value string) {
		want := len(value) >= 1 && len(value) <= 255 && strings.Trim(value, " ") != ""
		for i := 0; i < len(value); i++ {
			if value[i] < 0x20 || value[i] > 0x7e {
				want = false
			}
		}
		got, err := idempotency.ParseKey(value, true)
		if want {
			if err != nil || got != value {
				t.Fatalf("valid key %q: %q, %v", value, got, err)
			}
			again, err := idempotency.ParseKey(got, true)
			if err != nil || again != got {
				t.Fatalf("parsed key %q does not parse again: %v", got, err)
			}
		} else {
			if err == nil || got != "" {
				t.Fatalf("invalid key %q accepted as %q", value, got)
			}
			if order.ErrorCode(err) != order.CodeIdempotencyKeyInvalid {
				t.Fatalf("invalid key %q: code %s", value, order.ErrorCode(err))
			}
		}
		if got, err := idempotency.ParseKey(value, false); got != "" || err != nil {
			t.Fatalf("absent header: %q, %v", got, err)
		}
	})
}

// FuzzFingerprint checks the request fingerprint over arbitrary operation
// names, documents and variables: it is deterministic, ignores the
// spelling of the document (whitespace, comments, reprinting) and the
// order of variable keys, and separates operation names and variables.
func FuzzFingerprint(f *testing.F) {
	f.Add("Place", `mutation Place($in: PlaceOrderInput!) { placeOrder(input: $in) { order { id } } }`, `{"in":{"lines":[{"productId":"p1","quantity":2}],"currency":"USD"}}`)
	f.Add("", `{ viewer { id } }`, `{}`)
	f.Add("Pay", "mutation Pay($id: ID!, $v: Int!) {\n  # a comment\n  payOrder(id: $id, expectedVersion: $v) { order { version } }\n}", `{"v":1,"id":"x"}`)
	f.Add("Q", `query Q($f: Float) { products(first: 1) { edges { cursor } } }`, `{"f":1.0,"n":[1,2.50,"3"],"z":null}`)
	f.Add("X", `fragment F on Order { id } query X { order(id: "a") { ...F } }`, `{"a":{"b":{"c":[{}]}}}`)
	f.Fuzz(func(t *testing.T, opName, query, varsJSON string) {
		doc, perr := parser.ParseQuery(&ast.Source{Input: query})
		if perr != nil {
			return
		}
		vars, ok := decodeVars(varsJSON)
		if !ok {
			return
		}
		fp := idempotency.Fingerprint(opName, doc, vars)
		if len(fp) != 32 {
			t.Fatalf("fingerprint of %d bytes", len(fp))
		}
		doc2, _ := parser.ParseQuery(&ast.Source{Input: query})
		vars2, _ := decodeVars(varsJSON)
		if !bytes.Equal(fp, idempotency.Fingerprint(opName, doc2, vars2)) {
			t.Fatalf("not deterministic")
		}
		// Reprinted (no comments, other whitespace): the same request.
		var printed bytes.Buffer
		formatter.NewFormatter(&printed).FormatQueryDocument(doc)
		if doc3, err := parser.ParseQuery(&ast.Source{Input: printed.String()}); err == nil {
			if !bytes.Equal(fp, idempotency.Fingerprint(opName, doc3, vars)) {
				t.Fatalf("reprinting changed the fingerprint:\n%s\n---\n%s", query, printed.String())
			}
		} else {
			t.Fatalf("the printed document does not parse: %v\n%s", err, printed.String())
		}
		if doc4, err := parser.ParseQuery(&ast.Source{Input: "# leading comment\n" + query + "\n# trailing comment\n"}); err == nil {
			if !bytes.Equal(fp, idempotency.Fingerprint(opName, doc4, vars)) {
				t.Fatalf("a comment changed the fingerprint")
			}
		}
		// Variables re-encoded with other key order and spacing.
		if reenc, err := json.MarshalIndent(vars, " ", "  "); err == nil {
			if vars5, ok := decodeVars(string(reenc)); ok && !bytes.Equal(fp, idempotency.Fingerprint(opName, doc, vars5)) {
				t.Fatalf("re-encoding the variables changed the fingerprint: %s vs %s", varsJSON, reenc)
			}
		}
		// Other requests differ.
		if bytes.Equal(fp, idempotency.Fingerprint(opName+"x", doc, vars)) {
			t.Fatalf("operation names %q and %q collide", opName, opName+"x")
		}
		other := map[string]any{"__fuzz": "other"}
		for k, v := range vars {
			other[k] = v
		}
		if bytes.Equal(fp, idempotency.Fingerprint(opName, doc, other)) {
			t.Fatalf("an added variable does not change the fingerprint")
		}
	})
}

// decodeVars decodes variables as the GraphQL handler does (numbers kept
// as json.Number).
func decodeVars(s string) (map[string]any, bool) {
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	var v map[string]any
	if err := dec.Decode(&v); err != nil || dec.More() {
		return nil, false
	}
	return v, true
}
