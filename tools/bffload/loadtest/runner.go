package loadtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Result is the outcome of one scenario (or one series of a scenario).
type Result struct {
	// Name is the scenario's short name, e.g. "a-home-hot".
	Name string
	// Title says what was measured.
	Title string
	// Concurrency is the number of closed-loop workers (streams for SSE).
	Concurrency int
	Summary
	// Latencies are the sorted samples behind Summary.
	Latencies []time.Duration
	// ErrorSamples are the first few error messages.
	ErrorSamples []string
	// Hits counts responses with Cache-Status: bff; hit.
	Hits int
	// Checked and Stale count version checks of reads after writes and
	// the reads that showed an older version than a write had returned.
	Checked, Stale int
	// Delivered, Lost and Duplicates count SSE events: every version of a
	// watched order must reach every stream watching it exactly once.
	Delivered, Lost, Duplicates int
	// RSSKiB is the highest server VmRSS sampled during the scenario.
	RSSKiB int64
	// CeilingRatio is P99 over the ceiling's P99 at the same
	// concurrency (0: not compared).
	CeilingRatio float64
	// Notes are extra facts for the report.
	Notes []string
}

// Failed is the number of correctness failures (errors, stale reads, lost
// or duplicated events): what the short mode fails on.
func (r *Result) Failed() int { return r.Errors + r.Stale + r.Lost + r.Duplicates }

// Runner runs scenarios against one BFF.
type Runner struct {
	// Base is the BFF's base URL, e.g. http://127.0.0.1:18080.
	Base string
	// Ceiling is the ceiling server's base URL ("" skips the comparison).
	Ceiling string
	// Client is shared by the closed-loop scenarios.
	Client *http.Client
	// Users are the signed-in customers.
	Users []*User
	// Products are the catalogue's product ids (for placeOrder).
	Products []string
	// Duration bounds each scenario; MaxRequests bounds its request
	// count (0: no bound).
	Duration    time.Duration
	MaxRequests int
	// PID is the server's process id for RSS sampling (0: none).
	PID int
	// ReadHeaders are extra headers of the checked screen reads of Mixed
	// (Cache-Control: no-cache runs it with the cache off).
	ReadHeaders []string
	// Log receives progress lines.
	Log io.Writer
}

func (r *Runner) logf(format string, args ...any) {
	if r.Log != nil {
		fmt.Fprintf(r.Log, format+"\n", args...)
	}
}

// worker is one closed-loop client.
type worker struct {
	id         int
	rng        *mrand.Rand
	lat        [][]time.Duration
	errs       []int
	errSamples []string
	hits       int
	checked    int
	stale      int
	notes      map[string]int
}

// timed runs f as one request of the given kind and records it.
func (w *worker) timed(kind int, f func() error) error {
	t0 := time.Now()
	err := f()
	w.lat[kind] = append(w.lat[kind], time.Since(t0))
	if err != nil {
		w.errs[kind]++
		if len(w.errSamples) < 3 {
			w.errSamples = append(w.errSamples, err.Error())
		}
	}
	return err
}

