package drill

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	domain "github.com/shop/bff/internal/order"
	"github.com/shop/bff/internal/postgres"
	"github.com/shop/bff/internal/testenv"
)

// ReadCommits attributes a version to the key whose stored response names
// the order at that version, and to no one when no record does (an
// unkeyed change, or a key whose stored answer is an error).
func TestReadCommits(t *testing.T) {
	store, url := testenv.Store(t, true, postgres.Config{MaxConns: 4})
	db := testenv.DB(t, url)
	ctx := context.Background()
	alice, err := store.UserByEmail(ctx, "alice@example.com")
	require.NoError(t, err)
	var id string
	var v int
	require.NoError(t, db.QueryRow(ctx, `SELECT id::text, version FROM orders WHERE customer_id = $1::uuid AND status = 'PENDING_PAYMENT'
		ORDER BY created_at LIMIT 1`, alice.ID).Scan(&id, &v))
	change := func(key, body string) {
		t.Helper()
		_, err := store.InTx(ctx, func(tx *postgres.Tx) error {
			o, err := tx.ChangeOrder(ctx, postgres.Change{Viewer: alice, OrderID: id, ExpectedVersion: v, Action: domain.ActionUpdateShippingAddress,
				Address: &domain.Address{Name: "A", Line1: "1 St", City: "C", PostalCode: "12345", Country: "US"}})
			if err != nil {
				return err
			}
			v = o.Version
			if key == "" {
				return nil
			}
			return tx.SaveKeyRecord(ctx, alice.ID, key, postgres.KeyRecord{Fingerprint: []byte(key), Status: 200,
				Body: fmt.Appendf(nil, body, id, v)}, time.Hour)
		})
		require.NoError(t, err)
	}
	change("", "")
	unkeyed := v
	change("k-ok", `{"data":{"updateShippingAddress":{"order":{"id":%q,"version":%d}}}}`)
	keyed := v
	change("k-err", `{"errors":[{"message":"%s %d","extensions":{"code":"CONFLICT"}}],"data":null}`)
	errored := v

	for _, ids := range [][]string{{id}, nil} {
		commits, err := ReadCommits(ctx, db, ids)
		require.NoError(t, err)
		got := commits[id]
		require.Contains(t, got, unkeyed)
		assert.Equal(t, "", got[unkeyed].Key)
		assert.False(t, got[unkeyed].At.IsZero())
		assert.Equal(t, "alice@example.com", got[keyed].Actor)
		assert.Equal(t, "k-ok", got[keyed].Key)
		assert.False(t, got[keyed].At.Before(got[unkeyed].At))
		require.Contains(t, got, errored)
		assert.Equal(t, "", got[errored].Key)
	}
}
