package gqlhttp

import (
	"bytes"
	"context"
	"encoding/json"

	"io"
	"mime"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/executor"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/shop/bff/internal/auth"
	"github.com/shop/bff/internal/cache"
	"github.com/shop/bff/internal/httpx"
	"github.com/shop/bff/internal/idempotency"
	"github.com/shop/bff/internal/order"
)

// Content types.
const (
	ctJSON         = "application/json"
	ctGraphQLJSON  = "application/graphql-response+json"
	ctEventStream  = "text/event-stream"
	requiredFields = "placeOrder payOrder"
)

// Limiter charges n units of the mutation budget (mutation true) or of the
// query budget of the request's caller. It writes the rejection itself and
// returns false when the request is over its budget.
type Limiter func(w http.ResponseWriter, r *http.Request, mutation bool, n int) bool

// Config wires the handler.
type Config struct {
	// Exec executes operations (configured with extensions and presenter).
	Exec *executor.Executor
	// Schema is the schema the documents are validated against.
	Schema *ast.Schema
	// Line, optional, is where the operations the fast path did not answer
	// wait for their turn to run (MAX_RUNNING, QUEUE_MAX_WAIT).
	Line *httpx.Gate
	// Limits are the budgets of one operation (zero fields: defaults).
	Limits Limits
	// Persisted, optional, stores automatic persisted queries.
	Persisted PersistedQueries
	// Streams, optional, admits a stream of the caller (caps on open
	// streams and opens per minute) on the subscription doors.
	Streams StreamAdmitter
	// Keeper runs mutations in keyed transactions.
	Keeper *idempotency.Keeper
	// Limit, optional, applies rate limits once the operation type is known.
	Limit Limiter
	// Charge, optional, prepares the query-budget charge of a request the
	// fast path answers, whose Redis command then rides in the cache's
	// round trip (ratelimit.Limiter.Charge; the limiter and the cache must
	// share their Redis); nil for a request whose budget is off. Without
	// it the fast path charges through Limit, in a round trip of its own.
	Charge func(r *http.Request) Charge
	// Responses, optional, serves whole screen queries from a cache.
	Responses ResponseCache
	// Operations, optional, resolves persisted operations (documentId or a
	// manifest hash) and refuses documents outside the manifests when
	// only those may run.
	Operations Operations
	// Heartbeat is the interval of heartbeats on idle subscription streams
	// (STREAM_HEARTBEAT; default config.DefaultStreamHeartbeat).
	Heartbeat time.Duration
}

// DocumentIDKey is where readParams puts a request's documentId in the
// raw params' extensions for Operations.
const DocumentIDKey = "documentId"

// Operations resolves persisted operations before admission reads the
// query (see package persisted).
type Operations interface {
	Resolve(ctx context.Context, h http.Header, p *graphql.RawParams) *gqlerror.Error
}

// Charge is one request's charge to its query budget whose Redis command
// rides in another round trip (see ratelimit.Charge): the cache queues it
// in its read (cache.Rider), then Settle decides and, over the budget,
// writes the 429 and returns false.
type Charge interface {
	cache.Rider
	Settle(w http.ResponseWriter, r *http.Request) bool
}

// ResponseCache answers cacheable queries from stored responses; ok is
// false for an operation it does not cache.
type ResponseCache interface {
	Serve(ctx context.Context, rc *graphql.OperationContext, load func(context.Context) *graphql.Response) (resp *graphql.Response, ok bool)
}

// revalidator answers a conditional GET of a screen query with 304 (see
// Responses.NotModified).
type revalidator interface {
	NotModified(ctx context.Context, w http.ResponseWriter, r *http.Request, rc *graphql.OperationContext) bool
}

// Handler serves /graphql.
type Handler struct {
	cfg  Config
	adm  *admission
	fast *fastPath // nil without a response cache
}

// New returns the /graphql handler.
func New(cfg Config) *Handler {
	h := &Handler{cfg: cfg}
	h.adm = newAdmission(&h.cfg)
	if rs, ok := cfg.Responses.(*Responses); ok && rs != nil {
		h.fast = newFastPath(rs.c)
	}
	return h
}

// body is the JSON request of GraphQL over HTTP.
type body struct {
	Query         *string        `json:"query"`
	OperationName *string        `json:"operationName"`
	Variables     map[string]any `json:"variables"`
	Extensions    map[string]any `json:"extensions"`
	// DocumentID names a persisted operation (trusted documents).
	DocumentID *string `json:"documentId"`
}

