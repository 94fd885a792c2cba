// Package loaders reads what a screen shows in one round trip to Postgres:
// the screen's orders, their lines with the products of those lines, their
// customers, and whatever else the screen asks for (status counts, an
// order's timeline, the stream position) are queued in one pipelined batch
// (postgres.Batch) and sent together. Batching is explicit: the batch is
// built from the screen's request, never from what arrives within a time
// window, so a screen costs the same SQL whatever the number of orders and
// however busy the machine is.
package loaders

import (
	"context"

	"github.com/shop/bff/internal/order"
	"github.com/shop/bff/internal/postgres"
)

// Runner runs a batch: the store (one round trip, one snapshot) or a
// transaction (its reads see the transaction's own writes).
type Runner interface {
	Run(ctx context.Context, b *postgres.Batch) error
}

var (
	_ Runner = (*postgres.Store)(nil)
	_ Runner = (*postgres.Tx)(nil)
)

// Request is what one screen reads.
type Request struct {
	// Orders selects the screen's orders (nil IDs and zero First: none).
	Orders postgres.OrderSet
	// Summary, when set, reads the status counts and spend of its scope.
	Summary *postgres.Scope
	// Timeline, when not empty, reads the events of that order.
	Timeline string
	// LastPosition, when set, reads the newest stream position of its scope.
	LastPosition *postgres.Scope
}

// Order is an order with everything a screen shows of it.
type Order struct {
	*order.Order
	// Customer is the order's customer.
	Customer *order.User
	// Lines are the order's lines, in line order.
	Lines []Line
}

// Line is an order line with its product.
type Line struct {
	order.Line
	Product *order.Product
}

// Result is what a Request read.
type Result struct {
	// Orders are the selected orders, in the set's order (newest first for
	// a page, as found for ids).
	Orders []*Order
	// More reports whether a page has more orders after it.
	More bool
	// Summary is set when the request asked for it.
	Summary *postgres.Summary
	// Timeline holds the events of the requested order, oldest first.
	Timeline []order.Event
	// LastPosition is the requested scope's newest stream position.
	LastPosition int64
}

// Load reads req in one batch through r.
func Load(ctx context.Context, r Runner, req Request) (*Result, error) {
	var b postgres.Batch
	// The resume point is read first: the batch's statements take their
	// own snapshots in order, so every event up to it is reflected in
	// the orders read after it, and a stream opened with it misses none.
	var last *postgres.Read[int64]
	if req.LastPosition != nil {
		last = b.LastPosition(*req.LastPosition)
	}
	wantOrders := req.Orders.IDs != nil || req.Orders.First > 0
	var page *postgres.Read[postgres.Page]
	var lines *postgres.Read[postgres.Lines]
	var customers *postgres.Read[map[string]*order.User]
	if wantOrders {
		page = b.Orders(req.Orders)
		lines = b.LinesOf(req.Orders)
		customers = b.CustomersOf(req.Orders)
	}
	var sum *postgres.Read[*postgres.Summary]
	if req.Summary != nil {
		sum = b.Summary(*req.Summary)
	}
	var tl *postgres.Read[[]order.Event]
	if req.Timeline != "" {
		tl = b.Timeline(req.Timeline)
	}
	if err := r.Run(ctx, &b); err != nil {
		return nil, err
	}
	res := &Result{Orders: []*Order{}}
	if wantOrders {
		p := page.Value()
		res.More = p.More
		res.Orders = join(p.Orders, lines.Value(), customers.Value())
	}
	if sum != nil {
		res.Summary = sum.Value()
	}
	if tl != nil {
		res.Timeline = tl.Value()
	}
	if last != nil {
		res.LastPosition = last.Value()
	}
	return res, nil
}

// join attaches lines, products and customers to their orders.
func join(list []*order.Order, ls postgres.Lines, customers map[string]*order.User) []*Order {
	out := make([]*Order, len(list))
	for i, o := range list {
		lo := &Order{Order: o, Customer: customers[o.CustomerID], Lines: make([]Line, 0, len(ls.ByOrder[o.ID]))}
		for _, l := range ls.ByOrder[o.ID] {
			lo.Lines = append(lo.Lines, Line{Line: l, Product: ls.Products[l.ProductID]})
		}
		out[i] = lo
	}
	return out
}

// Completion is the reads that complete orders known by id (their lines
// with the products of those lines, and their customers), queued in a
// batch that runs before the orders are at hand: with the statement that
// returns them, for example (postgres.Change.With).
type Completion struct {
	lines     *postgres.Read[postgres.Lines]
	customers *postgres.Read[map[string]*order.User]
}

// QueueCompletion queues in b the reads that complete the orders with ids.
func QueueCompletion(b *postgres.Batch, ids []string) Completion {
	set := postgres.OrderSet{IDs: ids}
	return Completion{lines: b.LinesOf(set), customers: b.CustomersOf(set)}
}

// Attach attaches what c read, once its batch has run, to list.
func (c Completion) Attach(list []*order.Order) []*Order {
	return join(list, c.lines.Value(), c.customers.Value())
}

// Complete reads the lines (with their products) and the customers of
// orders already at hand through r, in one batch, and attaches them: a
// mutation's transaction completes the order it wrote this way.
func Complete(ctx context.Context, r Runner, list []*order.Order) ([]*Order, error) {
	ids := make([]string, len(list))
	for i, o := range list {
		ids[i] = o.ID
	}
	var b postgres.Batch
	c := QueueCompletion(&b, ids)
	if err := r.Run(ctx, &b); err != nil {
		return nil, err
	}
	return c.Attach(list), nil
}
