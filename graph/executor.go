package graph

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/executor"
	"github.com/99designs/gqlgen/graphql/handler/extension"
	"github.com/99designs/gqlgen/graphql/handler/lru"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/shop/bff/internal/config"
	"github.com/shop/bff/internal/httpx"
	"github.com/shop/bff/internal/order"
	"github.com/shop/bff/internal/shop"
)

// ExecConfig configures GraphQL execution.
type ExecConfig struct {
	// MaxComplexity bounds the cost of an operation. Default
	// config.DefaultQueryMaxComplexity.
	MaxComplexity int
	// MaxDepth bounds the nesting of selections, introspection included.
	// Default config.DefaultQueryMaxDepth.
	MaxDepth int
	// MaxTokens bounds the tokens the executor's own parser reads, for a
	// document that did not come through admission. Default
	// config.DefaultQueryMaxTokens, admission's budget.
	MaxTokens int
	// Introspection allows __schema and __type. Default off; the server
	// turns it on by configuration.
	Introspection bool
	// QueryCache hands the executor parsed and validated documents
	// (admission's); default: an LRU of 1000 documents.
	QueryCache graphql.Cache[*ast.QueryDocument]
	// Logger logs INTERNAL causes and panics.
	Logger *slog.Logger
	// Extensions are added after the built-in ones (tracing, for one).
	Extensions []graphql.HandlerExtension
}

func (cfg ExecConfig) withDefaults() ExecConfig {
	if cfg.MaxComplexity <= 0 {
		cfg.MaxComplexity = config.DefaultQueryMaxComplexity
	}
	if cfg.MaxDepth <= 0 {
		cfg.MaxDepth = config.DefaultQueryMaxDepth
	}
	if cfg.MaxTokens <= 0 {
		cfg.MaxTokens = config.DefaultQueryMaxTokens
	}
	if cfg.QueryCache == nil {
		cfg.QueryCache = lru.New[*ast.QueryDocument](1000)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return cfg
}

// Schema returns the executable schema served by r.
func Schema(r *Resolver) graphql.ExecutableSchema {
	c := Config{Resolvers: r, Schema: servedSchema()}
	setComplexity(&c)
	return NewExecutableSchema(c)
}

// NewExecutor returns the executor of the schema es (see Schema) with the
// error presenter, panic recovery, query cost and depth limits (computed
// in linear time, each fragment once) and, optionally, introspection.
func NewExecutor(es graphql.ExecutableSchema, cfg ExecConfig) *executor.Executor {
	cfg = cfg.withDefaults()
	x := executor.New(es)
	x.SetQueryCache(cfg.QueryCache)
	x.SetParserTokenLimit(cfg.MaxTokens)
	x.SetErrorPresenter(presenter(cfg.Logger))
	x.SetRecoverFunc(func(ctx context.Context, p any) error {
		cfg.Logger.ErrorContext(ctx, "panic in resolver", "request_id", httpx.RequestIDFrom(ctx),
			"panic", fmt.Sprint(p), "stack", string(debug.Stack()))
		return &order.Error{Code: order.CodeInternal, Message: "internal error", Cause: fmt.Errorf("panic: %v", p)}
	})
	if cfg.Introspection {
		x.Use(extension.Introspection{})
	}
	x.Use(budget{maxDepth: cfg.MaxDepth, maxCost: cfg.MaxComplexity, es: es})
	for _, e := range cfg.Extensions {
		x.Use(e)
	}
	return x
}

// setComplexity gives list fields a cost proportional to the page they
// ask for, so that `first: 100` of a nested list costs what it loads.
func setComplexity(c *Config) {
	page := func(child int, first *int) int {
		n := shop.DefaultFirst
		if first != nil && *first > 0 {
			n = min(*first, shop.MaxFirst) // a larger page is refused as BAD_USER_INPUT
		}
		return 1 + n*child
	}
	c.Complexity.Query.Orders = func(child int, status *order.Status, first *int, after *string) int {
		return page(child, first)
	}
	c.Complexity.Query.OrdersScreen = func(child int, status *order.Status, first *int, after *string) int {
		return page(child, first)
	}
	c.Complexity.Query.Products = func(child int, first *int, after *string) int { return page(child, first) }
	c.Complexity.HomeScreen.RecentOrders = func(child int) int { return 1 + shop.RecentOrders*child }
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
		return &order.Error{Code: httpx.CodeParseFailed, Message: e.Message}
	case "GRAPHQL_VALIDATION_FAILED":
		return &order.Error{Code: httpx.CodeValidationFailed, Message: e.Message}
	case "PERSISTED_QUERY_NOT_FOUND":
		return &order.Error{Code: httpx.CodePersistedQueryNotFound, Message: e.Message}
	case string(httpx.CodeQueryTooComplex):
		ext := map[string]any{}
		for k, v := range e.Extensions {
			if k != "code" {
				ext[k] = v
			}
		}
		return &order.Error{Code: httpx.CodeQueryTooComplex, Message: e.Message, Extensions: ext}
	case "":
		if e.Rule != "" || len(e.Locations) > 0 && e.Path == nil {
			return &order.Error{Code: httpx.CodeValidationFailed, Message: e.Message}
		}
		if e.Path == nil && e.Message != "" && errors.Unwrap(e) == nil {
			return &order.Error{Code: httpx.CodeBadRequest, Message: e.Message}
		}
	}
	return nil
}

