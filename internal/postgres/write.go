package postgres

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/shop/bff/internal/order"
	"github.com/shop/bff/internal/telemetry"
)

// Tx is one transaction that changes orders. Every event it writes is kept
// so that, after commit, the caller can invalidate screens and publish.
//
// Its reads (Run) see its own uncommitted rows: the response of a
// mutation is assembled inside the transaction that wrote it, and needs no
// second connection from the pool. A Tx is used by one goroutine at a time.
type Tx struct {
	pool *pgxpool.Pool
	// conn is the pooled connection the transaction runs on, and tx the
	// transaction on it; both are nil until the transaction's first
	// statement began it, and conn is nil again once it is back in the
	// pool (after the commit or the rollback).
	conn *pgxpool.Conn
	tx   pgx.Tx
	// ended is set once the transaction committed or rolled back.
	ended  bool
	events []order.Event
	// pending are the events of the transaction's changes, written and
	// given their stream positions at Commit.
	pending []*order.Event
	// key is the idempotency record SaveKeyRecord staged, written at
	// Commit.
	key *stagedKey
	// later are writes whose outcome the transaction already knows (see
	// queueLater), sent first in its next round trip.
	later pgx.Batch
}

// stagedKey is an idempotency record waiting for Commit.
type stagedKey struct {
	userID, key string
	rec         KeyRecord
	ttl         time.Duration
}

// Begin starts a transaction. The context's deadline bounds it. No round
// trip is spent on it: BEGIN is sent with the transaction's first batch of
// statements (or just before its first single statement).
func (s *Store) Begin(ctx context.Context) (*Tx, error) {
	return &Tx{pool: s.pool}, nil
}

// errTxEnded is the error of a statement sent after the transaction ended.
var errTxEnded = errors.New("postgres: the transaction has ended")

// begun returns the transaction, beginning it in a round trip of its own
// when no statement has begun it yet, for a statement sent on its own:
// the writes queued for later go first, in a round trip of their own.
func (t *Tx) begun(ctx context.Context) (pgx.Tx, error) {
	if t.ended {
		return nil, errTxEnded
	}
	if len(t.later.QueuedQueries) > 0 {
		if err := t.sendBatch(ctx, &pgx.Batch{}).Close(); err != nil {
			return nil, err
		}
	}
	if t.tx == nil {
		conn, err := t.pool.Acquire(ctx)
		if err != nil {
			return nil, err
		}
		tx, err := conn.Begin(ctx)
		if err != nil {
			conn.Release()
			return nil, err
		}
		t.conn, t.tx = conn, tx
	}
	return t.tx, nil
}

// queryRow runs a statement of the transaction that returns one row.
func (t *Tx) queryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	tx, err := t.begun(ctx)
	if err != nil {
		return errRow{err}
	}
	return tx.QueryRow(ctx, sql, args...)
}

// exec runs a statement of the transaction.
func (t *Tx) exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	tx, err := t.begun(ctx)
	if err != nil {
		return pgconn.CommandTag{}, err
	}
	return tx.Exec(ctx, sql, args...)
}

// sendBatch sends b's statements in the transaction, in one round trip.
// When the transaction has not begun, its BEGIN goes first in that round
// trip (pgx's Batch.BeginTx); the writes queued for later go before b's
// statements, which see their effects. Results are read through the
// statements' callbacks (QueuedQuery.Exec, Query, QueryRow) and Close.
func (t *Tx) sendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults {
	if t.ended {
		return pgx.FailedBatchResults(b, errTxEnded)
	}
	if len(t.later.QueuedQueries) > 0 {
		all := &pgx.Batch{QueuedQueries: append(t.later.QueuedQueries, b.QueuedQueries...)}
		t.later = pgx.Batch{}
		b = all
	}
	if t.tx != nil {
		return t.tx.SendBatch(ctx, b)
	}
	conn, err := t.pool.Acquire(ctx)
	if err != nil {
		return pgx.FailedBatchResults(b, err)
	}
	var first pgx.Batch
	first.BeginTx(pgx.TxOptions{})
	first.QueuedQueries = append(first.QueuedQueries, b.QueuedQueries...)
	br := conn.SendBatch(ctx, &first)
	t.conn = conn // released by Commit or Rollback, whether BEGIN succeeded or not
	if tx := br.Tx(); tx != nil {
		t.tx = tx
	}
	return br
}

