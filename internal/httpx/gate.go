package httpx

import (
	"context"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Gate keeps the number of heavy requests that run at once small, so
// that a saturated server stays fast for the requests it runs.
//
// Without it, every request in flight is a goroutine competing for the
// same few cores: a request that waits for Postgres or Redis several times
// (a cache miss, a keyed mutation) waits for a core again after each
// round trip, behind every other request in flight, so its latency grows
// with the number of its steps times the number of requests in flight.
// With it, at most Slots of them run; the others wait in line once, and
// are let in in arrival order, writes first. The caller decides which
// requests enter ([Gate.Enter]): the server lets in the GraphQL
// operations that the screen cache's fast path did not answer, once
// their body was read and admitted (cache hits never wait: they are short
// and spend most of their time waiting for Redis, so a slot would only
// cap them), mutations first.
//
// A request that calls another service through [AwayTransport] gives its
// slot back for the call. A request that waits longer than MaxWait runs
// anyway without a slot, so requests that hold their slots for long (a
// dependency that hangs until its timeout) slow the others down by about
// MaxWait at most, never stop them; a request whose context ended stops
// waiting too. Both are checked every quarter of MaxWait (at least every
// 100 ms), by one goroutine that runs while requests wait.
type Gate struct {
	slots   int
	maxWait time.Duration

	unqueued atomic.Int64 // requests that ran without a slot after MaxWait

	mu       sync.Mutex
	running  int
	queues   [2][]*gateWaiter // [0] writes, [1] the others, each in arrival order
	sweeping bool             // sweep runs

	onWait func() // tests: a request took its place in line
}

type gateWaiter struct {
	ready chan struct{} // one send (buffered) when the wait ends
	ctx   context.Context
	since time.Time
	slot  bool // a slot was handed over (set before the send)
}

// waiters are reused: a request that waits costs no allocation.
var waiters = sync.Pool{New: func() any { return &gateWaiter{ready: make(chan struct{}, 1)} }}

// GateOptions configures [NewGate].
type GateOptions struct {
	// Slots is the number of requests that run at once (no gate when
	// <= 0).
	Slots int
	// MaxWait bounds a request's wait for a slot; then it runs without
	// one (no gate when <= 0).
	MaxWait time.Duration
}

// NewGate returns a gate with the options' slots, or nil (no gate) when
// Slots or MaxWait is not positive.
func NewGate(o GateOptions) *Gate {
	if o.Slots <= 0 || o.MaxWait <= 0 {
		return nil
	}
	return &Gate{slots: o.Slots, maxWait: o.MaxWait}
}

// gateHold is a request's place at the gate, kept in its requestState.
type gateHold struct {
	mu    sync.Mutex
	g     *Gate
	first bool
	held  bool // holds a slot
	away  int  // calls through AwayTransport in progress
	left  bool // gave its slot back for them
}

// Enter waits for a slot for r (in line before the others when first:
// a write) and returns the func that gives it back when r is done. Read
// r's body first: a client slow to send it must not hold a slot. On a nil
// gate it waits for nothing.
func (g *Gate) Enter(r *http.Request, first bool) (leave func()) {
	if g == nil {
		return func() {}
	}
	h := &gateHold{}
	if st := stateOf(r.Context()); st != nil {
		h = &st.hold
	}
	held := g.acquire(r.Context(), first)
	h.mu.Lock()
	h.g, h.first, h.held = g, first, held
	h.mu.Unlock()
	return h.end
}

// end gives the request's slot back, if it holds one.
func (h *gateHold) end() {
	h.mu.Lock()
	held := h.held
	h.held = false
	h.mu.Unlock()
	if held {
		h.g.release()
	}
}

// acquire waits for a slot; it reports whether the request holds one.
func (g *Gate) acquire(ctx context.Context, first bool) bool {
	g.mu.Lock()
	if g.running < g.slots && len(g.queues[0]) == 0 && len(g.queues[1]) == 0 {
		g.running++
		g.mu.Unlock()
		return true
	}
	q := 1
	if first {
		q = 0
	}
	wt := waiters.Get().(*gateWaiter)
	wt.ctx, wt.since, wt.slot = ctx, time.Now(), false
	g.queues[q] = append(g.queues[q], wt)
	if !g.sweeping {
		g.sweeping = true
		go g.sweep()
	}
	onWait := g.onWait
	g.mu.Unlock()
	if onWait != nil {
		onWait()
	}
	<-wt.ready
	slot := wt.slot // written before the send
	wt.ctx = nil
	waiters.Put(wt)
	return slot
}

// release hands the slot to the first waiter, or frees it.
func (g *Gate) release() {
	g.mu.Lock()
	defer g.mu.Unlock()
	for q := range g.queues {
		if len(g.queues[q]) > 0 {
			wt := g.queues[q][0]
			g.queues[q][0] = nil
			g.queues[q] = g.queues[q][1:]
			wt.slot = true
			wt.ready <- struct{}{}
			return
		}
	}
	g.running--
}

// sweep runs while requests wait: every quarter of MaxWait (at most
// 100 ms) it lets go, without a slot, the requests that have waited
// MaxWait and those whose context ended. One timer for the whole line,
// not one per request.
func (g *Gate) sweep() {
	tick := min(max(g.maxWait/4, time.Millisecond), 100*time.Millisecond)
	for {
		time.Sleep(tick)
		now := time.Now()
		g.mu.Lock()
		n := 0
		for q := range g.queues {
			kept := g.queues[q][:0]
			for _, wt := range g.queues[q] {
				if late := now.Sub(wt.since) >= g.maxWait; late || wt.ctx.Err() != nil {
					if late {
						g.unqueued.Add(1)
					}
					wt.ready <- struct{}{} // no slot
					continue
				}
				kept = append(kept, wt)
			}
			clear(g.queues[q][len(kept):])
			g.queues[q] = kept
			n += len(kept)
		}
		if n == 0 {
			g.sweeping = false
			g.mu.Unlock()
			return
		}
		g.mu.Unlock()
	}
}

// Waiting is the number of requests in line.
func (g *Gate) Waiting() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.queues[0]) + len(g.queues[1])
}

