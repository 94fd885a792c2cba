// Package server assembles the BFF from its parts: it opens Postgres and
// Redis, builds the screen cache, the shop, the idempotency keeper, the
// GraphQL executor, the event broker and the payment worker, mounts the
// HTTP endpoints behind the middleware chain, runs the background jobs and
// shuts everything down gracefully. cmd/bff and the end-to-end tests both
// start the BFF through it.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/playground"
	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/vektah/gqlparser/v2/ast"

	"github.com/shop/bff/graph"
	"github.com/shop/bff/internal/auth"
	"github.com/shop/bff/internal/cache"
	"github.com/shop/bff/internal/config"
	"github.com/shop/bff/internal/gqlhttp"
	"github.com/shop/bff/internal/httpx"
	"github.com/shop/bff/internal/idempotency"
	"github.com/shop/bff/internal/order"
	"github.com/shop/bff/internal/payments"
	"github.com/shop/bff/internal/persisted"
	"github.com/shop/bff/internal/postgres"
	"github.com/shop/bff/internal/ratelimit"
	"github.com/shop/bff/internal/shop"
	"github.com/shop/bff/internal/stream"
	"github.com/shop/bff/internal/telemetry"
	"github.com/shop/bff/internal/webhooks"
	"github.com/shop/bff/web"
)

// Options are the parts of a server that tests replace.
type Options struct {
	// Logger receives the JSON logs. Default: JSON on stderr at the
	// configured level.
	Logger *slog.Logger
	// PGTracer observes every Postgres query (tests count them).
	PGTracer pgx.QueryTracer
	// CachePrefix starts every Redis key of this server. Default "bff:".
	CachePrefix string
	// CacheStoreDelay is called between the load and the store of a
	// screen cache miss (a test hook widening the stale-refill race).
	CacheStoreDelay func(ctx context.Context)
	// WebhookObserve is told about every recorded outbound webhook attempt
	// (tests wait on it).
	WebhookObserve func(webhooks.Attempt)
	// SkipInvalidation leaves the cached screens alone after writes and
	// events (no invalidation, no refusal of entries older than an event):
	// a broken cache invariant, for the test that the stale-read sentinel
	// notices one. Never set outside tests.
	SkipInvalidation bool
	// RateLimitClock, when set, is the rate limiter's clock, and the
	// limiter then decides locally (per instance): on Redis it would read
	// Redis's clock, which a test cannot hold still. For tests of who is
	// charged, whatever time the requests take. Never set outside tests.
	RateLimitClock func() time.Time
}

// Server is one BFF instance.
type Server struct {
	cfg    *config.Config
	log    *slog.Logger
	store  *postgres.Store
	rdb    redis.UniversalClient
	cache  *cache.Cache
	shop   *shop.Shop
	keeper *idempotency.Keeper
	broker *stream.Broker
	// streamCaps limits each user's streams on every stream door.
	streamCaps *stream.Caps
	worker     *payments.Worker
	hooks      *webhooks.Worker
	// hooksAdmin serves the staff's webhook operations.
	hooksAdmin *webhooks.Admin
	metrics    *telemetry.Metrics
	tracing    *telemetry.Tracing
	// sentinel is the stale-read probe (see sentinel.go).
	sentinel         *sentinel
	skipInvalidation bool // Options.SkipInvalidation
	gql              http.Handler
	handler          http.Handler

	ready    atomic.Bool
	bg       sync.WaitGroup
	stopBG   context.CancelFunc
	bgCtx    context.Context
	httpSrv  *http.Server
	closeOne sync.Once
}

