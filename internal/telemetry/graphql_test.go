package telemetry_test

import (
	"context"
	"testing"

	"github.com/99designs/gqlgen/graphql"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/shop/bff/internal/telemetry"
)

func TestGraphQLTracer(t *testing.T) {
	exp, tp, opts := tracing(t)
	g := telemetry.NewGraphQLTracer(opts...)
	ctx, server := tp.Tracer("test").Start(context.Background(), "POST /graphql")
	ctx = graphql.WithOperationContext(ctx, &graphql.OperationContext{
		OperationName: "CancelOrder",
		Operation:     &ast.OperationDefinition{Operation: ast.Mutation, Name: "CancelOrder"},
	})
	var inner trace.SpanContext
	resp := g.InterceptResponse(ctx, func(ctx context.Context) *graphql.Response {
		inner = trace.SpanContextFromContext(ctx) // resolvers run with the operation span
		return &graphql.Response{Errors: gqlerror.List{
			{Message: "order has changed", Extensions: map[string]any{"code": "CONFLICT"}},
			{Message: "again", Extensions: map[string]any{"code": "CONFLICT"}},
		}}
	})
	server.End()
	require.Len(t, resp.Errors, 2, "the response passes through")

	spans := spansNamed(exp, "mutation")
	require.Len(t, spans, 1)
	s := spans[0]
	assert.Equal(t, "mutation CancelOrder", s.Name)
	assert.Equal(t, server.SpanContext().SpanID(), s.Parent.SpanID())
	assert.Equal(t, s.SpanContext.SpanID(), inner.SpanID())
	a := attrs(s)
	assert.Equal(t, "mutation", a["graphql.operation.type"].AsString())
	assert.Equal(t, "CancelOrder", a["graphql.operation.name"].AsString())
	assert.Equal(t, []string{"CONFLICT"}, a["bff.error_codes"].AsStringSlice())
	assert.Equal(t, codes.Error, s.Status.Code)
}
