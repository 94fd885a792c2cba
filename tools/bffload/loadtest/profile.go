package loadtest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Profile is the CPU and allocation profile of one scenario run against
// BFF process of its own.
type Profile struct {
	// Name is the scenario, Requests how many requests it made.
	Name     string
	Requests int
	RPS      float64
	// Hits counts responses served from the screen cache.
	Hits int
	// CPUPerRequest is the server's CPU time per request (client
	// samples excluded); AllocBytes and AllocObjects are the server's
	// allocations per request.
	CPUPerRequest            time.Duration
	AllocBytes, AllocObjects float64
	// CPUTop, CPUCum, AllocSpaceTop and AllocObjectsTop are `go tool
	// pprof -top` excerpts (CPUCum sorted by cumulative time).
	CPUTop, CPUCum, AllocSpaceTop, AllocObjectsTop string
}

// ProfileIgnore is the pprof -ignore expression that drops samples that
// are not the BFF's work: runtime/pprof's own writer (the profile is
// taken by the server while it serves the load).
const ProfileIgnore = `runtime/pprof`

// ProfileProcess starts the BFF binary bin (`bin serve`) as a process of
// its own with the environment of getenv and these overrides: rate limits
// and payment workers off, no migrations, CACHE_TIMEOUT=1s, a free
// loopback HTTP_ADDR and METRICS_ADDR (the admin port serves
// /debug/pprof), allocations sampled every 64 KiB. It then profiles two
// scenarios through it over loopback HTTP: hot homeScreen reads and keyed
// updateShippingAddress mutations, d each, conc workers. The server's CPU
// profile and two allocs profiles around each scenario are fetched over
// HTTP, written to dir and summarized with `go tool pprof` (the go command
// must be on PATH).
func (r *Runner) ProfileProcess(ctx context.Context, bin string, getenv func(string) string, dir string, conc int, d time.Duration) ([]*Profile, error) {
	httpAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	adminAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	over := map[string]string{"APP_ENV": "development", "HTTP_ADDR": httpAddr, "METRICS_ADDR": adminAddr, "LOG_LEVEL": "error", "PAYMENT_WORKERS": "0",
		"RATE_LIMIT_QUERIES_PER_SECOND": "0", "RATE_LIMIT_MUTATIONS_PER_SECOND": "0", "MIGRATE_ON_START": "false",
		// A loaded machine must not trip the cache's circuit breaker here:
		// the point is the CPU and allocations of the hit path.
		"CACHE_TIMEOUT": "1s",
		"GODEBUG":       "memprofilerate=65536"}
	env := os.Environ()
	for _, k := range []string{"DATABASE_URL", "REDIS_URL", "APP_ENV", "SESSION_SECRET"} {
		if v := getenv(k); v != "" {
			env = append(env, k+"="+v)
		}
	}
	for k, v := range over {
		env = append(env, k+"="+v)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	logf, err := os.Create(filepath.Join(dir, "bff.log"))
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command(bin, "serve")
	cmd.Env, cmd.Stdout, cmd.Stderr = env, logf, logf
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	}()
	base, admin := "http://"+httpAddr, "http://"+adminAddr
	if err := waitReady(ctx, base+"/readyz", exited); err != nil {
		return nil, err
	}

	in := *r
	in.Base, in.PID, in.Ceiling, in.Log = base, cmd.Process.Pid, "", nil
	in.Client = NewHTTPClient(conc)
	if err := in.Warm(ctx); err != nil {
		return nil, err
	}
	var out []*Profile
	for _, sc := range []struct {
		name string
		run  func() (*Result, error)
	}{
		{"homeScreen, hot cache", func() (*Result, error) { return in.Home(ctx, conc, d, false, false) }},
		{"homeScreen miss (Cache-Control: no-cache)", func() (*Result, error) { return in.Home(ctx, conc, d, true, false) }},
		{"updateShippingAddress, keyed", func() (*Result, error) { _, w, err := in.Mixed(ctx, conc, d, 100); return w, err }},
	} {
		slug := strings.Trim(strings.Fields(sc.name)[0], ",")
		if strings.Contains(sc.name, "miss") {
			slug += "-miss"
		}
		cpuFile, base, after := filepath.Join(dir, slug+".cpu.pprof"), filepath.Join(dir, slug+".allocs0.pprof"), filepath.Join(dir, slug+".allocs.pprof")
		if err := fetch(ctx, admin+"/debug/pprof/allocs?gc=1", base); err != nil {
			return nil, err
		}
		cpuDone := make(chan error, 1)
		secs := int((d + time.Second - 1) / time.Second)
		go func() { cpuDone <- fetch(ctx, fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", admin, secs), cpuFile) }()
		res, err := sc.run()
		if cerr := <-cpuDone; err == nil && cerr != nil {
			err = fmt.Errorf("cpu profile: %w", cerr)
		}
		if err != nil {
			return nil, err
		}
		if res.Errors > 0 {
			return nil, fmt.Errorf("profile %s: %d errors, e.g. %v", sc.name, res.Errors, res.ErrorSamples)
		}
		if err := fetch(ctx, admin+"/debug/pprof/allocs?gc=1", after); err != nil {
			return nil, err
		}
		p := &Profile{Name: sc.name, Requests: res.Requests, RPS: res.RPS, Hits: res.Hits}
		var total float64
		if p.CPUTop, total, err = pprofTop("-sample_index=cpu", cpuFile); err != nil {
			return nil, err
		}
		p.CPUPerRequest = time.Duration(total / float64(res.Requests))
		if p.CPUCum, _, err = pprofTop("-sample_index=cpu", "-cum", "-nodecount=40", cpuFile); err != nil {
			return nil, err
		}
		if p.AllocSpaceTop, total, err = pprofTop("-sample_index=alloc_space", "-base", base, after); err != nil {
			return nil, err
		}
		p.AllocBytes = total / float64(res.Requests)
		if p.AllocObjectsTop, total, err = pprofTop("-sample_index=alloc_objects", "-base", base, after); err != nil {
			return nil, err
		}
		p.AllocObjects = total / float64(res.Requests)
		out = append(out, p)
	}
	return out, nil
}

// freeAddr returns a loopback address with a port that was free a moment ago.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// waitReady polls url until it answers 200, the process exits, or 30 s pass.
func waitReady(ctx context.Context, url string, exited <-chan error) error {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case err := <-exited:
			return fmt.Errorf("profiled BFF exited before it was ready: %v", err)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("profiled BFF not ready at %s after 30 s", url)
}

// fetch writes the body of GET url to file.
func fetch(ctx context.Context, url, file string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("GET %s: %s: %s", url, resp.Status, b)
	}
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// totalRe matches pprof's "Showing nodes accounting for X, P% of T total".
var totalRe = regexp.MustCompile(`of ([0-9.]+)([a-zA-Zµ]*) total`)

// pprofTop runs `go tool pprof -top` without the client's samples and
// returns its first lines and the total of the remaining samples (CPU in
// nanoseconds, bytes, or objects).
func pprofTop(args ...string) (string, float64, error) {
	full := append([]string{"tool", "pprof", "-top", "-nodecount=15", "-ignore=" + ProfileIgnore}, args...)
	cmd := exec.Command("go", full...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	b, err := cmd.Output()
	if err != nil {
		return "", 0, fmt.Errorf("go %s: %w: %s", strings.Join(full, " "), err, stderr.String())
	}
	text := string(b)
	var keep []string
	for _, l := range strings.Split(text, "\n") {
		if strings.HasPrefix(l, "File:") || strings.HasPrefix(l, "Build ID:") || strings.HasPrefix(l, "Time:") ||
			strings.HasPrefix(l, "Type:") || strings.HasPrefix(l, "Duration:") || strings.HasPrefix(l, "Active filters") ||
			strings.HasPrefix(l, "   ignore=") || strings.HasPrefix(l, "Dropped") {
			continue
		}
		keep = append(keep, l)
	}
	m := totalRe.FindStringSubmatch(text)
	if m == nil {
		return strings.Join(keep, "\n"), 0, nil
	}
	v, _ := strconv.ParseFloat(m[1], 64)
	return strings.TrimSpace(strings.Join(keep, "\n")), v * unit(m[2]), nil
}

func unit(u string) float64 {
	switch u {
	case "ns":
		return 1
	case "us", "µs":
		return 1e3
	case "ms":
		return 1e6
	case "s":
		return 1e9
	case "mins":
		return 60e9
	case "B", "":
		return 1
	case "kB", "k":
		return 1 << 10
	case "MB", "M":
		return 1 << 20
	case "GB", "G":
		return 1 << 30
	}
	return 1
}
