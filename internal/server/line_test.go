package server

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestTheLine checks the line of the served binary with one slot: a
// mutation blocked in Postgres holds the slot; a screen read the cache
// answers does not wait for it, a screen read that must load waits in
// line (bff_requests_waiting) until the slot is free, and both end well.
func TestTheLine(t *testing.T) {
	e := newEnv(t)
	cfg := e.config()
	cfg.MaxRunning, cfg.QueueMaxWait = 1, time.Hour
	cfg.RequestTimeout = 5 * time.Minute // the blocked mutation must not time out first
	in := e.start(cfg, Options{})
	tok := in.token("alice@example.com")
	ps := mutCatalogue(t, in, 1)
	placed := mutPlace(t, in, tok, mutInput(ps[0].ID, 1))
	id, v := placed["id"].(string), int(placed["version"].(float64))
	in.post(tok, homeQuery, nil) // the order changed the screen: load it again

	// The test's transaction locks the order: the mutation waits for it
	// in Postgres, holding the one slot.
	ctx := t.Context()
	tx, err := in.db().Begin(ctx)
	require.NoError(t, err)
	defer tx.Rollback(context.Background()) //nolint:errcheck // after Commit: a no-op
	_, err = tx.Exec(ctx, `SELECT 1 FROM orders WHERE id = $1::uuid FOR UPDATE`, id)
	require.NoError(t, err)
	mutation := make(chan *gqlResponse, 1)
	go func() {
		r, err := mutSend(in.URL, tok, mutBody(mutAddressQuery, map[string]any{"id": id, "v": v, "a": mutAddress}), "Idempotency-Key: "+mutKey())
		if err != nil {
			r = &gqlResponse{Raw: []byte(err.Error())}
		}
		mutation <- r
	}()
	waitFor(t, "the mutation waiting for the order's lock", func() bool {
		var n int
		_ = in.db().QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%orders%'`).Scan(&n)
		return n > 0
	})
	assert.Equal(t, 1.0, sample(t, scrapeMetrics(t, in), "bff_requests_running"))

	hit := in.post(tok, homeQuery, nil)
	assert.Contains(t, hit.Header.Get("Cache-Status"), "hit", "a cache hit does not wait in line")

	miss := make(chan *gqlResponse, 1)
	go func() {
		r, err := mutSend(in.URL, tok, mutBody(homeQuery, nil), "Cache-Control: no-cache")
		if err != nil {
			r = &gqlResponse{Raw: []byte(err.Error())}
		}
		miss <- r
	}()
	waitFor(t, "the loading read in line", func() bool { return sample(t, scrapeMetrics(t, in), "bff_requests_waiting") == 1 })

	require.NoError(t, tx.Commit(ctx))
	m := <-mutation
	assert.Equal(t, http.StatusOK, m.Status, "%s", m.Raw)
	assert.Empty(t, m.Errors)
	r := <-miss
	assert.Equal(t, http.StatusOK, r.Status, "%s", r.Raw)
	assert.Contains(t, r.Header.Get("Cache-Status"), "fwd=request")
	assert.Equal(t, 0.0, sample(t, scrapeMetrics(t, in), "bff_requests_running"))
	assert.Equal(t, 0.0, sample(t, scrapeMetrics(t, in), "bff_requests_unqueued_total"))
}
