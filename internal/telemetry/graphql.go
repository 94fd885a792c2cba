package telemetry

import (
	"context"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/ast"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// GraphQLTracer is a gqlgen extension that makes one span per GraphQL
// operation ("query OrderScreen"), a child of the HTTP server span, and
// one span per root field, whose resolver does the I/O ("Mutation.payOrder",
// see [GraphQLTracer.InterceptRootField]), the parent of the Postgres and Redis
// spans. It records
// graphql.operation.type and graphql.operation.name and, when the response
// has errors, their codes (bff.error_codes) with an error status. Each
// event of a subscription gets a span of its own. Add it with
// executor.Use.
type GraphQLTracer struct {
	tracer trace.Tracer
}

var (
	_ graphql.HandlerExtension     = (*GraphQLTracer)(nil)
	_ graphql.ResponseInterceptor  = (*GraphQLTracer)(nil)
	_ graphql.RootFieldInterceptor = (*GraphQLTracer)(nil)
)

// InterceptRootField implements graphql.RootFieldInterceptor: each root
// field of a query or mutation (served by a resolver method, which does
// the I/O) gets a span ("Query.orderScreen") under the operation's,
// around its resolver and the rendering of what it returned. The fields
// under it are read from models and get none: a field interceptor would
// run, and allocate, for every one of them.
func (g *GraphQLTracer) InterceptRootField(ctx context.Context, next graphql.RootResolver) graphql.Marshaler {
	rc := graphql.GetRootFieldContext(ctx)
	if rc == nil || rc.Field.Field == nil || !graphql.HasOperationContext(ctx) || !hasParent(ctx) {
		return next(ctx)
	}
	object := "Query"
	if op := graphql.GetOperationContext(ctx).Operation; op != nil && op.Operation == ast.Mutation {
		object = "Mutation"
	}
	ctx, span := g.tracer.Start(ctx, object+"."+rc.Field.Name, trace.WithAttributes(
		attribute.String("graphql.field.path", rc.Field.Alias)))
	defer span.End()
	res := next(ctx)
	for _, e := range graphql.GetErrors(ctx) {
		if len(e.Path) > 0 && e.Path[0] == ast.PathName(rc.Field.Alias) {
			span.RecordError(e)
			span.SetStatus(codes.Error, e.Message)
			break
		}
	}
	return res
}

// NewGraphQLTracer returns the extension.
func NewGraphQLTracer(opts ...Option) *GraphQLTracer {
	return &GraphQLTracer{tracer: newOptions(opts).tracer()}
}

// ExtensionName implements graphql.HandlerExtension.
func (*GraphQLTracer) ExtensionName() string { return "OpenTelemetry" }

// Validate implements graphql.HandlerExtension.
func (*GraphQLTracer) Validate(graphql.ExecutableSchema) error { return nil }

// InterceptResponse implements graphql.ResponseInterceptor.
func (g *GraphQLTracer) InterceptResponse(ctx context.Context, next graphql.ResponseHandler) *graphql.Response {
	if !graphql.HasOperationContext(ctx) {
		return next(ctx)
	}
	oc := graphql.GetOperationContext(ctx)
	opType := "query"
	if oc.Operation != nil {
		switch oc.Operation.Operation {
		case ast.Mutation:
			opType = "mutation"
		case ast.Subscription:
			opType = "subscription"
		}
	}
	name := opType
	attrs := []attribute.KeyValue{attribute.String(string(semconv.GraphQLOperationTypeKey), opType)}
	if oc.OperationName != "" {
		name += " " + oc.OperationName
		attrs = append(attrs, semconv.GraphQLOperationName(oc.OperationName))
	} else if oc.Operation != nil && oc.Operation.Name != "" {
		name += " " + oc.Operation.Name
		attrs = append(attrs, semconv.GraphQLOperationName(oc.Operation.Name))
	}
	ctx, span := g.tracer.Start(ctx, name, trace.WithAttributes(attrs...))
	defer span.End()
	resp := next(ctx)
	if resp != nil && len(resp.Errors) > 0 {
		var codesSeen []string
		for _, e := range resp.Errors {
			c, _ := e.Extensions["code"].(string)
			if c == "" {
				c = "INTERNAL"
			}
			dup := false
			for _, s := range codesSeen {
				dup = dup || s == c
			}
			if !dup {
				codesSeen = append(codesSeen, c)
			}
		}
		span.SetAttributes(attribute.StringSlice("bff.error_codes", codesSeen))
		span.SetStatus(codes.Error, resp.Errors[0].Message)
	}
	return resp
}
