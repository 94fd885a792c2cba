package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/redis/go-redis/v9"
	"golang.org/x/time/rate"

	"github.com/shop/bff/internal/auth"
	"github.com/shop/bff/internal/config"
	"github.com/shop/bff/internal/httpx"
	"github.com/shop/bff/internal/order"
)

// Defaults of the zero durations and sizes of a [Config]. The rates and
// bursts of [DefaultConfig] are config's (DefaultRateQueriesPerSecond, …).
const (
	DefaultKeyPrefix    = "bff:rl:"
	DefaultRedisTimeout = 50 * time.Millisecond
	DefaultCooldown     = 2 * time.Second
	DefaultLocalMaxKeys = 10000
)

// Response headers set by [Limiter.Allow].
const (
	HeaderLimit      = "RateLimit-Limit"
	HeaderRemaining  = "RateLimit-Remaining"
	HeaderReset      = "RateLimit-Reset"
	HeaderRetryAfter = "Retry-After"
)

// The RateLimit headers as net/http keeps them (canonical): setting them
// costs no conversion.
var (
	limitKey     = http.CanonicalHeaderKey(HeaderLimit)
	remainingKey = http.CanonicalHeaderKey(HeaderRemaining)
	resetKey     = http.CanonicalHeaderKey(HeaderReset)
)

// Config configures a [Limiter]. The rates and bursts are taken as they
// are, so that 0 can turn a limit off: start from [DefaultConfig], since a
// zero Config limits nothing. Zero durations, sizes and funcs get their
// defaults.
type Config struct {
	// QueriesPerSecond is the sustained rate of queries per user (or per
	// client address when anonymous). DefaultConfig:
	// config.DefaultRateQueriesPerSecond. 0 turns the query limit off.
	QueriesPerSecond int
	// QueriesBurst is how many queries a user may send at once.
	// DefaultConfig: config.DefaultRateQueriesBurst. When <= 0 with a rate
	// set, it is the rate.
	QueriesBurst int
	// MutationsPerSecond is the sustained rate of mutations per user.
	// DefaultConfig: config.DefaultRateMutationsPerSecond. 0 turns the
	// mutation limit off.
	MutationsPerSecond int
	// MutationsBurst is how many mutations a user may send at once.
	// DefaultConfig: config.DefaultRateMutationsBurst. When <= 0 with a
	// rate set, it is the rate.
	MutationsBurst int

	// KeyPrefix starts every Redis key of the limiter ("rate:" comes
	// before it, as redis_rate puts it). Default "bff:rl:".
	KeyPrefix string
	// RedisTimeout bounds one Redis call; past it the local limiter
	// decides. Default 50ms.
	RedisTimeout time.Duration
	// Cooldown is how long the limiter stays local after a Redis failure
	// before one request probes Redis again. Default 2s.
	Cooldown time.Duration
	// LocalMaxKeys bounds the local limiters kept in memory (least recently
	// used ones are evicted). Default 10000.
	LocalMaxKeys int

	// ClientIP returns the address that keys anonymous requests. Default:
	// the host of r.RemoteAddr (IPv6 addresses grouped by /64). Set it when
	// the BFF runs behind trusted proxies.
	ClientIP func(r *http.Request) string
	// Now is the clock of the local limiter. Default time.Now.
	Now func() time.Time
	// Logger receives a warning when the limiter falls back to local limits
	// and a notice when Redis answers again. Default slog.Default().
	Logger *slog.Logger
}

// DefaultConfig returns the defaults of the RATE_LIMIT_* variables, as
// config writes them.
func DefaultConfig() Config {
	return Config{
		QueriesPerSecond:   config.DefaultRateQueriesPerSecond,
		QueriesBurst:       config.DefaultRateQueriesBurst,
		MutationsPerSecond: config.DefaultRateMutationsPerSecond,
		MutationsBurst:     config.DefaultRateMutationsBurst,
	}
}