// release gives the connection back to the pool: the pool keeps it when
// it is idle outside a transaction, and closes it otherwise.
func (t *Tx) release() {
	t.ended = true
	if t.conn != nil {
		t.conn.Release()
		t.conn = nil
	}
}

// txQuerier runs statements in its transaction, beginning it when needed:
// what code shared with the pool (querier, execQuerier, batchSender) is
// given for a transaction.
type txQuerier struct{ t *Tx }

func (q txQuerier) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	tx, err := q.t.begun(ctx)
	if err != nil {
		return nil, err
	}
	return tx.Query(ctx, sql, args...)
}

func (q txQuerier) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	return q.t.queryRow(ctx, sql, args...)
}

func (q txQuerier) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	return q.t.exec(ctx, sql, args...)
}

func (q txQuerier) SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults {
	return q.t.sendBatch(ctx, b)
}

// errRow is the row of a statement that could not be sent.
type errRow struct{ err error }

// Scan returns the error.
func (r errRow) Scan(...any) error { return r.err }

// Commit writes the staged idempotency record and the transaction's
// events, and commits, in one round trip. The events take their stream
// positions here, at the very end, from a sequence: no global lock is
// held, so transactions commit (and share fsyncs) side by side. Positions
// of one customer follow commit order (each is drawn under the customer's
// row lock, held until the commit); readers hand a position out only once
// every lower one is final (see internal/stream).
//
// A statement of that round trip that fails ends it there: COMMIT is not
// run, and the transaction is rolled back.
func (t *Tx) Commit(ctx context.Context) error {
	if t.ended {
		return errTxEnded
	}
	if t.key == nil && len(t.pending) == 0 && len(t.later.QueuedQueries) == 0 {
		if t.tx == nil {
			t.ended = true
			return nil // no statement: nothing to commit
		}
		err := t.tx.Commit(ctx)
		t.release()
		return interpretError(err)
	}
	var b pgx.Batch
	t.queueLast(&b)
	b.Queue(`COMMIT`).Exec(func(tag pgconn.CommandTag) error {
		if tag.String() != "COMMIT" { // ROLLBACK: the transaction had failed before
			return pgx.ErrTxCommitRollback
		}
		return nil
	})
	err := t.sendBatch(ctx, &b).Close()
	if err != nil {
		t.Rollback(ctx)
		return interpretError(err)
	}
	t.key, t.pending = nil, nil
	// COMMIT ran in the batch: the connection is idle, and pgx's
	// transaction on it is left as it is (ending it would send another
	// COMMIT).
	t.release()
	return nil
}

// queueLast queues the staged idempotency record, then the pending
// events. Each event insert first locks the customer's row (taking the
// customer's next sequence number), then draws the position: the
// transaction holds an id before it draws, which the readers' horizon
// relies on.
func (t *Tx) queueLast(b *pgx.Batch) {
	if t.key != nil {
		queueKeyRecord(b, *t.key)
	}
	for _, p := range t.pending {
		var fromS *string
		if p.FromStatus != nil {
			v := string(*p.FromStatus)
			fromS = &v
		}
		// The row is made once s has been read (the customer's row locked),
		// so the position (the column's default) is drawn after. Without
		// the customer's row, customer_seq is NULL and the insert fails in
		// Postgres (NOT NULL), before the COMMIT of its round trip.
		b.Queue(`WITH s AS (UPDATE users SET event_seq = event_seq + 1 WHERE id = $1::uuid RETURNING event_seq)
			INSERT INTO order_events
			(customer_id, customer_seq, order_id, type, from_status, to_status, version, actor, status, payment_status, reason)
			SELECT $1::uuid, s.event_seq, $2::uuid, $3, $4, $5, $6, $7, $5, $8, $9 FROM (VALUES (1)) one LEFT JOIN s ON true
			RETURNING `+eventCols, p.CustomerID, p.OrderID, string(p.Type), fromS, string(p.ToStatus), p.Version, p.Actor, string(p.PaymentStatus), p.Reason).
			QueryRow(func(row pgx.Row) error {
				e, err := scanEvent(row)
				if err != nil {
					return err
				}
				*p = *e
				t.events = append(t.events, *e)
				return nil
			})
	}
}

