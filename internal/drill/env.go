package drill

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// freePort returns a TCP port of 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// process is a child process the drill starts, kills and restarts.
type process struct {
	name string
	bin  string
	args []string
	env  []string
	log  string
	cmd  *exec.Cmd
	done chan struct{}
}

func (p *process) start() error {
	f, err := os.OpenFile(p.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(p.bin, p.args...)
	cmd.Env = append(os.Environ(), p.env...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		f.Close()
		return fmt.Errorf("start %s: %w", p.name, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); f.Close(); close(done) }()
	p.cmd, p.done = cmd, done
	return nil
}

func (p *process) signal(s syscall.Signal) error {
	if p.cmd == nil {
		return fmt.Errorf("%s is not running", p.name)
	}
	return p.cmd.Process.Signal(s)
}

// kill ends the process at once (SIGKILL), as a crash would.
func (p *process) kill() {
	if p.cmd == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGCONT)
	_ = p.cmd.Process.Kill()
	<-p.done
	p.cmd = nil
}

// stop ends the process with SIGTERM, and SIGKILL after grace.
func (p *process) stop(grace time.Duration) {
	if p.cmd == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGCONT)
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	p.cmd = nil
}

// exited reports whether the process ended by itself.
func (p *process) exited() bool {
	if p.cmd == nil {
		return true
	}
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// waitTCP waits until addr accepts connections, or the process exits.
func waitTCP(ctx context.Context, p *process, addr string) error {
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		if p.exited() {
			return fmt.Errorf("%s exited (see %s)", p.name, p.log)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s did not listen on %s: %w", p.name, addr, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// waitReady waits until base/readyz answers 200, or the process exits.
func waitReady(ctx context.Context, p *process, base string) error {
	c := &http.Client{Timeout: time.Second}
	for {
		r, err := c.Get(base + "/readyz")
		if err == nil {
			r.Body.Close()
			if r.StatusCode == http.StatusOK {
				return nil
			}
		}
		if p.exited() {
			return fmt.Errorf("%s exited (see %s)", p.name, p.log)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not ready at %s: %w", p.name, base, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// newRedis returns a private redis-server on a free port that keeps
// nothing on disk (not started).
func newRedis(dir string) (*process, int, error) {
	port, err := freePort()
	if err != nil {
		return nil, 0, err
	}
	return &process{name: "redis-server", bin: "redis-server",
		args: []string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir},
		log:  filepath.Join(dir, "redis.log")}, port, nil
}

// database is a private database on the Postgres of adminURL.
type database struct {
	adminURL string
	name     string
	url      *url.URL
}

// createDatabase creates a database with a unique name.
func createDatabase(ctx context.Context, adminURL string) (*database, error) {
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return nil, fmt.Errorf("cannot reach Postgres at %s (start it with `make services`, or set DATABASE_URL): %w", adminURL, err)
	}
	defer conn.Close(context.Background())
	name := "drill_" + randomHex(6)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		return nil, fmt.Errorf("create database: %w", err)
	}
	u, err := url.Parse(adminURL)
	if err != nil {
		return nil, err
	}
	u.Path = "/" + name
	return &database{adminURL: adminURL, name: name, url: u}, nil
}

// URL is the database's URL, through host (host:port) when not empty.
func (d *database) URL(host string) string {
	u := *d.url
	if host != "" {
		u.Host = host
	}
	return u.String()
}

// drop drops the database, closing its connections.
func (d *database) drop() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, d.adminURL)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+d.name+" WITH (FORCE)")
	return err
}

// truth reads the database's state at the end of the run.
func (d *database) truth(ctx context.Context) (Truth, error) {
	t := Truth{OrderCustomer: map[string]string{}, CustomerEvents: map[string][]int64{}, PlacedByKey: map[string]int{}}
	conn, err := pgx.Connect(ctx, d.URL(""))
	if err != nil {
		return t, err
	}
	defer conn.Close(context.Background())
	rows, err := conn.Query(ctx, `SELECT id::text, customer_id::text, coalesce(ship_line2, '') FROM orders`)
	if err != nil {
		return t, err
	}
	for rows.Next() {
		var id, cust, line2 string
		if err := rows.Scan(&id, &cust, &line2); err != nil {
			return t, err
		}
		t.OrderCustomer[id] = cust
		if len(line2) > 2 && line2[:2] == placePrefix {
			t.PlacedByKey[line2]++
		}
	}
	if err := rows.Err(); err != nil {
		return t, err
	}
	rows, err = conn.Query(ctx, `SELECT position, customer_id::text FROM order_events ORDER BY position`)
	if err != nil {
		return t, err
	}
	for rows.Next() {
		var pos int64
		var cust string
		if err := rows.Scan(&pos, &cust); err != nil {
			return t, err
		}
		t.CustomerEvents[cust] = append(t.CustomerEvents[cust], pos)
	}
	if err := rows.Err(); err != nil {
		return t, err
	}
	t.Commits, err = ReadCommits(ctx, conn, nil)
	return t, err
}

// lastPositions returns the newest event position of each customer.
func (d *database) lastPositions(ctx context.Context) (map[string]int64, error) {
	conn, err := pgx.Connect(ctx, d.URL(""))
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.Background())
	rows, err := conn.Query(ctx, `SELECT customer_id::text, max(position) FROM order_events GROUP BY 1`)
	if err != nil {
		return nil, err
	}
	out := map[string]int64{}
	for rows.Next() {
		var c string
		var p int64
		if err := rows.Scan(&c, &p); err != nil {
			return nil, err
		}
		out[c] = p
	}
	return out, rows.Err()
}

// progress returns the log of a run: each line is prefixed with what and
// the seconds since the run began.
func progress(out io.Writer, what string) func(format string, args ...any) {
	began := time.Now()
	return func(format string, args ...any) {
		fmt.Fprintf(out, "%s %6.1fs  %s\n", what, time.Since(began).Seconds(), fmt.Sprintf(format, args...))
	}
}

// prepare creates the run's folder and its private database; drop removes
// the database (a failure is logged).
func prepare(ctx context.Context, dir, adminURL string, logf func(string, ...any)) (db *database, drop func(), err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, nil, err
	}
	if db, err = createDatabase(ctx, adminURL); err != nil {
		return nil, nil, err
	}
	return db, func() {
		if err := db.drop(); err != nil {
			logf("drop database %s: %v", db.name, err)
		}
	}, nil
}

// seed fills the database at dbURL with the demo data of customers
// customers, through the served binary's seed command.
func seed(bin, dbURL, dir string, customers int) error {
	p := &process{name: "bff seed", bin: bin, args: []string{"seed", "--customers", strconv.Itoa(customers)},
		env: []string{"DATABASE_URL=" + dbURL, "APP_ENV=development"}, log: filepath.Join(dir, "seed.log")}
	if err := p.start(); err != nil {
		return err
	}
	<-p.done
	if p.cmd.ProcessState.ExitCode() != 0 {
		return fmt.Errorf("bff seed failed (see %s)", p.log)
	}
	return nil
}
