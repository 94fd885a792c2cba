package httpx_test

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/trace"

	"github.com/shop/bff/internal/httpx"
	"github.com/shop/bff/internal/order"
)

// decodeErrors decodes an error body and returns its entries.
func decodeErrors(t *testing.T, body io.Reader) []httpx.ErrorEntry {
	t.Helper()
	var b httpx.ErrorBody
	require.NoError(t, json.NewDecoder(body).Decode(&b))
	require.NotEmpty(t, b.Errors)
	return b.Errors
}

// TestRequestIDGenerated checks that generated ids are RFC 9562 UUIDv7s
// (version 7, variant 10, the current Unix millisecond), distinct from one
// request to the next, and the same in the header and the context.
func TestRequestIDGenerated(t *testing.T) {
	seen := map[string]bool{}
	var ctxID string
	h := httpx.Begin(httpx.RequestID(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctxID = httpx.RequestIDFrom(r.Context())
	})))
	for range 1000 {
		before := time.Now().UnixMilli()
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
		after := time.Now().UnixMilli()
		got := rec.Header().Get("X-Request-ID")
		require.Equal(t, ctxID, got)
		u, err := uuid.Parse(got)
		require.NoError(t, err, got)
		require.Equal(t, u.String(), got, "lower-case canonical form")
		require.Equal(t, uuid.Version(7), u.Version(), got)
		require.Equal(t, uuid.RFC4122, u.Variant(), got)
		sec, nsec := u.Time().UnixTime()
		ms := sec*1000 + nsec/1e6
		require.True(t, ms >= before && ms <= after, "%s: time %d not in [%d, %d]", got, ms, before, after)
		require.False(t, seen[got], "%s generated twice", got)
		seen[got] = true
	}
}

func TestRequestID(t *testing.T) {
	long := strings.Repeat("a", 128)
	tests := []struct {
		name, in string
		kept     bool
	}{
		{"valid kept", "abc-123_x.y:z", true},
		{"128 chars kept", long, true},
		{"129 chars replaced", long + "a", false},
		{"space replaced", "abc def", false},
		{"slash replaced", "a/b", false},
		{"newline replaced", "a\nb", false},
		{"empty generated", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var seen string
			h := httpx.RequestID(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				seen = httpx.RequestIDFrom(r.Context())
			}))
			req := httptest.NewRequest("GET", "/", nil)
			if tt.in != "" {
				req.Header.Set("X-Request-ID", tt.in)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			got := rec.Header().Get("X-Request-ID")
			assert.Equal(t, seen, got, "context and header carry the same id")
			assert.True(t, httpx.ValidRequestID(got))
			if tt.kept {
				assert.Equal(t, tt.in, got)
			} else {
				assert.NotEqual(t, tt.in, got)
				assert.Len(t, got, 36, "a generated id is a UUID")
			}
		})
	}
}