// closedLoop runs conc workers, each repeating op until the duration is
// over or MaxRequests operations have started, and merges their samples
// into one Result per kind. Requests in flight at the deadline finish (the
// deadline is checked between operations), so the end of a run never
// shows up as errors.
func (r *Runner) closedLoop(ctx context.Context, conc, kinds int, d time.Duration, op func(ctx context.Context, w *worker)) ([]*Result, error) {
	deadline := time.Now().Add(d)
	var started atomic.Int64
	ws := make([]*worker, conc)
	stopRSS := r.sampleRSS()
	t0 := time.Now()
	var wg sync.WaitGroup
	for i := range ws {
		w := &worker{id: i, rng: mrand.New(mrand.NewPCG(uint64(i)+1, uint64(time.Now().UnixNano()))),
			lat: make([][]time.Duration, kinds), errs: make([]int, kinds), notes: map[string]int{}}
		ws[i] = w
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil && time.Now().Before(deadline) {
				if r.MaxRequests > 0 && started.Add(1) > int64(r.MaxRequests) {
					return
				}
				op(ctx, w)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(t0)
	rss := stopRSS()
	out := make([]*Result, kinds)
	for k := range out {
		var lat []time.Duration
		res := &Result{Concurrency: conc, RSSKiB: rss}
		errs := 0
		notes := map[string]int{}
		for _, w := range ws {
			lat = append(lat, w.lat[k]...)
			errs += w.errs[k]
			if k == 0 {
				res.Hits += w.hits
				res.Checked += w.checked
				res.Stale += w.stale
				res.ErrorSamples = append(res.ErrorSamples, w.errSamples...)
				for n, c := range w.notes {
					notes[n] += c
				}
			}
		}
		for n, c := range notes {
			res.Notes = append(res.Notes, fmt.Sprintf("`%s`: %d", n, c))
		}
		slices.Sort(res.Notes)
		if len(res.ErrorSamples) > 5 {
			res.ErrorSamples = res.ErrorSamples[:5]
		}
		res.Summary = Summarize(lat, errs, elapsed)
		res.Latencies = lat
		out[k] = res
	}
	return out, ctx.Err()
}

// sampleRSS samples the server's VmRSS every 200 ms until the returned
// function is called, which returns the highest sample in KiB.
func (r *Runner) sampleRSS() func() int64 {
	if r.PID == 0 {
		return func() int64 { return 0 }
	}
	var peak atomic.Int64
	done := make(chan struct{})
	stopped := make(chan struct{})
	sample := func() {
		if v, err := RSSKiB(r.PID); err == nil && v > peak.Load() {
			peak.Store(v)
		}
	}
	go func() {
		defer close(stopped)
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			sample()
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	return func() int64 { close(done); <-stopped; sample(); return peak.Load() }
}

func (r *Runner) graphql() string { return r.Base + "/graphql" }

// Warm requests every screen the hot scenarios read once, so that they
// start with a hot cache.
func (r *Runner) Warm(ctx context.Context) error {
	for _, u := range r.Users {
		if _, err := Post(ctx, r.Client, r.graphql(), u.Token, u.homeBody, true); err != nil {
			return fmt.Errorf("warm home of %s: %w", u.Email, err)
		}
		for _, b := range u.orderBodys {
			if _, err := Post(ctx, r.Client, r.graphql(), u.Token, b, true); err != nil {
				return fmt.Errorf("warm order of %s: %w", u.Email, err)
			}
		}
	}
	return nil
}

// cacheStatus counts resp's Cache-Status (without its ttl) in w's notes
// and reports whether it was a hit.
func (w *worker) cacheStatus(resp *Response) bool {
	if resp == nil {
		return false
	}
	cs := resp.Header.Get("Cache-Status")
	if i := strings.Index(cs, "; ttl="); i >= 0 {
		cs = cs[:i]
	}
	if cs == "" {
		cs = "(none)"
	}
	w.notes["Cache-Status "+cs]++
	return strings.HasSuffix(cs, "; hit")
}

// Home reads homeScreen as a random user, conc at a time. With noCache
// every request sends Cache-Control: no-cache (skip and refresh the
// cached screen: every request goes to Postgres). With ceiling the
// requests go to the ceiling server instead, which answers the same
// bytes from one Redis GET (with noCache: the miss ceiling, one SQL query
// and a Redis SET).
func (r *Runner) Home(ctx context.Context, conc int, d time.Duration, noCache, ceiling bool) (*Result, error) {
	var hdr []string
	if noCache {
		hdr = []string{"Cache-Control", "no-cache"}
	}
	urls := make([]string, len(r.Users))
	for i := range urls {
		urls[i] = r.graphql()
		if ceiling {
			urls[i] = fmt.Sprintf("%s/ceiling?u=%d", r.Ceiling, i)
			if noCache { // the miss ceiling: one SQL query and a Redis SET
				urls[i] = fmt.Sprintf("%s/ceiling-miss?u=%d&e=%s", r.Ceiling, i, url.QueryEscape(r.Users[i].Email))
			}
		}
	}
	res, err := r.closedLoop(ctx, conc, 1, d, func(ctx context.Context, w *worker) {
		i := w.rng.IntN(len(r.Users))
		u := r.Users[i]
		_ = w.timed(0, func() error {
			resp, err := Post(ctx, r.Client, urls[i], u.Token, u.homeBody, true, hdr...)
			if w.cacheStatus(resp) {
				w.hits++
			}
			return err
		})
	})
	return res[0], err
}

// Order reads orderScreen of a random order of a random user.
func (r *Runner) Order(ctx context.Context, conc int, d time.Duration) (*Result, error) {
	res, err := r.closedLoop(ctx, conc, 1, d, func(ctx context.Context, w *worker) {
		u := r.Users[w.rng.IntN(len(r.Users))]
		b := u.orderBodys[w.rng.IntN(len(u.orderBodys))]
		_ = w.timed(0, func() error {
			resp, err := Post(ctx, r.Client, r.graphql(), u.Token, b, true)
			if w.cacheStatus(resp) {
				w.hits++
			}
			return err
		})
	})
	return res[0], err
}

// NewKey returns a random Idempotency-Key.
func NewKey() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

type payload struct {
	Data map[string]struct {
		Order orderNode `json:"order"`
	} `json:"data"`
}

// UpdateAddress changes u's target order's shipping address with
// expectedVersion u.Version under a fresh Idempotency-Key, and returns the
// new version and the time the response arrived.
func UpdateAddress(ctx context.Context, c *http.Client, base string, u *User, n int) (int, time.Time, error) {
	vars := map[string]any{"id": u.Target, "expectedVersion": u.Version, "address": map[string]any{
		"name": "Bench " + u.Email, "line1": fmt.Sprintf("%d Load Street", n), "city": "San Francisco",
		"postalCode": "94105", "country": "US"}}
	resp, err := Post(ctx, c, base+"/graphql", u.Token, GraphQLBody(MutationAddress, vars), true, "Idempotency-Key", NewKey())
	at := time.Now()
	if err != nil {
		return 0, at, err
	}
	var p payload
	if err := json.Unmarshal(resp.Body, &p); err != nil {
		return 0, at, err
	}
	o := p.Data["updateShippingAddress"].Order
	if o.Version <= u.Version {
		return 0, at, fmt.Errorf("updateShippingAddress returned version %d after %d", o.Version, u.Version)
	}
	return o.Version, at, nil
}

// readVersion reads the version of u's target order from orderScreen
// (home false) or from homeScreen's recentOrders (found false when the
// order is not among them).
func (r *Runner) readVersion(ctx context.Context, u *User, home bool) (v int, found bool, err error) {
	body := u.homeBody
	if !home {
		body = GraphQLBody(QueryOrder, map[string]any{"id": u.Target})
	}
	resp, err := Post(ctx, r.Client, r.graphql(), u.Token, body, true, r.ReadHeaders...)
	if err != nil {
		return 0, false, err
	}
	var out struct {
		Data struct {
			HomeScreen *struct {
				RecentOrders []orderNode `json:"recentOrders"`
			} `json:"homeScreen"`
			OrderScreen *struct {
				Order orderNode `json:"order"`
			} `json:"orderScreen"`
		} `json:"data"`
	}
	if err := json.Unmarshal(resp.Body, &out); err != nil {
		return 0, false, err
	}
	if out.Data.OrderScreen != nil {
		return out.Data.OrderScreen.Order.Version, true, nil
	}
	if out.Data.HomeScreen != nil {
		for _, o := range out.Data.HomeScreen.RecentOrders {
			if o.ID == u.Target {
				return o.Version, true, nil
			}
		}
	}
	return 0, false, nil
}

// Mixed runs (100 - writePct)% screen reads (homeScreen and orderScreen,
// half each) and writePct% keyed updateShippingAddress mutations with
// expectedVersion. Each user
// belongs to one worker, so its writes never conflict, and every read of
// the user's target order is checked: its version must be at least the
// version the user's last write returned. It returns the reads and the
// writes as two results.
func (r *Runner) Mixed(ctx context.Context, conc int, d time.Duration, writePct int) (reads, writes *Result, err error) {
	conc = min(conc, len(r.Users))
	owned := make([][]*User, conc)
	for i, u := range r.Users {
		owned[i%conc] = append(owned[i%conc], u)
	}
	written := make([]int, len(r.Users))
	for i, u := range r.Users {
		written[i] = u.Version
	}
	var n atomic.Int64
	res, err := r.closedLoop(ctx, conc, 2, d, func(ctx context.Context, w *worker) {
		own := owned[w.id]
		u := own[w.rng.IntN(len(own))]
		if w.rng.IntN(100) < writePct {
			var v int
			err := w.timed(1, func() error {
				var err error
				v, _, err = UpdateAddress(ctx, r.Client, r.Base, u, int(n.Add(1)))
				return err
			})
			if err == nil {
				u.Version, written[u.Index] = v, v
				w.notes["writes"]++
			} else if CodeOf(err) == "CONFLICT" {
				w.notes["conflicts"]++
				if v, ok, err := r.readVersion(ctx, u, false); err == nil && ok {
					u.Version = v
				}
			}
			return
		}
		home := w.rng.IntN(2) == 0
		var v int
		var found bool
		if w.timed(0, func() error { var err error; v, found, err = r.readVersion(ctx, u, home); return err }) != nil || !found {
			return
		}
		w.checked++
		if v < written[u.Index] {
			w.stale++
			if len(w.errSamples) < 3 {
				w.errSamples = append(w.errSamples, fmt.Sprintf("stale read: %s order %s version %d after a write returned %d",
					map[bool]string{true: "homeScreen", false: "orderScreen"}[home], u.Target, v, written[u.Index]))
			}
		}
	})
	return res[0], res[1], err
}

// Place places orders with a fresh Idempotency-Key each, as random users;
// one in ten is sent a second time with the same key, which must be
// answered as a replay (Idempotent-Replayed: true) with the same order.
// It returns the first sends and the replays as two results.
func (r *Runner) Place(ctx context.Context, conc int, d time.Duration) (places, replays *Result, err error) {
	res, err := r.closedLoop(ctx, conc, 2, d, func(ctx context.Context, w *worker) {
		u := r.Users[w.rng.IntN(len(r.Users))]
		i := w.rng.IntN(len(r.Products))
		lines := []map[string]any{{"productId": r.Products[i], "quantity": 1 + w.rng.IntN(3)}}
		if w.rng.IntN(2) == 0 && len(r.Products) > 1 { // a second, different product
			lines = append(lines, map[string]any{"productId": r.Products[(i+1+w.rng.IntN(len(r.Products)-1))%len(r.Products)], "quantity": 1})
		}
		body := GraphQLBody(MutationPlace, map[string]any{"input": map[string]any{"lines": lines, "currency": "USD",
			"shippingAddress": map[string]any{"name": "Bench", "line1": "1 Load Street", "city": "San Francisco", "postalCode": "94105", "country": "US"}}})
		key := NewKey()
		var id string
		err := w.timed(0, func() error {
			resp, err := Post(ctx, r.Client, r.graphql(), u.Token, body, true, "Idempotency-Key", key)
			if err != nil {
				return err
			}
			var p payload
			if err := json.Unmarshal(resp.Body, &p); err != nil {
				return err
			}
			id = p.Data["placeOrder"].Order.ID
			return nil
		})
		if err != nil || w.rng.IntN(10) != 0 {
			return
		}
		_ = w.timed(1, func() error {
			resp, err := Post(ctx, r.Client, r.graphql(), u.Token, body, true, "Idempotency-Key", key)
			if err != nil {
				return err
			}
			var p payload
			if err := json.Unmarshal(resp.Body, &p); err != nil {
				return err
			}
			if resp.Header.Get("Idempotent-Replayed") != "true" || p.Data["placeOrder"].Order.ID != id {
				return fmt.Errorf("replay of key %s: Idempotent-Replayed %q, order %s, first %s", key,
					resp.Header.Get("Idempotent-Replayed"), p.Data["placeOrder"].Order.ID, id)
			}
			return nil
		})
	})
	return res[0], res[1], err
}
