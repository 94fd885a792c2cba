package stream

import "time"

// Metrics receives the broker's observations of its promises (events in
// order, once, soon after their commit). Lags are measured from the
// event's timestamp (its transaction's time on the database clock).
type Metrics interface {
	// FirstDelivery records the lag of an event's first hand-over to a
	// stream of this instance.
	FirstDelivery(lag time.Duration)
	// Delivered records the lag of one live delivery to one stream; stream
	// is "order" (one order's stream) or "orders" (all of a viewer's).
	Delivered(stream string, lag time.Duration)
	// Replayed counts a replay from Postgres: reason "resume" (a client
	// resumed after an event id) or "overflow" (a stream that fell behind
	// during its replay goes again).
	Replayed(reason string)
	// Reset counts a resume point that was refused (`event: reset` or
	// BAD_USER_INPUT for a subscription), by reason ("unknown",
	// "expired").
	Reset(reason string)
}

// Stream kinds and replay reasons of [Metrics].
const (
	StreamOrder    = "order"
	StreamOrders   = "orders"
	ReplayResume   = "resume"
	ReplayOverflow = "overflow"
	ResetUnknown   = resetUnknown
	ResetExpired   = resetExpired
)

type nopMetrics struct{}

func (nopMetrics) FirstDelivery(time.Duration)     {}
func (nopMetrics) Delivered(string, time.Duration) {}
func (nopMetrics) Replayed(string)                 {}
func (nopMetrics) Reset(string)                    {}

func streamKind(orderID string) string {
	if orderID != "" {
		return StreamOrder
	}
	return StreamOrders
}

// lag is the time since an event's timestamp (0 when the clocks disagree).
func lag(at time.Time) time.Duration { return lagAt(at, time.Now()) }

// lagAt is the time from an event's timestamp to now (0 when the clocks
// disagree).
func lagAt(at, now time.Time) time.Duration {
	if at.IsZero() {
		return 0
	}
	return max(now.Sub(at), 0)
}
