package payments

import (
	"context"
	"errors"
	"fmt"
	"net"

	"github.com/sony/gobreaker/v2"
)

// Provider is the adapter to the payment provider. Implementations must be
// safe for concurrent use.
type Provider interface {
	// Charge asks the provider to charge an order. Acceptance only means the
	// provider took the request: the result arrives later by webhook.
	// Errors are classified by [IsRetryable] and [IsPermanent].
	Charge(ctx context.Context, req ChargeRequest) (ChargeResult, error)
}

// ChargeRequest is one charge attempt of an order.
type ChargeRequest struct {
	// OrderID is the order being paid.
	OrderID string
	// Attempt is the order's payment attempt (1 for the first payOrder).
	Attempt int
	// AmountCents is the amount in minor units.
	AmountCents int64
	// Currency is the ISO 4217 code.
	Currency string
	// IdempotencyKey is sent as the provider-side Idempotency-Key; empty
	// means [IdempotencyKey](OrderID, Attempt).
	IdempotencyKey string
}

// ChargeResult is the provider's acceptance of a charge.
type ChargeResult struct {
	// ChargeID is the provider's id of the charge ("ch_…").
	ChargeID string
}

// IdempotencyKey is the provider-side idempotency key of one charge attempt:
// every retry of the same attempt carries the same key, so the provider
// never charges twice for it.
func IdempotencyKey(orderID string, attempt int) string {
	return fmt.Sprintf("charge-%s-%d", orderID, attempt)
}

// ProviderError is an error answered by (or on the way to) the provider.
type ProviderError struct {
	// StatusCode is the HTTP status, 0 when no response arrived.
	StatusCode int
	// Retryable is true for timeouts, connection errors, 429 and 5xx.
	Retryable bool
	// Message describes the failure (for logs and charge_jobs.last_error).
	Message string
	// Err is the underlying error, if any.
	Err error
}

// Error implements error.
func (e *ProviderError) Error() string {
	s := "payment provider: " + e.Message
	if e.StatusCode != 0 {
		s = fmt.Sprintf("payment provider: status %d: %s", e.StatusCode, e.Message)
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Unwrap returns the underlying error.
func (e *ProviderError) Unwrap() error { return e.Err }

// statusError classifies an HTTP status that is not a success.
func statusError(status int, msg string) *ProviderError {
	return &ProviderError{StatusCode: status, Retryable: status == 429 || status >= 500, Message: msg}
}

// IsPermanent reports whether err is a definitive refusal by the provider
// (a 4xx other than 429): retrying the same request cannot succeed.
func IsPermanent(err error) bool {
	var pe *ProviderError
	return errors.As(err, &pe) && !pe.Retryable
}

// IsRetryable reports whether retrying the same charge (with the same
// idempotency key) can succeed: timeouts, connection errors, 429, 5xx and
// an open circuit breaker. Every non-nil error that is not permanent is
// retryable, since the idempotency key makes a repeat safe.
func IsRetryable(err error) bool {
	return err != nil && !IsPermanent(err)
}

// isBreakerRejection reports whether err is the breaker failing fast.
func isBreakerRejection(err error) bool {
	return errors.Is(err, gobreaker.ErrOpenState) || errors.Is(err, gobreaker.ErrTooManyRequests)
}

// transportError wraps an error of the HTTP round trip as retryable.
func transportError(err error) *ProviderError {
	msg := "request failed"
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		msg = "timeout"
	case errors.As(err, &ne):
		msg = "connection error"
	}
	return &ProviderError{Retryable: true, Message: msg, Err: err}
}
