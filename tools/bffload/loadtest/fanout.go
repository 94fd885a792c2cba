package loadtest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// FanoutConfig configures the fan-out scenario: STAFF streams of every
// order (`stream=orders`), each of which receives every event.
type FanoutConfig struct {
	// Streams is the number of healthy staff streams.
	Streams int
	// Rates are the order changes per second of each phase, in order.
	Rates []float64
	// Phase is the duration of each phase.
	Phase time.Duration
	// StaffEmail is the staff user the streams sign in as.
	StaffEmail string
}

// FanoutPhase is one rate of the fan-out scenario.
type FanoutPhase struct {
	Rate float64
	// Writes are the mutations that made the changes.
	Writes *Result
	// Latency is commit-to-client latency over every delivery to a healthy
	// stream (receive − event `at`), with Delivered, Lost and Duplicates.
	Latency *Result
	// DeliveriesPerSecond is deliveries over the phase's duration.
	DeliveriesPerSecond float64
	// AfterResponse is receive − the mutation's response (0 when the event
	// came first): a lower bound of commit-to-client.
	AfterResponse *Result
	// Disconnected counts the streams the server ended during the phase
	// (a stream that does not keep up is disconnected, by design); Lost
	// in Latency counts only the streams still open at the end.
	Disconnected int
}

// FanoutResult is the outcome of the fan-out scenario.
type FanoutResult struct {
	Streams    int
	Phases     []FanoutPhase
	OpenFailed int
	// StalledDisconnected says whether the server closed the stream of the
	// reader that stopped reading (found after the last phase),
	// StalledBytes what the server had sent it until then.
	StalledDisconnected bool
	StalledBytes        int64
	// RSSKiB is the server's highest RSS during the scenario.
	RSSKiB int64
}

// IdleResult is the memory of idle streams.
type IdleResult struct {
	Streams, OpenFailed int
	// BytesPerStream is the server's RSS growth per open idle stream,
	// HeapPerStream the growth of its Go heap and stacks in use (from
	// /metrics), GoroutinesPerStream its goroutines per stream.
	BytesPerStream, HeapPerStream, GoroutinesPerStream float64
}

// rawStream is one GET /events connection read without net/http's
// client (no goroutines or buffers of its own beyond one reader).
type rawStream struct {
	conn net.Conn
	br   *bufio.Reader
	body *bufio.Reader
}

// openStream connects to base, sends GET path with token and reads the
// response head and the first frame (the retry hint): the stream is
// registered with the broker then. rcvbuf > 0 sets the socket's receive
// buffer before connecting (a reader that will stop reading).
func openStream(ctx context.Context, base, path, token string, rcvbuf int) (*rawStream, error) {
	u, err := url.Parse(base)
	if err != nil {
		return nil, err
	}
	d := net.Dialer{Timeout: 5 * time.Second}
	if rcvbuf > 0 {
		d.Control = func(_, _ string, c syscall.RawConn) error {
			var serr error
			if err := c.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, rcvbuf)
			}); err != nil {
				return err
			}
			return serr
		}
	}
	conn, err := d.DialContext(ctx, "tcp", u.Host)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nAccept: text/event-stream\r\n\r\n", path, u.Host, token)
	_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	br := bufio.NewReaderSize(conn, 4096)
	req, _ := http.NewRequest(http.MethodGet, base+path, nil)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		conn.Close()
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		conn.Close()
		return nil, fmt.Errorf("GET %s: HTTP %d", path, resp.StatusCode)
	}
	s := &rawStream{conn: conn, br: br, body: bufio.NewReaderSize(resp.Body, 4096)}
	for { // the retry hint, then the blank line that ends it
		line, err := s.body.ReadSlice('\n')
		if err != nil {
			conn.Close()
			return nil, fmt.Errorf("GET %s: first frame: %w", path, err)
		}
		if len(bytes.TrimRight(line, "\r\n")) == 0 {
			break
		}
	}
	_ = conn.SetReadDeadline(time.Time{})
	return s, nil
}

// delivery is one event a fan-out stream received (no pointers: a
// thousand streams hold about a million of them, which the collector
// then does not scan).
type delivery struct {
	key int64 // target order index × 1e6 + version
	pos int64
	lat time.Duration
	at  int64 // when it was received (Unix nanoseconds)
}

