package drill

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/shop/bff/internal/testenv"
)

// PartitionOptions configure the partition measurement ([Partition]).
type PartitionOptions struct {
	// BFF is the binary to run.
	BFF string
	// DatabaseURL is the Postgres in which it creates (and drops) its
	// database.
	DatabaseURL string
	// Dir receives the logs of the processes.
	Dir string
	// Out receives the progress and the report.
	Out io.Writer
	// TTL is CACHE_TTL of both instances. Default 5s.
	TTL time.Duration
	// Rounds is the number of rounds per way of cutting (A's connections
	// to Redis refused, blackholed, refused while B is cut off from
	// Postgres for a second after A's answer, then until the bound has
	// passed). Default 2.
	Rounds int
}

// PartitionRead is one screen read of the measurement.
type PartitionRead struct {
	// Screen is orderScreen or ordersScreen; Instance "A" or "B".
	Screen, Instance string
	// Start is when the request was sent, End when its response arrived.
	Start, End time.Time
	// Code is "" for a success, the error code otherwise.
	Code string
	// Version is the version of the round's order the screen showed (0:
	// not shown).
	Version int
	// Cache is what the cache did for the screen (hit, miss, error, ...).
	Cache string
}

// PartitionRound is one round: A's path to Redis is cut, a mutation of the
// order is sent through A while B's readers read the order's screens.
type PartitionRound struct {
	// Mode is how A's path to Redis was cut: "refused" or "blackholed".
	Mode string
	// TTL is the instances' CACHE_TTL.
	TTL time.Duration
	// Before is the order's version before the mutation, After the one
	// the mutation answered (0 when it failed).
	Before, After int
	// Sent is when the mutation was sent through A, Answered when its
	// response arrived; Code is "" for a success.
	Sent, Answered time.Time
	Code           string
	// Reads are B's reads during the round and A's reads after its
	// answer.
	Reads []PartitionRead
}

// Bound is the staleness the README promises for a partitioned writer:
// the entry's TTL with its jitter (TTL·1.1), enforced by Redis.
func (r PartitionRound) Bound() time.Duration { return r.TTL + r.TTL/10 }

// PartitionVerdict is what a round's reads showed.
type PartitionVerdict struct {
	// Reads counts the successful reads sent after the mutation's answer
	// (the ones the promise covers); Stale those that showed an older
	// version than the answer.
	Reads, Stale int
	// MaxStaleness is the longest time after the answer at which a read
	// that showed the older version ended (0 when none did).
	MaxStaleness time.Duration
	// OverBound counts stale reads that started more than Bound after the
	// answer, i.e. whose staleness exceeds Bound plus the read's own
	// duration.
	OverBound int
	// Writer counts A's own stale reads after its answer (the writer
	// never serves the old screen).
	Writer int
	// NewAfter is how long after the mutation was sent B ended the first
	// read of the new version after which no read showed an older one
	// (-1 when B never did).
	NewAfter time.Duration
	// Details describe each stale read.
	Details []string
}

// Verdict checks the round's reads against the bound.
func (r PartitionRound) Verdict() PartitionVerdict {
	v := PartitionVerdict{NewAfter: -1}
	if r.Code != "" || r.After == 0 {
		return v
	}
	var firstNew time.Time
	for _, rd := range r.Reads {
		if rd.Code != "" || rd.Version == 0 || rd.Start.Before(r.Sent) {
			continue
		}
		stale := rd.Version < r.After
		switch {
		case rd.Instance == "B" && stale:
			firstNew = time.Time{}
		case rd.Instance == "B" && firstNew.IsZero():
			firstNew = rd.End
		}
		if rd.Start.Before(r.Answered) {
			continue
		}
		if rd.Instance != "B" {
			if stale {
				v.Writer++
				v.Details = append(v.Details, fmt.Sprintf("writer A served %s version %d after answering version %d", rd.Screen, rd.Version, r.After))
			}
			continue
		}
		v.Reads++
		if !stale {
			continue
		}
		v.Stale++
		d := rd.End.Sub(r.Answered)
		v.MaxStaleness = max(v.MaxStaleness, d)
		if rd.Start.Sub(r.Answered) > r.Bound() {
			v.OverBound++
			v.Details = append(v.Details, fmt.Sprintf("B served %s version %d %v after A answered version %d (bound %v + the read's %v)",
				rd.Screen, rd.Version, d.Round(time.Millisecond), r.After, r.Bound(), rd.End.Sub(rd.Start).Round(time.Millisecond)))
		}
	}
	if !firstNew.IsZero() {
		v.NewAfter = firstNew.Sub(r.Sent)
	}
	return v
}

