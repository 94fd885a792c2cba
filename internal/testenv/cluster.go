package testenv

import (
	"bufio"
	"context"
	"fmt"
	mathrand "math/rand/v2"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"
)

// RedisCluster is a Redis Cluster the test owns: redis-server processes
// in cluster mode on free ports, joined with `redis-cli --cluster create`.
// Nodes time out after one second, so a killed master's replica takes
// over within a few seconds.
type RedisCluster struct {
	tb    testing.TB
	Nodes []*RedisProcess
}

// StartRedisCluster starts masters×(1+replicas) nodes and creates the
// cluster; it returns once every node reports cluster_state:ok. The
// processes are killed when the test ends.
func StartRedisCluster(tb testing.TB, masters, replicas int) *RedisCluster {
	tb.Helper()
	for _, bin := range []string{"redis-server", "redis-cli"} {
		if _, err := exec.LookPath(bin); err != nil {
			tb.Fatalf("%s not found (%v): install it with `apt-get install redis-server`", bin, err)
		}
	}
	rc := &RedisCluster{tb: tb}
	args := []string{"--cluster", "create"}
	for range masters * (1 + replicas) {
		p := &RedisProcess{tb: tb, Port: clusterPort(tb), dir: tb.TempDir(), extra: []string{
			"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", "1000", "--cluster-replica-validity-factor", "0",
		}}
		p.Start()
		tb.Cleanup(p.Kill)
		rc.Nodes = append(rc.Nodes, p)
		args = append(args, p.Addr())
	}
	args = append(args, "--cluster-replicas", strconv.Itoa(replicas), "--cluster-yes")
	if out, err := exec.Command("redis-cli", args...).CombinedOutput(); err != nil {
		tb.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	rc.WaitHealthy(30 * time.Second)
	return rc
}

// clusterPort returns a free port whose cluster bus port (10000 higher)
// is free too; Redis Cluster refuses ports above 55535.
func clusterPort(tb testing.TB) int {
	tb.Helper()
	for range 1000 {
		p := 20000 + mathrand.IntN(35000)
		a, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			continue
		}
		b, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p+10000))
		_ = a.Close()
		if err != nil {
			continue
		}
		_ = b.Close()
		return p
	}
	tb.Fatal("no free port pair for a Redis Cluster node")
	return 0
}

// Addrs is the comma-separated list of the nodes' host:port (REDIS_URL).
func (rc *RedisCluster) Addrs() string {
	a := make([]string, 0, len(rc.Nodes))
	for _, n := range rc.Nodes {
		if n.cmd != nil {
			a = append(a, n.Addr())
		}
	}
	return strings.Join(a, ",")
}

// Client returns a cluster client of the test, closed when it ends.
func (rc *RedisCluster) Client() *redis.ClusterClient {
	c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: strings.Split(rc.Addrs(), ",")})
	rc.tb.Cleanup(func() { _ = c.Close() })
	return c
}

// MasterOf returns the live node that is master of key's slot.
func (rc *RedisCluster) MasterOf(key string) *RedisProcess {
	rc.tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, n := range rc.Nodes {
		if n.cmd == nil {
			continue
		}
		c := redis.NewClient(&redis.Options{Addr: n.Addr()})
		slot, err := c.ClusterKeySlot(ctx, key).Result()
		if err != nil {
			_ = c.Close()
			continue
		}
		slots, err := c.ClusterSlots(ctx).Result()
		_ = c.Close()
		if err != nil {
			continue
		}
		for _, s := range slots {
			if int64(s.Start) <= slot && slot <= int64(s.End) && len(s.Nodes) > 0 {
				for _, m := range rc.Nodes {
					if m.Addr() == s.Nodes[0].Addr && m.cmd != nil {
						return m
					}
				}
			}
		}
	}
	rc.tb.Fatalf("no live master for key %q", key)
	return nil
}

