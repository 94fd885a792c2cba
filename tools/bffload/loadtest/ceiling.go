package loadtest

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"
)

// CeilingPrefix starts the Redis keys of the ceiling's stored responses.
const CeilingPrefix = "bffload:ceiling:"

// CeilingHandler is the ceiling the screens are compared with: a bare
// net/http handler that does one Redis GET (key CeilingPrefix + the u
// query parameter) and writes the bytes. It reads nothing else of the
// request; what the BFF adds on top of it (middleware, auth, GraphQL
// parsing and validation, cache key, JSON) is what the ratio shows.
func CeilingHandler(rdb redis.UniversalClient) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := rdb.Get(r.Context(), CeilingPrefix+r.URL.Query().Get("u")).Bytes()
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(b)
	})
}

// StoreCeiling stores each user's homeScreen response, as the BFF
// answers it, under the ceiling's keys.
func (r *Runner) StoreCeiling(ctx context.Context, rdb redis.UniversalClient) error {
	for i, u := range r.Users {
		resp, err := Post(ctx, r.Client, r.graphql(), u.Token, u.homeBody, true)
		if err != nil {
			return err
		}
		if err := rdb.Set(ctx, fmt.Sprintf("%s%d", CeilingPrefix, i), resp.Body, time.Hour).Err(); err != nil {
			return fmt.Errorf("ceiling: store in Redis: %w", err)
		}
	}
	return nil
}

// ceilingMissSQL is the miss ceiling's one query: the whole homeScreen
// response of the viewer with email $1, as the BFF sends it (the same
// data, field for field: the viewer; the five newest orders with their
// totals and customers; the status counts, open orders and lifetime spend
// of all their orders), built as one JSON document by Postgres. Timestamps
// and amounts are formatted as the BFF formats them (RFC 3339 in UTC
// without trailing zeros; dollars with thousands separators: the seeded
// orders are in USD).
const ceilingMissSQL = `WITH u AS (SELECT id, email, name, role FROM users WHERE email = $1),
	o AS (SELECT o.* FROM orders o, u WHERE o.customer_id = u.id ORDER BY o.created_at DESC, o.id DESC LIMIT 5),
	s AS (SELECT status, sum(n) AS n, sum(cents) AS cents FROM (SELECT status, count(*) AS n, coalesce(sum(total_cents), 0) AS cents
		FROM orders, u WHERE customer_id = u.id GROUP BY status, currency) g GROUP BY status)
SELECT json_build_object('data', json_build_object('homeScreen', json_build_object(
	'viewer', (SELECT json_build_object('id', u.id, 'name', u.name, 'email', u.email, 'role', u.role) FROM u),
	'recentOrders', coalesce((SELECT json_agg(json_build_object('id', o.id, 'number', o.number, 'status', o.status,
		'paymentStatus', o.payment_status, 'version', o.version,
		'createdAt', rtrim(rtrim(to_char(o.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US'), '0'), '.') || 'Z',
		'total', json_build_object('formatted', '$' || to_char(o.total_cents / 100.0, 'FM999,999,990.00')),
		'customer', json_build_object('id', c.id, 'name', c.name, 'email', c.email))
		ORDER BY o.created_at DESC, o.id DESC) FROM o JOIN users c ON c.id = o.customer_id), '[]'),
	'statusCounts', coalesce((SELECT json_agg(json_build_object('status', status, 'count', n)
		ORDER BY array_position(ARRAY['PENDING_PAYMENT', 'PAID', 'SHIPPED', 'DELIVERED', 'CANCELLED'], status)) FROM s), '[]'),
	'openOrders', (SELECT coalesce(sum(n), 0) FROM s WHERE status IN ('PENDING_PAYMENT', 'PAID', 'SHIPPED')),
	'lifetimeSpend', json_build_object('formatted', '$' || to_char(coalesce((SELECT sum(cents) FROM s WHERE status <> 'CANCELLED'), 0) / 100.0, 'FM999,999,990.00')))))`

// CeilingMissHandler is the ceiling of a cache miss: a bare net/http
// handler that runs one SQL query (the homeScreen response of the viewer
// of the e query parameter, as JSON built by Postgres), stores the bytes
// with one Redis SET and writes them.
func CeilingMissHandler(db *pgxpool.Pool, rdb redis.UniversalClient) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		var b []byte
		if err := db.QueryRow(r.Context(), ceilingMissSQL, q.Get("e")).Scan(&b); err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		if err := rdb.Set(r.Context(), CeilingPrefix+"miss:"+q.Get("u"), b, time.Minute).Err(); err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(b)
	})
}