// PartitionResult is what a measurement found.
type PartitionResult struct {
	Rounds []PartitionRound
	// Problems say why the run vouches for nothing (a failed mutation, no
	// read after an answer, B never showing the new version).
	Problems []string
}

// Summary totals the rounds' verdicts.
func (p PartitionResult) Summary() (reads, stale, overBound, writer int, maxStaleness, bound time.Duration) {
	for _, r := range p.Rounds {
		v := r.Verdict()
		reads += v.Reads
		stale += v.Stale
		overBound += v.OverBound
		writer += v.Writer
		maxStaleness = max(maxStaleness, v.MaxStaleness)
		bound = max(bound, r.Bound())
	}
	return
}

// String is the measurement's last line.
func (p PartitionResult) String() string {
	reads, stale, over, writer, maxSt, bound := p.Summary()
	return fmt.Sprintf("partition: rounds=%d reads=%d stale=%d max_staleness=%.3fs bound=%.3fs over_bound=%d writer_stale=%d",
		len(p.Rounds), reads, stale, maxSt.Seconds(), bound.Seconds(), over, writer)
}

// Failed reports whether the run broke the bound, let the writer serve an
// old screen, or exercised too little.
func (p PartitionResult) Failed() bool {
	_, _, over, writer, _, _ := p.Summary()
	return over > 0 || writer > 0 || len(p.Problems) > 0
}

