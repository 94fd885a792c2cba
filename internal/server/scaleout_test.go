package server

// The scale-out shape (spec/operations.md, Scale-out) on real engines
// started by the tests: a Redis Cluster of 3 masters and 3 replicas with a
// master killed under the instances, and Postgres through PgBouncer in
// transaction pooling mode with the pooler restarted.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/shop/bff/internal/config"
	"github.com/shop/bff/internal/postgres"
	"github.com/shop/bff/internal/testenv"
)

// orderFeed follows one order's events on both doors of an instance and
// records the versions each door received.
type orderFeed struct {
	t      *testing.T
	cancel context.CancelFunc
	mu     sync.Mutex
	sse    []int
	gql    []int
	seen   chan struct{}
}

func followOrder(t *testing.T, in *instance, tok, id string) *orderFeed {
	t.Helper()
	// Both doors resume from a screen read, as a client does.
	screen := in.post(tok, orderScreenQuery, map[string]any{"id": id})
	last, _ := field(screen.Data, "orderScreen", "lastEventId").(string)
	ctx, cancel := context.WithCancel(context.Background())
	f := &orderFeed{t: t, cancel: cancel, seen: make(chan struct{}, 1024)}
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, in.URL+"/events?stream=order:"+id+"&lastEventId="+urlEscape(last), nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /events: %v %v", err, resp)
	}
	body, _ := json.Marshal(map[string]any{"query": `subscription($id: ID, $after: String) { orderEvents(orderId: $id, after: $after) { id version } }`,
		"variables": map[string]any{"id": id, "after": last}})
	sreq, _ := http.NewRequestWithContext(ctx, http.MethodPost, in.URL+"/graphql", bytes.NewReader(body))
	sreq.Header.Set("Authorization", "Bearer "+tok)
	sreq.Header.Set("Content-Type", "application/json")
	sreq.Header.Set("Accept", "text/event-stream")
	sresp, err := http.DefaultClient.Do(sreq)
	if err != nil || sresp.StatusCode != http.StatusOK {
		t.Fatalf("subscription: %v %v", err, sresp)
	}
	go func() {
		for ev := range readEvents(resp.Body) {
			var d struct{ Version int }
			if json.Unmarshal([]byte(ev.data), &d) == nil && d.Version > 0 {
				f.mu.Lock()
				f.sse = append(f.sse, d.Version)
				f.mu.Unlock()
				f.seen <- struct{}{}
			}
		}
	}()
	go func() {
		for ev := range readEvents(sresp.Body) {
			var d struct {
				Data struct{ OrderEvents struct{ Version int } }
			}
			if json.Unmarshal([]byte(ev.data), &d) == nil && d.Data.OrderEvents.Version > 0 {
				f.mu.Lock()
				f.gql = append(f.gql, d.Data.OrderEvents.Version)
				f.mu.Unlock()
				f.seen <- struct{}{}
			}
		}
	}()
	return f
}

// waitVersions waits until both doors received every version in
// (from, to] and checks each arrived exactly once and in order.
func (f *orderFeed) waitVersions(from, to int) {
	f.t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		f.mu.Lock()
		done := len(f.sse) > 0 && f.sse[len(f.sse)-1] >= to && len(f.gql) > 0 && f.gql[len(f.gql)-1] >= to
		sse, gql := append([]int(nil), f.sse...), append([]int(nil), f.gql...)
		f.mu.Unlock()
		if done {
			for door, got := range map[string][]int{"/events": sse, "graphql-sse": gql} {
				want := []int{}
				for v := from + 1; v <= to; v++ {
					want = append(want, v)
				}
				if fmt.Sprint(got) != fmt.Sprint(want) {
					f.t.Fatalf("%s received versions %v, want each of %v exactly once in order", door, got, want)
				}
			}
			return
		}
		select {
		case <-f.seen:
		case <-deadline:
			f.t.Fatalf("events did not arrive: /events %v, graphql-sse %v, want up to version %d", sse, gql, to)
		}
	}
}

// screenVersion reads the order screen and returns the order's version
// and the Cache-Status header.
func screenVersion(t *testing.T, in *instance, tok, id string) (int, string) {
	t.Helper()
	r := in.post(tok, orderScreenQuery, map[string]any{"id": id})
	v, ok := field(r.Data, "orderScreen", "order", "version").(float64)
	if !ok {
		t.Fatalf("order screen: %d %s", r.Status, r.Raw)
	}
	return int(v), r.Header.Get("Cache-Status")
}

