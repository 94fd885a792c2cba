package postgres

import (
	"context"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/shop/bff/internal/order"
)

// Batch is a set of reads sent to Postgres together, pipelined: one
// network round trip whatever it holds. A batch of more than one read runs
// in one read-only REPEATABLE READ transaction (its BEGIN and COMMIT are
// part of the same round trip), so every read sees the same snapshot: the
// lines and customers of a page are those of the very orders the page
// lists. Queue reads with its methods, run it with Store.Run or Tx.Run,
// then take each read's Value.
type Batch struct {
	reads []queued
}

type queued struct {
	sql  string
	args []any
	scan func(pgx.Rows) error
}

// Read is the result of one queued read, filled in when its batch has run.
type Read[T any] struct{ v T }

// Value is the read's result (the zero value before the batch has run).
func (r *Read[T]) Value() T { return r.v }

// Len is the number of reads queued.
func (b *Batch) Len() int { return len(b.reads) }

func (b *Batch) queue(sql string, args []any, scan func(pgx.Rows) error) {
	b.reads = append(b.reads, queued{sql: sql, args: args, scan: scan})
}

// OrderSet selects orders: the orders with IDs when IDs is not nil, else
// a page of Scope (with Status, when set), newest first, strictly after
// the keyset cursor After (nil for the first page), First at most.
type OrderSet struct {
	IDs    []string
	Scope  Scope
	Status *order.Status
	First  int
	After  *OrderCursor
}

// Page is the orders of an OrderSet, and whether a page has more after it.
type Page struct {
	Orders []*order.Order
	More   bool
}

// where returns the condition, ordering and limit that select set's orders
// (table alias o), with its arguments. The page's limit is First+extra.
func (set OrderSet) where(extra int) (string, []any) {
	var w where
	if set.IDs != nil {
		w.and(`o.id = ANY(` + w.arg(uuids(set.IDs)) + `::uuid[])`)
		return w.String(), w.args
	}
	w.scope("o.customer_id", set.Scope)
	if set.Status != nil {
		w.and(`o.status = ` + w.arg(string(*set.Status)))
	}
	if set.After != nil {
		w.and(`(o.created_at, o.id) < (` + w.arg(set.After.CreatedAt) + `::timestamptz, ` + w.arg(set.After.ID) + `::uuid)`)
	}
	return w.String() + `
		ORDER BY o.created_at DESC, o.id DESC
		LIMIT ` + w.arg(set.First+extra), w.args
}

// Orders queues the orders of set. A page reads one order more than First
// to know whether more follow (Page.More) and returns First at most.
func (b *Batch) Orders(set OrderSet) *Read[Page] {
	r := &Read[Page]{}
	cond, args := set.where(1)
	b.queue(`SELECT `+orderCols+` FROM orders o WHERE `+cond, args, func(rows pgx.Rows) error {
		list, err := collectOrders(rows, nil)
		if err != nil {
			return err
		}
		if set.IDs == nil && len(list) > set.First {
			r.v = Page{Orders: list[:set.First], More: true}
			return nil
		}
		r.v = Page{Orders: list}
		return nil
	})
	return r
}

// Lines are order lines with their products.
type Lines struct {
	// ByOrder holds each order's lines in line order (no entry for an
	// order without lines).
	ByOrder map[string][]order.Line
	// Products holds the products of those lines, by id.
	Products map[string]*order.Product
}

// LinesOf queues the lines of the orders of set, with their products.
func (b *Batch) LinesOf(set OrderSet) *Read[Lines] {
	r := &Read[Lines]{}
	cond, args := set.where(0)
	b.queue(`SELECT l.order_id::text, l.quantity, l.unit_price_cents, l.currency, `+prefixed("p.", productCols)+`
		FROM order_lines l JOIN products p ON p.id = l.product_id
		WHERE l.order_id IN (SELECT o.id FROM orders o WHERE `+cond+`)
		ORDER BY l.order_id, l.line_no`, args, func(rows pgx.Rows) error {
		out := Lines{ByOrder: map[string][]order.Line{}, Products: map[string]*order.Product{}}
		for rows.Next() {
			var oid string
			var l order.Line
			var p order.Product
			if err := rows.Scan(&oid, &l.Quantity, &l.UnitPrice.Cents, &l.UnitPrice.Currency,
				&p.ID, &p.SKU, &p.Name, &p.Price.Cents, &p.Price.Currency, &p.ImageURL); err != nil {
				return err
			}
			l.ProductID = p.ID
			out.ByOrder[oid] = append(out.ByOrder[oid], l)
			if _, ok := out.Products[p.ID]; !ok {
				out.Products[p.ID] = &p
			}
		}
		r.v = out
		return rows.Err()
	})
	return r
}

