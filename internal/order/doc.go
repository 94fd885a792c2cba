// Package order is the domain of the BFF: orders, their events, the order
// state machine, the access rule (CanSee: staff, or the order's own
// customer), and the error type with the domain's codes (the transports
// add the codes of requests that fail before the domain, and map codes to
// HTTP statuses).
//
// It imports only the standard library; storage, caching, streaming and
// transport packages depend on it, never the other way round.
package order