// New builds a server: it connects to Postgres (applying pending
// migrations when configured) and to Redis (which may be down: the BFF
// then serves without its cache), and assembles the handler. It starts
// nothing; see Serve.
func New(ctx context.Context, cfg *config.Config, opt Options) (*Server, error) {
	s := &Server{cfg: cfg, log: opt.Logger, skipInvalidation: opt.SkipInvalidation}
	if s.log == nil {
		s.log = NewLogger(cfg.LogLevel)
	}
	// Every line logged with a request's context carries its trace_id and
	// request_id.
	s.log = slog.New(telemetry.LogHandler(s.log.Handler()))
	samplerArg := cfg.TracesSamplerArg
	tracing, err := telemetry.NewTracing(ctx, telemetry.TracingConfig{ServiceName: cfg.OTelServiceName,
		Endpoint: cfg.OTLPEndpoint, TracesEndpoint: cfg.OTLPTracesEndpoint,
		Sampler: cfg.TracesSampler, SamplerArg: &samplerArg})
	if err != nil {
		return nil, fmt.Errorf("tracing: %w", err)
	}
	s.tracing = tracing
	// Every query gets a span (under the request's or job's span); the
	// test hook, when given, sees every query too.
	store, err := postgres.Open(ctx, postgres.Config{URL: cfg.DatabaseURL, MigrateURL: cfg.DatabaseMigrateURL, MaxConns: int32(cfg.PGMaxConns),
		QueryTimeout: cfg.RequestTimeout, Tracer: telemetry.NewPgxTracer(opt.PGTracer, tracing.Options()...)})
	if err != nil {
		_ = tracing.Shutdown(ctx)
		return nil, fmt.Errorf("postgres: %w", err)
	}
	s.store = store
	if cfg.MigrateOnStart {
		if err := store.Migrate(ctx); err != nil {
			store.Close()
			return nil, fmt.Errorf("migrate: %w", err)
		}
	}
	rdb, err := NewRedis(cfg)
	if err != nil {
		store.Close()
		_ = tracing.Shutdown(ctx)
		return nil, err
	}
	telemetry.InstrumentRedis(rdb, tracing.Options()...)
	s.rdb = rdb
	// Open a connection before the first request: the rate limiter gives
	// Redis 50 ms per call, less than a dial on a busy machine, and a cold
	// first call used to switch it to local limits with a WARN. Redis may be
	// down: the BFF then serves without it.
	warm, cancel := context.WithTimeout(ctx, time.Second)
	_ = rdb.Ping(warm).Err()
	cancel()
	prefix := opt.CachePrefix
	if prefix == "" {
		prefix = "bff:"
	}
	if err := s.assemble(prefix, opt); err != nil {
		s.Close()
		return nil, err
	}
	s.bgCtx, s.stopBG = context.WithCancel(context.WithoutCancel(ctx))
	return s, nil
}

// NewRedis returns the Redis client of cfg: a single node for a redis://
// URL, a Cluster for a list of addresses (one seed address is enough),
// Sentinel with a master name.
// Every call honours its context's deadline.
func NewRedis(cfg *config.Config) (redis.UniversalClient, error) {
	u := cfg.RedisURL
	if strings.HasPrefix(u, "redis://") || strings.HasPrefix(u, "rediss://") {
		o, err := redis.ParseURL(u)
		if err != nil {
			return nil, fmt.Errorf("invalid REDIS_URL: %w", err)
		}
		o.ContextTimeoutEnabled = true
		o.MaxRetries = 1
		o.DialTimeout = time.Second
		return redis.NewClient(o), nil
	}
	var addrs []string
	for _, a := range strings.Split(u, ",") {
		if a = strings.TrimSpace(a); a != "" {
			addrs = append(addrs, a)
		}
	}
	if len(addrs) == 0 {
		return nil, errors.New("invalid REDIS_URL: empty")
	}
	o := &redis.UniversalOptions{Addrs: addrs, MasterName: cfg.RedisMasterName,
		ContextTimeoutEnabled: true, MaxRetries: 1, DialTimeout: time.Second}
	if cfg.RedisMasterName != "" {
		return redis.NewFailoverClient(o.Failover()), nil
	}
	// A list without a master name is a Redis Cluster, even with one seed
	// address. Commands go to the masters only (a replica may lag behind
	// an invalidation); a MOVED is followed, and the slot map is reloaded.
	// A master that died answers no MOVED: only a reload of the map moves
	// the client to the replica that took over, so it is reloaded every
	// redisClusterReload rather than go-redis's default minute.
	co := o.Cluster()
	co.ClusterStateReloadInterval = redisClusterReload
	return redis.NewClusterClient(co), nil
}

// redisClusterReload is how often a Cluster client reloads its slot map
// (one CLUSTER SLOTS, while commands flow): it bounds how long calls to a
// dead master's slots go on failing after the cluster has failed over.
const redisClusterReload = time.Second

// NewLogger returns the JSON logger at level.
func NewLogger(level string) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(level))
	return slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: l}))
}