// Partition measures the staleness bound of a partitioned writer on the
// served binary: two instances on one database and one private
// redis-server, instance A reaching Redis through a TCP proxy. In each
// round B's cache holds the order's screens, A's path to Redis is cut
// (connections refused, or blackholed), a mutation of the order is sent
// through A (whose invalidation cannot reach Redis), and readers on B read
// the order's screens until the bound has passed since A's answer. Every
// read is recorded; the verdict says, per round, how long after A's answer
// B still served the older version.
func Partition(ctx context.Context, opt PartitionOptions) (PartitionResult, error) {
	var res PartitionResult
	if opt.TTL <= 0 {
		opt.TTL = 5 * time.Second
	}
	if opt.Rounds <= 0 {
		opt.Rounds = 2
	}
	out := opt.Out
	logf := progress(out, "partition")
	db, drop, err := prepare(ctx, opt.Dir, opt.DatabaseURL, logf)
	if err != nil {
		return res, err
	}
	defer drop()
	rds, redisPort, err := newRedis(opt.Dir)
	if err != nil {
		return res, err
	}
	redisAddr := "127.0.0.1:" + strconv.Itoa(redisPort)
	if err := rds.start(); err != nil {
		return res, err
	}
	defer rds.kill()
	if err := waitTCP(ctx, rds, redisAddr); err != nil {
		return res, err
	}
	proxy, err := testenv.NewProxy(redisAddr)
	if err != nil {
		return res, err
	}
	defer proxy.Close()
	pgB, err := testenv.NewProxy(db.url.Host)
	if err != nil {
		return res, err
	}
	defer pgB.Close()

	if err := seed(opt.BFF, db.URL(""), opt.Dir, 1); err != nil {
		return res, err
	}

	insts := map[string]*instance{}
	for i, name := range []string{"A", "B"} {
		port, err := freePort()
		if err != nil {
			return res, err
		}
		addr := "127.0.0.1:" + strconv.Itoa(port)
		redisURL, dbURL := "redis://"+redisAddr+"/0", db.URL(pgB.Addr())
		if name == "A" {
			redisURL, dbURL = "redis://"+proxy.Addr()+"/0", db.URL("")
		}
		p := &process{name: "bff " + name, bin: opt.BFF, log: filepath.Join(opt.Dir, "bff-"+strings.ToLower(name)+".log"),
			env: []string{
				"APP_ENV=development", "HTTP_ADDR=" + addr, "DATABASE_URL=" + dbURL, "REDIS_URL=" + redisURL,
				"CACHE_TTL=" + opt.TTL.String(), "PAYMENT_WORKERS=0", "WEBHOOK_WORKERS=0",
				"RATE_LIMIT_QUERIES_PER_SECOND=0", "RATE_LIMIT_MUTATIONS_PER_SECOND=0", "MIGRATE_ON_START=false",
				"LOG_LEVEL=warn", "SHUTDOWN_GRACE=2s", "METRICS_ADDR=",
			}}
		in := &instance{idx: i, base: "http://" + addr, proc: p}
		if err := p.start(); err != nil {
			return res, err
		}
		defer p.stop(5 * time.Second)
		wctx, cancel := context.WithTimeout(ctx, time.Minute)
		err = waitReady(wctx, p, in.base)
		cancel()
		if err != nil {
			return res, err
		}
		insts[name] = in
	}
	a, b := insts["A"], insts["B"]

	c := newClient()
	tok, err := signIn(ctx, c, b.base, "customer0001@example.com")
	if err != nil {
		return res, err
	}
	m := &measurer{c: c, token: tok}
	pid, err := m.product(ctx, b)
	if err != nil {
		return res, err
	}
	key := newKey()
	placed, code := m.mutate(ctx, b, mutationPlace, map[string]any{"input": map[string]any{
		"lines":           []map[string]any{{"productId": pid, "quantity": 1}},
		"shippingAddress": addressOf("p-" + key), "currency": "USD"}}, key)
	if code != "" {
		return res, fmt.Errorf("placeOrder through B: %s", code)
	}
	m.orderID = placed.ID
	version := placed.Version
	logf("ready: A reaches redis %s through %s, B directly; CACHE_TTL=%v; order %s", redisAddr, proxy.Addr(), opt.TTL, m.orderID)

	for _, mode := range []partitionMode{
		{name: "refused", cut: proxy.Cut, restore: proxy.Restore},
		{name: "blackholed", cut: proxy.Blackhole, restore: proxy.Restore},
		{name: "refused, and B cut off from Postgres until 1s after A's answer",
			cut:         func() { proxy.Cut(); pgB.Cut() },
			afterAnswer: func() { sleep(ctx, time.Second); pgB.Restore() },
			restore:     func() { proxy.Restore(); pgB.Restore() }},
		// B cannot hear of the event before its entries expire: the TTL
		// alone bounds what it serves.
		{name: "refused, and B cut off from Postgres until the bound has passed since A's answer",
			cut:         func() { proxy.Cut(); pgB.Cut() },
			afterAnswer: func() { sleep(ctx, opt.TTL+opt.TTL/10); pgB.Restore() },
			restore:     func() { proxy.Restore(); pgB.Restore() }},
	} {
		for range opt.Rounds {
			r, err := m.round(ctx, a, b, mode, version, opt.TTL)
			if err != nil {
				return res, err
			}
			res.Rounds = append(res.Rounds, r)
			if err := writeReads(filepath.Join(opt.Dir, fmt.Sprintf("round-%d.txt", len(res.Rounds))), r); err != nil {
				return res, err
			}
			if r.After > 0 {
				version = r.After
			}
			v := r.Verdict()
			logf("round %d (%s): A answered %q version %d→%d after %v; B: %d reads after the answer, %d stale, max staleness %v (bound %v), over the bound %d; new version on B %v after the mutation was sent; writer stale %d",
				len(res.Rounds), r.Mode, r.Code, r.Before, r.After, r.Answered.Sub(r.Sent).Round(time.Millisecond), v.Reads, v.Stale,
				v.MaxStaleness.Round(time.Millisecond), r.Bound(), v.OverBound, v.NewAfter.Round(time.Millisecond), v.Writer)
			for _, d := range v.Details {
				fmt.Fprintln(out, d)
			}
			switch {
			case r.Code != "":
				res.Problems = append(res.Problems, fmt.Sprintf("round %d: the mutation through A failed with %s", len(res.Rounds), r.Code))
			case v.Reads == 0:
				res.Problems = append(res.Problems, fmt.Sprintf("round %d: no read on B after A's answer", len(res.Rounds)))
			case v.NewAfter < 0:
				res.Problems = append(res.Problems, fmt.Sprintf("round %d: B never showed the new version", len(res.Rounds)))
			}
		}
	}
	for _, p := range res.Problems {
		fmt.Fprintf(out, "too little exercised: %s\n", p)
	}
	return res, nil
}