// ServeHTTP implements http.Handler. A request takes these steps: the
// caching headers; the subscription doors (graphql-sse, multipart) for a
// POST that asks for a stream; the method and the response type; the fast
// path of a known screen query; admission (parse, validate, cost, limits);
// then the operation, as a mutation (through the idempotency keeper) or as
// a query.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	CachePolicy(w.Header(), r)
	if h.serveSubscription(w, r) {
		return
	}
	ct, ok := checkRequest(w, r)
	if !ok {
		return
	}
	var fastKey string
	if h.fast != nil {
		var done bool
		if done, r, fastKey = h.fast.serve(h, w, r, ct); done {
			return
		}
	}
	adm, ok := h.Admit(w, r, DoorHTTP)
	if !ok {
		return
	}
	// Read and admitted, the operation waits for its turn: mutations first
	// (a cache hit answered above never waits).
	defer h.cfg.Line.Enter(r, adm.Mutation)()
	if adm.Mutation {
		cacheHeaders(w.Header(), adm.Op.Operation, "")
		h.mutate(adm.Ctx, w, r, ct, adm.Op)
		return
	}
	h.query(w, r, ct, adm, fastKey)
}

// serveSubscription serves a POST that asks for a stream on its door
// (graphql-sse or a multipart subscription) and reports whether it did.
func (h *Handler) serveSubscription(w http.ResponseWriter, r *http.Request) bool {
	if r.Method != http.MethodPost {
		return false
	}
	switch {
	case acceptsEventStream(r):
		h.serveSSE(w, r)
	case acceptsMultipartSubscription(r):
		h.serveMultipart(w, r)
	default:
		return false
	}
	return true
}

// checkRequest refuses a method other than GET and POST (405) and an
// Accept that allows neither JSON response type (406); otherwise it
// returns the negotiated content type.
func checkRequest(w http.ResponseWriter, r *http.Request) (ct string, ok bool) {
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		w.Header().Set("Allow", "GET, POST")
		httpx.WriteError(w, r, http.StatusMethodNotAllowed, order.Errorf(httpx.CodeBadRequest, "use GET (queries) or POST"))
		return "", false
	}
	ct, ok = negotiate(r.Header.Get("Accept"))
	if !ok {
		httpx.WriteError(w, r, http.StatusNotAcceptable, order.Errorf(httpx.CodeBadRequest, "accept application/json or application/graphql-response+json"))
		return "", false
	}
	return ct, true
}

// query runs an admitted query: unless the caller asked to bypass the
// caches, a conditional GET whose screen has not changed is answered 304;
// the query is answered from the response cache or executed; a query
// that reached here on a fast-path key teaches the fast path its
// operation once it ran without errors; the response carries the cache
// headers, the screen's ETag and the cache report.
func (h *Handler) query(w http.ResponseWriter, r *http.Request, ct string, adm *Admitted, fastKey string) {
	ctx, rc := adm.Ctx, adm.Op
	ctx, report := cache.WithReport(ctx)
	if cache.BypassRequested(r.Header) {
		ctx = cache.WithBypass(ctx)
	} else if rv, ok := h.cfg.Responses.(revalidator); ok && rv.NotModified(ctx, w, r, rc) {
		return
	}
	var slot *learnSlot
	if fastKey != "" {
		slot = &learnSlot{}
		ctx = context.WithValue(ctx, learnKey{}, slot)
	}
	ctx, validator := withValidator(ctx)
	resp := h.answer(ctx, rc)
	if slot != nil && len(resp.Errors) == 0 && resp.Data != nil {
		h.fast.learn(fastKey, slot, rc.Operation.Name)
	}
	cacheHeaders(w.Header(), rc.Operation, ETag(*validator))
	h.write(w, r, ct, http.StatusOK, resp, report)
}

// answer returns the response of query rc: from the response cache when
// it caches the operation, else executed.
func (h *Handler) answer(ctx context.Context, rc *graphql.OperationContext) *graphql.Response {
	if h.cfg.Responses != nil {
		if resp, _ := h.cfg.Responses.Serve(ctx, rc, func(ctx context.Context) *graphql.Response { return h.dispatch(ctx, rc) }); resp != nil {
			return resp
		}
	}
	return h.dispatch(ctx, rc)
}

