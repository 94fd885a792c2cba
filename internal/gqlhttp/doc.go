// Package gqlhttp is the GraphQL-over-HTTP door of the BFF: it reads
// POST and GET requests, negotiates the response type, maps failures to
// the statuses of the GraphQL-over-HTTP specification and errors.md, and
// routes each operation: queries to the executor (a screen query through
// the response cache, Responses, which stores its rendered data), mutations
// through the idempotency keeper, subscriptions (POST with
// Accept: text/event-stream) to gqlgen's SSE transport.
package gqlhttp
