package drill

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// codeTransport is the code of a request that got no HTTP response.
const codeTransport = "TRANSPORT"

// gqlResponse is a GraphQL response as the drill reads it.
type gqlResponse struct {
	Data   map[string]json.RawMessage `json:"data"`
	Errors []struct {
		Message    string         `json:"message"`
		Extensions map[string]any `json:"extensions"`
	} `json:"errors"`
	Extensions map[string]json.RawMessage `json:"extensions"`
}

// code is the first error's code, "INTERNAL" for an HTTP 500, "" when
// there is none.
func (r *gqlResponse) code(status int) string {
	if len(r.Errors) > 0 {
		if c, ok := r.Errors[0].Extensions["code"].(string); ok {
			return c
		}
		return "NO_CODE"
	}
	if status >= 500 {
		if status == http.StatusInternalServerError {
			return "INTERNAL"
		}
		return "HTTP_" + strconv.Itoa(status)
	}
	if status != http.StatusOK {
		return "HTTP_" + strconv.Itoa(status)
	}
	return ""
}

// post sends one GraphQL request and returns the response and its code
// ("" on success, codeTransport when no response came).
func post(ctx context.Context, c *http.Client, base, token, query string, vars map[string]any, key string) (*gqlResponse, string) {
	body, _ := json.Marshal(map[string]any{"query": query, "variables": vars})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/graphql", bytes.NewReader(body))
	if err != nil {
		return nil, codeTransport
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, codeTransport
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, codeTransport
	}
	var out gqlResponse
	if err := json.Unmarshal(raw, &out); err != nil {
		if resp.StatusCode == http.StatusInternalServerError {
			return nil, "INTERNAL"
		}
		return nil, "HTTP_" + strconv.Itoa(resp.StatusCode)
	}
	return &out, out.code(resp.StatusCode)
}

// signIn gets a bearer token for email (development sign-in).
func signIn(ctx context.Context, c *http.Client, base, email string) (string, error) {
	b, _ := json.Marshal(map[string]string{"email": email})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/session", bytes.NewReader(b))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var out struct {
		Token string `json:"token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || out.Token == "" {
		return "", fmt.Errorf("sign in %s: status %d", email, resp.StatusCode)
	}
	return out.Token, nil
}

// sseEvent is one message of GET /events.
type sseEvent struct {
	id, name string
	data     []byte
}

// errStreamStatus is a stream refused with an HTTP status.
var errStreamStatus = errors.New("stream refused")

// stream opens GET /events?stream=orders with Last-Event-ID lastID and
// calls fn for every message until the connection ends, ctx ends, or fn
// returns false.
func stream(ctx context.Context, c *http.Client, base, token, lastID string, fn func(sseEvent) bool) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/events?stream=orders", nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Last-Event-ID", lastID)
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%w: %d", errStreamStatus, resp.StatusCode)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var ev sseEvent
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if ev.name != "" || len(ev.data) > 0 {
				if !fn(ev) {
					return nil
				}
			}
			ev = sseEvent{}
		case strings.HasPrefix(line, ":"):
		case strings.HasPrefix(line, "id:"):
			ev.id = strings.TrimSpace(line[3:])
		case strings.HasPrefix(line, "event:"):
			ev.name = strings.TrimSpace(line[6:])
		case strings.HasPrefix(line, "data:"):
			ev.data = append(ev.data, strings.TrimPrefix(line[5:], " ")...)
		}
	}
	return sc.Err()
}

// newClient returns the drill's HTTP client: no overall timeout for
// streams, a deadline per request through the context.
func newClient() *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = 64
	t.ResponseHeaderTimeout = 30 * time.Second
	return &http.Client{Transport: t}
}

func jsonUnmarshal(raw json.RawMessage, v any) error { return json.Unmarshal(raw, v) }
