package drill

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// clean is a history with no violation: two customers, a write answered
// by instance 0, reads after it on both instances, a subscriber per
// customer that received every event of its customer in order.
func clean() (*History, Truth, time.Time) {
	t0 := time.Now()
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	h := &History{}
	h.AddWrite(Write{Actor: "c1", Instance: 0, Key: "k1", Op: "updateShippingAddress", Start: at(0), End: at(10),
		Result: &OrderState{ID: "o1", Version: 2}})
	h.AddWrite(Write{Actor: "c1", Instance: 1, Key: "k1", Op: "updateShippingAddress", Start: at(11), End: at(12),
		Result: &OrderState{ID: "o1", Version: 2}}) // the replay: same answer
	h.AddWrite(Write{Actor: "c1", Instance: 0, Key: "k2", Op: "placeOrder", Start: at(20), End: at(25), Code: "UNAVAILABLE"})
	h.AddRead(Read{Viewer: "c1", Instance: 0, Screen: "orderScreen", Start: at(5), End: at(15),
		Orders: []OrderState{{"o1", 1}}, Timeline: []int{1}}) // started before the answer: not stale
	h.AddRead(Read{Viewer: "c1", Instance: 1, Screen: "orderScreen", Start: at(30), End: at(40),
		Orders: []OrderState{{"o1", 2}}, Timeline: []int{1, 2}})
	h.AddRead(Read{Viewer: "c2", Instance: 0, Screen: "homeScreen", Start: at(30), End: at(40),
		Orders: []OrderState{{"o2", 1}}})
	h.AddRead(Read{Viewer: "c2", Instance: 1, Screen: "orderScreen", Start: at(30), End: at(40),
		Orders: []OrderState{{"o2", 1}}, Timeline: []int{}}) // an order older than the replay window: its events pruned
	h.AddRead(Read{Viewer: "", Instance: 0, Screen: "ordersScreen", Start: at(30), End: at(40),
		Orders: []OrderState{{"o1", 2}, {"o2", 1}}})
	s1 := h.AddSubscriber("c1", 0)
	h.AddEvent(s1, Event{At: at(1), Position: 1, OrderID: "o1", Version: 1})
	h.AddEvent(s1, Event{At: at(11), Position: 3, OrderID: "o1", Version: 2})
	s2 := h.AddSubscriber("c2", 0)
	h.AddEvent(s2, Event{At: at(1), Position: 2, OrderID: "o2", Version: 1})
	truth := Truth{
		OrderCustomer:  map[string]string{"o1": "c1", "o2": "c2"},
		CustomerEvents: map[string][]int64{"c1": {1, 3}, "c2": {2}},
		PlacedByKey:    map[string]int{"k2": 0},
		Commits: map[string]map[int]Commit{
			"o1": {1: {At: at(-100)}, 2: {Actor: "c1", Key: "k1", At: at(9)}},
			"o2": {1: {At: at(-100)}},
		},
	}
	return h, truth, t0
}

func TestCheckCleanHistory(t *testing.T) {
	h, truth, _ := clean()
	c := Check(h, truth)
	require.Zero(t, c.Violations(), c.String())
	assert.Equal(t, "stale=0 lost=0 multi=0 version=0 dup=0 order=0 gap=0 leak=0 internal=0", c.String())
	assert.Equal(t, 2, c.Writes)
	assert.Equal(t, 5, c.Reads)
	assert.Equal(t, 3, c.Events)
}

