// Package config reads the BFF's configuration from the environment: one
// table of variables, each with its default and its meaning, so that
// `bff -h` can list them and an invalid value fails at start naming the
// variable.
package config

import (
	"fmt"
	"io"
	"net/url"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// Defaults that the packages configured from this table fall back to when
// built without it (tests, tools): each written once, here, and read by
// the table below and by the package that applies it.
const (
	// DefaultPGMaxConns is PG_MAX_CONNS's default: the Postgres pool's size.
	DefaultPGMaxConns = 20
	// DefaultQueryMaxComplexity is QUERY_MAX_COMPLEXITY's default: a full
	// page of 100 orders with their lines and products.
	DefaultQueryMaxComplexity = 5000
	// DefaultQueryMaxDepth is QUERY_MAX_DEPTH's default.
	DefaultQueryMaxDepth = 15
	// DefaultQueryMaxBytes is QUERY_MAX_BYTES's default: 32 KiB of query text.
	DefaultQueryMaxBytes = 32 << 10
	// DefaultQueryMaxTokens is QUERY_MAX_TOKENS's default: the parser's
	// token budget, of admission and of the executor's own parser.
	DefaultQueryMaxTokens = 4000
	// DefaultQueryMaxRootFields is QUERY_MAX_ROOT_FIELDS's default.
	DefaultQueryMaxRootFields = 20
	// DefaultQueryMaxSelections is QUERY_MAX_SELECTIONS's default.
	DefaultQueryMaxSelections = 400
	// DefaultRateQueriesPerSecond is RATE_LIMIT_QUERIES_PER_SECOND's default.
	DefaultRateQueriesPerSecond = 50
	// DefaultRateQueriesBurst is RATE_LIMIT_QUERIES_BURST's default.
	DefaultRateQueriesBurst = 100
	// DefaultRateMutationsPerSecond is RATE_LIMIT_MUTATIONS_PER_SECOND's default.
	DefaultRateMutationsPerSecond = 5
	// DefaultRateMutationsBurst is RATE_LIMIT_MUTATIONS_BURST's default.
	DefaultRateMutationsBurst = 20
	// DefaultStreamMaxOpen is STREAM_MAX_OPEN's default.
	DefaultStreamMaxOpen = 16
	// DefaultStreamOpensPerMinute is STREAM_OPENS_PER_MINUTE's default.
	DefaultStreamOpensPerMinute = 60
	// DefaultGCMinHeapBytes is GC_MIN_HEAP_BYTES's default: 64 MiB.
	DefaultGCMinHeapBytes = 64 << 20
	// DefaultMaxBodyBytes is MAX_BODY_BYTES's default: 1 MiB.
	DefaultMaxBodyBytes = 1 << 20
	// DefaultWebhookWorkers is WEBHOOK_WORKERS's default.
	DefaultWebhookWorkers = 8
	// DefaultWebhookEndpointConcurrency is WEBHOOK_ENDPOINT_CONCURRENCY's default.
	DefaultWebhookEndpointConcurrency = 4
	// DefaultPaymentsURL is PAYMENTS_URL's default: the payment simulator.
	DefaultPaymentsURL = "http://127.0.0.1:8090"
	// DefaultOTelServiceName is OTEL_SERVICE_NAME's default.
	DefaultOTelServiceName = "bff"
)

// Durations that the packages configured from this table fall back to:
// each written once, here.
const (
	// DefaultJWTMaxLifetime is JWT_MAX_LIFETIME's default: a week.
	DefaultJWTMaxLifetime = 7 * 24 * time.Hour
	// DefaultPaymentsTimeout is PAYMENTS_TIMEOUT's default.
	DefaultPaymentsTimeout = 3 * time.Second
	// DefaultCacheTTL is CACHE_TTL's default.
	DefaultCacheTTL = 60 * time.Second
	// DefaultCacheTimeout is CACHE_TIMEOUT's default.
	DefaultCacheTimeout = 50 * time.Millisecond
	// DefaultIdempotencyTTL is IDEMPOTENCY_TTL's default.
	DefaultIdempotencyTTL = 24 * time.Hour
	// DefaultStreamReplayWindow is STREAM_REPLAY_WINDOW's default.
	DefaultStreamReplayWindow = 24 * time.Hour
	// DefaultStreamPruneInterval is STREAM_PRUNE_INTERVAL's default.
	DefaultStreamPruneInterval = time.Minute
	// DefaultStreamHeartbeat is STREAM_HEARTBEAT's default, on every stream
	// door.
	DefaultStreamHeartbeat = 15 * time.Second
	// DefaultStreamRetry is STREAM_RETRY's default.
	DefaultStreamRetry = 3 * time.Second
	// DefaultWebhookTimeout is WEBHOOK_TIMEOUT's default.
	DefaultWebhookTimeout = 10 * time.Second
	// DefaultWebhookRetryFor is WEBHOOK_RETRY_FOR's default.
	DefaultWebhookRetryFor = 24 * time.Hour
	// DefaultWebhookBackoff is WEBHOOK_BACKOFF's default.
	DefaultWebhookBackoff = 5 * time.Second
	// DefaultWebhookBackoffMax is WEBHOOK_BACKOFF_MAX's default.
	DefaultWebhookBackoffMax = time.Hour
	// DefaultWebhookDisableAfter is WEBHOOK_DISABLE_AFTER's default.
	DefaultWebhookDisableAfter = 72 * time.Hour
	// DefaultWebhookSecretOverlap is WEBHOOK_SECRET_OVERLAP's default.
	DefaultWebhookSecretOverlap = 24 * time.Hour
	// DefaultWebhookPollInterval is WEBHOOK_POLL_INTERVAL's default.
	DefaultWebhookPollInterval = time.Second
)

// durText is d as the table writes it: 168h, 1m, 50ms (not 168h0m0s).
func durText(d time.Duration) string {
	s := d.String()
	s = strings.TrimSuffix(s, "m0s")
	if s != d.String() {
		s += "m"
	}
	if t := strings.TrimSuffix(s, "h0m"); t != s {
		s = t + "h"
	}
	return s
}

// DevJWTSecret is the development signing secret, used when JWT_SECRET is
// unset in development mode. It must never sign production tokens.
const DevJWTSecret = "dev-only-jwt-secret-change-me-0123456789"

// DevWebhookSecret is the development webhook secret shared with the
// payment simulator.
const DevWebhookSecret = "dev-only-webhook-secret-change-me-0123456789"

// MinSecretBytes is the shortest secret accepted for JWT_SECRET and
// WEBHOOK_SECRET: 32 bytes, the size of the HMAC-SHA256 hash.
const MinSecretBytes = 32

// Config is the whole configuration of one BFF process.
type Config struct {
	// Env is "production" (the default) or "development". Development
	// enables the demo sign-in (POST /session), the development secrets,
	// GraphiQL and /metrics on the API port.
	Env string
	// HTTPAddr is the listen address of the API.
	HTTPAddr string
	// MetricsAddr, when set, serves /metrics on its own port instead of
	// the API port.
	MetricsAddr string
	// DatabaseURL is the Postgres connection string.
	DatabaseURL string
	// DatabaseMigrateURL, when set, is the connection string of
	// migrations (direct or session-pooled, when DatabaseURL goes through
	// a pooler in transaction mode).
	DatabaseMigrateURL string
	// PGMaxConns bounds the Postgres pool.
	PGMaxConns int
	// RedisURL is a redis:// URL, or a comma-separated list of host:port
	// (a Redis Cluster, or Sentinel with RedisMasterName).
	RedisURL string
	// RedisMasterName selects Sentinel mode for a list of addresses.
	RedisMasterName string
	// JWTSecrets verify session tokens; the first signs new ones.
	JWTSecrets []string
	// JWTIssuer and JWTAudience, when set, are required in tokens.
	JWTIssuer, JWTAudience string
	// JWTMaxLifetime is the longest accepted token lifetime.
	JWTMaxLifetime time.Duration
	// WebhookSecrets verify payment webhooks (two during rotation).
	WebhookSecrets []string
	// PaymentsURL is the payment provider's base URL.
	PaymentsURL string
	// PaymentsTimeout bounds one charge request.
	PaymentsTimeout time.Duration
	// PaymentWorkers is the number of charge worker goroutines; 0 turns
	// the worker off on this instance.
	PaymentWorkers int
	// Rate limits per user (per IP when anonymous); 0 turns one off.
	RateQueriesPerSecond, RateQueriesBurst, RateMutationsPerSecond, RateMutationsBurst int
	// CacheEnabled turns the Redis screen cache on.
	CacheEnabled bool
	// CacheTTL is the lifetime of a cached screen (jittered ±10%).
	CacheTTL time.Duration
	// CacheTimeout bounds one Redis call of the cache.
	CacheTimeout time.Duration
	// IdempotencyTTL is how long idempotency records are kept.
	IdempotencyTTL time.Duration
	// StreamReplayWindow is how far back a stream can be resumed.
	StreamReplayWindow time.Duration
	// StreamPruneInterval is how often events older than the replay window
	// are pruned (in batches).
	StreamPruneInterval time.Duration
	// StreamHeartbeat is the interval of `: ping` comments.
	StreamHeartbeat time.Duration
	// StreamRetry is the reconnect hint sent as `retry:`.
	StreamRetry time.Duration
	// PersistedOperations is "allow" (any document, and manifest ids) or
	// "require" (manifest operations only); empty means require in
	// production, allow in development.
	PersistedOperations string
	// PersistedOperationsDir holds manifests <client>/<version>.json of
	// {id: document}, in addition to the built-in web app manifest.
	PersistedOperationsDir string
	// CompressMinBytes is the smallest response body compressed by
	// Accept-Encoding (gzip, zstd); 0 turns compression off.
	CompressMinBytes int
	// MaxBodyBytes caps request bodies.
	MaxBodyBytes int64
	// GCMinHeapBytes is the floor of the garbage collector's heap goal
	// (0: GOGC alone), see internal/heapfloor.
	GCMinHeapBytes int64
	// BodyReadTimeout bounds reading one request body.
	BodyReadTimeout time.Duration
	// MaxInFlight caps concurrent requests (streams excluded); beyond it
	// requests get 503.
	MaxInFlight int
	// MaxRunning is how many GraphQL operations that the screen cache's
	// fast path did not answer run at once (0: four per CPU core); the
	// others wait in line, mutations first, for at most QueueMaxWait (0:
	// no line).
	MaxRunning int
	// QueueMaxWait bounds a request's wait in line; then it runs anyway
	// (0, the default: no line).
	QueueMaxWait time.Duration
	// RequestTimeout is the deadline of one request, propagated to
	// Postgres and Redis.
	RequestTimeout time.Duration
	// ReadHeaderTimeout bounds reading request headers.
	ReadHeaderTimeout time.Duration
	// ShutdownGrace is how long a shutdown waits for requests and workers.
	ShutdownGrace time.Duration
	// QueryMaxComplexity and QueryMaxDepth bound GraphQL operations.
	QueryMaxComplexity, QueryMaxDepth int
	// QueryMaxBytes, QueryMaxTokens, QueryMaxRootFields and
	// QueryMaxSelections bound a GraphQL document before it is validated.
	QueryMaxBytes, QueryMaxTokens, QueryMaxRootFields, QueryMaxSelections int
	// StreamMaxOpen and StreamOpensPerMinute cap the event streams of one
	// user.
	StreamMaxOpen, StreamOpensPerMinute int
	// Introspection allows __schema and __type queries.
	Introspection bool
	// GraphiQL serves the GraphiQL IDE at /graphiql.
	GraphiQL bool
	// MigrateOnStart applies pending migrations when serving.
	MigrateOnStart bool
	// LogLevel is debug, info, warn or error.
	LogLevel string
	// OTLPEndpoint, when set, exports traces over OTLP/HTTP to its
	// /v1/traces.
	OTLPEndpoint string
	// OTLPTracesEndpoint, when set, is the full URL traces are exported
	// to (wins over OTLPEndpoint).
	OTLPTracesEndpoint string
	// OTelServiceName is the service.name of the traces.
	OTelServiceName string
	// TracesSampler is the OpenTelemetry sampler name
	// (parentbased_always_on, traceidratio, ...).
	TracesSampler string
	// TracesSamplerArg is the ratio of the traceidratio samplers.
	TracesSamplerArg float64
	// StaleSentinelInterval is the interval of the stale-read sentinel's
	// probe (0: off).
	StaleSentinelInterval time.Duration
	// TLSCertFile and TLSKeyFile turn on TLS (HTTP/2, TLS 1.2 minimum).
	TLSCertFile, TLSKeyFile string
	// CookieSecure marks the session cookie Secure and sends HSTS (also
	// implied by TLS).
	CookieSecure bool
	// CORSOrigins are the web origins allowed to call the API with
	// credentials.
	CORSOrigins []string
	// CORSAllowHeaders are the request headers those origins may send
	// (empty: httpx.DefaultCORSAllowHeaders).
	CORSAllowHeaders []string
	// TrustedProxies are the addresses (CIDRs) whose X-Forwarded-* headers
	// are believed.
	TrustedProxies []string
	// Outbound webhooks (internal/webhooks): WebhookWorkers concurrent
	// sends on this instance (0: none), at most WebhookEndpointConcurrency
	// per endpoint, each bounded by WebhookTimeout, retried with backoff
	// from WebhookBackoff up to WebhookBackoffMax for WebhookRetryFor, then
	// dead-lettered; an endpoint failing for WebhookDisableAfter is
	// disabled. A rotated secret keeps signing for WebhookSecretOverlap.
	WebhookWorkers, WebhookEndpointConcurrency                         int
	WebhookTimeout, WebhookRetryFor, WebhookBackoff, WebhookBackoffMax time.Duration
	WebhookDisableAfter, WebhookSecretOverlap, WebhookPollInterval     time.Duration
	// WebhookAllowPrivate lets endpoints use loopback, private and
	// link-local addresses (default: in development only).
	WebhookAllowPrivate bool
	webhookAllowPrivate *bool
}

// GraphiQLOn reports whether /graphiql is served: development only.
func (c *Config) GraphiQLOn() bool { return c.GraphiQL && c.Development() }

// PublicMetrics reports whether /metrics is served on the API port: in
// development without METRICS_ADDR only.
func (c *Config) PublicMetrics() bool { return c.MetricsAddr == "" && c.Development() }

// Development reports whether the development features are on.
func (c *Config) Development() bool { return c.Env == "development" }

// variable is one environment variable of the table.
type variable struct {
	name, def, doc string
	set            func(c *Config, v string) error
}

func str(dst func(*Config) *string) func(*Config, string) error {
	return func(c *Config, v string) error { *dst(c) = v; return nil }
}

func list(dst func(*Config) *[]string) func(*Config, string) error {
	return func(c *Config, v string) error {
		*dst(c) = nil
		for _, p := range strings.Split(v, ",") {
			if p = strings.TrimSpace(p); p != "" {
				*dst(c) = append(*dst(c), p)
			}
		}
		return nil
	}
}

func integer(min, max int, dst func(*Config) *int) func(*Config, string) error {
	return func(c *Config, v string) error {
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil || n < min || n > max {
			return fmt.Errorf("want a whole number from %d to %d", min, max)
		}
		*dst(c) = n
		return nil
	}
}

func bytesOf(min, max int64, dst func(*Config) *int64) func(*Config, string) error {
	return func(c *Config, v string) error {
		n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		if err != nil || n < min || n > max {
			return fmt.Errorf("want a number of bytes from %d to %d", min, max)
		}
		*dst(c) = n
		return nil
	}
}

func duration(min time.Duration, dst func(*Config) *time.Duration) func(*Config, string) error {
	return func(c *Config, v string) error {
		d, err := time.ParseDuration(strings.TrimSpace(v))
		if err != nil || d < min {
			return fmt.Errorf("want a duration of at least %s, like 1500ms, 30s or 24h", min)
		}
		*dst(c) = d
		return nil
	}
}

func boolean(dst func(*Config) *bool) func(*Config, string) error {
	return func(c *Config, v string) error {
		b, err := strconv.ParseBool(strings.TrimSpace(v))
		if err != nil {
			return fmt.Errorf("want true or false")
		}
		*dst(c) = b
		return nil
	}
}

func optBool(dst func(*Config) **bool) func(*Config, string) error {
	return func(c *Config, v string) error {
		if strings.TrimSpace(v) == "" {
			*dst(c) = nil
			return nil
		}
		b, err := strconv.ParseBool(strings.TrimSpace(v))
		if err != nil {
			return fmt.Errorf("want true, false or nothing")
		}
		*dst(c) = &b
		return nil
	}
}

func oneOf(values []string, dst func(*Config) *string) func(*Config, string) error {
	return func(c *Config, v string) error {
		for _, ok := range values {
			if v == ok {
				*dst(c) = v
				return nil
			}
		}
		return fmt.Errorf("want one of %s", strings.Join(values, ", "))
	}
}

func urlOf(schemes []string, dst func(*Config) *string) func(*Config, string) error {
	return func(c *Config, v string) error {
		u, err := url.Parse(v)
		if err != nil || u.Host == "" {
			return fmt.Errorf("want a URL like %s://host:port", schemes[0])
		}
		for _, s := range schemes {
			if u.Scheme == s {
				*dst(c) = v
				return nil
			}
		}
		return fmt.Errorf("want a %s URL", strings.Join(schemes, " or "))
	}
}

// optional lets an empty value through set (which sees the others).
func optional(set func(*Config, string) error) func(*Config, string) error {
	return func(c *Config, v string) error {
		if v == "" {
			return nil
		}
		return set(c, v)
	}
}

func ratio(dst func(*Config) *float64) func(*Config, string) error {
	return func(c *Config, v string) error {
		r, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil || r < 0 || r > 1 {
			return fmt.Errorf("want a ratio from 0 to 1, like 0.25")
		}
		*dst(c) = r
		return nil
	}
}

var table = []variable{
	{"APP_ENV", "production", "production, or development (demo sign-in, development secrets, GraphiQL, /metrics on HTTP_ADDR); make run and the tests set development", oneOf([]string{"development", "production"}, func(c *Config) *string { return &c.Env })},
	{"HTTP_ADDR", ":8080", "listen address of the API, the event streams and the web app", str(func(c *Config) *string { return &c.HTTPAddr })},
	{"METRICS_ADDR", "", "admin address serving /metrics and /debug/pprof (empty: no pprof, and /metrics on HTTP_ADDR in development only)", str(func(c *Config) *string { return &c.MetricsAddr })},
	{"DATABASE_URL", "postgres://postgres@127.0.0.1:5432/bff?sslmode=disable", "Postgres connection string; through PgBouncer in transaction mode add default_query_exec_mode=cache_describe (no named prepared statements)", urlOf([]string{"postgres", "postgresql"}, func(c *Config) *string { return &c.DatabaseURL })},
	{"DATABASE_MIGRATE_URL", "", "connection string for migrations, direct to Postgres or session-pooled, when DATABASE_URL goes through PgBouncer in transaction mode (empty: DATABASE_URL)", optional(urlOf([]string{"postgres", "postgresql"}, func(c *Config) *string { return &c.DatabaseMigrateURL }))},
	{"PG_MAX_CONNS", strconv.Itoa(DefaultPGMaxConns), "size of the Postgres pool", integer(1, 1000, func(c *Config) *int { return &c.PGMaxConns })},
	{"REDIS_URL", "redis://127.0.0.1:6379/0", "redis:// URL, or host:port,host:port for a Redis Cluster (or Sentinel with REDIS_MASTER_NAME)", str(func(c *Config) *string { return &c.RedisURL })},
	{"REDIS_MASTER_NAME", "", "Sentinel master name (REDIS_URL then lists the sentinels)", str(func(c *Config) *string { return &c.RedisMasterName })},
	{"JWT_SECRET", "", "HS256 secrets of at least 32 bytes, comma-separated: the first signs, all verify (rotation); required in production, a development secret otherwise", list(func(c *Config) *[]string { return &c.JWTSecrets })},
	{"JWT_ISSUER", "", "when set, tokens must carry this iss (and issued tokens carry it)", str(func(c *Config) *string { return &c.JWTIssuer })},
	{"JWT_AUDIENCE", "", "when set, tokens must carry this aud (and issued tokens carry it)", str(func(c *Config) *string { return &c.JWTAudience })},
	{"JWT_MAX_LIFETIME", durText(DefaultJWTMaxLifetime), "longest accepted token lifetime (exp - iat); tokens without iat or issued in the future are refused", duration(time.Minute, func(c *Config) *time.Duration { return &c.JWTMaxLifetime })},
	{"WEBHOOK_SECRET", "", "payment webhook secrets of at least 32 bytes, comma-separated (two during rotation); required in production, a development secret otherwise", list(func(c *Config) *[]string { return &c.WebhookSecrets })},
	{"PAYMENTS_URL", DefaultPaymentsURL, "base URL of the payment provider (the simulator by default)", urlOf([]string{"http", "https"}, func(c *Config) *string { return &c.PaymentsURL })},
	{"PAYMENTS_TIMEOUT", durText(DefaultPaymentsTimeout), "timeout of one charge request to the provider", duration(10*time.Millisecond, func(c *Config) *time.Duration { return &c.PaymentsTimeout })},
	{"PAYMENT_WORKERS", "2", "charge worker goroutines on this instance (0: none)", integer(0, 64, func(c *Config) *int { return &c.PaymentWorkers })},
	{"RATE_LIMIT_QUERIES_PER_SECOND", strconv.Itoa(DefaultRateQueriesPerSecond), "queries per second per user (0: no limit)", integer(0, 1_000_000, func(c *Config) *int { return &c.RateQueriesPerSecond })},
	{"RATE_LIMIT_QUERIES_BURST", strconv.Itoa(DefaultRateQueriesBurst), "query burst per user", integer(0, 1_000_000, func(c *Config) *int { return &c.RateQueriesBurst })},
	{"RATE_LIMIT_MUTATIONS_PER_SECOND", strconv.Itoa(DefaultRateMutationsPerSecond), "mutations per second per user (0: no limit)", integer(0, 1_000_000, func(c *Config) *int { return &c.RateMutationsPerSecond })},
	{"RATE_LIMIT_MUTATIONS_BURST", strconv.Itoa(DefaultRateMutationsBurst), "mutation burst per user", integer(0, 1_000_000, func(c *Config) *int { return &c.RateMutationsBurst })},
	{"CACHE_ENABLED", "true", "serve the screens through the Redis screen cache", boolean(func(c *Config) *bool { return &c.CacheEnabled })},
	{"CACHE_TTL", durText(DefaultCacheTTL), "lifetime of a cached screen (±10% jitter)", duration(time.Second, func(c *Config) *time.Duration { return &c.CacheTTL })},
	{"CACHE_TIMEOUT", durText(DefaultCacheTimeout), "timeout of one Redis call of the screen cache", duration(time.Millisecond, func(c *Config) *time.Duration { return &c.CacheTimeout })},
	{"IDEMPOTENCY_TTL", durText(DefaultIdempotencyTTL), "how long idempotency keys are remembered", duration(time.Minute, func(c *Config) *time.Duration { return &c.IdempotencyTTL })},
	{"STREAM_REPLAY_WINDOW", durText(DefaultStreamReplayWindow), "how far back an event stream can be resumed", duration(time.Minute, func(c *Config) *time.Duration { return &c.StreamReplayWindow })},
	{"STREAM_PRUNE_INTERVAL", durText(DefaultStreamPruneInterval), "how often events older than the replay window are deleted (in batches of 1000)", duration(time.Second, func(c *Config) *time.Duration { return &c.StreamPruneInterval })},
	{"STREAM_HEARTBEAT", durText(DefaultStreamHeartbeat), "interval of the `: ping` heartbeat on event streams", duration(100*time.Millisecond, func(c *Config) *time.Duration { return &c.StreamHeartbeat })},
	{"STREAM_RETRY", durText(DefaultStreamRetry), "reconnect delay sent to EventSource clients as `retry:`", duration(100*time.Millisecond, func(c *Config) *time.Duration { return &c.StreamRetry })},
	{"PERSISTED_OPERATIONS", "", "allow (any document, and persisted-operation ids) or require (only the operations of the manifests run); empty: require in production, allow in development", func(c *Config, v string) error {
		if v != "" && v != "allow" && v != "require" {
			return fmt.Errorf("want allow or require (or empty for the environment's default)")
		}
		c.PersistedOperations = v
		return nil
	}},
	{"PERSISTED_OPERATIONS_DIR", "", "directory of persisted-operation manifests, <client name>/<version>.json of {\"<sha256>\": \"<document>\"}, loaded at start besides the built-in web app manifest", str(func(c *Config) *string { return &c.PersistedOperationsDir })},
	{"COMPRESS_MIN_BYTES", "1024", "smallest JSON (or web app) response compressed with gzip or zstd as Accept-Encoding allows (0: never compress)", integer(0, 64<<20, func(c *Config) *int { return &c.CompressMinBytes })},
	{"GC_MIN_HEAP_BYTES", strconv.Itoa(DefaultGCMinHeapBytes), "floor of the garbage collector's heap goal while the live heap is small: rarer collections, so fewer requests run during a mark phase (0: GOGC alone; GOGC=off is respected)", bytesOf(0, 1<<40, func(c *Config) *int64 { return &c.GCMinHeapBytes })},
	{"MAX_BODY_BYTES", strconv.Itoa(DefaultMaxBodyBytes), "largest request body (413 beyond)", bytesOf(1024, 64<<20, func(c *Config) *int64 { return &c.MaxBodyBytes })},
	{"BODY_READ_TIMEOUT", "10s", "time allowed to read a request body (400 beyond), so slow bodies cannot hold in-flight slots", duration(10*time.Millisecond, func(c *Config) *time.Duration { return &c.BodyReadTimeout })},
	{"MAX_IN_FLIGHT", "512", "requests in flight before load shedding (503); streams are not counted", integer(1, 1_000_000, func(c *Config) *int { return &c.MaxInFlight })},
	{"MAX_RUNNING", "0", "GraphQL operations the screen cache's fast path did not answer that run at once (0: four per CPU core); the others wait in line, mutations first", integer(0, 1_000_000, func(c *Config) *int { return &c.MaxRunning })},
	{"QUEUE_MAX_WAIT", "0s", "longest wait in line for MAX_RUNNING; then the operation runs anyway (0: no line, the default)", duration(0, func(c *Config) *time.Duration { return &c.QueueMaxWait })},
	{"REQUEST_TIMEOUT", "10s", "deadline of one request, propagated to Postgres and Redis", duration(10*time.Millisecond, func(c *Config) *time.Duration { return &c.RequestTimeout })},
	{"READ_HEADER_TIMEOUT", "5s", "time allowed to read request headers", duration(10*time.Millisecond, func(c *Config) *time.Duration { return &c.ReadHeaderTimeout })},
	{"SHUTDOWN_GRACE", "15s", "time a shutdown waits for requests, streams and workers", duration(0, func(c *Config) *time.Duration { return &c.ShutdownGrace })},
	{"QUERY_MAX_COMPLEXITY", strconv.Itoa(DefaultQueryMaxComplexity), "largest cost of a GraphQL operation", integer(1, 1_000_000, func(c *Config) *int { return &c.QueryMaxComplexity })},
	{"QUERY_MAX_DEPTH", strconv.Itoa(DefaultQueryMaxDepth), "deepest nesting of a GraphQL operation (introspection included)", integer(1, 1000, func(c *Config) *int { return &c.QueryMaxDepth })},
	{"QUERY_MAX_BYTES", strconv.Itoa(DefaultQueryMaxBytes), "largest GraphQL document (413 beyond; also the size cap of persisted queries)", integer(256, 1<<20, func(c *Config) *int { return &c.QueryMaxBytes })},
	{"QUERY_MAX_TOKENS", strconv.Itoa(DefaultQueryMaxTokens), "most parser tokens of a GraphQL document", integer(100, 1_000_000, func(c *Config) *int { return &c.QueryMaxTokens })},
	{"QUERY_MAX_ROOT_FIELDS", strconv.Itoa(DefaultQueryMaxRootFields), "most root fields of an operation (each mutation field counts against the mutation rate limit)", integer(1, 1000, func(c *Config) *int { return &c.QueryMaxRootFields })},
	{"QUERY_MAX_SELECTIONS", strconv.Itoa(DefaultQueryMaxSelections), "most fields and fragments written in a GraphQL document (bounds validation work)", integer(10, 100_000, func(c *Config) *int { return &c.QueryMaxSelections })},
	{"STREAM_MAX_OPEN", strconv.Itoa(DefaultStreamMaxOpen), "event streams one user may have open on an instance (/events and subscriptions; 429 beyond)", integer(1, 100_000, func(c *Config) *int { return &c.StreamMaxOpen })},
	{"STREAM_OPENS_PER_MINUTE", strconv.Itoa(DefaultStreamOpensPerMinute), "event streams one user may open per minute (429 beyond)", integer(1, 1_000_000, func(c *Config) *int { return &c.StreamOpensPerMinute })},
	{"INTROSPECTION", "true", "allow __schema and __type queries", boolean(func(c *Config) *bool { return &c.Introspection })},
	{"GRAPHIQL", "true", "serve GraphiQL at /graphiql (development only)", boolean(func(c *Config) *bool { return &c.GraphiQL })},
	{"MIGRATE_ON_START", "true", "apply pending migrations when serving", boolean(func(c *Config) *bool { return &c.MigrateOnStart })},
	{"LOG_LEVEL", "info", "debug, info, warn or error", oneOf([]string{"debug", "info", "warn", "error"}, func(c *Config) *string { return &c.LogLevel })},
	{"OTEL_EXPORTER_OTLP_ENDPOINT", "", "export traces over OTLP/HTTP to this base URL + /v1/traces (empty: tracing export off)", optional(urlOf([]string{"http", "https"}, func(c *Config) *string { return &c.OTLPEndpoint }))},
	{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "", "full URL traces are exported to over OTLP/HTTP (wins over OTEL_EXPORTER_OTLP_ENDPOINT)", optional(urlOf([]string{"http", "https"}, func(c *Config) *string { return &c.OTLPTracesEndpoint }))},
	{"OTEL_SERVICE_NAME", DefaultOTelServiceName, "service.name of the exported traces", str(func(c *Config) *string { return &c.OTelServiceName })},
	{"OTEL_TRACES_SAMPLER", "parentbased_always_on", "trace sampler: parentbased_always_on, parentbased_always_off, parentbased_traceidratio, always_on, always_off or traceidratio", oneOf([]string{"parentbased_always_on", "parentbased_always_off", "parentbased_traceidratio", "always_on", "always_off", "traceidratio"}, func(c *Config) *string { return &c.TracesSampler })},
	{"OTEL_TRACES_SAMPLER_ARG", "1", "share of new traces the traceidratio samplers keep, from 0 to 1", ratio(func(c *Config) *float64 { return &c.TracesSamplerArg })},
	{"STALE_SENTINEL_INTERVAL", "1m", "interval of the stale-read sentinel's probe (a marker written and read back through this instance's cache path; 0: off)", duration(0, func(c *Config) *time.Duration { return &c.StaleSentinelInterval })},
	{"TLS_CERT_FILE", "", "certificate (PEM) to serve HTTPS and HTTP/2 with TLS_KEY_FILE", str(func(c *Config) *string { return &c.TLSCertFile })},
	{"TLS_KEY_FILE", "", "private key (PEM) of TLS_CERT_FILE", str(func(c *Config) *string { return &c.TLSKeyFile })},
	{"COOKIE_SECURE", "false", "mark the session cookie Secure and send HSTS (implied by TLS)", boolean(func(c *Config) *bool { return &c.CookieSecure })},
	{"CORS_ORIGINS", "", "web origins allowed to call the API with credentials, comma-separated (never *)", list(func(c *Config) *[]string { return &c.CORSOrigins })},
	{"CORS_ALLOW_HEADERS", "", "request headers the CORS origins may send, comma-separated (empty: Accept, Authorization, Content-Type, Idempotency-Key, X-Request-ID, X-Requested-With, Apollo-Require-Preflight, Last-Event-ID, Cache-Control, If-None-Match, apollographql-client-name/-version, graphql-client-name/-version, traceparent, tracestate, sentry-trace, baggage)", list(func(c *Config) *[]string { return &c.CORSAllowHeaders })},
	{"TRUSTED_PROXIES", "", "CIDRs of proxies whose X-Forwarded-* headers are trusted, comma-separated", list(func(c *Config) *[]string { return &c.TrustedProxies })},
	{"WEBHOOK_WORKERS", strconv.Itoa(DefaultWebhookWorkers), "concurrent outbound webhook sends on this instance (0: none)", integer(0, 1024, func(c *Config) *int { return &c.WebhookWorkers })},
	{"WEBHOOK_ENDPOINT_CONCURRENCY", strconv.Itoa(DefaultWebhookEndpointConcurrency), "concurrent outbound webhook sends to one endpoint from this instance", integer(1, 1024, func(c *Config) *int { return &c.WebhookEndpointConcurrency })},
	{"WEBHOOK_TIMEOUT", durText(DefaultWebhookTimeout), "time bound of one outbound webhook attempt (connect, send, read the answer)", duration(10*time.Millisecond, func(c *Config) *time.Duration { return &c.WebhookTimeout })},
	{"WEBHOOK_RETRY_FOR", durText(DefaultWebhookRetryFor), "how long an outbound webhook is retried before it is dead-lettered", duration(time.Second, func(c *Config) *time.Duration { return &c.WebhookRetryFor })},
	{"WEBHOOK_BACKOFF", durText(DefaultWebhookBackoff), "first outbound webhook retry delay cap (doubles per attempt, full jitter)", duration(time.Millisecond, func(c *Config) *time.Duration { return &c.WebhookBackoff })},
	{"WEBHOOK_BACKOFF_MAX", durText(DefaultWebhookBackoffMax), "largest outbound webhook retry delay cap", duration(time.Millisecond, func(c *Config) *time.Duration { return &c.WebhookBackoffMax })},
	{"WEBHOOK_DISABLE_AFTER", durText(DefaultWebhookDisableAfter), "an outbound webhook endpoint whose attempts all fail for this long is disabled", duration(time.Second, func(c *Config) *time.Duration { return &c.WebhookDisableAfter })},
	{"WEBHOOK_SECRET_OVERLAP", durText(DefaultWebhookSecretOverlap), "how long a rotated outbound webhook secret keeps signing beside the new one", duration(0, func(c *Config) *time.Duration { return &c.WebhookSecretOverlap })},
	{"WEBHOOK_POLL_INTERVAL", durText(DefaultWebhookPollInterval), "how often idle outbound webhook workers look for due deliveries", duration(time.Millisecond, func(c *Config) *time.Duration { return &c.WebhookPollInterval })},
	{"WEBHOOK_ALLOW_PRIVATE", "", "allow outbound webhook endpoints on loopback, private and link-local addresses (empty: true in development, false in production)", optBool(func(c *Config) **bool { return &c.webhookAllowPrivate })},
}

// Load reads the configuration from getenv (os.Getenv in production). The
// first invalid value fails, naming its variable.
func Load(getenv func(string) string) (*Config, error) {
	c := &Config{}
	for _, v := range table {
		val := getenv(v.name)
		if val == "" {
			val = v.def
		}
		if err := v.set(c, val); err != nil {
			return nil, fmt.Errorf("invalid %s=%q: %v", v.name, val, err)
		}
	}
	if c.PersistedOperations == "" {
		c.PersistedOperations = "allow"
		if !c.Development() {
			c.PersistedOperations = "require"
		}
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		return nil, fmt.Errorf("invalid TLS_CERT_FILE/TLS_KEY_FILE: set both or neither")
	}
	if c.RateQueriesPerSecond > 0 && c.RateQueriesBurst == 0 {
		return nil, fmt.Errorf("invalid RATE_LIMIT_QUERIES_BURST=0: a limited budget needs a burst of at least 1")
	}
	if c.RateMutationsPerSecond > 0 && c.RateMutationsBurst == 0 {
		return nil, fmt.Errorf("invalid RATE_LIMIT_MUTATIONS_BURST=0: a limited budget needs a burst of at least 1")
	}
	for _, o := range c.CORSOrigins {
		if o == "*" {
			return nil, fmt.Errorf("invalid CORS_ORIGINS: * is not allowed with credentials; list the origins")
		}
	}
	if len(c.JWTSecrets) == 0 {
		if !c.Development() {
			return nil, fmt.Errorf("invalid JWT_SECRET: required when APP_ENV=production")
		}
		c.JWTSecrets = []string{DevJWTSecret}
	}
	if len(c.WebhookSecrets) == 0 {
		if !c.Development() {
			return nil, fmt.Errorf("invalid WEBHOOK_SECRET: required when APP_ENV=production")
		}
		c.WebhookSecrets = []string{DevWebhookSecret}
	}
	c.WebhookAllowPrivate = c.Development()
	if c.webhookAllowPrivate != nil {
		c.WebhookAllowPrivate = *c.webhookAllowPrivate
	}
	if c.WebhookBackoffMax < c.WebhookBackoff {
		return nil, fmt.Errorf("invalid WEBHOOK_BACKOFF_MAX: shorter than WEBHOOK_BACKOFF")
	}
	for name, secrets := range map[string][]string{"JWT_SECRET": c.JWTSecrets, "WEBHOOK_SECRET": c.WebhookSecrets} {
		for i, sec := range secrets {
			if len(sec) < MinSecretBytes {
				return nil, fmt.Errorf("invalid %s: secret %d has %d bytes, at least %d are needed", name, i+1, len(sec), MinSecretBytes)
			}
		}
	}
	if !c.Development() {
		for name, secrets := range map[string][]string{"JWT_SECRET": c.JWTSecrets, "WEBHOOK_SECRET": c.WebhookSecrets} {
			for _, sec := range secrets {
				if sec == DevJWTSecret || sec == DevWebhookSecret {
					return nil, fmt.Errorf("invalid %s: the development secret is not allowed when APP_ENV=production", name)
				}
			}
		}
	}
	return c, nil
}

// FromEnv reads the configuration from the process environment.
func FromEnv() (*Config, error) { return Load(os.Getenv) }

// Usage writes the table of variables with their defaults.
func Usage(w io.Writer) {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "VARIABLE\tDEFAULT\tMEANING")
	for _, v := range table {
		def := v.def
		if def == "" {
			def = "(empty)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", v.name, def, v.doc)
	}
	_ = tw.Flush()
}