// assemble builds the subsystems in dependency order, then the routes
// and the middleware chain around them.
func (s *Server) assemble(prefix string, opt Options) error {
	s.metrics = telemetry.NewMetrics(telemetry.MetricsConfig{})
	if err := s.metrics.RegisterPool("bff", s.store); err != nil {
		return err
	}
	if err := s.assembleCache(prefix, opt); err != nil {
		return err
	}
	if err := s.assembleStreams(prefix); err != nil {
		return err
	}
	s.assembleShop()
	if err := s.assembleWebhooks(opt); err != nil {
		return err
	}
	if err := s.assembleGraphQL(prefix, opt); err != nil {
		return err
	}
	webhook, err := s.assemblePayments()
	if err != nil {
		return err
	}
	mux, err := s.routes(webhook)
	if err != nil {
		return err
	}
	s.handler, err = s.middleware(mux)
	s.sentinel = &sentinel{s: s}
	return err
}

// assembleCache builds the screen cache (nothing when CACHE_ENABLED is
// off: screens then always come from Postgres).
func (s *Server) assembleCache(prefix string, opt Options) error {
	cfg := s.cfg
	if !cfg.CacheEnabled {
		return nil
	}
	c, err := cache.New(s.rdb, cache.Config{TTL: cfg.CacheTTL, Timeout: cfg.CacheTimeout, Prefix: prefix,
		ModelVersion: graph.SchemaVersion(), StoreDelay: opt.CacheStoreDelay}, cache.NewPrometheusMetrics(s.metrics.Registry()))
	if err != nil {
		return fmt.Errorf("cache: %w", err)
	}
	s.cache = c
	s.metrics.SetCacheBreakerFunc(func() int { return int(c.BreakerState()) })
	return nil
}

// assembleStreams builds the event broker (Postgres record, Redis fan-out,
// the SSE doors).
func (s *Server) assembleStreams(prefix string) error {
	cfg := s.cfg
	s.streamCaps = stream.NewCaps(stream.CapsConfig{MaxOpen: cfg.StreamMaxOpen, OpensPerMinute: cfg.StreamOpensPerMinute,
		ClientIP: ratelimit.RemoteIP})
	broker, err := stream.New(s.store, s.rdb, stream.Config{ReplayWindow: cfg.StreamReplayWindow, PruneInterval: cfg.StreamPruneInterval, Heartbeat: cfg.StreamHeartbeat,
		Retry: cfg.StreamRetry, Channel: prefix + "events", BeforePublish: s.invalidate, Observe: s.observe, Logger: s.log, Caps: s.streamCaps,
		Tracer: s.tracing.Provider().Tracer("github.com/shop/bff/internal/stream"), Metrics: s.metrics})
	if err != nil {
		return fmt.Errorf("stream: %w", err)
	}
	s.broker = broker
	s.metrics.SetSSEFunc(broker.OpenStreams)
	s.metrics.SetOutboxFunc(s.outboxStats)
	return nil
}

// assembleShop builds the screens and mutations and the idempotency
// keeper; both call Committed after a write commits.
func (s *Server) assembleShop() {
	cfg := s.cfg
	shopOpts := []shop.Option{shop.WithOnCommit(s.Committed)}
	if s.cache != nil {
		shopOpts = append(shopOpts, shop.WithCache(s.cache))
	}
	s.shop = shop.New(s.store, shopOpts...)
	s.keeper = idempotency.New(s.store, idempotency.Config{TTL: cfg.IdempotencyTTL, OnCommit: s.Committed, OnReplay: s.broker.Settle, Logger: s.log,
		Metrics: idempotencyMetrics{s.metrics}})
}