// Each case adds one kind of violation to the clean history and checks
// that exactly it is counted.
func TestCheckCountsEachViolation(t *testing.T) {
	cases := []struct {
		name  string
		add   func(h *History, truth *Truth, at func(int) time.Time)
		want  string
		check func(t *testing.T, c Counts)
	}{
		{"stale read on the writing instance", func(h *History, _ *Truth, at func(int) time.Time) {
			h.AddRead(Read{Viewer: "c1", Instance: 0, Screen: "homeScreen", Start: at(11), End: at(20), Orders: []OrderState{{"o1", 1}}})
		}, "stale=1 lost=0 multi=0 version=0 dup=0 order=0 gap=0 leak=0 internal=0",
			func(t *testing.T, c Counts) { assert.Equal(t, 1, c.StaleSame) }},
		{"stale read on the other instance", func(h *History, _ *Truth, at func(int) time.Time) {
			h.AddWrite(Write{Actor: "c2", Instance: 1, Key: "k9", Op: "payOrder", Start: at(50), End: at(60), Result: &OrderState{ID: "o2", Version: 2}})
			h.AddRead(Read{Viewer: "c2", Instance: 0, Screen: "ordersScreen", Start: at(61), End: at(70), Orders: []OrderState{{"o2", 1}}})
		}, "stale=1 lost=0 multi=0 version=0 dup=0 order=0 gap=0 leak=0 internal=0",
			func(t *testing.T, c Counts) { assert.Equal(t, 1, c.StaleOther) }},
		{"stale read after an event", func(h *History, truth *Truth, at func(int) time.Time) {
			// payment succeeded: the event reached c2's subscriber, no write answered it
			h.AddEvent(h.Subscribers[1], Event{At: at(50), Position: 7, OrderID: "o2", Version: 2})
			truth.CustomerEvents["c2"] = append(truth.CustomerEvents["c2"], 7)
			h.AddRead(Read{Viewer: "c2", Instance: 1, Screen: "orderScreen", Start: at(51), End: at(60),
				Orders: []OrderState{{"o2", 1}}, Timeline: []int{1}})
		}, "stale=1 lost=0 multi=0 version=0 dup=0 order=0 gap=0 leak=0 internal=0",
			func(t *testing.T, c Counts) { assert.Equal(t, 1, c.StaleEvent) }},
		{"lost event", func(h *History, truth *Truth, _ func(int) time.Time) {
			truth.CustomerEvents["c1"] = append(truth.CustomerEvents["c1"], 4)
			truth.CustomerEvents["c2"] = append([]int64{0}, truth.CustomerEvents["c2"]...) // before c2's From: not expected
			h.Subscribers[1].From = 1
		}, "stale=0 lost=1 multi=0 version=0 dup=0 order=0 gap=0 leak=0 internal=0", nil},
		{"two answers for one key", func(h *History, _ *Truth, at func(int) time.Time) {
			h.AddWrite(Write{Actor: "c1", Instance: 1, Key: "k1", Op: "updateShippingAddress", Start: at(99), End: at(100), Result: &OrderState{ID: "o1", Version: 3}})
		}, "stale=0 lost=0 multi=1 version=0 dup=0 order=0 gap=0 leak=0 internal=0", nil},
		{"two orders for one key", func(_ *History, truth *Truth, _ func(int) time.Time) {
			truth.PlacedByKey["k2"] = 2
		}, "stale=0 lost=0 multi=1 version=0 dup=0 order=0 gap=0 leak=0 internal=0", nil},
		{"timeline not 1..n", func(h *History, _ *Truth, at func(int) time.Time) {
			h.AddRead(Read{Viewer: "c1", Instance: 1, Screen: "orderScreen", Start: at(30), End: at(40), Orders: []OrderState{{"o1", 2}}, Timeline: []int{2, 1}})
		}, "stale=0 lost=0 multi=0 version=1 dup=0 order=0 gap=0 leak=0 internal=0", nil},
		{"timeline of an order placed in the run missing its first event", func(h *History, truth *Truth, at func(int) time.Time) {
			truth.OrderCustomer["o3"] = "c1"
			h.AddWrite(Write{Actor: "c1", Instance: 0, Key: "k8", Op: "placeOrder", Start: at(1), End: at(2), Result: &OrderState{ID: "o3", Version: 1}})
			h.AddRead(Read{Viewer: "c1", Instance: 1, Screen: "orderScreen", Start: at(30), End: at(40), Orders: []OrderState{{"o3", 2}}, Timeline: []int{2}})
		}, "stale=0 lost=0 multi=0 version=1 dup=0 order=0 gap=0 leak=0 internal=0", nil},
		{"a stale expectedVersion accepted", func(h *History, _ *Truth, at func(int) time.Time) {
			h.AddWrite(Write{Actor: "c1", Instance: 0, Key: "k5", Op: "cancelOrder", StaleVersion: true, Start: at(20), End: at(21), Result: &OrderState{ID: "o1", Version: 2}})
		}, "stale=0 lost=0 multi=0 version=1 dup=0 order=0 gap=0 leak=0 internal=0", nil},
		{"duplicated event", func(h *History, _ *Truth, at func(int) time.Time) {
			h.AddEvent(h.Subscribers[0], Event{At: at(50), Position: 3, OrderID: "o1", Version: 2})
		}, "stale=0 lost=0 multi=0 version=0 dup=1 order=0 gap=0 leak=0 internal=0", nil},
		{"event out of order", func(h *History, _ *Truth, at func(int) time.Time) {
			// positions 3 then 1, versions still consecutive: only the order is wrong
			h.Subscribers[0].Events = []Event{{At: at(1), Position: 3, OrderID: "o1", Version: 1}, {At: at(11), Position: 1, OrderID: "o1", Version: 2}}
		}, "stale=0 lost=0 multi=0 version=0 dup=0 order=1 gap=0 leak=0 internal=0", nil},
		{"version skipped on a stream", func(h *History, truth *Truth, at func(int) time.Time) {
			h.AddEvent(h.Subscribers[0], Event{At: at(50), Position: 5, OrderID: "o1", Version: 4}) // after version 2
			truth.CustomerEvents["c1"] = append(truth.CustomerEvents["c1"], 5)
		}, "stale=0 lost=0 multi=0 version=0 dup=0 order=0 gap=1 leak=0 internal=0", nil},
		{"reset", func(h *History, _ *Truth, at func(int) time.Time) {
			h.AddEvent(h.Subscribers[1], Event{At: at(50), Reset: true})
		}, "stale=0 lost=0 multi=0 version=0 dup=0 order=0 gap=1 leak=0 internal=0", nil},
		{"another customer's event", func(h *History, truth *Truth, at func(int) time.Time) {
			h.AddEvent(h.Subscribers[1], Event{At: at(50), Position: 6, OrderID: "o1", Version: 1})
		}, "stale=0 lost=0 multi=0 version=0 dup=0 order=0 gap=0 leak=1 internal=0", nil},
		{"another customer's order on a screen", func(h *History, _ *Truth, at func(int) time.Time) {
			h.AddRead(Read{Viewer: "c2", Instance: 1, Screen: "homeScreen", Start: at(30), End: at(40), Orders: []OrderState{{"o1", 2}}})
		}, "stale=0 lost=0 multi=0 version=0 dup=0 order=0 gap=0 leak=1 internal=0", nil},
		{"internal errors", func(h *History, _ *Truth, at func(int) time.Time) {
			h.AddWrite(Write{Actor: "c1", Instance: 0, Key: "k7", Op: "payOrder", Start: at(1), End: at(2), Code: "INTERNAL"})
			h.AddRead(Read{Viewer: "c1", Instance: 0, Screen: "homeScreen", Start: at(1), End: at(2), Code: "INTERNAL"})
		}, "stale=0 lost=0 multi=0 version=0 dup=0 order=0 gap=0 leak=0 internal=2", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h, truth, t0 := clean()
			tc.add(h, &truth, func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) })
			c := Check(h, truth)
			assert.Equal(t, tc.want, c.String())
			if tc.check != nil {
				tc.check(t, c)
			}
		})
	}
}