func TestWriteError(t *testing.T) {
	t.Run("shape and extensions", func(t *testing.T) {
		req := httptest.NewRequest("POST", "/graphql", nil)
		req = req.WithContext(httpx.WithRequestID(req.Context(), "req-1"))
		rec := httptest.NewRecorder()
		httpx.WriteError(rec, req, 400, order.BadInput("input.lines", order.ConstraintLength, "too many lines"))
		assert.Equal(t, 400, rec.Code)
		assert.Equal(t, "application/json", rec.Header().Get("Content-Type"))
		assert.Empty(t, rec.Header().Get("Retry-After"))
		errs := decodeErrors(t, rec.Body)
		require.Len(t, errs, 1)
		assert.Equal(t, "too many lines", errs[0].Message)
		assert.Equal(t, map[string]any{"code": "BAD_USER_INPUT", "requestId": "req-1", "retryable": false,
			"field": "input.lines", "constraint": "length"}, errs[0].Extensions)
	})
	t.Run("retry after from extensions", func(t *testing.T) {
		req := httptest.NewRequest("POST", "/graphql", nil)
		rec := httptest.NewRecorder()
		e := order.Errorf(order.CodeRateLimited, "slow down").With("retryAfterSeconds", 7).With("limit", 20)
		httpx.WriteError(rec, req, 429, e)
		assert.Equal(t, "7", rec.Header().Get("Retry-After"))
		ext := decodeErrors(t, rec.Body)[0].Extensions
		assert.Equal(t, true, ext["retryable"])
		assert.EqualValues(t, 7, ext["retryAfterSeconds"])
		assert.EqualValues(t, 20, ext["limit"])
	})
	t.Run("unavailable defaults to Retry-After 1", func(t *testing.T) {
		req := httptest.NewRequest("POST", "/graphql", nil)
		req.Header.Set("Accept", "application/graphql-response+json")
		rec := httptest.NewRecorder()
		httpx.WriteError(rec, req, 503, order.Unavailable("postgres", errors.New("dial tcp: refused")))
		assert.Equal(t, 503, rec.Code)
		assert.Equal(t, "1", rec.Header().Get("Retry-After"))
		assert.Equal(t, "application/graphql-response+json", rec.Header().Get("Content-Type"))
		ext := decodeErrors(t, rec.Body)[0].Extensions
		assert.Equal(t, "postgres", ext["dependency"])
		assert.Equal(t, true, ext["retryable"])
		assert.NotContains(t, rec.Body.String(), "refused", "the cause is never shown")
	})
	t.Run("extensions cannot override code or requestId", func(t *testing.T) {
		req := httptest.NewRequest("POST", "/graphql", nil)
		req = req.WithContext(httpx.WithRequestID(req.Context(), "req-2"))
		rec := httptest.NewRecorder()
		e := &order.Error{Code: order.CodeForbidden, Message: "no", Extensions: map[string]any{"code": "X", "requestId": "Y"}}
		httpx.WriteError(rec, req, 403, e)
		ext := decodeErrors(t, rec.Body)[0].Extensions
		assert.Equal(t, "FORBIDDEN", ext["code"])
		assert.Equal(t, "req-2", ext["requestId"])
	})
	t.Run("no errors gives INTERNAL", func(t *testing.T) {
		rec := httptest.NewRecorder()
		httpx.WriteError(rec, httptest.NewRequest("GET", "/", nil), 500)
		assert.Equal(t, "INTERNAL", decodeErrors(t, rec.Body)[0].Extensions["code"])
	})
}

func TestRecover(t *testing.T) {
	var logBuf bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&logBuf, nil))
	mux := http.NewServeMux()
	mux.HandleFunc("/panic", func(w http.ResponseWriter, r *http.Request) { panic("boom") })
	mux.HandleFunc("/ok", func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "fine") })
	srv := httptest.NewServer(httpx.Chain(mux, httpx.RequestID, httpx.AccessLog(logger), httpx.Recover(logger)))
	defer srv.Close()

	req, _ := http.NewRequest("GET", srv.URL+"/panic", nil)
	req.Header.Set("X-Request-ID", "panic-1")
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	assert.Equal(t, 500, res.StatusCode)
	ext := decodeErrors(t, res.Body)[0].Extensions
	res.Body.Close()
	assert.Equal(t, "INTERNAL", ext["code"])
	assert.Equal(t, "panic-1", ext["requestId"])

	res, err = http.Get(srv.URL + "/ok")
	require.NoError(t, err, "the server keeps serving after a panic")
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	assert.Equal(t, "fine", string(body))

	logs := logBuf.String()
	assert.Contains(t, logs, "panic recovered")
	assert.Contains(t, logs, "goroutine", "the stack is logged")
	assert.Contains(t, logs, `"error":["panic: boom"]`, "the access log line names the cause")
}

