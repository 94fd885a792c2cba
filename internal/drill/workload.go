package drill

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// placePrefix starts the line2 of the address of every order the drill
// places; the rest is the request's Idempotency-Key, so the database says
// how many orders one key made.
const placePrefix = "k-"

const (
	queryHome = `query Home { homeScreen { viewer { id } recentOrders { id status version } openOrders } }`
	// queryOrders also serves staff's status filter.
	queryOrders = `query Orders($status: OrderStatus) { ordersScreen(status: $status, first: 20) { orders { edges { node { id status paymentStatus version } } } } }`
	queryOrder  = `query Order($id: ID!) { orderScreen(id: $id) { order { id status paymentStatus version } timeline { version } lastEventId } }`

	orderFields    = `{ order { id status paymentStatus version } }`
	mutationPlace  = `mutation Place($input: PlaceOrderInput!) { placeOrder(input: $input) ` + orderFields + ` }`
	mutationPay    = `mutation Pay($id: ID!, $v: Int!) { payOrder(id: $id, expectedVersion: $v) ` + orderFields + ` }`
	mutationCancel = `mutation Cancel($id: ID!, $v: Int!) { cancelOrder(id: $id, expectedVersion: $v, reason: "drill") ` + orderFields + ` }`
	mutationAddr   = `mutation Addr($id: ID!, $v: Int!, $a: AddressInput!) { updateShippingAddress(id: $id, expectedVersion: $v, address: $a) ` + orderFields + ` }`
	mutationShip   = `mutation Ship($id: ID!, $v: Int!, $t: String!) { shipOrder(id: $id, expectedVersion: $v, trackingNumber: $t) ` + orderFields + ` }`
	mutationDeliv  = `mutation Deliver($id: ID!, $v: Int!) { deliverOrder(id: $id, expectedVersion: $v) ` + orderFields + ` }`
)

// order is an order as the drill knows it.
type order struct {
	ID            string `json:"id"`
	Status        string `json:"status"`
	PaymentStatus string `json:"paymentStatus"`
	Version       int    `json:"version"`
}

// user is a signed-in user of the drill.
type user struct {
	id, email, token string
	staff            bool

	mu     sync.Mutex
	orders map[string]*order
}

func (u *user) viewer() string {
	if u.staff {
		return ""
	}
	return u.id
}

// know records what a response or a screen said about an order.
func (u *user) know(o order) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if cur, ok := u.orders[o.ID]; !ok || cur.Version <= o.Version {
		c := o
		u.orders[o.ID] = &c
	}
}

// pick returns a random known order passing keep.
func (u *user) pick(keep func(*order) bool) (order, bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	var c []*order
	for _, o := range u.orders {
		if keep(o) {
			c = append(c, o)
		}
	}
	if len(c) == 0 {
		return order{}, false
	}
	return *c[rand.IntN(len(c))], true
}

// instance is one bff process of the drill.
type instance struct {
	idx  int
	base string
	proc *process
}

// workload drives the users against the instances and records the
// history.
type workload struct {
	h        *History
	c        *http.Client
	insts    []*instance
	users    []*user // customers
	staff    *user
	products []string

	ops       sync.Map // op → *atomic.Int64 successes
	unavail   atomic.Int64
	readsBusy chan struct{} // bounds the reads after events
	bg        sync.WaitGroup
}

func (w *workload) count(op string) {
	v, _ := w.ops.LoadOrStore(op, new(atomic.Int64))
	v.(*atomic.Int64).Add(1)
}

func (w *workload) inst() *instance { return w.insts[rand.IntN(len(w.insts))] }

func (w *workload) other(i *instance) *instance { return w.insts[(i.idx+1)%len(w.insts)] }

// retryable reports whether a request may succeed when sent again with the
// same key.
func retryable(code string) bool {
	switch code {
	case codeTransport, "UNAVAILABLE", "IDEMPOTENCY_KEY_IN_USE", "RATE_LIMITED", "HTTP_502", "HTTP_503", "HTTP_429", "HTTP_409":
		return true
	}
	return false
}

// mutate sends one keyed mutation until it gets a final answer (retrying
// with the same key on either instance for up to 30 s), records every
// attempt, and sometimes sends it once more to the other instance, which
// must replay the same answer.
func (w *workload) mutate(u *user, op, query string, vars map[string]any, key string, stale bool) (order, string, *instance) {
	inst := w.inst()
	giveUp := time.Now().Add(30 * time.Second)
	backoff := 50 * time.Millisecond
	for {
		o, code := w.attempt(u, inst, op, query, vars, key, stale)
		if retryable(code) && time.Now().Before(giveUp) {
			w.unavail.Add(1)
			time.Sleep(backoff + rand.N(backoff))
			backoff = min(2*backoff, time.Second)
			if rand.IntN(2) == 0 {
				inst = w.other(inst)
			}
			continue
		}
		if code == "" {
			w.count(op)
			if rand.IntN(5) == 0 {
				w.attempt(u, w.other(inst), op, query, vars, key, stale)
			}
		}
		return o, code, inst
	}
}