// assembleGraphQL builds the executor, the rate limiter and the GraphQL
// over HTTP handler (with the response cache when the cache is on).
func (s *Server) assembleGraphQL(prefix string, opt Options) error {
	cfg := s.cfg
	execCfg := graph.ExecConfig{MaxComplexity: cfg.QueryMaxComplexity, MaxDepth: cfg.QueryMaxDepth,
		MaxTokens: cfg.QueryMaxTokens, Introspection: cfg.Introspection, Logger: s.log, QueryCache: gqlhttp.DocumentCache{},
		Extensions: []graphql.HandlerExtension{telemetry.NewGraphQLTracer(s.tracing.Options()...)}}
	resolver := &graph.Resolver{Shop: s.shop, Events: s.broker, Webhooks: s.hooksAdmin}
	rlCfg := ratelimit.DefaultConfig()
	rlCfg.QueriesPerSecond, rlCfg.QueriesBurst = cfg.RateQueriesPerSecond, cfg.RateQueriesBurst
	rlCfg.MutationsPerSecond, rlCfg.MutationsBurst = cfg.RateMutationsPerSecond, cfg.RateMutationsBurst
	rlCfg.KeyPrefix = prefix + "rl:"
	rlCfg.Logger = s.log
	shared := s.rdb
	if opt.RateLimitClock != nil {
		rlCfg.Now, shared = opt.RateLimitClock, nil
	}
	limiter := ratelimit.New(shared, rlCfg)
	for _, c := range limiter.Collectors() {
		if err := s.metrics.Register(c); err != nil {
			return err
		}
	}
	es := graph.Schema(resolver)
	gcfg := gqlhttp.Config{Exec: graph.NewExecutor(es, execCfg), Schema: es.Schema(), Keeper: s.keeper, Line: s.gate(),
		Limit: limiter.AllowN, Heartbeat: cfg.StreamHeartbeat, Streams: s.streamCaps, Persisted: cache.NewAPQ(s.rdb, prefix, 24*time.Hour, cfg.CacheTimeout),
		Limits: gqlhttp.Limits{MaxDocumentBytes: cfg.QueryMaxBytes, MaxTokens: cfg.QueryMaxTokens,
			MaxRootFields: cfg.QueryMaxRootFields, MaxSelections: cfg.QueryMaxSelections}}
	if s.cache != nil {
		gcfg.Responses = gqlhttp.NewResponses(s.cache, shop.ScreenDeps)
		// The fast path's charge rides in the cache's round trip: both use
		// s.rdb.
		gcfg.Charge = func(r *http.Request) gqlhttp.Charge {
			if c := limiter.Charge(r, false, 1); c != nil {
				return c
			}
			return nil
		}
	}
	ops, err := s.persistedOperations(es.Schema())
	if err != nil {
		return err
	}
	gcfg.Operations = ops
	s.gql = gqlhttp.New(gcfg)
	return nil
}

// persistedOperations loads the persisted-operation manifests (the built-in
// web app's and PERSISTED_OPERATIONS_DIR's), validated against schema.
func (s *Server) persistedOperations(schema *ast.Schema) (*persisted.Store, error) {
	dirs, err := persisted.OpenDir(s.cfg.PersistedOperationsDir)
	if err != nil {
		return nil, fmt.Errorf("invalid PERSISTED_OPERATIONS_DIR: %w", err)
	}
	ops, err := persisted.Load(persisted.Config{Mode: persisted.Mode(s.cfg.PersistedOperations),
		Dirs: append([]fs.FS{persisted.BuiltinFS(), sentinelManifest()}, dirs...), Schema: schema})
	if err != nil {
		return nil, fmt.Errorf("persisted operations: %w", err)
	}
	if err := s.metrics.Register(ops.Collector()); err != nil {
		return nil, err
	}
	return ops, nil
}

// assemblePayments builds the provider's webhook handler and, when
// PAYMENT_WORKERS > 0, the charge worker.
func (s *Server) assemblePayments() (webhook http.Handler, err error) {
	cfg := s.cfg
	pm := payments.NewMetrics()
	if err := pm.Register(s.metrics.Registry()); err != nil {
		return nil, err
	}
	results := payments.NewStoreAdapter(s.store)
	webhook, err = payments.NewWebhookHandler(payments.WebhookConfig{Secrets: bytesOf(cfg.WebhookSecrets), Store: results,
		Notifier: s, Metrics: pm, Logger: s.log})
	if err != nil {
		return nil, err
	}
	if cfg.PaymentWorkers > 0 {
		prov, err := payments.NewHTTPProvider(payments.HTTPConfig{BaseURL: cfg.PaymentsURL, Timeout: cfg.PaymentsTimeout,
			Metrics: pm, Transport: s.outboundTransport()})
		if err != nil {
			return nil, err
		}
		s.worker, err = payments.NewWorker(payments.WorkerConfig{Jobs: s.store, Provider: prov, Store: results,
			Notifier: s, Concurrency: cfg.PaymentWorkers, Metrics: pm, Logger: s.log,
			Tracer: s.tracing.Provider().Tracer("github.com/shop/bff/internal/payments")})
		if err != nil {
			return nil, err
		}
	}
	return webhook, nil
}

