package cache

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/redis/go-redis/v9"
	"github.com/sony/gobreaker/v2"
	"golang.org/x/sync/singleflight"

	"github.com/shop/bff/internal/config"
)

// Dep names something screens depend on; a mutation bumps the generation of
// each Dep it changes, which makes every screen depending on it a miss.
type Dep string

// OrderDep is the dependency of screens that show the order with this id.
func OrderDep(orderID string) Dep { return Dep("order:" + orderID) }

// CustomerDep is the dependency of screens that list or count the orders of
// this customer.
func CustomerDep(customerID string) Dep { return Dep("customer:" + customerID) }

// AllOrdersDep is the dependency of staff views over every order.
const AllOrdersDep Dep = "all"

// Key identifies one cached screen.
type Key struct {
	// Screen is the screen's query field, e.g. "homeScreen".
	Screen string
	// Args are the screen's arguments in a canonical form, e.g.
	// "status=PAID&first=20&after=" (same arguments ⇒ same string).
	Args string
	// ViewerID is the id of the signed-in user.
	ViewerID string
	// Role is the viewer's role.
	Role string
	// Deps are the dependencies whose invalidation must drop this screen.
	Deps []Dep
}

// Config configures a Cache. The zero value of each field means its default.
type Config struct {
	// TTL is the lifetime of an entry before jitter, counted from the start
	// of its load (CACHE_TTL). Default config.DefaultCacheTTL.
	TTL time.Duration
	// Jitter spreads TTLs uniformly over TTL·(1±Jitter). Default 0.10;
	// a negative value disables jitter; must be below 1.
	Jitter float64
	// Timeout bounds each Redis call (CACHE_TIMEOUT). Default
	// config.DefaultCacheTimeout.
	Timeout time.Duration
	// GenTTL is how long a dependency generation counter lives after its
	// last bump. Default max(24h, 10×TTL); must be at least 10×TTL, so that a counter
	// only expires (and restarts from 0) long after every entry built on
	// its previous values has expired.
	GenTTL time.Duration
	// Prefix starts every key. Default "bff:".
	Prefix string
	// ModelVersion is part of every entry key; change it when the shape of
	// a cached screen changes. Default "1".
	ModelVersion string
	// Codec encodes entries. Default MsgpackCodec (faster than JSON on
	// screen-shaped values; see BenchmarkCodec).
	Codec Codec
	// Breaker configures the circuit breaker around Redis. Defaults: Name
	// "redis-cache", MaxRequests 1, Timeout (time spent open) 5s,
	// Interval (counts cleared while closed) 10s, ReadyToTrip after 20
	// consecutive failures or half of at least 20 calls failing within an
	// interval. OnStateChange is called
	// after the cache's own handler.
	Breaker gobreaker.Settings
	// InvalidateTimeout bounds how long [Cache.Invalidate] retries an
	// invalidation Redis does not confirm (it also ends with the caller's
	// deadline). Default 3s: longer than a Redis restart or a short pause.
	InvalidateTimeout time.Duration
	// StoreDelay, when set, is called between the load and the store of a
	// miss (a test hook to widen the race window).
	StoreDelay func(ctx context.Context)
}

// ErrUnavailable reports that Redis could not be used (failure, timeout or
// open circuit breaker).
var ErrUnavailable = errors.New("cache: redis unavailable")

// errCallerGone marks a Redis call abandoned because the caller's context
// ended; it does not count against the breaker.
var errCallerGone = errors.New("cache: caller context done")

// hashTag keeps every key of the cache in one Redis Cluster slot.
const hashTag = "{cache}"