// Rollback rolls the transaction back; after Commit it does nothing.
func (t *Tx) Rollback(ctx context.Context) {
	if t.ended {
		return
	}
	if t.tx != nil && t.conn.Conn().PgConn().TxStatus() != 'I' {
		_ = t.tx.Rollback(context.WithoutCancel(ctx))
	}
	t.later = pgx.Batch{}
	t.release()
}

// queueLater queues a write whose outcome the transaction already knows,
// such as an update of a row it has locked and read, to be sent at the
// front of its next round trip (the commit's, when nothing else follows)
// instead of a round trip of its own. Every statement sent after it sees
// its effect; its failure (as the callback set on the returned statement
// reports it) fails that round trip, and a round trip that commits stops
// before its COMMIT.
func (t *Tx) queueLater(sql string, args ...any) *pgx.QueuedQuery {
	return t.later.Queue(sql, args...)
}

// Events returns the events written in this transaction, in order, once
// it has committed.
func (t *Tx) Events() []order.Event { return t.events }

// InTx runs fn in a transaction and commits it when fn returns nil. It
// returns the events written.
func (s *Store) InTx(ctx context.Context, fn func(*Tx) error) ([]order.Event, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	tx, err := s.Begin(ctx)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback(ctx)
	if err := fn(tx); err != nil {
		return nil, err
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, err
	}
	return tx.Events(), nil
}

// appendEvent records the event of a change of o (o holds the state
// after it). The event is written, and its position, id and time filled
// in, when the transaction commits (see Commit); the returned event is
// complete once Commit has returned.
func (t *Tx) appendEvent(o *order.Order, typ order.EventType, from *order.Status, actor string) *order.Event {
	e := &order.Event{CustomerID: o.CustomerID, OrderID: o.ID, Type: typ, FromStatus: from, ToStatus: o.Status,
		Version: o.Version, Actor: actor, Status: o.Status, PaymentStatus: o.PaymentStatus}
	t.pending = append(t.pending, e)
	return e
}

// PlaceOrderInput is a validated order request (see order.ValidateLines,
// order.ValidateAddress and order.ValidateCurrency).
type PlaceOrderInput struct {
	Lines    []order.LineInput
	Address  order.Address
	Currency string
}

// PlaceOrder prices the lines from the catalogue (never from the client),
// creates the order at version 1 and writes ORDER_PLACED.
func (t *Tx) PlaceOrder(ctx context.Context, customer *order.User, in PlaceOrderInput) (*order.Order, error) {
	ids := make([]string, len(in.Lines))
	for i, l := range in.Lines {
		ids[i] = l.ProductID
	}
	products, err := productsByIDs(ctx, txQuerier{t}, ids)
	if err != nil {
		return nil, err
	}
	lines, total, verr := order.PriceLines(in.Lines, products, in.Currency)
	if verr != nil {
		return nil, verr
	}
	a := in.Address
	o, err := scanOrder(t.queryRow(ctx, `INSERT INTO orders AS o (customer_id, status, payment_status, total_cents, currency,
		ship_name, ship_line1, ship_line2, ship_city, ship_postal_code, ship_country)
		VALUES ($1::uuid, 'PENDING_PAYMENT', 'UNPAID', $2, $3, $4, $5, $6, $7, $8, $9)
		RETURNING `+orderCols, customer.ID, total.Cents, total.Currency, a.Name, a.Line1, a.Line2, a.City, a.PostalCode, a.Country))
	if err != nil {
		return nil, interpretError(err)
	}
	batch := &pgx.Batch{}
	for i, l := range lines {
		batch.Queue(`INSERT INTO order_lines (order_id, line_no, product_id, quantity, unit_price_cents, currency)
			VALUES ($1::uuid, $2, $3::uuid, $4, $5, $6)`, o.ID, i+1, l.ProductID, l.Quantity, l.UnitPrice.Cents, l.UnitPrice.Currency)
	}
	if err := t.sendBatch(ctx, batch).Close(); err != nil {
		return nil, interpretError(err)
	}
	t.appendEvent(o, order.EventOrderPlaced, nil, customer.ID)
	return o, nil
}

