package stream

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/r3labs/sse/v2"

	"github.com/shop/bff/internal/auth"
	"github.com/shop/bff/internal/httpx"
	"github.com/shop/bff/internal/order"
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
	return appendSSE(make([]byte, 0, len(data)+64), &sse.Event{ID: []byte(e.ID), Event: []byte(e.Type.SSEName()), Data: data})
}

func newItem(e order.Event) *item { return &item{ev: e, frame: eventFrame(e)} }

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
// WriteTimeout do not apply to streams.
func (b *Broker) Handler() http.Handler { return http.HandlerFunc(b.serveEvents) }

func (b *Broker) serveEvents(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		httpx.WriteError(w, r, http.StatusMethodNotAllowed, order.Errorf(order.CodeBadRequest, "GET /events only"))
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
	rc := http.NewResponseController(w)
	c, err := b.open(ctx, viewer, orderID, resume, func(d time.Time) { _ = rc.SetWriteDeadline(d) }, false)
	if err != nil {
		e := order.AsError(err)
		status := e.Code.HTTPStatus()
		if e.Code == order.CodeNotFound {
			status = http.StatusNotFound
		}
		httpx.WriteError(w, r, status, e)
		return
	}
	defer b.unregister(c.s)

	// A server ReadTimeout would end the request (and its context) through
	// the background read of net/http: streams have no read deadline.
	_ = rc.SetReadDeadline(time.Time{})
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)

	cw := &connWriter{w: w, rc: rc, timeout: b.cfg.WriteTimeout}
	cw.write(retryFrame(b.cfg.Retry))
	if c.reset != "" {
		cw.write(resetFrame(c.reset))
	}
	if cw.flush() != nil {
		return
	}
	err = b.replay(ctx, c, func(e order.Event) error { return cw.write(eventFrame(e)) }, cw.flush)
	if err != nil {
		if errors.Is(err, errDropped) {
			b.goodbye(c, cw)
		}
		return
	}
	b.live(ctx, c, cw)
}

// live is the connection loop after replay: live events (several per flush
// when they come in a burst), heartbeats, and the end of the stream.
func (b *Broker) live(ctx context.Context, c *cursor, cw *connWriter) {
	hb := time.NewTimer(b.cfg.Heartbeat)
	defer hb.Stop()
	for {
		select {
		case it := <-c.s.ch:
			if !deliver(c, cw, it) {
				return
			}
		burst:
			for n := 1; n < b.cfg.Buffer; n++ {
				select {
				case it := <-c.s.ch:
					if !deliver(c, cw, it) {
						return
					}
				default:
					break burst
				}
			}
			if cw.flush() != nil {
				return
			}
			hb.Reset(b.cfg.Heartbeat)
		case <-hb.C:
			cw.write(pingFrame)
			if cw.flush() != nil {
				return
			}
			hb.Reset(b.cfg.Heartbeat)
		case <-c.s.gone:
			b.goodbye(c, cw)
			return
		case <-ctx.Done():
			return
		}
	}
}

// deliver writes a live event the stream has not delivered yet.
func deliver(c *cursor, cw *connWriter, it *item) bool {
	if it.ev.Position <= c.last {
		return true
	}
	if cw.write(it.frame) != nil {
		return false
	}
	c.last = it.ev.Position
	return true
}

// goodbye ends a stream the broker dropped: on shutdown the client is told
// to reconnect (elsewhere); an overflowed client just loses the
// connection and resumes with Last-Event-ID.
func (b *Broker) goodbye(c *cursor, cw *connWriter) {
	if c.s.why != dropShutdown {
		return
	}
	cw.timeout = time.Second
	cw.write(reconnectFrame(b.cfg.Retry))
	_ = cw.flush()
}

// connWriter writes to one SSE connection with a deadline per batch of
// writes (armed by the first write after a flush).
type connWriter struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	timeout time.Duration
	armed   bool
}

func (cw *connWriter) arm() {
	if !cw.armed {
		_ = cw.rc.SetWriteDeadline(time.Now().Add(cw.timeout)) // ErrNotSupported: no deadline to set
		cw.armed = true
	}
}

func (cw *connWriter) write(p []byte) error {
	cw.arm()
	_, err := cw.w.Write(p)
	return err
}

func (cw *connWriter) flush() error {
	cw.arm()
	err := cw.rc.Flush()
	cw.armed = false
	return err
}