// partitionMode is a way of cutting A off from Redis: cut before the
// mutation, afterAnswer (optional) once A answered, restore at the end of
// the round.
type partitionMode struct {
	name                      string
	cut, afterAnswer, restore func()
}

// measurer sends the measurement's requests for one customer and order.
type measurer struct {
	c       *http.Client
	token   string
	orderID string
}

func addressOf(line2 string) map[string]any {
	return map[string]any{"name": "Drill", "line1": "1 Fault Street", "line2": line2, "city": "Chaos", "postalCode": "12345", "country": "US"}
}

// round runs one round of the measurement.
func (m *measurer) round(ctx context.Context, a, b *instance, mode partitionMode, version int, ttl time.Duration) (PartitionRound, error) {
	r := PartitionRound{Mode: mode.name, TTL: ttl, Before: version}
	// A reaches Redis again (its breaker closed, its epoch replaced), and
	// B's cache holds both screens of the order, stored just now.
	if err := m.until(ctx, 30*time.Second, func() bool {
		rd := m.read(ctx, a, "orderScreen")
		return rd.Code == "" && rd.Cache != "error"
	}); err != nil {
		return r, fmt.Errorf("A does not reach Redis after the cut: %w", err)
	}
	for _, screen := range []string{"orderScreen", "ordersScreen"} {
		if err := m.until(ctx, 30*time.Second, func() bool {
			rd := m.read(ctx, b, screen)
			return rd.Code == "" && rd.Cache == "hit" && rd.Version == version
		}); err != nil {
			return r, fmt.Errorf("B's cache does not hold %s version %d: %w", screen, version, err)
		}
	}

	mode.cut()
	defer mode.restore()
	var (
		mu    sync.Mutex
		reads []PartitionRead
		wg    sync.WaitGroup
	)
	record := func(rd PartitionRead) {
		mu.Lock()
		reads = append(reads, rd)
		mu.Unlock()
	}
	stop := make(chan struct{})
	for _, screen := range []string{"orderScreen", "ordersScreen"} {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				record(m.read(ctx, b, screen))
				sleep(ctx, 20*time.Millisecond)
			}
		})
	}
	key := newKey()
	r.Sent = time.Now()
	got, code := m.mutate(ctx, a, mutationAddr, map[string]any{"id": m.orderID, "v": version, "a": addressOf("u-" + key)}, key)
	r.Answered, r.Code = time.Now(), code
	if mode.afterAnswer != nil {
		mode.afterAnswer()
	}
	if code == "" {
		r.After = got.Version
		for _, screen := range []string{"orderScreen", "ordersScreen"} {
			record(m.read(ctx, a, screen))
		}
	}
	// Read on B until the bound (and a second) has passed since the answer,
	// and then until B's last read of each screen shows the new version
	// (at most three times the bound), so a read over the bound is seen
	// with its real staleness.
	sleep(ctx, time.Until(r.Answered.Add(r.Bound()+time.Second)))
	for limit := r.Answered.Add(3 * r.Bound()); r.After > 0 && time.Now().Before(limit) && ctx.Err() == nil; {
		mu.Lock()
		last := map[string]int{}
		for _, rd := range reads {
			if rd.Instance == "B" && rd.Code == "" {
				last[rd.Screen] = rd.Version
			}
		}
		mu.Unlock()
		if last["orderScreen"] >= r.After && last["ordersScreen"] >= r.After {
			break
		}
		sleep(ctx, 50*time.Millisecond)
	}
	close(stop)
	wg.Wait()
	r.Reads = reads
	if ctx.Err() != nil {
		return r, ctx.Err()
	}
	return r, nil
}

