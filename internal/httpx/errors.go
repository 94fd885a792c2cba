package httpx

import (
	"context"
	"encoding/json"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/shop/bff/internal/order"
)

// Media types of JSON responses.
const (
	ContentTypeJSON            = "application/json"
	ContentTypeGraphQLResponse = "application/graphql-response+json"
)

// ExtRetryAfterSeconds is the extension that mirrors the Retry-After header.
const ExtRetryAfterSeconds = "retryAfterSeconds"

// WriteJSON writes v as a JSON response with status (and its
// Content-Length).
func WriteJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":"internal error"}`)
	}
	w.Header().Set("Content-Type", ContentTypeJSON)
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// ErrorEntry is one entry of a GraphQL response's errors[].
type ErrorEntry struct {
	Message    string         `json:"message"`
	Extensions map[string]any `json:"extensions"`
}

// ErrorBody is the body of a response that fails as a whole.
type ErrorBody struct {
	Errors []ErrorEntry `json:"errors"`
}

// ErrorExtensions returns the extensions of e as the contract wants them:
// e's own extensions, then code, requestId (from ctx) and retryable. A
// "retryable" already in e's extensions wins over the code's default; code
// and requestId always come from e and ctx.
func ErrorExtensions(ctx context.Context, e *order.Error) map[string]any {
	ext := make(map[string]any, len(e.Extensions)+3)
	ext["retryable"] = e.Code.Retryable()
	for k, v := range e.Extensions {
		ext[k] = v
	}
	ext["code"] = string(e.Code)
	ext["requestId"] = RequestIDFrom(ctx)
	return ext
}

// WriteError writes a response that fails as a whole: status, the
// GraphQL-shaped body {"errors":[{message, extensions}]} and, when any error
// carries retryAfterSeconds, a Retry-After header (the largest value).
// Errors with a retryable code (UNAVAILABLE, RATE_LIMITED,
// IDEMPOTENCY_KEY_IN_USE) and no retryAfterSeconds get retryAfterSeconds 1,
// so such responses always carry Retry-After. With no errors, it writes one
// INTERNAL error. The codes and causes are recorded in the request's
// [RequestInfo] for the access log.
//
// The Content-Type is application/graphql-response+json when the client
// accepts it, else application/json.
func WriteError(w http.ResponseWriter, r *http.Request, status int, errs ...*order.Error) {
	ctx := r.Context()
	info := Info(ctx)
	body := ErrorBody{Errors: make([]ErrorEntry, 0, len(errs))}
	retryAfter := 0
	for _, e := range errs {
		if e == nil {
			continue
		}
		ext := ErrorExtensions(ctx, e)
		if _, ok := ext[ExtRetryAfterSeconds]; !ok && e.Code.Retryable() {
			ext[ExtRetryAfterSeconds] = 1
		}
		if s, ok := seconds(ext[ExtRetryAfterSeconds]); ok && s > retryAfter {
			retryAfter = s
		}
		info.AddErrorCode(string(e.Code))
		if e.Cause != nil {
			info.AddCause(e.Cause)
		}
		body.Errors = append(body.Errors, ErrorEntry{Message: e.Message, Extensions: ext})
	}
	if len(body.Errors) == 0 {
		e := &order.Error{Code: order.CodeInternal, Message: "internal error"}
		info.AddErrorCode(string(e.Code))
		body.Errors = append(body.Errors, ErrorEntry{Message: e.Message, Extensions: ErrorExtensions(ctx, e)})
	}
	h := w.Header()
	h.Set("Content-Type", responseType(r))
	h.Set("Cache-Control", "no-store")
	if retryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(retryAfter))
	}
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(body)
}

// responseType picks the JSON media type the client asked for.
func responseType(r *http.Request) string {
	if strings.Contains(r.Header.Get("Accept"), ContentTypeGraphQLResponse) {
		return ContentTypeGraphQLResponse
	}
	return ContentTypeJSON
}

// seconds reads a retryAfterSeconds value of any numeric type, rounding up.
func seconds(v any) (int, bool) {
	switch x := v.(type) {
	case int:
		return x, true
	case int32:
		return int(x), true
	case int64:
		return int(x), true
	case float64:
		return int(math.Ceil(x)), true
	case time.Duration:
		return int(math.Ceil(x.Seconds())), true
	}
	return 0, false
}