// WaitHealthy waits until every live node reports cluster_state:ok and
// agrees that all 16384 slots are served by live masters.
func (rc *RedisCluster) WaitHealthy(limit time.Duration) {
	rc.tb.Helper()
	deadline := time.Now().Add(limit)
	for {
		err := rc.healthy()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			rc.tb.Fatalf("redis cluster not healthy after %s: %v", limit, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (rc *RedisCluster) healthy() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	live := map[string]bool{}
	for _, n := range rc.Nodes {
		if n.cmd != nil {
			live[n.Addr()] = true
		}
	}
	for _, n := range rc.Nodes {
		if n.cmd == nil {
			continue
		}
		c := redis.NewClient(&redis.Options{Addr: n.Addr()})
		info, err := c.ClusterInfo(ctx).Result()
		if err != nil {
			_ = c.Close()
			return err
		}
		if !strings.Contains(info, "cluster_state:ok") {
			_ = c.Close()
			return fmt.Errorf("%s: cluster_state not ok", n.Addr())
		}
		slots, err := c.ClusterSlots(ctx).Result()
		_ = c.Close()
		if err != nil {
			return err
		}
		covered := 0
		for _, s := range slots {
			if len(s.Nodes) == 0 || !live[s.Nodes[0].Addr] {
				return fmt.Errorf("%s: slots %d-%d on a dead master", n.Addr(), s.Start, s.End)
			}
			covered += s.End - s.Start + 1
		}
		if covered != 16384 {
			return fmt.Errorf("%s: %d slots covered", n.Addr(), covered)
		}
	}
	return nil
}

// PrivateDatabase creates a database of its own on the test Postgres
// (PgBouncer routes by database name, and a pooler in transaction mode
// cannot carry a per-test search_path) and returns its direct URL. It is
// dropped when the test ends.
func PrivateDatabase(tb testing.TB) string {
	tb.Helper()
	base := DatabaseURL()
	name := createDropped(tb, base, "CREATE DATABASE %s", "DROP DATABASE IF EXISTS %s WITH (FORCE)")
	u, err := url.Parse(base)
	if err != nil {
		tb.Fatalf("DATABASE_URL: %v", err)
	}
	u.Path = "/" + name
	return u.String()
}

// PgBouncer is a pgbouncer process the test owns, in transaction pooling
// mode, in front of one database.
type PgBouncer struct {
	tb   testing.TB
	Port int
	dir  string
	db   *url.URL
	cmd  *exec.Cmd
}

// StartPgBouncer starts pgbouncer (pool_mode=transaction, poolSize
// server connections) in front of the database of dbURL. It is killed
// when the test ends.
func StartPgBouncer(tb testing.TB, dbURL string, poolSize int) *PgBouncer {
	tb.Helper()
	if _, err := PgBouncerBinary(); err != nil {
		tb.Fatal(err)
	}
	u, err := url.Parse(dbURL)
	if err != nil {
		tb.Fatalf("database URL: %v", err)
	}
	dir, err := os.MkdirTemp("", "pgbouncer-")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = os.RemoveAll(dir) })
	_ = os.Chmod(dir, 0o755) // pgbouncer drops root privileges
	pb := &PgBouncer{tb: tb, Port: FreePort(tb), dir: dir, db: u}
	user := u.User.Username()
	if user == "" {
		user = "postgres"
	}
	host, port := u.Hostname(), u.Port()
	if port == "" {
		port = "5432"
	}
	name := strings.TrimPrefix(u.Path, "/")
	ini := fmt.Sprintf(`[databases]
%s = host=%s port=%s dbname=%s user=%s

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = %d
unix_socket_dir =
auth_type = trust
auth_file = %s
pool_mode = transaction
default_pool_size = %d
max_client_conn = 500
server_reset_query =
ignore_startup_parameters = extra_float_digits
logfile =
pidfile =
`, name, host, port, name, user, pb.Port, filepath.Join(dir, "users.txt"), poolSize)
	for file, body := range map[string]string{"pgbouncer.ini": ini, "users.txt": fmt.Sprintf("%q \"\"\n", user)} {
		if err := os.WriteFile(filepath.Join(dir, file), []byte(body), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	pb.Start()
	tb.Cleanup(pb.Kill)
	return pb
}

// PgBouncerBinary finds pgbouncer (Debian installs it in /usr/sbin).
func PgBouncerBinary() (string, error) {
	if p, err := exec.LookPath("pgbouncer"); err == nil {
		return p, nil
	}
	if _, err := os.Stat("/usr/sbin/pgbouncer"); err == nil {
		return "/usr/sbin/pgbouncer", nil
	}
	return "", fmt.Errorf("pgbouncer not found: install it with `apt-get install pgbouncer` (scripts/services.sh does)")
}

// URL is the connection string through the pooler, with a query mode
// that uses no named prepared statements (transaction pooling moves a
// client between server connections).
func (pb *PgBouncer) URL() string {
	u := *pb.db
	u.Host = fmt.Sprintf("127.0.0.1:%d", pb.Port)
	q := u.Query()
	q.Set("default_query_exec_mode", "cache_describe")
	u.RawQuery = q.Encode()
	return u.String()
}

// Start starts pgbouncer (again, after Kill) and waits until it accepts
// connections.
func (pb *PgBouncer) Start() {
	pb.tb.Helper()
	bin, _ := PgBouncerBinary()
	args := []string{filepath.Join(pb.dir, "pgbouncer.ini")}
	if os.Geteuid() == 0 {
		args = append([]string{"-u", "postgres"}, args...)
	}
	pb.cmd = exec.Command(bin, args...)
	logf, err := os.OpenFile(filepath.Join(pb.dir, "pgbouncer.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		pb.tb.Fatal(err)
	}
	defer logf.Close()
	pb.cmd.Stderr = logf // pgbouncer logs to stderr without a logfile
	if err := pb.cmd.Start(); err != nil {
		pb.tb.Fatalf("start pgbouncer: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		c, err := pgx.Connect(ctx, pb.URL())
		if err == nil {
			err = c.Ping(ctx)
			_ = c.Close(ctx)
		}
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			pb.tb.Fatalf("pgbouncer on port %d did not start: %v\n%s", pb.Port, err, pb.Log())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Log returns the last lines of pgbouncer's log.
func (pb *PgBouncer) Log() string {
	f, err := os.Open(filepath.Join(pb.dir, "pgbouncer.log"))
	if err != nil {
		return ""
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > 40 {
			lines = lines[1:]
		}
	}
	return strings.Join(lines, "\n")
}

// Kill stops pgbouncer at once (SIGKILL).
func (pb *PgBouncer) Kill() {
	if pb.cmd == nil || pb.cmd.Process == nil {
		return
	}
	_ = pb.cmd.Process.Kill()
	_ = pb.cmd.Wait()
	pb.cmd = nil
}
