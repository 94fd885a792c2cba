package stream

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/r3labs/sse/v2"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/shop/bff/internal/auth"
	"github.com/shop/bff/internal/httpx"
	"github.com/shop/bff/internal/order"
	"github.com/shop/bff/internal/telemetry"
)

// appendSSE appends ev to dst in the text/event-stream encoding of
// r3labs/sse's ServeHTTP (one "field: value" line per field, data split on
// newlines, a blank line at the end), with two differences the wire
// contract needs: an empty ID writes no id line (r3labs writes "id: ",
// which would clear the client's Last-Event-ID, and reset messages carry
// no id), and messages of only a retry or a comment are written too (the
// first bytes of a stream, the heartbeat). Fields come in the order of
// streaming.md: id, event, data, then retry and comment.
func appendSSE(dst []byte, ev *sse.Event) []byte {
	if len(ev.ID) > 0 {
		dst = append(append(append(dst, "id: "...), ev.ID...), '\n')
	}
	if len(ev.Event) > 0 {
		dst = append(append(append(dst, "event: "...), ev.Event...), '\n')
	}
	if len(ev.Data) > 0 {
		for line := range bytes.SplitSeq(ev.Data, []byte("\n")) {
			dst = append(append(append(dst, "data: "...), line...), '\n')
		}
	}
	if len(ev.Retry) > 0 {
		dst = append(append(append(dst, "retry: "...), ev.Retry...), '\n')
	}
	if len(ev.Comment) > 0 {
		dst = append(append(append(dst, ": "...), ev.Comment...), '\n')
	}
	return append(dst, '\n')
}

// eventFrame is the SSE message of e: its id, its wire name and the JSON
// of the OrderEvent fields plus status and paymentStatus.
func eventFrame(e order.Event) []byte {
	data, err := json.Marshal(e)
	if err != nil { // cannot happen: the fields are strings, numbers and a time
		data = []byte(`{"id":` + strconv.Quote(e.ID) + `}`)
	}
	return appendSSE(make([]byte, 0, len(data)+64), &sse.Event{ID: []byte(e.ID), Event: []byte(EventName(e.Type)), Data: data})
}

func newItem(e order.Event) *item {
	it := &item{ev: e, frame: eventFrame(e)}
	if e.TraceParent != "" {
		it.parent = telemetry.ContextWithTraceParent(context.Background(), e.TraceParent)
	}
	return it
}

func retryFrame(d time.Duration) []byte {
	return appendSSE(nil, &sse.Event{Retry: []byte(strconv.FormatInt(d.Milliseconds(), 10))})
}

func resetFrame(reason string) []byte {
	data, _ := json.Marshal(map[string]string{"reason": reason})
	return appendSSE(nil, &sse.Event{Event: []byte("reset"), Data: data})
}

var pingFrame = appendSSE(nil, &sse.Event{Comment: []byte("ping")})

// reconnectFrame is the goodbye of a shutting-down instance: a retry hint
// spread over (0, retry] so that its clients do not all reconnect at once.
func reconnectFrame(retry time.Duration) []byte {
	ms := 1 + rand.Int64N(max(retry.Milliseconds(), 1))
	return appendSSE(nil, &sse.Event{Retry: []byte(strconv.FormatInt(ms, 10)), Comment: []byte("reconnect")})
}

// parseStream reads the stream query parameter: "orders" (orderID "") or
// "order:<id>".
func parseStream(v string) (string, bool) {
	if v == "orders" {
		return "", true
	}
	if id, ok := strings.CutPrefix(v, "order:"); ok && id != "" {
		return id, true
	}
	return "", false
}

