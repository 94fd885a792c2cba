package shop

import (
	"context"
	"strconv"
	"strings"

	"github.com/shop/bff/graph/model"
	"github.com/shop/bff/internal/cache"
	"github.com/shop/bff/internal/loaders"
	"github.com/shop/bff/internal/order"
	"github.com/shop/bff/internal/postgres"
)

// Shop serves the screens and runs the mutations.
type Shop struct {
	store *postgres.Store
	// cache holds the assembled screens (nil: every screen from Postgres).
	cache *cache.Cache
	// onCommit is told of the events of every committed write that the
	// shop committed itself (requests whose transaction belongs to the
	// idempotency layer are reported by that layer).
	onCommit func(ctx context.Context, events []order.Event)
}

// Option configures a Shop.
type Option func(*Shop)

// WithCache serves the screens through c.
func WithCache(c *cache.Cache) Option { return func(s *Shop) { s.cache = c } }

// WithOnCommit sets what to do after a write commits: invalidate the
// screens it changed, then publish its events.
func WithOnCommit(f func(ctx context.Context, events []order.Event)) Option {
	return func(s *Shop) { s.onCommit = f }
}

// New returns a Shop over store.
func New(store *postgres.Store, opts ...Option) *Shop {
	s := &Shop{store: store}
	for _, o := range opts {
		o(s)
	}
	return s
}

func requireViewer(v *order.User) error {
	if v == nil {
		return order.Unauthenticated()
	}
	return nil
}

// HomeScreen is the viewer's home screen; staff see the whole shop.
func (s *Shop) HomeScreen(ctx context.Context, v *order.User) (*model.HomeScreen, cache.Result, error) {
	if err := requireViewer(v); err != nil {
		return nil, cache.Result{}, err
	}
	sc := postgres.ScopeFor(v)
	return screen(ctx, s.cache, ScreenHome, "", v, scopeDeps(sc),
		func(ctx context.Context) (*model.HomeScreen, error) {
			res, err := loaders.Load(ctx, s.store, loaders.Request{
				Orders: postgres.OrderSet{Scope: sc, First: RecentOrders}, Summary: &sc, LastPosition: &sc})
			if err != nil {
				return nil, err
			}
			cache.Reflects(ctx, res.LastPosition)
			sum := res.Summary
			open := 0
			for st, n := range sum.Counts {
				if st.Open() {
					open += n
				}
			}
			cur, cents := "USD", int64(0)
			for c, n := range sum.LifetimeSpend {
				if n > cents || cents == 0 {
					cur, cents = c, n
				}
			}
			return &model.HomeScreen{Viewer: User(v), RecentOrders: orderModels(res.Orders), StatusCounts: statusCounts(sum.Counts),
				OpenOrders: open, LifetimeSpend: money(order.Money{Cents: cents, Currency: cur})}, nil
		})
}

// OrdersScreen is one page of the viewer's orders with the status counts.
func (s *Shop) OrdersScreen(ctx context.Context, v *order.User, status *order.Status, first *int, after *string) (*model.OrdersScreen, cache.Result, error) {
	if err := requireViewer(v); err != nil {
		return nil, cache.Result{}, err
	}
	n, cur, err := listArgs(first, after)
	if err != nil {
		return nil, cache.Result{}, err
	}
	sc := postgres.ScopeFor(v)
	args := "status=" + string(ptrOr(status)) + "&first=" + strconv.Itoa(n) + "&after=" + ptrStr(after)
	return screen(ctx, s.cache, ScreenOrders, args, v, scopeDeps(sc),
		func(ctx context.Context) (*model.OrdersScreen, error) {
			conn, sum, last, err := s.countedConnection(ctx, sc, status, n, cur, true)
			if err != nil {
				return nil, err
			}
			cache.Reflects(ctx, last)
			return &model.OrdersScreen{Orders: conn, StatusCounts: statusCounts(sum.Counts)}, nil
		})
}

// OrderScreen is one order with its timeline and what the viewer may do
// now; nil (with NOT_FOUND) when the viewer may not see it.
func (s *Shop) OrderScreen(ctx context.Context, v *order.User, id string) (*model.OrderScreen, cache.Result, error) {
	if err := requireViewer(v); err != nil {
		return nil, cache.Result{}, err
	}
	return screen(ctx, s.cache, ScreenOrder, "id="+id, v, []cache.Dep{cache.OrderDep(id)},
		func(ctx context.Context) (*model.OrderScreen, error) {
			scope := postgres.ScopeFor(v)
			res, err := loaders.Load(ctx, s.store, loaders.Request{
				Orders: postgres.OrderSet{IDs: []string{id}}, Timeline: id, LastPosition: &scope})
			if err != nil {
				return nil, err
			}
			o, err := visible(v, res.Orders)
			if err != nil {
				return nil, err
			}
			// The batch's reads are not one snapshot: the timeline, read
			// after the order, is cut at the order's version (a write that
			// commits between the two reads must not show half of it).
			events := res.Timeline
			for len(events) > 0 && events[len(events)-1].Version > o.Version {
				events = events[:len(events)-1]
			}
			// The screen reflects every event of its scope up to the resume
			// point (read first) and the order's own events up to its
			// version (one order's positions follow commit order).
			reflects := res.LastPosition
			if len(events) > 0 {
				reflects = max(reflects, events[len(events)-1].Position)
			}
			cache.Reflects(ctx, reflects)
			tl := make([]*model.OrderEvent, len(events))
			for i, e := range events {
				tl[i] = Event(e)
			}
			acts := order.AvailableActions(o.Status, o.PaymentStatus, v.Role)
			return &model.OrderScreen{Order: orderModel(o), Timeline: tl, AvailableActions: acts,
				LastEventID: strconv.FormatInt(res.LastPosition, 10)}, nil
		})
}

