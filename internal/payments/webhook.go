package payments

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/google/uuid"

	"github.com/shop/bff/internal/httpx"
	"github.com/shop/bff/internal/order"
	"github.com/shop/bff/internal/postgres"
)

// Webhook event types of the provider (payments.md).
const (
	EventPaymentSucceeded = "payment.succeeded"
	EventPaymentFailed    = "payment.failed"
)

// MaxWebhookBody is the largest webhook body accepted (64 KiB).
const MaxWebhookBody = 64 << 10

// ResultStore applies payment results to orders. It is implemented by the
// Postgres store.
type ResultStore interface {
	// ApplyPaymentResult records the provider event id (dedupe) and applies
	// the result per concurrency.md in ONE transaction. applied=false (and
	// ev nil) for a duplicate event id or a payment that is not PROCESSING.
	// Errors: *order.Error NOT_FOUND (unknown order), BAD_USER_INPUT
	// (amount/currency differ from the order total), UNAVAILABLE.
	ApplyPaymentResult(ctx context.Context, r WebhookResult) (ev *order.Event, applied bool, err error)
	// MarkPaymentFailed applies PAYMENT_FAILED for the order if its payment
	// is still PROCESSING for that attempt (the charge could not be sent).
	// nil event if nothing changed.
	MarkPaymentFailed(ctx context.Context, orderID string, attempt int, failureCode string) (*order.Event, error)
}

// WebhookResult is a verified, parsed payment webhook: the result the
// store applies (event id as the dedupe key, type, order, charge id,
// amount and currency that must equal the order's total, whether it
// succeeded), and the provider's failure code, which is logged only.
type WebhookResult struct {
	postgres.PaymentResult
	// FailureCode is the provider's reason for payment.failed
	// (e.g. card_declined), empty otherwise.
	FailureCode string
}

// Notifier is told about events once they are committed (it publishes them
// to streams and invalidates cached screens).
type Notifier interface {
	Committed(ctx context.Context, events []order.Event)
}

// WebhookConfig configures a [WebhookHandler].
type WebhookConfig struct {
	// Secrets are the shared secrets (WEBHOOK_SECRET, see [ParseSecrets]);
	// at least one is required.
	Secrets [][]byte
	// Store applies results. Required.
	Store ResultStore
	// Notifier is told about applied events. Optional.
	Notifier Notifier
	// Tolerance of the signature timestamp. Default [DefaultTolerance].
	Tolerance time.Duration
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Logger logs refusals. Default slog.Default().
	Logger *slog.Logger
	// Metrics counts webhooks by result. Optional.
	Metrics *Metrics
}

// WebhookHandler serves POST /webhooks/payments: it caps the body, verifies
// the signature before parsing, parses the event, applies it through the
// [ResultStore] and answers 200 only once the store has committed it.
type WebhookHandler struct {
	cfg WebhookConfig
}

// MinSecretLength is the shortest webhook secret accepted: 32 bytes, the
// size of the HMAC-SHA256 hash.
const MinSecretLength = 32

