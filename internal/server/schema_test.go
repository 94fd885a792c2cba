package server

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/vektah/gqlparser/v2"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/formatter"

	"github.com/shop/bff/graph"
)

// The published schema (clients.md): `make schema` writes the SDL the BFF
// serves to schemaFile, and these tests fail on a breaking change of the
// served schema against the contract agreed with the clients.
const (
	// schemaFile is the published SDL, relative to this package.
	schemaFile = "../../docs/schema.graphql"
	// contractFile is ../shared/spec/contract.graphql from the repository root.
	contractFile = "../../../shared/spec/contract.graphql"
	// schemaOutEnv names the file TestSchemaPublished writes (make schema).
	schemaOutEnv = "SCHEMA_OUT"
)

// servedSchema is the schema the executor serves (schema/*.graphqls as
// gqlgen compiled it into graph/).
func servedSchema() *ast.Schema {
	return graph.NewExecutableSchema(graph.Config{}).Schema()
}

// formatSDL prints a schema without the built-in types and directives.
func schemaFormatSDL(s *ast.Schema) []byte {
	var buf bytes.Buffer
	buf.WriteString("# The schema served by the BFF, written by `make schema`. Do not edit:\n" +
		"# change schema/*.graphqls and run `make generate schema`.\n\n")
	formatter.NewFormatter(&buf, formatter.WithIndent("  ")).FormatSchema(s)
	return buf.Bytes()
}

func schemaLoadSDL(t *testing.T, name string, src []byte) *ast.Schema {
	t.Helper()
	s, err := gqlparser.LoadSchema(&ast.Source{Name: name, Input: string(src)})
	if err != nil {
		t.Fatalf("%s does not load: %v", name, err)
	}
	return s
}