func TestRecoverReraisesAbortHandler(t *testing.T) {
	h := httpx.Recover(slog.New(slog.DiscardHandler))(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		panic(http.ErrAbortHandler)
	}))
	assert.PanicsWithValue(t, http.ErrAbortHandler, func() {
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil))
	})
}

func TestBodyLimit(t *testing.T) {
	const limit = 100
	readAll := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Expect-Chunked") != "" && (r.ContentLength != -1 || len(r.TransferEncoding) == 0) {
			t.Errorf("body was not sent chunked: length %d", r.ContentLength)
		}
		_, err := io.ReadAll(r.Body)
		if err != nil {
			if !httpx.IsBodyTooLarge(err) {
				t.Errorf("read error %v is not recognised as too large", err)
			}
			httpx.WriteError(w, r, http.StatusRequestEntityTooLarge, httpx.PayloadTooLargeError(err))
			return
		}
		_, _ = io.WriteString(w, "ok")
	})
	srv := httptest.NewServer(httpx.BodyLimit(limit)(readAll))
	defer srv.Close()

	tests := []struct {
		name    string
		size    int
		chunked bool
		want    int
	}{
		{"small", 50, false, 200},
		{"exact", limit, false, 200},
		{"content-length over", limit + 1, false, 413},
		{"chunked small", 50, true, 200},
		{"chunked over", 10 * limit, true, 413},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var body io.Reader = strings.NewReader(strings.Repeat("x", tt.size))
			if tt.chunked {
				body = io.MultiReader(body) // hides the length: sent chunked
			}
			req, _ := http.NewRequest("POST", srv.URL, body)
			if tt.chunked {
				req.Header.Set("X-Expect-Chunked", "1")
			}
			res, err := http.DefaultClient.Do(req)
			require.NoError(t, err)
			defer res.Body.Close()
			assert.Equal(t, tt.want, res.StatusCode)
			if tt.want == 413 {
				ext := decodeErrors(t, res.Body)[0].Extensions
				assert.Equal(t, "PAYLOAD_TOO_LARGE", ext["code"])
				assert.EqualValues(t, limit, ext["limit"])
			}
		})
	}
	assert.False(t, httpx.IsBodyTooLarge(io.ErrUnexpectedEOF))
	assert.Nil(t, httpx.PayloadTooLargeError(io.ErrUnexpectedEOF))
}

func TestShed(t *testing.T) {
	const maxInFlight, clients = 5, 20
	release := make(chan struct{})
	var mu sync.Mutex
	entered := 0
	h := httpx.Shed(maxInFlight)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if httpx.IsStream(r) {
			_, _ = io.WriteString(w, "stream")
			return
		}
		mu.Lock()
		entered++
		mu.Unlock()
		<-release
	}))

	results := make(chan *httptest.ResponseRecorder, clients)
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest("POST", "/graphql", nil))
			results <- rec
		})
	}
	// Every request beyond the cap is refused at once while the others hold.
	for range clients - maxInFlight {
		rec := <-results
		assert.Equal(t, 503, rec.Code)
		assert.Equal(t, "1", rec.Header().Get("Retry-After"))
		ext := decodeErrors(t, rec.Body)[0].Extensions
		assert.Equal(t, "UNAVAILABLE", ext["code"])
		assert.Equal(t, "bff", ext["dependency"])
	}
	mu.Lock()
	assert.Equal(t, maxInFlight, entered)
	mu.Unlock()

	// Streams are not counted: they pass while the cap is reached.
	for _, req := range []*http.Request{
		httptest.NewRequest("GET", "/events", nil),
		func() *http.Request {
			r := httptest.NewRequest("POST", "/graphql", nil)
			r.Header.Set("Accept", "text/event-stream")
			return r
		}(),
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		assert.Equal(t, 200, rec.Code)
		assert.Equal(t, "stream", rec.Body.String())
	}

	close(release)
	wg.Wait()
	close(results)
	for rec := range results {
		assert.Equal(t, 200, rec.Code)
	}
	// Capacity is given back.
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("POST", "/graphql", nil))
	assert.Equal(t, 200, rec.Code)
}