// attempt sends one request of a mutation and records it.
func (w *workload) attempt(u *user, inst *instance, op, query string, vars map[string]any, key string, stale bool) (order, string) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	start := time.Now()
	resp, code := post(ctx, w.c, inst.base, u.token, query, vars, key)
	end := time.Now()
	rec := Write{Actor: u.email, Instance: inst.idx, Key: key, Op: op, StaleVersion: stale, Start: start, End: end, Code: code}
	rec.OrderID, _ = vars["id"].(string)
	rec.ExpectedVersion, _ = vars["v"].(int)
	var o order
	if code == "" {
		var p struct {
			Order order `json:"order"`
		}
		if err := json.Unmarshal(resp.Data[op], &p); err != nil || p.Order.ID == "" {
			rec.Code, code = "BAD_RESPONSE", "BAD_RESPONSE"
		} else {
			o = p.Order
			rec.Result = &OrderState{ID: o.ID, Version: o.Version}
		}
	}
	w.h.AddWrite(rec)
	return o, code
}

// read runs one screen query as u on inst, records it, and returns the
// orders it showed.
func (w *workload) read(u *user, inst *instance, screen string, vars map[string]any) []order {
	q := map[string]string{"homeScreen": queryHome, "ordersScreen": queryOrders, "orderScreen": queryOrder}[screen]
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	start := time.Now()
	resp, code := post(ctx, w.c, inst.base, u.token, q, vars, "")
	rec := Read{Viewer: u.viewer(), Instance: inst.idx, Screen: screen, Start: start, End: time.Now(), Code: code}
	var shown []order
	if code == "" {
		var err error
		shown, rec.Timeline, err = parseScreen(screen, resp.Data[screen])
		if err != nil {
			rec.Code = "BAD_RESPONSE"
		}
		for _, o := range shown {
			rec.Orders = append(rec.Orders, OrderState{ID: o.ID, Version: o.Version})
		}
	}
	w.h.AddRead(rec)
	return shown
}

// parseScreen returns the orders a screen showed and, for orderScreen,
// the versions of its timeline.
func parseScreen(screen string, raw json.RawMessage) ([]order, []int, error) {
	switch screen {
	case "homeScreen":
		var s struct {
			RecentOrders []order `json:"recentOrders"`
		}
		err := json.Unmarshal(raw, &s)
		return s.RecentOrders, nil, err
	case "ordersScreen":
		var s struct {
			Orders struct {
				Edges []struct {
					Node order `json:"node"`
				} `json:"edges"`
			} `json:"orders"`
		}
		err := json.Unmarshal(raw, &s)
		var out []order
		for _, e := range s.Orders.Edges {
			out = append(out, e.Node)
		}
		return out, nil, err
	default:
		var s *struct {
			Order    order `json:"order"`
			Timeline []struct {
				Version int `json:"version"`
			} `json:"timeline"`
		}
		if err := json.Unmarshal(raw, &s); err != nil || s == nil {
			return nil, nil, fmt.Errorf("no order screen: %v", err)
		}
		tl := make([]int, 0, len(s.Timeline))
		for _, e := range s.Timeline {
			tl = append(tl, e.Version)
		}
		return []order{s.Order}, tl, nil
	}
}

func newKey() string { return randomHex(12) }

func (w *workload) address(line2 string) map[string]any {
	return map[string]any{"name": "Drill", "line1": "1 Fault Street", "line2": line2, "city": "Chaos", "postalCode": "12345", "country": "US"}
}

// customer is one customer's loop: all its mutations (some with an
// expectedVersion known to be stale), each followed by a read of the order
// on either instance, until ctx ends.
func (w *workload) customer(ctx context.Context, u *user) {
	for ctx.Err() == nil {
		pending := func(o *order) bool { return o.Status == "PENDING_PAYMENT" && o.PaymentStatus != "PROCESSING" }
		o, ok := u.pick(pending)
		r := rand.Float64()
		var (
			got  order
			code string
			inst *instance
		)
		key := newKey()
		switch {
		case r < 0.15 || !ok:
			got, code, inst = w.mutate(u, "placeOrder", mutationPlace, map[string]any{"input": map[string]any{
				"lines":           []map[string]any{{"productId": w.products[rand.IntN(len(w.products))], "quantity": 1 + rand.IntN(3)}},
				"shippingAddress": w.address(placePrefix + key), "currency": "USD"}}, key, false)
		case r < 0.40:
			got, code, inst = w.mutate(u, "updateShippingAddress", mutationAddr,
				map[string]any{"id": o.ID, "v": o.Version, "a": w.address("u-" + key)}, key, false)
		case r < 0.60:
			got, code, inst = w.mutate(u, "payOrder", mutationPay, map[string]any{"id": o.ID, "v": o.Version}, key, false)
		case r < 0.68:
			got, code, inst = w.mutate(u, "cancelOrder", mutationCancel, map[string]any{"id": o.ID, "v": o.Version}, key, false)
		case r < 0.78 && o.Version > 1:
			got, code, inst = w.mutate(u, "updateShippingAddress", mutationAddr,
				map[string]any{"id": o.ID, "v": o.Version - 1, "a": w.address("s-" + key)}, key, true)
		default:
			w.randomRead(u)
			w.pause(ctx, 20, 60)
			continue
		}
		switch {
		case code == "":
			u.know(got)
			// read after own write, on the same instance or the other
			i := inst
			if rand.IntN(2) == 0 {
				i = w.other(inst)
			}
			for _, s := range w.read(u, i, "orderScreen", map[string]any{"id": got.ID}) {
				u.know(s)
			}
		case o.ID != "": // refused (a stale version, another transition): re-read
			for _, s := range w.read(u, w.inst(), "orderScreen", map[string]any{"id": o.ID}) {
				u.know(s)
			}
		}
		w.pause(ctx, 20, 60)
	}
}

