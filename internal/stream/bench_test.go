package stream

import (
	"bufio"
	"context"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/r3labs/sse/v2"

	"github.com/shop/bff/internal/auth"
	"github.com/shop/bff/internal/order"
	"github.com/shop/bff/internal/postgres"
	"github.com/shop/bff/internal/testenv"
)

// idleConns is the number of idle connections a memory measurement holds.
const idleConns = 1000

// BenchmarkIdleStreamMemory measures what one idle SSE connection costs
// the process (live heap after GC plus goroutine stacks, divided by the
// number of connections), for this package's Handler and, as the
// baseline of streaming.md, for r3labs/sse's own Server.ServeHTTP. The
// "tcp" case is the floor: the same raw client connections held open by a
// server that only accepts them (both ends' socket objects, no HTTP).
// Clients are raw TCP connections in the same process that read the
// stream's first bytes and then nothing, so their cost is in the numbers
// too (see "tcp"). Run:
//
//	go test ./internal/stream/ -run '^$' -bench IdleStreamMemory -benchtime 1x
func BenchmarkIdleStreamMemory(b *testing.B) {
	b.Run("broker", func(b *testing.B) {
		store, _ := testenv.Store(b, true, postgres.Config{})
		rdb, prefix := testenv.Redis(b)
		br, err := New(store, rdb, Config{Channel: prefix + "events", Logger: testLogger})
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); _ = br.Run(ctx) }()
		defer func() { cancel(); <-done }()
		staff, err := store.UserByEmail(ctx, "staff@example.com")
		if err != nil {
			b.Fatal(err)
		}
		h := br.Handler()
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			h.ServeHTTP(w, r.WithContext(auth.WithUser(r.Context(), staff)))
		}))
		defer srv.Close()
		addr := srv.Listener.Addr().String()
		reportIdle(b, func() net.Conn { return rawStream(b, addr, "staff", "/events?stream=orders", false) },
			func() bool { return br.OpenStreams() == idleConns })
	})
	b.Run("r3labs", func(b *testing.B) {
		s := sse.New()
		s.AutoReplay = false
		s.CreateStream("orders")
		defer s.Close()
		srv := httptest.NewServer(s)
		defer srv.Close()
		addr := srv.Listener.Addr().String()
		reportIdle(b, func() net.Conn {
			return rawStreamUntil(b, addr, "staff", "/?stream=orders", false, "\r\n\r\n")
		}, func() bool { return true })
	})
	b.Run("tcp", func(b *testing.B) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		defer l.Close()
		accepted := make(chan net.Conn, idleConns)
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				accepted <- c
			}
		}()
		var held []net.Conn
		defer func() {
			for _, c := range held {
				c.Close()
			}
		}()
		reportIdle(b, func() net.Conn {
			c, err := net.Dial("tcp", l.Addr().String())
			if err != nil {
				b.Fatal(err)
			}
			held = append(held, <-accepted)
			return c
		}, func() bool { return true })
	})
}

// reportIdle opens idleConns connections with open, waits until ready,
// and reports the memory and goroutines they cost.
func reportIdle(b *testing.B, open func() net.Conn, ready func() bool) {
	b.Helper()
	for b.Loop() {
		heap, stack, gs := measureIdle(b, open, ready)
		b.ReportMetric(heap+stack, "B/conn")
		b.ReportMetric(heap, "heap-B/conn")
		b.ReportMetric(stack, "stack-B/conn")
		b.ReportMetric(gs, "goroutines/conn")
		b.Logf("%d idle connections: %.0f B/conn (heap %.0f + stack %.0f), %.2f goroutines/conn",
			idleConns, heap+stack, heap, stack, gs)
	}
}