// Sources of a decision (label "source" of bff_ratelimit_requests_total).
const (
	SourceRedis = "redis"
	SourceLocal = "local"
)

// budget is one of the two limits.
type budget struct {
	kind  string // "query" or "mutation"
	limit gcraLimit
	on    bool
	// keyPrefix starts the keys of the budget: "rate:", Config.KeyPrefix,
	// its tag ("q" or "m") and ":".
	keyPrefix string
}

func newBudget(kind, tag, keyPrefix string, perSecond, burst int) budget {
	if burst <= 0 {
		burst = perSecond
	}
	return budget{kind: kind, on: perSecond > 0, keyPrefix: redisKeyPrefix + keyPrefix + tag + ":",
		limit: newGCRALimit(perSecond, burst, time.Second)}
}

// decision is the outcome of one check.
type decision struct {
	allowed    bool
	limit      int
	remaining  int
	retryAfter time.Duration
	resetAfter time.Duration
	source     string
}

// Limiter enforces the query and mutation budgets. It is safe for
// concurrent use; any number of Limiters (one per instance) on the same
// Redis and key prefix share the budgets.
type Limiter struct {
	cfg       Config
	rdb       redis.UniversalClient // nil: local limits only
	queries   budget
	mutations budget
	local     *lru.Cache[string, *rate.Limiter]
	// retryAt is 0 while Redis is healthy, else the time (unix nanos) from
	// which one request may probe it again.
	retryAt atomic.Int64
	metrics *metrics
}

