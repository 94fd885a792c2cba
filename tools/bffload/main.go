// Command bffload drives a running BFF over real HTTP on loopback and
// writes the benchmarks page (docs/benchmarks.md, with SVG plots). `make
// bench` starts everything it needs and runs it; see docs/benchmarks.md
// for what each scenario measures.
//
//	bffload [flags]                      run the scenarios against -target
//	bffload -short                       a few seconds per scenario (CI smoke check)
//	bffload -ceiling-addr 127.0.0.1:P    serve the ceiling (one Redis GET per request) and nothing else
//
// Scenarios (-scenarios, comma-separated, default all): sweep (hot
// homeScreen at each -sweep concurrency, BFF and ceiling), wsweep (keyed
// updateShippingAddress at each -sweep concurrency), a (homeScreen,
// hot cache, 100 users), b (orderScreen, hot), c (homeScreen with
// Cache-Control: no-cache: every request misses), d (95% screen reads, 5%
// keyed updateShippingAddress, every read checked for staleness), e
// (-streams SSE streams, changes at -rate per second: commit-to-client
// latency, lost events, memory per idle stream), f (keyed placeOrder, one
// in ten replayed), profile (CPU and allocation profiles of a hot screen
// read and a keyed mutation through a BFF process that bffload starts
// from -bff, fetched from its /debug/pprof).
//
// Users are the customers of `bff seed --customers N`, signed in through
// POST /session (development mode). Only 127.0.0.1, localhost and ::1 are
// accepted as targets. Each scenario stops after -duration or -requests
// requests. The exit status is 1 when any request failed, a read was
// stale or an event was lost or duplicated (never because of timings), 2
// when the run could not be set up.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/shop/bff/tools/bffload/loadtest"
)

func main() {
	code, err := run(os.Args[1:], os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bffload:", err)
	}
	os.Exit(code)
}

type options struct {
	target, ceilingAddr, redisURL, databaseURL, out, profileDir, bffBin, command, scenarios string
	users, conc, requests, streams, pid, idleStreams, fanStreams                            int
	fanRates                                                                                []float64
	fanPhase, replayWindow                                                                  time.Duration
	duration, sweepDur, sseDur, profileDur                                                  time.Duration
	rate                                                                                    float64
	sweep                                                                                   []int
	short                                                                                   bool
}

func env(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func parse(args []string, stderr io.Writer) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("bffload", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.target, "target", "http://127.0.0.1:18080", "base URL of the running BFF (loopback only)")
	fs.StringVar(&o.ceilingAddr, "ceiling-addr", "", "serve the ceiling on this loopback address and do nothing else")
	fs.StringVar(&o.redisURL, "redis-url", env("REDIS_URL", "redis://127.0.0.1:6379/0"), "Redis of the BFF (the ceiling reads its stored responses there)")
	fs.StringVar(&o.databaseURL, "database-url", env("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/bff?sslmode=disable"), "Postgres of the BFF (for its version, and the profiled BFF)")
	fs.StringVar(&o.out, "out", "docs/benchmarks.md", "the Markdown report to write; plots go beside it")
	fs.StringVar(&o.profileDir, "profile-dir", "bin/bench-profiles", "where the profiles are written")
	fs.StringVar(&o.bffBin, "bff", "bin/bff", "the BFF binary the profile scenario starts (`bff serve`, on free loopback ports)")
	fs.StringVar(&o.command, "command", "bffload", "the command recorded in the report")
	fs.StringVar(&o.scenarios, "scenarios", "i,e,g,sweep,wsweep,psweep,msweep,a,b,c,d,f,profile", "scenarios to run (they run in this order: i and e first, on a server that has not yet been loaded, for the memory readings)")
	fs.IntVar(&o.users, "users", 100, "number of seeded customers to use (customer0001@example.com…)")
	fs.IntVar(&o.conc, "concurrency", 32, "closed-loop clients per scenario")
	fs.IntVar(&o.requests, "requests", 0, "at most this many requests per scenario (0: no bound)")
	fs.IntVar(&o.streams, "streams", 1000, "SSE streams of scenario e")
	fs.IntVar(&o.pid, "pid", 0, "the server's process id for RSS (0: the process listening on the target's port)")
	fs.DurationVar(&o.duration, "duration", 12*time.Second, "duration of each scenario")
	fs.DurationVar(&o.sweepDur, "sweep-duration", 3*time.Second, "duration of each point of the concurrency sweep")
	fs.DurationVar(&o.sseDur, "sse-duration", 20*time.Second, "how long scenario e makes changes")
	fs.DurationVar(&o.profileDur, "profile-duration", 6*time.Second, "duration of each profiled scenario")
	fs.Float64Var(&o.rate, "rate", 10, "order changes per second in scenario e")
	fs.IntVar(&o.idleStreams, "idle-streams", 10000, "idle streams of scenario i (memory per stream)")
	fs.IntVar(&o.fanStreams, "fanout-streams", 1000, "staff streams of every order in scenario g (fan-out)")
	fanRates := fs.String("fanout-rates", "10,100", "order changes per second of each phase of scenario g")
	fs.DurationVar(&o.fanPhase, "fanout-phase", 10*time.Second, "duration of each phase of scenario g")
	fs.DurationVar(&o.replayWindow, "replay-window", 0, "the BFF's STREAM_REPLAY_WINDOW: read the events table during the run and check it stays within the window (0: do not)")
	sweep := fs.String("sweep", "1,8,32,128", "concurrencies of the sweeps")
	fs.BoolVar(&o.short, "short", false, "smoke check: a few seconds per scenario, 100 streams, no profile")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if o.short {
		o.duration, o.sweepDur, o.sseDur = 1500*time.Millisecond, time.Second, 2*time.Second
		o.streams = min(o.streams, 100)
		o.idleStreams, o.fanStreams, o.fanPhase = min(o.idleStreams, 200), min(o.fanStreams, 50), 2*time.Second
		*fanRates = "10,50"
		*sweep = "4"
		o.scenarios = strings.ReplaceAll(o.scenarios, "profile", "")
	}
	for _, s := range strings.Split(*sweep, ",") {
		if s = strings.TrimSpace(s); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n < 1 {
				return nil, fmt.Errorf("-sweep: bad concurrency %q", s)
			}
			o.sweep = append(o.sweep, n)
		}
	}
	for _, s := range strings.Split(*fanRates, ",") {
		if s = strings.TrimSpace(s); s != "" {
			v, err := strconv.ParseFloat(s, 64)
			if err != nil || v <= 0 {
				return nil, fmt.Errorf("-fanout-rates: bad rate %q", s)
			}
			o.fanRates = append(o.fanRates, v)
		}
	}
	if o.users < 1 || o.conc < 1 || o.streams < 1 || o.rate <= 0 {
		return nil, errors.New("-users, -concurrency, -streams and -rate must be positive")
	}
	return o, nil
}

