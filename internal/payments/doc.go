// Package payments connects the BFF to the payment provider.
//
// It holds the adapter ([Provider], implemented over HTTP by [HTTPProvider]
// with a short timeout, a circuit breaker and trace propagation), the
// charge [Worker] that drains the charge_jobs outbox written by payOrder
// (claiming jobs with FOR UPDATE SKIP LOCKED, retrying only retryable
// errors with exponential backoff and full jitter), the inbound webhook
// ([WebhookHandler], verifying the Webhook-Signature header with [Verify]
// before reading the body as an event) and the Prometheus [Metrics] of all
// three.
//
// The transactional effects on orders live in the store, behind the
// [ResultStore] interface; committed events are handed to a [Notifier].
package payments
