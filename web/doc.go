// Package web embeds the demo web app that the BFF serves at "/".
//
// The app is plain HTML, CSS and JavaScript modules with no build step and no
// third-party resources, so it runs under the strict Content-Security-Policy
// that Handler sets. It signs in through POST /session, reads screens and sends
// mutations through POST /graphql, and follows live order events through
// GET /events. static/js/api.js holds the client rules the real apps follow:
// idempotency keys reused across retries, exponential backoff with full
// jitter, CONFLICT handling and request ids on every shown error.
package web
