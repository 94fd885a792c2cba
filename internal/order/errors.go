package order

import (
	"context"
	"errors"
	"fmt"
)

// Code is one of the error codes of the public contract (enum ErrorCode).
// The domain's codes are here; the codes of requests that fail before the
// domain sees them (malformed HTTP, GraphQL parse and validation, persisted
// queries, cost and size limits) are the transports' (internal/httpx).
type Code string

// The domain's error codes (see spec/errors.md).
const (
	CodeBadUserInput           Code = "BAD_USER_INPUT"
	CodeUnauthenticated        Code = "UNAUTHENTICATED"
	CodeForbidden              Code = "FORBIDDEN"
	CodeNotFound               Code = "NOT_FOUND"
	CodeConflict               Code = "CONFLICT"
	CodeInvalidTransition      Code = "INVALID_TRANSITION"
	CodeIdempotencyKeyRequired Code = "IDEMPOTENCY_KEY_REQUIRED"
	CodeIdempotencyKeyInvalid  Code = "IDEMPOTENCY_KEY_INVALID"
	CodeIdempotencyKeyReused   Code = "IDEMPOTENCY_KEY_REUSED"
	CodeIdempotencyKeyInUse    Code = "IDEMPOTENCY_KEY_IN_USE"
	CodeRateLimited            Code = "RATE_LIMITED"
	CodeUnavailable            Code = "UNAVAILABLE"
	CodeInternal               Code = "INTERNAL"
)

// Retryable reports whether retrying the same request can succeed for code c.
func (c Code) Retryable() bool {
	switch c {
	case CodeIdempotencyKeyInUse, CodeRateLimited, CodeUnavailable:
		return true
	}
	return false
}

// Error is the one error type of the domain: a code, a message for
// developers, and the extra extensions the code carries (errors.md).
type Error struct {
	// Code is the public error code.
	Code Code
	// Message is safe to show to a client developer.
	Message string
	// Extensions holds the code's extra fields (field, constraint,
	// currentVersion, dependency, …).
	Extensions map[string]any
	// Cause is the underlying error, logged but never shown.
	Cause error
}

// Error implements error.
func (e *Error) Error() string {
	if e.Cause != nil {
		return fmt.Sprintf("%s: %s: %v", e.Code, e.Message, e.Cause)
	}
	return fmt.Sprintf("%s: %s", e.Code, e.Message)
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Cause }

// With returns a copy of e with one more extension set.
func (e *Error) With(key string, value any) *Error {
	c := *e
	c.Extensions = make(map[string]any, len(e.Extensions)+1)
	for k, v := range e.Extensions {
		c.Extensions[k] = v
	}
	c.Extensions[key] = value
	return &c
}

// Errorf builds an *Error with code and a formatted message.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the code of err: the code of an *Error in its chain,
// UNAVAILABLE for a context deadline, INTERNAL for anything else, and "" for nil.
func ErrorCode(err error) Code {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return CodeUnavailable
	}
	return CodeInternal
}

// AsError returns err as an *Error, wrapping foreign errors as INTERNAL with
// a generic message, or a deadline as a [Timeout] that names no dependency
// (AsError cannot know what timed out; a caller that does uses [AsErrorFrom]).
func AsError(err error) *Error {
	return AsErrorFrom("", err)
}

// AsErrorFrom is [AsError] for a caller that knows which dependency err came
// from ("postgres", "redis", "payments"): a deadline becomes a [Timeout] of
// that dependency. An *Error in err's chain is returned as it is.
func AsErrorFrom(dependency string, err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return Timeout(dependency, err)
	}
	return &Error{Code: CodeInternal, Message: "internal error", Cause: err}
}

// NotFound is the error for something that does not exist or that the viewer
// may not see.
func NotFound(what string) *Error {
	return Errorf(CodeNotFound, "%s not found", what)
}

// Unauthenticated is the error for a request that needs a signed-in user.
func Unauthenticated() *Error {
	return Errorf(CodeUnauthenticated, "sign in first")
}

// Forbidden is the error for an action the viewer's role may not take.
func Forbidden(msg string) *Error {
	return Errorf(CodeForbidden, "%s", msg)
}

// Unavailable is the retryable error for a failing dependency
// ("postgres", "redis", "payments").
func Unavailable(dependency string, cause error) *Error {
	return &Error{Code: CodeUnavailable, Message: dependency + " is unavailable, retry later",
		Extensions: map[string]any{"dependency": dependency}, Cause: cause}
}

// Timeout is the retryable error for a deadline that passed. With a
// dependency it is that dependency's UNAVAILABLE (its name in the message and
// in the dependency extension); without one (dependency "") the message only
// says that the request timed out, and no dependency is claimed.
func Timeout(dependency string, cause error) *Error {
	if dependency == "" {
		return &Error{Code: CodeUnavailable, Message: "the request timed out, retry later", Cause: cause}
	}
	return &Error{Code: CodeUnavailable, Message: dependency + " did not answer in time, retry later",
		Extensions: map[string]any{"dependency": dependency}, Cause: cause}
}

// Constraint names the rule a BAD_USER_INPUT violated.
type Constraint string

// The constraints of BAD_USER_INPUT (errors.md).
const (
	ConstraintRequired  Constraint = "required"
	ConstraintRange     Constraint = "range"
	ConstraintLength    Constraint = "length"
	ConstraintFormat    Constraint = "format"
	ConstraintUnknown   Constraint = "unknown"
	ConstraintDuplicate Constraint = "duplicate"
)

// BadInput is a BAD_USER_INPUT error for the input at path field.
func BadInput(field string, c Constraint, msg string) *Error {
	return &Error{Code: CodeBadUserInput, Message: msg,
		Extensions: map[string]any{"field": field, "constraint": string(c)}}
}

// OutOfRange is a BAD_USER_INPUT range error with its bounds.
func OutOfRange(field string, min, max int) *Error {
	return &Error{Code: CodeBadUserInput,
		Message:    fmt.Sprintf("%s must be between %d and %d", field, min, max),
		Extensions: map[string]any{"field": field, "constraint": string(ConstraintRange), "min": min, "max": max}}
}

// Conflict is the error for a stale expectedVersion.
func Conflict(current *Order) *Error {
	return &Error{Code: CodeConflict,
		Message:    fmt.Sprintf("order has changed: it is at version %d (%s); re-read and retry", current.Version, current.Status),
		Extensions: map[string]any{"currentVersion": current.Version, "currentStatus": string(current.Status)}}
}

// InvalidTransition is the error for an action that is not legal now.
func InvalidTransition(a Action, current *Order, allowed []Action) *Error {
	names := make([]string, len(allowed))
	for i, x := range allowed {
		names[i] = string(x)
	}
	return &Error{Code: CodeInvalidTransition,
		Message:    fmt.Sprintf("%s is not allowed while the order is %s (payment %s)", a, current.Status, current.PaymentStatus),
		Extensions: map[string]any{"currentStatus": string(current.Status), "allowedActions": names}}
}
