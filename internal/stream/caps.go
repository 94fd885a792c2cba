package stream

import (
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/time/rate"

	"github.com/shop/bff/internal/auth"
	"github.com/shop/bff/internal/config"
	"github.com/shop/bff/internal/httpx"
	"github.com/shop/bff/internal/order"
)

// CapsConfig configures [Caps].
type CapsConfig struct {
	// MaxOpen is how many streams one user may have open on this instance
	// (STREAM_MAX_OPEN, default config.DefaultStreamMaxOpen).
	MaxOpen int
	// OpensPerMinute is how many streams one user may open per minute on
	// this instance (STREAM_OPENS_PER_MINUTE, default
	// config.DefaultStreamOpensPerMinute), with a burst of as many.
	OpensPerMinute int
	// ClientIP keys anonymous callers (default: the host of RemoteAddr).
	ClientIP func(*http.Request) string
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Caps limits the event streams of each user, on every stream door
// (GET /events, graphql-sse, multipart): a cap on the streams open at once
// and on how many are opened per minute. Beyond either, the door answers
// 429 RATE_LIMITED with Retry-After before any byte of the stream.
type Caps struct {
	cfg   CapsConfig
	mu    sync.Mutex
	open  map[string]int
	opens *lru.Cache[string, *rate.Limiter]
}

// NewCaps returns the caps of cfg.
func NewCaps(cfg CapsConfig) *Caps {
	if cfg.MaxOpen <= 0 {
		cfg.MaxOpen = config.DefaultStreamMaxOpen
	}
	if cfg.OpensPerMinute <= 0 {
		cfg.OpensPerMinute = config.DefaultStreamOpensPerMinute
	}
	if cfg.ClientIP == nil {
		cfg.ClientIP = func(r *http.Request) string { return r.RemoteAddr }
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	opens, _ := lru.New[string, *rate.Limiter](10000) // size > 0: cannot fail
	return &Caps{cfg: cfg, open: map[string]int{}, opens: opens}
}

// OpenStream admits one stream of the caller of r (its user, or its client
// address when anonymous). Over a cap it writes 429 and returns false;
// otherwise release must be called once when the stream ends.
func (c *Caps) OpenStream(w http.ResponseWriter, r *http.Request) (release func(), ok bool) {
	who := "ip:" + c.cfg.ClientIP(r)
	if u, ok := auth.UserFrom(r.Context()); ok {
		who = "u:" + u.ID
	}
	c.mu.Lock()
	if c.open[who] >= c.cfg.MaxOpen {
		c.mu.Unlock()
		tooMany(w, r, fmt.Sprintf("too many open event streams: at most %d at once", c.cfg.MaxOpen), 1, c.cfg.MaxOpen)
		return nil, false
	}
	lim, found := c.opens.Get(who)
	if !found {
		lim = rate.NewLimiter(rate.Limit(float64(c.cfg.OpensPerMinute)/60), c.cfg.OpensPerMinute)
		c.opens.Add(who, lim)
	}
	now := c.cfg.Now()
	if !lim.AllowN(now, 1) {
		wait := time.Duration((1 - lim.TokensAt(now)) / float64(lim.Limit()) * float64(time.Second))
		c.mu.Unlock()
		tooMany(w, r, fmt.Sprintf("too many event streams opened: at most %d per minute", c.cfg.OpensPerMinute),
			max(1, int((wait+time.Second-1)/time.Second)), c.cfg.OpensPerMinute)
		return nil, false
	}
	c.open[who]++
	c.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			c.mu.Lock()
			if c.open[who]--; c.open[who] <= 0 {
				delete(c.open, who)
			}
			c.mu.Unlock()
		})
	}, true
}

// Open is how many streams the caller keyed who ("u:<id>" or
// "ip:<address>") has open.
func (c *Caps) Open(who string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.open[who]
}

func tooMany(w http.ResponseWriter, r *http.Request, msg string, retry, limit int) {
	w.Header().Set("Retry-After", strconv.Itoa(retry))
	httpx.WriteError(w, r, http.StatusTooManyRequests, &order.Error{Code: order.CodeRateLimited, Message: msg,
		Extensions: map[string]any{"retryable": true, httpx.ExtRetryAfterSeconds: retry, "limit": limit, "remaining": 0}})
}
