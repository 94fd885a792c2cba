package gqlhttp

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"strings"

	"github.com/99designs/gqlgen/graphql"
	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"
	"github.com/vektah/gqlparser/v2/parser"
	"github.com/vektah/gqlparser/v2/validator"
	"github.com/vektah/gqlparser/v2/validator/rules"

	"github.com/shop/bff/internal/config"
	"github.com/shop/bff/internal/httpx"
	"github.com/shop/bff/internal/order"
)

// Defaults of [Limits] that no configuration variable sets (the others are
// config's: DefaultQueryMaxBytes, DefaultQueryMaxTokens,
// DefaultQueryMaxRootFields, DefaultQueryMaxSelections).
const (
	DefaultMaxSameKey       = 2
	DefaultMaxSpreadsPerSet = 32
	DefaultMaxFragments     = 64
	DefaultMaxVariables     = 64
	DefaultMaxErrors        = 20
)

// Limits are the budgets of one operation that admission checks before
// the work they bound: the parser stops at MaxTokens, the shape of the
// document (selections, fragments, repeated response keys) is counted in
// one pass before validation, whose overlapping-fields check is quadratic
// in the selections that share a response key.
type Limits struct {
	// MaxDocumentBytes bounds the query text (413 PAYLOAD_TOO_LARGE
	// beyond; also the size cap of persisted queries). Default
	// config.DefaultQueryMaxBytes.
	MaxDocumentBytes int
	// MaxTokens bounds the parser's tokens (QUERY_TOO_COMPLEX). Default
	// config.DefaultQueryMaxTokens.
	MaxTokens int
	// MaxRootFields bounds the root fields of the operation that runs
	// (QUERY_TOO_COMPLEX). Default config.DefaultQueryMaxRootFields.
	MaxRootFields int
	// MaxSelections bounds the fields, fragment spreads and inline
	// fragments written in the document (QUERY_TOO_COMPLEX). Default
	// config.DefaultQueryMaxSelections.
	MaxSelections int
	// MaxSameKey bounds the fields of one selection set that share a
	// response key (QUERY_TOO_COMPLEX). Default 2.
	MaxSameKey int
	// MaxSpreadsPerSet bounds the fragment spreads and inline fragments of
	// one selection set. Default 32.
	MaxSpreadsPerSet int
	// MaxFragments bounds the fragment definitions. Default 64.
	MaxFragments int
	// MaxVariables bounds the variable definitions of each operation.
	// Default 64.
	MaxVariables int
	// MaxErrors bounds the errors of one response: the rest are dropped
	// and the last entry says how many. Default 20.
	MaxErrors int
}

func (l Limits) withDefaults() Limits {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&l.MaxDocumentBytes, config.DefaultQueryMaxBytes)
	def(&l.MaxTokens, config.DefaultQueryMaxTokens)
	def(&l.MaxRootFields, config.DefaultQueryMaxRootFields)
	def(&l.MaxSelections, config.DefaultQueryMaxSelections)
	def(&l.MaxSameKey, DefaultMaxSameKey)
	def(&l.MaxSpreadsPerSet, DefaultMaxSpreadsPerSet)
	def(&l.MaxFragments, DefaultMaxFragments)
	def(&l.MaxVariables, DefaultMaxVariables)
	def(&l.MaxErrors, DefaultMaxErrors)
	return l
}

// Door names the transport an operation arrived on.
type Door int

const (
	// DoorHTTP is POST or GET /graphql with a JSON response: queries and
	// mutations.
	DoorHTTP Door = iota
	// DoorSubscription is a streaming door (graphql-sse, multipart):
	// subscriptions only.
	DoorSubscription
)

// PersistedQueries stores the documents of automatic persisted queries by
// their sha256 hash.
type PersistedQueries interface {
	Get(ctx context.Context, hash string) (string, bool)
	Add(ctx context.Context, hash, query string)
}