// New returns a Limiter on rdb (nil: local limits only) with cfg.
func New(rdb redis.UniversalClient, cfg Config) *Limiter {
	if cfg.KeyPrefix == "" {
		cfg.KeyPrefix = DefaultKeyPrefix
	}
	if cfg.RedisTimeout <= 0 {
		cfg.RedisTimeout = DefaultRedisTimeout
	}
	if cfg.Cooldown <= 0 {
		cfg.Cooldown = DefaultCooldown
	}
	if cfg.LocalMaxKeys <= 0 {
		cfg.LocalMaxKeys = DefaultLocalMaxKeys
	}
	if cfg.ClientIP == nil {
		cfg.ClientIP = RemoteIP
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	local, err := lru.New[string, *rate.Limiter](cfg.LocalMaxKeys)
	if err != nil {
		panic(err) // only for a size <= 0, excluded above
	}
	l := &Limiter{
		cfg:       cfg,
		queries:   newBudget("query", "q", cfg.KeyPrefix, cfg.QueriesPerSecond, cfg.QueriesBurst),
		mutations: newBudget("mutation", "m", cfg.KeyPrefix, cfg.MutationsPerSecond, cfg.MutationsBurst),
		rdb:       rdb,
		local:     local,
		metrics:   newMetrics(),
	}
	l.metrics.healthy = l.RedisHealthy
	return l
}

// RedisHealthy reports whether the budgets are shared through Redis now:
// false without Redis and while the limiter limits locally after a Redis
// failure (for readiness reports; it never fails readiness).
func (l *Limiter) RedisHealthy() bool {
	return l.rdb != nil && l.retryAt.Load() == 0
}

// Allow checks r against the mutation budget (mutation true) or the query
// budget of its user, or of its client address when r is anonymous
// (auth.UserFrom). Within the budget it sets the RateLimit-Limit,
// RateLimit-Remaining and RateLimit-Reset headers and returns true; with
// the budget turned off it sets nothing and returns true. Over the budget
// it writes 429 with those headers, Retry-After and a RATE_LIMITED error
// (extensions retryable, retryAfterSeconds, limit, remaining 0) and returns
// false: the caller must not write anything more.
//
// RateLimit-Limit is the burst; RateLimit-Remaining how many requests may
// be sent at once now; RateLimit-Reset the seconds until the whole burst is
// available again; Retry-After the seconds until the next request is.
func (l *Limiter) Allow(w http.ResponseWriter, r *http.Request, mutation bool) bool {
	return l.AllowN(w, r, mutation, 1)
}

// AllowN is [Limiter.Allow] charging n units at once: an operation with n
// mutation root fields costs n mutations. A charge larger than the burst
// never passes.
func (l *Limiter) AllowN(w http.ResponseWriter, r *http.Request, mutation bool, n int) bool {
	b, n := l.budget(mutation, n)
	if !b.on {
		return true
	}
	key := l.key(r, b)
	return l.respond(w, r, b, l.decide(r.Context(), key, b, n))
}

// budget returns the budget of a query or mutation and the units to
// charge (at least 1).
func (l *Limiter) budget(mutation bool, n int) (budget, int) {
	if mutation {
		return l.mutations, max(n, 1)
	}
	return l.queries, max(n, 1)
}

// key is the budget's Redis key for r ("rate:" and KeyPrefix before the
// budget's tag and subject), also the key of its local limiter.
func (l *Limiter) key(r *http.Request, b budget) string {
	kind, id := l.subject(r)
	return b.keyPrefix + kind + id
}

// respond counts decision d and answers it: the RateLimit headers, and
// over the budget the 429 (see AllowN).
func (l *Limiter) respond(w http.ResponseWriter, r *http.Request, b budget, d decision) bool {
	l.metrics.observe(b.kind, d)
	// The three values share one allocation (each header its own full
	// slice of it, so an Add to one copies instead of overwriting the next).
	vals := [...]string{strconv.Itoa(d.limit), strconv.Itoa(d.remaining), strconv.Itoa(ceilSeconds(d.resetAfter))}
	all := vals[:]
	h := w.Header()
	h[limitKey], h[remainingKey], h[resetKey] = all[0:1:1], all[1:2:2], all[2:3:3]
	if d.allowed {
		return true
	}
	retry := max(1, ceilSeconds(d.retryAfter))
	e := &order.Error{
		Code:    order.CodeRateLimited,
		Message: fmt.Sprintf("too many %s requests: retry in %d s", b.kind, retry),
		Extensions: map[string]any{
			"retryable":                true,
			httpx.ExtRetryAfterSeconds: retry,
			"limit":                    d.limit,
			"remaining":                0,
		},
	}
	httpx.WriteError(w, r, http.StatusTooManyRequests, e)
	return false
}

// subject names who the budget belongs to: "u:" and the user id, or "ip:"
// and the address.
func (l *Limiter) subject(r *http.Request) (kind, id string) {
	if u, ok := auth.UserFrom(r.Context()); ok && u.ID != "" {
		return "u:", u.ID
	}
	ip := l.cfg.ClientIP(r)
	if ip == "" {
		ip = "unknown"
	}
	return "ip:", ip
}

// RemoteIP is the default [Config.ClientIP]: the host of r.RemoteAddr,
// with IPv6 addresses reduced to their /64 network (one subscriber's
// allocation) so that a client cannot escape its budget by rotating
// addresses within it.
func RemoteIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	addr, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	addr = addr.Unmap()
	if addr.Is6() {
		if p, err := addr.WithZone("").Prefix(64); err == nil {
			return p.String()
		}
	}
	return addr.String()
}

// decide asks Redis when it is healthy (or due for a probe) and the local
// limiter otherwise.
func (l *Limiter) decide(ctx context.Context, key string, b budget, n int) decision {
	if l.rdb != nil && l.useRedis() {
		res, err := l.callRedis(ctx, key, b.limit, n)
		return l.decided(ctx, key, b, n, res, err)
	}
	return l.decideLocal(key, b, n)
}

// decided is the decision of a GCRA step that Redis answered with res, or
// failed with err: then the local limiter decides, and Redis is left
// alone for the cool-down.
func (l *Limiter) decided(ctx context.Context, key string, b budget, n int, res gcraResult, err error) decision {
	if err == nil {
		l.markHealthy()
		return decision{
			allowed:    res.allowed > 0,
			limit:      b.limit.burst,
			remaining:  res.remaining,
			retryAfter: res.retryAfter,
			resetAfter: res.resetAfter,
			source:     SourceRedis,
		}
	}
	if ctx.Err() == nil { // a client that went away is not Redis's fault
		l.markFailed(err)
	}
	return l.decideLocal(key, b, n)
}

