package postgres

import (
	"context"
	"fmt"
)

// SentinelEmail is the reserved internal customer of the stale-read
// sentinel: its one order carries the sentinel's markers.
const SentinelEmail = "stale-sentinel@bff.internal"

// EnsureSentinelUser creates the sentinel's reserved customer when it is
// missing and returns its id.
func (s *Store) EnsureSentinelUser(ctx context.Context) (string, error) {
	var id string
	err := s.pool.QueryRow(ctx, `WITH ins AS (
			INSERT INTO users (email, name, role) VALUES ($1, 'Stale-read sentinel', 'CUSTOMER')
			ON CONFLICT (email) DO NOTHING RETURNING id::text)
		SELECT id FROM ins UNION ALL SELECT id::text FROM users WHERE email = $1 LIMIT 1`, SentinelEmail).Scan(&id)
	if err != nil {
		return "", fmt.Errorf("sentinel user: %w", err)
	}
	return id, nil
}
