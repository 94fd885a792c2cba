package server

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/shop/bff/internal/webhooks/hooksim"
)

const cancelWithReason = `mutation($id: ID!, $v: Int!, $reason: String) {
  cancelOrder(id: $id, expectedVersion: $v, reason: $reason) { order { id version status } } }`

// cancelOrder's reason is kept with the ORDER_CANCELLED event (the contract
// has no field for it): through the served binary, the order's stream and
// a signed webhook carry it trimmed in the event's data; a cancellation
// without a reason carries none; a reason with a control character is
// BAD_USER_INPUT and changes nothing.
func TestCancelReasonTravelsWithTheCancelledEvent(t *testing.T) {
	e := newEnv(t)
	cfg := e.config()
	cfg.WebhookWorkers = 2
	in := e.start(cfg, Options{})
	staff, alice := in.token("staff@example.com"), in.token("alice@example.com")

	rcv, r := hookReceiver(t, in, staff, "ORDER_CANCELLED")
	hook, err := standardwebhooks.NewWebhook(field(r.Data, "createWebhookEndpoint", "secret").(string))
	if err != nil {
		t.Fatal(err)
	}

	id, version := pendingOrder(t, in, alice)
	// The order's stream, resuming from the screen read: the cancellation
	// arrives whenever the stream registers with the broker.
	screen := in.post(alice, orderScreenQuery, map[string]any{"id": id})
	last, _ := field(screen.Data, "orderScreen", "lastEventId").(string)
	if screen.code() != "" || last == "" {
		t.Fatalf("screen: %s", screen.Raw)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, in.URL+"/events?stream=order:"+id+"&lastEventId="+last, nil)
	req.Header.Set("Authorization", "Bearer "+alice)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /events: %v %v", err, resp)
	}
	defer resp.Body.Close()
	stream := readEvents(resp.Body)

	// Refused: a control character; the order does not move.
	if r := in.post(alice, cancelWithReason, map[string]any{"id": id, "v": version, "reason": "no\x1b[31m"}); r.code() != "BAD_USER_INPUT" ||
		r.Errors[0].Extensions["field"] != "reason" || r.Errors[0].Extensions["constraint"] != "format" {
		t.Fatalf("control character: %s", r.Raw)
	}
	if got := mutRow(t, in, id); got.Version != version {
		t.Fatalf("a refused cancellation moved the order: %+v", got)
	}

	const reason = "Ordered the wrong size\nwill reorder"
	r = in.post(alice, cancelWithReason, map[string]any{"id": id, "v": version, "reason": "  " + reason + " \n"})
	if r.code() != "" || field(r.Data, "cancelOrder", "order", "status") != "CANCELLED" {
		t.Fatalf("cancel with a reason: %s", r.Raw)
	}
	ev := next(t, stream, false)
	var data map[string]any
	if err := json.Unmarshal([]byte(ev.data), &data); err != nil {
		t.Fatalf("event data %q: %v", ev.data, err)
	}
	if ev.event != "order.cancelled" || data["type"] != "ORDER_CANCELLED" || data["reason"] != reason {
		t.Fatalf("stream: %+v, want order.cancelled with reason %q", ev, reason)
	}

	// A cancellation without a reason: no reason in its data.
	bare := placeOrderAs(t, in, alice)
	if r := in.post(alice, cancelWithReason, map[string]any{"id": bare, "v": 1}); r.code() != "" {
		t.Fatalf("cancel without a reason: %s", r.Raw)
	}

	got, err := rcv.Wait(ctx, func(r []hooksim.Received) bool { return len(r) >= 2 })
	if err != nil {
		t.Fatalf("webhooks: %v (received %+v)", err, rcv.Received())
	}
	seen := map[string]bool{}
	for _, g := range got {
		if err := hook.Verify(g.Body, g.Header); err != nil {
			t.Fatalf("verify %s: %v", g.ID, err)
		}
		var body struct {
			Type string         `json:"type"`
			Data map[string]any `json:"data"`
		}
		if err := json.Unmarshal(g.Body, &body); err != nil {
			t.Fatal(err)
		}
		r, has := body.Data["reason"]
		switch {
		case body.Type != "order.cancelled":
			t.Errorf("webhook of type %s", body.Type)
		case g.OrderID == id && r != reason:
			t.Errorf("webhook of the order cancelled with a reason: %s", g.Body)
		case g.OrderID == bare && has:
			t.Errorf("webhook of the order cancelled without a reason: %s", g.Body)
		}
		seen[g.OrderID] = true
	}
	if !seen[id] || !seen[bare] {
		t.Fatalf("webhooks for %v, want %s and %s", seen, id, bare)
	}
}
