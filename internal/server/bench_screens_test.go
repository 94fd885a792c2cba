package server

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/shop/bff/internal/auth"
	"github.com/shop/bff/internal/testenv"
)

// latencies records request durations and reports their percentiles.
type latencies []time.Duration

func (l latencies) report(b *testing.B) {
	if len(l) == 0 {
		return
	}
	slices.Sort(l)
	q := func(p float64) float64 { return float64(l[int(p*float64(len(l)-1))].Microseconds()) }
	b.ReportMetric(q(0.50), "p50-µs")
	b.ReportMetric(q(0.99), "p99-µs")
}

// benchPost sends one GraphQL request over loopback and reads the body.
func benchPost(b *testing.B, client *http.Client, url, tok string, body []byte) {
	req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := client.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b.Fatalf("status %d", resp.StatusCode)
	}
}

// BenchmarkHomeScreen measures homeScreen over loopback HTTP from a hot
// cache, from Postgres (cache off), and the practical ceiling: a bare
// net/http handler that does one Redis GET and writes the bytes.
func BenchmarkHomeScreen(b *testing.B) {
	e := newEnv(b)
	body, _ := json.Marshal(map[string]any{"query": homeQuery})
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	run := func(b *testing.B, url, tok string) {
		benchPost(b, client, url, tok, body) // warm
		lat := make(latencies, 0, b.N)
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			start := time.Now()
			benchPost(b, client, url, tok, body)
			lat = append(lat, time.Since(start))
		}
		b.StopTimer()
		lat.report(b)
	}
	b.Run("hot-cache", func(b *testing.B) {
		in := e.start(nil, Options{Logger: discardLogger()})
		run(b, in.URL+"/graphql", in.token("alice@example.com"))
	})
	b.Run("postgres", func(b *testing.B) {
		cfg := e.config()
		cfg.CacheEnabled = false
		in := e.start(cfg, Options{Logger: discardLogger()})
		run(b, in.URL+"/graphql", in.token("alice@example.com"))
	})
	b.Run("ceiling-redis-get", func(b *testing.B) {
		in := e.start(nil, Options{Logger: discardLogger()})
		tok := in.token("alice@example.com")
		r := in.post(tok, homeQuery, nil)
		rdb, prefix := testenv.Redis(b)
		if err := rdb.Set(context.Background(), prefix+"ceiling", r.Raw, time.Minute).Err(); err != nil {
			b.Fatal(err)
		}
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			v, err := rdb.Get(r.Context(), prefix+"ceiling").Bytes()
			if err != nil {
				http.Error(w, err.Error(), http.StatusServiceUnavailable)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write(v)
		}))
		defer srv.Close()
		run(b, srv.URL, tok)
	})
}

