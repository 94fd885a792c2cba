package loadtest

import (
	"context"
	"fmt"
	"net/http"
	"time"

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