// fanStream is one healthy staff stream: its connection, its decoder,
// and what it received. Its bytes are read by an event loop (see
// readFanStreams) and parsed as they come: every frame's id, order, version
// and timestamp.
type fanStream struct {
	conn    net.Conn
	dec     *sseDecoder
	targets map[string]int64
	onLine  func([]byte) // f.line, bound once
	pos     int64        // the id of the frame being read
	last    int64        // the id of the last event received
	now     time.Time    // when the bytes being decoded were read

	got       []delivery
	unordered int // events whose position was not above the previous one
	err       error
	endedAt   time.Time // when the server ended the stream
	closed    atomic.Bool
	// count and failed mirror len(got) and err != nil for the
	// scenario's goroutine, which waits for the streams to complete while
	// their readers still write got and err.
	count  atomic.Int64
	failed atomic.Bool
}

func newFanStream(conn net.Conn, dec *sseDecoder, targets map[string]int64, expect int) *fanStream {
	f := &fanStream{conn: conn, dec: dec, targets: targets, got: make([]delivery, 0, expect)}
	f.onLine = f.line
	return f
}

var (
	idPrefix      = []byte("id: ")
	dataPrefix    = []byte("data: ")
	orderIDField  = []byte(`"orderId":"`)
	versionField  = []byte(`"version":`)
	atField       = []byte(`"at":"`)
	quote         = []byte(`"`)
	versionEndSet = ",}"
)

// field returns the bytes after name up to the first of end.
func field(data, name []byte, end string) []byte {
	i := bytes.Index(data, name)
	if i < 0 {
		return nil
	}
	rest := data[i+len(name):]
	if j := bytes.IndexAny(rest, end); j >= 0 {
		return rest[:j]
	}
	return nil
}

// received decodes bytes read at now.
func (f *fanStream) received(p []byte, now time.Time) error {
	f.now = now
	return f.dec.feed(p, f.onLine)
}

// ended records that the server ended the stream (unless the scenario
// closed it), with err.
func (f *fanStream) ended(err error, now time.Time) {
	if !f.closed.Load() && f.err == nil {
		f.err = fmt.Errorf("stream ended by the server (too slow, or a failure): %w", err)
		f.endedAt = now
		f.failed.Store(true)
	}
}

// line parses one SSE line: an id, or the data of an event of a target
// order (its version and timestamp).
func (f *fanStream) line(line []byte) {
	switch {
	case bytes.HasPrefix(line, idPrefix):
		f.pos, _ = strconv.ParseInt(string(line[len(idPrefix):]), 10, 64)
	case bytes.HasPrefix(line, dataPrefix):
		data := line[len(dataPrefix):]
		t, ok := f.targets[string(field(data, orderIDField, `"`))]
		if !ok {
			return
		}
		v, _ := strconv.ParseInt(string(field(data, versionField, versionEndSet)), 10, 64)
		at, err := time.Parse(time.RFC3339Nano, string(field(data, atField, string(quote))))
		if err != nil {
			return
		}
		if f.pos <= f.last {
			f.unordered++
		}
		f.last = f.pos
		f.got = append(f.got, delivery{key: t*1_000_000 + v, pos: f.pos, lat: f.now.Sub(at), at: f.now.UnixNano()})
		f.count.Add(1)
	}
}

// fanoutGrace is how long after a phase its events may still be in flight.
const fanoutGrace = 2 * time.Second