// Cache is the screen cache. It is safe for concurrent use.
type Cache struct {
	rdb      redis.UniversalClient
	cfg      Config
	metrics  Metrics
	breaker  *gobreaker.TwoStepCircuitBreaker[struct{}]
	flights  singleflight.Group
	recent   recentFlights
	epochKey string
	genKey   string // prefix of generation keys
	entryKey string // prefix of entry keys
	// genTTLArg is GenTTL in milliseconds as a script argument, boxed once.
	genTTLArg any

	// missed counts events after which an invalidation may have been lost
	// (a failed Invalidate, the breaker opening); repaired is the value of
	// missed covered by the last successful epoch bump.
	missed   atomic.Uint64
	repaired atomic.Uint64

	// repairing is set while a goroutine replaces the epoch after a miss.
	repairing atomic.Bool

	// marks are the newest event positions this instance has seen.
	marks watermarks

	// beforeFlight, when set, is called by Load right before it joins the
	// singleflight group (test hook).
	beforeFlight func()
	// onAttempt, when set, is called after every attempt of Invalidate and
	// of the epoch repair with its error (test hook).
	onAttempt func(err error)
	// onRepaired, when set, is called when the repair goroutine ends
	// (test hook).
	onRepaired func()
}

// New returns a Cache on client. m may be nil (no metrics). It fails on an
// invalid configuration or a client that ignores context deadlines.
func New(client redis.UniversalClient, cfg Config, m Metrics) (*Cache, error) {
	if client == nil {
		return nil, errors.New("cache: nil redis client")
	}
	if !contextTimeoutEnabled(client) {
		return nil, errors.New("cache: the redis client must be created with ContextTimeoutEnabled: true, otherwise the per-call timeout is ignored")
	}
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if m == nil {
		m = nopMetrics{}
	}
	c := &Cache{
		rdb:       client,
		cfg:       cfg,
		metrics:   m,
		epochKey:  cfg.Prefix + hashTag + ":epoch",
		genKey:    cfg.Prefix + hashTag + ":gen:",
		entryKey:  cfg.Prefix + hashTag + ":e:",
		genTTLArg: cfg.GenTTL.Milliseconds(),
	}
	st := cfg.Breaker
	userChange, userExcluded := st.OnStateChange, st.IsExcluded
	st.OnStateChange = func(name string, from, to gobreaker.State) {
		if to == gobreaker.StateOpen {
			// Redis is considered down: an invalidation by another instance
			// may have been lost too, so the epoch is replaced as soon as
			// Redis answers again.
			c.markMissed()
		}
		if userChange != nil {
			userChange(name, from, to)
		}
	}
	st.IsExcluded = func(err error) bool {
		return errors.Is(err, errCallerGone) || (userExcluded != nil && userExcluded(err))
	}
	c.breaker = gobreaker.NewTwoStepCircuitBreaker[struct{}](st)
	return c, nil
}

func (cfg Config) withDefaults() (Config, error) {
	if cfg.TTL == 0 {
		cfg.TTL = config.DefaultCacheTTL
	}
	if cfg.Jitter == 0 {
		cfg.Jitter = 0.10
	}
	if cfg.Jitter < 0 {
		cfg.Jitter = 0
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = config.DefaultCacheTimeout
	}
	if cfg.InvalidateTimeout == 0 {
		cfg.InvalidateTimeout = 3 * time.Second
	}
	if cfg.GenTTL == 0 {
		cfg.GenTTL = max(24*time.Hour, 10*cfg.TTL)
	}
	if cfg.Prefix == "" {
		cfg.Prefix = "bff:"
	}
	if cfg.ModelVersion == "" {
		cfg.ModelVersion = "1"
	}
	if cfg.Codec == nil {
		cfg.Codec = MsgpackCodec{}
	}
	b := &cfg.Breaker
	if b.Name == "" {
		b.Name = "redis-cache"
	}
	if b.Timeout == 0 {
		b.Timeout = 5 * time.Second
	}
	if b.ReadyToTrip == nil {
		// A down Redis fails every call: 20 in a row open the breaker. A
		// busy one fails some: it takes half of at least 20 calls within
		// an interval, so a few slow calls under load do not switch the
		// cache off (and send every read to Postgres).
		b.ReadyToTrip = func(c gobreaker.Counts) bool {
			return c.ConsecutiveFailures >= 20 || (c.Requests >= 20 && 2*c.TotalFailures >= c.Requests)
		}
	}
	if b.Interval == 0 {
		b.Interval = 10 * time.Second
	}
	switch {
	case cfg.TTL < time.Millisecond:
		return cfg, fmt.Errorf("cache: TTL %v must be at least 1ms", cfg.TTL)
	case cfg.Jitter >= 1:
		return cfg, fmt.Errorf("cache: Jitter %v must be below 1", cfg.Jitter)
	case cfg.Timeout < 0:
		return cfg, fmt.Errorf("cache: Timeout %v must be positive", cfg.Timeout)
	case cfg.InvalidateTimeout < 0:
		return cfg, fmt.Errorf("cache: InvalidateTimeout %v must be positive", cfg.InvalidateTimeout)
	case cfg.GenTTL < 10*cfg.TTL:
		return cfg, fmt.Errorf("cache: GenTTL %v must be at least 10×TTL (%v)", cfg.GenTTL, 10*cfg.TTL)
	}
	return cfg, nil
}

