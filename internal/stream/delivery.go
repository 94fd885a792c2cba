package stream

import (
	"context"
	"sync"
)

// Delivery connects a subscription door with the subscription it runs: it
// carries the resume point the client sent as a Last-Event-ID header
// (which overrides the operation's after argument) to the resolver, and
// the id of every event the resolver hands to the executor back to the
// door, in order, so the door can label each message with its event id.
type Delivery struct {
	resume    string
	hasResume bool

	mu  sync.Mutex
	ids []string
}

type deliveryKey struct{}

// WithDelivery returns ctx carrying a new Delivery. lastEventID is the
// Last-Event-ID request header; hasResume is false when the header was
// absent.
func WithDelivery(ctx context.Context, lastEventID string, hasResume bool) (context.Context, *Delivery) {
	d := &Delivery{resume: lastEventID, hasResume: hasResume}
	return context.WithValue(ctx, deliveryKey{}, d), d
}

// DeliveryFrom returns the Delivery of ctx, or nil.
func DeliveryFrom(ctx context.Context) *Delivery {
	d, _ := ctx.Value(deliveryKey{}).(*Delivery)
	return d
}

// Resume returns the client's Last-Event-ID, and whether it sent one.
func (d *Delivery) Resume() (string, bool) {
	if d == nil {
		return "", false
	}
	return d.resume, d.hasResume
}

// Sent records that the event id is handed to the executor: call it just
// before sending the event on the subscription's channel.
func (d *Delivery) Sent(id string) {
	if d == nil {
		return
	}
	d.mu.Lock()
	d.ids = append(d.ids, id)
	d.mu.Unlock()
}

// Next returns the id of the event of the next response of the
// subscription ("" when none is recorded, e.g. an error response).
func (d *Delivery) Next() string {
	if d == nil {
		return ""
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.ids) == 0 {
		return ""
	}
	id := d.ids[0]
	d.ids = d.ids[1:]
	return id
}
