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

// ceilingMissSQL is the miss ceiling's one query: the viewer and their
// five newest orders with their line counts, as one JSON document.
const ceilingMissSQL = `SELECT json_build_object('data', json_build_object('homeScreen', json_build_object(
	'viewer', json_build_object('id', u.id, 'email', u.email, 'name', u.name, 'role', u.role),
	'recentOrders', coalesce((SELECT json_agg(json_build_object('id', o.id, 'number', o.number, 'status', o.status,
		'paymentStatus', o.payment_status, 'version', o.version, 'total', json_build_object('cents', o.total_cents, 'currency', o.currency),
		'createdAt', o.created_at, 'lines', (SELECT count(*) FROM order_lines l WHERE l.order_id = o.id)))
		FROM (SELECT * FROM orders WHERE customer_id = u.id ORDER BY created_at DESC, id DESC LIMIT 5) o), '[]'::json))))
	FROM users u WHERE u.email = $1`

// CeilingMissHandler is the ceiling of a cache miss: a bare net/http
// handler that runs one SQL query (the viewer of the e query parameter
// and their newest orders, as JSON built by Postgres), stores the bytes
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