// Fanout opens cfg.Streams staff streams of every order and one more that
// stops reading after its first frame (a receive buffer of 4 KiB), then
// changes the users' target orders at each of cfg.Rates per second for
// cfg.Phase: every healthy stream must receive every change once, in
// position order, and the stalled one must be disconnected by the server.
func (r *Runner) Fanout(ctx context.Context, cfg FanoutConfig) (*FanoutResult, error) {
	out := &FanoutResult{Streams: cfg.Streams}
	token, err := SignIn(ctx, r.Client, r.Base, cfg.StaffEmail)
	if err != nil {
		return nil, fmt.Errorf("fanout: staff sign-in: %w", err)
	}
	targets := map[string]int64{}
	for i, u := range r.Users {
		targets[u.Target] = int64(i)
	}
	expect := 0 // deliveries per stream, for its buffer
	for _, rate := range cfg.Rates {
		expect += int(rate*cfg.Phase.Seconds()) + 1
	}
	streams := make([]*fanStream, 0, cfg.Streams)
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, 32)
	for range cfg.Streams {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			conn, dec, err := dialFanStream(ctx, r.Base, "/events?stream=orders", token)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				out.OpenFailed++
				return
			}
			streams = append(streams, newFanStream(conn, dec, targets, expect))
		}()
	}
	wg.Wait()
	stalled, err := openStream(ctx, r.Base, "/events?stream=orders", token, 4096)
	if err != nil {
		for _, f := range streams {
			f.conn.Close()
		}
		return nil, fmt.Errorf("fanout: the stalled stream: %w", err)
	}
	defer stalled.conn.Close()
	stopReading, err := readFanStreams(streams)
	if err != nil {
		for _, f := range streams {
			f.conn.Close()
		}
		return nil, fmt.Errorf("fanout: reading the streams: %w", err)
	}
	defer stopReading()
	r.logf("fanout: %d staff streams open (%d failed) and one stalled reader", len(streams), out.OpenFailed)

	stopRSS := r.sampleRSS()
	type write struct {
		key   int64
		phase int
		resp  time.Time
	}
	var writes []write
	var phaseEnds []time.Time
	var wmu sync.Mutex
	userMu := make([]sync.Mutex, len(r.Users))
	for pi, rate := range cfg.Rates {
		var wlat []time.Duration
		werrs := 0
		var samples []string
		var inflight sync.WaitGroup
		tick := time.NewTicker(time.Duration(float64(time.Second) / rate))
		start := time.Now()
		for n := 0; time.Since(start) < cfg.Phase && ctx.Err() == nil; n++ {
			<-tick.C
			i := n % len(r.Users)
			u := r.Users[i]
			inflight.Add(1)
			go func() {
				defer inflight.Done()
				userMu[i].Lock()
				defer userMu[i].Unlock()
				ts := time.Now()
				v, at, err := UpdateAddress(ctx, r.Client, r.Base, u, n)
				wmu.Lock()
				defer wmu.Unlock()
				wlat = append(wlat, at.Sub(ts))
				if err != nil {
					werrs++
					if len(samples) < 3 {
						samples = append(samples, err.Error())
					}
					if vv, ok, err := r.readVersion(ctx, u, false); err == nil && ok {
						u.Version = vv
					}
					return
				}
				u.Version = v
				writes = append(writes, write{key: int64(i)*1_000_000 + int64(v), phase: pi, resp: at})
			}()
		}
		tick.Stop()
		inflight.Wait()
		elapsed := time.Since(start)
		phaseEnds = append(phaseEnds, time.Now())
		out.Phases = append(out.Phases, FanoutPhase{Rate: rate,
			Writes: &Result{Summary: Summarize(wlat, werrs, elapsed), Latencies: wlat, ErrorSamples: samples, Concurrency: 1}})
		r.logf("fanout: phase %.0f changes/s done (%d changes, %d errors)", rate, len(wlat), werrs)
	}

	// Wait until every healthy stream has every change (or 10 s).
	phaseOf := map[int64]int{}
	respOf := map[int64]time.Time{}
	for _, w := range writes {
		phaseOf[w.key] = w.phase
		respOf[w.key] = w.resp
	}
	complete := func() bool {
		for _, f := range streams {
			if !f.failed.Load() && f.count.Load() < int64(len(writes)) {
				return false
			}
		}
		return true
	}
	for end := time.Now().Add(10 * time.Second); !complete() && time.Now().Before(end); {
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond) // late duplicates
	out.RSSKiB = stopRSS()

	// The stalled reader: drain what the server sent; a closed
	// connection ends with EOF, an open one times out.
	_ = stalled.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 64<<10)
	for {
		n, err := stalled.body.Read(buf)
		out.StalledBytes += int64(n)
		if err != nil {
			var ne net.Error
			out.StalledDisconnected = !(errors.As(err, &ne) && ne.Timeout())
			break
		}
	}

	stopReading()

	lat := make([][]time.Duration, len(cfg.Rates))
	after := make([][]time.Duration, len(cfg.Rates))
	delivered := make([]int, len(cfg.Rates))
	lost := make([]int, len(cfg.Rates))
	dup := make([]int, len(cfg.Rates))
	var errSamples []string
	// A stream is healthy for a phase when the server did not end it
	// before the phase ended (and fanoutGrace after): its losses of that
	// phase count; a stream ended earlier was disconnected (too slow) and
	// resumes elsewhere.
	disconnected := make([]int, len(cfg.Rates))
	for _, f := range streams {
		phaseEnded := len(cfg.Rates)
		if f.err != nil {
			if len(errSamples) < 3 {
				errSamples = append(errSamples, f.err.Error())
			}
			phaseEnded = len(cfg.Rates) - 1
			for i, end := range phaseEnds {
				// Events of a phase may still be on their way for a
				// moment after it: a stream ended within that moment is
				// not held to them.
				if f.endedAt.Before(end.Add(fanoutGrace)) {
					phaseEnded = i
					break
				}
			}
			disconnected[phaseEnded]++
		}
		seen := make(map[int64]int, len(f.got))
		for _, d := range f.got {
			p, ok := phaseOf[d.key]
			if !ok || p >= phaseEnded {
				continue
			}
			seen[d.key]++
			if seen[d.key] == 1 {
				delivered[p]++
				lat[p] = append(lat[p], d.lat)
				after[p] = append(after[p], max(0, time.Duration(d.at-respOf[d.key].UnixNano())))
			} else {
				dup[p]++
			}
		}
		for _, w := range writes {
			if w.phase < phaseEnded && seen[w.key] == 0 {
				lost[w.phase]++
			}
		}
		dup[0] += f.unordered
	}
	for i := range out.Phases {
		ph := &out.Phases[i]
		ph.Disconnected = disconnected[i]
		ph.Latency = &Result{Concurrency: len(streams), Summary: Summarize(lat[i], 0, ph.Writes.Elapsed), Latencies: lat[i],
			Delivered: delivered[i], Lost: lost[i], Duplicates: dup[i], ErrorSamples: errSamples, RSSKiB: out.RSSKiB}
		ph.DeliveriesPerSecond = float64(delivered[i]) / ph.Writes.Elapsed.Seconds()
		ph.AfterResponse = &Result{Summary: Summarize(after[i], 0, ph.Writes.Elapsed), Latencies: after[i]}
	}
	return out, nil
}

