package postgres

import (
	"context"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/shop/bff/internal/order"
)

// Scope says whose orders a list covers: one customer's, or (for staff)
// everyone's when CustomerID is empty.
type Scope struct {
	CustomerID string
}

// ScopeFor is the scope of what viewer u may see.
func ScopeFor(u *order.User) Scope {
	return Scope{CustomerID: order.VisibleCustomer(u)}
}

const userCols = `id::text, name, email, role`

func scanUser(row pgx.Row) (*order.User, error) {
	var u order.User
	var role string
	if err := row.Scan(&u.ID, &u.Name, &u.Email, &role); err != nil {
		return nil, err
	}
	u.Role = order.Role(role)
	return &u, nil
}

// UserByID returns the user with id, or NOT_FOUND.
func (s *Store) UserByID(ctx context.Context, id string) (*order.User, error) {
	if !IsUUID(id) {
		return nil, order.NotFound("user")
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	u, err := scanUser(s.pool.QueryRow(ctx, `SELECT `+userCols+` FROM users WHERE id = $1::uuid`, id))
	if err != nil {
		return nil, notFoundAs(interpretError(err), "user")
	}
	return u, nil
}

// UserByEmail returns the user with email, or NOT_FOUND.
func (s *Store) UserByEmail(ctx context.Context, email string) (*order.User, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	u, err := scanUser(s.pool.QueryRow(ctx, `SELECT `+userCols+` FROM users WHERE lower(email) = lower($1)`, email))
	if err != nil {
		return nil, notFoundAs(interpretError(err), "user")
	}
	return u, nil
}

const productCols = `id::text, sku, name, price_cents, currency, image_url`

func scanProduct(row pgx.Row) (*order.Product, error) {
	var p order.Product
	if err := row.Scan(&p.ID, &p.SKU, &p.Name, &p.Price.Cents, &p.Price.Currency, &p.ImageURL); err != nil {
		return nil, err
	}
	return &p, nil
}

func productsByIDs(ctx context.Context, q querier, ids []string) (map[string]*order.Product, error) {
	rows, err := q.Query(ctx, `SELECT `+productCols+` FROM products WHERE id = ANY($1::uuid[])`, uuids(ids))
	if err != nil {
		return nil, interpretError(err)
	}
	defer rows.Close()
	out := make(map[string]*order.Product, len(ids))
	for rows.Next() {
		p, err := scanProduct(rows)
		if err != nil {
			return nil, interpretError(err)
		}
		out[p.ID] = p
	}
	return out, interpretError(rows.Err())
}

// Products returns a page of the catalogue in SKU order, after the SKU
// cursor afterSKU (empty for the first page), and whether more follow.
func (s *Store) Products(ctx context.Context, first int, afterSKU string) ([]*order.Product, bool, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	rows, err := s.pool.Query(ctx, `SELECT `+productCols+` FROM products WHERE sku > $1 ORDER BY sku LIMIT $2`, afterSKU, first+1)
	if err != nil {
		return nil, false, interpretError(err)
	}
	defer rows.Close()
	var out []*order.Product
	for rows.Next() {
		p, err := scanProduct(rows)
		if err != nil {
			return nil, false, interpretError(err)
		}
		out = append(out, p)
	}
	if err := rows.Err(); err != nil {
		return nil, false, interpretError(err)
	}
	more := len(out) > first
	if more {
		out = out[:first]
	}
	return out, more, nil
}

// querier is what a pool and a transaction have in common.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

const orderCols = `o.id::text, o.number, o.customer_id::text, o.status, o.payment_status, o.version,
	o.total_cents, o.currency, o.ship_name, o.ship_line1, o.ship_line2, o.ship_city,
	o.ship_postal_code, o.ship_country, o.tracking_number, o.created_at, o.updated_at`

func scanOrder(row pgx.Row) (*order.Order, error) {
	var o order.Order
	var st, ps string
	if err := row.Scan(&o.ID, &o.Number, &o.CustomerID, &st, &ps, &o.Version,
		&o.Total.Cents, &o.Total.Currency, &o.Address.Name, &o.Address.Line1, &o.Address.Line2,
		&o.Address.City, &o.Address.PostalCode, &o.Address.Country, &o.TrackingNumber,
		&o.CreatedAt, &o.UpdatedAt); err != nil {
		return nil, err
	}
	o.Status, o.PaymentStatus = order.Status(st), order.PaymentStatus(ps)
	return &o, nil
}

func collectOrders(rows pgx.Rows, err error) ([]*order.Order, error) {
	if err != nil {
		return nil, interpretError(err)
	}
	defer rows.Close()
	var out []*order.Order
	for rows.Next() {
		o, err := scanOrder(rows)
		if err != nil {
			return nil, interpretError(err)
		}
		out = append(out, o)
	}
	return out, interpretError(rows.Err())
}

// OrdersByIDs returns the orders with the given ids, keyed by id.
func (s *Store) OrdersByIDs(ctx context.Context, ids []string) (map[string]*order.Order, error) {
	var b Batch
	page := b.Orders(OrderSet{IDs: ids})
	if err := s.Run(ctx, &b); err != nil {
		return nil, err
	}
	out := make(map[string]*order.Order, len(page.Value().Orders))
	for _, o := range page.Value().Orders {
		out[o.ID] = o
	}
	return out, nil
}

// OrderCursor is a keyset position in the newest-first order list.
type OrderCursor struct {
	CreatedAt time.Time
	ID        string
}

func scopeArg(sc Scope) *string {
	if sc.CustomerID == "" {
		return nil
	}
	return &sc.CustomerID
}

// Summary is the aggregate part of the home and orders screens.
type Summary struct {
	// Counts holds the number of orders per status that has orders.
	Counts map[order.Status]int
	// LifetimeSpend sums the totals of non-cancelled orders, per currency.
	LifetimeSpend map[string]int64
}

// eventCols are the columns scanEventRow reads, in its order.
const eventCols = `position, customer_seq, customer_id::text, order_id::text, type, from_status, to_status,
	version, at, actor, status, payment_status, reason`

// scanEventRow reads one row of eventCols, then the extra destinations.
func scanEventRow(row pgx.Row, extra ...any) (order.Event, error) {
	var e order.Event
	var from *string
	var typ, to, st, ps string
	dest := append([]any{&e.Position, &e.CustomerSeq, &e.CustomerID, &e.OrderID, &typ, &from, &to,
		&e.Version, &e.At, &e.Actor, &st, &ps, &e.Reason}, extra...)
	if err := row.Scan(dest...); err != nil {
		return e, err
	}
	e.ID = strconv.FormatInt(e.Position, 10)
	e.Type, e.ToStatus, e.Status, e.PaymentStatus = order.EventType(typ), order.Status(to), order.Status(st), order.PaymentStatus(ps)
	if from != nil {
		f := order.Status(*from)
		e.FromStatus = &f
	}
	e.At = e.At.UTC()
	return e, nil
}

func scanEvent(row pgx.Row) (*order.Event, error) {
	e, err := scanEventRow(row)
	if err != nil {
		return nil, err
	}
	return &e, nil
}

func collectEvents(rows pgx.Rows, err error) ([]order.Event, error) {
	if err != nil {
		return nil, interpretError(err)
	}
	defer rows.Close()
	var out []order.Event
	for rows.Next() {
		e, err := scanEvent(rows)
		if err != nil {
			return nil, interpretError(err)
		}
		out = append(out, *e)
	}
	return out, interpretError(rows.Err())
}

// Timeline returns the events of an order, oldest first.
func (s *Store) Timeline(ctx context.Context, orderID string) ([]order.Event, error) {
	var b Batch
	tl := b.Timeline(orderID)
	if err := s.Run(ctx, &b); err != nil {
		return nil, err
	}
	return tl.Value(), nil
}

// EventsAfter returns up to limit events of scope (and of orderID, when set)
// with a position greater than after, in position (commit) order.
func (s *Store) EventsAfter(ctx context.Context, sc Scope, orderID string, after int64, limit int) ([]order.Event, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	oid, ok := orderArg(orderID)
	if !ok {
		return nil, nil
	}
	w := eventsAfter(sc, oid, after)
	return collectEvents(s.pool.Query(ctx, `SELECT `+eventCols+` FROM order_events
		WHERE `+w.String()+` ORDER BY position LIMIT `+w.arg(limit), w.args...))
}

// CommittedPositionsAfter returns up to limit positions of the committed
// events of scope (and of orderID, when set) after position after, in
// position order: what a stream opened now without a resume point must
// not deliver, although its broker has not handed it out yet.
func (s *Store) CommittedPositionsAfter(ctx context.Context, sc Scope, orderID string, after int64, limit int) ([]int64, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	oid, ok := orderArg(orderID)
	if !ok {
		return nil, nil
	}
	w := eventsAfter(sc, oid, after)
	rows, err := s.pool.Query(ctx, `SELECT position FROM order_events
		WHERE `+w.String()+` ORDER BY position LIMIT `+w.arg(limit), w.args...)
	if err != nil {
		return nil, interpretError(err)
	}
	pos, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	return pos, interpretError(err)
}

// eventsAfter is the condition on the events of scope (and of the order
// orderID points to, when not nil) after position after.
func eventsAfter(sc Scope, orderID *string, after int64) *where {
	w := &where{}
	w.and(`position > ` + w.arg(after))
	w.scope("customer_id", sc)
	if orderID != nil {
		w.and(`order_id = ` + w.arg(*orderID) + `::uuid`)
	}
	return w
}

// orderArg is the argument of an optional order filter: nil for "" (every
// order of the scope), false for an id that cannot exist.
func orderArg(orderID string) (*string, bool) {
	if orderID == "" {
		return nil, true
	}
	return &orderID, IsUUID(orderID)
}

// notFoundAs renames a NOT_FOUND error after what was missing.
func notFoundAs(err error, what string) error {
	if order.ErrorCode(err) == order.CodeNotFound {
		return order.NotFound(what)
	}
	return err
}

// uuids keeps the ids that are well-formed UUIDs: anything else cannot
// exist, and must not reach Postgres as a malformed value.
func uuids(ids []string) []string {
	out := make([]string, 0, len(ids))
	for _, id := range ids {
		if IsUUID(id) {
			out = append(out, id)
		}
	}
	return out
}

// IsUUID reports whether s is a canonical, hyphenated UUID.
func IsUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < 36; i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
				return false
			}
		}
	}
	return true
}
