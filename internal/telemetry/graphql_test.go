package telemetry_test

import (
	"context"
	"strings"
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

// A root field gets a span under the operation's, named by its type and
// field, with the error of its own path; a field without a trace to join
// gets none.
func TestGraphQLTracerRootFields(t *testing.T) {
	exp, tp, opts := tracing(t)
	g := telemetry.NewGraphQLTracer(opts...)
	op := func(ctx context.Context, kind ast.Operation) context.Context {
		ctx = graphql.WithOperationContext(ctx, &graphql.OperationContext{Operation: &ast.OperationDefinition{Operation: kind}})
		return graphql.WithResponseContext(ctx, graphql.DefaultErrorPresenter, graphql.DefaultRecover)
	}
	field := func(ctx context.Context, name, alias string) context.Context {
		return graphql.WithRootFieldContext(ctx, &graphql.RootFieldContext{Object: name,
			Field: graphql.CollectedField{Field: &ast.Field{Name: name, Alias: alias}}})
	}
	ctx, parent := tp.Tracer("test").Start(context.Background(), "query")
	var inner trace.SpanContext
	res := g.InterceptRootField(field(op(ctx, ast.Query), "orderScreen", "screen"), func(ctx context.Context) graphql.Marshaler {
		inner = trace.SpanContextFromContext(ctx)
		graphql.AddError(ctx, &gqlerror.Error{Message: "not this field's", Path: ast.Path{ast.PathName("other")}})
		return graphql.MarshalInt(7)
	})
	mctx := field(op(ctx, ast.Mutation), "payOrder", "payOrder")
	g.InterceptRootField(mctx, func(ctx context.Context) graphql.Marshaler {
		graphql.AddError(ctx, &gqlerror.Error{Message: "order has changed", Path: ast.Path{ast.PathName("payOrder")}})
		return graphql.Null
	})
	g.InterceptRootField(field(op(context.Background(), ast.Query), "homeScreen", "homeScreen"), func(context.Context) graphql.Marshaler {
		return graphql.Null
	})
	parent.End()
	var out strings.Builder
	res.MarshalGQL(&out)
	require.Equal(t, "7", out.String(), "the field's value passes through")

	q := spansNamed(exp, "Query.orderScreen")
	require.Len(t, q, 1)
	assert.Equal(t, parent.SpanContext().SpanID(), q[0].Parent.SpanID())
	assert.Equal(t, q[0].SpanContext.SpanID(), inner.SpanID(), "the resolver runs with the field's span")
	assert.Equal(t, "screen", attrs(q[0])["graphql.field.path"].AsString())
	assert.NotEqual(t, codes.Error, q[0].Status.Code, "another field's error")
	m := spansNamed(exp, "Mutation.payOrder")
	require.Len(t, m, 1)
	assert.Equal(t, codes.Error, m[0].Status.Code)
	assert.Equal(t, "order has changed", m[0].Status.Description)
	assert.Empty(t, spansNamed(exp, "Query.homeScreen"), "a field outside a trace")
}