// Idle opens n streams of the users' target orders, holds them idle for
// settle and measures the server's memory per stream; the streams are
// closed before it returns.
func (r *Runner) Idle(ctx context.Context, n int, settle time.Duration) (*IdleResult, error) {
	out := &IdleResult{Streams: n}
	rss0, _ := RSSKiB(r.PID)
	m0, _ := ScrapeMetrics(ctx, r.Client, r.Base)
	conns := make([]*rawStream, 0, n)
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, 32)
	for i := range n {
		u := r.Users[i%len(r.Users)]
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			s, err := openStream(ctx, r.Base, "/events?stream=order:"+u.Target, u.Token, 0)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				out.OpenFailed++
				return
			}
			conns = append(conns, s)
		}()
	}
	wg.Wait()
	defer func() {
		for _, s := range conns {
			s.conn.Close()
		}
	}()
	r.logf("idle: %d streams open (%d failed); holding them for %s", len(conns), out.OpenFailed, settle)
	time.Sleep(settle)
	open := float64(max(len(conns), 1))
	if rss1, err := RSSKiB(r.PID); err == nil && r.PID != 0 {
		out.BytesPerStream = float64(rss1-rss0) * 1024 / open
	}
	if m1, err := ScrapeMetrics(ctx, r.Client, r.Base); err == nil && m0 != nil {
		out.HeapPerStream = (m1["go_memstats_heap_inuse_bytes"] + m1["go_memstats_stack_inuse_bytes"] -
			m0["go_memstats_heap_inuse_bytes"] - m0["go_memstats_stack_inuse_bytes"]) / open
		out.GoroutinesPerStream = (m1["go_goroutines"] - m0["go_goroutines"]) / open
	}
	return out, nil
}

// WALCounters reads the bench database's commits and the cluster's WAL
// syncs (for commits per fsync); ok is false when they cannot be read.
func WALCounters(ctx context.Context, databaseURL string) (commits, syncs int64, ok bool) {
	conn, err := pgx.Connect(ctx, databaseURL)
	if err != nil {
		return 0, 0, false
	}
	defer conn.Close(ctx)
	err = conn.QueryRow(ctx, `SELECT (SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()),
		(SELECT wal_sync FROM pg_stat_wal)`).Scan(&commits, &syncs)
	return commits, syncs, err == nil
}
