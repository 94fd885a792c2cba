package loadtest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// SSEConfig configures the SSE scenario.
type SSEConfig struct {
	// Streams is the number of open GET /events streams; they watch the
	// users' target orders round robin, one in ten as stream=orders.
	Streams int
	// Rate is the number of order changes per second.
	Rate float64
	// Duration is how long changes are made.
	Duration time.Duration
	// Settle is how long idle streams are held before the memory reading.
	Settle time.Duration
}

// SSEResult is the outcome of the SSE scenario.
type SSEResult struct {
	// Latency is commit-to-client latency: receive time minus the event's
	// `at` (the transaction's timestamp in Postgres, taken before commit,
	// so this is an upper bound).
	Latency *Result
	// AfterResponse is receive time minus the time the mutation's response
	// arrived (clipped at 0: the event is published before the response is
	// written, so it often arrives first); BeforeResponse counts those.
	AfterResponse  *Result
	BeforeResponse int
	// Writes are the mutations that made the changes.
	Writes *Result
	// IdleBytesPerStream is the server's RSS growth per open idle stream,
	// HeapPerStream the growth of its Go heap and stacks in use per stream
	// (from /metrics, garbage not yet collected included) and
	// GoroutinesPerStream its goroutines per stream, measured after Settle.
	IdleBytesPerStream, HeapPerStream float64
	GoroutinesPerStream               float64
	// OpenFailed counts streams that did not open.
	OpenFailed int
}

type sseStream struct {
	user   *User
	path   string
	ready  chan struct{}
	mu     sync.Mutex
	seen   map[int]int
	lat    []time.Duration
	recv   map[int]time.Time
	err    error
	closed atomic.Bool
}

func (s *sseStream) run(ctx context.Context, c *http.Client, base string) {
	readyOnce := sync.OnceFunc(func() { close(s.ready) })
	defer readyOnce()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+s.path, nil)
	if err != nil {
		s.err = err
		return
	}
	req.Header.Set("Authorization", "Bearer "+s.user.Token)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := c.Do(req)
	if err != nil {
		s.err = err
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		s.err = fmt.Errorf("GET %s: HTTP %d", s.path, resp.StatusCode)
		return
	}
	br := bufio.NewReaderSize(resp.Body, 2048)
	var data []byte
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			if ctx.Err() == nil && !s.closed.Load() {
				s.err = fmt.Errorf("stream %s ended: %w", s.path, err)
			}
			return
		}
		now := time.Now()
		line = bytes.TrimRight(line, "\r\n")
		switch {
		case bytes.HasPrefix(line, []byte("retry:")):
			readyOnce()
		case bytes.HasPrefix(line, []byte("data: ")):
			data = append(data[:0], line[len("data: "):]...)
		case len(line) == 0 && len(data) > 0:
			var ev struct {
				OrderID string    `json:"orderId"`
				Version int       `json:"version"`
				At      time.Time `json:"at"`
			}
			if json.Unmarshal(data, &ev) == nil && ev.OrderID == s.user.Target {
				s.mu.Lock()
				s.seen[ev.Version]++
				if s.seen[ev.Version] == 1 {
					s.lat = append(s.lat, now.Sub(ev.At))
					s.recv[ev.Version] = now
				}
				s.mu.Unlock()
			}
			data = data[:0]
		}
	}
}