// Handler serves GET /events, the SSE door (streaming.md): query
// stream=orders (all of the viewer's orders; every order for STAFF) or
// stream=order:<id>, resume point in the Last-Event-ID header or the
// lastEventId query parameter (the header wins: EventSource keeps the URL
// of its first connect). The auth middleware must run before it.
//
// Before any byte of the stream: 401 UNAUTHENTICATED for an anonymous
// request, 400 BAD_USER_INPUT (field "stream") for a bad stream value, 404
// NOT_FOUND for an order that does not exist or is another customer's,
// 503 UNAVAILABLE when Postgres fails or the broker shuts down, 405 for
// methods other than GET.
//
// The stream: `retry: 3000`, an `event: reset` when the resume point is
// unknown or expired, the replayed events, then live events and a `: ping`
// comment after every Heartbeat without writes. Every write has its own
// deadline (Config.WriteTimeout); the server's ReadTimeout and
// WriteTimeout do not apply to streams. HTTP/1.x connections are hijacked
// once the stream is authorized and served by one goroutine of the broker
// (the handler returns at once; see the package doc), so middleware sees
// a 200 without a body, and http.Server.Shutdown does not wait for them:
// end them with [Broker.Shutdown].
func (b *Broker) Handler() http.Handler { return http.HandlerFunc(b.serveEvents) }

func (b *Broker) serveEvents(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		httpx.WriteError(w, r, http.StatusMethodNotAllowed, order.Errorf(httpx.CodeBadRequest, "GET /events only"))
		return
	}
	viewer, ok := auth.UserFrom(ctx)
	if !ok {
		httpx.WriteError(w, r, http.StatusUnauthorized, order.Unauthenticated())
		return
	}
	q := r.URL.Query()
	orderID, ok := parseStream(q.Get("stream"))
	if !ok {
		httpx.WriteError(w, r, http.StatusBadRequest,
			order.BadInput("stream", order.ConstraintFormat, `stream must be "orders" or "order:<id>"`))
		return
	}
	resume := r.Header.Get("Last-Event-ID")
	if resume == "" {
		resume = q.Get("lastEventId")
	}
	release := func() {}
	if b.cfg.Caps != nil {
		var ok bool
		if release, ok = b.cfg.Caps.OpenStream(w, r); !ok {
			return
		}
	}
	c, err := b.open(ctx, viewer, orderID, resume, false)
	if err != nil {
		release()
		e := order.AsErrorFrom("postgres", err) // open reads the order and the resume point
		status := httpx.Status(e.Code)
		if e.Code == order.CodeNotFound {
			status = http.StatusNotFound
		}
		httpx.WriteError(w, r, status, e)
		return
	}
	c.release = release
	c.expires, _ = auth.SessionExpiry(ctx)

	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	rc := http.NewResponseController(w)
	if r.ProtoMajor == 1 {
		if conn, _, err := rc.Hijack(); err == nil {
			// From here the connection is ours: net/http's goroutine, its
			// buffers and the request are freed when this handler returns,
			// and one goroutine with no buffers of its own serves the
			// stream (see BenchmarkIdleStreamMemory).
			if tc, ok := conn.(*net.TCPConn); ok {
				_ = tc.SetWriteBuffer(b.cfg.SendBuffer)
			}
			s := newConnSink(conn, h, r.ProtoMinor >= 1, b.cfg.WriteTimeout)
			c.s.setKick(s.setDeadline)
			// Only the request's span context goes along (delivery spans
			// link to it); the request itself is over.
			go b.pump(trace.ContextWithSpanContext(context.Background(), trace.SpanContextFromContext(ctx)), c, s, true)
			return
		}
	}
	// HTTP/2, or a writer that cannot be hijacked: stream through the
	// ResponseWriter, with deadlines through the ResponseController. A
	// server ReadTimeout would end the request (and its context) through
	// net/http's background read: streams have no read deadline.
	_ = rc.SetReadDeadline(time.Time{})
	w.WriteHeader(http.StatusOK)
	s := &rwSink{w: w, rc: rc, timeout: b.cfg.WriteTimeout}
	c.s.setKick(s.setDeadline)
	b.pump(ctx, c, s, false)
}