// NewWebhookHandler validates cfg and returns the handler.
func NewWebhookHandler(cfg WebhookConfig) (*WebhookHandler, error) {
	if len(cfg.Secrets) == 0 {
		return nil, errors.New("WEBHOOK_SECRET: at least one secret is required")
	}
	for i, s := range cfg.Secrets {
		if len(s) < MinSecretLength {
			return nil, fmt.Errorf("WEBHOOK_SECRET: secret %d has %d bytes, at least %d are needed", i+1, len(s), MinSecretLength)
		}
	}
	if cfg.Store == nil {
		return nil, errors.New("payments: WebhookConfig.Store is required")
	}
	if cfg.Tolerance <= 0 {
		cfg.Tolerance = DefaultTolerance
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &WebhookHandler{cfg: cfg}, nil
}

// webhookBody is the provider's event (payments.md).
type webhookBody struct {
	ID      string `json:"id"`
	Type    string `json:"type"`
	Created int64  `json:"created"`
	Data    struct {
		ChargeID    string  `json:"chargeId"`
		OrderID     string  `json:"orderId"`
		AmountCents *int64  `json:"amountCents"`
		Currency    string  `json:"currency"`
		FailureCode *string `json:"failureCode"`
	} `json:"data"`
}

// ServeHTTP implements http.Handler, in steps: read the capped body,
// authenticate its signature, parse it, apply it, acknowledge it.
//
// Answers: 200 {"received":true,"applied":…} when recorded (a duplicate or
// a result for a payment that is not PROCESSING is 200 with applied false);
// 405 for a method other than POST; 413 PAYLOAD_TOO_LARGE over 64 KiB; 401
// UNAUTHENTICATED for a missing, malformed, stale or wrong signature; 400
// BAD_REQUEST for an unparsable body or unknown type; 400 BAD_USER_INPUT
// for an amount or currency that differs from the order; 404 NOT_FOUND for
// an unknown order; 503 UNAVAILABLE (retryable) when the store cannot
// commit; 500 INTERNAL otherwise.
func (h *WebhookHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	log := h.cfg.Logger.With("path", r.URL.Path) // request_id and trace_id come from the context
	body, ok := h.readBody(w, r, log)
	if !ok {
		return
	}
	if !h.authenticate(w, r, log, body) {
		return
	}
	res, ok := h.parse(w, r, log, body)
	if !ok {
		return
	}
	log = log.With("event_id", res.EventID, "type", res.Type, "order_id", res.OrderID)
	ev, applied, ok := h.apply(w, r, log, res)
	if !ok {
		return
	}
	h.acknowledge(w, r, log, ev, applied)
}

// readBody reads the body of a POST, at most [MaxWebhookBody] bytes. It
// answers 405 for another method, 413 for a larger body (announced or
// read) and 400 for a body that cannot be read, and then returns false.
func (h *WebhookHandler) readBody(w http.ResponseWriter, r *http.Request, log *slog.Logger) ([]byte, bool) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		h.fail(w, r, http.StatusMethodNotAllowed, order.Errorf(httpx.CodeBadRequest, "use POST"), "bad_request")
		return nil, false
	}
	if r.ContentLength > MaxWebhookBody {
		h.tooLarge(w, r, log)
		return nil, false
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxWebhookBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			h.tooLarge(w, r, log)
			return nil, false
		}
		h.fail(w, r, http.StatusBadRequest, order.Errorf(httpx.CodeBadRequest, "cannot read body"), "bad_request")
		return nil, false
	}
	return body, true
}

// authenticate verifies the body's signature, before anything reads the
// body: a missing, malformed, stale or wrong signature is answered 401
// (the reason logged, not told) and authenticate returns false.
func (h *WebhookHandler) authenticate(w http.ResponseWriter, r *http.Request, log *slog.Logger, body []byte) bool {
	if err := Verify(r.Header.Get(SignatureHeader), body, h.cfg.Secrets, h.cfg.Now(), h.cfg.Tolerance); err != nil {
		log.WarnContext(r.Context(), "payment webhook refused", "reason", err.Error())
		h.fail(w, r, http.StatusUnauthorized, order.Errorf(order.CodeUnauthenticated, "invalid webhook signature"), "unauthenticated")
		return false
	}
	return true
}

// parse parses a verified body into the result to apply; a body that is
// not a payment event of a known type with its required fields is
// answered 400 and parse returns false.
func (h *WebhookHandler) parse(w http.ResponseWriter, r *http.Request, log *slog.Logger, body []byte) (WebhookResult, bool) {
	res, perr := parseWebhook(body)
	if perr != nil {
		log.WarnContext(r.Context(), "payment webhook rejected", "reason", perr.Message, "event_id", res.EventID, "type", res.Type)
		h.fail(w, r, http.StatusBadRequest, perr, "bad_request")
		return res, false
	}
	return res, true
}

// apply applies res through the store, in its one transaction. An order id
// that is not a UUID is 404 without asking the store; the store's errors
// are answered as [applyFailure] maps them, and apply then returns ok
// false.
func (h *WebhookHandler) apply(w http.ResponseWriter, r *http.Request, log *slog.Logger, res WebhookResult) (ev *order.Event, applied, ok bool) {
	if _, err := uuid.Parse(res.OrderID); err != nil {
		log.WarnContext(r.Context(), "payment webhook for an unknown order")
		h.fail(w, r, http.StatusNotFound, order.NotFound("order"), "not_found")
		return nil, false, false
	}
	ev, applied, err := h.cfg.Store.ApplyPaymentResult(r.Context(), res)
	if err != nil {
		e, status, result := applyFailure(err)
		if e.Code == order.CodeUnavailable {
			w.Header().Set("Retry-After", "1")
		}
		log.WarnContext(r.Context(), "payment webhook not applied", "code", string(e.Code), "error", err.Error())
		h.fail(w, r, status, e, result)
		return nil, false, false
	}
	return ev, applied, true
}