// visible returns the one loaded order if v may see it, else NOT_FOUND.
func visible(v *order.User, list []*loaders.Order) (*loaders.Order, error) {
	if len(list) != 1 || !order.CanSee(v, list[0].Order) {
		return nil, order.NotFound("order")
	}
	return list[0], nil
}

// Order returns one order the viewer may see.
func (s *Shop) Order(ctx context.Context, v *order.User, id string) (*model.Order, error) {
	if err := requireViewer(v); err != nil {
		return nil, err
	}
	res, err := loaders.Load(ctx, s.store, loaders.Request{Orders: postgres.OrderSet{IDs: []string{id}}})
	if err != nil {
		return nil, err
	}
	o, err := visible(v, res.Orders)
	if err != nil {
		return nil, err
	}
	return orderModel(o), nil
}

// Orders is a page of the viewer's orders.
func (s *Shop) Orders(ctx context.Context, v *order.User, status *order.Status, first *int, after *string) (*model.OrderConnection, error) {
	if err := requireViewer(v); err != nil {
		return nil, err
	}
	n, cur, err := listArgs(first, after)
	if err != nil {
		return nil, err
	}
	sc := postgres.ScopeFor(v)
	conn, _, _, err := s.countedConnection(ctx, sc, status, n, cur, false)
	return conn, err
}

// countedConnection is a page of orders with its totalCount, and the
// status counts of the scope it was taken from, and when asked the scope's
// newest stream position (read first): one batch.
func (s *Shop) countedConnection(ctx context.Context, sc postgres.Scope, st *order.Status, n int, cur *postgres.OrderCursor, position bool) (*model.OrderConnection, *postgres.Summary, int64, error) {
	req := loaders.Request{Orders: postgres.OrderSet{Scope: sc, Status: st, First: n, After: cur}, Summary: &sc}
	if position {
		req.LastPosition = &sc
	}
	res, err := loaders.Load(ctx, s.store, req)
	if err != nil {
		return nil, nil, 0, err
	}
	conn := &model.OrderConnection{Edges: make([]*model.OrderEdge, len(res.Orders)), PageInfo: &model.PageInfo{HasNextPage: res.More}}
	for i, o := range res.Orders {
		c := EncodeOrderCursor(postgres.OrderCursor{CreatedAt: o.CreatedAt, ID: o.ID})
		conn.Edges[i] = &model.OrderEdge{Cursor: c, Node: orderModel(o)}
		conn.PageInfo.EndCursor = &c
	}
	sum := res.Summary
	if st != nil {
		conn.TotalCount = sum.Counts[*st]
	} else {
		conn.TotalCount = total(sum.Counts)
	}
	return conn, sum, res.LastPosition, nil
}

// Products is a page of the catalogue. It needs no sign-in.
func (s *Shop) Products(ctx context.Context, first *int, after *string) (*model.ProductConnection, error) {
	n, err := pageSize(first)
	if err != nil {
		return nil, err
	}
	sku := ""
	if after != nil {
		if sku, err = DecodeProductCursor(*after); err != nil {
			return nil, err
		}
	}
	list, more, err := s.store.Products(ctx, n, sku)
	if err != nil {
		return nil, err
	}
	conn := &model.ProductConnection{Edges: make([]*model.ProductEdge, len(list)), PageInfo: &model.PageInfo{HasNextPage: more}}
	for i, p := range list {
		c := EncodeProductCursor(p.SKU)
		conn.Edges[i] = &model.ProductEdge{Cursor: c, Node: product(p)}
		conn.PageInfo.EndCursor = &c
	}
	return conn, nil
}

func listArgs(first *int, after *string) (int, *postgres.OrderCursor, error) {
	n, err := pageSize(first)
	if err != nil {
		return 0, nil, err
	}
	var cur *postgres.OrderCursor
	if after != nil {
		if cur, err = DecodeOrderCursor(*after); err != nil {
			return 0, nil, err
		}
	}
	return n, cur, nil
}

func total(c map[order.Status]int) int {
	n := 0
	for _, v := range c {
		n += v
	}
	return n
}