func TestRedisClusterShapeAndMasterFailover(t *testing.T) {
	rc := testenv.StartRedisCluster(t, 3, 1)
	e := newEnv(t)
	cfg := func() *instance {
		c := e.config()
		c.RedisURL = rc.Addrs()
		// a limit that is not reached, so that every request goes
		// through the Redis limiter's script
		c.RateQueriesPerSecond, c.RateQueriesBurst = 10000, 10000
		c.RateMutationsPerSecond, c.RateMutationsBurst = 10000, 10000
		return e.start(c, Options{})
	}
	a, b := cfg(), cfg()
	tok := a.token("alice@example.com")
	id, version := pendingOrder(t, a, tok)
	client := rc.Client()
	ctx := context.Background()

	// The screen cache: its scripts touch several keys of one slot each.
	if _, st := screenVersion(t, a, tok, id); !strings.Contains(st, "miss") {
		t.Fatalf("first read: Cache-Status %q", st)
	}
	if _, st := screenVersion(t, b, tok, id); !strings.HasPrefix(st, "bff; hit") {
		t.Fatalf("second read on the other instance: Cache-Status %q, want a hit from the cluster", st)
	}
	// The fast path's reads: the script, then one MGET of the known
	// generations and the entry (keys of one slot).
	fast := b.fastHits()
	for i := range 2 {
		if _, st := screenVersion(t, b, tok, id); !strings.HasPrefix(st, "bff; hit") {
			t.Fatalf("fast-path read %d: Cache-Status %q, want a hit from the cluster", i, st)
		}
	}
	if got := b.fastHits() - fast; got != 2 {
		t.Fatalf("%d of 2 reads answered by the fast path", got)
	}
	// APQ: stored through one instance, found through the other.
	q := `{ homeScreen { openOrders } }`
	ext := `{"persistedQuery":{"version":1,"sha256Hash":"` + sha256Hex(q) + `"}}`
	apq := func(in *instance, query string) *gqlResponse {
		u := in.URL + "/graphql?extensions=" + urlEscape(ext)
		if query != "" {
			u += "&query=" + urlEscape(query)
		}
		req, _ := http.NewRequest(http.MethodGet, u, nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		return in.do(req)
	}
	if r := apq(a, q); len(r.Errors) > 0 {
		t.Fatalf("APQ register: %s", r.Raw)
	}
	if r := apq(b, ""); len(r.Errors) > 0 {
		t.Fatalf("APQ by hash on the other instance: %s", r.Raw)
	}
	// The rate limiter keeps its state in the cluster.
	var rl []string
	if err := client.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
		keys, err := m.Keys(ctx, "rate:"+e.prefix+"rl:*").Result()
		rl = append(rl, keys...)
		return err
	}); err != nil || len(rl) == 0 {
		t.Fatalf("rate limiter keys in the cluster: %v %v", rl, err)
	}

	// Sharded pub/sub: both instances hold a sharded subscription.
	channel := e.prefix + "events"
	waitFor(t, "both instances subscribed to the sharded channel", func() bool {
		return shardSubscribers(t, rc, channel) == 2
	})
	feed := followOrder(t, b, tok, id)
	start := version
	write := func(city string) {
		t.Helper()
		m := a.post(tok, updateAddress, map[string]any{"id": id, "v": version, "city": city})
		if len(m.Errors) > 0 {
			t.Fatalf("mutation: %s", m.Raw)
		}
		version = int(field(m.Data, "updateShippingAddress", "order", "version").(float64))
		for _, in := range []*instance{a, b} {
			if v, st := screenVersion(t, in, tok, id); v != version {
				t.Fatalf("stale read after a write: version %d, want %d (Cache-Status %q)", v, version, st)
			}
		}
	}
	for i := range 3 {
		write(fmt.Sprintf("before %d", i))
	}
	feed.waitVersions(start, version)

	// Kill the master of the cache's slot, then the master of the event
	// channel's slot (one at a time: a failover needs a majority of the
	// masters). Writes go on during each failover: slower, never broken
	// or stale.
	victims := []*testenv.RedisProcess{rc.MasterOf("{cache}")}
	if m := rc.MasterOf(channel); m != victims[0] {
		victims = append(victims, m)
	}
	for _, m := range victims {
		m.Kill()
		for i := range 5 {
			write(fmt.Sprintf("during %d", i))
		}
		rc.WaitHealthy(60 * time.Second)
		for i := range 5 {
			write(fmt.Sprintf("after %d", i))
		}
	}
	feed.waitVersions(start, version)
	waitFor(t, "both instances subscribed again on the new master", func() bool {
		return shardSubscribers(t, rc, channel) == 2
	})
	waitFor(t, "the cache serving hits again after the failover", func() bool {
		screenVersion(t, a, tok, id)
		v, st := screenVersion(t, b, tok, id)
		if v != version {
			t.Fatalf("stale read: version %d, want %d", v, version)
		}
		return strings.HasPrefix(st, "bff; hit")
	})
	write("last")
	feed.waitVersions(start, version)
}

// TestRedisClusterClientFollowsFailover: a killed master answers nothing,
// so no MOVED tells the client that its replica took over; only a reload
// of the slot map does. With go-redis's default (a reload a minute) every
// call to the dead master's slots failed for up to a minute after the
// cluster had failed over (the scale-out test saw 58 s of failed cache
// invalidations after a 3 s failover). NewRedis's client reloads the map
// every redisClusterReload, so once the cluster itself says it has failed
// over, calls with the screen cache's budget reach the new master long
// before a minute has passed (the wait below gives up after 30 s).
func TestRedisClusterClientFollowsFailover(t *testing.T) {
	rc := testenv.StartRedisCluster(t, 3, 1)
	rdb, err := NewRedis(&config.Config{RedisURL: rc.Addrs()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rdb.Close() })
	set := func(budget time.Duration) error {
		ctx, cancel := context.WithTimeout(context.Background(), budget)
		defer cancel()
		return rdb.Set(ctx, "{cache}:failover", "x", 0).Err()
	}
	if err := set(5 * time.Second); err != nil { // loads the slot map
		t.Fatalf("before the failover: %v", err)
	}
	rc.MasterOf("{cache}").Kill()
	rc.WaitHealthy(60 * time.Second)
	waitFor(t, "a call with the cache's 50 ms budget to reach the new master", func() bool {
		return set(50*time.Millisecond) == nil
	})
}

