// Package postgres is the BFF's record: the pgx pool, the embedded SQL
// migrations, the reads behind the screens (queued in a Batch: one round
// trip, one snapshot), and the transactions that change orders and write
// their events.
//
// Errors from pgx are interpreted here, at the boundary, into *order.Error
// values (interpretError): callers never see a pgx error.
package postgres