// CustomersOf queues the customers of the orders of set, by id.
func (b *Batch) CustomersOf(set OrderSet) *Read[map[string]*order.User] {
	r := &Read[map[string]*order.User]{}
	cond, args := set.where(0)
	b.queue(`SELECT `+userCols+` FROM users WHERE id IN (SELECT o.customer_id FROM orders o WHERE `+cond+`)`, args,
		func(rows pgx.Rows) error {
			out := map[string]*order.User{}
			for rows.Next() {
				u, err := scanUser(rows)
				if err != nil {
					return err
				}
				out[u.ID] = u
			}
			r.v = out
			return rows.Err()
		})
	return r
}

// Summary queues the status counts and lifetime spend of scope: a
// customer's from their orders, every order's (STAFF) from the running
// totals the orders' writes keep (migration 00009), without reading the
// orders table.
func (b *Batch) Summary(sc Scope) *Read[*Summary] {
	r := &Read[*Summary]{}
	sql, args := `SELECT status, currency, sum(n)::bigint, sum(cents)::bigint FROM order_total_deltas
		GROUP BY status, currency HAVING sum(n) <> 0`, []any(nil)
	if sc.CustomerID != "" {
		var w where
		w.scope("customer_id", sc)
		sql, args = `SELECT status, currency, count(*), coalesce(sum(total_cents), 0)
			FROM orders WHERE `+w.String()+`
			GROUP BY status, currency`, w.args
	}
	b.queue(sql, args, func(rows pgx.Rows) error {
		sum := &Summary{Counts: map[order.Status]int{}, LifetimeSpend: map[string]int64{}}
		for rows.Next() {
			var st, cur string
			var n int
			var cents int64
			if err := rows.Scan(&st, &cur, &n, &cents); err != nil {
				return err
			}
			sum.Counts[order.Status(st)] += n
			if order.Status(st) != order.StatusCancelled {
				sum.LifetimeSpend[cur] += cents
			}
		}
		r.v = sum
		return rows.Err()
	})
	return r
}

// Timeline queues the events of an order, oldest first (none for an id
// that is not a UUID).
func (b *Batch) Timeline(orderID string) *Read[[]order.Event] {
	r := &Read[[]order.Event]{}
	b.queue(`SELECT `+eventCols+` FROM order_events WHERE order_id = $1::uuid ORDER BY position`,
		[]any{uuidOrNil(orderID)}, func(rows pgx.Rows) error {
			evs, err := collectEvents(rows, nil)
			r.v = evs
			return err
		})
	return r
}

// LastPosition queues a resume point that covers every event committed in
// scope: the position of the newest one, never below the pruning horizon
// (a customer whose events were all pruned resumes from there, exactly),
// or for every customer (STAFF) the stream head a broker recorded.
func (b *Batch) LastPosition(sc Scope) *Read[int64] {
	r := &Read[int64]{}
	sql, args := `SELECT position FROM stream_head`, []any(nil)
	if sc.CustomerID != "" {
		sql, args = `SELECT greatest(coalesce(max(position), 0), `+PrunedThroughSQL+`)
			FROM order_events WHERE customer_id = $1::uuid`, []any{sc.CustomerID}
	}
	b.queue(sql, args, func(rows pgx.Rows) error {
		for rows.Next() {
			if err := rows.Scan(&r.v); err != nil {
				return err
			}
		}
		return rows.Err()
	})
	return r
}

// Run sends the batch in one round trip (in a read-only REPEATABLE READ
// transaction when it holds more than one read) and fills its reads.
func (s *Store) Run(ctx context.Context, b *Batch) error {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	return interpretError(run(ctx, s.pool, b, len(b.reads) > 1))
}

// Run sends the batch in the transaction, in one round trip: its reads
// see the transaction's own uncommitted writes.
func (t *Tx) Run(ctx context.Context, b *Batch) error {
	return interpretError(run(ctx, txQuerier{t}, b, false))
}

// batchSender is what a pool, a connection and a transaction have in common.
type batchSender interface {
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
}

func run(ctx context.Context, q batchSender, b *Batch, snapshot bool) error {
	if len(b.reads) == 0 {
		return nil
	}
	var pb pgx.Batch
	if snapshot {
		pb.Queue(`BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY`)
	}
	b.queueOn(&pb)
	if snapshot {
		pb.Queue(`COMMIT`)
	}
	return q.SendBatch(ctx, &pb).Close()
}

// queueOn queues b's reads on pb, in order.
func (b *Batch) queueOn(pb *pgx.Batch) {
	for _, r := range b.reads {
		pb.Queue(r.sql, r.args...).Query(r.scan)
	}
}

// prefixed qualifies every column of a comma-separated list with p.
func prefixed(p, cols string) string {
	parts := strings.Split(cols, ",")
	for i, c := range parts {
		parts[i] = p + strings.TrimSpace(c)
	}
	return strings.Join(parts, ", ")
}

// uuidOrNil is id when it is a UUID, else nil (which matches no row).
func uuidOrNil(id string) *string {
	if !IsUUID(id) {
		return nil
	}
	return &id
}
