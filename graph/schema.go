package graph

import "github.com/vektah/gqlparser/v2/ast"

// servedSchema is the schema as clients see it: the generated one without
// the @defer directive. The BFF answers every operation in one response
// (a screen is cached and served whole, so deferring part of it saves no
// work), so it does not advertise incremental delivery: introspection
// does not list @defer, and a document that uses it fails validation
// (GRAPHQL_VALIDATION_FAILED: unknown directive) instead of silently
// arriving inline.
func servedSchema() *ast.Schema {
	s := *parsedSchema
	s.Directives = make(map[string]*ast.DirectiveDefinition, len(parsedSchema.Directives))
	for name, d := range parsedSchema.Directives {
		if name != "defer" {
			s.Directives[name] = d
		}
	}
	return &s
}
