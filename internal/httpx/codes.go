package httpx

import (
	"net/http"

	"github.com/shop/bff/internal/order"
)

// The codes of requests that fail before the domain sees them
// (spec/errors.md): malformed HTTP, GraphQL parse and validation errors,
// unknown persisted queries, cost limits and oversized bodies. The
// domain's codes are internal/order's.
const (
	CodeBadRequest             order.Code = "BAD_REQUEST"
	CodeParseFailed            order.Code = "GRAPHQL_PARSE_FAILED"
	CodeValidationFailed       order.Code = "GRAPHQL_VALIDATION_FAILED"
	CodePersistedQueryNotFound order.Code = "PERSISTED_QUERY_NOT_FOUND"
	CodeQueryTooComplex        order.Code = "QUERY_TOO_COMPLEX"
	CodePayloadTooLarge        order.Code = "PAYLOAD_TOO_LARGE"
)

// AllCodes lists every code of the contract, in its order.
var AllCodes = []order.Code{
	CodeBadRequest, CodeParseFailed, CodeValidationFailed, CodePersistedQueryNotFound,
	order.CodeBadUserInput, order.CodeUnauthenticated, order.CodeForbidden, order.CodeNotFound, order.CodeConflict,
	order.CodeInvalidTransition, order.CodeIdempotencyKeyRequired, order.CodeIdempotencyKeyInvalid,
	order.CodeIdempotencyKeyReused, order.CodeIdempotencyKeyInUse, order.CodeRateLimited,
	CodeQueryTooComplex, CodePayloadTooLarge, order.CodeUnavailable, order.CodeInternal,
}

// Status is the HTTP status of a request that fails as a whole with code
// c (spec/errors.md). Codes that are only ever field errors map to 200.
func Status(c order.Code) int {
	switch c {
	case CodeBadRequest, CodeParseFailed, CodeValidationFailed, order.CodeBadUserInput,
		order.CodeIdempotencyKeyRequired, order.CodeIdempotencyKeyInvalid, CodeQueryTooComplex:
		return http.StatusBadRequest
	case order.CodeUnauthenticated:
		return http.StatusUnauthorized
	case order.CodeForbidden:
		return http.StatusForbidden
	case order.CodeIdempotencyKeyInUse:
		return http.StatusConflict
	case CodePayloadTooLarge:
		return http.StatusRequestEntityTooLarge
	case order.CodeIdempotencyKeyReused:
		return http.StatusUnprocessableEntity
	case order.CodeRateLimited:
		return http.StatusTooManyRequests
	case order.CodeInternal:
		return http.StatusInternalServerError
	case order.CodeUnavailable:
		return http.StatusServiceUnavailable
	}
	return http.StatusOK
}