// TestSchemaPublished writes the served SDL to $SCHEMA_OUT (make schema),
// or else checks that the committed docs/schema.graphql is up to date.
func TestSchemaPublished(t *testing.T) {
	sdl := schemaFormatSDL(servedSchema())
	schemaLoadSDL(t, "served", sdl) // what we publish must load on its own
	if out := os.Getenv(schemaOutEnv); out != "" {
		if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(out, sdl, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s (%d bytes)", out, len(sdl))
		return
	}
	committed, err := os.ReadFile(schemaFile)
	if err != nil {
		t.Fatalf("the published schema %s is missing: run `make schema` and commit it (%v)", schemaFile, err)
	}
	if !bytes.Equal(committed, sdl) {
		t.Fatalf("%s is not the served schema: run `make schema` and commit it", schemaFile)
	}
}

// TestSchemaHasNoBreakingChangeAgainstContract is the CI gate of clients.md:
// the served schema may extend ../shared/spec/contract.graphql, but not
// remove or retype a field, add a required argument, or remove an enum
// value, unless the contract's element is @deprecated.
func TestSchemaHasNoBreakingChangeAgainstContract(t *testing.T) {
	src, err := os.ReadFile(contractFile)
	if err != nil {
		t.Fatalf("the contract %s (../shared/spec/contract.graphql from the repository root) cannot be read: %v", contractFile, err)
	}
	contract := schemaLoadSDL(t, "contract.graphql", src)
	served := servedSchema()
	if breaks := breakingChanges(contract, served); len(breaks) > 0 {
		t.Fatalf("the served schema breaks the contract %s in %d places (deprecate first, then remove):\n  %s",
			contractFile, len(breaks), strings.Join(breaks, "\n  "))
	}
	// The published file is what clients read: it must not break either.
	if b, err := os.ReadFile(schemaFile); err == nil {
		if breaks := breakingChanges(contract, schemaLoadSDL(t, schemaFile, b)); len(breaks) > 0 {
			t.Fatalf("%s breaks the contract:\n  %s", schemaFile, strings.Join(breaks, "\n  "))
		}
	}
}

// breakingChanges lists what a client written against old can no longer do
// against new. Elements of old marked @deprecated may go or change.
func breakingChanges(old, new *ast.Schema) []string {
	var out []string
	report := func(format string, args ...any) { out = append(out, fmt.Sprintf(format, args...)) }

	for _, root := range []struct {
		name     string
		old, new *ast.Definition
	}{{"query", old.Query, new.Query}, {"mutation", old.Mutation, new.Mutation}, {"subscription", old.Subscription, new.Subscription}} {
		switch {
		case root.old == nil:
		case root.new == nil:
			report("schema: %s root type removed", root.name)
		case root.old.Name != root.new.Name:
			report("schema: %s root type changed from %s to %s", root.name, root.old.Name, root.new.Name)
		}
	}

	names := make([]string, 0, len(old.Types))
	for name, def := range old.Types {
		if !def.BuiltIn {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	for _, name := range names {
		o := old.Types[name]
		n, ok := new.Types[name]
		if !ok {
			report("%s: type removed", name)
			continue
		}
		if o.Kind != n.Kind {
			report("%s: kind changed from %s to %s", name, o.Kind, n.Kind)
			continue
		}
		switch o.Kind {
		case ast.Object, ast.Interface:
			for _, of := range o.Fields {
				if strings.HasPrefix(of.Name, "__") {
					continue
				}
				nf := n.Fields.ForName(of.Name)
				if nf == nil {
					if !schemaDeprecated(of.Directives) {
						report("%s.%s: field removed", name, of.Name)
					}
					continue
				}
				if !schemaDeprecated(of.Directives) && !schemaOutputCompatible(of.Type, nf.Type) {
					report("%s.%s: field type changed from %s to %s", name, of.Name, of.Type, nf.Type)
				}
				schemaCheckArguments(report, name+"."+of.Name, of.Arguments, nf.Arguments)
			}
			for _, iface := range o.Interfaces {
				if !schemaListHas(n.Interfaces, iface) {
					report("%s: no longer implements %s", name, iface)
				}
			}
		case ast.InputObject:
			for _, of := range o.Fields {
				nf := n.Fields.ForName(of.Name)
				if nf == nil {
					if !schemaDeprecated(of.Directives) {
						report("%s.%s: input field removed", name, of.Name)
					}
					continue
				}
				if !schemaDeprecated(of.Directives) && !schemaInputCompatible(of.Type, nf.Type, nf.DefaultValue != nil) {
					report("%s.%s: input field type changed from %s to %s", name, of.Name, of.Type, nf.Type)
				}
			}
			for _, nf := range n.Fields {
				if o.Fields.ForName(nf.Name) == nil && nf.Type.NonNull && nf.DefaultValue == nil {
					report("%s.%s: required input field added without a default", name, nf.Name)
				}
			}
		case ast.Enum:
			for _, ov := range o.EnumValues {
				if n.EnumValues.ForName(ov.Name) == nil && !schemaDeprecated(ov.Directives) {
					report("%s.%s: enum value removed", name, ov.Name)
				}
			}
		case ast.Union:
			for _, member := range o.Types {
				if !schemaListHas(n.Types, member) {
					report("%s: union member %s removed", name, member)
				}
			}
		}
	}

	dirs := make([]string, 0, len(old.Directives))
	for name, d := range old.Directives {
		if d.Position == nil || d.Position.Src == nil || !d.Position.Src.BuiltIn {
			dirs = append(dirs, name)
		}
	}
	sort.Strings(dirs)
	for _, name := range dirs {
		nd, ok := new.Directives[name]
		if !ok {
			report("@%s: directive removed", name)
			continue
		}
		schemaCheckArguments(report, "@"+name, old.Directives[name].Arguments, nd.Arguments)
	}
	return out
}

// checkArguments reports removed and retyped arguments, and arguments added
// as required without a default.
func schemaCheckArguments(report func(string, ...any), owner string, old, new ast.ArgumentDefinitionList) {
	for _, oa := range old {
		na := new.ForName(oa.Name)
		if na == nil {
			if !schemaDeprecated(oa.Directives) {
				report("%s(%s): argument removed", owner, oa.Name)
			}
			continue
		}
		if !schemaDeprecated(oa.Directives) && !schemaInputCompatible(oa.Type, na.Type, na.DefaultValue != nil) {
			report("%s(%s): argument type changed from %s to %s", owner, oa.Name, oa.Type, na.Type)
		}
	}
	for _, na := range new {
		if old.ForName(na.Name) == nil && na.Type.NonNull && na.DefaultValue == nil {
			report("%s(%s): required argument added without a default", owner, na.Name)
		}
	}
}

// outputCompatible: a client reading old can read new. The named type and
// the list structure stay; a field may become non-null, never nullable.
func schemaOutputCompatible(old, new *ast.Type) bool {
	if old.NonNull && !new.NonNull {
		return false
	}
	if old.Elem != nil || new.Elem != nil {
		return old.Elem != nil && new.Elem != nil && schemaOutputCompatible(old.Elem, new.Elem)
	}
	return old.NamedType == new.NamedType
}

// inputCompatible: what a client sends for old is valid for new. An input
// may become nullable, and non-null only where a default fills it in
// (a client that sent null explicitly is the accepted edge case).
func schemaInputCompatible(old, new *ast.Type, newHasDefault bool) bool {
	if new.NonNull && !old.NonNull && !newHasDefault {
		return false
	}
	if old.Elem != nil || new.Elem != nil {
		return old.Elem != nil && new.Elem != nil && schemaInputCompatible(old.Elem, new.Elem, false)
	}
	return old.NamedType == new.NamedType
}

func schemaDeprecated(dl ast.DirectiveList) bool { return dl.ForName("deprecated") != nil }

func schemaListHas(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// TestSchemaComparatorReportsEachKindOfBreak feeds the comparator a schema
// broken in every way it must catch, and the same changes made safe by a
// deprecation or a default.
func TestSchemaComparatorReportsEachKindOfBreak(t *testing.T) {
	const before = `
type Query {
  order(id: ID!): Order
  orders(first: Int = 20): [Order!]!
  legacy: String @deprecated(reason: "use order")
  note(id: ID!, verbose: Boolean @deprecated): String
}
type Mutation { pay(id: ID!, expectedVersion: Int!): Order! }
type Order {
  id: ID!
  number: String!
  total: Int!
  tracking: String
  status: Status!
  lines: [String!]!
  oldField: String @deprecated
}
enum Status { OPEN PAID SHIPPED GONE @deprecated(reason: "never used") }
input AddressInput { name: String!, line2: String, zip: String }
union Result = Order
type Removed { id: ID! }
`
	const after = `
type Query {
  order(id: ID!, locale: String!): Order
  orders(first: Int = 20, status: Status, region: String! = "eu"): [Order!]!
  note(id: ID!): String
}
type Mutation { pay(id: String!, expectedVersion: Int!): Order! }
type Order {
  id: ID!
  total: String!
  tracking: String!
  status: Status
  lines: [String!]
  extra: Int
}
type Other { id: ID! }
enum Status { OPEN SHIPPED }
input AddressInput { name: String, line2: String!, country: String! }
union Result = Other
`
	got := breakingChanges(schemaLoadSDL(t, "before", []byte(before)), schemaLoadSDL(t, "after", []byte(after)))
	want := []string{
		"Query.order(locale): required argument added without a default",
		"Mutation.pay(id): argument type changed from ID! to String!",
		"Order.number: field removed",
		"Order.total: field type changed from Int! to String!",
		"Order.status: field type changed from Status! to Status",
		"Order.lines: field type changed from [String!]! to [String!]",
		"Status.PAID: enum value removed",
		"AddressInput.line2: input field type changed from String to String!",
		"AddressInput.zip: input field removed",
		"AddressInput.country: required input field added without a default",
		"Result: union member Order removed",
		"Removed: type removed",
	}
	gotSet := map[string]bool{}
	for _, g := range got {
		gotSet[g] = true
	}
	for _, w := range want {
		if !gotSet[w] {
			t.Errorf("not reported: %s", w)
		}
	}
	wantSet := map[string]bool{}
	for _, w := range want {
		wantSet[w] = true
	}
	for _, g := range got {
		if !wantSet[g] {
			// Safe changes: deprecated elements removed (legacy, oldField,
			// GONE, note(verbose)), new optional arguments or ones with a
			// default, new fields and types, tracking becoming non-null,
			// name becoming nullable.
			t.Errorf("reported a safe change: %s", g)
		}
	}

	if breaks := breakingChanges(schemaLoadSDL(t, "before", []byte(before)), schemaLoadSDL(t, "same", []byte(before))); len(breaks) > 0 {
		t.Errorf("a schema breaks against itself: %v", breaks)
	}
}