// Change describes an action on an existing order by a viewer.
type Change struct {
	Viewer          *order.User
	OrderID         string
	ExpectedVersion int
	Action          order.Action
	// Address is the new address for UPDATE_SHIPPING_ADDRESS.
	Address *order.Address
	// TrackingNumber is set by SHIP.
	TrackingNumber string
	// Reason is CANCEL's optional reason (see order.ValidateReason), kept
	// with the ORDER_CANCELLED event.
	Reason *string
	// With, when set, holds reads sent in the round trip of the order's
	// locking read, after it: they see the order's rows as they were
	// before the change (a change does not alter its lines or customer).
	With *Batch
}

// ChangeOrder applies c under the order's row lock, in the order of checks
// of concurrency.md: not visible → NOT_FOUND; role → FORBIDDEN; stale
// version → CONFLICT; illegal now → INVALID_TRANSITION. On success the
// version is incremented by one and exactly one event is written; PAY also
// queues a charge job in the same transaction.
func (t *Tx) ChangeOrder(ctx context.Context, c Change) (*order.Order, error) {
	if !IsUUID(c.OrderID) {
		return nil, order.NotFound("order")
	}
	var o *order.Order
	var now time.Time
	var b pgx.Batch
	b.Queue(`SELECT `+orderCols+` FROM orders o WHERE o.id = $1::uuid FOR UPDATE`, c.OrderID).
		QueryRow(func(row pgx.Row) (err error) {
			o, err = scanOrder(row)
			return err
		})
	// The transaction's time: the updated_at the change writes.
	b.Queue(`SELECT now()`).QueryRow(func(row pgx.Row) error { return row.Scan(&now) })
	if c.With != nil {
		c.With.queueOn(&b)
	}
	if err := t.sendBatch(ctx, &b).Close(); err != nil {
		return nil, notFoundAs(interpretError(err), "order")
	}
	if !order.CanSee(c.Viewer, o) {
		return nil, order.NotFound("order")
	}
	out, roleOK, ok := order.Transition(o.Status, o.PaymentStatus, c.Viewer.Role, c.Action)
	if !roleOK {
		return nil, order.Forbidden(string(c.Action) + " is not allowed for role " + string(c.Viewer.Role))
	}
	if o.Version != c.ExpectedVersion {
		return nil, order.Conflict(o)
	}
	if !ok {
		return nil, order.InvalidTransition(c.Action, o, order.AvailableActions(o.Status, o.PaymentStatus, c.Viewer.Role))
	}
	// The row is locked and read: the change's outcome is known here, and
	// its writes go with the transaction's next round trip (the commit's).
	n := *o
	n.Status, n.PaymentStatus, n.Version, n.UpdatedAt = out.Status, out.PaymentStatus, o.Version+1, now
	if c.Address != nil {
		n.Address = *c.Address
	}
	if c.Action == order.ActionShip {
		n.TrackingNumber = &c.TrackingNumber
	}
	attemptInc := 0
	if c.Action == order.ActionPay {
		attemptInc = 1
	}
	a := n.Address
	t.queueLater(`UPDATE orders o SET status = $2, payment_status = $3, version = $4,
		ship_name = $5, ship_line1 = $6, ship_line2 = $7, ship_city = $8, ship_postal_code = $9, ship_country = $10,
		tracking_number = $11, payment_attempt = payment_attempt + $12, updated_at = now()
		WHERE o.id = $1::uuid AND o.version = $13`, n.ID, string(n.Status), string(n.PaymentStatus), n.Version,
		a.Name, a.Line1, a.Line2, a.City, a.PostalCode, a.Country, n.TrackingNumber, attemptInc, o.Version).
		Exec(func(tag pgconn.CommandTag) error {
			if tag.RowsAffected() != 1 { // cannot happen under the row lock; kept as a guard
				return order.Conflict(o)
			}
			return nil
		})
	if c.Action == order.ActionPay {
		// The job carries the request's trace context: the worker's span
		// continues the trace of the payOrder that queued it.
		t.queueLater(`INSERT INTO charge_jobs (order_id, attempt, amount_cents, currency, traceparent)
			SELECT id, payment_attempt, total_cents, currency, nullif($2, '') FROM orders WHERE id = $1::uuid`,
			n.ID, telemetry.TraceParent(ctx))
	}
	from := o.Status
	e := t.appendEvent(&n, out.Event, &from, c.Viewer.ID)
	if c.Action == order.ActionCancel {
		e.Reason = c.Reason
	}
	return &n, nil
}

