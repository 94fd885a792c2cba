// Package webhooks delivers order events to downstream systems (outbound
// webhooks, spec/payments.md) to the Standard Webhooks specification, so
// that receivers verify them with its published libraries.
//
// # Exactly-once intent, at-least-once delivery
//
// Staff register endpoints ([Admin]). Every order event is fanned out to
// the enabled endpoints subscribed to its type by a trigger on
// order_events (migration 00003): the deliveries are rows written in the
// transaction of the event, so no event commits without its deliveries and
// no delivery exists for a change that rolled back, whatever assigns the
// event's stream position.
//
// A [Worker] on every instance claims due deliveries with FOR UPDATE SKIP
// LOCKED, leasing them for the length of one attempt, and sends them from a
// pool of goroutines. A delivery is due when its time has come and no
// earlier event of the same order is still pending for that endpoint, so
// each endpoint receives the events of an order in order (a later event
// waits while an earlier one is retried; it goes ahead once the earlier
// one is delivered, refused or dead-lettered). Instances share nothing but
// the database: a delivery is sent twice only when its sender died (or
// overran its lease) mid-attempt, and then with the same webhook-id.
//
// # Attempts
//
// One attempt is a POST of the body {"type","timestamp","data"} with the
// headers webhook-id (the event id, stable across retries and replays),
// webhook-timestamp and webhook-signature (one "v1,<base64 HMAC-SHA256>"
// per active secret: two during a rotation's overlap). It is bounded by a
// timeout and reads at most [MaxResponseBytes] of the answer; redirects are
// not followed. 2xx delivers; a timeout, a connection error, 408, 429
// (honouring Retry-After) and 5xx are retried with exponential backoff and
// full jitter until the retry window (24 h by default) is over, then the
// delivery is dead-lettered; any other answer is final. A circuit breaker
// per endpoint stops sending to an endpoint that keeps failing (its
// deliveries wait, their attempts not counted), and an endpoint whose
// attempts have all failed for DisableAfter (3 days) is disabled with the
// reason shown to staff.
//
// # Addresses
//
// URLs must be http(s). Unless private addresses are allowed (development),
// an endpoint whose host is or resolves to a loopback, private,
// link-local, unspecified or otherwise non-public address is refused at
// registration, and the dialer refuses such an address again at connect
// time (after DNS resolution, so a name that later resolves to an internal
// address is refused too).
package webhooks