// until calls ok until it returns true, pacing the calls, for at most d.
func (m *measurer) until(ctx context.Context, d time.Duration, ok func() bool) error {
	end := time.Now().Add(d)
	for !ok() {
		if time.Now().After(end) {
			return errors.New("gave up after " + d.String())
		}
		sleep(ctx, 50*time.Millisecond)
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	return nil
}

// product returns the id of a product of the catalogue.
func (m *measurer) product(ctx context.Context, in *instance) (string, error) {
	resp, code := post(ctx, m.c, in.base, m.token, `{ products(first: 1) { edges { node { id } } } }`, nil, "")
	if code != "" {
		return "", fmt.Errorf("products: %s", code)
	}
	var ps struct {
		Edges []struct {
			Node struct {
				ID string `json:"id"`
			} `json:"node"`
		} `json:"edges"`
	}
	if err := jsonUnmarshal(resp.Data["products"], &ps); err != nil || len(ps.Edges) == 0 {
		return "", fmt.Errorf("no product in the catalogue: %v", err)
	}
	return ps.Edges[0].Node.ID, nil
}

// mutate sends one mutation with an Idempotency-Key and returns the order
// it answered.
func (m *measurer) mutate(ctx context.Context, in *instance, query string, vars map[string]any, key string) (order, string) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	resp, code := post(ctx, m.c, in.base, m.token, query, vars, key)
	if code != "" {
		return order{}, code
	}
	for _, raw := range resp.Data {
		var p struct {
			Order order `json:"order"`
		}
		if err := jsonUnmarshal(raw, &p); err != nil || p.Order.ID == "" {
			return order{}, "BAD_RESPONSE"
		}
		return p.Order, ""
	}
	return order{}, "BAD_RESPONSE"
}

// read reads screen (orderScreen or ordersScreen) on in and returns what
// it showed of the measured order.
func (m *measurer) read(ctx context.Context, in *instance, screen string) PartitionRead {
	q, vars := queryOrders, map[string]any(nil)
	if screen == "orderScreen" {
		q, vars = queryOrder, map[string]any{"id": m.orderID}
	}
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	rd := PartitionRead{Screen: screen, Instance: string(rune('A' + in.idx)), Start: time.Now()}
	resp, code := post(ctx, m.c, in.base, m.token, q, vars, "")
	rd.End, rd.Code = time.Now(), code
	if code != "" {
		return rd
	}
	shown, _, err := parseScreen(screen, resp.Data[screen])
	if err != nil {
		rd.Code = "BAD_RESPONSE"
		return rd
	}
	for _, o := range shown {
		if o.ID == m.orderID {
			rd.Version = o.Version
		}
	}
	var statuses map[string]struct {
		Status string `json:"status"`
	}
	if raw, ok := resp.Extensions["cache"]; ok {
		_ = jsonUnmarshal(raw, &statuses)
	}
	rd.Cache = statuses[screen].Status
	return rd
}

// writeReads writes a round's reads, one a line, timed from the mutation's
// sending, to file.
func writeReads(file string, r PartitionRound) error {
	var sb strings.Builder
	fmt.Fprintf(&sb, "mode %s; mutation sent at 0, answered %q at %.3fs, version %d -> %d\n", r.Mode,
		r.Code, r.Answered.Sub(r.Sent).Seconds(), r.Before, r.After)
	for _, rd := range r.Reads {
		fmt.Fprintf(&sb, "%s %-12s %8.3fs %8.3fs code=%q version=%d cache=%s\n", rd.Instance, rd.Screen,
			rd.Start.Sub(r.Sent).Seconds(), rd.End.Sub(r.Sent).Seconds(), rd.Code, rd.Version, rd.Cache)
	}
	return os.WriteFile(file, []byte(sb.String()), 0o644)
}