// PaymentResult is a provider's result for an order's payment.
type PaymentResult struct {
	// EventID is the provider's event id, the dedupe key.
	EventID     string
	Type        string
	OrderID     string
	ChargeID    string
	AmountCents int64
	Currency    string
	Succeeded   bool
}

// ApplyPaymentResult records the provider event (dedupe by id) and applies
// the result, in one transaction. applied is false for a duplicate event
// or a payment that is no longer PROCESSING (nothing changes). An unknown
// order is NOT_FOUND and an amount or currency that differs from the
// order's total BAD_USER_INPUT; neither is recorded.
func (s *Store) ApplyPaymentResult(ctx context.Context, r PaymentResult) (*order.Event, bool, error) {
	var ev *order.Event
	applied := false
	_, err := s.InTx(ctx, func(t *Tx) error {
		if !IsUUID(r.OrderID) {
			return order.NotFound("order")
		}
		tag, err := t.exec(ctx, `INSERT INTO webhook_events (provider_event_id, type, order_id, applied)
			VALUES ($1, $2, $3::uuid, false) ON CONFLICT DO NOTHING`, r.EventID, r.Type, r.OrderID)
		if err != nil {
			return interpretError(err)
		}
		if tag.RowsAffected() == 0 {
			return nil // duplicate delivery
		}
		o, err := scanOrder(t.queryRow(ctx, `SELECT `+orderCols+` FROM orders o WHERE o.id = $1::uuid FOR UPDATE`, r.OrderID))
		if err != nil {
			return notFoundAs(interpretError(err), "order")
		}
		if o.Total.Cents != r.AmountCents || o.Total.Currency != r.Currency {
			return order.BadInput("data.amountCents", order.ConstraintRange, "amount or currency differs from the order total")
		}
		out, ok := order.PaymentResult(o.Status, o.PaymentStatus, r.Succeeded)
		if !ok {
			return nil // late or duplicate result: acknowledged, no effect
		}
		if ev, err = t.applyProviderOutcome(ctx, o, out, &r.ChargeID); err != nil {
			return err
		}
		applied = true
		_, err = t.exec(ctx, `UPDATE webhook_events SET applied = true WHERE provider_event_id = $1`, r.EventID)
		return interpretError(err)
	})
	if err != nil {
		return nil, false, err
	}
	return ev, applied, nil
}

// MarkPaymentFailed records PAYMENT_FAILED for an order whose charge could
// not be sent, if its payment is still PROCESSING for that attempt. It
// returns nil when nothing changed.
func (s *Store) MarkPaymentFailed(ctx context.Context, orderID string, attempt int) (*order.Event, error) {
	var ev *order.Event
	_, err := s.InTx(ctx, func(t *Tx) error {
		var cur int
		o, err := scanOrder(t.queryRow(ctx, `SELECT `+orderCols+` FROM orders o WHERE o.id = $1::uuid FOR UPDATE`, orderID))
		if err != nil {
			return notFoundAs(interpretError(err), "order")
		}
		if err := t.queryRow(ctx, `SELECT payment_attempt FROM orders WHERE id = $1::uuid`, orderID).Scan(&cur); err != nil {
			return interpretError(err)
		}
		out, ok := order.PaymentResult(o.Status, o.PaymentStatus, false)
		if !ok || cur != attempt {
			return nil
		}
		ev, err = t.applyProviderOutcome(ctx, o, out, nil)
		return err
	})
	return ev, err
}

// applyProviderOutcome writes a payment outcome on the locked order o.
func (t *Tx) applyProviderOutcome(ctx context.Context, o *order.Order, out order.Outcome, chargeID *string) (*order.Event, error) {
	from := o.Status
	n, err := scanOrder(t.queryRow(ctx, `UPDATE orders o SET status = $2, payment_status = $3, version = version + 1,
		charge_id = coalesce($4, charge_id), updated_at = now() WHERE o.id = $1::uuid RETURNING `+orderCols,
		o.ID, string(out.Status), string(out.PaymentStatus), chargeID))
	if err != nil {
		return nil, interpretError(err)
	}
	return t.appendEvent(n, out.Event, &from, order.ActorProvider), nil
}

