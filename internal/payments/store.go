package payments

import (
	"context"

	"github.com/shop/bff/internal/order"
	"github.com/shop/bff/internal/postgres"
)

// storeAdapter is the [ResultStore] over the Postgres store.
type storeAdapter struct {
	s *postgres.Store
}

// NewStoreAdapter returns the [ResultStore] backed by the Postgres store,
// for [WebhookConfig.Store] and [WorkerConfig.Store].
//
// The store keeps no failure code: the provider's failureCode of a
// payment.failed webhook and the worker's [FailureRejected] or
// [FailureUnavailable] are logged by the handler and the worker but not
// persisted.
func NewStoreAdapter(s *postgres.Store) ResultStore {
	return storeAdapter{s: s}
}

// ApplyPaymentResult implements [ResultStore].
func (a storeAdapter) ApplyPaymentResult(ctx context.Context, r WebhookResult) (*order.Event, bool, error) {
	return a.s.ApplyPaymentResult(ctx, r.PaymentResult)
}

// MarkPaymentFailed implements [ResultStore]; failureCode is not stored.
func (a storeAdapter) MarkPaymentFailed(ctx context.Context, orderID string, attempt int, _ string) (*order.Event, error) {
	return a.s.MarkPaymentFailed(ctx, orderID, attempt)
}