// useRedis reports whether this request may ask Redis: always while it is
// healthy; after a failure only once the cool-down is over, and then only
// the one request that claims the probe.
func (l *Limiter) useRedis() bool {
	at := l.retryAt.Load()
	if at == 0 {
		return true
	}
	now := l.cfg.Now()
	if now.UnixNano() < at {
		return false
	}
	return l.retryAt.CompareAndSwap(at, now.Add(l.cfg.Cooldown).UnixNano())
}

func (l *Limiter) markHealthy() {
	if l.retryAt.Load() != 0 && l.retryAt.Swap(0) != 0 {
		l.cfg.Logger.Info("rate limiter: Redis answers again, limits are shared")
	}
}

func (l *Limiter) markFailed(err error) {
	if l.retryAt.Swap(l.cfg.Now().Add(l.cfg.Cooldown).UnixNano()) == 0 {
		l.cfg.Logger.Warn("rate limiter: Redis failed, using local limits",
			slog.String("error", err.Error()), slog.Duration("cooldown", l.cfg.Cooldown))
	}
}

// errTimeout is the error of a Redis call that did not answer in time.
var errTimeout = errors.New("redis rate limit call timed out")

// callRedis runs one GCRA step, waiting at most RedisTimeout whatever the
// client's own timeouts are (go-redis ignores context deadlines unless
// ContextTimeoutEnabled is set).
func (l *Limiter) callRedis(ctx context.Context, key string, limit gcraLimit, n int) (gcraResult, error) {
	// The context is cancelled once the answer is taken, never by the call
	// itself: a call that answered in time must not race its own
	// cancellation in the select below and be taken for a timeout.
	ctx, cancel := context.WithTimeout(ctx, l.cfg.RedisTimeout)
	defer cancel()
	type result struct {
		res gcraResult
		err error
	}
	done := make(chan result, 1)
	go func() {
		res, err := parseGCRA(gcra.Run(ctx, l.rdb, []string{key}, limit.args(n)...))
		done <- result{res, err}
	}()
	select {
	case x := <-done:
		return x.res, x.err
	case <-ctx.Done():
		select {
		case x := <-done: // it answered just as the budget ran out
			return x.res, x.err
		default:
			return gcraResult{}, errTimeout
		}
	}
}

// decideLocal applies the budget with this instance's limiter for key.
func (l *Limiter) decideLocal(key string, b budget, n int) decision {
	lim, ok := l.local.Get(key)
	if !ok {
		fresh := rate.NewLimiter(rate.Limit(b.limit.rate), b.limit.burst)
		if prev, found, _ := l.local.PeekOrAdd(key, fresh); found {
			lim = prev
		} else {
			lim = fresh
		}
	}
	now := l.cfg.Now()
	allowed := lim.AllowN(now, n)
	tokens := max(lim.TokensAt(now), 0)
	perSecond := float64(b.limit.rate)
	d := decision{
		allowed:    allowed,
		limit:      b.limit.burst,
		remaining:  int(math.Floor(tokens)),
		resetAfter: seconds((float64(b.limit.burst) - tokens) / perSecond),
		source:     SourceLocal,
	}
	if !allowed {
		d.remaining = 0
		d.retryAfter = seconds((float64(min(n, b.limit.burst)) - tokens) / perSecond)
	}
	return d
}

func seconds(s float64) time.Duration {
	if s <= 0 {
		return 0
	}
	return time.Duration(s * float64(time.Second))
}

// ceilSeconds rounds d up to whole seconds (0 for d <= 0).
func ceilSeconds(d time.Duration) int {
	if d <= 0 {
		return 0
	}
	return int((d + time.Second - 1) / time.Second)
}