// CachePolicy sets the caching headers of a /graphql response, the one
// place that decides them: every response varies with the credentials
// (Vary: Authorization, Cookie), and a response to a signed-in caller is
// personal (Cache-Control: private, no-store), so no shared cache keeps it
// and no browser cache outlives the session.
func CachePolicy(h http.Header, r *http.Request) {
	switch vs, ok := h["Vary"]; {
	case !ok:
		hvVary.Set(h, "Vary")
	case len(vs) == 1 && vs[0] == "Accept-Encoding": // the compressor's
		hvVaryCompressed.Set(h, "Vary")
	default:
		h.Add("Vary", "Authorization, Cookie")
	}
	if _, ok := auth.UserFrom(r.Context()); ok {
		hvPrivate.Set(h, cacheControlKey)
	}
}

// mutate runs a mutation through the idempotency keeper.
func (h *Handler) mutate(ctx context.Context, w http.ResponseWriter, r *http.Request, ct string, rc *graphql.OperationContext) {
	raw, present := r.Header[http.CanonicalHeaderKey(idempotency.Header)]
	val := ""
	if present && len(raw) > 0 {
		val = raw[0]
	}
	if present && len(raw) > 1 {
		val = "" // several values: invalid
	}
	key, err := idempotency.ParseKey(val, present)
	if err != nil {
		httpx.WriteError(w, r, http.StatusBadRequest, order.AsError(err))
		return
	}
	user, _ := auth.UserFrom(ctx)
	if key == "" && user != nil && requiresKey(rc.Operation) {
		httpx.WriteError(w, r, http.StatusBadRequest, order.Errorf(order.CodeIdempotencyKeyRequired,
			"placeOrder and payOrder need an Idempotency-Key header (a fresh UUID per logical request, reused on retries)"))
		return
	}
	req := idempotency.Request{Key: key}
	if user != nil {
		req.UserID = user.ID
		if key != "" {
			// The name of the operation that runs, whether the client
			// named it in operationName or left it to the document.
			req.Fingerprint = idempotency.Fingerprint(rc.Operation.Name, rc.Doc, rc.Variables)
		}
	}
	resp, outcome, err := h.cfg.Keeper.Run(ctx, req, func(ctx context.Context) idempotency.Response {
		resp := h.dispatch(ctx, rc)
		b, status := encode(ct, http.StatusOK, resp)
		return idempotency.Response{Status: status, Body: b, Transient: transient(resp.Errors)}
	})
	if info := httpx.Info(ctx); info != nil && outcome != idempotency.OutcomeNone {
		info.SetIdempotency(string(outcome))
	}
	if err != nil {
		// The keeper's failures are its transaction's: Postgres.
		e := order.AsErrorFrom("postgres", err)
		httpx.WriteError(w, r, httpx.Status(e.Code), e) // with Retry-After for a retryable code
		return
	}
	if outcome == idempotency.OutcomeReplayed {
		w.Header().Set(idempotency.ReplayedHeader, "true")
	}
	recordCodes(ctx, resp.Body)
	setContentType(w.Header(), ct)
	w.WriteHeader(resp.Status)
	_, _ = w.Write(resp.Body)
}

// dispatch executes an operation and returns its response.
func (h *Handler) dispatch(ctx context.Context, rc *graphql.OperationContext) *graphql.Response {
	responses, ctx := h.cfg.Exec.DispatchOperation(ctx, rc)
	resp := responses(ctx)
	if resp == nil {
		resp = &graphql.Response{}
	}
	return resp
}

// write sends a response, with the cache report of the screens it served.
func (h *Handler) write(w http.ResponseWriter, r *http.Request, ct string, status int, resp *graphql.Response, report *cache.Report) {
	var hdr, summary string
	var ext json.RawMessage
	if report != nil {
		if hdr, ext = report.Render(); hdr != "" {
			summary = report.Summary()
		}
	}
	h.writeRendered(w, r, ct, status, resp, hdr, ext, summary)
}

// writeRendered is write with the cache report rendered: its Cache-Status
// header value ("" for none), `cache` extension and summary for the log.
func (h *Handler) writeRendered(w http.ResponseWriter, r *http.Request, ct string, status int, resp *graphql.Response, cacheStatus string, cacheExt json.RawMessage, summary string) {
	if cacheStatus != "" {
		w.Header().Set(cacheStatusKey, cacheStatus)
	}
	h.writeReported(w, r, ct, status, resp, cacheStatus != "", cacheExt, summary)
}

// writeReported is writeRendered once the Cache-Status header is set
// (reported: the response has a cache report; otherwise cacheExt and
// summary are ignored).
func (h *Handler) writeReported(w http.ResponseWriter, r *http.Request, ct string, status int, resp *graphql.Response, reported bool, cacheExt json.RawMessage, summary string) {
	if reported {
		if info := httpx.Info(r.Context()); info != nil {
			info.SetCache(summary)
		}
	} else {
		cacheExt = nil
	}
	buf := bodies.Get().(*[]byte)
	b, status := encodeTo((*buf)[:0], ct, status, resp, cacheExt)
	recordCodes(r.Context(), b)
	setContentType(w.Header(), ct)
	w.WriteHeader(status)
	_, _ = w.Write(b)
	if cap(b) <= maxPooledBody {
		*buf = b
		bodies.Put(buf)
	}
}