// BenchmarkMiddlewareChain measures a hot-cache homeScreen in process
// (no network) through the whole middleware chain and through the bare
// /graphql handler; the difference is the chain's cost.
func BenchmarkMiddlewareChain(b *testing.B) {
	e := newEnv(b)
	in := e.start(nil, Options{Logger: discardLogger()})
	tok := in.token("alice@example.com")
	user, err := in.srv.Store().UserByEmail(context.Background(), "alice@example.com")
	if err != nil {
		b.Fatal(err)
	}
	body, _ := json.Marshal(map[string]any{"query": homeQuery})
	serve := func(b *testing.B, h http.Handler, withUser bool) {
		for i := 0; i < b.N; i++ {
			req := httptest.NewRequest(http.MethodPost, "/graphql", bytes.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Authorization", "Bearer "+tok)
			if withUser {
				req = req.WithContext(auth.WithUser(req.Context(), user))
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != http.StatusOK {
				b.Fatalf("status %d: %s", rec.Code, rec.Body)
			}
		}
	}
	in.post(tok, homeQuery, nil) // fill the cache
	b.Run("chain", func(b *testing.B) { b.ReportAllocs(); serve(b, in.srv.Handler(), false) })
	b.Run("bare", func(b *testing.B) { b.ReportAllocs(); serve(b, in.srv.GraphQL(), true) })
}

// sinkWriter is a ResponseWriter that keeps the status and counts the
// body, reused across the reads of a benchmark (its header map cleared).
type sinkWriter struct {
	h      http.Header
	status int
	n      int
}

func (s *sinkWriter) Header() http.Header { return s.h }
func (s *sinkWriter) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
}
func (s *sinkWriter) Write(p []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	s.n += len(p)
	return len(p), nil
}

// processCPU is the user and system CPU time of the process so far.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkHotRead measures a hot homeScreen read in process through the
// handler cmd/bff serves (Server.Handler: request id, access log, metrics,
// tracing, security headers, compression, auth, rate limit, fast path),
// against the test's Redis and Postgres, without the network: ns/op,
// allocs/op and cpu-µs/op, the CPU time (user + system, every thread) of
// the whole process per read, which a busy machine disturbs far less than
// throughput. "limited" charges the query budget (one no read exhausts),
// "unlimited" runs with rate limits off as `make bench` does; "serial" is
// one read at a time, "parallel" 32 at once (the concurrency of `make
// bench`), whose waits for Redis overlap. fast-% is the share of reads the
// fast path answered (at least 99%).
func BenchmarkHotRead(b *testing.B) {
	e := newEnv(b)
	body, _ := json.Marshal(map[string]any{"query": homeQuery})
	run := func(b *testing.B, in *instance, parallel bool) {
		tok := in.token("alice@example.com")
		in.post(tok, homeQuery, nil) // store the screen and teach the fast path
		h := in.srv.Handler()
		read := func(w *sinkWriter) {
			req, _ := http.NewRequest(http.MethodPost, "/graphql", bytes.NewReader(body))
			req.RemoteAddr = "127.0.0.1:40000"
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Authorization", "Bearer "+tok)
			clear(w.h)
			w.status, w.n = 0, 0
			h.ServeHTTP(w, req)
			if w.status != http.StatusOK || w.h.Get("Cache-Status") == "" {
				b.Errorf("status %d, Cache-Status %q", w.status, w.h.Get("Cache-Status"))
			}
		}
		read(&sinkWriter{h: http.Header{}})
		hits := in.fastHits()
		b.ReportAllocs()
		b.ResetTimer()
		cpu := processCPU(b)
		if parallel {
			b.SetParallelism(16) // × GOMAXPROCS 2
			b.RunParallel(func(pb *testing.PB) {
				w := &sinkWriter{h: http.Header{}}
				for pb.Next() {
					read(w)
				}
			})
		} else {
			w := &sinkWriter{h: http.Header{}}
			for i := 0; i < b.N; i++ {
				read(w)
			}
		}
		cpu = processCPU(b) - cpu
		b.StopTimer()
		b.ReportMetric(float64(cpu.Nanoseconds())/1000/float64(b.N), "cpu-µs/op")
		// A read whose Redis call outlived the cache's timeout on a busy
		// machine goes the whole path: a few are tolerated, not more.
		got := in.fastHits() - hits
		b.ReportMetric(100*float64(got)/float64(b.N), "fast-%")
		if got < int64(b.N)*99/100 {
			b.Fatalf("%d of %d reads answered by the fast path", got, b.N)
		}
	}
	for _, limited := range []bool{true, false} {
		name := "unlimited"
		cfg := e.config()
		// A busy machine must not turn reads into timeouts (whole-path
		// reads): the benchmark measures the hot path.
		cfg.CacheTimeout = 2 * time.Second
		if limited {
			name = "limited"
			cfg.RateQueriesPerSecond, cfg.RateQueriesBurst = 1_000_000_000, 1_000_000_000
		}
		in := e.start(cfg, Options{Logger: discardLogger()})
		for _, parallel := range []bool{false, true} {
			mode := "serial"
			if parallel {
				mode = "parallel"
			}
			b.Run(name+"/"+mode, func(b *testing.B) { run(b, in, parallel) })
		}
	}
}
