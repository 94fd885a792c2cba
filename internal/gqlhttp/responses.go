package gqlhttp

import (
	"context"
	"encoding/hex"
	"errors"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/ast"

	"github.com/shop/bff/internal/auth"
	"github.com/shop/bff/internal/cache"
	"github.com/shop/bff/internal/idempotency"
	"github.com/shop/bff/internal/order"
)

// ScreenDeps names the screen queries: for a top-level query field, what
// it depends on when v reads it with args; ok is false for a field that
// is not a screen (the shop's ScreenDeps).
type ScreenDeps func(field string, v *order.User, args map[string]any) (deps []cache.Dep, ok bool)

// Responses keeps the rendered data of whole screen queries in the screen
// cache, so that a hit writes stored bytes without running the resolvers
// or decoding a screen model. An entry is keyed by the screen, a
// fingerprint of the operation (document, operation name and variables),
// the viewer and role, and depends on the same generations as the screen
// model, so invalidation, read-your-writes and the stale-refill protection
// are the screen cache's own.
type Responses struct {
	c    *cache.Cache
	deps ScreenDeps
}

// NewResponses returns the response cache over c; deps tells screens from
// other fields.
func NewResponses(c *cache.Cache, deps ScreenDeps) *Responses { return &Responses{c: c, deps: deps} }

var _ ResponseCache = (*Responses)(nil)

// errNotCacheable marks a response with errors: it is sent, never stored.
var errNotCacheable = errors.New("response has errors")

// soleField returns the single top-level field of a query operation
// (without directives), or nil.
func soleField(op *ast.OperationDefinition) *ast.Field {
	if op == nil || op.Operation != ast.Query || len(op.SelectionSet) != 1 {
		return nil
	}
	f, ok := op.SelectionSet[0].(*ast.Field)
	if !ok || len(f.Directives) > 0 {
		return nil
	}
	return f
}

// Serve answers a screen query from the cache, or through execute (which
// executes the operation) storing its data when it has no errors. ok is
// false when the operation is not a cacheable screen query: the caller
// executes it as usual.
func (r *Responses) Serve(ctx context.Context, rc *graphql.OperationContext, execute func(context.Context) *graphql.Response) (*graphql.Response, bool) {
	key, f, ok := r.key(ctx, rc)
	if !ok {
		return nil, false
	}
	if slot, ok := ctx.Value(learnKey{}).(*learnSlot); ok {
		slot.key, slot.alias, slot.set = key, f.Alias, true
	}
	var fresh *graphql.Response
	data, res, err := cache.Load(ctx, r.c, key, func(ctx context.Context) ([]byte, error) {
		resp := execute(ctx)
		fresh = resp
		if len(resp.Errors) > 0 || resp.Data == nil {
			return nil, errNotCacheable
		}
		return resp.Data, nil
	})
	cache.Record(ctx, f.Alias, res) // over what the screen's resolver recorded
	if err != nil {
		if fresh == nil { // a shared load that failed: run our own
			fresh = execute(ctx)
		}
		return fresh, true
	}
	if fresh == nil || len(fresh.Errors) == 0 && fresh.Data != nil {
		setValidator(ctx, res.Validator)
	}
	if fresh != nil {
		return fresh, true
	}
	return &graphql.Response{Data: data}, true
}

// key is the cache key of a screen query's response and its screen
// field; ok is false for an operation that is not a cacheable screen
// query.
func (r *Responses) key(ctx context.Context, rc *graphql.OperationContext) (key cache.Key, f *ast.Field, ok bool) {
	f = soleField(rc.Operation)
	v, _ := auth.UserFrom(ctx)
	if f == nil || v == nil {
		return key, nil, false
	}
	deps, ok := r.deps(f.Name, v, f.ArgumentMap(rc.Variables))
	if !ok {
		return key, nil, false
	}
	return cache.Key{Screen: f.Name, ViewerID: v.ID, Role: string(v.Role), Deps: deps,
		Args: "response=" + hex.EncodeToString(idempotency.Fingerprint(rc.OperationName, rc.Doc, rc.Variables))}, f, true
}