func ptrOr(s *order.Status) order.Status {
	if s == nil {
		return ""
	}
	return *s
}

func ptrStr(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// ---------------------------------------------------------------- writes

// write runs fn in the request's transaction when there is one (its owner
// commits and publishes), else in a transaction of its own.
func (s *Shop) write(ctx context.Context, fn func(*postgres.Tx) error) error {
	if tx, ok := postgres.TxFrom(ctx); ok {
		return fn(tx)
	}
	events, err := s.store.InTx(ctx, fn)
	if err != nil {
		return err
	}
	if s.onCommit != nil {
		s.onCommit(ctx, events)
	}
	return nil
}

// PlaceOrder validates the request, prices it from the catalogue and
// creates the order.
func (s *Shop) PlaceOrder(ctx context.Context, v *order.User, in model.PlaceOrderInput) (*model.Order, error) {
	if err := requireViewer(v); err != nil {
		return nil, err
	}
	if v.Role != order.RoleCustomer {
		return nil, order.Forbidden("only customers place orders")
	}
	lines := make([]order.LineInput, len(in.Lines))
	for i, l := range in.Lines {
		if l != nil {
			// Product ids are UUIDs, stored and returned in lower case:
			// an upper-case spelling is the same product (and a duplicate
			// of it), not an unknown one.
			lines[i] = order.LineInput{ProductID: strings.ToLower(l.ProductID), Quantity: l.Quantity}
		}
	}
	if err := order.ValidateLines("input.lines", lines); err != nil {
		return nil, err
	}
	addr, verr := validAddress("input.shippingAddress", in.ShippingAddress)
	if verr != nil {
		return nil, verr
	}
	cur := strings.ToUpper(strings.TrimSpace(in.Currency))
	if err := order.ValidateCurrency("input.currency", cur); err != nil {
		return nil, err
	}
	var m *model.Order
	err := s.write(ctx, func(tx *postgres.Tx) error {
		o, err := tx.PlaceOrder(ctx, v, postgres.PlaceOrderInput{Lines: lines, Address: addr, Currency: cur})
		if err != nil {
			return err
		}
		m, err = s.assembleIn(ctx, tx, o)
		return err
	})
	if err != nil {
		return nil, err
	}
	return m, nil
}

func validAddress(path string, a *model.AddressInput) (order.Address, error) {
	if a == nil {
		return order.Address{}, order.BadInput(path, order.ConstraintRequired, "address is required")
	}
	addr, err := order.ValidateAddress(path, order.Address{Name: a.Name, Line1: a.Line1, Line2: a.Line2,
		City: a.City, PostalCode: a.PostalCode, Country: a.Country})
	if err != nil {
		return addr, err
	}
	return addr, nil
}

// ChangeInput is an action on an existing order, as the mutations take it.
type ChangeInput struct {
	ID              string
	ExpectedVersion int
	Action          order.Action
	Address         *model.AddressInput
	TrackingNumber  string
	Reason          *string
}

// Change applies an action to an existing order under its version check.
func (s *Shop) Change(ctx context.Context, v *order.User, in ChangeInput) (*model.Order, error) {
	if err := requireViewer(v); err != nil {
		return nil, err
	}
	c := postgres.Change{Viewer: v, OrderID: in.ID, ExpectedVersion: in.ExpectedVersion, Action: in.Action}
	switch in.Action {
	case order.ActionUpdateShippingAddress:
		addr, err := validAddress("address", in.Address)
		if err != nil {
			return nil, err
		}
		c.Address = &addr
	case order.ActionShip:
		t, err := order.ValidateTracking("trackingNumber", in.TrackingNumber)
		if err != nil {
			return nil, err
		}
		c.TrackingNumber = t
	case order.ActionCancel:
		r, err := order.ValidateReason("reason", in.Reason)
		if err != nil {
			return nil, err
		}
		c.Reason = r
	}
	// The order's lines and customer ride with its locking read.
	var with postgres.Batch
	done := loaders.QueueCompletion(&with, []string{in.ID})
	c.With = &with
	var m *model.Order
	err := s.write(ctx, func(tx *postgres.Tx) error {
		o, err := tx.ChangeOrder(ctx, c)
		if err != nil {
			return err
		}
		m = orderModel(done.Attach([]*order.Order{o})[0])
		return nil
	})
	if err != nil {
		return nil, err
	}
	return m, nil
}

// assembleIn assembles the model of o, written by tx, inside tx: the
// transaction is not committed yet (its owner may be the idempotency
// layer), so only its own connection sees the new lines and state, and
// reading through it takes no second connection from the pool.
func (s *Shop) assembleIn(ctx context.Context, tx *postgres.Tx, o *order.Order) (*model.Order, error) {
	list, err := loaders.Complete(ctx, tx, []*order.Order{o})
	if err != nil {
		return nil, err
	}
	return orderModel(list[0]), nil
}
