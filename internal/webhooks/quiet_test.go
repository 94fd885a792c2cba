package webhooks

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/shop/bff/internal/order"
	"github.com/shop/bff/internal/postgres"
	"github.com/shop/bff/internal/testenv"
)

// While the database has no enabled endpoint, a commit's Wake claims
// nothing and is skipped; a Refresh (staff created or enabled an
// endpoint) always claims, and the poll that finds an endpoint ends the
// quiet.
func TestWakeIsSkippedWithoutAnEnabledEndpoint(t *testing.T) {
	store, _ := testenv.Store(t, false, postgres.Config{MaxConns: 4})
	w, err := NewWorker(Config{Store: store})
	require.NoError(t, err)
	ctx := t.Context()

	require.False(t, w.quiet.Load(), "a new worker listens")
	w.checkQuiet(ctx)
	require.True(t, w.quiet.Load(), "no endpoint")
	w.Wake()
	assert.Empty(t, w.wake, "a commit's wake is skipped")
	w.Refresh()
	assert.Len(t, w.wake, 1, "a refresh claims whatever the poll found")
	<-w.wake

	_, err = store.CreateWebhookEndpoint(ctx, postgres.NewWebhookEndpoint{URL: "http://127.0.0.1:1/hook",
		EventTypes: []order.EventType{order.EventOrderPlaced}, Secret: NewSecret()})
	require.NoError(t, err)
	w.quiet.Store(true)
	w.checkQuiet(ctx)
	assert.False(t, w.quiet.Load(), "an enabled endpoint")
	w.Wake()
	assert.Len(t, w.wake, 1)
}
