package httpx

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Gate keeps the number of requests that run at once small, so that a
// saturated server stays fast for the requests it runs.
//
// Without it, every request in flight is a goroutine competing for the
// same few cores: a request that waits for Postgres or Redis several times
// (a cache miss, a keyed mutation) waits for a core again after each
// round trip, behind every other request in flight, so its latency grows
// with the number of its steps times the number of requests in flight.
// With it, at most Slots requests run; the others wait in line once, and
// are let in in arrival order, writes first.
//
// A request enters the line only once its body has arrived (the gate
// reads it first, under [BodyLimit] and [BodyDeadline]), so a slow client
// never holds a slot. A request that calls another service through
// [AwayTransport] gives its slot back for the call. A request that waits
// longer than MaxWait runs anyway without a slot, so requests that hold
// their slots for long (a dependency that hangs until its timeout) slow
// the others down by about MaxWait at most, never stop them; a request
// whose context ended stops waiting too. Both are checked every quarter
// of MaxWait, by one goroutine that runs while requests wait.
type Gate struct {
	slots   int
	maxWait time.Duration
	first   func(*http.Request) bool
	exempt  func(*http.Request) bool

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
	// First picks the requests let in before the others (nil: none).
	First func(*http.Request) bool
	// Exempt picks the requests that neither wait nor hold a slot (nil:
	// [IsStream]).
	Exempt func(*http.Request) bool
}

// NewGate returns a gate with the options' slots, or nil (no gate) when
// Slots or MaxWait is not positive.
func NewGate(o GateOptions) *Gate {
	if o.Slots <= 0 || o.MaxWait <= 0 {
		return nil
	}
	if o.Exempt == nil {
		o.Exempt = IsStream
	}
	return &Gate{slots: o.Slots, maxWait: o.MaxWait, first: o.First, exempt: o.Exempt}
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

// Middleware reads the body of each request that is not exempt, then runs
// it inside a slot of the gate.
func (g *Gate) Middleware() Middleware {
	return func(next http.Handler) http.Handler {
		if g == nil {
			return next
		}
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if g.exempt(r) {
				next.ServeHTTP(w, r)
				return
			}
			bufferBody(r)
			h := &gateHold{}
			if st := stateOf(r.Context()); st != nil {
				h = &st.hold
			}
			h.g, h.first = g, g.first != nil && g.first(r)
			h.held = g.acquire(r.Context(), h.first)
			defer h.end()
			next.ServeHTTP(w, r)
		})
	}
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

// sweep runs while requests wait: every quarter of MaxWait it lets go,
// without a slot, the requests that have waited MaxWait and those whose
// context ended. One timer for the whole line, not one per request.
func (g *Gate) sweep() {
	tick := max(g.maxWait/4, time.Millisecond)
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
	if st == nil || st.hold.g == nil {
		return func() {}
	}
	h := &st.hold
	h.mu.Lock()
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

// bufferBody reads r's body to its end before the request takes a slot;
// what it read (and the error that ended the read, if any) is read back
// from r.Body as before.
func bufferBody(r *http.Request) {
	if r.Body == nil || r.Body == http.NoBody {
		return
	}
	b, err := io.ReadAll(r.Body)
	_ = r.Body.Close()
	bb := &bufferedBody{b: b, err: err}
	bb.Reader.Reset(b)
	r.Body = bb
}

// bufferedBody is a body read by the gate: its bytes, then the read's
// error (one allocation besides the bytes).
type bufferedBody struct {
	bytes.Reader
	b   []byte
	err error
}

func (b *bufferedBody) Read(p []byte) (int, error) {
	n, err := b.Reader.Read(p)
	if err == io.EOF && b.err != nil {
		return n, b.err
	}
	return n, err
}

func (b *bufferedBody) Close() error { return nil }

// ReadBody reads r's body to its end: without a copy when the [Gate] has
// read it already.
func ReadBody(r *http.Request) ([]byte, error) {
	if b, ok := r.Body.(*bufferedBody); ok && b.Reader.Len() == len(b.b) {
		_, _ = b.Reader.Seek(0, io.SeekEnd)
		return b.b, b.err
	}
	return io.ReadAll(r.Body)
}