// randomRead reads one of u's screens on a random instance.
func (w *workload) randomRead(u *user) {
	inst := w.inst()
	switch rand.IntN(3) {
	case 0:
		for _, o := range w.read(u, inst, "homeScreen", nil) {
			u.know(o)
		}
	case 1:
		for _, o := range w.read(u, inst, "ordersScreen", nil) {
			u.know(o)
		}
	default:
		if o, ok := u.pick(func(*order) bool { return true }); ok {
			for _, s := range w.read(u, inst, "orderScreen", map[string]any{"id": o.ID}) {
				u.know(s)
			}
		}
	}
}

// reader reads random screens of random customers until ctx ends.
func (w *workload) reader(ctx context.Context) {
	for ctx.Err() == nil {
		w.randomRead(w.users[rand.IntN(len(w.users))])
		w.pause(ctx, 10, 40)
	}
}

// staffLoop ships paid orders and delivers shipped ones until ctx ends.
func (w *workload) staffLoop(ctx context.Context) {
	for ctx.Err() == nil {
		for _, step := range []struct{ status, op, query string }{
			{"PAID", "shipOrder", mutationShip}, {"SHIPPED", "deliverOrder", mutationDeliv},
		} {
			list := w.read(w.staff, w.inst(), "ordersScreen", map[string]any{"status": step.status})
			for i, o := range list {
				if i >= 3 || ctx.Err() != nil {
					break
				}
				vars := map[string]any{"id": o.ID, "v": o.Version}
				if step.op == "shipOrder" {
					vars["t"] = "TRK-" + strconv.Itoa(rand.IntN(1e6))
				}
				w.mutate(w.staff, step.op, step.query, vars, newKey(), false)
			}
		}
		w.pause(ctx, 100, 200)
	}
}

// subscribe keeps one SSE subscription of u's orders, reconnecting with
// Last-Event-ID to a random instance when the connection ends and every
// few seconds on purpose, until done returns true or ctx ends. While
// reads is open it reads the screen of some events' orders right after
// the event.
func (w *workload) subscribe(ctx context.Context, u *user, s *Subscriber, reads context.Context, done func() bool) {
	for ctx.Err() == nil && !done() {
		inst := w.inst()
		last := strconv.FormatInt(w.h.LastPosition(s), 10)
		sctx, cancel := context.WithTimeout(ctx, time.Duration(4+rand.IntN(6))*time.Second)
		conn := w.h.Connected(s)
		err := stream(sctx, w.c, inst.base, u.token, last, func(m sseEvent) bool {
			now := time.Now()
			if m.name == "reset" {
				w.h.AddEvent(s, Event{At: now, Reset: true, Conn: conn, Instance: inst.idx})
				return !done()
			}
			var d struct {
				OrderID string `json:"orderId"`
				Version int    `json:"version"`
			}
			pos, perr := strconv.ParseInt(m.id, 10, 64)
			if json.Unmarshal(m.data, &d) != nil || perr != nil {
				return true
			}
			w.h.AddEvent(s, Event{At: now, Position: pos, OrderID: d.OrderID, Version: d.Version, Conn: conn, Instance: inst.idx})
			if reads.Err() == nil && rand.IntN(2) == 0 {
				select {
				case w.readsBusy <- struct{}{}:
					w.bg.Go(func() {
						defer func() { <-w.readsBusy }()
						w.read(u, w.inst(), "orderScreen", map[string]any{"id": d.OrderID})
					})
				default:
				}
			}
			return !done()
		})
		cancel()
		if err != nil && ctx.Err() == nil {
			w.pause(ctx, 100, 300)
		}
	}
}

// pause waits a random time in [lo, hi) milliseconds, or until ctx ends.
func (w *workload) pause(ctx context.Context, lo, hi int) {
	t := time.NewTimer(time.Duration(lo+rand.IntN(hi-lo)) * time.Millisecond)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