// secureCookies reports whether session cookies carry Secure (and HSTS is
// sent).
func (s *Server) secureCookies() bool { return s.cfg.CookieSecure || s.cfg.TLSCertFile != "" }

// routes mounts the endpoints.
func (s *Server) routes(webhook http.Handler) (*http.ServeMux, error) {
	cfg := s.cfg
	mux := http.NewServeMux()
	mux.Handle("/graphql", s.gql)
	mux.Handle("GET /events", s.broker.Handler())
	mux.Handle("POST /webhooks/payments", webhook)
	mux.HandleFunc("GET /livez", func(w http.ResponseWriter, r *http.Request) {
		httpx.WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", s.readyz)
	if cfg.PublicMetrics() {
		mux.Handle("GET /metrics", s.metrics.Handler())
	}
	if cfg.Development() {
		issuer, err := auth.NewIssuer(AuthConfig(cfg))
		if err != nil {
			return nil, err
		}
		mux.Handle("/session", auth.SessionHandler(issuer, s.store, auth.CookieConfig{Secure: s.secureCookies()}))
	}
	if cfg.GraphiQLOn() {
		mux.Handle("GET /graphiql", graphiQL(playground.Handler("Shop BFF", "/graphql")))
	}
	mux.Handle("/", web.Handler())
	return mux, nil
}

// middleware wraps h in the chain every request passes, outermost first.
func (s *Server) middleware(h http.Handler) (http.Handler, error) {
	cfg := s.cfg
	verifier, err := auth.NewVerifier(AuthConfig(cfg))
	if err != nil {
		return nil, err
	}
	proxies, err := httpx.NewTrustedProxies(cfg.TrustedProxies)
	if err != nil {
		return nil, fmt.Errorf("invalid TRUSTED_PROXIES: %w", err)
	}
	cors, err := httpx.CORS(httpx.CORSOptions{Origins: cfg.CORSOrigins, AllowHeaders: cfg.CORSAllowHeaders})
	if err != nil {
		return nil, fmt.Errorf("invalid CORS_ORIGINS: %w", err)
	}
	compress, err := httpx.Compress(httpx.CompressOptions{MinBytes: cfg.CompressMinBytes})
	if err != nil {
		return nil, fmt.Errorf("invalid COMPRESS_MIN_BYTES: %w", err)
	}
	secure := s.secureCookies()
	return httpx.Chain(telemetry.AnnotateSpan(h),
		// one context derivation for the request's deadline (every request but
		// event streams; it reaches Postgres and Redis through the context),
		// the peer, the request id and the log's RequestInfo
		httpx.BeginDeadline(cfg.RequestTimeout),
		proxies.Middleware(), // first: everything after it sees the client's address
		httpx.RequestID,
		telemetry.Middleware(append(s.tracing.Options(), telemetry.WithFilter(traced))...),
		httpx.AccessLog(s.log),
		s.metrics.Middleware(),
		httpx.Recover(s.log),
		httpx.SecurityHeaders(httpx.SecurityOptions{HSTS: secure}),
		compress, // streams pass through uncompressed, flushed per event
		cors,     // before shedding: preflights are never shed, and 503s stay readable
		httpx.Shed(cfg.MaxInFlight),
		httpx.BodyLimit(cfg.MaxBodyBytes),
		httpx.BodyDeadline(cfg.BodyReadTimeout),
		auth.Middleware(verifier, s.store, auth.MiddlewareOptions{CookieSecure: secure, CSRFExempt: []string{"/webhooks/payments", "/session"}}),
	), nil
}

// gate is the line where the GraphQL operations that the screen cache's
// fast path did not answer wait to run (MAX_RUNNING, QUEUE_MAX_WAIT),
// mutations first.
func (s *Server) gate() *httpx.Gate {
	slots := s.cfg.MaxRunning
	if slots <= 0 {
		slots = 4 * runtime.GOMAXPROCS(0)
	}
	g := httpx.NewGate(httpx.GateOptions{Slots: slots, MaxWait: s.cfg.QueueMaxWait})
	if g != nil {
		for _, c := range []prometheus.Collector{
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "bff_requests_running",
				Help: "Requests holding one of the MAX_RUNNING slots."}, func() float64 { return float64(g.Running()) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "bff_requests_waiting",
				Help: "Requests waiting in line for a slot (keyed writes first)."}, func() float64 { return float64(g.Waiting()) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "bff_requests_unqueued_total",
				Help: "Requests that waited QUEUE_MAX_WAIT and ran without a slot."}, func() float64 { return float64(g.Unqueued()) }),
		} {
			_ = s.metrics.Register(c) // names of their own: cannot collide
		}
	}
	return g
}