// budget refuses operations nested deeper than maxDepth or costing more
// than maxCost (QUERY_TOO_COMPLEX). Both are computed in one walk that
// visits every selection of the document at most once: a fragment's depth
// and cost are computed the first time it is spread and remembered, so a
// chain of fragments that each spread the next twice costs linear time.
type budget struct {
	maxDepth, maxCost int
	es                graphql.ExecutableSchema
}

// ExtensionName implements graphql.HandlerExtension.
func (budget) ExtensionName() string { return "Budget" }

// Validate implements graphql.HandlerExtension.
func (budget) Validate(graphql.ExecutableSchema) error { return nil }

// MutateOperationContext implements graphql.OperationContextMutator.
func (b budget) MutateOperationContext(ctx context.Context, rc *graphql.OperationContext) *gqlerror.Error {
	m := Measure(ctx, b.es, rc.Doc, rc.Operation, rc.Variables)
	if m.Depth > b.maxDepth {
		e := gqlerror.Errorf("operation is %d levels deep, which exceeds the limit of %d", m.Depth, b.maxDepth)
		e.Extensions = map[string]any{"code": string(httpx.CodeQueryTooComplex), "depth": m.Depth, "limit": b.maxDepth}
		return e
	}
	if m.Cost > b.maxCost {
		e := gqlerror.Errorf("operation has complexity %d, which exceeds the limit of %d", m.Cost, b.maxCost)
		e.Extensions = map[string]any{"code": string(httpx.CodeQueryTooComplex), "complexity": m.Cost, "limit": b.maxCost}
		return e
	}
	return nil
}

// Measurement is the depth and cost of an operation, and the selections
// visited to compute them.
type Measurement struct {
	Depth, Cost int
	// Visited counts the selections walked: at most the selections written
	// in the document, whatever the fragments spread.
	Visited int
}

// Measure computes the depth and cost of op (gqlgen's cost rules: a
// field's custom complexity from the schema, else 1 plus its children;
// __schema costs nothing) visiting each selection of doc at most once.
func Measure(ctx context.Context, es graphql.ExecutableSchema, doc *ast.QueryDocument, op *ast.OperationDefinition, vars map[string]any) Measurement {
	w := &measurer{ctx: ctx, es: es, schema: es.Schema(), vars: vars, frags: map[string]*fragMeasure{}}
	d, c := w.set(op.SelectionSet)
	return Measurement{Depth: d, Cost: c, Visited: w.visited}
}

type fragMeasure struct{ depth, cost int }

type measurer struct {
	ctx     context.Context
	es      graphql.ExecutableSchema
	schema  *ast.Schema
	vars    map[string]any
	frags   map[string]*fragMeasure
	visited int
}

func (w *measurer) set(set ast.SelectionSet) (depth, cost int) {
	for _, s := range set {
		w.visited++
		d, c := 0, 0
		switch x := s.(type) {
		case *ast.Field:
			d, c = w.field(x)
		case *ast.InlineFragment:
			d, c = w.set(x.SelectionSet)
		case *ast.FragmentSpread:
			f := w.frags[x.Name]
			if f == nil {
				f = &fragMeasure{}
				w.frags[x.Name] = f // a cycle (refused by validation) counts 0
				if x.Definition != nil {
					f.depth, f.cost = w.set(x.Definition.SelectionSet)
				}
			}
			d, c = f.depth, f.cost
		}
		depth = max(depth, d)
		cost = safeAdd(cost, c)
	}
	return depth, cost
}

func (w *measurer) field(f *ast.Field) (depth, cost int) {
	childDepth, childCost := w.set(f.SelectionSet)
	depth = 1 + childDepth
	if f.Definition == nil || f.ObjectDefinition == nil {
		return depth, safeAdd(1, childCost)
	}
	typ := w.schema.Types[f.Definition.Type.Name()]
	if typ != nil && typ.Name == "__Schema" {
		return depth, 0
	}
	if typ == nil || (typ.Kind != ast.Object && typ.Kind != ast.Interface && typ.Kind != ast.Union) {
		childCost = 0
	}
	args := f.ArgumentMap(w.vars)
	parents := []*ast.Definition{f.ObjectDefinition}
	if f.ObjectDefinition.Kind == ast.Interface {
		parents = w.schema.GetPossibleTypes(f.ObjectDefinition)
	}
	for _, p := range parents {
		c, ok := w.es.Complexity(w.ctx, p.Name, f.Name, childCost, args)
		if !ok || c < 1 {
			c = safeAdd(1, childCost)
		}
		cost = max(cost, c)
	}
	return depth, cost
}

// safeAdd adds without overflow (saturating), ignoring negative operands.
func safeAdd(a, b int) int {
	a, b = max(a, 0), max(b, 0)
	if c := a + b; c >= a {
		return c
	}
	return int(^uint(0) >> 1)
}
