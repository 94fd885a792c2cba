package httpx

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// gateServer serves h inside a slot of g (under Begin, as the server
// wires it; a request with an Idempotency-Key enters first) and reports
// each request that took its place in line on waited.
func gateServer(t *testing.T, g *Gate, h http.HandlerFunc) (srv *httptest.Server, waited chan struct{}) {
	t.Helper()
	waited = make(chan struct{}, 64)
	g.onWait = func() { waited <- struct{}{} }
	srv = httptest.NewServer(Chain(h, Begin, func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			defer g.Enter(r, keyed(r))()
			next.ServeHTTP(w, r)
		})
	}))
	t.Cleanup(srv.Close)
	return srv, waited
}

// send posts body to srv in the background (with an Idempotency-Key when
// keyed) and returns the status, or -1 on a transport error.
func send(srv *httptest.Server, path string, keyed bool) <-chan int {
	done := make(chan int, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+path, strings.NewReader(`{"query":"{x}"}`))
		if keyed {
			req.Header.Set("Idempotency-Key", "k-"+path)
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			done <- -1
			return
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		done <- resp.StatusCode
	}()
	return done
}

// withHolder serves g with a handler that reports each request it runs on
// entered, and makes a request (/holder) that holds its slot until hold
// is closed; h is its status.
func withHolder(t *testing.T, g *Gate) (srv *httptest.Server, waited chan struct{}, entered chan string, hold chan struct{}, h <-chan int) {
	t.Helper()
	entered, hold = make(chan string, 4), make(chan struct{})
	srv, waited = gateServer(t, g, func(w http.ResponseWriter, r *http.Request) {
		entered <- r.URL.Path
		if r.URL.Path == "/holder" {
			<-hold
		}
	})
	h = send(srv, "/holder", false)
	require.Equal(t, "/holder", <-entered)
	return srv, waited, entered, hold, h
}

func keyed(r *http.Request) bool { return r.Header.Get("Idempotency-Key") != "" }

// TestGateRunsAtMostSlotsAtOnce checks that with two slots, five requests
// run two at a time, the others waiting in line until a slot is free.
func TestGateRunsAtMostSlotsAtOnce(t *testing.T) {
	g := NewGate(GateOptions{Slots: 2, MaxWait: time.Hour})
	var running, most atomic.Int32
	entered := make(chan string, 5)
	release := map[string]chan struct{}{}
	for i := range 5 {
		release[fmt.Sprintf("/%d", i)] = make(chan struct{})
	}
	srv, waited := gateServer(t, g, func(w http.ResponseWriter, r *http.Request) {
		n := running.Add(1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		entered <- r.URL.Path
		<-release[r.URL.Path]
		running.Add(-1)
	})
	var done []<-chan int
	for i := range 5 {
		done = append(done, send(srv, fmt.Sprintf("/%d", i), false))
	}
	in := []string{<-entered, <-entered}
	for range 3 {
		<-waited
	}
	assert.Equal(t, 2, g.Running())
	assert.Equal(t, 3, g.Waiting())
	for i := 0; i < len(in); i++ { // each release lets the next one in
		close(release[in[i]])
		if len(in) < 5 {
			in = append(in, <-entered)
		}
	}
	for _, d := range done {
		assert.Equal(t, http.StatusOK, <-d)
	}
	assert.Equal(t, int32(2), most.Load(), "never more than two at once")
	assert.Equal(t, 0, g.Running())
}

// TestGateLetsWritesInFirst checks that a keyed write that joins the line
// after a read is let in before it.
func TestGateLetsWritesInFirst(t *testing.T) {
	g := NewGate(GateOptions{Slots: 1, MaxWait: time.Hour})
	srv, waited, entered, hold, h := withHolder(t, g)
	read := send(srv, "/read", false)
	<-waited
	write := send(srv, "/write", true)
	<-waited
	close(hold)
	assert.Equal(t, "/write", <-entered)
	assert.Equal(t, "/read", <-entered)
	for _, d := range []<-chan int{h, read, write} {
		assert.Equal(t, http.StatusOK, <-d)
	}
}

// TestGateRunsAWaiterAnywayAfterMaxWait checks that a request whose wait
// passes MaxWait runs without a slot while the slot is still held.
func TestGateRunsAWaiterAnywayAfterMaxWait(t *testing.T) {
	g := NewGate(GateOptions{Slots: 1, MaxWait: 20 * time.Millisecond})
	srv, _, _, hold, h := withHolder(t, g)
	assert.Equal(t, http.StatusOK, <-send(srv, "/late", false), "ran although the slot is held")
	assert.Equal(t, 1, g.Running(), "the late request held no slot")
	assert.EqualValues(t, 1, g.Unqueued())
	close(hold)
	assert.Equal(t, http.StatusOK, <-h)
	assert.Equal(t, 0, g.Running())
}

// TestAwayTransportGivesTheSlotBack checks that a request calling another
// service through AwayTransport frees its slot for the call: with one
// slot, another request runs while the call is in progress, and the
// caller takes a slot again after it.
func TestAwayTransportGivesTheSlotBack(t *testing.T) {
	called, answer := make(chan struct{}), make(chan struct{})
	partner := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(called)
		<-answer
	}))
	defer partner.Close()
	client := &http.Client{Transport: AwayTransport(http.DefaultTransport)}

	g := NewGate(GateOptions{Slots: 1, MaxWait: time.Hour})
	var mu sync.Mutex
	var afterCall int
	srv, _ := gateServer(t, g, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/caller" {
			return
		}
		req, _ := http.NewRequestWithContext(r.Context(), http.MethodGet, partner.URL, nil)
		resp, err := client.Do(req)
		if err != nil {
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		resp.Body.Close()
		mu.Lock()
		afterCall = g.Running()
		mu.Unlock()
	})
	caller := send(srv, "/caller", true)
	<-called
	select {
	case st := <-send(srv, "/other", false):
		assert.Equal(t, http.StatusOK, st)
	case <-time.After(30 * time.Second):
		close(answer)
		t.Fatal("another request waited for the slot of a caller that was away")
	}
	close(answer)
	assert.Equal(t, http.StatusOK, <-caller)
	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, 1, afterCall, "the caller holds a slot again after the call")
	assert.Equal(t, 0, g.Running())
}

// TestNewGateOff checks that no slots or no wait means no gate.
func TestNewGateOff(t *testing.T) {
	assert.Nil(t, NewGate(GateOptions{Slots: 0, MaxWait: time.Second}))
	assert.Nil(t, NewGate(GateOptions{Slots: 4, MaxWait: 0}))
	var g *Gate
	g.Enter(httptest.NewRequest(http.MethodPost, "/", nil), true)() // waits for nothing
}