// traced says which requests get a trace: all but the probes and scrapes.
func traced(r *http.Request) bool {
	switch r.URL.Path {
	case "/livez", "/readyz", "/metrics":
		return false
	}
	return true
}

// outboundTransport is the transport of every outbound HTTP call of the
// server (payment provider, webhooks): it makes the client span and sends
// the W3C traceparent.
func (s *Server) outboundTransport() http.RoundTripper {
	return httpx.AwayTransport(telemetry.Transport(nil, s.tracing.Options()...))
}

// FlushTraces exports the spans ended so far (tests; shutdown flushes too).
func (s *Server) FlushTraces(ctx context.Context) error { return s.tracing.ForceFlush(ctx) }

// AuthConfig is the session token configuration of cfg (secrets, issuer,
// audience, maximum lifetime), for the server and `bff token` alike.
func AuthConfig(cfg *config.Config) auth.Config {
	return auth.Config{Secrets: bytesOf(cfg.JWTSecrets), Issuer: cfg.JWTIssuer, Audience: cfg.JWTAudience,
		MaxLifetime: cfg.JWTMaxLifetime}
}

// graphiQLPolicy lets GraphiQL load its pinned (SRI-checked) scripts and
// styles from jsDelivr and talk to this origin only, and never be framed.
const graphiQLPolicy = "default-src 'self'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; " +
	"style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; font-src 'self' data: https://cdn.jsdelivr.net; " +
	"img-src 'self' data: https://cdn.jsdelivr.net; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"

// graphiQL serves the GraphiQL page with its Content-Security-Policy.
func graphiQL(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", graphiQLPolicy)
		w.Header().Set("X-Frame-Options", "DENY")
		w.Header().Set("Cache-Control", "no-store")
		h.ServeHTTP(w, r)
	})
}

func bytesOf(ss []string) [][]byte {
	out := make([][]byte, len(ss))
	for i, s := range ss {
		out[i] = []byte(s)
	}
	return out
}

// idempotencyMetrics counts keeper outcomes.
type idempotencyMetrics struct{ m *telemetry.Metrics }

func (i idempotencyMetrics) Outcome(o idempotency.Outcome) {
	switch o {
	case idempotency.OutcomeExecuted:
		i.m.ObserveIdempotency(telemetry.IdempotencyNew)
	case idempotency.OutcomeReplayed:
		i.m.ObserveIdempotency(telemetry.IdempotencyReplay)
	case idempotency.OutcomeInUse:
		i.m.ObserveIdempotency(telemetry.IdempotencyInUse)
	case idempotency.OutcomeReused:
		i.m.ObserveIdempotency(telemetry.IdempotencyReused)
	case idempotency.OutcomeNotSaved:
		i.m.ObserveIdempotency(telemetry.IdempotencyNotStored)
	}
}

// observe tells the screen cache of the events this instance's broker
// hands out: from then on the instance refuses every cached screen of
// their orders and customers that does not reflect them, even when the
// writer's invalidation never reached Redis (a writer cut off from Redis
// while this instance reaches it).
func (s *Server) observe(events []order.Event) {
	if s.cache == nil || s.skipInvalidation {
		return
	}
	for i, e := range events {
		s.cache.Observe(e.Position, shop.InvalidatedBy(events[i:i+1])...)
	}
}

// invalidate drops the cached screens that show the orders of events.
func (s *Server) invalidate(ctx context.Context, events []order.Event) {
	s.invalidateAfter(ctx, events, time.Time{})
}