func TestShedCustomExempt(t *testing.T) {
	block := make(chan struct{})
	entered := make(chan struct{})
	h := httpx.Shed(1, httpx.WithShedExempt(func(r *http.Request) bool { return r.URL.Path == "/livez" }))(
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/slow" {
				close(entered)
				<-block
			}
		}))
	done := make(chan struct{})
	go func() {
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/slow", nil))
		close(done)
	}()
	<-entered
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/livez", nil))
	assert.Equal(t, 200, rec.Code)
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/events", nil))
	assert.Equal(t, 503, rec.Code, "the default exemption is replaced")
	close(block)
	<-done
}

func TestSecurityHeaders(t *testing.T) {
	tests := []struct {
		name     string
		opts     httpx.SecurityOptions
		tls      bool
		wantHSTS bool
	}{
		{"plain", httpx.SecurityOptions{}, false, false},
		{"tls", httpx.SecurityOptions{}, true, true},
		{"flag", httpx.SecurityOptions{HSTS: true}, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := httpx.SecurityHeaders(tt.opts)(http.NotFoundHandler())
			req := httptest.NewRequest("GET", "/", nil)
			if tt.tls {
				req.TLS = &tls.ConnectionState{}
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			assert.Equal(t, "nosniff", rec.Header().Get("X-Content-Type-Options"))
			if tt.wantHSTS {
				assert.Equal(t, "max-age=31536000", rec.Header().Get("Strict-Transport-Security"))
			} else {
				assert.Empty(t, rec.Header().Get("Strict-Transport-Security"))
			}
		})
	}
}

func TestAccessLog(t *testing.T) {
	var buf bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&buf, nil))
	const secret = "eyJhbGciOiJIUzI1NiJ9.c2VjcmV0LXRva2VuLXRleHQ.sig"
	inner := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		info := httpx.Info(r.Context())
		var wg sync.WaitGroup
		for i := range 50 { // resolvers record from many goroutines
			wg.Go(func() {
				info.SetUser("user-1")
				info.SetOperation("OrderScreen")
				info.SetCache("hit")
				info.SetIdempotency("replay")
				info.AddErrorCode(fmt.Sprintf("CODE_%d", i%2))
			})
		}
		wg.Wait()
		httpx.LogCause(r.Context(), errors.New("db exploded"))
		w.WriteHeader(201)
		_, _ = io.WriteString(w, "hello")
	})
	traceID := trace.TraceID{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
	withSpan := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: traceID,
				SpanID: trace.SpanID{1, 2, 3, 4, 5, 6, 7, 8}, TraceFlags: trace.FlagsSampled})
			next.ServeHTTP(w, r.WithContext(trace.ContextWithSpanContext(r.Context(), sc)))
		})
	}
	h := httpx.Chain(inner, withSpan, httpx.RequestID, httpx.AccessLog(logger))

	req := httptest.NewRequest("POST", "/graphql?token="+secret, strings.NewReader(`{"query":"{ viewer { id } }"}`))
	req.Header.Set("Authorization", "Bearer "+secret)
	req.AddCookie(&http.Cookie{Name: "bff_session", Value: secret})
	req.Header.Set("X-Request-ID", "log-1")
	h.ServeHTTP(httptest.NewRecorder(), req)

	out := buf.String()
	assert.Equal(t, 1, strings.Count(out, "\n"), "one line per request")
	assert.NotContains(t, out, secret)
	assert.NotContains(t, out, "c2VjcmV0LXRva2VuLXRleHQ")
	assert.NotContains(t, out, "Bearer")

	var line map[string]any
	require.NoError(t, json.Unmarshal([]byte(out), &line))
	assert.Equal(t, "request", line["msg"])
	assert.Equal(t, "log-1", line["request_id"])
	assert.Equal(t, traceID.String(), line["trace_id"])
	assert.Equal(t, "POST", line["method"])
	assert.Equal(t, "/graphql", line["path"])
	assert.EqualValues(t, 201, line["status"])
	assert.EqualValues(t, 5, line["bytes"])
	assert.Contains(t, line, "latency_ms")
	assert.Equal(t, "user-1", line["user_id"])
	assert.Equal(t, "OrderScreen", line["operation"])
	assert.Equal(t, "hit", line["cache"])
	assert.Equal(t, "replay", line["idempotency"])
	assert.ElementsMatch(t, []any{"CODE_0", "CODE_1"}, line["error_codes"])
	assert.Equal(t, []any{"db exploded"}, line["error"])
	assert.Equal(t, "INFO", line["level"])
}

