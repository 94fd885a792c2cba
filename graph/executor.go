package graph

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/executor"
	"github.com/99designs/gqlgen/graphql/handler"
	"github.com/99designs/gqlgen/graphql/handler/extension"
	"github.com/99designs/gqlgen/graphql/handler/lru"
	"github.com/99designs/gqlgen/graphql/handler/transport"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/shop/bff/graph/model"
	"github.com/shop/bff/internal/httpx"
	"github.com/shop/bff/internal/order"
	"github.com/shop/bff/internal/shop"
)

// ExecConfig configures GraphQL execution.
type ExecConfig struct {
	// MaxComplexity bounds the cost of an operation. Default 5000: a full
	// page of 100 orders with their lines and products.
	MaxComplexity int
	// MaxDepth bounds the nesting of selections, introspection included.
	// Default 15.
	MaxDepth int
	// Introspection allows __schema and __type. Default off; the server
	// turns it on by configuration.
	Introspection bool
	// APQCache, when set, enables automatic persisted queries.
	APQCache graphql.Cache[string]
	// Logger logs INTERNAL causes and panics.
	Logger *slog.Logger
	// Extensions are added after the built-in ones (tracing, for one).
	Extensions []graphql.HandlerExtension
}

// configurable is what NewExecutor and NewSubscriptionHandler configure
// alike (gqlgen's executor and its handler server).
type configurable interface {
	SetQueryCache(cache graphql.Cache[*ast.QueryDocument])
	SetErrorPresenter(f graphql.ErrorPresenterFunc)
	SetRecoverFunc(f graphql.RecoverFunc)
	Use(extension graphql.HandlerExtension)
}

