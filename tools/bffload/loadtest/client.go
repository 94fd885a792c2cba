package loadtest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// CheckLoopback returns an error unless rawURL is an http URL whose host
// is 127.0.0.1, localhost or ::1: the load command never drives anything
// but the local machine.
func CheckLoopback(rawURL string) error {
	u, err := url.Parse(rawURL)
	if err != nil {
		return fmt.Errorf("target %q: %w", rawURL, err)
	}
	if u.Scheme != "http" {
		return fmt.Errorf("target %q: only http:// on loopback is allowed", rawURL)
	}
	switch u.Hostname() {
	case "127.0.0.1", "localhost", "::1":
		return nil
	}
	return fmt.Errorf("target %q: refusing a host other than 127.0.0.1, localhost or ::1", rawURL)
}

// NewHTTPClient returns a client for conns concurrent keep-alive
// connections to one host, without compression, cookies or proxies.
func NewHTTPClient(conns int) *http.Client {
	tr := &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        conns + 16,
		MaxIdleConnsPerHost: conns + 16,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
		ForceAttemptHTTP2:   false,
	}
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

// Response is what a request returned.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// gqlError is one entry of a GraphQL response's errors.
type gqlError struct {
	Message    string `json:"message"`
	Extensions struct {
		Code string `json:"code"`
	} `json:"extensions"`
}

// Error is a failed request: a transport error, an HTTP status other than
// 200, or a GraphQL response with errors (Code is the first one's code).
type Error struct {
	Status int
	Code   string
	Msg    string
}

func (e *Error) Error() string {
	if e.Code != "" {
		return fmt.Sprintf("HTTP %d %s: %s", e.Status, e.Code, e.Msg)
	}
	return fmt.Sprintf("HTTP %d: %s", e.Status, e.Msg)
}

// CodeOf is the GraphQL error code of err, or "".
func CodeOf(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}

// GraphQLBody is the JSON body of a GraphQL POST.
func GraphQLBody(query string, vars map[string]any) []byte {
	b, err := json.Marshal(map[string]any{"query": query, "variables": vars})
	if err != nil {
		panic(err) // only strings, numbers and maps
	}
	return b
}

// Post sends body to url as a GraphQL POST with a bearer token and extra
// headers (pairs of name and value), and returns the response. It fails on
// a transport error or a status other than 200; with checkErrors it also
// fails when the body has GraphQL errors.
func Post(ctx context.Context, c *http.Client, url, token string, body []byte, checkErrors bool, hdr ...string) (*Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, &Error{Msg: err.Error()}
	}
	b, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if err != nil {
		return nil, &Error{Status: resp.StatusCode, Msg: err.Error()}
	}
	r := &Response{Status: resp.StatusCode, Header: resp.Header, Body: b}
	if resp.StatusCode != http.StatusOK || (checkErrors && bytes.Contains(b, []byte(`"errors"`))) {
		return r, responseError(r)
	}
	return r, nil
}

func responseError(r *Response) error {
	var out struct {
		Errors []gqlError `json:"errors"`
	}
	e := &Error{Status: r.Status}
	if json.Unmarshal(r.Body, &out) == nil && len(out.Errors) > 0 {
		e.Code, e.Msg = out.Errors[0].Extensions.Code, out.Errors[0].Message
	} else {
		e.Msg = strings.TrimSpace(string(r.Body[:min(len(r.Body), 200)]))
	}
	return e
}

// SignIn gets a bearer token for email from POST /session (development
// mode only).
func SignIn(ctx context.Context, c *http.Client, base, email string) (string, error) {
	b, _ := json.Marshal(map[string]string{"email": email})
	r, err := Post(ctx, c, base+"/session", "", b, false)
	if err != nil {
		return "", fmt.Errorf("sign in %s: %w", email, err)
	}
	var out struct {
		Token string `json:"token"`
	}
	if err := json.Unmarshal(r.Body, &out); err != nil || out.Token == "" {
		return "", fmt.Errorf("sign in %s: no token in %s", email, r.Body)
	}
	return out.Token, nil
}
