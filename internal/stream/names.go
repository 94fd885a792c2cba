package stream

import "github.com/shop/bff/internal/order"

// EventName is the event name of t on the GET /events wire (streaming.md),
// e.g. "order.shipped"; outbound webhooks name their messages the same.
func EventName(t order.EventType) string {
	switch t {
	case order.EventOrderPlaced:
		return "order.placed"
	case order.EventPaymentRequested:
		return "payment.requested"
	case order.EventPaymentSucceeded:
		return "payment.succeeded"
	case order.EventPaymentFailed:
		return "payment.failed"
	case order.EventShippingAddressUpdated:
		return "order.address_updated"
	case order.EventOrderShipped:
		return "order.shipped"
	case order.EventOrderDelivered:
		return "order.delivered"
	case order.EventOrderCancelled:
		return "order.cancelled"
	}
	return "order.event"
}