// pump runs one SSE stream to its end: retry hint, reset, replay, live.
// With handoff (a hijacked connection, whose caller does not wait) the
// live part runs on a fresh goroutine and pump returns: the replay's deep
// calls (Postgres) grow pump's stack, and an idle stream should keep only
// the small stack of its live loop (see BenchmarkIdleStreamMemory).
func (b *Broker) pump(ctx context.Context, c *cursor, s sink, handoff bool) {
	clean, live := false, false
	defer func() {
		if !live {
			b.end(c, s, clean)
		}
	}()
	s.write(retryFrame(b.cfg.Retry))
	if c.reset != "" {
		s.write(resetFrame(c.reset))
	}
	if s.flush() != nil {
		return
	}
	err := b.replay(ctx, c, func(e order.Event) error { s.write(eventFrame(e)); return nil }, s.flush)
	if err != nil {
		if errors.Is(err, errDropped) {
			clean = b.goodbye(c, s)
		}
		return
	}
	if handoff {
		live = true
		go b.runLive(ctx, c, s)
		return
	}
	clean = b.live(ctx, c, s)
}

// runLive is the live part of a handed-off stream, to its end.
func (b *Broker) runLive(ctx context.Context, c *cursor, s sink) {
	b.end(c, s, b.live(ctx, c, s))
}

// end closes the stream's sink (cleanly: with its terminator), gives back
// its open slot and unregisters it.
func (b *Broker) end(c *cursor, s sink, clean bool) {
	s.close(clean)
	if c.release != nil {
		c.release()
	}
	b.unregister(c.s)
}

// live is the connection loop after replay: live events (all those queued
// in one flush when they come in a burst), heartbeats, and the end of the
// stream. It reports whether the stream ended cleanly (shutdown goodbye
// written).
//
// The loop sleeps on the stream's ready channel alone (a hijacked stream
// has no context to watch): the broker signals it for events and when it
// drops the stream, and the timer's function signals it when due, so a
// wake-up costs one channel receive, not a select over several channels
// and a timer channel. One timer serves both the heartbeat and the
// session's expiry (whichever comes first), so that an idle stream holds
// a single timer. Deliveries do not re-arm it (that would cost a timer
// update per event on every stream): they note their time, and a timer
// that fires less than a Heartbeat after the last write is set again for
// the rest.
func (b *Broker) live(ctx context.Context, c *cursor, s sink) bool {
	var due atomic.Bool // set by the timer, taken by the loop
	t := time.AfterFunc(b.wait(c, time.Now().Add(b.cfg.Heartbeat)), func() {
		due.Store(true)
		c.s.signal()
	})
	defer t.Stop()
	var wrote time.Time // the last flush of events
	done := ctx.Done()  // nil for a hijacked stream
	for {
		if done == nil {
			<-c.s.ready
		} else {
			select {
			case <-c.s.ready:
			case <-done:
				return false
			}
		}
		select {
		case <-c.s.gone:
			return b.goodbye(c, s)
		default:
		}
		if q := c.s.take(); len(q) > 0 { // none: a signal of the timer, a drop, or events dropped by endReplay
			var spans []trace.Span
			last, now := c.last, time.Now()
			for _, it := range q {
				spans = b.deliver(ctx, c, s, it, now, spans)
			}
			err := s.flush()
			endSpans(spans, err)
			if err != nil {
				return false
			}
			if c.last != last {
				wrote = now
			}
		}
		if !due.Swap(false) {
			continue
		}
		now := time.Now()
		if !c.expires.IsZero() && !now.Before(c.expires) {
			s.write(resetFrame(resetSessionExpired))
			_ = s.flush()
			return false
		}
		if next := wrote.Add(b.cfg.Heartbeat); now.Before(next) {
			t.Reset(b.wait(c, next))
			continue
		}
		s.write(pingFrame)
		if s.flush() != nil || !s.alive() {
			return false
		}
		t.Reset(b.wait(c, time.Now().Add(b.cfg.Heartbeat)))
	}
}

// wait is how long the live loop may sleep: until the next heartbeat
// (due at ping), or until the session expires if that comes first.
func (b *Broker) wait(c *cursor, ping time.Time) time.Duration {
	due := ping
	if !c.expires.IsZero() && c.expires.Before(due) {
		due = c.expires
	}
	return time.Until(due)
}

