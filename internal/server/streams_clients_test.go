package server

// The subscription doors as client libraries use them: graphql-sse
// (heartbeat, event ids, Last-Event-ID resume across a dropped connection,
// with the real graphql-sse client) and multipart subscriptions (with
// @apollo/client's HttpLink).

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// clientPackages are the npm packages of the client tests, pinned.
var clientPackages = []string{"graphql-sse@2.6.1", "graphql@16.11.0", "@apollo/client@4.0.7", "rxjs@7.8.2"}

// clNPM installs clientPackages into the user cache (once per version set)
// and returns the directory whose node_modules they are in.
func clNPM(t testing.TB) string {
	t.Helper()
	if _, err := exec.LookPath("node"); err != nil {
		t.Fatalf("node not found (%v): install Node.js (apt-get install nodejs npm) to run the client library tests", err)
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	sum := sha256.Sum256([]byte(strings.Join(clientPackages, " ")))
	dir := filepath.Join(cache, "bff-client-libs-"+hex.EncodeToString(sum[:6]))
	if _, err := os.Stat(filepath.Join(dir, "node_modules", ".installed")); err != nil {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("npm", append([]string{"install", "--no-audit", "--no-fund", "--silent", "--prefix", dir}, clientPackages...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("npm install %v: %v\n%s", clientPackages, err, out)
		}
		if err := os.WriteFile(filepath.Join(dir, "node_modules", ".installed"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// clNodeProc is a running node script whose stdout lines arrive on lines.
type clNodeProc struct {
	t     testing.TB
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan string
	mu    sync.Mutex
	log   []string
}

// clNode runs testdata/<script> with node from the package directory (so it
// imports the pinned packages).
func clNode(t testing.TB, script string, args ...string) *clNodeProc {
	t.Helper()
	dir := clNPM(t)
	src, err := os.ReadFile(filepath.Join("testdata", script))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, script)
	if err := os.WriteFile(path, src, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("node", append([]string{path}, args...)...)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &clNodeProc{t: t, cmd: cmd, stdin: stdin, lines: make(chan string, 256)}
	go func() {
		defer close(p.lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			p.mu.Lock()
			p.log = append(p.log, sc.Text())
			p.mu.Unlock()
			p.lines <- sc.Text()
		}
	}()
	t.Cleanup(func() {
		_ = p.stdin.Close()
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	return p
}

// next returns the next line starting with prefix, skipping others; it
// fails when the script ends or says "error".
func (p *clNodeProc) next(prefix string) string {
	p.t.Helper()
	timeout := time.After(30 * time.Second) // a hang, not a timing goal
	for {
		select {
		case line, ok := <-p.lines:
			if !ok {
				p.t.Fatalf("the client script ended; its output: %q", p.output())
			}
			if strings.HasPrefix(line, "error") || strings.HasPrefix(line, "errors") {
				p.t.Fatalf("client: %s", line)
			}
			if strings.HasPrefix(line, prefix) {
				return line
			}
		case <-timeout:
			p.t.Fatalf("no %q line from the client; its output: %q", prefix, p.output())
		}
	}
}

// rest closes stdin and returns the lines printed until the script exits.
func (p *clNodeProc) rest() []string {
	p.t.Helper()
	_ = p.stdin.Close()
	var out []string
	for line := range p.lines {
		out = append(out, line)
	}
	return out
}

func (p *clNodeProc) output() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.log)
}

// clProxy forwards TCP connections to a server and can drop them all.
type clProxy struct {
	ln    net.Listener
	mu    sync.Mutex
	conns []net.Conn
}

func newCLProxy(t testing.TB, target string) *clProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &clProxy{ln: ln}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				_ = c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, s)
			p.mu.Unlock()
			go func() { _, _ = io.Copy(s, c); _ = s.Close() }()
			go func() { _, _ = io.Copy(c, s); _ = c.Close() }()
		}
	}()
	t.Cleanup(func() { _ = ln.Close(); p.drop() })
	return p
}

// URL is the proxy's base URL.
func (p *clProxy) URL() string { return "http://" + p.ln.Addr().String() }

// drop closes every connection (both sides), like a network failure.
func (p *clProxy) drop() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := len(p.conns) / 2
	for _, c := range p.conns {
		_ = c.Close()
	}
	p.conns = nil
	return n
}

// clOrder places an order for tok's user and returns its id, version and
// the orderScreen's lastEventId.
func clOrder(t testing.TB, in *instance, tok string) (id string, version int, lastEventID string) {
	t.Helper()
	p := mutCatalogue(t, in, 1)[0]
	r := in.post(tok, `mutation($in: PlaceOrderInput!) { placeOrder(input: $in) { order { id version } } }`,
		map[string]any{"in": mutInput(p.ID, 1)}, "Idempotency-Key: "+mutKey())
	id, _ = field(r.Data, "placeOrder", "order", "id").(string)
	v, _ := field(r.Data, "placeOrder", "order", "version").(float64)
	if id == "" {
		t.Fatalf("placeOrder: %s", r.Raw)
	}
	r = in.post(tok, `query($id: ID!) { orderScreen(id: $id) { lastEventId } }`, map[string]any{"id": id})
	lastEventID, _ = field(r.Data, "orderScreen", "lastEventId").(string)
	if lastEventID == "" {
		t.Fatalf("orderScreen: %s", r.Raw)
	}
	return id, int(v), lastEventID
}

// clUpdate changes the order's address (one event) and returns the new
// version.
func clUpdate(t testing.TB, in *instance, tok, id string, version int) int {
	t.Helper()
	r := in.post(tok, `mutation($id: ID!, $v: Int!, $a: AddressInput!) { updateShippingAddress(id: $id, expectedVersion: $v, address: $a) { order { version } } }`,
		map[string]any{"id": id, "v": version, "a": mutAddress})
	v, ok := field(r.Data, "updateShippingAddress", "order", "version").(float64)
	if !ok {
		t.Fatalf("updateShippingAddress: %s", r.Raw)
	}
	return int(v)
}

// clTimeline returns the ids of the order's events after the event after,
// oldest first, as the order screen lists them.
func clTimeline(t testing.TB, in *instance, tok, id, after string) []string {
	t.Helper()
	r := in.post(tok, `query($id: ID!) { orderScreen(id: $id) { timeline { id } } }`, map[string]any{"id": id}, "Cache-Control: no-cache")
	var ids []string
	seen := after == ""
	for _, e := range field(r.Data, "orderScreen", "timeline").([]any) {
		eid, _ := field(e, "id").(string)
		if seen {
			ids = append(ids, eid)
		}
		seen = seen || eid == after
	}
	return ids
}

// TestGraphQLSSEClientResumesAcrossDroppedConnection: the real graphql-sse
// client follows an order from the screen's lastEventId; its TCP
// connection is dropped after three events, three more are committed
// while it is away, and it reconnects with Last-Event-ID from its headers
// function: every event arrives exactly once, in order.
func TestGraphQLSSEClientResumesAcrossDroppedConnection(t *testing.T) {
	e := newEnv(t)
	cfg := e.config()
	cfg.StreamHeartbeat = 100 * time.Millisecond
	in := e.start(cfg, Options{})
	tok := in.token("alice@example.com")
	id, version, after := clOrder(t, in, tok)
	proxy := newCLProxy(t, strings.TrimPrefix(in.URL, "http://"))
	client := clNode(t, "graphql-sse-resume.mjs", proxy.URL()+"/graphql", tok, id, after)
	client.next("connected false")

	var got []string
	take := func(n int) {
		for range n {
			got = append(got, strings.Fields(client.next("event "))[1])
		}
	}
	for range 3 {
		version = clUpdate(t, in, tok, id, version)
	}
	take(3)
	if n := proxy.drop(); n != 1 {
		t.Fatalf("dropped %d connections, want the stream's 1", n)
	}
	for range 3 {
		version = clUpdate(t, in, tok, id, version)
	}
	take(3)
	if !slices.Contains(client.output(), "connected true") {
		t.Fatalf("the client never reconnected: %q", client.output())
	}
	version = clUpdate(t, in, tok, id, version)
	take(1)
	for _, line := range client.rest() {
		if strings.HasPrefix(line, "event ") {
			got = append(got, strings.Fields(line)[1])
		}
	}
	want := clTimeline(t, in, tok, id, after)
	if len(want) != 7 || !slices.Equal(got, want) {
		t.Fatalf("received %v\nwant exactly once, in order: %v\nclient output: %q", got, want, client.output())
	}
}

// TestApolloHttpLinkMultipartSubscription: @apollo/client's HttpLink runs
// orderEvents over the multipart door (heartbeats every 100 ms between
// events) and receives the order's events with the ids graphql-sse and
// /events use.
func TestApolloHttpLinkMultipartSubscription(t *testing.T) {
	e := newEnv(t)
	cfg := e.config()
	cfg.StreamHeartbeat = 100 * time.Millisecond
	in := e.start(cfg, Options{})
	tok := in.token("alice@example.com")
	id, version, after := clOrder(t, in, tok)
	client := clNode(t, "apollo-multipart.mjs", in.URL+"/graphql", tok, id, after)
	client.next("subscribed")
	var got []string
	for range 3 {
		version = clUpdate(t, in, tok, id, version)
		got = append(got, strings.Fields(client.next("event "))[1])
	}
	if want := clTimeline(t, in, tok, id, after); !slices.Equal(got, want) {
		t.Fatalf("received %v, want %v; output %q", got, want, client.output())
	}
}

// TestSubscriptionDoorsHeartbeatIdsAndLastEventID: both subscription doors
// send heartbeats at STREAM_HEARTBEAT while idle, X-Accel-Buffering: no,
// label each event with its id (graphql-sse), and a Last-Event-ID header
// overrides the after argument.
func TestSubscriptionDoorsHeartbeatIdsAndLastEventID(t *testing.T) {
	e := newEnv(t)
	cfg := e.config()
	cfg.StreamHeartbeat = 100 * time.Millisecond
	in := e.start(cfg, Options{})
	tok := in.token("alice@example.com")
	id, version, after := clOrder(t, in, tok)
	for range 3 {
		version = clUpdate(t, in, tok, id, version)
	}
	ids := clTimeline(t, in, tok, id, after)
	if len(ids) != 3 {
		t.Fatalf("timeline after %s: %v", after, ids)
	}
	for _, door := range []struct{ name, accept, heartbeat string }{
		{"graphql-sse", "text/event-stream", ": ping"},
		{"multipart", `multipart/mixed;boundary="graphql";subscriptionSpec="1.0", application/json`, "{}"},
	} {
		t.Run(door.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			// after "" is live only; Last-Event-ID resumes after the first event
			body := `{"query":"subscription($id: ID) { orderEvents(orderId: $id, after: \"\") { id } }","variables":{"id":"` + id + `"}}`
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, in.URL+"/graphql", strings.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Accept", door.accept)
			req.Header.Set("Authorization", "Bearer "+tok)
			req.Header.Set("Last-Event-ID", ids[0])
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != 200 || resp.Header.Get("X-Accel-Buffering") != "no" {
				t.Fatalf("status %d, X-Accel-Buffering %q", resp.StatusCode, resp.Header.Get("X-Accel-Buffering"))
			}
			sc := bufio.NewScanner(resp.Body)
			var lines []string
			var events []string
			heartbeats := 0
			for sc.Scan() && (len(events) < 2 || heartbeats < 2) {
				line := sc.Text()
				lines = append(lines, line)
				switch {
				case strings.TrimSpace(line) == door.heartbeat:
					heartbeats++
				case strings.Contains(line, `"orderEvents"`):
					for _, eid := range ids {
						if strings.Contains(line, `"id":"`+eid+`"`) {
							events = append(events, eid)
						}
					}
				}
			}
			if !slices.Equal(events, ids[1:]) {
				t.Fatalf("events %v, want those after Last-Event-ID: %v; lines %q", events, ids[1:], lines)
			}
			if door.name == "graphql-sse" {
				for i, line := range lines {
					if strings.Contains(line, `"orderEvents"`) && (i < 2 || lines[i-2] != "id: "+events[0] && lines[i-2] != "id: "+events[1]) {
						t.Errorf("event %q is not labelled with its id: %q", line, lines[max(0, i-2):i+1])
					}
				}
			}
		})
	}
}