func measureIdle(tb testing.TB, open func() net.Conn, ready func() bool) (heap, stack, goroutines float64) {
	settle := func() runtime.MemStats {
		// Several cycles: each GC may halve an idle goroutine's stack.
		for range 6 {
			runtime.GC()
		}
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m
	}
	m0 := settle()
	g0 := runtime.NumGoroutine()
	conns := make([]net.Conn, 0, idleConns)
	for range idleConns {
		conns = append(conns, open())
	}
	deadline := time.Now().Add(wait)
	for !ready() {
		if time.Now().After(deadline) {
			tb.Fatal(fmt.Errorf("connections not registered within %s", wait))
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond) // let the connections go idle
	m1 := settle()
	g1 := runtime.NumGoroutine()
	// STREAM_HEAP_PROFILE=file writes the heap profile of the idle state
	// (with -memprofilerate 1), to see what a connection keeps alive.
	if f := os.Getenv("STREAM_HEAP_PROFILE"); f != "" {
		runtime.MemProfileRate = 1
		w, err := os.Create(f)
		if err == nil {
			_ = pprof.Lookup("heap").WriteTo(w, 0)
			_ = w.Close()
		}
	}
	n := float64(len(conns))
	heap = (float64(m1.HeapAlloc) - float64(m0.HeapAlloc)) / n
	stack = (float64(m1.StackInuse) - float64(m0.StackInuse)) / n
	goroutines = float64(g1-g0) / n
	for _, c := range conns {
		_ = c.Close()
	}
	return heap, stack, goroutines
}

// latencyStreams is the number of open streams of the latency benchmark.
const latencyStreams = 1000

// BenchmarkCommitToClient measures commit-to-client latency with 1,000
// open streams (streaming.md rule 6): each iteration commits an order
// change on instance A and publishes it there (as the mutation path does);
// 1,000 staff clients of instance B, on loopback, receive it through Redis.
// A sample is the time from the commit's return to one client reading the
// event's id line. Reported: p50, p99 and max over all samples. Run:
//
//	go test ./internal/stream/ -run '^$' -bench CommitToClient
func BenchmarkCommitToClient(b *testing.B) {
	e := newEnv(b)
	a := e.instance(Config{}, nil)
	br := e.instance(Config{}, nil)
	srv := httptest.NewServer(e.withTestUser(br.Handler()))
	defer srv.Close()
	o, _ := e.placeOrder(e.alice)
	e.settle()

	type seen struct {
		id string
		at time.Time
	}
	got := make(chan seen, latencyStreams*4)
	readStaffStreams(b, srv, latencyStreams, func(id string) { got <- seen{id, time.Now()} })
	eventually(b, "streams open", func() bool { return br.OpenStreams() == latencyStreams })

	var samples []time.Duration
	for b.Loop() {
		evs := e.change(e.alice, o.ID)
		committed := time.Now()
		e.publish(a, evs)
		for n := 0; n < latencyStreams; {
			select {
			case s := <-got:
				if s.id == evs[0].ID {
					samples = append(samples, s.at.Sub(committed))
					n++
				}
			case <-time.After(wait):
				b.Fatalf("event %s reached %d of %d streams", evs[0].ID, n, latencyStreams)
			}
		}
	}
	slices.Sort(samples)
	q := func(p float64) time.Duration { return samples[min(len(samples)-1, int(p*float64(len(samples))))] }
	b.ReportMetric(float64(q(0.50).Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(q(0.99).Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(samples[len(samples)-1].Microseconds())/1000, "max-ms")
	b.Logf("%d samples over %d streams: p50 %s, p99 %s, max %s", len(samples), latencyStreams, q(0.50), q(0.99), samples[len(samples)-1])
}

// BenchmarkFanoutCPU measures the CPU time of this process (the broker,
// its SSE connections and the clients reading them on loopback) per
// delivered event: every iteration commits burst order changes, publishes
// them at once and waits until each of the staff streams has read them
// all. Reported: cpu-µs/delivery. Run:
//
//	go test ./internal/stream/ -run '^$' -bench FanoutCPU
func BenchmarkFanoutCPU(b *testing.B) {
	for _, burst := range []int{1, 4} {
		b.Run(fmt.Sprintf("burst=%d", burst), func(b *testing.B) { benchFanoutCPU(b, 500, burst) })
	}
}

func benchFanoutCPU(b *testing.B, streams, burst int) {
	e := newEnv(b)
	br := e.instance(Config{}, nil)
	srv := httptest.NewServer(e.withTestUser(br.Handler()))
	defer srv.Close()
	o, _ := e.placeOrder(e.alice)
	e.settle()
	var got atomic.Int64
	var target atomic.Int64
	target.Store(math.MaxInt64)
	done := make(chan struct{}, 1)
	readStaffStreams(b, srv, streams, func(string) {
		if got.Add(1) == target.Load() {
			done <- struct{}{}
		}
	})
	eventually(b, "streams open", func() bool { return br.OpenStreams() == streams })
	cpu := func() time.Duration {
		var ru syscall.Rusage
		_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	var used time.Duration
	for b.Loop() {
		var evs []order.Event
		for range burst {
			evs = append(evs, e.change(e.alice, o.ID)...)
		}
		target.Store(got.Load() + int64(streams*len(evs)))
		c0 := cpu()
		e.publish(br, evs)
		select {
		case <-done:
		case <-time.After(wait):
			b.Fatalf("deliveries: %d, want %d", got.Load(), target.Load())
		}
		used += cpu() - c0
	}
	b.ReportMetric(float64(used.Microseconds())/float64(b.N*burst*streams), "cpu-µs/delivery")
}

// readStaffStreams opens n staff streams of every order on srv, closed
// when b ends, and calls onID from each stream's reader with the id of
// every event it reads.
func readStaffStreams(b *testing.B, srv *httptest.Server, n int, onID func(id string)) {
	addr := srv.Listener.Addr().String()
	for range n {
		conn := rawStream(b, addr, "staff", "/events?stream=orders", false)
		b.Cleanup(func() { conn.Close() })
		go func() {
			sc := bufio.NewScanner(conn)
			for sc.Scan() {
				if id, ok := strings.CutPrefix(sc.Text(), "id: "); ok {
					onID(id)
				}
			}
		}()
	}
}