func run(args []string, stderr io.Writer) (int, error) {
	o, err := parse(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0, nil
		}
		return 2, err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if o.ceilingAddr != "" {
		return serveCeiling(ctx, o)
	}
	return bench(ctx, o, args, stderr)
}

func redisClient(u string) (*redis.Client, error) {
	opt, err := redis.ParseURL(u)
	if err != nil {
		return nil, fmt.Errorf("-redis-url: %w", err)
	}
	return redis.NewClient(opt), nil
}

// serveCeiling serves the ceiling handler until ctx ends.
func serveCeiling(ctx context.Context, o *options) (int, error) {
	if err := loadtest.CheckLoopback("http://" + o.ceilingAddr); err != nil {
		return 2, err
	}
	rdb, err := redisClient(o.redisURL)
	if err != nil {
		return 2, err
	}
	defer rdb.Close()
	ln, err := net.Listen("tcp", o.ceilingAddr)
	if err != nil {
		return 2, err
	}
	db, err := pgxpool.New(ctx, o.databaseURL)
	if err != nil {
		return 2, fmt.Errorf("-database-url: %w", err)
	}
	defer db.Close()
	mux := http.NewServeMux()
	mux.Handle("/ceiling", loadtest.CeilingHandler(rdb))
	mux.Handle("/ceiling-miss", loadtest.CeilingMissHandler(db, rdb))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { <-ctx.Done(); _ = srv.Close() }()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return 2, err
	}
	return 0, nil
}