// requestError is the body of a request that failed before execution
// (parse, validation, variable coercion): the GraphQL-over-HTTP spec says
// it has no data entry at all.
type requestError struct {
	Errors     gqlerror.List  `json:"errors"`
	Extensions map[string]any `json:"extensions,omitempty"`
}

// encode returns the body of resp (a slice of its own) and its status.
func encode(ct string, status int, resp *graphql.Response) ([]byte, int) {
	return encodeTo(make([]byte, 0, len(resp.Data)+256), ct, status, resp, nil)
}

// encodeTo appends the body of resp to dst and returns it with the
// response's status; cacheExt (nil: none) is its `cache` extension.
func encodeTo(dst []byte, ct string, status int, resp *graphql.Response, cacheExt json.RawMessage) ([]byte, int) {
	if cacheExt != nil && (len(resp.Extensions) > 0 || resp.Data == nil && len(resp.Errors) > 0) {
		// among other extensions, or in a request error: in the map
		if resp.Extensions == nil {
			resp.Extensions = map[string]any{}
		}
		resp.Extensions["cache"] = cacheExt
		cacheExt = nil
	}
	if resp.Data == nil && len(resp.Errors) > 0 {
		b, err := json.Marshal(requestError{Errors: resp.Errors, Extensions: resp.Extensions})
		if err != nil {
			return append(dst, internalBody...), http.StatusInternalServerError
		}
		return append(dst, b...), status
	}
	// The data is JSON that gqlgen already wrote (or the response cache
	// stored), with room for the envelope and a cache extension. Copying
	// it into the envelope as it is saves encoding/json validating and
	// compacting it again (a measurable share of a cached screen read).
	start := len(dst)
	dst = append(dst, '{')
	if len(resp.Errors) > 0 {
		b, err := json.Marshal(resp.Errors)
		if err != nil {
			return append(dst[:start], internalBody...), http.StatusInternalServerError
		}
		dst = append(dst, `"errors":`...)
		dst = append(dst, b...)
		dst = append(dst, ',')
	}
	dst = append(dst, `"data":`...)
	if resp.Data == nil {
		dst = append(dst, "null"...)
	} else {
		dst = append(dst, resp.Data...)
	}
	if cacheExt != nil {
		// the cache report alone (a screen's usual extensions), JSON
		// already: as encoding/json writes it, without its reflection
		dst = append(dst, `,"extensions":{"cache":`...)
		dst = append(dst, cacheExt...)
		dst = append(dst, '}')
	} else if len(resp.Extensions) > 0 {
		dst = append(dst, `,"extensions":`...)
		b, err := json.Marshal(resp.Extensions)
		if err != nil {
			return append(dst[:start], internalBody...), http.StatusInternalServerError
		}
		dst = append(dst, b...)
	}
	return append(dst, '}'), status
}

// bodies are the buffers responses are encoded into by write (a
// ResponseWriter does not keep what it is given); a buffer that grew past
// maxPooledBody is left to the collector.
var bodies = sync.Pool{New: func() any { return new([]byte) }}

const maxPooledBody = 64 << 10

var internalBody = []byte(`{"errors":[{"message":"internal error","extensions":{"code":"INTERNAL","retryable":false}}]}`)

// recordCodes notes the error codes of a response body in the log line.
func recordCodes(ctx context.Context, b []byte) {
	info := httpx.Info(ctx)
	if info == nil || !bytes.Contains(b, []byte(`"errors"`)) {
		return
	}
	var parsed struct {
		Errors []struct {
			Extensions struct {
				Code string `json:"code"`
			} `json:"extensions"`
		} `json:"errors"`
	}
	if json.Unmarshal(b, &parsed) == nil {
		for _, e := range parsed.Errors {
			info.AddErrorCode(e.Extensions.Code)
		}
	}
}

// transient reports whether errs hold a failure that must not be stored
// as the final outcome of a keyed request.
func transient(errs gqlerror.List) bool {
	for _, e := range errs {
		switch codeOf(e) {
		case order.CodeUnavailable, order.CodeInternal, order.CodeRateLimited, order.CodeIdempotencyKeyInUse:
			return true
		}
	}
	return false
}