// Admitted is an operation that passed admission: its operation context
// (parsed, validated, variables coerced, cost and depth checked) and the
// context to run it in.
type Admitted struct {
	Ctx context.Context
	Op  *graphql.OperationContext
	// Mutation is true for a mutation, which must run through the
	// idempotency keeper.
	Mutation bool
	// RootFields is the number of root fields, charged to the budget.
	RootFields int
}

// admission holds what Admit needs besides the request.
type admission struct {
	cfg    *Config
	limits Limits
	docs   *lru.Cache[string, *ast.QueryDocument]
}

func newAdmission(cfg *Config) *admission {
	docs, _ := lru.New[string, *ast.QueryDocument](1000) // size > 0: cannot fail
	return &admission{cfg: cfg, limits: cfg.Limits.withDefaults(), docs: docs}
}

// Admit is the one admission path of every GraphQL operation, whatever its
// door: it reads the request (body with its deadline), resolves a
// persisted query, checks the document's size, parses it under the token
// limit, counts its shape, charges the rate limit (the query budget for a
// request that fails any of these or validation; for a mutation, one unit
// of the mutation budget per root field), validates it, coerces the
// variables and checks cost and depth in linear time. A subscription door
// accepts subscriptions only, the HTTP door everything else. On failure it
// writes the response and returns false.
func (h *Handler) Admit(w http.ResponseWriter, r *http.Request, door Door) (*Admitted, bool) {
	a := h.adm
	ct := ctJSON
	if door == DoorHTTP {
		var ok bool
		if ct, ok = negotiate(r.Header.Get("Accept")); !ok {
			ct = ctJSON
		}
	}
	ctx := graphql.StartOperationTrace(r.Context())
	start := graphql.Now()
	charged := false
	// fail answers a request that failed before it ran, charging it to
	// the query budget unless it was charged already.
	fail := func(status int, errs ...*order.Error) (*Admitted, bool) {
		if !charged && !h.allow(w, r, false, 1) {
			return nil, false
		}
		httpx.WriteError(w, r, status, errs...)
		return nil, false
	}
	params, err := readParams(r)
	if err != nil {
		status := http.StatusBadRequest
		if order.ErrorCode(err) == httpx.CodePayloadTooLarge {
			status = http.StatusRequestEntityTooLarge
		}
		return fail(status, order.AsError(err))
	}
	params.ReadTime = graphql.TraceTiming{Start: start, End: graphql.Now()}

	// gqlErrs answers GraphQL request errors (parse, validation, cost) as
	// the GraphQL-over-HTTP spec wants them for the negotiated type.
	gqlErrs := func(errs gqlerror.List, rc *graphql.OperationContext) (*Admitted, bool) {
		if !charged && !h.allow(w, r, false, 1) {
			return nil, false
		}
		if rc == nil {
			rc = &graphql.OperationContext{}
		}
		errs = capErrors(errs, a.limits.MaxErrors)
		resp := h.cfg.Exec.DispatchError(graphql.WithOperationContext(ctx, rc), errs)
		status := http.StatusOK
		if door != DoorHTTP || ct == ctGraphQLJSON && !onlyCode(resp.Errors, httpx.CodePersistedQueryNotFound) {
			status = requestErrorStatus(resp.Errors)
		}
		h.write(w, r, ct, status, resp, nil)
		return nil, false
	}

	if h.cfg.Operations != nil {
		if gerr := h.cfg.Operations.Resolve(ctx, r.Header, params); gerr != nil {
			return gqlErrs(gqlerror.List{gerr}, nil)
		}
	}
	apqHash, perr := a.persisted(ctx, params)
	if perr != nil {
		return gqlErrs(gqlerror.List{perr}, nil)
	}
	if len(params.Query) > a.limits.MaxDocumentBytes {
		e := httpx.PayloadTooLarge(int64(a.limits.MaxDocumentBytes))
		e.Message = "the query document is too large"
		return fail(http.StatusRequestEntityTooLarge, e)
	}
	doc, cached := a.docs.Get(params.Query)
	if !cached {
		var gerr *gqlerror.Error
		doc, gerr = a.parse(params.Query)
		if gerr != nil {
			return gqlErrs(gqlerror.List{gerr}, nil)
		}
		if gerr := a.shape(doc); gerr != nil {
			return gqlErrs(gqlerror.List{gerr}, nil)
		}
	}
	op := doc.Operations.ForName(params.OperationName)
	mutation, roots := false, 0
	if op != nil {
		roots = len(op.SelectionSet)
		if roots > a.limits.MaxRootFields {
			return gqlErrs(gqlerror.List{tooComplex(fmt.Sprintf("the operation has %d root fields, more than the limit of %d", roots, a.limits.MaxRootFields),
				"rootFields", roots, a.limits.MaxRootFields)}, nil)
		}
		switch {
		case door == DoorSubscription && op.Operation != ast.Subscription:
			return fail(http.StatusBadRequest, order.Errorf(httpx.CodeBadRequest, "this door runs subscriptions only; send queries and mutations with Accept: application/json"))
		case door == DoorHTTP && op.Operation == ast.Subscription:
			return fail(http.StatusBadRequest, order.Errorf(httpx.CodeBadRequest, "subscriptions need POST with Accept: text/event-stream"))
		case op.Operation == ast.Mutation && r.Method != http.MethodPost:
			w.Header().Set("Allow", "POST")
			return fail(http.StatusMethodNotAllowed, order.Errorf(httpx.CodeBadRequest, "mutations are only accepted over POST"))
		}
		mutation = op.Operation == ast.Mutation
	}
	// Charged once the operation type is known: one query, or one
	// mutation per root field (60 aliased placeOrder fields cost 60).
	if mutation {
		charged = true
		if !h.allow(w, r, true, max(roots, 1)) {
			return nil, false
		}
	} else {
		charged = true
		if !h.allow(w, r, false, 1) {
			return nil, false
		}
	}
	if !cached {
		if errs := validator.ValidateWithRules(h.cfg.Schema, doc, validationRules()); len(errs) > 0 {
			for _, e := range errs {
				if e.Extensions == nil {
					e.Extensions = map[string]any{}
				}
				e.Extensions["code"] = "GRAPHQL_VALIDATION_FAILED"
			}
			return gqlErrs(errs, nil)
		}
		a.docs.Add(params.Query, doc)
	}
	ctx = WithDocument(ctx, params.Query, doc)
	rc, errs := h.cfg.Exec.CreateOperationContext(ctx, params)
	if errs != nil {
		return gqlErrs(errs, rc)
	}
	if apqHash != "" && a.cfg.Persisted != nil && len(params.Query) <= a.limits.MaxDocumentBytes {
		a.cfg.Persisted.Add(ctx, apqHash, params.Query)
	}
	if info := httpx.Info(ctx); info != nil {
		name := rc.Operation.Name
		if name == "" {
			name = params.OperationName
		}
		if name != "" {
			info.SetOperation(name)
		}
	}
	return &Admitted{Ctx: ctx, Op: rc, Mutation: mutation, RootFields: roots}, true
}