// SSE opens cfg.Streams event streams, waits until each has its first
// bytes (the stream is registered with the broker then), measures the
// server's memory per idle stream, then changes the watched orders at
// cfg.Rate per second for cfg.Duration and checks that every version of
// every watched order reached every stream watching it exactly once.
func (r *Runner) SSE(ctx context.Context, cfg SSEConfig) (*SSEResult, error) {
	out := &SSEResult{}
	tr := &http.Transport{Proxy: nil, DisableCompression: true,
		DialContext: (&net.Dialer{Timeout: 5 * time.Second}).DialContext, MaxIdleConnsPerHost: 1}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr}
	rss0, _ := RSSKiB(r.PID)
	m0, _ := ScrapeMetrics(ctx, r.Client, r.Base)

	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	streams := make([]*sseStream, cfg.Streams)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	for i := range streams {
		u := r.Users[i%len(r.Users)]
		path := "/events?stream=order:" + u.Target
		if i%10 == 9 {
			path = "/events?stream=orders"
		}
		s := &sseStream{user: u, path: path, ready: make(chan struct{}), seen: map[int]int{}, recv: map[int]time.Time{}}
		streams[i] = s
		wg.Add(1)
		sem <- struct{}{} // at most 64 streams opening at a time
		go func() { defer wg.Done(); s.run(sctx, c, r.Base) }()
		go func() { <-s.ready; <-sem }()
	}
	openDeadline := time.After(60 * time.Second)
	for _, s := range streams {
		select {
		case <-s.ready:
		case <-openDeadline:
			cancel()
			return nil, fmt.Errorf("sse: streams did not open within 60s")
		}
	}
	for _, s := range streams {
		if s.err != nil {
			out.OpenFailed++
		}
	}
	r.logf("sse: %d streams open (%d failed); holding them idle for %s", cfg.Streams, out.OpenFailed, cfg.Settle)
	time.Sleep(cfg.Settle)
	if rss1, err := RSSKiB(r.PID); err == nil && r.PID != 0 {
		out.IdleBytesPerStream = float64(rss1-rss0) * 1024 / float64(cfg.Streams)
	}
	if m1, err := ScrapeMetrics(ctx, r.Client, r.Base); err == nil && m0 != nil {
		out.HeapPerStream = (m1["go_memstats_heap_inuse_bytes"] + m1["go_memstats_stack_inuse_bytes"] -
			m0["go_memstats_heap_inuse_bytes"] - m0["go_memstats_stack_inuse_bytes"]) / float64(cfg.Streams)
		out.GoroutinesPerStream = (m1["go_goroutines"] - m0["go_goroutines"]) / float64(cfg.Streams)
	}

	// Changes at cfg.Rate per second, round robin over the users.
	type write struct {
		user    *User
		version int
		resp    time.Time
	}
	var writes []write
	var wlat []time.Duration
	werrs := 0
	var werrSamples []string
	stopRSS := r.sampleRSS()
	tick := time.NewTicker(time.Duration(float64(time.Second) / cfg.Rate))
	t0 := time.Now()
	for n := 0; time.Since(t0) < cfg.Duration && ctx.Err() == nil; n++ {
		<-tick.C
		u := r.Users[n%len(r.Users)]
		ts := time.Now()
		v, at, err := UpdateAddress(ctx, r.Client, r.Base, u, n)
		wlat = append(wlat, at.Sub(ts))
		if err != nil {
			werrs++
			if len(werrSamples) < 3 {
				werrSamples = append(werrSamples, err.Error())
			}
			if vv, ok, err := r.readVersion(ctx, u, false); err == nil && ok {
				u.Version = vv
			}
			continue
		}
		u.Version = v
		writes = append(writes, write{u, v, at})
	}
	tick.Stop()
	elapsed := time.Since(t0)
	out.Writes = &Result{Summary: Summarize(wlat, werrs, elapsed), Latencies: wlat, ErrorSamples: werrSamples, Concurrency: 1}

	// Expected deliveries: every write of a stream's user's target.
	expected := map[*User][]write{}
	for _, w := range writes {
		expected[w.user] = append(expected[w.user], w)
	}
	missing := func() int {
		n := 0
		for _, s := range streams {
			s.mu.Lock()
			for _, w := range expected[s.user] {
				if s.seen[w.version] == 0 {
					n++
				}
			}
			s.mu.Unlock()
		}
		return n
	}
	for end := time.Now().Add(5 * time.Second); missing() > 0 && time.Now().Before(end); {
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond) // late duplicates
	rss := stopRSS()
	for _, s := range streams {
		s.closed.Store(true)
	}
	cancel()
	wg.Wait()

	var lat, after []time.Duration
	lost, dup, delivered, streamErrs := 0, 0, 0, 0
	var samples []string
	for _, s := range streams {
		if s.err != nil {
			streamErrs++
			if len(samples) < 3 {
				samples = append(samples, s.err.Error())
			}
		}
		lat = append(lat, s.lat...)
		for _, w := range expected[s.user] {
			switch n := s.seen[w.version]; {
			case n == 0:
				lost++
			default:
				delivered++
				dup += n - 1
				d := s.recv[w.version].Sub(w.resp)
				if d < 0 {
					out.BeforeResponse++
					d = 0
				}
				after = append(after, d)
			}
		}
	}
	out.Latency = &Result{Concurrency: cfg.Streams, Summary: Summarize(lat, streamErrs, elapsed), Latencies: lat,
		Delivered: delivered, Lost: lost, Duplicates: dup, ErrorSamples: samples, RSSKiB: rss}
	out.AfterResponse = &Result{Concurrency: cfg.Streams, Summary: Summarize(after, 0, elapsed), Latencies: after}
	return out, nil
}