// deliver queues a live event the stream has not delivered yet, its lag
// measured at now (when the batch was taken: one clock read per batch).
// An event with a trace context gets a delivery span (appended to spans,
// ended by the caller after the flush): a child of the request that
// committed the event, linked to the stream's own request.
func (b *Broker) deliver(ctx context.Context, c *cursor, s sink, it *item, now time.Time, spans []trace.Span) []trace.Span {
	if !c.fresh(it.ev.Position) {
		return spans
	}
	if it.parent != nil && !it.unrecorded.Load() {
		_, span := b.cfg.Tracer.Start(it.parent,
			"sse.deliver "+EventName(it.ev.Type), trace.WithSpanKind(trace.SpanKindProducer),
			trace.WithLinks(trace.LinkFromContext(ctx)), trace.WithAttributes(
				attribute.Int64("bff.event.position", it.ev.Position),
				attribute.String("bff.event.type", string(it.ev.Type)),
				attribute.String("bff.order_id", it.ev.OrderID)))
		if span.IsRecording() {
			spans = append(spans, span)
		} else {
			span.End()
			it.unrecorded.Store(true)
		}
	}
	s.write(it.frame)
	b.cfg.Metrics.Delivered(streamKind(c.orderID), lagAt(it.ev.At, now))
	c.last = it.ev.Position
	return spans
}

// endSpans ends delivery spans once their frames were flushed (err: not).
func endSpans(spans []trace.Span, err error) {
	for _, span := range spans {
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, "stream write failed")
		}
		span.End()
	}
}

// goodbye ends a stream the broker dropped: on shutdown the client is told
// to reconnect (elsewhere); an overflowed client just loses the
// connection and resumes with Last-Event-ID.
func (b *Broker) goodbye(c *cursor, s sink) bool {
	if c.s.why != dropShutdown {
		return false
	}
	s.write(reconnectFrame(b.cfg.Retry))
	return s.flushWithin(time.Second) == nil
}

// ----------------------------------------------------------------- sinks

// sink is where a stream writes: frames are queued by write and sent by
// flush, each flush with its own write deadline.
type sink interface {
	write(frame []byte)
	flush() error
	flushWithin(timeout time.Duration) error
	// setDeadline moves the deadline of the pending write (the broker's
	// kick for a client that does not read). Safe from any goroutine.
	setDeadline(time.Time)
	// alive reports whether the peer may still be there.
	alive() bool
	// close ends the response (cleanly: with its terminator).
	close(clean bool)
}

// batchPool holds the buffers of the batches of frames between write and
// flush, so that idle connections keep none.
var batchPool = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// sizeRoom is the room a batch keeps before its frames for its chunk-size
// line (up to 8 hex digits and CRLF), so that a flush is one contiguous
// write.
const sizeRoom = 10

// connSink writes to a hijacked HTTP/1.x connection: the response head
// first, then every flush as one HTTP/1.1 chunk (HTTP/1.0: raw, ended by
// closing the connection), in one write call with its own deadline.
type connSink struct {
	conn    net.Conn
	head    []byte // the response head, sent with the first flush
	chunked bool
	timeout time.Duration
	// batch is the pending chunk: sizeRoom bytes for its size line, then
	// the frames written since the last flush (nil: none).
	batch *[]byte
	// deadline is the write deadline the last flush set (see
	// flushWithin).
	deadline time.Time
}

func newConnSink(conn net.Conn, h http.Header, chunked bool, timeout time.Duration) *connSink {
	var head bytes.Buffer
	head.WriteString("HTTP/1.1 200 OK\r\n")
	h = h.Clone()
	h.Set("Date", time.Now().UTC().Format(http.TimeFormat))
	h.Set("Connection", "close")
	if chunked {
		h.Set("Transfer-Encoding", "chunked")
	}
	_ = h.Write(&head)
	head.WriteString("\r\n")
	return &connSink{conn: conn, head: head.Bytes(), chunked: chunked, timeout: timeout}
}