// TestApolloRetryLinkHonoursRetryAfterWithOneKey: the README's Apollo
// Client setup places two orders back to back under a limit of one
// mutation per second: the second is refused 429 RATE_LIMITED, retried
// after Retry-After with the same Idempotency-Key, and placed once.
func TestApolloRetryLinkHonoursRetryAfterWithOneKey(t *testing.T) {
	e := newEnv(t)
	cfg := e.config()
	cfg.RateMutationsPerSecond, cfg.RateMutationsBurst = 1, 1
	in := e.start(cfg, Options{})
	tok := in.token("bob@example.com")
	p := mutCatalogue(t, in, 1)[0]
	input, _ := json.Marshal(mutInput(p.ID, 1))
	before := mutInt(t, in, `SELECT count(*) FROM orders o JOIN users u ON u.id = o.customer_id WHERE u.email = 'bob@example.com'`)
	client := clNode(t, "apollo-retry.mjs", in.URL+"/graphql", tok, string(input))
	client.next("done first")
	client.next("done second")
	var statuses, keys []string
	for _, line := range client.output() {
		if f := strings.Fields(line); len(f) == 4 && f[0] == "attempt" {
			statuses, keys = append(statuses, f[2]), append(keys, f[3])
		}
	}
	// the first order: one attempt; the second: 429 then 200, one key
	if len(statuses) < 3 || statuses[0] != "200" || statuses[1] != "429" || statuses[len(statuses)-1] != "200" {
		t.Fatalf("attempts %v: want 200, then 429 and a successful retry; output %q", statuses, client.output())
	}
	for _, k := range keys[2:] {
		if k != keys[1] {
			t.Errorf("the retry used key %s, the first attempt %s", k, keys[1])
		}
	}
	if keys[0] == keys[1] {
		t.Errorf("two intents shared the key %s", keys[0])
	}
	if n := mutInt(t, in, `SELECT count(*) FROM orders o JOIN users u ON u.id = o.customer_id WHERE u.email = 'bob@example.com'`); n != before+2 {
		t.Errorf("%d orders placed, want 2", n-before)
	}
}