// allow charges n units of a budget; without a limiter everything passes.
func (h *Handler) allow(w http.ResponseWriter, r *http.Request, mutation bool, n int) bool {
	if h.cfg.Limit == nil || !mutation && charged(r.Context()) {
		return true // the fast path charged this query
	}
	return h.cfg.Limit(w, r, mutation, n)
}

// persisted resolves extensions.persistedQuery (Apollo APQ, version 1):
// a hash alone is looked up, a hash with a query is checked against it.
// It returns the hash to store a sent query under once it validated (""
// when there is nothing to store).
func (a *admission) persisted(ctx context.Context, p *graphql.RawParams) (string, *gqlerror.Error) {
	ext, ok := p.Extensions["persistedQuery"]
	if !ok || ext == nil {
		return "", nil
	}
	m, ok := ext.(map[string]any)
	if !ok {
		return "", badRequest("invalid APQ extension data")
	}
	hash, _ := m["sha256Hash"].(string)
	if v := fmt.Sprint(m["version"]); v != "1" {
		return "", badRequest("unsupported APQ version")
	}
	if len(hash) != 64 {
		return "", badRequest("invalid APQ extension data")
	}
	if p.Query == "" {
		if a.cfg.Persisted == nil {
			return "", notFound()
		}
		q, ok := a.cfg.Persisted.Get(ctx, hash)
		if !ok {
			return "", notFound()
		}
		p.Query = q
		return "", nil // already stored
	}
	sum := sha256.Sum256([]byte(p.Query))
	if hex.EncodeToString(sum[:]) != strings.ToLower(hash) {
		return "", badRequest("provided APQ hash does not match query")
	}
	return hash, nil
}