// invalidateAfter invalidates the screens of events committed at
// committed (zero: events the relay or a catch-up took over, timed from
// their timestamps) and records the commit-to-invalidation time.
func (s *Server) invalidateAfter(ctx context.Context, events []order.Event, committed time.Time) {
	if s.cache == nil || len(events) == 0 || s.skipInvalidation {
		return
	}
	if err := s.cache.Invalidate(context.WithoutCancel(ctx), shop.InvalidatedBy(events)...); err != nil {
		s.log.WarnContext(ctx, "screen invalidation failed; the cache epoch will be bumped when Redis answers", "error", err)
		return
	}
	if committed.IsZero() {
		s.metrics.ObserveInvalidation(telemetry.InvalidationRelay, time.Since(events[0].At))
	} else {
		s.metrics.ObserveInvalidation(telemetry.InvalidationInline, time.Since(committed))
	}
}

// Committed runs after a write commits and before its response is sent:
// it invalidates every screen that shows a changed order, then publishes
// the events (caching.md rule 4: event after invalidation), and wakes the
// payment worker for a new charge job and the webhook worker for the
// deliveries the events' transaction wrote.
func (s *Server) Committed(ctx context.Context, events []order.Event) {
	if len(events) == 0 {
		return
	}
	s.invalidateAfter(ctx, events, time.Now())
	s.broker.Publish(ctx, events)
	s.wakeHooks()
	if s.worker != nil {
		for _, e := range events {
			if e.Type == order.EventPaymentRequested {
				s.worker.Wake()
				break
			}
		}
	}
}

// outboxStats reports the events committed but not yet published and the
// charge jobs not yet sent.
func (s *Server) outboxStats(ctx context.Context) (telemetry.OutboxStats, error) {
	q, err := s.store.QueueStats(ctx)
	return telemetry.OutboxStats{Pending: q.EventsUnpublished, OldestAge: q.EventsOldest,
		ChargeJobsPending: q.ChargeJobsPending, ChargeJobsOldestAge: q.ChargeJobsOldest}, err
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	out := map[string]string{"postgres": "ok", "migrations": "ok", "redis": "ok"}
	status := http.StatusOK
	if !s.ready.Load() {
		out["status"], status = "stopping", http.StatusServiceUnavailable
	}
	if err := s.store.Ping(ctx); err != nil {
		out["postgres"], status = "unreachable", http.StatusServiceUnavailable
	} else if pending, err := s.store.MigrationsPending(ctx); err != nil || pending {
		out["migrations"], status = "pending", http.StatusServiceUnavailable
	}
	if err := s.rdb.Ping(ctx).Err(); err != nil {
		out["redis"] = "unreachable (serving without the cache)"
	}
	if out["status"] == "" {
		out["status"] = "ready"
		if status != http.StatusOK {
			out["status"] = "not ready"
		}
	}
	httpx.WriteJSON(w, status, out)
}

// Handler is the HTTP handler of the server, middleware included.
func (s *Server) Handler() http.Handler { return s.handler }

// GraphQL is the /graphql handler without the middleware chain: it
// expects the signed-in user in the request context (auth.WithUser). For
// benchmarks of the chain's cost.
func (s *Server) GraphQL() http.Handler { return s.gql }

// Store is the server's Postgres store.
func (s *Server) Store() *postgres.Store { return s.store }

// Serve starts the background jobs and serves HTTP on ln until ctx ends,
// then shuts down gracefully within the configured grace period:
// readiness goes false, new connections are refused, in-flight requests
// finish, streams are told to reconnect, and workers stop after their
// current job.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	s.startBackground()
	s.httpSrv = &http.Server{Handler: s.handler, ReadHeaderTimeout: s.cfg.ReadHeaderTimeout,
		IdleTimeout: 120 * time.Second, ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		// TLS 1.2 minimum; ServeTLS adds HTTP/2 ("h2") to the protocols.
		TLSConfig: &tls.Config{MinVersion: tls.VersionTLS12}}
	// HTTP/1.1 and HTTP/2: over TLS ("h2"), and on the plain port with
	// prior knowledge (h2c) for proxies and mobile clients that multiplex
	// every request and stream of a client over one connection.
	s.httpSrv.Protocols = new(http.Protocols)
	s.httpSrv.Protocols.SetHTTP1(true)
	s.httpSrv.Protocols.SetHTTP2(true)
	s.httpSrv.Protocols.SetUnencryptedHTTP2(true)
	s.ready.Store(true)
	errc := make(chan error, 1)
	go func() {
		var err error
		if s.cfg.TLSCertFile != "" {
			err = s.httpSrv.ServeTLS(ln, s.cfg.TLSCertFile, s.cfg.TLSKeyFile)
		} else {
			err = s.httpSrv.Serve(ln)
		}
		errc <- err
	}()
	select {
	case err := <-errc:
		s.stopBG()
		s.bg.Wait()
		return err
	case <-ctx.Done():
	}
	return s.shutdown()
}

