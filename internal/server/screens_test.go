package server

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shop/bff/internal/order"
	"github.com/shop/bff/internal/postgres"
	"github.com/shop/bff/internal/testenv"
)

const (
	ordersScreenQuery = `query($first: Int, $after: String, $status: OrderStatus) { ordersScreen(first: $first, after: $after, status: $status) {
		orders { totalCount pageInfo { hasNextPage endCursor } edges { cursor node { id number version status total { cents } lines { quantity product { name } } customer { email } } } }
		statusCounts { status count } } }`
	orderScreenQuery = `query($id: ID!) { orderScreen(id: $id) { order { id version status shippingAddress { city } lines { product { sku } } }
		timeline { id type version } availableActions lastEventId } }`
)

// customerWithOrders adds a customer with n pending orders of two lines
// each and returns the customer.
func customerWithOrders(t *testing.T, in *instance, n int) *order.User {
	t.Helper()
	ctx := context.Background()
	store := in.srv.Store()
	email := fmt.Sprintf("c%d-%d@example.com", n, rand.Int())
	if _, err := in.db().Exec(ctx, `INSERT INTO users (email, name, role) VALUES ($1, 'Test Customer', 'CUSTOMER')`, email); err != nil {
		t.Fatal(err)
	}
	u, err := store.UserByEmail(ctx, email)
	if err != nil {
		t.Fatal(err)
	}
	products, _, err := store.Products(ctx, 10, "")
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		_, err := store.InTx(ctx, func(tx *postgres.Tx) error {
			_, err := tx.PlaceOrder(ctx, u, postgres.PlaceOrderInput{Currency: "USD",
				Lines:   []order.LineInput{{ProductID: products[i%10].ID, Quantity: 1 + i%3}, {ProductID: products[(i+3)%10].ID, Quantity: 2}},
				Address: order.Address{Name: "T", Line1: "1 Main St", City: "Springfield", PostalCode: "12345", Country: "US"}})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return u
}

// sqlOf counts the SQL statements the server runs for requests during f.
func (in *instance) sqlOf(f func()) int64 {
	before := in.queries.n.Load()
	f()
	return in.queries.n.Load() - before
}

// sqlCost is the SQL of some requests: statements, and round trips to
// Postgres (a query alone, or a whole batch).
type sqlCost struct{ Statements, RoundTrips int64 }

// costOf measures the SQL the server runs for requests during f.
func (in *instance) costOf(f func()) sqlCost {
	n, trips := in.queries.n.Load(), in.queries.trips.Load()
	f()
	return sqlCost{Statements: in.queries.n.Load() - n, RoundTrips: in.queries.trips.Load() - trips}
}

// screenSQL is the SQL of one screen read from Postgres: one pipelined
// batch in a read-only snapshot (BEGIN, the orders, their lines with
// products, their customers, the screen's own reads, COMMIT).
var screenSQL = map[string]sqlCost{
	"homeScreen":   {Statements: 7, RoundTrips: 1}, // + status counts, last stream position
	"ordersScreen": {Statements: 7, RoundTrips: 1}, // + status counts, last stream position
	"orderScreen":  {Statements: 7, RoundTrips: 1}, // + timeline, last stream position
}

// A screen read from Postgres costs a fixed SQL, whatever the number of
// orders it shows.
func TestScreenQueryCountDoesNotGrowWithOrders(t *testing.T) {
	e := newEnv(t)
	in := e.start(nil, Options{})
	for _, n := range []int{1, 20} {
		u := customerWithOrders(t, in, n)
		tok := in.token(u.Email)
		in.post(tok, `{ viewer { id } }`, nil) // warm the user lookup
		r := in.post(tok, ordersScreenQuery, map[string]any{"first": 20})
		edges := field(r.Data, "ordersScreen", "orders", "edges").([]any)
		if len(edges) != n {
			t.Fatalf("ordersScreen has %d orders, want %d", len(edges), n)
		}
		id := field(edges[0], "node", "id").(string)
		for name, c := range map[string]struct {
			q    string
			vars map[string]any
		}{
			"homeScreen":   {homeQuery, nil},
			"ordersScreen": {ordersScreenQuery, map[string]any{"first": 20}},
			"orderScreen":  {orderScreenQuery, map[string]any{"id": id}},
		} {
			var r *gqlResponse
			got := in.costOf(func() { r = in.post(tok, c.q, c.vars, "Cache-Control: no-cache") })
			if len(r.Errors) > 0 {
				t.Fatalf("%s: %s", name, r.Raw)
			}
			t.Logf("%s with %d orders: %d statements in %d round trip(s)", name, n, got.Statements, got.RoundTrips)
			if got != screenSQL[name] {
				t.Errorf("%s with %d orders: %+v, want %+v", name, n, got, screenSQL[name])
			}
		}
	}
}

func TestCacheHitRunsNoSQL(t *testing.T) {
	e := newEnv(t)
	in := e.start(nil, Options{})
	tok := in.token("alice@example.com")
	home := in.post(tok, homeQuery, nil)
	id := field(home.Data, "homeScreen", "recentOrders", 0, "id").(string)
	for name, c := range map[string]struct {
		q    string
		vars map[string]any
	}{
		"homeScreen":   {homeQuery, nil},
		"ordersScreen": {ordersScreenQuery, map[string]any{"first": 3}},
		"orderScreen":  {orderScreenQuery, map[string]any{"id": id}},
	} {
		in.post(tok, c.q, c.vars, "Cache-Control: no-cache") // fill
		var r *gqlResponse
		n := in.sqlOf(func() { r = in.post(tok, c.q, c.vars) })
		if len(r.Errors) > 0 {
			t.Fatalf("%s: %s", name, r.Raw)
		}
		if st := field(r.Extensions, "cache", name, "status"); st != "hit" {
			t.Fatalf("%s: cache status %v, want hit (%s)", name, st, r.Raw)
		}
		if !strings.HasPrefix(r.Header.Get("Cache-Status"), "bff; hit; ttl=") {
			t.Errorf("%s: Cache-Status %q", name, r.Header.Get("Cache-Status"))
		}
		if n != 0 {
			t.Errorf("%s: a cache hit ran %d SQL queries", name, n)
		}
		b := in.post(tok, c.q, c.vars, "Cache-Control: no-cache")
		if st := field(b.Extensions, "cache", name, "status"); st != "bypass" {
			t.Errorf("%s: no-cache gave status %v, want bypass", name, st)
		}
		// HTTP/1.0's Pragma: no-cache, without Cache-Control, asks the same.
		p := in.post(tok, c.q, c.vars, "Pragma: no-cache")
		if st := field(p.Extensions, "cache", name, "status"); st != "bypass" {
			t.Errorf("%s: Pragma: no-cache gave status %v, want bypass", name, st)
		}
	}
}

func TestCachedScreenIsNeverAnotherViewers(t *testing.T) {
	e := newEnv(t)
	in := e.start(nil, Options{})
	for i := 0; i < 2; i++ { // the second round is served from the cache
		for _, email := range []string{"alice@example.com", "bob@example.com", "staff@example.com"} {
			r := in.post(in.token(email), homeQuery, nil)
			if got := field(r.Data, "homeScreen", "viewer", "email"); got != email {
				t.Fatalf("round %d: %s got the home screen of %v", i, email, got)
			}
		}
	}
}

// pendingOrder returns the id and version of one of the customer's orders
// whose address can be changed.
func pendingOrder(t *testing.T, in *instance, tok string) (string, int) {
	t.Helper()
	r := in.post(tok, ordersScreenQuery, map[string]any{"first": 50, "status": "PENDING_PAYMENT"}, "Cache-Control: no-cache")
	edges, _ := field(r.Data, "ordersScreen", "orders", "edges").([]any)
	if len(edges) == 0 {
		t.Fatalf("no pending order: %s", r.Raw)
	}
	return field(edges[0], "node", "id").(string), int(field(edges[0], "node", "version").(float64))
}

const updateAddress = `mutation($id: ID!, $v: Int!, $city: String!) { updateShippingAddress(id: $id, expectedVersion: $v,
	address: {name: "Alice", line1: "2 Side St", city: $city, postalCode: "99999", country: "DE"}) { order { id version } } }`

func TestReadYourWritesAcrossInstances(t *testing.T) {
	e := newEnv(t)
	a, b := e.start(nil, Options{}), e.start(nil, Options{})
	tok := a.token("alice@example.com")
	id, version := pendingOrder(t, a, tok)
	insts := []*instance{a, b}
	for i := 0; i < 200; i++ {
		w := insts[rand.IntN(2)]
		r := insts[rand.IntN(2)]
		// warm both caches with the current version, so a stale entry exists to be served
		r.post(tok, orderScreenQuery, map[string]any{"id": id})
		r.post(tok, homeQuery, nil)
		city := fmt.Sprintf("City %d", i)
		m := w.post(tok, updateAddress, map[string]any{"id": id, "v": version, "city": city})
		if len(m.Errors) > 0 {
			t.Fatalf("iteration %d: mutation: %s", i, m.Raw)
		}
		version = int(field(m.Data, "updateShippingAddress", "order", "version").(float64))
		got := r.post(tok, orderScreenQuery, map[string]any{"id": id})
		if v := int(field(got.Data, "orderScreen", "order", "version").(float64)); v != version {
			t.Fatalf("iteration %d: read after write saw version %d, want %d (cache %v)", i, v, version, got.Extensions["cache"])
		}
		if c := field(got.Data, "orderScreen", "order", "shippingAddress", "city"); c != city {
			t.Fatalf("iteration %d: city %v, want %s", i, c, city)
		}
		tl, _ := field(got.Data, "orderScreen", "timeline").([]any)
		if last := int(field(tl[len(tl)-1], "version").(float64)); last != version {
			t.Fatalf("iteration %d: timeline ends at version %d, want %d", i, last, version)
		}
	}
}

func TestNoStaleRefillAfterAWrite(t *testing.T) {
	e := newEnv(t)
	release := make(chan struct{})
	loaded := make(chan struct{}, 1)
	var armed atomic.Bool
	opt := Options{CacheStoreDelay: func(ctx context.Context) {
		if armed.CompareAndSwap(true, false) { // only the armed miss is held between load and store
			loaded <- struct{}{}
			<-release
		}
	}}
	in := e.start(nil, opt)
	tok := in.token("alice@example.com")
	id, version := pendingOrder(t, in, tok)
	stale := make(chan *gqlResponse)
	armed.Store(true)
	go func() { stale <- in.post(tok, orderScreenQuery, map[string]any{"id": id}) }()
	<-loaded // the slow read has loaded the old order and not yet stored it
	m := in.post(tok, updateAddress, map[string]any{"id": id, "v": version, "city": "Later"})
	if len(m.Errors) > 0 {
		t.Fatalf("mutation: %s", m.Raw)
	}
	close(release)
	old := <-stale
	if v := int(field(old.Data, "orderScreen", "order", "version").(float64)); v != version {
		t.Fatalf("the slow read saw version %d, want the old %d", v, version)
	}
	got := in.post(tok, orderScreenQuery, map[string]any{"id": id})
	if v := int(field(got.Data, "orderScreen", "order", "version").(float64)); v != version+1 {
		t.Fatalf("after the slow read stored its value, a read saw version %d, want %d", v, version+1)
	}
}

// Concurrent misses of one screen share one origin load: 50 concurrent
// cold reads run the SQL of exactly one read.
func TestConcurrentMissesLoadOnce(t *testing.T) {
	e := newEnv(t)
	cfg := e.config()
	// The claim is about sharing, not about slow Redis calls: a busy
	// machine must not turn a cache read into a timeout (which loads
	// without the cache, by design).
	cfg.CacheTimeout = 5 * time.Second
	in := e.start(cfg, Options{})
	tok := in.token("alice@example.com")
	r := in.post(tok, ordersScreenQuery, map[string]any{"first": 2})
	ids := []string{field(r.Data, "ordersScreen", "orders", "edges", 0, "node", "id").(string),
		field(r.Data, "ordersScreen", "orders", "edges", 1, "node", "id").(string)}
	one := in.costOf(func() { in.post(tok, orderScreenQuery, map[string]any{"id": ids[0]}) })
	if one != screenSQL["orderScreen"] {
		t.Fatalf("one cold orderScreen: %+v, want %+v", one, screenSQL["orderScreen"])
	}
	var wg sync.WaitGroup
	start := make(chan struct{})
	many := in.costOf(func() {
		for i := 0; i < 50; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				if r := in.post(tok, orderScreenQuery, map[string]any{"id": ids[1]}); len(r.Errors) > 0 {
					t.Errorf("%s", r.Raw)
				}
			}()
		}
		close(start)
		wg.Wait()
	})
	t.Logf("one cold orderScreen: %+v; 50 concurrent cold requests: %+v", one, many)
	if many != one {
		t.Fatalf("50 concurrent misses ran %+v, one miss runs %+v: the origin load was not shared", many, one)
	}
}

