package postgres

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/shop/bff/internal/order"
)

// The SQL of outbound webhooks (internal/webhooks): endpoints, the
// deliveries outbox (written by the trigger of migration 00003 in the
// transaction of every event), the attempts and the worker's claims.

// WebhookEndpoint is a registered receiver of order events.
type WebhookEndpoint struct {
	ID          string
	URL         string
	Description string
	// EventTypes are the order event types it receives.
	EventTypes     []order.EventType
	Enabled        bool
	DisabledReason *string
	FailingSince   *time.Time
	// Secret signs deliveries; PreviousSecret too, until PreviousExpiresAt.
	Secret            string
	PreviousSecret    *string
	PreviousExpiresAt *time.Time
	CreatedAt         time.Time
	UpdatedAt         time.Time
}

// Secrets are the secrets that sign a delivery now: the current one, and
// the previous one while its rotation overlap lasts.
func (e *WebhookEndpoint) Secrets(now time.Time) []string {
	out := []string{e.Secret}
	if e.PreviousSecret != nil && e.PreviousExpiresAt != nil && now.Before(*e.PreviousExpiresAt) {
		out = append(out, *e.PreviousSecret)
	}
	return out
}

// Delivery states (webhook_deliveries.state).
const (
	DeliveryPending   = "pending"
	DeliveryDelivered = "delivered"
	DeliveryFailed    = "failed"
	DeliveryDead      = "dead"
)

// WebhookDelivery is one event to send to one endpoint.
type WebhookDelivery struct {
	ID            int64
	EndpointID    string
	OrderID       string
	OrderVersion  int
	EventType     order.EventType
	EventAt       time.Time
	State         string
	Attempts      int
	NextAttemptAt *time.Time // pending only
	LastStatus    *int
	LastError     *string
	CreatedAt     time.Time
	DeliveredAt   *time.Time
	// EventID is the event's id (the webhook-id), "" when the event is no
	// longer kept.
	EventID string
	// Log holds the attempts, oldest first (filled by WebhookDeliveries).
	Log []WebhookAttempt
}

// WebhookAttempt is one send of a delivery.
type WebhookAttempt struct {
	Attempt  int
	At       time.Time
	Status   *int
	Error    *string
	Duration time.Duration
}

// execQuerier is what both a pool and a transaction offer.
type execQuerier interface {
	querier
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// q returns the request's transaction when ctx carries one (a mutation run
// by the idempotency keeper: the change commits with the key's record),
// else the pool; release ends its use.
func (s *Store) q(ctx context.Context) (q execQuerier, release func()) {
	if t, ok := TxFrom(ctx); ok {
		return txQuerier{t}, func() {}
	}
	return s.pool, func() {}
}

const endpointCols = `id::text, url, description, event_types, enabled, disabled_reason, failing_since,
	secret, previous_secret, previous_expires_at, created_at, updated_at`

func scanEndpoint(row pgx.Row) (*WebhookEndpoint, error) {
	var e WebhookEndpoint
	var types []string
	if err := row.Scan(&e.ID, &e.URL, &e.Description, &types, &e.Enabled, &e.DisabledReason, &e.FailingSince,
		&e.Secret, &e.PreviousSecret, &e.PreviousExpiresAt, &e.CreatedAt, &e.UpdatedAt); err != nil {
		return nil, err
	}
	for _, t := range types {
		e.EventTypes = append(e.EventTypes, order.EventType(t))
	}
	return &e, nil
}

func typeNames(ts []order.EventType) []string {
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = string(t)
	}
	return out
}

// NewWebhookEndpoint is a validated endpoint registration.
type NewWebhookEndpoint struct {
	URL         string
	Description string
	EventTypes  []order.EventType
	Secret      string
}

// CreateWebhookEndpoint registers an endpoint; it receives the events
// committed from now on.
func (s *Store) CreateWebhookEndpoint(ctx context.Context, in NewWebhookEndpoint) (*WebhookEndpoint, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	q, release := s.q(ctx)
	defer release()
	e, err := scanEndpoint(q.QueryRow(ctx, `INSERT INTO webhook_endpoints (url, description, event_types, secret)
		VALUES ($1, $2, $3, $4) RETURNING `+endpointCols, in.URL, in.Description, typeNames(in.EventTypes), in.Secret))
	return e, interpretError(err)
}