func notFound() *gqlerror.Error {
	e := gqlerror.Errorf("PersistedQueryNotFound")
	e.Extensions = map[string]any{"code": "PERSISTED_QUERY_NOT_FOUND"}
	return e
}

// wrap makes oe a GraphQL request error; the error presenter finds oe in it.
func wrap(oe *order.Error) *gqlerror.Error { return &gqlerror.Error{Message: oe.Message, Err: oe} }

func badRequest(msg string) *gqlerror.Error {
	return wrap(order.Errorf(httpx.CodeBadRequest, "%s", msg))
}

func tooComplex(msg, what string, n, limit int) *gqlerror.Error {
	return wrap(&order.Error{Code: httpx.CodeQueryTooComplex, Message: msg, Extensions: map[string]any{what: n, "limit": limit}})
}

// parse parses the document, stopping at the token limit.
func (a *admission) parse(q string) (*ast.QueryDocument, *gqlerror.Error) {
	doc, err := parser.ParseQueryWithTokenLimit(&ast.Source{Input: q}, a.limits.MaxTokens)
	if err != nil {
		gerr, ok := err.(*gqlerror.Error)
		if !ok {
			gerr = gqlerror.Errorf("%s", err.Error())
		}
		if strings.HasPrefix(gerr.Message, "exceeded token limit") {
			return nil, tooComplex(fmt.Sprintf("the document has more than %d tokens", a.limits.MaxTokens), "tokens", a.limits.MaxTokens+1, a.limits.MaxTokens)
		}
		gerr.Extensions = map[string]any{"code": "GRAPHQL_PARSE_FAILED"}
		return nil, gerr
	}
	if len(doc.Operations) == 0 {
		e := gqlerror.Errorf("no operation provided")
		e.Extensions = map[string]any{"code": "GRAPHQL_VALIDATION_FAILED"}
		return nil, e
	}
	return doc, nil
}

