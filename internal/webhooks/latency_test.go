package webhooks_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/shop/bff/internal/webhooks"
	"github.com/shop/bff/internal/webhooks/hooksim"
)

// BenchmarkDeliveryLatency measures end-to-end delivery latency, from the
// commit of an order event to its arrival at the receiver, at 100 events
// per second to 5 endpoints (each event goes to all five), with the
// default worker configuration (8 sends, 4 per endpoint) woken after each
// commit as the server does. It runs once whatever b.N, for
// WEBHOOK_BENCH_SECONDS (default 15):
//
//	go test -run '^$' -bench DeliveryLatency -benchtime 1x ./internal/webhooks/
func BenchmarkDeliveryLatency(b *testing.B) {
	seconds := 15
	if v, err := strconv.Atoi(os.Getenv("WEBHOOK_BENCH_SECONDS")); err == nil && v > 0 {
		seconds = v
	}
	const rate, endpoints = 100, 5
	w := newWorld(b)
	var mu sync.Mutex
	committed := map[string]time.Time{} // event id → commit returned
	arrived := map[string][]time.Time{} // event id → arrivals (one per endpoint)
	var rcvs []*hooksim.Receiver
	for range endpoints {
		r, url := w.receiver(hooksim.Config{Respond: func(r hooksim.Received) (int, http.Header) {
			now := time.Now()
			mu.Lock()
			arrived[r.ID] = append(arrived[r.ID], now)
			mu.Unlock()
			return 0, nil
		}})
		w.endpoint(url)
		rcvs = append(rcvs, r)
	}
	outcomes := map[string]int{}
	worker, err := webhooks.NewWorker(webhooks.Config{Store: w.store, AllowPrivate: true,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Observe: func(a webhooks.Attempt) {
			mu.Lock()
			outcomes[a.Outcome+" "+a.Error]++
			mu.Unlock()
		}})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); worker.Run(ctx) }()
	defer func() { cancel(); <-done }()

	b.ResetTimer()
	total := rate * seconds
	tick := time.NewTicker(time.Second / rate)
	start := time.Now()
	var placing sync.WaitGroup
	slots := make(chan struct{}, 16) // commits in flight at once
	for range total {
		<-tick.C
		slots <- struct{}{}
		placing.Go(func() {
			defer func() { <-slots }()
			ev := w.place()
			mu.Lock()
			committed[ev.ID] = time.Now()
			mu.Unlock()
			worker.Wake() // as the server does after a commit
		})
	}
	placing.Wait()
	tick.Stop()
	sent := time.Since(start)
	for _, r := range rcvs {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		_, err := r.Wait(ctx, func(got []hooksim.Received) bool { return len(got) >= total })
		cancel()
		if err != nil {
			b.Fatalf("not every event arrived: %v", err)
		}
	}
	b.StopTimer()
	mu.Lock()
	defer mu.Unlock()
	var latencies []time.Duration
	for id, ts := range arrived {
		for _, at := range ts {
			latencies = append(latencies, at.Sub(committed[id]))
		}
	}
	slices.Sort(latencies)
	q := func(p float64) time.Duration { return latencies[min(len(latencies)-1, int(p*float64(len(latencies))))] }
	b.ReportMetric(float64(total)/sent.Seconds(), "events/s")
	b.ReportMetric(float64(q(0.50).Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(q(0.99).Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(latencies[len(latencies)-1].Microseconds())/1000, "max-ms")
	b.Logf("attempt outcomes: %v", outcomes)
	b.Logf("%d events in %v to %d endpoints: %d deliveries, latency p50 %v p99 %v max %v",
		total, sent.Round(time.Millisecond), endpoints, len(latencies), q(0.50), q(0.99), latencies[len(latencies)-1])
}