// startCeiling runs this binary with -ceiling-addr on a free loopback port
// as a process of its own, and waits until it accepts connections.
func startCeiling(o *options) (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	addr := ln.Addr().String()
	ln.Close()
	exe, err := os.Executable()
	if err != nil {
		return "", nil, err
	}
	cmd := exec.Command(exe, "-ceiling-addr", addr, "-redis-url", o.redisURL, "-database-url", o.databaseURL)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		return "", nil, err
	}
	stop := func() { _ = cmd.Process.Signal(syscall.SIGTERM); _ = cmd.Wait() }
	for end := time.Now().Add(10 * time.Second); ; {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return "http://" + addr, stop, nil
		}
		if time.Now().After(end) {
			stop()
			return "", nil, fmt.Errorf("ceiling did not start on %s", addr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func has(list, s string) bool {
	for _, x := range strings.Split(list, ",") {
		if strings.TrimSpace(x) == s {
			return true
		}
	}
	return false
}

func bench(ctx context.Context, o *options, args []string, stderr io.Writer) (int, error) {
	if err := loadtest.CheckLoopback(o.target); err != nil {
		return 2, err
	}
	base := strings.TrimRight(o.target, "/")
	logf := func(format string, a ...any) { fmt.Fprintf(stderr, "bffload: "+format+"\n", a...) }
	started := time.Now()
	load0 := loadtest.LoadAverage()
	pid := o.pid
	if pid == 0 {
		u, _ := url.Parse(base)
		port, _ := strconv.Atoi(u.Port())
		if port == 0 {
			port = 80
		}
		if p, err := loadtest.PIDListening(port); err == nil {
			pid = p
		} else {
			logf("server RSS will not be reported: %v", err)
		}
	}
	maxConc := o.conc
	for _, c := range o.sweep {
		maxConc = max(maxConc, c)
	}
	r := &loadtest.Runner{Base: base, Client: loadtest.NewHTTPClient(maxConc), Duration: o.duration,
		MaxRequests: o.requests, PID: pid, Log: stderr}
	users, err := loadtest.Setup(ctx, r.Client, base, o.users)
	if err != nil {
		return 2, err
	}
	r.Users = users
	if r.Products, err = loadtest.Products(ctx, r.Client, base, users[0].Token); err != nil {
		return 2, err
	}
	rdb, err := redisClient(o.redisURL)
	if err != nil {
		return 2, err
	}
	defer rdb.Close()
	ceiling, stopCeiling, err := startCeiling(o)
	if err != nil {
		return 2, err
	}
	defer stopCeiling()
	r.Ceiling = ceiling
	rss0, _ := loadtest.RSSKiB(pid)
	logf("%d users signed in; server pid %d (RSS %d MiB); ceiling on %s; warming the cache", len(users), pid, rss0/1024, ceiling)
	if err := r.Warm(ctx); err != nil {
		return 2, err
	}
	if err := r.StoreCeiling(ctx, rdb); err != nil {
		return 2, err
	}

	var stopRetention func() *loadtest.RetentionResult
	if o.replayWindow > 0 {
		stopRetention = loadtest.SampleRetention(ctx, o.databaseURL, 5*time.Second)
	}
	rep := &loadtest.Report{Title: "Benchmarks", Command: o.command, Short: o.short, Started: started, Streams: o.streams,
		Args: "bffload " + quoteArgs(args)}
	fail := 0
	add := func(res *loadtest.Result, name, title string) *loadtest.Result {
		res.Name, res.Title = name, title
		rep.Results = append(rep.Results, res)
		fail += res.Failed()
		logf("%-14s %6d req %7.0f req/s  p50 %6s  p99 %6s  max %6s ms  errors %d  stale %d", name, res.Requests, res.RPS,
			loadtest.Ms(res.P50), loadtest.Ms(res.P99), loadtest.Ms(res.Max), res.Errors, res.Stale)
		for _, e := range res.ErrorSamples {
			logf("  e.g. %s", e)
		}
		return res
	}
	check := func(err error) (int, error) {
		if ctx.Err() != nil {
			return 2, ctx.Err()
		}
		return 2, err
	}

	if has(o.scenarios, "i") {
		settle := 3 * time.Second
		if o.short {
			settle = time.Second
		}
		res, err := r.Idle(ctx, o.idleStreams, settle)
		if err != nil {
			return check(err)
		}
		rep.Idle = res
		logf("idle: %d streams (%d failed): %.1f KiB RSS, %.1f KiB heap + stacks, %.2f goroutines per stream",
			res.Streams, res.OpenFailed, res.BytesPerStream/1024, res.HeapPerStream/1024, res.GoroutinesPerStream)
		fail += res.OpenFailed
	}
	if has(o.scenarios, "e") {
		logf("sse: opening %d streams", o.streams)
		settle := 2 * time.Second
		if o.short {
			settle = time.Second
		}
		s, err := r.SSE(ctx, loadtest.SSEConfig{Streams: o.streams, Rate: o.rate, Duration: o.sseDur, Settle: settle})
		if err != nil {
			return check(err)
		}
		rep.SSE = s
		s.Latency.Errors += s.OpenFailed
		add(s.Latency, "e-sse", fmt.Sprintf("SSE commit-to-client latency, %d streams, %.0f changes/s (receive − event `at`)", o.streams, o.rate))
		fail += s.Writes.Errors
		logf("sse: delivered %d, lost %d, duplicated %d; idle stream: %.1f KiB RSS, %.1f KiB heap, %.2f goroutines",
			s.Latency.Delivered, s.Latency.Lost, s.Latency.Duplicates, s.IdleBytesPerStream/1024, s.HeapPerStream/1024, s.GoroutinesPerStream)
	}
	if has(o.scenarios, "g") {
		res, err := r.Fanout(ctx, loadtest.FanoutConfig{Streams: o.fanStreams, Rates: o.fanRates, Phase: o.fanPhase, StaffEmail: "staff@example.com"})
		if err != nil {
			return check(err)
		}
		rep.Fanout = res
		fail += res.OpenFailed
		if !res.StalledDisconnected {
			// The short run sends too little to fill the kernel's buffers:
			// only the full run judges the stalled reader.
			if !o.short {
				fail++
			}
			logf("fanout: the stalled reader was not disconnected (after %d KiB)", res.StalledBytes/1024)
		}
		for _, ph := range res.Phases {
			l := ph.Latency
			add(l, fmt.Sprintf("g-fanout-%.0f", ph.Rate), fmt.Sprintf("fan-out: %d staff streams of every order, %.0f changes/s (commit-to-client, receive − event `at`)", res.Streams, ph.Rate))
			fail += ph.Writes.Errors
			logf("fanout %.0f/s: %.0f deliveries/s, lost %d, duplicated %d, p50 %s p99 %s ms (after the response: p50 %s p99 %s ms); writes p50 %s p99 %s ms",
				ph.Rate, ph.DeliveriesPerSecond, l.Lost, l.Duplicates, loadtest.Ms(l.P50), loadtest.Ms(l.P99), loadtest.Ms(ph.AfterResponse.P50), loadtest.Ms(ph.AfterResponse.P99),
				loadtest.Ms(ph.Writes.P50), loadtest.Ms(ph.Writes.P99))
		}
	}
	if has(o.scenarios, "sweep") {
		// The sweep measures hot reads: the changes of scenarios e and g
		// invalidated the users' screens, whose first reads would be misses.
		if err := r.Warm(ctx); err != nil {
			return check(err)
		}
		for _, c := range o.sweep {
			b, err := r.Home(ctx, c, o.sweepDur, false, false)
			if err != nil {
				return check(err)
			}
			cl, err := r.Home(ctx, c, o.sweepDur, false, true)
			if err != nil {
				return check(err)
			}
			fail += b.Failed() + cl.Failed()
			rep.Sweep = append(rep.Sweep, loadtest.SweepPoint{Concurrency: c, BFF: b.Summary, Ceiling: cl.Summary})
			logf("sweep c=%-4d BFF %7.0f req/s p99 %s ms | ceiling %7.0f req/s p99 %s ms", c, b.RPS, loadtest.Ms(b.P99), cl.RPS, loadtest.Ms(cl.P99))
		}
	}
	if has(o.scenarios, "wsweep") {
		for _, c := range o.sweep {
			c = min(c, len(users))
			if len(rep.WriteSweep) > 0 && rep.WriteSweep[len(rep.WriteSweep)-1].Concurrency == c {
				continue
			}
			_, w, err := r.Mixed(ctx, c, o.sweepDur, 100)
			if err != nil {
				return check(err)
			}
			fail += w.Failed()
			rep.WriteSweep = append(rep.WriteSweep, loadtest.SweepPoint{Concurrency: c, BFF: w.Summary})
			logf("wsweep c=%-4d %7.0f req/s p50 %s ms p99 %s ms errors %d", c, w.RPS, loadtest.Ms(w.P50), loadtest.Ms(w.P99), w.Errors)
		}
	}
	if has(o.scenarios, "psweep") {
		for _, c := range o.sweep {
			c0, s0, ok0 := loadtest.WALCounters(ctx, o.databaseURL)
			pl, rp, err := r.Place(ctx, c, o.sweepDur)
			if err != nil {
				return check(err)
			}
			fail += pl.Failed() + rp.Failed()
			pt := loadtest.SweepPoint{Concurrency: c, BFF: pl.Summary}
			if c1, s1, ok1 := loadtest.WALCounters(ctx, o.databaseURL); ok0 && ok1 && s1 > s0 {
				pt.CommitsPerSync = float64(c1-c0) / float64(s1-s0)
			}
			rep.PlaceSweep = append(rep.PlaceSweep, pt)
			logf("psweep c=%-4d %7.0f req/s p50 %s ms p99 %s ms errors %d", c, pl.RPS, loadtest.Ms(pl.P50), loadtest.Ms(pl.P99), pl.Errors)
		}
	}
	if has(o.scenarios, "msweep") {
		if err := r.Warm(ctx); err != nil {
			return check(err)
		}
		// Each mixed point runs as long as a scenario: its p99 of writes
		// (5% of the requests) is then a percentile of over a thousand
		// writes at 32 clients, not the fourth largest of a few hundred.
		mixDur := max(o.sweepDur, o.duration)
		for _, c := range o.sweep {
			rd, wr, err := r.Mixed(ctx, c, mixDur, 5)
			if err != nil {
				return check(err)
			}
			fail += rd.Failed() + wr.Failed()
			rep.MixedSweep = append(rep.MixedSweep, loadtest.MixedPoint{Concurrency: rd.Concurrency, Reads: rd.Summary, Writes: wr.Summary})
			logf("msweep c=%-4d reads %7.0f req/s p99 %s ms | writes %5.0f req/s p50 %s p99 %s ms | stale %d", c, rd.RPS, loadtest.Ms(rd.P99),
				wr.RPS, loadtest.Ms(wr.P50), loadtest.Ms(wr.P99), rd.Stale)
		}
		r.ReadHeaders = []string{"Cache-Control", "no-cache"}
		rd, wr, err := r.Mixed(ctx, o.conc, mixDur, 5)
		r.ReadHeaders = nil
		if err != nil {
			return check(err)
		}
		fail += rd.Failed() + wr.Failed()
		rep.MixedNoCache = &loadtest.MixedPoint{Concurrency: rd.Concurrency, Reads: rd.Summary, Writes: wr.Summary}
		logf("mixed, cache off, c=%d: reads %7.0f req/s p99 %s ms | writes %5.0f req/s p99 %s ms", o.conc, rd.RPS, loadtest.Ms(rd.P99), wr.RPS, loadtest.Ms(wr.P99))
	}
	var ceil *loadtest.Result
	ratio := func(res *loadtest.Result) {
		if ceil != nil && ceil.P99 > 0 {
			res.CeilingRatio = float64(res.P99) / float64(ceil.P99)
		}
	}
	var homeHot, orderHot, mixedReads *loadtest.Result
	if has(o.scenarios, "a") || has(o.scenarios, "b") || has(o.scenarios, "c") {
		if err := r.Warm(ctx); err != nil { // the sweeps' writes invalidated screens
			return check(err)
		}
		res, err := r.Home(ctx, o.conc, o.duration, false, true)
		if err != nil {
			return check(err)
		}
		ceil = add(res, "ceiling", "net/http + one Redis GET, same homeScreen bytes")
	}
	if has(o.scenarios, "a") {
		res, err := r.Home(ctx, o.conc, o.duration, false, false)
		if err != nil {
			return check(err)
		}
		ratio(res)
		homeHot = add(res, "a-home-hot", fmt.Sprintf("homeScreen, hot cache, %d users", len(users)))
	}
	if has(o.scenarios, "b") {
		res, err := r.Order(ctx, o.conc, o.duration)
		if err != nil {
			return check(err)
		}
		ratio(res)
		orderHot = add(res, "b-order-hot", "orderScreen, hot cache, every order of every user")
	}
	if has(o.scenarios, "c") {
		res, err := r.Home(ctx, o.conc, o.duration, true, false)
		if err != nil {
			return check(err)
		}
		cm, err := r.Home(ctx, o.conc, o.duration, true, true)
		if err != nil {
			return check(err)
		}
		add(cm, "ceiling-miss", "net/http + one SQL query (the same homeScreen response, built as JSON by Postgres) + one Redis SET")
		if cm.P99 > 0 {
			res.CeilingRatio = float64(res.P99) / float64(cm.P99)
		}
		rep.Miss = &loadtest.MissPoint{BFF: res.Summary, Ceiling: cm.Summary}
		add(res, "c-home-nocache", "homeScreen, Cache-Control: no-cache (every request loads from Postgres and refreshes); p99 vs the miss ceiling")
	}
	if has(o.scenarios, "d") {
		reads, writes, err := r.Mixed(ctx, o.conc, o.duration, 5)
		if err != nil {
			return check(err)
		}
		mixedReads = add(reads, "d-mixed-reads", "mixed: the 95% homeScreen/orderScreen reads, each checked for staleness")
		add(writes, "d-mixed-writes", "mixed: the 5% keyed updateShippingAddress with expectedVersion")
	}
	if has(o.scenarios, "f") {
		places, replays, err := r.Place(ctx, o.conc, o.duration)
		if err != nil {
			return check(err)
		}
		add(places, "f-place", "keyed placeOrder (fresh Idempotency-Key each)")
		add(replays, "f-replay", "placeOrder resent with the same key: must replay the same order")
	}
	if hwm, err := loadtest.HWMKiB(pid); err == nil {
		rss1, _ := loadtest.RSSKiB(pid)
		rep.Notes = append(rep.Notes, fmt.Sprintf("BFF process RSS: %d MiB before the run, %d MiB after it, peak (VmHWM) %d MiB.", rss0/1024, rss1/1024, hwm/1024))
	}
	if has(o.scenarios, "profile") {
		logf("profile: a BFF process of its own (%s), %s per scenario", o.bffBin, o.profileDur)
		getenv := func(k string) string {
			switch k {
			case "DATABASE_URL":
				return o.databaseURL
			case "REDIS_URL":
				return o.redisURL
			}
			return os.Getenv(k)
		}
		ps, err := r.ProfileProcess(ctx, o.bffBin, getenv, o.profileDir, min(o.conc, 16), o.profileDur)
		if err != nil {
			return check(fmt.Errorf("profile: %w", err))
		}
		rep.Profiles = ps
		for _, p := range ps {
			logf("profile %-30s %6d req (%d hits)  %s µs CPU/req  %.1f KiB/req  %.0f allocs/req", p.Name, p.Requests, p.Hits,
				strconv.FormatInt(p.CPUPerRequest.Microseconds(), 10), p.AllocBytes/1024, p.AllocObjects)
		}
	}

	if stopRetention != nil {
		rep.Retention, rep.ReplayWindow = stopRetention(), o.replayWindow
	}
	rep.Goals = goals(homeHot, orderHot, mixedReads, rep.SSE, o.streams)
	rep.Goals = append(rep.Goals, fanoutGoals(rep.Fanout, rep.Idle)...)
	rep.Goals = append(issueGoals(rep, o.conc), rep.Goals...)
	rep.Facts = loadtest.MachineFacts(ctx, o.databaseURL, rdb)
	rep.Facts = append(rep.Facts, loadtest.Fact{Name: "load average (1, 5, 15 min) at start / end of the run", Value: load0 + " / " + loadtest.LoadAverage()})
	rep.Notes = append(rep.Notes,
		"Server settings of `make bench`: a fresh database `bff_bench` seeded with `bff seed --customers 100`, a Redis of its own, "+
			"RATE_LIMIT_QUERIES_PER_SECOND=0 RATE_LIMIT_MUTATIONS_PER_SECOND=0 PAYMENT_WORKERS=0 LOG_LEVEL=warn STREAM_REPLAY_WINDOW=1m STREAM_PRUNE_INTERVAL=5s (so that the events table is pruned during the run), every other variable at its default "+
			"(cache on, PG_MAX_CONNS=20, MAX_IN_FLIGHT=512).",
		"Scenario d gives each user to one client, so its keyed writes never conflict; each read's order version is compared with the version the user's last write returned.",
		"Scenario f creates orders: the database grows with every run (`make bench` starts from a fresh one).",
		"Why a goal can be missed here. Every ratio compares two servers measured a few seconds apart on two cores shared with the load generator, Postgres, Redis "+
			"and whatever else runs on the machine (see the load average): a busy neighbour moves one side of a ratio and not the other.",
		"Hot screen: a hit answered by the fast path does, besides the ceiling's one GET, the middleware chain (request id, trace span, access log, RED metrics, "+
			"security headers, load shedding, body cap, deadline, authentication), reads the body, charges the rate limit (a separate Redis call when limits are on; "+
			"not yet pipelined with the cache read), runs the cache's Lua read (epoch, generations, entry and its TTL, so no stale entry is ever served), decodes the "+
			"MessagePack entry and writes the envelope with the cache extension. Its CPU per request is in the profile table; the throughput ratio is what that costs "+
			"when both cores are busy.",
		"Fan-out: every change is written to each staff stream by that stream's goroutine and read by a goroutine of the load generator on the same two cores. "+
			"A stream whose buffer (64 events) fills is disconnected by design and resumes with Last-Event-ID; the fan-out table counts those separately from "+
			"losses on the streams that stayed open.",
		"Writes: event positions no longer take a global lock, so transactions on different customers commit side by side and share WAL flushes (commits per fsync "+
			"in the placeOrder table); what still serializes is the order's row and the customer's row (per-customer event order). Mixed mutations wait for their "+
			"transaction, the invalidation of the screens they change and the fan-out of their event before they answer.",
		"Origin: a miss (Cache-Control: no-cache) reads the screen in one pipelined round trip of several statements, runs the resolvers and stores the rendered "+
			"response (one Redis read, one store); the miss ceiling builds its whole JSON in one SQL statement and stores it with one SET.")
	if err := writeReport(rep, o, started, stderr); err != nil {
		return 2, err
	}
	if fail > 0 {
		return 1, fmt.Errorf("%d failures (errors, stale reads, lost or duplicated events): see %s", fail, o.out)
	}
	return 0, nil
}

func goals(home, order, mixed *loadtest.Result, sse *loadtest.SSEResult, streams int) []loadtest.Goal {
	var gs []loadtest.Goal
	for _, r := range []*loadtest.Result{home, order} {
		if r != nil && r.CeilingRatio > 0 {
			gs = append(gs, loadtest.Goal{Goal: fmt.Sprintf("hot-cache screen p99 within 1.5× of the ceiling (%s)", r.Name),
				Measured: fmt.Sprintf("%.2f× (%s ms vs %s ms)", r.CeilingRatio, loadtest.Ms(r.P99), loadtest.Ms(time.Duration(float64(r.P99)/r.CeilingRatio))),
				Met:      r.CeilingRatio <= 1.5})
		}
	}
	if mixed != nil {
		gs = append(gs, loadtest.Goal{Goal: "0 stale reads", Measured: fmt.Sprintf("%d of %d reads checked", mixed.Stale, mixed.Checked), Met: mixed.Stale == 0})
	}
	if sse != nil {
		l := sse.Latency
		gs = append(gs,
			loadtest.Goal{Goal: "0 lost events", Measured: fmt.Sprintf("%d lost, %d duplicated of %d deliveries", l.Lost, l.Duplicates, l.Delivered+l.Lost),
				Met: l.Lost == 0 && l.Duplicates == 0 && l.Delivered > 0},
			loadtest.Goal{Goal: "SSE commit-to-client p99 < 100 ms at 1,000 streams", Measured: fmt.Sprintf("%s ms (upper bound; lower bound %s ms) at %d streams",
				loadtest.Ms(l.P99), loadtest.Ms(sse.AfterResponse.P99), streams),
				Met: l.P99 < 100*time.Millisecond && streams >= 1000},
			loadtest.Goal{Goal: "< 20 KiB per idle stream", Measured: fmt.Sprintf("%.1f KiB RSS, %.1f KiB Go heap + stacks (the larger counts)", sse.IdleBytesPerStream/1024, sse.HeapPerStream/1024),
				Met: max(sse.IdleBytesPerStream, sse.HeapPerStream) < 20*1024 && sse.IdleBytesPerStream > 0})
	}
	return gs
}

// whyHotRead is why a hot read can miss its ratio goals.
const whyHotRead = "a hit does what the ceiling does (one Redis round trip, the stored bytes written) and what the ceiling does not: " +
	"it verifies the JWT, charges the rate limit and the query budget (in the same pipeline), checks the entry's generations and " +
	"the stream position it reflects, and sets the security headers, request id, metrics and trace context. The CPU shows in the " +
	"profile below; the BFF, Redis, Postgres and the load generator share the two cores, so CPU is throughput."

// issueGoals are the ratio goals of the hot screen (sweep against the
// ceiling at 1 and 32 clients, CPU per request from the profile) and of
// the writes (mixed against the same scenario with the cache off).
func issueGoals(rep *loadtest.Report, conc int) []loadtest.Goal {
	var gs []loadtest.Goal
	for _, s := range rep.Sweep {
		if (s.Concurrency != 1 && s.Concurrency != 32) || s.Ceiling.RPS == 0 || s.Ceiling.P99 == 0 {
			continue
		}
		tr, pr := s.BFF.RPS/s.Ceiling.RPS, float64(s.BFF.P99)/float64(s.Ceiling.P99)
		gs = append(gs,
			loadtest.Goal{Goal: fmt.Sprintf("hot homeScreen ≥ 0.8× the ceiling's requests/s at %d client(s)", s.Concurrency),
				Measured: fmt.Sprintf("%.2f× (%.0f vs %.0f req/s)", tr, s.BFF.RPS, s.Ceiling.RPS), Met: tr >= 0.8, Why: whyHotRead},
			loadtest.Goal{Goal: fmt.Sprintf("hot homeScreen p99 ≤ 1.5× the ceiling's at %d client(s)", s.Concurrency),
				Measured: fmt.Sprintf("%.2f× (%s vs %s ms)", pr, loadtest.Ms(s.BFF.P99), loadtest.Ms(s.Ceiling.P99)), Met: pr <= 1.5, Why: whyHotRead})
	}
	if rt := rep.Retention; rt != nil {
		// Pruning runs every 5 s and never passes the last position a
		// stream was handed: the oldest event may be a little older.
		limit := rep.ReplayWindow + 15*time.Second
		gs = append(gs, loadtest.Goal{Goal: fmt.Sprintf("events table bounded: no event kept much past the replay window (%s) after a %s run", rep.ReplayWindow, time.Since(rep.Started).Round(time.Second)),
			Measured: fmt.Sprintf("oldest kept %.0f s; %d rows at the end of %d written during the run (most %d)", rt.OldestAge.Seconds(), rt.LastRows, rt.Written, rt.MaxRows),
			Met:      rt.OldestAge <= limit && rt.LastRows < rt.Written})
	}
	if m := rep.Miss; m != nil && m.Ceiling.RPS > 0 {
		q := m.BFF.RPS / m.Ceiling.RPS
		gs = append(gs, loadtest.Goal{Goal: "origin (homeScreen miss) ≥ 0.8× the miss ceiling's requests/s (one SQL query and a Redis SET)",
			Measured: fmt.Sprintf("%.2f× (%.0f vs %.0f req/s; p99 %s vs %s ms)", q, m.BFF.RPS, m.Ceiling.RPS, loadtest.Ms(m.BFF.P99), loadtest.Ms(m.Ceiling.P99)), Met: q >= 0.8,
			Why: "the miss ceiling builds the same response in one statement and stores it with one SET: no snapshot transaction, no stream " +
				"position, no generations, no access rules. A miss of the BFF runs the screen's 7 statements (orders, lines, customers, status " +
				"counts, stream position) pipelined in one read-only snapshot, renders the response through the GraphQL executor (about 1,900 " +
				"allocations; see the profile), and makes one Redis read and one store, on the cores Postgres and the load generator use too."})
	}
	for _, p := range rep.Profiles {
		if p.Name == "homeScreen, hot cache" && p.Requests > 0 {
			gs = append(gs, loadtest.Goal{Goal: "hot homeScreen ≤ 80 µs server CPU per request (profiled process)",
				Measured: fmt.Sprintf("%d µs", p.CPUPerRequest.Microseconds()), Met: p.CPUPerRequest <= 80*time.Microsecond, Why: whyHotRead})
		}
	}
	var at, single *loadtest.MixedPoint
	for i := range rep.MixedSweep {
		m := &rep.MixedSweep[i]
		if m.Concurrency == conc {
			at = m
		}
		if m.Concurrency == 1 {
			single = m
		}
	}
	var hot *loadtest.Summary
	for i := range rep.Sweep {
		if rep.Sweep[i].Concurrency == conc {
			hot = &rep.Sweep[i].BFF
		}
	}
	if at != nil && rep.MixedNoCache != nil {
		off := rep.MixedNoCache.Reads.RPS + rep.MixedNoCache.Writes.RPS
		on := at.Reads.RPS + at.Writes.RPS
		gs = append(gs, loadtest.Goal{Goal: fmt.Sprintf("mixed throughput ≥ 2× the same scenario with the cache off (%d clients)", conc),
			Measured: fmt.Sprintf("%.2f× (%.0f vs %.0f req/s)", on/max(off, 1), on, off), Met: on >= 2*off})
	}
	if at != nil && hot != nil && hot.P99 > 0 {
		q := float64(at.Reads.P99) / float64(hot.P99)
		gs = append(gs, loadtest.Goal{Goal: fmt.Sprintf("mixed read p99 ≤ 3× the hot homeScreen p99 (%d clients)", conc),
			Measured: fmt.Sprintf("%.2f× (%s vs %s ms)", q, loadtest.Ms(at.Reads.P99), loadtest.Ms(hot.P99)), Met: q <= 3,
			Why: "after each write the reads of that customer's screens are misses (a screen is rebuilt, never served stale), and the scenario " +
				"saturates both cores: the read tail is a miss (its Redis reads, the screen's statements in Postgres, rendering, the store) " +
				"that waited, at each step, for a core behind the requests running beside it, Postgres and the load generator."})
	}
	if at != nil && single != nil && single.Writes.P99 > 0 {
		q := float64(at.Writes.P99) / float64(single.Writes.P99)
		gs = append(gs, loadtest.Goal{Goal: fmt.Sprintf("mixed mutation p99 ≤ 4× a single client's (%d clients)", conc),
			Measured: fmt.Sprintf("%.2f× (%s vs %s ms)", q, loadtest.Ms(at.Writes.P99), loadtest.Ms(single.Writes.P99)), Met: q <= 4,
			Why: "a keyed mutation makes three Postgres round trips (the key's claim; the order's locking read with its lines and customer; " +
				"the update, key record, event and COMMIT) and waits for its WAL fsync, then for its screens' invalidation in Redis " +
				"(read-your-writes) before it answers. On saturated cores each of those steps waits for a core again, behind the requests " +
				"running beside it, Postgres and the load generator; a single client never waits. (The line that lets mutations in first, " +
				"QUEUE_MAX_WAIT, is off by default: see the README.)"})
	}
	return gs
}

// fanoutGoals are the goals of the fan-out and idle-stream scenarios.
func fanoutGoals(f *loadtest.FanoutResult, idle *loadtest.IdleResult) []loadtest.Goal {
	var gs []loadtest.Goal
	if f != nil {
		for _, ph := range f.Phases {
			l := ph.Latency
			gs = append(gs,
				loadtest.Goal{Goal: fmt.Sprintf("fan-out commit-to-client p99 ≤ 30 ms, %d staff streams, %.0f changes/s", f.Streams, ph.Rate),
					Measured: fmt.Sprintf("%s ms (upper bound) at %.0f deliveries/s", loadtest.Ms(l.P99), ph.DeliveriesPerSecond),
					Met:      l.P99 <= 30*time.Millisecond && l.Delivered > 0 && f.Streams >= 1000,
					Why: "each event is a write to each of the 1000 streams (events that queue meanwhile share a write): about 10 µs of " +
						"system time per loopback write, plus the receiver's, so one pass over the streams takes 15–20 ms of the core " +
						"or so the server gets beside Postgres and the load generator, and at 100 changes/s the passes queue up. " +
						"The upper bound also holds the commit and its fsync."},
				loadtest.Goal{Goal: fmt.Sprintf("fan-out: 0 lost on the healthy streams (%.0f changes/s)", ph.Rate),
					Measured: fmt.Sprintf("%d lost, %d duplicated or out of order of %d deliveries to the streams that stayed open", l.Lost, l.Duplicates, l.Delivered+l.Lost),
					Met:      l.Lost == 0 && l.Duplicates == 0 && l.Delivered > 0},
				loadtest.Goal{Goal: fmt.Sprintf("fan-out: every one of the %d staff streams keeps up (%.0f changes/s)", f.Streams, ph.Rate),
					Measured: fmt.Sprintf("%d disconnected by the server as too slow", ph.Disconnected), Met: ph.Disconnected == 0})
		}
		gs = append(gs, loadtest.Goal{Goal: "fan-out: the stalled reader is disconnected",
			Measured: fmt.Sprintf("disconnected: %v (after %d KiB)", f.StalledDisconnected, f.StalledBytes/1024), Met: f.StalledDisconnected})
	}
	if idle != nil {
		gs = append(gs, loadtest.Goal{Goal: fmt.Sprintf("≤ 10 KiB RSS per idle stream at %d streams", idle.Streams),
			Measured: fmt.Sprintf("%.1f KiB RSS, %.1f KiB Go heap + stacks, %.2f goroutines", idle.BytesPerStream/1024, idle.HeapPerStream/1024, idle.GoroutinesPerStream),
			Met:      idle.BytesPerStream <= 10*1024 && idle.BytesPerStream > 0 && idle.Streams >= 10000})
	}
	return gs
}

func writeReport(rep *loadtest.Report, o *options, started time.Time, stderr io.Writer) error {
	dir := filepath.Dir(o.out)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	prefix := "benchmarks"
	if o.short {
		prefix = "benchmarks-short"
	}
	var series []loadtest.Series
	for _, r := range rep.Results {
		if r.Name == "f-replay" || len(r.Latencies) == 0 {
			continue
		}
		series = append(series, loadtest.Series{Name: r.Name, Latencies: r.Latencies, Dashed: r.Name == "ceiling"})
	}
	if len(series) > 0 {
		f := prefix + "-latency.svg"
		if err := loadtest.PlotLatency(filepath.Join(dir, f), fmt.Sprintf("Latency distribution (%d clients; e-sse: %d streams)", o.conc, o.streams), series); err != nil {
			return err
		}
		rep.Plots = append(rep.Plots, f)
	}
	if len(rep.Sweep) > 0 {
		for i, f := range []string{prefix + "-throughput.svg", prefix + "-p99.svg"} {
			if err := loadtest.PlotSweep(filepath.Join(dir, f), rep.Sweep, i == 0); err != nil {
				return err
			}
			rep.Plots = append(rep.Plots, f)
		}
	}
	var writeLines []loadtest.Line
	if len(rep.WriteSweep) > 0 {
		writeLines = append(writeLines, loadtest.Line{Name: "keyed updateShippingAddress", Points: rep.WriteSweep})
	}
	if len(rep.PlaceSweep) > 0 {
		writeLines = append(writeLines, loadtest.Line{Name: "keyed placeOrder", Points: rep.PlaceSweep})
	}
	if len(rep.MixedSweep) > 0 {
		var reads, writes []loadtest.SweepPoint
		for _, m := range rep.MixedSweep {
			reads = append(reads, loadtest.SweepPoint{Concurrency: m.Concurrency, BFF: m.Reads})
			writes = append(writes, loadtest.SweepPoint{Concurrency: m.Concurrency, BFF: m.Writes})
		}
		writeLines = append(writeLines, loadtest.Line{Name: "mixed: its mutations", Points: writes}, loadtest.Line{Name: "mixed: its screen reads", Points: reads})
	}
	if len(writeLines) > 0 {
		for i, f := range []string{prefix + "-writes-throughput.svg", prefix + "-writes-p99.svg"} {
			what := map[bool]string{true: "throughput", false: "p99 latency"}[i == 0]
			if err := loadtest.PlotLines(filepath.Join(dir, f), "Writes and mixed: "+what+" against concurrency", i == 0, writeLines); err != nil {
				return err
			}
			rep.Plots = append(rep.Plots, f)
		}
	}
	rep.Elapsed = time.Since(started)
	if old, err := os.ReadFile(o.out); err == nil && len(rep.Profiles) > 0 {
		rep.Previous, rep.PreviousFrom = loadtest.PreviousProfiles(old)
	}
	f, err := os.Create(o.out)
	if err != nil {
		return err
	}
	rep.WriteMarkdown(f)
	if err := f.Close(); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "bffload: wrote %s in %s\n", o.out, rep.Elapsed.Round(time.Second))
	return nil
}

// quoteArgs joins args for a shell, quoting those that need it.
func quoteArgs(args []string) string {
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = a
		if a == "" || strings.ContainsAny(a, " \t\"'$`\\*?;&|<>()") {
			out[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
	}
	return strings.Join(out, " ")
}
