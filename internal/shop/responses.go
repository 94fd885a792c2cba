package shop

import (
	"context"
	"encoding/hex"
	"errors"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/ast"

	"github.com/shop/bff/internal/auth"
	"github.com/shop/bff/internal/cache"
	"github.com/shop/bff/internal/idempotency"
	"github.com/shop/bff/internal/postgres"
)

// ResponseCache keeps the rendered data of whole screen queries in Redis,
// so that a hit writes stored bytes without running the resolvers or
// decoding a screen model. An entry is keyed by the screen, a fingerprint
// of the operation (document, operation name and variables), the viewer
// and role, and depends on the same generations as the screen model, so
// invalidation, read-your-writes and the stale-refill protection are the
// screen cache's own.
type ResponseCache struct{ c *cache.Cache }

// NewResponseCache returns the response cache over c.
func NewResponseCache(c *cache.Cache) *ResponseCache { return &ResponseCache{c: c} }

// errNotCacheable marks a response with errors: it is sent, never stored.
var errNotCacheable = errors.New("response has errors")

// screenField returns the single top-level field of a query operation
// when it is one of the screens.
func screenField(op *ast.OperationDefinition) *ast.Field {
	if op == nil || op.Operation != ast.Query || len(op.SelectionSet) != 1 {
		return nil
	}
	f, ok := op.SelectionSet[0].(*ast.Field)
	if !ok || len(f.Directives) > 0 {
		return nil
	}
	switch f.Name {
	case "homeScreen", "ordersScreen", "orderScreen":
		return f
	}
	return nil
}

// Serve answers a screen query from the cache, or through execute (which
// executes the operation) storing its data when it has no errors. ok is
// false when the operation is not a cacheable screen query: the caller
// executes it as usual.
func (r *ResponseCache) Serve(ctx context.Context, rc *graphql.OperationContext, execute func(context.Context) *graphql.Response) (*graphql.Response, bool) {
	f := screenField(rc.Operation)
	v, _ := auth.UserFrom(ctx)
	if f == nil || v == nil {
		return nil, false
	}
	var deps []Dep
	if f.Name == "orderScreen" {
		id, _ := f.ArgumentMap(rc.Variables)["id"].(string)
		deps = []Dep{{Kind: "order", ID: id}}
	} else {
		deps = scopeDeps(postgres.ScopeFor(v))
	}
	key := ScreenKey{Screen: f.Name, Viewer: v, Deps: deps,
		Args: "response=" + hex.EncodeToString(idempotency.Fingerprint(rc.OperationName, rc.Doc, rc.Variables))}
	var fresh *graphql.Response
	data, res, err := load(ctx, r.c, key, func(ctx context.Context) ([]byte, error) {
		resp := execute(ctx)
		fresh = resp
		if len(resp.Errors) > 0 || resp.Data == nil {
			return nil, errNotCacheable
		}
		return resp.Data, nil
	})
	if err != nil {
		if fresh == nil { // a shared load that failed: run our own
			fresh = execute(ctx)
		}
		return fresh, true
	}
	if res.Status == "hit" {
		ReportCache(ctx, f.Alias, res)
	}
	if fresh != nil {
		return fresh, true
	}
	return &graphql.Response{Data: data}, true
}