// shape counts the selections of the document in one pass and refuses one
// whose validation would cost more than the limits allow.
func (a *admission) shape(doc *ast.QueryDocument) *gqlerror.Error {
	l := a.limits
	if n := len(doc.Fragments); n > l.MaxFragments {
		return tooComplex(fmt.Sprintf("the document defines %d fragments, more than the limit of %d", n, l.MaxFragments), "fragments", n, l.MaxFragments)
	}
	total := 0
	var err *gqlerror.Error
	keys := map[string]int{}
	var walk func(set ast.SelectionSet)
	walk = func(set ast.SelectionSet) {
		if err != nil {
			return
		}
		total += len(set)
		if total > l.MaxSelections {
			err = tooComplex(fmt.Sprintf("the document has more than %d selections", l.MaxSelections), "selections", total, l.MaxSelections)
			return
		}
		clear(keys)
		spreads := 0
		for _, s := range set {
			switch x := s.(type) {
			case *ast.Field:
				k := x.Alias
				if k == "" {
					k = x.Name
				}
				keys[k]++
				if keys[k] > l.MaxSameKey {
					err = tooComplex(fmt.Sprintf("the field %q is selected more than %d times in one selection set", k, l.MaxSameKey), "sameKey", keys[k], l.MaxSameKey)
					return
				}
			case *ast.FragmentSpread, *ast.InlineFragment:
				spreads++
				if spreads > l.MaxSpreadsPerSet {
					err = tooComplex(fmt.Sprintf("a selection set has more than %d fragments", l.MaxSpreadsPerSet), "spreads", spreads, l.MaxSpreadsPerSet)
					return
				}
			}
		}
		for _, s := range set {
			switch x := s.(type) {
			case *ast.Field:
				walk(x.SelectionSet)
			case *ast.InlineFragment:
				walk(x.SelectionSet)
			}
		}
	}
	for _, op := range doc.Operations {
		if n := len(op.VariableDefinitions); n > l.MaxVariables {
			return tooComplex(fmt.Sprintf("an operation defines %d variables, more than the limit of %d", n, l.MaxVariables), "variables", n, l.MaxVariables)
		}
		walk(op.SelectionSet)
	}
	for _, f := range doc.Fragments {
		walk(f.SelectionSet)
	}
	return err
}

// validationRules are the specification's rules, without the "did you
// mean" suggestions for unknown fields (an edit-distance search per error,
// and a view of the schema that introspection may hide).
func validationRules() *rules.Rules {
	r := rules.NewDefaultRules()
	for _, name := range []string{"FieldsOnCorrectType", "FieldsOnCorrectTypeWithoutSuggestions", "ScalarLeafs", "ScalarLeafsWithoutSuggestions"} {
		r.RemoveRule(name)
	}
	r.AddRule(rules.FieldsOnCorrectTypeRuleWithoutSuggestions.Name, rules.FieldsOnCorrectTypeRuleWithoutSuggestions.RuleFunc)
	r.AddRule(rules.ScalarLeafsRuleWithoutSuggestions.Name, rules.ScalarLeafsRuleWithoutSuggestions.RuleFunc)
	return r
}

// capErrors keeps the first max errors and says how many were dropped.
func capErrors(errs gqlerror.List, max int) gqlerror.List {
	if max <= 0 || len(errs) <= max {
		return errs
	}
	out := make(gqlerror.List, 0, max)
	out = append(out, errs[:max-1]...)
	e := gqlerror.Errorf("%d more errors not shown", len(errs)-(max-1))
	e.Extensions = map[string]any{"code": codeOfList(errs[max-1:])}
	return append(out, e)
}

// codeOfList is the code of the first error of errs that has one.
func codeOfList(errs gqlerror.List) string {
	for _, e := range errs {
		if c, _ := e.Extensions["code"].(string); c != "" {
			return c
		}
	}
	return "GRAPHQL_VALIDATION_FAILED"
}

type documentKey struct{}

type admittedDoc struct {
	query string
	doc   *ast.QueryDocument
}

// WithDocument returns ctx carrying doc, the admitted (parsed and
// validated) document of query, for [DocumentCache].
func WithDocument(ctx context.Context, query string, doc *ast.QueryDocument) context.Context {
	return context.WithValue(ctx, documentKey{}, admittedDoc{query, doc})
}

// DocumentCache is the executor's query cache: it hands the executor the
// document admission parsed and validated, so the executor never parses
// or validates on its own. A query that was not admitted misses.
type DocumentCache struct{}

// Get implements graphql.Cache.
func (DocumentCache) Get(ctx context.Context, query string) (*ast.QueryDocument, bool) {
	d, ok := ctx.Value(documentKey{}).(admittedDoc)
	if !ok || d.query != query {
		return nil, false
	}
	return d.doc, true
}

// Add implements graphql.Cache: admission keeps its own cache.
func (DocumentCache) Add(context.Context, string, *ast.QueryDocument) {}