// TestMultipartDoorRules: the multipart door applies the rules of the
// other doors: subscriptions only (a query is 400 BAD_REQUEST), the
// order's customer only (another customer gets NOT_FOUND, no credentials
// UNAUTHENTICATED, as the payload's errors), and the stream ends with the
// closing boundary.
func TestMultipartDoorRules(t *testing.T) {
	e := newEnv(t)
	in := e.start(nil, Options{})
	alice, bob := in.token("alice@example.com"), in.token("bob@example.com")
	id, _, _ := clOrder(t, in, alice)
	send := func(tok, query string) (int, string) {
		body, _ := json.Marshal(map[string]any{"query": query, "variables": map[string]any{"id": id}})
		req, _ := http.NewRequest(http.MethodPost, in.URL+"/graphql", strings.NewReader(string(body)))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "multipart/mixed;boundary=graphql;subscriptionSpec=1.0,application/json")
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body) // the stream ends after an error
		return resp.StatusCode, string(b)
	}
	const sub = `subscription($id: ID) { orderEvents(orderId: $id) { id } }`
	if status, body := send(alice, `query($id: ID!) { order(id: $id) { id } }`); status != 400 || !strings.Contains(body, "BAD_REQUEST") {
		t.Errorf("a query on the multipart door: %d %s", status, body)
	}
	for _, c := range []struct{ tok, code string }{{bob, "NOT_FOUND"}, {"", "UNAUTHENTICATED"}} {
		status, body := send(c.tok, sub)
		if status != 200 || !strings.Contains(body, `{"payload":`) || !strings.Contains(body, c.code) || !strings.HasSuffix(body, "\r\n--graphql--\r\n") {
			t.Errorf("want %s: %d %q", c.code, status, body)
		}
	}
}
