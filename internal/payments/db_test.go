package payments

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/shop/bff/internal/postgres"
	"github.com/shop/bff/internal/testenv"
)

// testDB is a fresh schema, migrated with the project's migrations.
type testDB struct {
	url string // connection string with search_path set to the schema
}

// newTestDB creates a schema for the test (testenv.Schema), runs the
// migrations in it and drops it at the end.
func newTestDB(t *testing.T) *testDB {
	t.Helper()
	return &testDB{url: testenv.Schema(t)}
}

// pool opens a new pool on the schema (one per simulated process).
func (db *testDB) pool(t *testing.T, maxConns int32) *pgxpool.Pool {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(db.url)
	if err != nil {
		t.Fatalf("pool config: %v", err)
	}
	cfg.MaxConns = maxConns
	p, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatalf("pool: %v", err)
	}
	t.Cleanup(p.Close)
	return p
}

// storeOf opens a store on the database of p (a pool of its own, as large).
func storeOf(t *testing.T, p *pgxpool.Pool) *postgres.Store {
	t.Helper()
	s, err := postgres.Open(context.Background(), postgres.Config{URL: p.Config().ConnString(), MaxConns: p.Config().MaxConns})
	if err != nil {
		t.Fatalf("store: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

// seedJobs creates a customer, n orders in PROCESSING and one due charge
// job per order (attempt 1), and returns the order ids.
func seedJobs(t *testing.T, p *pgxpool.Pool, n int) []string {
	t.Helper()
	ctx := context.Background()
	var userID string
	err := p.QueryRow(ctx, `INSERT INTO users (email, name, role) VALUES ($1, 'Ada', 'CUSTOMER') RETURNING id::text`,
		uuid.NewString()+"@example.com").Scan(&userID)
	if err != nil {
		t.Fatalf("insert user: %v", err)
	}
	ids := make([]string, n)
	for i := range n {
		amount := int64(1000 + i)
		err := p.QueryRow(ctx, `INSERT INTO orders (customer_id, status, payment_status, version, total_cents, currency,
			ship_name, ship_line1, ship_city, ship_postal_code, ship_country, payment_attempt)
			VALUES ($1, 'PENDING_PAYMENT', 'PROCESSING', 2, $2, 'USD', 'Ada', 'Main St 1', 'Berlin', '10115', 'DE', 1)
			RETURNING id::text`, userID, amount).Scan(&ids[i])
		if err != nil {
			t.Fatalf("insert order: %v", err)
		}
		if _, err := p.Exec(ctx, `INSERT INTO charge_jobs (order_id, attempt, amount_cents, currency) VALUES ($1, 1, $2, 'USD')`,
			ids[i], amount); err != nil {
			t.Fatalf("insert job: %v", err)
		}
	}
	return ids
}

// jobRow is a charge_jobs row as tests read it.
type jobRow struct {
	State     string
	Tries     int
	LastError *string
	RunAt     time.Time
}

func readJob(t *testing.T, p *pgxpool.Pool, orderID string) jobRow {
	t.Helper()
	var r jobRow
	if err := p.QueryRow(context.Background(),
		`SELECT state, tries, last_error, run_at FROM charge_jobs WHERE order_id = $1 AND attempt = 1`, orderID).
		Scan(&r.State, &r.Tries, &r.LastError, &r.RunAt); err != nil {
		t.Fatalf("read job: %v", err)
	}
	return r
}

func (r jobRow) String() string {
	le := "<nil>"
	if r.LastError != nil {
		le = *r.LastError
	}
	return fmt.Sprintf("state=%s tries=%d last_error=%s", r.State, r.Tries, le)
}