// A CONFLICT is right when another committed write had moved the order off
// the expected version before the answer, this client's own earlier
// attempt under another key (or none) included; it is a violation when
// nothing moved it, when the move came after the answer, or when the move
// was the key's own commit (a retry must replay it). Each case adds
// attempts at expectedVersion 2 on order o1 (at version 2 in the clean
// history) and says who committed its version 3, and when.
func TestCheckClassifiesConflicts(t *testing.T) {
	type attempt struct {
		key, code string
		end       int // ms
	}
	type commit struct {
		actor, key string
		at         int // ms; 0: version 3 never committed
	}
	const none = "stale=0 lost=0 multi=0 version=0 dup=0 order=0 gap=0 leak=0 internal=0"
	cases := []struct {
		name     string
		attempts []attempt
		v3       commit
		want     string
		right    int
	}{
		{"another writer moved the version", []attempt{{"k3", "CONFLICT", 60}}, commit{"c1", "k9", 50}, none, 1},
		{"an unkeyed writer (a payment result, the stale-read sentinel) moved it", []attempt{{"k3", "CONFLICT", 60}}, commit{"", "", 50}, none, 1},
		{"the client's own first attempt under another key committed, its answer lost",
			[]attempt{{"k3", "TRANSPORT", 55}, {"k4", "CONFLICT", 70}}, commit{"c1", "k3", 50}, none, 1},
		{"the client's own unkeyed first attempt committed, its answer lost",
			[]attempt{{"", "TRANSPORT", 55}, {"", "CONFLICT", 70}}, commit{"c1", "", 50}, none, 1},
		{"the same key string of another user is another write", []attempt{{"k3", "CONFLICT", 60}}, commit{"c2", "k3", 50}, none, 1},
		{"the key's own first attempt committed and its retry got CONFLICT instead of the replay",
			[]attempt{{"k3", "TRANSPORT", 55}, {"k3", "CONFLICT", 70}}, commit{"c1", "k3", 50},
			"stale=0 lost=0 multi=1 version=0 dup=0 order=0 gap=0 leak=0 internal=0", 0},
		{"nothing moved the version", []attempt{{"k3", "CONFLICT", 60}}, commit{},
			"stale=0 lost=0 multi=0 version=1 dup=0 order=0 gap=0 leak=0 internal=0", 0},
		{"the move committed only after the answer", []attempt{{"k3", "CONFLICT", 60}}, commit{"c1", "k9", 65},
			"stale=0 lost=0 multi=0 version=1 dup=0 order=0 gap=0 leak=0 internal=0", 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h, truth, t0 := clean()
			at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
			for _, a := range tc.attempts {
				h.AddWrite(Write{Actor: "c1", Instance: 0, Key: a.key, Op: "updateShippingAddress", OrderID: "o1", ExpectedVersion: 2,
					Start: at(a.end - 5), End: at(a.end), Code: a.code})
			}
			if tc.v3.at != 0 {
				truth.Commits["o1"][3] = Commit{Actor: tc.v3.actor, Key: tc.v3.key, At: at(tc.v3.at)}
			}
			c := Check(h, truth)
			assert.Equal(t, tc.want, c.String(), c.Details)
			assert.Equal(t, tc.right, c.Conflicts)
		})
	}
}