// contextTimeoutEnabled reports whether client honours context deadlines,
// for the client types that say so.
func contextTimeoutEnabled(client redis.UniversalClient) bool {
	switch c := client.(type) {
	case *redis.Client:
		return c.Options().ContextTimeoutEnabled
	case *redis.ClusterClient:
		return c.Options().ContextTimeoutEnabled
	case *redis.Ring:
		return c.Options().ContextTimeoutEnabled
	}
	return true
}

// ttl returns the TTL of a new entry: cfg.TTL with jitter.
func (c *Cache) ttl() time.Duration {
	return jitter(c.cfg.TTL, c.cfg.Jitter, rand.Float64())
}

// jitter spreads ttl over ttl·(1±j) by r in [0,1).
func jitter(ttl time.Duration, j, r float64) time.Duration {
	d := time.Duration(float64(ttl) * (1 + j*(2*r-1)))
	return max(d, time.Millisecond)
}

// keys returns the entry key without generations, and the keys of the
// read script: the epoch's, the sorted, deduplicated dependency
// generations' and last the entry key without generations.
func (c *Cache) keys(k Key) (base string, readKeys []string) {
	deps := slices.Clone(k.Deps)
	slices.Sort(deps)
	deps = slices.Compact(deps)
	genKeys := make([]string, 0, len(deps)+2)
	genKeys = append(genKeys, c.epochKey)

	h := sha256.New()
	field := func(s string) {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(s)))
		h.Write(n[:])
		h.Write([]byte(s))
	}
	for _, s := range []string{entryFormat, c.cfg.ModelVersion, c.cfg.Codec.Name(), k.Screen, k.Args, k.ViewerID, k.Role} {
		field(s)
	}
	for _, d := range deps {
		field(string(d))
		genKeys = append(genKeys, c.genKey+string(d))
	}
	sum := h.Sum(nil)
	base = c.entryKey + k.Screen + ":" + base64.RawURLEncoding.EncodeToString(sum[:18])
	return base, append(genKeys, base)
}

// call runs fn under the circuit breaker with the per-call timeout, or
// ctx's deadline when that comes first. Its errors wrap ErrUnavailable, or
// are ctx's error when the caller gave up.
//
// One timer bounds the call: the per-call timeout's, on a context that
// does not end with ctx (so it is not registered with ctx's, and a caller
// that leaves mid-call leaves a call that ends within the timeout anyway);
// or, when ctx's deadline is the sooner, ctx's own. Either way every wait
// of the call, for a pooled connection as well as on the socket, ends by
// the deadline.
func (c *Cache) call(ctx context.Context, fn func(ctx context.Context) error) error {
	done, err := c.breaker.Allow()
	if err != nil {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	cctx := ctx
	if d, ok := ctx.Deadline(); !ok || time.Until(d) > c.cfg.Timeout {
		var cancel context.CancelFunc
		cctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), c.cfg.Timeout)
		defer cancel()
	}
	err = fn(cctx)
	switch {
	case err == nil:
		done(nil)
		return nil
	case ctx.Err() != nil:
		done(errCallerGone)
		return ctx.Err()
	default:
		done(err)
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
}

