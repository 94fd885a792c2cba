package drill

import (
	"sync"
	"time"
)

// OrderState is an order as a response, a screen or an event showed it.
type OrderState struct {
	ID      string
	Version int
}

// Write is one attempt of a mutation: one HTTP request and what came back.
type Write struct {
	// Actor is the user who sent it (a customer's id, or "staff").
	Actor string
	// Instance is the index of the instance it was sent to.
	Instance int
	// Key is the Idempotency-Key; attempts of one request share it.
	Key string
	// Op is the mutation's field name.
	Op string
	// StaleVersion marks a request sent on purpose with an expectedVersion
	// below a version a response already confirmed: it must not succeed.
	StaleVersion bool
	// OrderID and ExpectedVersion are the order a mutation of an existing
	// order named and the version it expected ("" and 0 for placeOrder):
	// a CONFLICT answer is checked against them (see Check).
	OrderID         string
	ExpectedVersion int
	// Start is when the request was sent, End when its response was
	// received (the drill's monotonic clock).
	Start, End time.Time
	// Code is "" for a success, the error code otherwise ("TRANSPORT":
	// no response).
	Code string
	// Result is the order of a successful response.
	Result *OrderState
}

// Read is one screen query and what it showed.
type Read struct {
	// Viewer is the customer's id ("" for staff, who sees every order).
	Viewer   string
	Instance int
	Screen   string
	// Start is when the request was sent, End when the response arrived.
	Start, End time.Time
	// Code is "" for a success, the error code otherwise.
	Code string
	// Orders are the orders the screen showed, with their versions.
	Orders []OrderState
	// Timeline is the versions of the timeline of an orderScreen (nil
	// for the other screens).
	Timeline []int
}

// Event is one event as a subscriber received it.
type Event struct {
	// At is when the subscriber received it.
	At time.Time
	// Position is the event id; 0 for `event: reset`.
	Position int64
	OrderID  string
	Version  int
	// Reset marks an `event: reset` message.
	Reset bool
	// Conn is the subscriber's connection that received it (1, 2, ...),
	// Instance the instance that sent it.
	Conn, Instance int
}

// Subscriber is one SSE client of a customer's stream=orders, across its
// reconnects.
type Subscriber struct {
	Customer string
	// From is the position it first connected after (the customer's
	// newest event when the run began): it must receive every event of
	// its customer after it.
	From   int64
	Events []Event
	// Connects counts the connections it made.
	Connects int
}

// History is everything the drill sent, received and saw. It is safe for
// concurrent use.
type History struct {
	mu          sync.Mutex
	Writes      []Write
	Reads       []Read
	Subscribers []*Subscriber
}

// AddWrite records a write attempt.
func (h *History) AddWrite(w Write) {
	h.mu.Lock()
	h.Writes = append(h.Writes, w)
	h.mu.Unlock()
}

// AddRead records a read.
func (h *History) AddRead(r Read) {
	h.mu.Lock()
	h.Reads = append(h.Reads, r)
	h.mu.Unlock()
}

// AddSubscriber registers a subscriber whose events are recorded by
// AddEvent.
func (h *History) AddSubscriber(customer string, from int64) *Subscriber {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := &Subscriber{Customer: customer, From: from}
	h.Subscribers = append(h.Subscribers, s)
	return s
}

// AddEvent records an event received by s.
func (h *History) AddEvent(s *Subscriber, e Event) {
	h.mu.Lock()
	s.Events = append(s.Events, e)
	h.mu.Unlock()
}

// Connected counts a connection of s and returns its number.
func (h *History) Connected(s *Subscriber) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	s.Connects++
	return s.Connects
}

// LastPosition is the position of the last event s received (its resume
// point), From before any.
func (h *History) LastPosition(s *Subscriber) int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	p := s.From
	for _, e := range s.Events {
		p = max(p, e.Position)
	}
	return p
}

// Truth is what the database holds at the end of the run.
type Truth struct {
	// OrderCustomer maps every order to its customer.
	OrderCustomer map[string]string
	// CustomerEvents lists the event positions of each customer.
	CustomerEvents map[string][]int64
	// PlacedByKey counts the orders carrying each placeOrder key.
	PlacedByKey map[string]int
	// Commits lists, for each order, who committed each of its versions
	// (version → Commit).
	Commits map[string]map[int]Commit
}

// Commit is one committed version of an order.
type Commit struct {
	// Actor and Key are the Idempotency-Key whose stored response answered
	// this version and the email of the user it belongs to; both "" when
	// no key's record holds it (an unkeyed mutation, a payment result, a
	// writer whose response does not name the order).
	Actor, Key string
	// At is when its event was written, just before the commit (the
	// database's clock: the same machine's as the history's).
	At time.Time
}
