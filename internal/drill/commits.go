package drill

import (
	"context"
	"encoding/json"
	"time"

	"github.com/jackc/pgx/v5"
)

// querier is a Postgres connection or pool.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// ReadCommits reads who committed each version of the orders ids (of
// every order when ids is nil; keys are looked up among the records of
// those orders' customers): each version's event, and the idempotency
// record, if any, whose stored response names the order at that version.
func ReadCommits(ctx context.Context, db querier, ids []string) (map[string]map[int]Commit, error) {
	out := map[string]map[int]Commit{}
	rows, err := db.Query(ctx, `SELECT order_id::text, version, at FROM order_events
		WHERE $1::uuid[] IS NULL OR order_id = ANY($1::uuid[])`, ids)
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var id string
		var v int
		var at time.Time
		if err := rows.Scan(&id, &v, &at); err != nil {
			return nil, err
		}
		if out[id] == nil {
			out[id] = map[int]Commit{}
		}
		out[id][v] = Commit{At: at}
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	rows, err = db.Query(ctx, `SELECT u.email, k.key, k.body FROM idempotency_keys k JOIN users u ON u.id = k.user_id
		WHERE $1::uuid[] IS NULL OR k.user_id IN (SELECT customer_id FROM orders WHERE id = ANY($1::uuid[]))`, ids)
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var email, key string
		var body []byte
		if err := rows.Scan(&email, &key, &body); err != nil {
			return nil, err
		}
		for _, o := range answered(body) {
			if c, ok := out[o.ID][o.Version]; ok {
				c.Actor, c.Key = email, key
				out[o.ID][o.Version] = c
			}
		}
	}
	return out, rows.Err()
}

// answered returns the orders a stored mutation response names, with
// their versions (none for an error).
func answered(body []byte) []OrderState {
	var r struct {
		Data map[string]json.RawMessage `json:"data"`
	}
	if json.Unmarshal(body, &r) != nil {
		return nil
	}
	var out []OrderState
	for _, raw := range r.Data {
		var p struct {
			Order *struct {
				ID      string `json:"id"`
				Version int    `json:"version"`
			} `json:"order"`
		}
		if json.Unmarshal(raw, &p) == nil && p.Order != nil && p.Order.ID != "" && p.Order.Version > 0 {
			out = append(out, OrderState{ID: p.Order.ID, Version: p.Order.Version})
		}
	}
	return out
}