func TestPostgresThroughPgBouncerTransactionPooling(t *testing.T) {
	direct := testenv.PrivateDatabase(t)
	pb := testenv.StartPgBouncer(t, direct, 2)
	_, prefix := testenv.Redis(t)
	e := &env{t: t, dbURL: pb.URL(), prefix: prefix}
	start := func() *instance {
		c := e.config()
		c.DatabaseMigrateURL = direct // migrations hold a session lock
		c.PGMaxConns = 8              // more client connections than server connections
		return e.start(c, Options{})
	}
	a := start()
	if err := a.srv.Store().Seed(context.Background(), postgres.SeedOptions{}); err != nil {
		t.Fatalf("seed through pgbouncer: %v", err)
	}
	b := start()
	tok := a.token("alice@example.com")
	id, version := pendingOrder(t, a, tok)
	feed := followOrder(t, b, tok, id)

	// Transaction-level advisory locks: one effect for 20 concurrent
	// requests with one key across two instances.
	ps := mutCatalogue(t, a, 2)
	body := mutBody(mutPlaceQuery, map[string]any{"in": mutInput(ps[0].ID, 1, ps[1].ID, 1)})
	var wg sync.WaitGroup
	ids := make([]string, 20)
	for i := range ids {
		url := []string{a.URL, b.URL}[i%2]
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := mutSend(url, tok, body, "Idempotency-Key: pgbouncer-key")
			if err != nil {
				t.Errorf("request %d: %v", i, err)
				return
			}
			switch {
			case r.Status == http.StatusOK && len(r.Errors) == 0:
				ids[i], _ = field(r.Data, "placeOrder", "order", "id").(string)
			case r.code() != "IDEMPOTENCY_KEY_IN_USE":
				t.Errorf("request %d: %d %s", i, r.Status, r.Raw)
			}
		}()
	}
	wg.Wait()
	placed := map[string]bool{}
	for _, id := range ids {
		if id != "" {
			placed[id] = true
		}
	}
	if len(placed) != 1 {
		t.Fatalf("orders placed by one key: %v", placed)
	}

	// Writes on one instance, reads and events on the other.
	from := version
	for i := range 5 {
		m := a.post(tok, updateAddress, map[string]any{"id": id, "v": version, "city": fmt.Sprintf("Pooled %d", i)})
		if len(m.Errors) > 0 {
			t.Fatalf("mutation: %s", m.Raw)
		}
		version++
		if v, _ := screenVersion(t, b, tok, id); v != version {
			t.Fatalf("read after write through the pooler: version %d, want %d", v, version)
		}
	}
	feed.waitVersions(from, version)

	// The pooler goes away: UNAVAILABLE, retryable; then recovery.
	pb.Kill()
	r := a.post(tok, updateAddress, map[string]any{"id": id, "v": version, "city": "down"})
	if r.code() != "UNAVAILABLE" || mutExt(r, "retryable") != true {
		t.Fatalf("with pgbouncer down: %d %s", r.Status, r.Raw)
	}
	pb.Start()
	waitFor(t, "a write through the restarted pgbouncer", func() bool {
		r := a.post(tok, updateAddress, map[string]any{"id": id, "v": version, "city": "back"})
		return len(r.Errors) == 0
	})
	version++
	// The other instance's pooled connections died with the pooler: its
	// first queries may fail with UNAVAILABLE (retryable) until the pool
	// has replaced them; what it then reads is fresh.
	waitFor(t, "a read through the restarted pgbouncer on the other instance", func() bool {
		r := b.post(tok, orderScreenQuery, map[string]any{"id": id})
		if len(r.Errors) > 0 {
			if r.code() != "UNAVAILABLE" {
				t.Fatalf("read after the restart: %s", r.Raw)
			}
			return false
		}
		if v := int(field(r.Data, "orderScreen", "order", "version").(float64)); v != version {
			t.Fatalf("read after recovery: version %d, want %d", v, version)
		}
		return true
	})
	feed.waitVersions(from, version)
}

// shardSubscribers is the number of sharded subscriptions to channel on
// the master of its slot.
func shardSubscribers(t *testing.T, rc *testenv.RedisCluster, channel string) int64 {
	c := redis.NewClient(&redis.Options{Addr: rc.MasterOf(channel).Addr()})
	defer c.Close()
	n, err := c.PubSubShardNumSub(context.Background(), channel).Result()
	if err != nil {
		return -1
	}
	return n[channel]
}

// waitFor polls cond until it holds, failing the test after 30 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