// epochBump tells whether the next call must bump the epoch, and returns
// the function to call after that call succeeded.
func (c *Cache) epochBump() (bump bool, ok func()) {
	m := c.missed.Load()
	if m == c.repaired.Load() {
		return false, func() {}
	}
	return true, func() {
		for {
			r := c.repaired.Load()
			if r >= m || c.repaired.CompareAndSwap(r, m) {
				return
			}
		}
	}
}

// lookup is what the read script found.
type lookup struct {
	gens string        // epoch and generations, "e.g1.g2"
	hit  bool          // an entry was found
	data []byte        // the entry
	pttl time.Duration // its remaining TTL
	// queued tells that a rider's commands went with the read (readSeen).
	queued bool
}

// read runs the read script on keys (see Cache.keys): it reads the
// generations and the entry under them (with get unset, only the entry's
// position: lk.data is then the entry's first 8 bytes). With a rider, the
// script and the rider's commands go to Redis in one pipeline (one round
// trip). pre, when not nil, is the start of the script's EVALSHA command
// for keys, boxed once (Prepared.evalArgs).
func (c *Cache) read(ctx context.Context, keys []string, pre []any, get bool, rider Rider) (lookup, error) {
	var lk lookup
	bump, bumped := c.epochBump()
	what := whatPosition
	if get {
		what = whatEntry
	}
	err := c.call(ctx, func(ctx context.Context) error {
		// The whole EVALSHA command when pre is its start, else the
		// script's arguments (args): one slice either way.
		command := make([]any, len(pre), len(pre)+4)
		copy(command, pre)
		command = append(command, what, flagArg(bump), token(), c.genTTLArg)
		args := command[len(pre):]
		var cmd *redis.Cmd
		switch {
		case rider == nil && pre == nil:
			cmd = readScript.Run(ctx, c.rdb, keys, args...)
		case rider == nil:
			cmd = c.rdb.Do(ctx, command...)
		default:
			pipe := c.rdb.Pipeline()
			rider.Queue(ctx, pipe)
			if pre == nil {
				cmd = readScript.EvalSha(ctx, pipe, keys, args...)
			} else {
				cmd = pipe.Do(ctx, command...)
			}
			_, _ = pipe.Exec(ctx) // each command keeps its own error
		}
		if pre != nil || rider != nil {
			if redis.HasErrorPrefix(cmd.Err(), "NOSCRIPT") {
				// Redis did not know the script (restarted, or its scripts
				// flushed): it runs alone, loading it.
				cmd = readScript.Run(ctx, c.rdb, keys, args...)
			}
		}
		res, err := cmd.Slice()
		if err != nil {
			return err
		}
		gens, ok := res[0].(string)
		if !ok {
			return fmt.Errorf("cache: unexpected script reply %T", res[0])
		}
		lk.gens = gens
		if len(res) == 3 {
			data, _ := res[1].(string)
			pttl, _ := res[2].(int64)
			// The reply's bytes, not a copy: nothing writes to lk.data (it
			// is decoded; a []byte value Peek returns may share its memory
			// and is read only).
			lk.hit, lk.data, lk.pttl = true, unsafe.Slice(unsafe.StringData(data), len(data)), time.Duration(pttl)*time.Millisecond
		}
		return nil
	})
	if err == nil {
		bumped()
	}
	return lk, err
}

// store writes data under the entry key built from base and gens.
func (c *Cache) store(ctx context.Context, base, gens string, data []byte, ttl time.Duration) error {
	return c.call(ctx, func(ctx context.Context) error {
		return c.rdb.Set(ctx, base+":"+gens, data, ttl).Err()
	})
}

