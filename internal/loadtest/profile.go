package loadtest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/shop/bff/internal/config"
	"github.com/shop/bff/internal/server"
)

// Profile is the CPU and allocation profile of one scenario run against
// an in-process BFF.
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

// ProfileIgnore is the pprof -ignore expression that drops the load
// generator's own samples from an in-process profile: the client's
// goroutines run loadtest code or net/http's persistConn loops (and
// runtime/pprof's writer is the profiler's own).
const ProfileIgnore = `loadtest\.|persistConn|runtime/pprof`

// ProfileInProcess starts a BFF inside this process with the
// configuration of getenv (rate limits and payment workers off, no
// migrations, CACHE_TIMEOUT=1s), then profiles two scenarios through it over loopback
// HTTP: hot homeScreen reads and keyed updateShippingAddress mutations,
// d each, conc workers. Profiles are written to dir and summarized with
// `go tool pprof` (the go command must be on PATH).
func (r *Runner) ProfileInProcess(ctx context.Context, getenv func(string) string, dir string, conc int, d time.Duration) ([]*Profile, error) {
	over := map[string]string{"HTTP_ADDR": "127.0.0.1:0", "LOG_LEVEL": "error", "PAYMENT_WORKERS": "0",
		"RATE_LIMIT_QUERIES_PER_SECOND": "0", "RATE_LIMIT_MUTATIONS_PER_SECOND": "0", "MIGRATE_ON_START": "false", "METRICS_ADDR": "",
		// A loaded machine must not trip the cache's circuit breaker here:
		// the point is the CPU and allocations of the hit path.
		"CACHE_TIMEOUT": "1s"}
	cfg, err := config.Load(func(k string) string {
		if v, ok := over[k]; ok {
			return v
		}
		return getenv(k)
	})
	if err != nil {
		return nil, err
	}
	runtime.MemProfileRate = 64 << 10
	defer func() { runtime.MemProfileRate = 512 * 1024 }()
	srv, err := server.New(ctx, cfg, server.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		return nil, fmt.Errorf("in-process server: %w", err)
	}
	defer srv.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	sctx, stop := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(sctx, ln) }()
	defer func() { stop(); <-served }()

	in := *r
	in.Base, in.PID, in.Ceiling, in.Log = "http://"+ln.Addr().String(), 0, "", nil
	in.Client = NewHTTPClient(conc)
	if err := in.Warm(ctx); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var out []*Profile
	for _, sc := range []struct {
		name string
		run  func() (*Result, error)
	}{
		{"homeScreen, hot cache", func() (*Result, error) { return in.Home(ctx, conc, d, false, false) }},
		{"updateShippingAddress, keyed", func() (*Result, error) { _, w, err := in.Mixed(ctx, conc, d, 100); return w, err }},
	} {
		slug := strings.Fields(sc.name)[0]
		slug = strings.Trim(slug, ",")
		cpuFile, base, after := filepath.Join(dir, slug+".cpu.pprof"), filepath.Join(dir, slug+".allocs0.pprof"), filepath.Join(dir, slug+".allocs.pprof")
		if err := writeAllocs(base); err != nil {
			return nil, err
		}
		f, err := os.Create(cpuFile)
		if err != nil {
			return nil, err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			f.Close()
			return nil, err
		}
		res, err := sc.run()
		pprof.StopCPUProfile()
		f.Close()
		if err != nil {
			return nil, err
		}
		if res.Errors > 0 {
			return nil, fmt.Errorf("profile %s: %d errors, e.g. %v", sc.name, res.Errors, res.ErrorSamples)
		}
		if err := writeAllocs(after); err != nil {
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

func writeAllocs(file string) error {
	runtime.GC()
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	defer f.Close()
	return pprof.Lookup("allocs").WriteTo(f, 0)
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