func TestAccessLogRecordsWriteErrorCodes(t *testing.T) {
	var buf bytes.Buffer
	h := httpx.Chain(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		httpx.WriteError(w, r, 503, order.Unavailable("redis", errors.New("i/o timeout")))
	}), httpx.RequestID, httpx.AccessLog(slog.New(slog.NewJSONHandler(&buf, nil))))
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil))
	var line map[string]any
	require.NoError(t, json.Unmarshal(buf.Bytes(), &line))
	assert.Equal(t, []any{"UNAVAILABLE"}, line["error_codes"])
	assert.Equal(t, []any{"i/o timeout"}, line["error"])
	assert.Equal(t, "ERROR", line["level"])
	assert.NotContains(t, line, "trace_id", "no span, no trace id")
}

func TestInfoNilSafe(t *testing.T) {
	info := httpx.Info(t.Context())
	assert.Nil(t, info)
	info.SetUser("x") // must not panic
	httpx.LogCause(t.Context(), errors.New("x"))
	assert.Equal(t, httpx.RequestInfoFields{}, info.Fields())
}

func TestChainOrder(t *testing.T) {
	var order []string
	mw := func(name string) httpx.Middleware {
		return func(next http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				order = append(order, name)
				next.ServeHTTP(w, r)
			})
		}
	}
	h := httpx.Chain(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { order = append(order, "h") }), mw("a"), mw("b"))
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil))
	assert.Equal(t, []string{"a", "b", "h"}, order)
}

func TestFlushThroughWrappers(t *testing.T) {
	h := httpx.Chain(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f, ok := w.(http.Flusher)
		require.True(t, ok, "wrapped writers keep http.Flusher")
		_, _ = io.WriteString(w, "data: x\n\n")
		f.Flush()
	}), httpx.RequestID, httpx.AccessLog(slog.New(slog.DiscardHandler)), httpx.Recover(nil))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/events", nil))
	assert.True(t, rec.Flushed)
}

