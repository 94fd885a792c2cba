package gqlhttp

import (
	"encoding/json"
	"mime"
	"net/http"
	"strings"
	"time"

	"github.com/shop/bff/internal/config"
	"github.com/shop/bff/internal/httpx"
	"github.com/shop/bff/internal/order"
	"github.com/shop/bff/internal/stream"
)

// lastEventIDHeader is the resume point of a reconnecting client; on every
// subscription door it overrides the operation's after argument.
const lastEventIDHeader = "Last-Event-ID"

// framing is the wire format of one subscription door.
type framing interface {
	// contentType of the response.
	contentType() string
	// open is written before the first message.
	open() []byte
	// next is one result of the subscription; id is the event's id ("" for
	// a result that is no event, e.g. an error).
	next(id string, payload []byte) []byte
	// heartbeat keeps an idle connection alive through proxies.
	heartbeat() []byte
	// end closes the stream: complete after the subscription ended, or
	// session-expired.
	end(expired bool) []byte
}

// serveStream runs a subscription on a streaming door: admitted like every
// operation (subscriptions only), counted against the caller's stream
// caps, ended when the session expires. Each result is written and flushed
// as one message labelled with its event id, with a heartbeat every
// Config.Heartbeat while idle. A Last-Event-ID request header overrides the
// operation's after argument, so a client that reconnects with the id of
// the last event it saw receives exactly the events after it.
func (h *Handler) serveStream(w http.ResponseWriter, r *http.Request, f framing) {
	flusher, ok := w.(http.Flusher)
	if !ok {
		httpx.WriteError(w, r, http.StatusInternalServerError, order.Errorf(order.CodeInternal, "streaming is not supported on this connection"))
		return
	}
	adm, ok := h.Admit(w, r, DoorSubscription)
	if !ok {
		return
	}
	release, ok := h.OpenStream(w, r)
	if !ok {
		return
	}
	defer release()
	ctx, cancel := SessionContext(adm.Ctx)
	defer cancel()
	_, resume := r.Header[http.CanonicalHeaderKey(lastEventIDHeader)]
	ctx, delivery := stream.WithDelivery(ctx, strings.TrimSpace(r.Header.Get(lastEventIDHeader)), resume)

	hdr := w.Header()
	hdr.Set("Content-Type", f.contentType())
	hdr.Set("Cache-Control", "no-store")
	hdr.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(f.open())
	flusher.Flush()

	type message struct {
		id      string
		payload []byte
	}
	messages := make(chan message)
	responses, ctx := h.cfg.Exec.DispatchOperation(ctx, adm.Op)
	go func() {
		defer close(messages)
		for {
			resp := responses(ctx)
			if resp == nil {
				return
			}
			resp.Errors = capErrors(resp.Errors, h.adm.limits.MaxErrors)
			b, err := json.Marshal(resp)
			if err != nil {
				b = internalBody
			}
			select {
			case messages <- message{id: delivery.Next(), payload: b}:
			case <-ctx.Done():
				return
			}
		}
	}()
	every := h.cfg.Heartbeat
	if every <= 0 {
		every = config.DefaultStreamHeartbeat
	}
	beat := time.NewTicker(every)
	defer beat.Stop()
	for {
		var out []byte
		select {
		case m, ok := <-messages:
			if !ok {
				if SessionExpired(ctx) {
					_, _ = w.Write(f.end(true))
				} else if adm.Ctx.Err() == nil {
					_, _ = w.Write(f.end(false))
				}
				flusher.Flush()
				return
			}
			out = f.next(m.id, m.payload)
			beat.Reset(every)
		case <-beat.C:
			out = f.heartbeat()
		}
		if _, err := w.Write(out); err != nil {
			cancel()
			for range messages { // the subscription ends with ctx
			}
			return
		}
		flusher.Flush()
	}
}

// sseFraming is the graphql-sse protocol (distinct connections mode): each
// result an `event: next` message with an `id:` line for events, the end
// `event: complete`, heartbeats `: ping` comments.
type sseFraming struct{}

func (sseFraming) contentType() string { return ctEventStream }
func (sseFraming) open() []byte        { return []byte(":\n\n") }
func (sseFraming) heartbeat() []byte   { return []byte(": ping\n\n") }

func (sseFraming) next(id string, payload []byte) []byte {
	b := make([]byte, 0, len(payload)+len(id)+32)
	if id != "" {
		b = append(append(append(b, "id: "...), id...), '\n')
	}
	b = append(append(b, "event: next\ndata: "...), payload...)
	return append(b, '\n', '\n')
}

func (sseFraming) end(expired bool) []byte {
	if expired {
		return []byte(sessionExpiredFrame)
	}
	return []byte("event: complete\n\n")
}

// multipartBoundary is the boundary of multipart subscription responses.
const multipartBoundary = "graphql"

// multipartFraming is the multipart HTTP subscription protocol as Apollo
// Router speaks it (subscriptionSpec 1.0): parts of application/json, each
// result wrapped as {"payload": <response>}, heartbeats as empty {} parts,
// and the closing boundary at the end. Every part is followed by the next
// boundary at once, so a client parses it without waiting for more bytes.
type multipartFraming struct{}

func (multipartFraming) contentType() string {
	return `multipart/mixed;boundary="` + multipartBoundary + `";subscriptionSpec="1.0"`
}

func (multipartFraming) open() []byte { return []byte("\r\n--" + multipartBoundary) }

func (m multipartFraming) part(json []byte) []byte {
	const head = "\r\ncontent-type: application/json; charset=utf-8\r\n\r\n"
	b := make([]byte, 0, len(head)+len(json)+len(multipartBoundary)+4)
	b = append(append(b, head...), json...)
	return append(b, "\r\n--"+multipartBoundary...)
}

func (m multipartFraming) heartbeat() []byte { return m.part([]byte("{}")) }

func (m multipartFraming) next(_ string, payload []byte) []byte {
	b := make([]byte, 0, len(payload)+12)
	b = append(append(append(b, `{"payload":`...), payload...), '}')
	return m.part(b)
}

func (m multipartFraming) end(expired bool) []byte {
	if expired {
		e := order.Errorf(order.CodeUnauthenticated, "the session expired: sign in again and resubscribe")
		b, _ := json.Marshal(map[string]any{"payload": nil, "errors": []any{map[string]any{"message": e.Message,
			"extensions": map[string]any{"code": e.Code, "retryable": false, "reason": "session_expired"}}}})
		return append(m.part(b), "--\r\n"...)
	}
	return []byte("--\r\n")
}

// acceptsMultipartSubscription reports whether r asks for the multipart
// subscription protocol (Accept: multipart/mixed;subscriptionSpec=1.0).
func acceptsMultipartSubscription(r *http.Request) bool {
	accept := r.Header.Get("Accept")
	if !strings.Contains(strings.ToLower(accept), "multipart/mixed") {
		return false
	}
	for _, part := range strings.Split(accept, ",") {
		mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err == nil && mt == "multipart/mixed" && params["subscriptionspec"] != "" {
			return true
		}
	}
	return false
}
