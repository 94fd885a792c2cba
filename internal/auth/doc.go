// Package auth identifies the caller of a request: HS256 JWTs (issued and
// verified with rotatable secrets), the context that carries the signed-in
// user, the HTTP middleware that reads a bearer token or the session cookie
// (with CSRF protection for cookie-authenticated writes), and the
// development sign-in handler for the demo users.
package auth
