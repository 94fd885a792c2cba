// Package order is the domain of the BFF: orders, their events, the order
// state machine and the closed set of error codes every layer speaks.
//
// It imports only the standard library; storage, caching, streaming and
// transport packages depend on it, never the other way round.
package order