// Invalidate gives each dep a new generation in one round trip, so that
// every screen depending on one of them is a miss from now on, on every
// instance. Call it after the mutation committed, before responding and
// before publishing its events.
//
// An invalidation is never skipped: it does not go through the circuit
// breaker (a breaker that is still open after Redis came back must not
// leave other instances serving the old screen), and a failed attempt is
// retried until Redis confirms, until ctx's deadline or until
// Config.InvalidateTimeout, whichever comes first.
//
// When Redis never confirms, Invalidate returns an error wrapping
// ErrUnavailable and remembers the miss: until the global epoch has been
// replaced (a background goroutine keeps trying, bypassing the breaker),
// every read of this Cache replaces it first, so this instance never
// serves an entry the invalidation should have dropped. The error is for
// logging; the mutation itself should still succeed.
func (c *Cache) Invalidate(ctx context.Context, deps ...Dep) error {
	bump, bumped := c.epochBump()
	if len(deps) == 0 && !bump {
		return nil
	}
	keys := make([]string, 0, len(deps)+1)
	keys = append(keys, c.epochKey)
	for _, d := range deps {
		keys = append(keys, c.genKey+string(d))
	}
	err := c.retry(ctx, func(ctx context.Context) error {
		return invalidateScript.Run(ctx, c.rdb, keys, c.cfg.GenTTL.Milliseconds(), flag(bump), token()).Err()
	})
	if err != nil {
		c.markMissed()
		return fmt.Errorf("cache: invalidate %v: %w", deps, err)
	}
	bumped()
	return nil
}

// retry runs fn, outside the circuit breaker, each attempt bounded by the
// per-call timeout, until it succeeds, ctx ends or InvalidateTimeout has
// passed. Its error wraps ErrUnavailable.
func (c *Cache) retry(ctx context.Context, fn func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.InvalidateTimeout)
	defer cancel()
	backoff := 5 * time.Millisecond
	for {
		actx, acancel := context.WithTimeout(ctx, c.cfg.Timeout)
		err := fn(actx)
		acancel()
		if c.onAttempt != nil {
			c.onAttempt(err)
		}
		if err == nil {
			return nil
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w: %w", ErrUnavailable, err)
		case <-t.C:
		}
		backoff = min(2*backoff, 200*time.Millisecond)
	}
}

// markMissed records that an invalidation may have been lost and makes
// sure a goroutine replaces the epoch as soon as Redis answers.
func (c *Cache) markMissed() {
	c.missed.Add(1)
	if c.repairing.CompareAndSwap(false, true) {
		go c.repair()
	}
}

// repair replaces the epoch, outside the circuit breaker, until a
// replacement covers every recorded miss.
func (c *Cache) repair() {
	backoff := 10 * time.Millisecond
	for {
		if bump, bumped := c.epochBump(); bump {
			ctx, cancel := context.WithTimeout(context.Background(), c.cfg.Timeout)
			err := invalidateScript.Run(ctx, c.rdb, []string{c.epochKey}, c.cfg.GenTTL.Milliseconds(), "t", token()).Err()
			cancel()
			if c.onAttempt != nil {
				c.onAttempt(err)
			}
			if err == nil {
				bumped()
				backoff = 10 * time.Millisecond
				continue
			}
			time.Sleep(backoff)
			backoff = min(2*backoff, time.Second)
			continue
		}
		c.repairing.Store(false)
		// A miss recorded after the check above and before the flag was
		// cleared found the flag set and started nothing: look again.
		if bump, _ := c.epochBump(); !bump || !c.repairing.CompareAndSwap(false, true) {
			if c.onRepaired != nil {
				c.onRepaired()
			}
			return
		}
	}
}

// token returns a fresh random token for the epoch or a generation: 64
// random bits, so a value never comes back.
func token() string {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], rand.Uint64())
	var out [11]byte // base64 of 8 bytes
	base64.RawURLEncoding.Encode(out[:], b[:])
	return string(out[:])
}

func flag(b bool) string {
	return strconv.FormatBool(b)[:1] // "t" or "f"
}

// Script arguments boxed once: flag's values, and what the read script
// reads of the entry (all of it, or its position).
var (
	flagTrue, flagFalse     any = flag(true), flag(false)
	whatEntry, whatPosition any = "t", "p"
)

func flagArg(b bool) any {
	if b {
		return flagTrue
	}
	return flagFalse
}

// BreakerState is the state of the circuit breaker around Redis (for the
// bff_cache_breaker_state gauge).
func (c *Cache) BreakerState() gobreaker.State { return c.breaker.State() }