// applyFailure maps an error of the store (Postgres: a timeout names it) to
// the answer: BAD_USER_INPUT (amount or currency differ) 400, NOT_FOUND
// 404, UNAVAILABLE 503, anything else INTERNAL 500; result is the
// metric's label.
func applyFailure(err error) (e *order.Error, status int, result string) {
	e = order.AsErrorFrom("postgres", err)
	switch e.Code {
	case order.CodeBadUserInput:
		return e, http.StatusBadRequest, "bad_request"
	case order.CodeNotFound:
		return e, http.StatusNotFound, "not_found"
	case order.CodeUnavailable:
		return e, http.StatusServiceUnavailable, "unavailable"
	}
	return &order.Error{Code: order.CodeInternal, Message: "internal error", Cause: err}, http.StatusInternalServerError, "error"
}

// acknowledge answers 200 {"received":true,"applied":…} once the store has
// committed, counts and logs the result, and then hands an applied event
// to the notifier (streams, cached screens).
func (h *WebhookHandler) acknowledge(w http.ResponseWriter, r *http.Request, log *slog.Logger, ev *order.Event, applied bool) {
	if applied {
		h.cfg.Metrics.webhook("applied")
		log.InfoContext(r.Context(), "payment webhook applied")
	} else {
		h.cfg.Metrics.webhook("ignored")
		log.InfoContext(r.Context(), "payment webhook ignored: duplicate event or payment not processing")
	}
	httpx.WriteJSON(w, http.StatusOK, map[string]any{"received": true, "applied": applied})
	if applied && ev != nil && h.cfg.Notifier != nil {
		h.cfg.Notifier.Committed(context.WithoutCancel(r.Context()), []order.Event{*ev})
	}
}

// parseWebhook parses and checks a verified body. On error the returned
// result still holds what could be read, for the log.
func parseWebhook(body []byte) (WebhookResult, *order.Error) {
	var b webhookBody
	if err := json.Unmarshal(body, &b); err != nil {
		return WebhookResult{}, order.Errorf(httpx.CodeBadRequest, "body is not a valid payment event")
	}
	res := WebhookResult{PaymentResult: postgres.PaymentResult{EventID: b.ID, Type: b.Type, OrderID: b.Data.OrderID,
		ChargeID: b.Data.ChargeID, Currency: b.Data.Currency}}
	switch b.Type {
	case EventPaymentSucceeded:
		res.Succeeded = true
	case EventPaymentFailed:
		if b.Data.FailureCode != nil {
			res.FailureCode = *b.Data.FailureCode
		}
	default:
		return res, order.Errorf(httpx.CodeBadRequest, "unknown event type %q", b.Type)
	}
	switch {
	case b.ID == "":
		return res, order.Errorf(httpx.CodeBadRequest, "id is required")
	case b.Data.OrderID == "":
		return res, order.Errorf(httpx.CodeBadRequest, "data.orderId is required")
	case b.Data.AmountCents == nil || *b.Data.AmountCents < 0:
		return res, order.Errorf(httpx.CodeBadRequest, "data.amountCents is required and must not be negative")
	case len(b.Data.Currency) != 3:
		return res, order.Errorf(httpx.CodeBadRequest, "data.currency must be a 3-letter code")
	case res.Succeeded && b.Data.ChargeID == "":
		return res, order.Errorf(httpx.CodeBadRequest, "data.chargeId is required")
	}
	res.AmountCents = *b.Data.AmountCents
	return res, nil
}

func (h *WebhookHandler) tooLarge(w http.ResponseWriter, r *http.Request, log *slog.Logger) {
	log.WarnContext(r.Context(), "payment webhook refused: body too large")
	h.fail(w, r, http.StatusRequestEntityTooLarge,
		order.Errorf(httpx.CodePayloadTooLarge, "webhook body exceeds %d bytes", MaxWebhookBody).With("limit", MaxWebhookBody),
		"too_large")
}

// fail writes the error response {"errors":[{message, extensions}]}.
func (h *WebhookHandler) fail(w http.ResponseWriter, r *http.Request, status int, e *order.Error, result string) {
	h.cfg.Metrics.webhook(result)
	ext := map[string]any{}
	for k, v := range e.Extensions {
		ext[k] = v
	}
	ext["code"] = string(e.Code)
	ext["retryable"] = e.Code.Retryable()
	if id := requestID(w, r); id != "" {
		ext["requestId"] = id
	}
	if e.Code == order.CodeUnavailable {
		ext["retryAfterSeconds"] = 1
	}
	httpx.WriteJSON(w, status, map[string]any{"errors": []map[string]any{{"message": e.Message, "extensions": ext}}})
}

// requestID is the request id set by the server's middleware on the
// response (X-Request-ID), or the client's.
func requestID(w http.ResponseWriter, r *http.Request) string {
	if id := w.Header().Get("X-Request-ID"); id != "" {
		return id
	}
	return r.Header.Get("X-Request-ID")
}