// TestBeginSharesOneState checks that under Begin the proxy, request id
// and access log middlewares record into one context value (the request
// reaching the handler is derived once), that what they record is what
// they record without Begin, and that a request made with another
// request's context through the same middlewares gets its own id, peer
// and RequestInfo, leaving the outer request's as they were.
func TestBeginSharesOneState(t *testing.T) {
	proxies, err := httpx.NewTrustedProxies([]string{"10.0.0.0/8"})
	require.NoError(t, err)
	chain := func(h http.Handler) http.Handler {
		return httpx.Chain(h, proxies.Middleware(), httpx.RequestID, httpx.AccessLog(slog.New(slog.DiscardHandler)))
	}
	for _, begin := range []bool{true, false} {
		t.Run(fmt.Sprintf("begin=%v", begin), func(t *testing.T) {
			wrap := chain
			if begin {
				wrap = func(h http.Handler) http.Handler { return httpx.Begin(chain(h)) }
			}
			var seen, innerSeen struct {
				id, peer string
				secure   bool
				info     *httpx.RequestInfo
			}
			var outer *http.Request
			inner := wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				innerSeen.id, innerSeen.peer = httpx.RequestIDFrom(r.Context()), httpx.PeerAddr(r)
				innerSeen.secure, innerSeen.info = httpx.IsSecure(r), httpx.Info(r.Context())
			}))
			h := wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				outer = r
				seen.id, seen.peer = httpx.RequestIDFrom(r.Context()), httpx.PeerAddr(r)
				seen.secure, seen.info = httpx.IsSecure(r), httpx.Info(r.Context())
				httpx.Info(r.Context()).SetUser("u1")
				// a request of its own, made with this one's context
				sub := httptest.NewRequestWithContext(r.Context(), http.MethodGet, "/sub", nil)
				sub.RemoteAddr = "192.0.2.9:1"
				sub.Header.Set(httpx.HeaderRequestID, "sub-id")
				inner.ServeHTTP(httptest.NewRecorder(), sub)
			}))
			req := httptest.NewRequest(http.MethodGet, "/", nil)
			req.RemoteAddr = "10.1.2.3:5000"
			req.Header.Set("X-Forwarded-Proto", "https")
			req.Header.Set(httpx.HeaderRequestID, "outer-id")
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)

			assert.Equal(t, "outer-id", rec.Header().Get(httpx.HeaderRequestID))
			assert.Equal(t, "outer-id", seen.id)
			assert.Equal(t, "10.1.2.3:5000", seen.peer)
			assert.True(t, seen.secure)
			require.NotNil(t, seen.info)
			assert.Equal(t, "sub-id", innerSeen.id)
			assert.Equal(t, "192.0.2.9:1", innerSeen.peer)
			assert.False(t, innerSeen.secure)
			require.NotNil(t, innerSeen.info)
			assert.NotSame(t, seen.info, innerSeen.info)
			assert.Empty(t, innerSeen.info.Fields().UserID)
			// the outer request's values are untouched by the inner one
			assert.Equal(t, "outer-id", httpx.RequestIDFrom(outer.Context()))
			assert.Equal(t, "10.1.2.3:5000", httpx.PeerAddr(outer))
			assert.True(t, httpx.IsSecure(outer))
			assert.Same(t, seen.info, httpx.Info(outer.Context()))
			assert.Equal(t, "u1", httpx.Info(outer.Context()).Fields().UserID)
		})
	}
}

// BeginDeadline gives every request but event streams its deadline, and
// the state the other middlewares record into, in one derivation.
func TestBeginDeadline(t *testing.T) {
	tests := []struct {
		name, method, path, accept string
		d                          time.Duration
		bounded                    bool
	}{
		{"query", "POST", "/graphql", "application/json", time.Minute, true},
		{"get", "GET", "/livez", "", time.Minute, true},
		{"subscription over SSE", "POST", "/graphql", "text/event-stream", time.Minute, false},
		{"incremental delivery", "POST", "/graphql", "multipart/mixed", time.Minute, false},
		{"event stream", "GET", "/events", "", time.Minute, false},
		{"no deadline configured", "POST", "/graphql", "application/json", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var deadline time.Time
			var bounded bool
			var derived *http.Request
			inner := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				deadline, bounded = r.Context().Deadline()
				derived = r
			})
			var outer *http.Request
			h := httpx.BeginDeadline(tt.d)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				outer = r
				httpx.RequestID(inner).ServeHTTP(w, r)
			}))
			req := httptest.NewRequest(tt.method, tt.path, nil)
			if tt.accept != "" {
				req.Header.Set("Accept", tt.accept)
			}
			start := time.Now()
			h.ServeHTTP(httptest.NewRecorder(), req)
			require.Equal(t, tt.bounded, bounded)
			if tt.bounded {
				assert.WithinRange(t, deadline, start.Add(tt.d), time.Now().Add(tt.d))
			}
			assert.Same(t, outer, derived, "the request id is recorded in the state BeginDeadline made")
			assert.NotEmpty(t, httpx.RequestIDFrom(derived.Context()))
		})
	}
}