func codeOf(e *gqlerror.Error) order.Code {
	if e.Extensions == nil {
		return ""
	}
	c, _ := e.Extensions["code"].(string)
	if c == "" {
		if oc, ok := e.Extensions["code"].(order.Code); ok {
			return oc
		}
	}
	return order.Code(c)
}

func onlyCode(errs gqlerror.List, c order.Code) bool {
	for _, e := range errs {
		if codeOf(e) != c {
			return false
		}
	}
	return len(errs) > 0
}

// requestErrorStatus is the status of a request error under
// application/graphql-response+json.
func requestErrorStatus(errs gqlerror.List) int {
	status := http.StatusBadRequest
	for _, e := range errs {
		if s := httpx.Status(codeOf(e)); s > status {
			status = s
		}
	}
	return status
}

// requiresKey reports whether the operation selects a mutation field that
// creates or moves money (placeOrder, payOrder).
func requiresKey(op *ast.OperationDefinition) bool {
	found := false
	var walk func(ast.SelectionSet)
	walk = func(set ast.SelectionSet) {
		for _, s := range set {
			switch x := s.(type) {
			case *ast.Field:
				if slices.Contains(strings.Fields(requiredFields), x.Name) {
					found = true
				}
			case *ast.InlineFragment:
				walk(x.SelectionSet)
			case *ast.FragmentSpread:
				if x.Definition != nil {
					walk(x.Definition.SelectionSet)
				}
			}
		}
	}
	walk(op.SelectionSet)
	return found
}

// negotiate picks the response content type from Accept.
func negotiate(accept string) (string, bool) {
	switch accept { // the usual ones, without parsing
	case ctJSON, "*/*":
		return ctJSON, true
	case ctGraphQLJSON:
		return ctGraphQLJSON, true
	}
	if strings.TrimSpace(accept) == "" {
		return ctJSON, true
	}
	for _, part := range strings.Split(accept, ",") {
		mt, _, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil {
			continue
		}
		switch mt {
		case ctGraphQLJSON:
			return ctGraphQLJSON, true
		case ctJSON, "*/*", "application/*":
			return ctJSON, true
		}
	}
	return "", false
}

func acceptsEventStream(r *http.Request) bool {
	return strings.Contains(r.Header.Get("Accept"), ctEventStream)
}

// readParams reads the operation from a POST JSON body or GET query.
func readParams(r *http.Request) (*graphql.RawParams, error) {
	var b body
	if r.Method == http.MethodGet {
		q := r.URL.Query()
		if v, ok := q["query"]; ok {
			b.Query = &v[0]
		}
		if v := q.Get("operationName"); v != "" {
			b.OperationName = &v
		}
		if v, ok := q["documentId"]; ok {
			b.DocumentID = &v[0]
		}
		for name, dst := range map[string]*map[string]any{"variables": &b.Variables, "extensions": &b.Extensions} {
			if v := q.Get(name); v != "" {
				dec := json.NewDecoder(strings.NewReader(v))
				dec.UseNumber()
				if err := dec.Decode(dst); err != nil {
					return nil, order.Errorf(httpx.CodeBadRequest, "%s must be a JSON object", name)
				}
			}
		}
	} else {
		mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
		if err != nil || mt != ctJSON {
			return nil, order.Errorf(httpx.CodeBadRequest, "send a JSON body with Content-Type: application/json")
		}
		raw, err := io.ReadAll(r.Body)
		if err != nil {
			if httpx.IsBodyTooLarge(err) {
				return nil, httpx.PayloadTooLargeError(err)
			}
			return nil, order.Errorf(httpx.CodeBadRequest, "could not read the request body")
		}
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.UseNumber()
		if err := dec.Decode(&b); err != nil {
			return nil, order.Errorf(httpx.CodeBadRequest, "the body must be a JSON object with query, operationName, variables and extensions of the right types")
		}
	}
	p := &graphql.RawParams{Variables: b.Variables, Extensions: b.Extensions, Headers: r.Header}
	if b.Query != nil {
		p.Query = *b.Query
	}
	if b.OperationName != nil {
		p.OperationName = *b.OperationName
	}
	if b.DocumentID != nil {
		if p.Extensions == nil {
			p.Extensions = map[string]any{}
		}
		p.Extensions[DocumentIDKey] = *b.DocumentID
	}
	if p.Query == "" && b.Extensions["persistedQuery"] == nil && b.DocumentID == nil {
		return nil, order.Errorf(httpx.CodeBadRequest, "the request has no query")
	}
	return p, nil
}