func TestScreensSurviveARedisPartition(t *testing.T) {
	e := newEnv(t)
	redisProc := testenv.StartRedis(t)
	proxy := testenv.StartProxy(t, redisProc.Addr())
	cfg := e.config()
	cfg.RedisURL = "redis://" + proxy.Addr() + "/0"
	in := e.start(cfg, Options{})
	tok := in.token("alice@example.com")
	id, version := pendingOrder(t, in, tok)
	in.post(tok, orderScreenQuery, map[string]any{"id": id})
	if r := in.post(tok, orderScreenQuery, map[string]any{"id": id}); field(r.Extensions, "cache", "orderScreen", "status") != "hit" {
		t.Fatalf("not cached before the partition: %v", r.Extensions)
	}

	proxy.Cut()
	// the write's invalidation cannot reach Redis; the stale entry stays there
	m := in.post(tok, updateAddress, map[string]any{"id": id, "v": version, "city": "Partitioned"})
	if len(m.Errors) > 0 {
		t.Fatalf("mutation with Redis cut: %s", m.Raw)
	}
	for i := 0; i < 20; i++ {
		r := in.post(tok, orderScreenQuery, map[string]any{"id": id})
		if len(r.Errors) > 0 || r.Status != http.StatusOK {
			t.Fatalf("read %d with Redis cut: %d %s", i, r.Status, r.Raw)
		}
		if v := int(field(r.Data, "orderScreen", "order", "version").(float64)); v != version+1 {
			t.Fatalf("read %d with Redis cut: version %d, want %d", i, v, version+1)
		}
		if h := in.post(tok, homeQuery, nil); len(h.Errors) > 0 {
			t.Fatalf("homeScreen with Redis cut: %s", h.Raw)
		}
	}

	proxy.Restore()
	// caching resumes by itself (after the breaker's open period) and the
	// entry written before the partition is never served
	deadline := time.Now().Add(30 * time.Second)
	for {
		r := in.post(tok, orderScreenQuery, map[string]any{"id": id})
		if v := int(field(r.Data, "orderScreen", "order", "version").(float64)); v != version+1 {
			t.Fatalf("after Redis came back: version %d served, want %d (cache %v)", v, version+1, r.Extensions["cache"])
		}
		if field(r.Extensions, "cache", "orderScreen", "status") == "hit" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("caching did not resume: %v", r.Extensions)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// An instance cut off from Redis cannot invalidate its write, and another
// instance that still reaches Redis holds the old screens. Once that other
// instance's broker hands out the write's event (here from its Postgres
// catch-up, after the writer marked the event published, so the catch-up
// does not invalidate it on the writer's behalf), it refuses every cached
// screen of the order and customer that does not reflect the event,
// although their generations never changed.
func TestPartitionedWriterEventRefusesOlderScreens(t *testing.T) {
	e := newEnv(t)
	rp := testenv.StartRedis(t)
	redisA := testenv.StartProxy(t, rp.Addr())
	u, _ := url.Parse(e.dbURL)
	pgB := testenv.StartProxy(t, u.Host)
	cfgA, cfgB := e.config(), e.config()
	cfgA.RedisURL, cfgB.RedisURL = "redis://"+redisA.Addr()+"/0", "redis://"+rp.Addr()+"/0"
	u.Host = pgB.Addr()
	cfgB.DatabaseURL = u.String()
	a, b := e.start(cfgA, Options{}), e.start(cfgB, Options{})
	tok := a.token("alice@example.com")
	id, version := pendingOrder(t, b, tok)
	versionAt := func(r *gqlResponse, path ...any) int {
		t.Helper()
		v, ok := field(r.Data, path...).(float64)
		if !ok {
			t.Fatalf("no version at %v: %s", path, r.Raw)
		}
		return int(v)
	}
	orderVersionIn := func(r *gqlResponse) int {
		edges, _ := field(r.Data, "ordersScreen", "orders", "edges").([]any)
		for _, e := range edges {
			if field(e, "node", "id") == id {
				return int(field(e, "node", "version").(float64))
			}
		}
		t.Fatalf("order %s not on ordersScreen: %s", id, r.Raw)
		return 0
	}
	readB := func() (order, orders *gqlResponse) {
		return b.post(tok, orderScreenQuery, map[string]any{"id": id}), b.post(tok, ordersScreenQuery, map[string]any{"first": 50})
	}
	readB()
	o, l := readB()
	if field(o.Extensions, "cache", "orderScreen", "status") != "hit" || field(l.Extensions, "cache", "ordersScreen", "status") != "hit" {
		t.Fatalf("B's screens not cached before the partition: %v %v", o.Extensions, l.Extensions)
	}
	events := readEvents(openStream(t, b, tok, false, "").Body)

	redisA.Cut()
	pgB.Cut()
	m := a.post(tok, updateAddress, map[string]any{"id": id, "v": version, "city": "Partitioned"})
	if len(m.Errors) > 0 {
		t.Fatalf("mutation on the partitioned writer: %s", m.Raw)
	}
	// The writer marks the event published once its Redis publish failed.
	pos := waitPublished(t, a, id, version+1)
	o, _ = readB() // B has not seen the event: the old screens, from Redis
	if v := versionAt(o, "orderScreen", "order", "version"); v != version {
		t.Fatalf("B before its broker saw the event: version %d, want the old %d (the test does not exercise the refusal)", v, version)
	}

	pgB.Restore()
	for next(t, events, false).id != fmt.Sprint(pos) { // B's broker handed the event out
	}
	o, l = readB()
	if v := versionAt(o, "orderScreen", "order", "version"); v != version+1 {
		t.Fatalf("orderScreen on B after its broker handed out the event: version %d, want %d (cache %v)", v, version+1, o.Extensions["cache"])
	}
	if v := orderVersionIn(l); v != version+1 {
		t.Fatalf("ordersScreen on B after its broker handed out the event: version %d, want %d (cache %v)", v, version+1, l.Extensions["cache"])
	}
	if v := versionAt(a.post(tok, orderScreenQuery, map[string]any{"id": id}), "orderScreen", "order", "version"); v != version+1 {
		t.Fatalf("the writer served version %d, want %d", v, version+1)
	}
}

func TestPersistedQueries(t *testing.T) {
	e := newEnv(t)
	in := e.start(nil, Options{})
	tok := in.token("alice@example.com")
	q := `{ homeScreen { openOrders } }`
	hash := sha256Hex(q)
	ext := `{"persistedQuery":{"version":1,"sha256Hash":"` + hash + `"}}`
	get := func(query string) *gqlResponse {
		u := in.URL + "/graphql?extensions=" + urlEscape(ext)
		if query != "" {
			u += "&query=" + urlEscape(query)
		}
		req, _ := http.NewRequest(http.MethodGet, u, nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		return in.do(req)
	}
	if r := get(""); r.code() != "PERSISTED_QUERY_NOT_FOUND" || r.Status != http.StatusOK {
		t.Fatalf("unknown hash: %d %s", r.Status, r.Raw)
	}
	if r := get(q); len(r.Errors) > 0 {
		t.Fatalf("register: %s", r.Raw)
	}
	r := get("")
	if len(r.Errors) > 0 || field(r.Data, "homeScreen", "openOrders") == nil {
		t.Fatalf("by hash: %s", r.Raw)
	}
	if r := get(`{ viewer { email } }`); len(r.Errors) == 0 {
		t.Fatalf("a query that does not match its hash was accepted: %s", r.Raw)
	}
}

func TestOrdersPaginateByKeyset(t *testing.T) {
	e := newEnv(t)
	in := e.start(nil, Options{})
	u := customerWithOrders(t, in, 7)
	tok := in.token(u.Email)
	seen := map[string]bool{}
	after := any(nil)
	for page := 0; ; page++ {
		r := in.post(tok, ordersScreenQuery, map[string]any{"first": 3, "after": after})
		if len(r.Errors) > 0 {
			t.Fatalf("page %d: %s", page, r.Raw)
		}
		for _, ed := range field(r.Data, "ordersScreen", "orders", "edges").([]any) {
			id := field(ed, "node", "id").(string)
			if seen[id] {
				t.Fatalf("order %s twice", id)
			}
			seen[id] = true
		}
		if page == 0 {
			customerWithOrders(t, in, 0) // another customer's writes do not matter
			// a new order of this customer is newer than every cursor: it does not shift later pages
			placeFor(t, in, u)
		}
		if field(r.Data, "ordersScreen", "orders", "pageInfo", "hasNextPage") != true {
			break
		}
		after = field(r.Data, "ordersScreen", "orders", "pageInfo", "endCursor")
	}
	if len(seen) != 7 {
		t.Fatalf("paged through %d orders, want the 7 that existed when paging began", len(seen))
	}
	for _, c := range []struct {
		vars  map[string]any
		field string
	}{{map[string]any{"first": 0}, "first"}, {map[string]any{"first": 101}, "first"}, {map[string]any{"after": "garbage!"}, "after"}} {
		r := in.post(tok, ordersScreenQuery, c.vars)
		if r.code() != "BAD_USER_INPUT" || r.Errors[0].Extensions["field"] != c.field {
			t.Errorf("%v: %s", c.vars, r.Raw)
		}
	}
}

func placeFor(t *testing.T, in *instance, u *order.User) {
	t.Helper()
	ctx := context.Background()
	products, _, _ := in.srv.Store().Products(ctx, 1, "")
	_, err := in.srv.Store().InTx(ctx, func(tx *postgres.Tx) error {
		_, err := tx.PlaceOrder(ctx, u, postgres.PlaceOrderInput{Currency: "USD", Lines: []order.LineInput{{ProductID: products[0].ID, Quantity: 1}},
			Address: order.Address{Name: "T", Line1: "1 Main St", City: "Springfield", PostalCode: "12345", Country: "US"}})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// Two selections of one screen are two response entries on the same
// generations: a write makes both fresh, and neither is served to the
// other's query.
func TestResponseCacheKeepsSelectionsApart(t *testing.T) {
	e := newEnv(t)
	in := e.start(nil, Options{})
	tok := in.token("alice@example.com")
	id, version := pendingOrder(t, in, tok)
	small := `query($id: ID!) { orderScreen(id: $id) { order { version } } }`
	for i := 0; i < 2; i++ { // fill, then hit
		in.post(tok, small, map[string]any{"id": id})
		in.post(tok, orderScreenQuery, map[string]any{"id": id})
	}
	s := in.post(tok, small, map[string]any{"id": id})
	if field(s.Extensions, "cache", "orderScreen", "status") != "hit" || field(s.Data, "orderScreen", "order", "status") != nil {
		t.Fatalf("small selection: %s", s.Raw)
	}
	m := in.post(tok, updateAddress, map[string]any{"id": id, "v": version, "city": "Elsewhere"})
	if len(m.Errors) > 0 {
		t.Fatal(string(m.Raw))
	}
	for _, q := range []string{small, orderScreenQuery} {
		r := in.post(tok, q, map[string]any{"id": id})
		if v := int(field(r.Data, "orderScreen", "order", "version").(float64)); v != version+1 {
			t.Fatalf("after the write: version %d for %q", v, q)
		}
	}
	if r := in.post(tok, orderScreenQuery, map[string]any{"id": id}); field(r.Data, "orderScreen", "order", "shippingAddress", "city") != "Elsewhere" {
		t.Fatalf("full selection after the write: %s", r.Raw)
	}
}
