package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"

	"github.com/shop/bff/internal/config"
	"github.com/shop/bff/internal/order"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Config configures the pool.
type Config struct {
	// URL is the connection string (DATABASE_URL).
	URL string
	// MaxConns bounds the pool. Default config.DefaultPGMaxConns.
	MaxConns int32
	// QueryTimeout is the deadline of one store call when the caller's
	// context has none. Default 5s.
	QueryTimeout time.Duration
	// Tracer, when set, observes every query (tests count queries with it;
	// tracing wraps it in spans).
	Tracer pgx.QueryTracer
	// MigrateURL, when set, is the connection string migrations use
	// (DATABASE_MIGRATE_URL): a direct or session-pooled connection.
	// Migrations hold a session-level advisory lock across several
	// transactions, which a pooler in transaction mode (PgBouncer
	// pool_mode=transaction) cannot give; every other query of the BFF
	// works through such a pooler.
	MigrateURL string
}

// Store is the Postgres store of the BFF.
type Store struct {
	pool       *pgxpool.Pool
	timeout    time.Duration
	migrateURL string
}

// Open connects a bounded pool and checks that Postgres answers.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	pc, err := pgxpool.ParseConfig(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("DATABASE_URL: %w", err)
	}
	pc.MaxConns = cfg.MaxConns
	if pc.MaxConns <= 0 {
		pc.MaxConns = config.DefaultPGMaxConns
	}
	if cfg.Tracer != nil {
		pc.ConnConfig.Tracer = cfg.Tracer
	}
	pc.ConnConfig.ConnectTimeout = 3 * time.Second
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, err
	}
	s := &Store{pool: pool, timeout: cfg.QueryTimeout, migrateURL: cfg.MigrateURL}
	if s.timeout <= 0 {
		s.timeout = 5 * time.Second
	}
	return s, nil
}

// Stat is the statistics of the store's connection pool (for metrics).
func (s *Store) Stat() *pgxpool.Stat { return s.pool.Stat() }

// Close closes the pool.
func (s *Store) Close() { s.pool.Close() }

// Ping reports whether Postgres answers.
func (s *Store) Ping(ctx context.Context) error {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	return interpretError(s.pool.Ping(ctx))
}

// migrationProvider returns a goose provider over the embedded migrations
// (a provider holds no global state, so stores may migrate concurrently).
func (s *Store) migrationProvider(pool *pgxpool.Pool) (*goose.Provider, func(), error) {
	db := stdlib.OpenDBFromPool(pool)
	fsys, err := fs.Sub(migrations, "migrations")
	if err != nil {
		db.Close()
		return nil, nil, err
	}
	p, err := goose.NewProvider(goose.DialectPostgres, db, fsys)
	if err != nil {
		db.Close()
		return nil, nil, err
	}
	return p, func() { db.Close() }, nil
}

// Migrate applies pending migrations. Two instances starting at once do
// not both migrate: a session advisory lock serializes them. With a
// MigrateURL, migrations run on a connection of their own to it.
func (s *Store) Migrate(ctx context.Context) error {
	pool := s.pool
	if s.migrateURL != "" {
		pc, err := pgxpool.ParseConfig(s.migrateURL)
		if err != nil {
			return fmt.Errorf("DATABASE_MIGRATE_URL: %w", err)
		}
		pc.MaxConns = 2
		pc.ConnConfig.ConnectTimeout = 3 * time.Second
		if pool, err = pgxpool.NewWithConfig(ctx, pc); err != nil {
			return interpretError(err)
		}
		defer pool.Close()
	}
	p, closeDB, err := s.migrationProvider(pool)
	if err != nil {
		return err
	}
	defer closeDB()
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return interpretError(err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock(727274)"); err != nil {
		return interpretError(err)
	}
	defer conn.Exec(context.Background(), "SELECT pg_advisory_unlock(727274)")
	_, err = p.Up(ctx)
	return err
}

// MigrationsPending reports whether migrations remain to be applied.
func (s *Store) MigrationsPending(ctx context.Context) (bool, error) {
	p, closeDB, err := s.migrationProvider(s.pool)
	if err != nil {
		return true, err
	}
	defer closeDB()
	return p.HasPending(ctx)
}

// ctx applies the default deadline when the caller has none.
func (s *Store) ctx(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, s.timeout)
}

// interpretError maps pgx and network errors to domain errors: missing rows
// become NOT_FOUND, connection failures and timeouts UNAVAILABLE, bad input
// values BAD_USER_INPUT, and anything else INTERNAL (with its cause kept
// for the log).
func interpretError(err error) error {
	if err == nil {
		return nil
	}
	var oe *order.Error
	if errors.As(err, &oe) {
		return err
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return order.NotFound("record")
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return order.Timeout("postgres", err)
	}
	if errors.Is(err, context.Canceled) {
		return order.Unavailable("postgres", err)
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch {
		case pgErr.Code == "22P02": // invalid_text_representation (e.g. a malformed uuid)
			return order.NotFound("record")
		case pgErr.Code == "40001" || pgErr.Code == "40P01": // serialization failure, deadlock
			return order.Unavailable("postgres", err)
		case pgErr.Code == "57P01" || pgErr.Code == "57P02" || pgErr.Code == "57P03" || pgErr.Code[:2] == "08" || pgErr.Code == "53300":
			return order.Unavailable("postgres", err)
		}
		return &order.Error{Code: order.CodeInternal, Message: "internal error", Cause: err}
	}
	var netErr net.Error
	if errors.As(err, &netErr) || pgconn.SafeToRetry(err) || pgconn.Timeout(err) || isConnectError(err) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) {
		return order.Unavailable("postgres", err)
	}
	return &order.Error{Code: order.CodeInternal, Message: "internal error", Cause: err}
}

func isConnectError(err error) bool {
	var ce *pgconn.ConnectError
	return errors.As(err, &ce) ||
		errors.Is(err, net.ErrClosed)
}
