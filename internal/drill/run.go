package drill

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/shop/bff/internal/testenv"
)

// Options configure a run of the drill.
type Options struct {
	// Short runs the short schedule (each fault once, under a minute).
	Short bool
	// BFF and Paysim are the binaries to run.
	BFF, Paysim string
	// DatabaseURL is the Postgres in which the drill creates (and drops)
	// its database.
	DatabaseURL string
	// Dir receives the logs of the processes.
	Dir string
	// Out receives the progress and the report.
	Out io.Writer
}

// fault is one step of the schedule.
type fault struct {
	at   time.Duration
	name string
	do   func(ctx context.Context) error
}

// Result is what a run found.
type Result struct {
	Counts Counts
	// Problems say why the run vouches for nothing (too little exercised).
	Problems []string
}

// Run runs the drill: it starts a private redis-server, a private
// database behind a TCP proxy, the payment simulator and two bff
// instances, drives the workload while the faults of the schedule
// happen, drains the streams, and checks the history.
func Run(ctx context.Context, opt Options) (Result, error) {
	var res Result
	out := opt.Out
	logf := progress(out, "drill")
	db, drop, err := prepare(ctx, opt.Dir, opt.DatabaseURL, logf)
	if err != nil {
		return res, err
	}
	defer drop()
	logf("database %s, logs in %s", db.name, opt.Dir)
	pgProxy, err := testenv.NewProxy(db.url.Host)
	if err != nil {
		return res, err
	}
	defer pgProxy.Close()

	rds, redisPort, err := newRedis(opt.Dir)
	if err != nil {
		return res, err
	}
	redisAddr := "127.0.0.1:" + strconv.Itoa(redisPort)
	startRedis := func(ctx context.Context) error {
		if err := rds.start(); err != nil {
			return err
		}
		return waitTCP(ctx, rds, redisAddr)
	}
	if err := startRedis(ctx); err != nil {
		return res, err
	}
	defer rds.kill()

	if err := seed(opt.BFF, db.URL(""), opt.Dir, 8); err != nil {
		return res, err
	}

	ports := make([]int, 3)
	for i := range ports {
		if ports[i], err = freePort(); err != nil {
			return res, err
		}
	}
	payAddr := "127.0.0.1:" + strconv.Itoa(ports[2])
	var insts []*instance
	for i := range 2 {
		addr := "127.0.0.1:" + strconv.Itoa(ports[i])
		p := &process{name: "bff " + string(rune('A'+i)), bin: opt.BFF, log: filepath.Join(opt.Dir, fmt.Sprintf("bff-%c.log", 'a'+i)),
			env: []string{
				"APP_ENV=development", "HTTP_ADDR=" + addr, "DATABASE_URL=" + db.URL(pgProxy.Addr()),
				"REDIS_URL=redis://" + redisAddr + "/0", "PAYMENTS_URL=http://" + payAddr, "PAYMENT_WORKERS=2",
				"RATE_LIMIT_QUERIES_PER_SECOND=0", "RATE_LIMIT_MUTATIONS_PER_SECOND=0", "MIGRATE_ON_START=false",
				"LOG_LEVEL=warn", "STREAM_HEARTBEAT=1s", "SHUTDOWN_GRACE=2s", "METRICS_ADDR=",
			}}
		insts = append(insts, &instance{idx: i, base: "http://" + addr, proc: p})
	}
	startInstance := func(ctx context.Context, in *instance) error {
		if err := in.proc.start(); err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		return waitReady(ctx, in.proc, in.base)
	}
	for _, in := range insts {
		if err := startInstance(ctx, in); err != nil {
			return res, err
		}
		defer in.proc.stop(5 * time.Second)
	}
	paysim := &process{name: "paysim", bin: opt.Paysim, log: filepath.Join(opt.Dir, "paysim.log"), env: []string{
		"PAYSIM_ADDR=" + payAddr, "PAYSIM_WEBHOOK_URL=" + insts[0].base + "/webhooks/payments",
		"PAYSIM_LATENCY=50ms", "PAYSIM_DECLINE_RATE=0.2"}}
	if err := paysim.start(); err != nil {
		return res, err
	}
	defer paysim.stop(2 * time.Second)
	if err := waitTCP(ctx, paysim, payAddr); err != nil {
		return res, err
	}

	w := &workload{h: &History{}, c: newClient(), insts: insts, readsBusy: make(chan struct{}, 4)}
	if err := w.setup(ctx); err != nil {
		return res, err
	}
	logf("ready: 2 instances, %d customers, redis on %d, postgres through %s", len(w.users), redisPort, pgProxy.Addr())

	// The schedule.
	d := func(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }
	killRedis := func(down time.Duration) func(ctx context.Context) error {
		return func(ctx context.Context) error {
			rds.kill()
			sleep(ctx, down)
			return startRedis(ctx)
		}
	}
	pauseRedis := func(ctx context.Context) error {
		if err := rds.signal(syscall.SIGSTOP); err != nil {
			return err
		}
		sleep(ctx, 2*time.Second)
		return rds.signal(syscall.SIGCONT)
	}
	killInstance := func(i int) func(ctx context.Context) error {
		return func(ctx context.Context) error {
			insts[i].proc.kill()
			sleep(ctx, time.Second)
			return startInstance(ctx, insts[i])
		}
	}
	cutPostgres := func(down time.Duration) func(ctx context.Context) error {
		return func(ctx context.Context) error {
			pgProxy.Cut()
			sleep(ctx, down)
			pgProxy.Restore()
			return nil
		}
	}
	then := func(a, b func(ctx context.Context) error) func(ctx context.Context) error {
		return func(ctx context.Context) error {
			if err := a(ctx); err != nil {
				return err
			}
			return b(ctx)
		}
	}
	// The first fault is the sequence of a reported stale read: Redis comes
	// back empty while the breaker of one instance is still open, and the
	// other instance, restarted, fills the cache at once.
	work := d(100)
	schedule := []fault{
		{d(8), "redis SIGKILL, restarted empty after 1s, then instance B SIGKILL and restart", then(killRedis(time.Second), killInstance(1))},
		{d(22), "redis SIGSTOP for 2s", pauseRedis},
		{d(34), "instance A SIGKILL, restarted after 1s", killInstance(0)},
		{d(46), "postgres cut for 3s (proxy)", cutPostgres(3 * time.Second)},
		{d(60), "redis SIGKILL, restarted empty at once", killRedis(0)},
		{d(72), "redis SIGSTOP for 2s", pauseRedis},
		{d(84), "redis SIGKILL, restarted empty after 1s, then instance A SIGKILL and restart", then(killRedis(time.Second), killInstance(0))},
	}
	if opt.Short {
		work = d(32)
		schedule = []fault{
			{d(4), "redis SIGKILL, restarted empty after 1s, then instance B SIGKILL and restart", then(killRedis(time.Second), killInstance(1))},
			{d(12), "redis SIGSTOP for 2s", pauseRedis},
			{d(19), "instance A SIGKILL, restarted after 1s", killInstance(0)},
			{d(25), "postgres cut for 2s (proxy)", cutPostgres(2 * time.Second)},
		}
	}

	workCtx, stopWork := context.WithTimeout(ctx, work)
	defer stopWork()
	streamCtx, stopStreams := context.WithCancel(ctx)
	defer stopStreams()
	var targets atomic.Pointer[map[string]int64] // set when draining
	var workers, subscribers sync.WaitGroup
	for _, u := range w.users {
		workers.Go(func() { w.customer(workCtx, u) })
	}
	for range 3 {
		workers.Go(func() { w.reader(workCtx) })
	}
	workers.Go(func() { w.staffLoop(workCtx) })
	from, err := db.lastPositions(ctx)
	if err != nil {
		return res, err
	}
	for _, u := range w.users[:4] {
		s := w.h.AddSubscriber(u.id, from[u.id])
		subscribers.Go(func() {
			w.subscribe(streamCtx, u, s, workCtx, func() bool {
				t := targets.Load()
				return t != nil && w.h.LastPosition(s) >= (*t)[u.id]
			})
		})
	}

	start := time.Now()
	var faultErr error
	for _, f := range schedule {
		sleep(workCtx, time.Until(start.Add(f.at)))
		if workCtx.Err() != nil {
			break
		}
		logf("fault: %s (at %s)", f.name, time.Now().Format("15:04:05.000"))
		if err := f.do(ctx); err != nil {
			faultErr = fmt.Errorf("fault %q: %w", f.name, err)
			logf("%v", faultErr)
			break
		}
		logf("fault over: %s", f.name)
	}
	<-workCtx.Done()
	logf("workload stopped; waiting for requests in flight")
	workers.Wait()
	w.bg.Wait()

	// Drain: every subscriber must receive its customer's last event.
	last, err := db.lastPositions(ctx)
	if err != nil {
		return res, err
	}
	targets.Store(&last)
	drained := make(chan struct{})
	go func() { subscribers.Wait(); close(drained) }()
	select {
	case <-drained:
		logf("streams drained")
	case <-time.After(30 * time.Second):
		logf("streams not drained after 30s: what is missing counts as lost")
		stopStreams()
		<-drained
	}
	if faultErr != nil {
		return res, faultErr
	}

	truth, err := db.truth(ctx)
	if err != nil {
		return res, err
	}
	res.Counts = Check(w.h, truth)
	c := res.Counts
	if len(c.Details) > 0 {
		file := filepath.Join(opt.Dir, "violations.txt")
		_ = os.WriteFile(file, []byte(strings.Join(c.Details, "\n")+"\n"), 0o644)
		for i, l := range c.Details {
			if i == 10 {
				fmt.Fprintf(out, "... %d more in %s\n", len(c.Details)-10, file)
				break
			}
			fmt.Fprintln(out, l)
		}
	}

	var ops []string
	w.ops.Range(func(k, v any) bool {
		ops = append(ops, fmt.Sprintf("%s=%d", k, v.(*atomic.Int64).Load()))
		return true
	})
	sort.Strings(ops)
	connects, attempts, readsAll := 0, len(w.h.Writes), len(w.h.Reads)
	for _, s := range w.h.Subscribers {
		connects += s.Connects
		if n := len(s.Events); n == 0 {
			res.Problems = append(res.Problems, "a subscriber received no event")
		}
	}
	logf("successful mutations: %v (attempts %d, retried after a transient failure %d)", ops, attempts, w.unavail.Load())
	fmt.Fprintf(out, "checked: writes=%d reads=%d events=%d conflicts=%d (reads sent %d, subscribers %d, connections %d)\n",
		c.Writes, c.Reads, c.Events, c.Conflicts, readsAll, len(w.h.Subscribers), connects)
	fmt.Fprintf(out, "stale reads: after a write on the same instance %d, on the other instance %d, after an event %d\n",
		c.StaleSame, c.StaleOther, c.StaleEvent)
	if c.Writes == 0 {
		res.Problems = append(res.Problems, "no successful write")
	}
	if c.Reads == 0 {
		res.Problems = append(res.Problems, "no successful read")
	}
	for _, p := range res.Problems {
		fmt.Fprintf(out, "too little exercised: %s\n", p)
	}
	return res, nil
}