func (s *Server) startBackground() {
	s.goBG(func(ctx context.Context) { s.keeper.Reap(ctx, time.Minute, 500) })
	s.goBG(s.compactOrderTotals)
	s.goBG(func(ctx context.Context) {
		if err := s.broker.Run(ctx); err != nil && ctx.Err() == nil {
			s.log.Error("event broker stopped", "error", err)
		}
	})
	if s.worker != nil {
		s.goBG(s.worker.Run)
	}
	if s.hooks != nil {
		s.goBG(s.hooks.Run)
	}
	if d := s.cfg.StaleSentinelInterval; d > 0 {
		s.goBG(func(ctx context.Context) { s.runSentinel(ctx, d) })
	}
	if s.cfg.MetricsAddr != "" {
		admin := http.NewServeMux()
		admin.Handle("GET /metrics", s.metrics.Handler())
		// profiles of the running process, on the admin port only
		admin.HandleFunc("/debug/pprof/", pprof.Index)
		admin.HandleFunc("/debug/pprof/profile", pprof.Profile)
		admin.HandleFunc("/debug/pprof/trace", pprof.Trace)
		admin.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		ms := &http.Server{Addr: s.cfg.MetricsAddr, Handler: admin, ReadHeaderTimeout: 5 * time.Second}
		s.goBG(func(ctx context.Context) {
			go func() { <-ctx.Done(); _ = ms.Close() }()
			if err := ms.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
				s.log.Error("metrics server", "error", err)
			}
		})
	}
}

// orderTotalsInterval is how often the running order totals are compacted
// (see postgres.Store.CompactOrderTotals): the rows a STAFF screen's
// status counts sum are those written since, two per change of status.
const orderTotalsInterval = 5 * time.Second

// compactOrderTotals compacts the running order totals every
// orderTotalsInterval until ctx ends.
func (s *Server) compactOrderTotals(ctx context.Context) {
	every(ctx, orderTotalsInterval, func(ctx context.Context) {
		if _, err := s.store.CompactOrderTotals(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("compacting the order totals failed; retrying later", "error", err)
		}
	})
}

// every runs f every interval until ctx ends.
func every(ctx context.Context, interval time.Duration, f func(ctx context.Context)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		f(ctx)
	}
}

func (s *Server) goBG(f func(ctx context.Context)) {
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		f(s.bgCtx)
	}()
}

func (s *Server) shutdown() error {
	s.ready.Store(false)
	grace := s.cfg.ShutdownGrace
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	s.log.Info("shutting down", "grace", grace.String())
	// Shutdown closes the listeners first, then runs its OnShutdown hooks:
	// streams are told to reconnect only once no new one can arrive here
	// (a stream refused with 503 would make EventSource give up).
	streamsClosed := make(chan struct{})
	s.httpSrv.RegisterOnShutdown(func() {
		defer close(streamsClosed)
		s.broker.Shutdown(ctx)
	})
	err := s.httpSrv.Shutdown(ctx)
	select {
	case <-streamsClosed:
	case <-ctx.Done():
	}
	s.stopBG()
	done := make(chan struct{})
	go func() { s.bg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		s.log.Warn("background jobs did not stop within the grace period")
	}
	if errors.Is(err, context.DeadlineExceeded) {
		_ = s.httpSrv.Close()
	}
	return nil
}

// Close releases the connections. Call it after Serve returns.
func (s *Server) Close() {
	s.closeOne.Do(func() {
		if s.stopBG != nil {
			s.stopBG()
		}
		if s.rdb != nil {
			_ = s.rdb.Close()
		}
		s.store.Close()
		// Spans still buffered are exported, within a bound.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.tracing.Shutdown(ctx)
	})
}