func (cfg ExecConfig) withDefaults() ExecConfig {
	if cfg.MaxComplexity <= 0 {
		cfg.MaxComplexity = 5000
	}
	if cfg.MaxDepth <= 0 {
		cfg.MaxDepth = 15
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return cfg
}

func schema(r *Resolver) graphql.ExecutableSchema {
	c := Config{Resolvers: r}
	setComplexity(&c)
	return NewExecutableSchema(c)
}

// configure applies the error presenter, panic recovery, query cost and
// depth limits and the optional extensions to x.
func configure(x configurable, cfg ExecConfig) {
	x.SetQueryCache(lru.New[*ast.QueryDocument](1000))
	x.SetErrorPresenter(presenter(cfg.Logger))
	x.SetRecoverFunc(func(ctx context.Context, p any) error {
		cfg.Logger.ErrorContext(ctx, "panic in resolver", "request_id", httpx.RequestIDFrom(ctx),
			"panic", fmt.Sprint(p), "stack", string(debug.Stack()))
		return &order.Error{Code: order.CodeInternal, Message: "internal error", Cause: fmt.Errorf("panic: %v", p)}
	})
	if cfg.Introspection {
		x.Use(extension.Introspection{})
	}
	if cfg.APQCache != nil {
		x.Use(extension.AutomaticPersistedQuery{Cache: cfg.APQCache})
	}
	x.Use(depthLimit{max: cfg.MaxDepth})
	x.Use(extension.FixedComplexityLimit(cfg.MaxComplexity))
	for _, e := range cfg.Extensions {
		x.Use(e)
	}
}

// NewExecutor returns the executor of the schema with the error presenter,
// panic recovery, query cost and depth limits and, optionally,
// introspection and automatic persisted queries.
func NewExecutor(r *Resolver, cfg ExecConfig) *executor.Executor {
	cfg = cfg.withDefaults()
	exec := executor.New(schema(r))
	configure(exec, cfg)
	return exec
}

// NewSubscriptionHandler serves subscriptions over SSE (the graphql-sse
// protocol's distinct connections mode: POST with Accept:
// text/event-stream), configured like NewExecutor.
func NewSubscriptionHandler(r *Resolver, cfg ExecConfig) http.Handler {
	cfg = cfg.withDefaults()
	srv := handler.New(schema(r))
	srv.AddTransport(transport.SSE{})
	configure(srv, cfg)
	return srv
}

// setComplexity gives list fields a cost proportional to the page they
// ask for, so that `first: 100` of a nested list costs what it loads.
func setComplexity(c *Config) {
	page := func(child int, first *int) int {
		n := 20
		if first != nil && *first > 0 {
			n = min(*first, shop.MaxFirst) // a larger page is refused as BAD_USER_INPUT
		}
		return 1 + n*child
	}
	c.Complexity.Query.Orders = func(child int, status *model.OrderStatus, first *int, after *string) int {
		return page(child, first)
	}
	c.Complexity.Query.OrdersScreen = func(child int, status *model.OrderStatus, first *int, after *string) int {
		return page(child, first)
	}
	c.Complexity.Query.Products = func(child int, first *int, after *string) int { return page(child, first) }
	c.Complexity.HomeScreen.RecentOrders = func(child int) int { return 1 + 5*child }
	c.Complexity.Order.Lines = func(child int) int { return 1 + 5*child }
	c.Complexity.OrderScreen.Timeline = func(child int) int { return 1 + 10*child }
}

// presenter turns every error into the contract's shape: a code from
// errors.md, requestId and retryable, with the code's extra fields.
func presenter(logger *slog.Logger) graphql.ErrorPresenterFunc {
	return func(ctx context.Context, err error) *gqlerror.Error {
		gerr := graphql.DefaultErrorPresenter(ctx, err)
		var oe *order.Error
		if errors.As(err, &oe) {
			gerr.Message = oe.Message
		} else {
			oe = fromGQL(ctx, gerr)
			if oe == nil {
				oe = order.AsError(err)
				gerr.Message = oe.Message
			}
		}
		if oe.Code == order.CodeInternal || oe.Cause != nil {
			if info := httpx.Info(ctx); info != nil && oe.Cause != nil {
				info.AddCause(oe.Cause)
			}
			if oe.Code == order.CodeInternal {
				logger.ErrorContext(ctx, "internal error", "request_id", httpx.RequestIDFrom(ctx), "err", err)
			}
		}
		gerr.Extensions = httpx.ErrorExtensions(ctx, oe)
		return gerr
	}
}

// fromGQL maps gqlgen's own request errors (parse, validation, APQ,
// complexity) to contract codes; nil when err is not one of them.
func fromGQL(ctx context.Context, e *gqlerror.Error) *order.Error {
	code, _ := e.Extensions["code"].(string)
	switch code {
	case "GRAPHQL_PARSE_FAILED":
		return &order.Error{Code: order.CodeParseFailed, Message: e.Message}
	case "GRAPHQL_VALIDATION_FAILED":
		return &order.Error{Code: order.CodeValidationFailed, Message: e.Message}
	case "PERSISTED_QUERY_NOT_FOUND":
		return &order.Error{Code: order.CodePersistedQueryNotFound, Message: e.Message}
	case "COMPLEXITY_LIMIT_EXCEEDED":
		x := &order.Error{Code: order.CodeQueryTooComplex, Message: e.Message, Extensions: map[string]any{}}
		if st := extension.GetComplexityStats(ctx); st != nil {
			x.Extensions["complexity"], x.Extensions["limit"] = st.Complexity, st.ComplexityLimit
		}
		return x
	case string(order.CodeQueryTooComplex):
		return &order.Error{Code: order.CodeQueryTooComplex, Message: e.Message, Extensions: map[string]any{"depth": e.Extensions["depth"], "limit": e.Extensions["limit"]}}
	case "":
		if e.Rule != "" || len(e.Locations) > 0 && e.Path == nil {
			return &order.Error{Code: order.CodeValidationFailed, Message: e.Message}
		}
		if e.Path == nil && e.Message != "" && errors.Unwrap(e) == nil {
			return &order.Error{Code: order.CodeBadRequest, Message: e.Message}
		}
	}
	return nil
}

// depthLimit refuses operations nested deeper than max (QUERY_TOO_COMPLEX).
type depthLimit struct{ max int }

// ExtensionName implements graphql.HandlerExtension.
func (depthLimit) ExtensionName() string { return "DepthLimit" }

// Validate implements graphql.HandlerExtension.
func (depthLimit) Validate(graphql.ExecutableSchema) error { return nil }

// MutateOperationContext implements graphql.OperationContextMutator.
func (d depthLimit) MutateOperationContext(ctx context.Context, rc *graphql.OperationContext) *gqlerror.Error {
	depth := selectionDepth(rc.Operation.SelectionSet, map[string]bool{})
	if depth > d.max {
		e := gqlerror.Errorf("operation is %d levels deep, which exceeds the limit of %d", depth, d.max)
		e.Extensions = map[string]any{"code": string(order.CodeQueryTooComplex), "depth": depth, "limit": d.max}
		return e
	}
	return nil
}

func selectionDepth(set ast.SelectionSet, visiting map[string]bool) int {
	max := 0
	for _, s := range set {
		d := 0
		switch x := s.(type) {
		case *ast.Field:
			if len(x.SelectionSet) > 0 {
				d = 1 + selectionDepth(x.SelectionSet, visiting)
			} else {
				d = 1
			}
		case *ast.InlineFragment:
			d = selectionDepth(x.SelectionSet, visiting)
		case *ast.FragmentSpread:
			if x.Definition != nil && !visiting[x.Name] {
				visiting[x.Name] = true
				d = selectionDepth(x.Definition.SelectionSet, visiting)
				delete(visiting, x.Name)
			}
		}
		if d > max {
			max = d
		}
	}
	return max
}
