package cache

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

// redisURL is the shared test Redis.
func redisURL() string {
	if u := os.Getenv("REDIS_URL"); u != "" {
		return u
	}
	return "redis://127.0.0.1:6379/0"
}

// newClient connects to url and fails the test when Redis is unreachable.
func newClient(tb testing.TB, url string) *redis.Client {
	tb.Helper()
	opt, err := redis.ParseURL(url)
	require.NoError(tb, err)
	opt.ContextTimeoutEnabled = true
	rdb := redis.NewClient(opt)
	tb.Cleanup(func() { _ = rdb.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := rdb.Ping(ctx).Err(); err != nil {
		tb.Fatalf("redis at %s unreachable (%v): start it with `redis-server --daemonize yes` or set REDIS_URL", url, err)
	}
	return rdb
}

// uniquePrefix returns a key prefix no other test uses.
func uniquePrefix(tb testing.TB) string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	name := strings.NewReplacer("/", "_", "{", "_", "}", "_", " ", "_").Replace(tb.Name())
	return "test:" + name + ":" + hex.EncodeToString(b) + ":"
}

// env is one test's cache on the shared Redis.
type env struct {
	rdb    *redis.Client
	cache  *Cache
	prefix string
}

// newEnv returns a Cache with a unique prefix on the shared Redis; its keys
// are deleted when the test ends.
func newEnv(tb testing.TB, cfg Config) env {
	tb.Helper()
	rdb := newClient(tb, redisURL())
	cfg.Prefix = uniquePrefix(tb)
	c, err := New(rdb, cfg, nil)
	require.NoError(tb, err)
	tb.Cleanup(func() { deletePrefix(rdb, cfg.Prefix) })
	return env{rdb: rdb, cache: c, prefix: cfg.Prefix}
}

func deletePrefix(rdb *redis.Client, prefix string) {
	ctx := context.Background()
	iter := rdb.Scan(ctx, 0, prefix+"*", 1000).Iterator()
	var keys []string
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
	}
	if len(keys) > 0 {
		rdb.Del(ctx, keys...)
	}
}

// counter is a loader that counts its calls and returns value().
type counter[T any] struct {
	calls atomic.Int64
	value func(n int64) T
}

func (l *counter[T]) load(ctx context.Context) (T, error) {
	n := l.calls.Add(1)
	return l.value(n), nil
}

// redisProcess is a redis-server the test owns, on a free port.
type redisProcess struct {
	tb   testing.TB
	port int
	dir  string
	cmd  *exec.Cmd
}

const redisServerBin = "/usr/bin/redis-server"

// startRedis starts a private redis-server (no automatic persistence; an
// explicit SAVE writes dump.rdb in its directory, loaded on restart).
func startRedis(tb testing.TB) *redisProcess {
	tb.Helper()
	if _, err := os.Stat(redisServerBin); err != nil {
		tb.Fatalf("%s not found (%v): install it with `apt-get install redis-server`", redisServerBin, err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(tb, err)
	port := l.Addr().(*net.TCPAddr).Port
	require.NoError(tb, l.Close())
	p := &redisProcess{tb: tb, port: port, dir: tb.TempDir()}
	p.start()
	tb.Cleanup(p.kill)
	return p
}

func (p *redisProcess) url() string { return fmt.Sprintf("redis://127.0.0.1:%d/0", p.port) }

func (p *redisProcess) start() {
	p.tb.Helper()
	p.cmd = exec.Command(redisServerBin, "--port", strconv.Itoa(p.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", p.dir)
	require.NoError(p.tb, p.cmd.Start())
	deadline := time.Now().Add(5 * time.Second)
	for {
		conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", p.port), 100*time.Millisecond)
		if err == nil {
			_, err = conn.Write([]byte("PING\r\n"))
			buf := make([]byte, 16)
			if err == nil {
				_ = conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
				var n int
				n, err = conn.Read(buf)
				if err == nil && !strings.HasPrefix(string(buf[:n]), "+PONG") {
					err = fmt.Errorf("reply %q", buf[:n])
				}
			}
			_ = conn.Close()
			if err == nil {
				return
			}
		}
		if time.Now().After(deadline) {
			p.tb.Fatalf("redis-server on port %d did not start: %v", p.port, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// kill stops the process at once (SIGKILL), as a crash would.
func (p *redisProcess) kill() {
	if p.cmd == nil || p.cmd.Process == nil {
		return
	}
	_ = p.cmd.Process.Kill()
	_ = p.cmd.Wait()
	p.cmd = nil
}