// setup signs the users in and learns the customers' ids, orders and the
// catalogue.
func (w *workload) setup(ctx context.Context) error {
	base := w.insts[0].base
	signed := func(email string, staff bool) (*user, error) {
		tok, err := signIn(ctx, w.c, base, email)
		if err != nil {
			return nil, err
		}
		u := &user{email: email, token: tok, staff: staff, orders: map[string]*order{}}
		resp, code := post(ctx, w.c, base, tok, queryHome, nil, "")
		if code != "" {
			return nil, fmt.Errorf("homeScreen of %s: %s", email, code)
		}
		var hs struct {
			Viewer struct {
				ID string `json:"id"`
			} `json:"viewer"`
		}
		if err := jsonUnmarshal(resp.Data["homeScreen"], &hs); err != nil || hs.Viewer.ID == "" {
			return nil, fmt.Errorf("homeScreen of %s: no viewer", email)
		}
		u.id = hs.Viewer.ID
		return u, nil
	}
	var err error
	if w.staff, err = signed("staff@example.com", true); err != nil {
		return err
	}
	for i := 1; i <= 8; i++ {
		u, err := signed(fmt.Sprintf("customer%04d@example.com", i), false)
		if err != nil {
			return err
		}
		for _, o := range w.read(u, w.insts[0], "ordersScreen", nil) {
			u.know(o)
		}
		w.users = append(w.users, u)
	}
	resp, code := post(ctx, w.c, base, w.staff.token, `{ products(first: 50) { edges { node { id } } } }`, nil, "")
	if code != "" {
		return fmt.Errorf("products: %s", code)
	}
	var ps struct {
		Edges []struct {
			Node struct {
				ID string `json:"id"`
			} `json:"node"`
		} `json:"edges"`
	}
	if err := jsonUnmarshal(resp.Data["products"], &ps); err != nil {
		return err
	}
	for _, e := range ps.Edges {
		w.products = append(w.products, e.Node.ID)
	}
	if len(w.products) == 0 {
		return errors.New("no products")
	}
	rand.Shuffle(len(w.users), func(i, j int) { w.users[i], w.users[j] = w.users[j], w.users[i] })
	return nil
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