func (s *connSink) write(frame []byte) {
	if s.batch == nil {
		s.batch = batchPool.Get().(*[]byte)
		*s.batch = append((*s.batch)[:0], make([]byte, sizeRoom)...)
	}
	*s.batch = append(*s.batch, frame...)
}

func (s *connSink) flush() error { return s.flushWithin(s.timeout) }

func (s *connSink) flushWithin(timeout time.Duration) error {
	if s.batch == nil && s.head == nil {
		return nil
	}
	var out []byte // the chunk: size line, frames, CRLF
	if s.batch != nil {
		out = (*s.batch)[sizeRoom:]
		if s.chunked {
			var size [sizeRoom]byte
			line := append(strconv.AppendInt(size[:0], int64(len(out)), 16), crlf...)
			start := sizeRoom - len(line)
			copy((*s.batch)[start:], line)
			*s.batch = append(*s.batch, crlf...)
			out = (*s.batch)[start:]
		}
	}
	// A flush with the usual timeout keeps the deadline an earlier flush
	// set while at least 7/8 of the timeout is left (a busy stream sets
	// it about once per timeout/8, not once per write): every write still
	// fails within timeout, and a deadline the broker moved (setDeadline)
	// is not pushed back by the flushes right after it.
	if now := time.Now(); timeout != s.timeout || s.deadline.Sub(now) < timeout-timeout/8 {
		s.deadline = now.Add(timeout)
		_ = s.conn.SetWriteDeadline(s.deadline)
	}
	var err error
	if s.head != nil { // the first flush only
		bufs := net.Buffers{s.head, out}
		s.head = nil
		_, err = bufs.WriteTo(s.conn)
	} else {
		_, err = s.conn.Write(out)
	}
	if s.batch != nil {
		if cap(*s.batch) <= 64<<10 {
			*s.batch = (*s.batch)[:0]
			batchPool.Put(s.batch)
		}
		s.batch = nil
	}
	return err
}

var crlf = []byte("\r\n")

func (s *connSink) setDeadline(d time.Time) { _ = s.conn.SetWriteDeadline(d) }

// alive probes the connection for the client's close: nobody reads a
// hijacked connection, so a closed one would otherwise only show when a
// write fails. A read that times out at once means the peer is still
// there; bytes a client sends on a stream are ignored.
func (s *connSink) alive() bool {
	var one [1]byte
	_ = s.conn.SetReadDeadline(time.Now().Add(time.Millisecond))
	_, err := s.conn.Read(one[:])
	var ne net.Error
	return err == nil || errors.As(err, &ne) && ne.Timeout()
}

func (s *connSink) close(clean bool) {
	if clean && s.chunked {
		_ = s.conn.SetWriteDeadline(time.Now().Add(time.Second))
		_, _ = s.conn.Write([]byte("0\r\n\r\n"))
	}
	_ = s.conn.Close()
}

// rwSink writes through the ResponseWriter (HTTP/2, or a writer that
// cannot be hijacked), with deadlines through the ResponseController.
type rwSink struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	timeout time.Duration
	err     error
}

func (s *rwSink) write(frame []byte) {
	if s.err == nil {
		_ = s.rc.SetWriteDeadline(time.Now().Add(s.timeout)) // ErrNotSupported: no deadline to set
		_, s.err = s.w.Write(frame)
	}
}

func (s *rwSink) flush() error { return s.flushWithin(s.timeout) }

func (s *rwSink) flushWithin(timeout time.Duration) error {
	if s.err != nil {
		return s.err
	}
	_ = s.rc.SetWriteDeadline(time.Now().Add(timeout))
	s.err = s.rc.Flush()
	return s.err
}

func (s *rwSink) setDeadline(d time.Time) { _ = s.rc.SetWriteDeadline(d) }

func (s *rwSink) alive() bool { return true } // the request's context says when it is gone

func (s *rwSink) close(bool) {}