// Unqueued is the number of requests that waited MaxWait and ran without
// a slot: when it grows, the line is longer than MaxWait's worth of
// requests (overload, or requests holding slots for long).
func (g *Gate) Unqueued() int64 { return g.unqueued.Load() }

// Running is the number of requests that hold a slot.
func (g *Gate) Running() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.running
}

// away gives the request's slot back for a call to another service; the
// returned func takes a place in line again when the last such call ends.
func away(ctx context.Context) (back func()) {
	st := stateOf(ctx)
	if st == nil {
		return func() {}
	}
	h := &st.hold
	h.mu.Lock()
	if h.g == nil { // not at a gate
		h.mu.Unlock()
		return func() {}
	}
	h.away++
	release := h.away == 1 && h.held
	if release {
		h.held, h.left = false, true
	}
	h.mu.Unlock()
	if release {
		h.g.release()
	}
	return func() {
		h.mu.Lock()
		h.away--
		again := h.away == 0 && h.left
		h.left = false
		h.mu.Unlock()
		if again {
			held := h.g.acquire(ctx, h.first)
			h.mu.Lock()
			h.held = held
			h.mu.Unlock()
		}
	}
}

// AwayTransport gives the calling request's slot of the [Gate] back for
// the duration of each round trip (until the response's headers arrive),
// so that requests waiting for another service (the payment partner) do
// not keep the others waiting.
func AwayTransport(base http.RoundTripper) http.RoundTripper {
	return awayTransport{base}
}

type awayTransport struct{ base http.RoundTripper }

func (t awayTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	defer away(req.Context())()
	return t.base.RoundTrip(req)
}