// KeyRecord is a stored idempotency record: the response of the first
// request made with a key.
type KeyRecord struct {
	Fingerprint []byte
	Status      int
	Body        []byte
}

// ClaimKey takes the transaction-scoped advisory lock of (user, key)
// without waiting and reads the key's live record, pipelined in one round
// trip. locked false means another request holds the lock (in flight);
// the record is then not read. rec is nil when the key has no live
// record. The read runs after the lock was taken, as its own statement,
// so it sees every record committed by an earlier holder of the lock.
func (t *Tx) ClaimKey(ctx context.Context, userID, key string) (locked bool, rec *KeyRecord, err error) {
	var b pgx.Batch
	b.Queue(`SELECT pg_try_advisory_xact_lock(hashtextextended($1 || ':' || $2, 7))`, userID, key).
		QueryRow(func(row pgx.Row) error { return row.Scan(&locked) })
	b.Queue(`SELECT fingerprint, status, body FROM idempotency_keys
		WHERE user_id = $1::uuid AND key = $2 AND expires_at > now()`, userID, key).
		Query(func(rows pgx.Rows) error {
			for rows.Next() {
				var r KeyRecord
				if err := rows.Scan(&r.Fingerprint, &r.Status, &r.Body); err != nil {
					return err
				}
				rec = &r
			}
			return rows.Err()
		})
	if err := t.sendBatch(ctx, &b).Close(); err != nil {
		return false, nil, interpretError(err)
	}
	if !locked {
		return false, nil, nil
	}
	return true, rec, nil
}

// SaveKeyRecord stores the response of (user, key) now, replacing an
// expired record of the same key, to live for ttl. A live record of the
// key is never overwritten: finding one is an error, so that the
// transaction rolls back rather than commit an effect whose key records
// another.
func (t *Tx) SaveKeyRecord(ctx context.Context, userID, key string, r KeyRecord, ttl time.Duration) error {
	var b pgx.Batch
	queueKeyRecord(&b, stagedKey{userID: userID, key: key, rec: r, ttl: ttl})
	return interpretError(t.sendBatch(ctx, &b).Close())
}

// SaveKeyRecordAtCommit is SaveKeyRecord done by Commit, in the round
// trip that writes the transaction's events; Commit fails when it fails.
func (t *Tx) SaveKeyRecordAtCommit(userID, key string, r KeyRecord, ttl time.Duration) {
	t.key = &stagedKey{userID: userID, key: key, rec: r, ttl: ttl}
}

// queueKeyRecord queues the insert of k (see SaveKeyRecord): an expired
// record of the key is deleted first, and a live one makes the insert
// fail in Postgres (a unique violation), so that a round trip that also
// commits stops before its COMMIT.
func queueKeyRecord(b *pgx.Batch, k stagedKey) {
	b.Queue(`DELETE FROM idempotency_keys WHERE user_id = $1::uuid AND key = $2 AND expires_at <= now()`, k.userID, k.key)
	b.Queue(`INSERT INTO idempotency_keys (user_id, key, fingerprint, status, body, expires_at)
		VALUES ($1::uuid, $2, $3, $4, $5, now() + $6::interval)`, k.userID, k.key, k.rec.Fingerprint, k.rec.Status, k.rec.Body, k.ttl)
}

// DeleteExpiredKeys deletes up to batch expired idempotency records and
// returns how many it deleted.
func (s *Store) DeleteExpiredKeys(ctx context.Context, batch int) (int64, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	tag, err := s.pool.Exec(ctx, `DELETE FROM idempotency_keys WHERE ctid IN (
		SELECT ctid FROM idempotency_keys WHERE expires_at <= now() LIMIT $1)`, batch)
	return tag.RowsAffected(), interpretError(err)
}

type txKey struct{}

// WithTx returns ctx carrying tx: store writes made through the shop run
// in it, and its owner commits and publishes.
func WithTx(ctx context.Context, tx *Tx) context.Context { return context.WithValue(ctx, txKey{}, tx) }

// TxFrom returns the transaction of ctx, if any.
func TxFrom(ctx context.Context) (*Tx, bool) {
	tx, ok := ctx.Value(txKey{}).(*Tx)
	return tx, ok
}
