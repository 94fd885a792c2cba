// Package testenv gives tests the real services they run against: a fresh,
// migrated Postgres schema per test, the shared Redis with a unique key
// prefix, or a private redis-server process the test may kill and restart.
//
// A service that cannot be reached fails the test with a message saying
// how to start it; nothing here skips.
package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/shop/bff/internal/postgres"
)

// DatabaseURL is the Postgres the tests use: DATABASE_URL, or the local
// default.
func DatabaseURL() string {
	if u := os.Getenv("DATABASE_URL"); u != "" {
		return u
	}
	return "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
}

// RedisURL is the shared Redis the tests use: REDIS_URL, or the local
// default.
func RedisURL() string {
	if u := os.Getenv("REDIS_URL"); u != "" {
		return u
	}
	return "redis://127.0.0.1:6379/0"
}

func random(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Schema creates a fresh schema, applies the project's migrations in it
// and returns a connection string whose search_path is that schema. The
// schema is dropped when the test ends.
func Schema(tb testing.TB) string {
	tb.Helper()
	base := DatabaseURL()
	schema := createDropped(tb, base, "CREATE SCHEMA %s", "DROP SCHEMA %s CASCADE")
	u, err := url.Parse(base)
	if err != nil {
		tb.Fatalf("DATABASE_URL: %v", err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := postgres.Open(ctx, postgres.Config{URL: u.String(), MaxConns: 4})
	if err != nil {
		tb.Fatalf("open store: %v", err)
	}
	defer s.Close()
	if err := s.Migrate(ctx); err != nil {
		tb.Fatalf("migrate: %v", err)
	}
	return u.String()
}

// Store opens a store on a fresh migrated schema (see Schema), optionally
// seeded with the demo data, closed when the test ends.
func Store(tb testing.TB, seed bool, cfg postgres.Config) (*postgres.Store, string) {
	tb.Helper()
	cfg.URL = Schema(tb)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s, err := postgres.Open(ctx, cfg)
	if err != nil {
		tb.Fatalf("open store: %v", err)
	}
	tb.Cleanup(s.Close)
	if seed {
		if err := s.Seed(ctx, postgres.SeedOptions{}); err != nil {
			tb.Fatalf("seed: %v", err)
		}
	}
	return s, cfg.URL
}

// DB opens a pool of the test's own on the database at url (a URL from
// Schema or Store), for tests that arrange or inspect rows with SQL of
// their own; the application reaches Postgres only through the store.
// It is closed when the test ends.
func DB(tb testing.TB, url string) *pgxpool.Pool {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := pgxpool.New(ctx, url)
	if err != nil {
		tb.Fatalf("open pool: %v", err)
	}
	tb.Cleanup(p.Close)
	return p
}

// Redis connects to the shared Redis and returns the client with a key
// prefix no other test uses; keys under the prefix are deleted at the end.
func Redis(tb testing.TB) (*redis.Client, string) {
	tb.Helper()
	rdb := Connect(tb, RedisURL())
	prefix := "test:" + random(6) + ":"
	tb.Cleanup(func() {
		ctx := context.Background()
		iter := rdb.Scan(ctx, 0, prefix+"*", 1000).Iterator()
		var keys []string
		for iter.Next(ctx) {
			keys = append(keys, iter.Val())
		}
		if len(keys) > 0 {
			rdb.Del(ctx, keys...)
		}
	})
	return rdb, prefix
}

// Connect returns a client of the Redis at url, failing the test when it
// does not answer.
func Connect(tb testing.TB, rawURL string) *redis.Client {
	tb.Helper()
	opt, err := redis.ParseURL(rawURL)
	if err != nil {
		tb.Fatalf("REDIS_URL: %v", err)
	}
	opt.ContextTimeoutEnabled = true
	rdb := redis.NewClient(opt)
	tb.Cleanup(func() { _ = rdb.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := rdb.Ping(ctx).Err(); err != nil {
		tb.Fatalf("Redis at %s unreachable (%v): start it with `redis-server --daemonize yes --save '' --appendonly no`, or set REDIS_URL", rawURL, err)
	}
	return rdb
}

// RedisProcess is a redis-server the test owns, on a free port, so that
// the test can kill and restart it without touching the shared Redis.
type RedisProcess struct {
	tb   testing.TB
	Port int
	dir  string
	cmd  *exec.Cmd
	// extra are further redis-server arguments (cluster mode).
	extra []string
}

// StartRedis starts a private redis-server that keeps nothing on disk.
// It is killed when the test ends.
func StartRedis(tb testing.TB) *RedisProcess {
	tb.Helper()
	_, err := exec.LookPath("redis-server")
	if err != nil {
		tb.Fatalf("redis-server not found (%v): install it with `apt-get install redis-server`", err)
	}
	p := &RedisProcess{tb: tb, Port: FreePort(tb), dir: tb.TempDir()}
	p.Start()
	tb.Cleanup(p.Kill)
	return p
}

// URL is the redis:// address of the process.
func (p *RedisProcess) URL() string { return fmt.Sprintf("redis://127.0.0.1:%d/0", p.Port) }

// Addr is host:port of the process.
func (p *RedisProcess) Addr() string { return fmt.Sprintf("127.0.0.1:%d", p.Port) }

// Start starts the process (again, after Kill) on the same port and waits
// until it answers PING.
func (p *RedisProcess) Start() {
	p.tb.Helper()
	p.cmd = exec.Command("redis-server", append([]string{"--port", strconv.Itoa(p.Port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", p.dir}, p.extra...)...)
	if err := p.cmd.Start(); err != nil {
		p.tb.Fatalf("start redis-server: %v", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := ping(p.Addr())
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			p.tb.Fatalf("redis-server on port %d did not start: %v", p.Port, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func ping(addr string) error {
	conn, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
	if err != nil {
		return err
	}
	defer conn.Close()
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	_ = conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	buf := make([]byte, 16)
	n, err := conn.Read(buf)
	if err != nil {
		return err
	}
	if !strings.HasPrefix(string(buf[:n]), "+PONG") {
		return fmt.Errorf("reply %q", buf[:n])
	}
	return nil
}

// Kill stops the process at once (SIGKILL), as a crash would.
func (p *RedisProcess) Kill() {
	if p.cmd == nil || p.cmd.Process == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGCONT) // a paused process dies too
	_ = p.cmd.Process.Kill()
	_ = p.cmd.Wait()
	p.cmd = nil
}

// Pause stops the process with SIGSTOP: it keeps its connections and data
// but answers nothing until Resume.
func (p *RedisProcess) Pause() {
	p.tb.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		p.tb.Fatalf("SIGSTOP redis-server: %v", err)
	}
}

// Resume continues a paused process (SIGCONT).
func (p *RedisProcess) Resume() {
	p.tb.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		p.tb.Fatalf("SIGCONT redis-server: %v", err)
	}
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(tb testing.TB) int {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("listen: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// createDropped runs create (with a fresh name in place of %s) on the
// Postgres at base, arranges for drop to run when the test ends, and
// returns the name. It fails the test, saying how to start Postgres, when
// it cannot connect.
func createDropped(tb testing.TB, base, create, drop string) string {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin, err := pgx.Connect(ctx, base)
	if err != nil {
		tb.Fatalf("cannot reach Postgres at %s (start it: `pg_ctlcluster --skip-systemctl-redirect 15 main start`, or set DATABASE_URL): %v", base, err)
	}
	defer admin.Close(context.Background())
	name := "t_" + random(6)
	if _, err := admin.Exec(ctx, fmt.Sprintf(create, name)); err != nil {
		tb.Fatalf("%s: %v", fmt.Sprintf(create, name), err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if c, err := pgx.Connect(ctx, base); err == nil {
			_, _ = c.Exec(ctx, fmt.Sprintf(drop, name))
			_ = c.Close(ctx)
		}
	})
	return name
}
