// Package httpx holds the HTTP plumbing shared by every endpoint of the BFF:
// request ids, the GraphQL-shaped error writer, panic recovery, body size
// limits, load shedding, security headers and the one-line-per-request
// access log with its mutable per-request [RequestInfo].
//
// It imports only internal/order and libraries, so any layer may use it.
package httpx
