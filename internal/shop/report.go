package shop

import (
	"context"
	"strings"
	"sync"
)

// CacheReport collects, for one request, what the cache did for each
// screen field, by the field's response key.
type CacheReport struct {
	mu      sync.Mutex
	keys    []string
	results map[string]CacheResult
}

type reportKey struct{}

// WithCacheReport returns ctx carrying a fresh report.
func WithCacheReport(ctx context.Context) (context.Context, *CacheReport) {
	r := &CacheReport{results: map[string]CacheResult{}}
	return context.WithValue(ctx, reportKey{}, r), r
}

// ReportCache records the result of the screen field at responseKey.
func ReportCache(ctx context.Context, responseKey string, res CacheResult) {
	r, ok := ctx.Value(reportKey{}).(*CacheReport)
	if !ok || res.Status == "" {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, seen := r.results[responseKey]; !seen {
		r.keys = append(r.keys, responseKey)
	}
	r.results[responseKey] = res
}

// Render returns the Cache-Status header value (one member per screen, in
// the order they were served) and the `cache` response extension.
func (r *CacheReport) Render() (string, map[string]any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.keys) == 0 {
		return "", nil
	}
	hdr := make([]string, 0, len(r.keys))
	ext := make(map[string]any, len(r.keys))
	for _, k := range r.keys {
		res := r.results[k]
		hdr = append(hdr, res.Header)
		ext[k] = map[string]any{"status": res.Status, "ttl": int(res.TTL.Seconds())}
	}
	return strings.Join(hdr, ", "), ext
}

// Summary is the cache statuses of the request for the log line.
func (r *CacheReport) Summary() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := make([]string, len(r.keys))
	for i, k := range r.keys {
		s[i] = r.results[k].Status
	}
	return strings.Join(s, ",")
}

type bypassKey struct{}

// WithBypass marks ctx as a request that skips cached screens and
// refreshes them (Cache-Control: no-cache).
func WithBypass(ctx context.Context) context.Context {
	return context.WithValue(ctx, bypassKey{}, true)
}

// Bypass reports whether ctx skips cached screens.
func Bypass(ctx context.Context) bool { v, _ := ctx.Value(bypassKey{}).(bool); return v }