// WebhookEndpoints lists the endpoints, oldest first.
func (s *Store) WebhookEndpoints(ctx context.Context) ([]*WebhookEndpoint, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	q, release := s.q(ctx)
	defer release()
	rows, err := q.Query(ctx, `SELECT `+endpointCols+` FROM webhook_endpoints ORDER BY created_at, id`)
	if err != nil {
		return nil, interpretError(err)
	}
	defer rows.Close()
	var out []*WebhookEndpoint
	for rows.Next() {
		e, err := scanEndpoint(rows)
		if err != nil {
			return nil, interpretError(err)
		}
		out = append(out, e)
	}
	return out, interpretError(rows.Err())
}

// WebhookEndpoint returns the endpoint with id, or NOT_FOUND.
func (s *Store) WebhookEndpoint(ctx context.Context, id string) (*WebhookEndpoint, error) {
	if !IsUUID(id) {
		return nil, order.NotFound("webhook endpoint")
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	q, release := s.q(ctx)
	defer release()
	e, err := scanEndpoint(q.QueryRow(ctx, `SELECT `+endpointCols+` FROM webhook_endpoints WHERE id = $1::uuid`, id))
	return e, notFoundAs(interpretError(err), "webhook endpoint")
}

// WebhookEndpointPatch changes an endpoint; nil fields stay as they are.
type WebhookEndpointPatch struct {
	URL         *string
	Description *string
	EventTypes  []order.EventType
	// Enabled true also clears the reason of an automatic disabling and
	// the failure streak.
	Enabled *bool
}

// UpdateWebhookEndpoint applies p to the endpoint with id.
func (s *Store) UpdateWebhookEndpoint(ctx context.Context, id string, p WebhookEndpointPatch) (*WebhookEndpoint, error) {
	if !IsUUID(id) {
		return nil, order.NotFound("webhook endpoint")
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	q, release := s.q(ctx)
	defer release()
	var types []string
	if p.EventTypes != nil {
		types = typeNames(p.EventTypes)
	}
	e, err := scanEndpoint(q.QueryRow(ctx, `UPDATE webhook_endpoints SET
		url = coalesce($2, url), description = coalesce($3, description), event_types = coalesce($4, event_types),
		enabled = coalesce($5, enabled),
		disabled_reason = CASE WHEN $5 THEN NULL ELSE disabled_reason END,
		failing_since = CASE WHEN $5 AND NOT enabled THEN NULL ELSE failing_since END,
		updated_at = now()
		WHERE id = $1::uuid RETURNING `+endpointCols, id, p.URL, p.Description, types, p.Enabled))
	return e, notFoundAs(interpretError(err), "webhook endpoint")
}

// RotateWebhookSecret makes secret the endpoint's signing secret; the
// current one keeps signing too for overlap.
func (s *Store) RotateWebhookSecret(ctx context.Context, id, secret string, overlap time.Duration) (*WebhookEndpoint, error) {
	if !IsUUID(id) {
		return nil, order.NotFound("webhook endpoint")
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	q, release := s.q(ctx)
	defer release()
	e, err := scanEndpoint(q.QueryRow(ctx, `UPDATE webhook_endpoints SET previous_secret = secret,
		previous_expires_at = now() + $3::interval, secret = $2, updated_at = now()
		WHERE id = $1::uuid RETURNING `+endpointCols, id, secret, overlap))
	return e, notFoundAs(interpretError(err), "webhook endpoint")
}

// DeleteWebhookEndpoint deletes the endpoint with id and its deliveries;
// a send in flight finishes, but nothing is sent after it.
func (s *Store) DeleteWebhookEndpoint(ctx context.Context, id string) error {
	if !IsUUID(id) {
		return order.NotFound("webhook endpoint")
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	q, release := s.q(ctx)
	defer release()
	tag, err := q.Exec(ctx, `DELETE FROM webhook_endpoints WHERE id = $1::uuid`, id)
	if err != nil {
		return interpretError(err)
	}
	if tag.RowsAffected() == 0 {
		return order.NotFound("webhook endpoint")
	}
	return nil
}

const deliveryCols = `d.id, d.endpoint_id::text, d.order_id::text, d.order_version, d.event_type, d.event_at, d.state,
	d.attempts, d.next_attempt_at, d.last_status, d.last_error, d.created_at, d.delivered_at,
	coalesce((SELECT ev.position::text FROM order_events ev WHERE ev.order_id = d.order_id AND ev.version = d.order_version), '')`

func scanDelivery(row pgx.Row) (*WebhookDelivery, error) {
	var d WebhookDelivery
	var typ string
	var next time.Time
	if err := row.Scan(&d.ID, &d.EndpointID, &d.OrderID, &d.OrderVersion, &typ, &d.EventAt, &d.State,
		&d.Attempts, &next, &d.LastStatus, &d.LastError, &d.CreatedAt, &d.DeliveredAt, &d.EventID); err != nil {
		return nil, err
	}
	d.EventType = order.EventType(typ)
	if d.State == DeliveryPending {
		d.NextAttemptAt = &next
	}
	return &d, nil
}

// WebhookDeliveries returns up to first deliveries of an endpoint with id
// below before (0: from the newest), newest first, in state (""; any),
// with their attempts, and whether more follow.
func (s *Store) WebhookDeliveries(ctx context.Context, endpointID, state string, first int, before int64) ([]*WebhookDelivery, bool, error) {
	if !IsUUID(endpointID) {
		return nil, false, order.NotFound("webhook endpoint")
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	q, release := s.q(ctx)
	defer release()
	var exists bool
	if err := q.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM webhook_endpoints WHERE id = $1::uuid)`, endpointID).Scan(&exists); err != nil {
		return nil, false, interpretError(err)
	}
	if !exists {
		return nil, false, order.NotFound("webhook endpoint")
	}
	rows, err := q.Query(ctx, `SELECT `+deliveryCols+` FROM webhook_deliveries d
		WHERE d.endpoint_id = $1::uuid AND ($2 = '' OR d.state = $2) AND ($3 = 0 OR d.id < $3)
		ORDER BY d.id DESC LIMIT $4`, endpointID, state, before, first+1)
	if err != nil {
		return nil, false, interpretError(err)
	}
	var out []*WebhookDelivery
	for rows.Next() {
		d, err := scanDelivery(rows)
		if err != nil {
			rows.Close()
			return nil, false, interpretError(err)
		}
		out = append(out, d)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, false, interpretError(err)
	}
	more := len(out) > first
	if more {
		out = out[:first]
	}
	if len(out) == 0 {
		return out, false, nil
	}
	ids := make([]int64, len(out))
	byID := make(map[int64]*WebhookDelivery, len(out))
	for i, d := range out {
		ids[i], byID[d.ID] = d.ID, d
	}
	arows, err := q.Query(ctx, `SELECT delivery_id, attempt, at, status, error, duration_ms FROM webhook_attempts
		WHERE delivery_id = ANY($1::bigint[]) ORDER BY delivery_id, attempt`, ids)
	if err != nil {
		return nil, false, interpretError(err)
	}
	defer arows.Close()
	for arows.Next() {
		var id int64
		var a WebhookAttempt
		var ms int
		if err := arows.Scan(&id, &a.Attempt, &a.At, &a.Status, &a.Error, &ms); err != nil {
			return nil, false, interpretError(err)
		}
		a.Duration = time.Duration(ms) * time.Millisecond
		byID[id].Log = append(byID[id].Log, a)
	}
	return out, more, interpretError(arows.Err())
}

// RedeliverWebhook queues the delivery with id again, whatever its state,
// with a fresh retry window. A delivery being sent right now is returned
// as it is.
func (s *Store) RedeliverWebhook(ctx context.Context, id string) (*WebhookDelivery, error) {
	n, err := strconv.ParseInt(id, 10, 64)
	if err != nil || n <= 0 {
		return nil, order.NotFound("webhook delivery")
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	q, release := s.q(ctx)
	defer release()
	if _, err := q.Exec(ctx, `UPDATE webhook_deliveries SET state = 'pending', next_attempt_at = now(), retry_from = now()
		WHERE id = $1 AND NOT (state = 'pending' AND lease_until > now())`, n); err != nil {
		return nil, interpretError(err)
	}
	d, err := scanDelivery(q.QueryRow(ctx, `SELECT `+deliveryCols+` FROM webhook_deliveries d WHERE d.id = $1`, n))
	return d, notFoundAs(interpretError(err), "webhook delivery")
}

// ReplayWebhooks queues for the endpoint every kept event at or after
// since of the types it receives: missing deliveries are created and
// finished ones queued again (pending ones are already on their way). It
// returns how many were queued.
func (s *Store) ReplayWebhooks(ctx context.Context, endpointID string, since time.Time) (int, error) {
	if !IsUUID(endpointID) {
		return 0, order.NotFound("webhook endpoint")
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	q, release := s.q(ctx)
	defer release()
	var exists bool
	if err := q.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM webhook_endpoints WHERE id = $1::uuid)`, endpointID).Scan(&exists); err != nil {
		return 0, interpretError(err)
	}
	if !exists {
		return 0, order.NotFound("webhook endpoint")
	}
	tag, err := q.Exec(ctx, `INSERT INTO webhook_deliveries AS d (endpoint_id, order_id, order_version, event_type, event_at)
		SELECT e.id, ev.order_id, ev.version, ev.type, ev.at
		FROM order_events ev JOIN webhook_endpoints e ON e.id = $1::uuid AND ev.type = ANY (e.event_types)
		WHERE ev.at >= $2
		ORDER BY ev.position
		ON CONFLICT (endpoint_id, order_id, order_version) DO UPDATE
			SET state = 'pending', next_attempt_at = now(), retry_from = now()
			WHERE d.state <> 'pending'`, endpointID, since)
	if err != nil {
		return 0, interpretError(err)
	}
	return int(tag.RowsAffected()), nil
}

// HasEnabledWebhookEndpoint reports whether any webhook endpoint is
// enabled (without one, no event writes a delivery).
func (s *Store) HasEnabledWebhookEndpoint(ctx context.Context) (bool, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	q, release := s.q(ctx)
	defer release()
	var has bool
	if err := q.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM webhook_endpoints WHERE enabled)`).Scan(&has); err != nil {
		return false, interpretError(err)
	}
	return has, nil
}

// ClaimedDelivery is a delivery leased to one sender, with what it needs
// to send it.
type ClaimedDelivery struct {
	ID         int64
	EndpointID string
	URL        string
	// Secrets sign it (see WebhookEndpoint.Secrets).
	Secrets []string
	// Attempt is the number of this send (1 for the first).
	Attempt int
	// CreatedAt is when the delivery was written (its event's commit).
	CreatedAt time.Time
	// Event is nil when the event is no longer kept.
	Event *order.Event
}

// WebhookClaim asks for due deliveries.
type WebhookClaim struct {
	// Limit bounds the deliveries claimed.
	Limit int
	// PerEndpoint bounds the deliveries claimed per endpoint, less
	// InFlight of that endpoint (an endpoint at its bound gets none).
	PerEndpoint int
	InFlight    map[string]int
	// Lease is how long a claimed delivery stays invisible to other
	// senders (a sender that dies leaves it to another after the lease).
	// A delivery given back (AttemptDeferred) is due again after its Delay.
	Lease time.Duration
}

// ClaimWebhookDeliveries leases due deliveries of enabled endpoints,
// oldest due first, skipping rows other senders hold. A delivery is due
// when its time has come and no earlier event of the same order is still
// pending for that endpoint (in order per order). The claim commits
// without waiting for the disk (see asyncCommit): a claim lost in a
// database crash only lets the delivery be sent again.
func (s *Store) ClaimWebhookDeliveries(ctx context.Context, c WebhookClaim) ([]ClaimedDelivery, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	busyIDs := make([]string, 0, len(c.InFlight))
	busyN := make([]int32, 0, len(c.InFlight))
	for id, n := range c.InFlight {
		busyIDs, busyN = append(busyIDs, id), append(busyN, int32(n))
	}
	rows, err := s.pool.Query(ctx, `WITH c AS (
		SELECT x.id FROM webhook_endpoints e
		CROSS JOIN LATERAL (
			SELECT d.id, d.next_attempt_at FROM webhook_deliveries d
			WHERE d.endpoint_id = e.id AND d.state = 'pending' AND d.next_attempt_at <= now()
				AND d.order_version = (SELECT min(p.order_version) FROM webhook_deliveries p
					WHERE p.endpoint_id = d.endpoint_id AND p.order_id = d.order_id AND p.state = 'pending')
			ORDER BY d.next_attempt_at, d.id
			LIMIT greatest($2::int - coalesce((SELECT b.n FROM unnest($3::uuid[], $4::int[]) AS b(id, n) WHERE b.id = e.id), 0), 0)
			FOR UPDATE OF d SKIP LOCKED) x
		WHERE e.enabled
		ORDER BY x.next_attempt_at, x.id
		LIMIT $1)
	UPDATE webhook_deliveries d SET attempts = d.attempts + 1, next_attempt_at = now() + $5::interval,
		lease_until = now() + $5::interval, last_attempt_at = now()
	FROM c, webhook_endpoints e
	WHERE d.id = c.id AND e.id = d.endpoint_id
	RETURNING d.id, d.endpoint_id::text, e.url, e.secret, CASE WHEN e.previous_expires_at > now() THEN e.previous_secret END,
		d.attempts, d.created_at, d.order_id::text, d.order_version, `+asyncCommit,
		c.Limit, c.PerEndpoint, busyIDs, busyN, c.Lease)
	if err != nil {
		return nil, interpretError(err)
	}
	var out []ClaimedDelivery
	var oids []string
	var vers []int32
	for rows.Next() {
		var d ClaimedDelivery
		var secret string
		var prev *string
		var oid string
		var ver int32
		if err := rows.Scan(&d.ID, &d.EndpointID, &d.URL, &secret, &prev, &d.Attempt, &d.CreatedAt, &oid, &ver, nil); err != nil {
			rows.Close()
			return nil, interpretError(err)
		}
		d.Secrets = []string{secret}
		if prev != nil {
			d.Secrets = append(d.Secrets, *prev)
		}
		out = append(out, d)
		oids, vers = append(oids, oid), append(vers, ver)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, interpretError(err)
	}
	if len(out) == 0 {
		return nil, nil
	}
	// The events, read after the claim: a claimed delivery's event is
	// committed (its delivery was written in the event's transaction).
	erows, err := s.pool.Query(ctx, `SELECT `+eventCols+` FROM order_events
		WHERE (order_id, version) IN (SELECT * FROM unnest($1::uuid[], $2::int[]))`, oids, vers)
	if err != nil {
		return out, interpretError(err)
	}
	defer erows.Close()
	type key struct {
		oid string
		ver int
	}
	events := map[key]*order.Event{}
	for erows.Next() {
		e, err := scanEvent(erows)
		if err != nil {
			return out, interpretError(err)
		}
		events[key{e.OrderID, e.Version}] = e
	}
	if err := erows.Err(); err != nil {
		return out, interpretError(err)
	}
	for i := range out {
		out[i].Event = events[key{oids[i], int(vers[i])}]
	}
	return out, nil
}

// Outcomes of a delivery attempt ([WebhookResult.Outcome]).
const (
	// AttemptDelivered: the endpoint answered 2xx.
	AttemptDelivered = "delivered"
	// AttemptRetry: a timeout, a connection error, 408, 429 or 5xx; the
	// delivery is tried again after Delay, or dead-lettered when that is
	// past its retry window.
	AttemptRetry = "retry"
	// AttemptFailed: a final refusal.
	AttemptFailed = "failed"
	// AttemptDeferred: nothing was sent (the endpoint's circuit breaker is
	// open); tried again after Delay, the attempt not counted.
	AttemptDeferred = "deferred"
)

// WebhookResult is the result of one claimed send.
type WebhookResult struct {
	DeliveryID int64
	Attempt    int
	Outcome    string
	Status     *int
	Error      string
	Duration   time.Duration
	// Delay is the wait before the next attempt (retry, deferred).
	Delay time.Duration
	// RetryFor is the retry window of a delivery.
	RetryFor time.Duration
	// DisableAfter disables an endpoint whose attempts have failed for
	// that long without a success.
	DisableAfter time.Duration
}

// WebhookRecorded is what recording a result did.
type WebhookRecorded struct {
	// State is the delivery's state afterwards ("" when the delivery is
	// gone or another sender took it over after the lease).
	State string
	// Disabled is the reason when the endpoint was disabled by this result.
	Disabled string
}

// asyncCommit, selected by a single-statement transaction, commits it
// without waiting for the WAL flush. Only the outcome of an attempt is
// written so: if the database crashes before the flush, the delivery is
// sent again after its lease with the same webhook-id, which the
// at-least-once rule allows; it saves a disk flush per attempt.
const asyncCommit = `set_config('synchronous_commit', 'off', true)`

// RecordWebhookResult records the result of the send r.Attempt of a
// delivery, if this sender still holds it, with the endpoint's failure
// streak (committed without waiting for the disk: see asyncCommit).
func (s *Store) RecordWebhookResult(ctx context.Context, r WebhookResult) (WebhookRecorded, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	var errText *string
	if r.Error != "" {
		errText = &r.Error
	}
	var out WebhookRecorded
	var disabled *string
	var state *string
	var err error
	switch r.Outcome {
	case AttemptDeferred:
		err = s.pool.QueryRow(ctx, `UPDATE webhook_deliveries SET attempts = attempts - 1,
			next_attempt_at = now() + $3::interval, lease_until = NULL, last_error = $4
			WHERE id = $1 AND attempts = $2 AND state = 'pending' RETURNING state`,
			r.DeliveryID, r.Attempt, r.Delay, errText).Scan(&state)
	default:
		err = s.pool.QueryRow(ctx, `WITH d AS (
			UPDATE webhook_deliveries SET
				state = CASE $3::text WHEN 'delivered' THEN 'delivered' WHEN 'failed' THEN 'failed'
					ELSE CASE WHEN now() + $6::interval > retry_from + $7::interval THEN 'dead' ELSE 'pending' END END,
				next_attempt_at = CASE WHEN $3::text = 'retry' THEN now() + $6::interval ELSE now() END,
				lease_until = NULL, last_status = $4, last_error = $5,
				delivered_at = CASE WHEN $3::text = 'delivered' THEN now() END
			WHERE id = $1 AND attempts = $2 AND state = 'pending'
			RETURNING id, endpoint_id, state),
		a AS (INSERT INTO webhook_attempts (delivery_id, attempt, status, error, duration_ms)
			SELECT id, $2, $4, $5, $8 FROM d ON CONFLICT DO NOTHING),
		e AS (UPDATE webhook_endpoints e SET
				failing_since = CASE WHEN $3::text = 'delivered' THEN NULL ELSE coalesce(e.failing_since, now()) END,
				enabled = e.enabled AND NOT ($3::text <> 'delivered' AND coalesce(e.failing_since < now() - $9::interval, false)),
				disabled_reason = CASE WHEN e.enabled AND $3::text <> 'delivered' AND coalesce(e.failing_since < now() - $9::interval, false)
					THEN 'every attempt has failed since ' || to_char(e.failing_since AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
						|| coalesce(' (last: ' || $5 || ')', '')
					ELSE e.disabled_reason END
			FROM d WHERE e.id = d.endpoint_id
				AND ($3::text = 'delivered' AND e.failing_since IS NOT NULL OR $3::text <> 'delivered')
			RETURNING CASE WHEN NOT e.enabled THEN e.disabled_reason END AS disabled)
		SELECT (SELECT state FROM d), (SELECT disabled FROM e), `+asyncCommit,
			r.DeliveryID, r.Attempt, r.Outcome, r.Status, errText, r.Delay, r.RetryFor, r.Duration.Milliseconds(),
			r.DisableAfter).Scan(&state, &disabled, nil)
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return out, nil
	}
	if err != nil {
		return out, interpretError(err)
	}
	if state != nil {
		out.State = *state
	}
	if disabled != nil {
		out.Disabled = *disabled
	}
	return out, nil
}

// WebhookQueue is the backlog of one endpoint.
type WebhookQueue struct {
	EndpointID string
	// Pending counts deliveries not yet delivered nor given up.
	Pending int
	// OldestPending is the age of the oldest pending delivery.
	OldestPending time.Duration
	// Dead counts dead-lettered deliveries.
	Dead int
}

// WebhookQueues returns the backlog of every endpoint.
func (s *Store) WebhookQueues(ctx context.Context) ([]WebhookQueue, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	rows, err := s.pool.Query(ctx, `SELECT e.id::text,
		(SELECT count(*) FROM webhook_deliveries d WHERE d.endpoint_id = e.id AND d.state = 'pending'),
		coalesce((SELECT extract(epoch FROM now() - min(d.created_at)) FROM webhook_deliveries d
			WHERE d.endpoint_id = e.id AND d.state = 'pending'), 0),
		(SELECT count(*) FROM webhook_deliveries d WHERE d.endpoint_id = e.id AND d.state = 'dead')
		FROM webhook_endpoints e ORDER BY e.created_at`)
	if err != nil {
		return nil, interpretError(err)
	}
	defer rows.Close()
	var out []WebhookQueue
	for rows.Next() {
		var w WebhookQueue
		var age float64
		if err := rows.Scan(&w.EndpointID, &w.Pending, &age, &w.Dead); err != nil {
			return nil, interpretError(err)
		}
		w.OldestPending = time.Duration(age * float64(time.Second))
		out = append(out, w)
	}
	return out, interpretError(rows.Err())
}
