package cache

import (
	"context"
	"strings"
	"sync"
)

// Report collects, for one request, what the cache did for each screen it
// served, by the screen's response key (the field's alias), and renders it
// as the Cache-Status header (RFC 9211) and the `cache` response extension.
type Report struct {
	mu      sync.Mutex
	keys    []string
	results map[string]Result
}

type reportKey struct{}

// WithReport returns ctx carrying a fresh report.
func WithReport(ctx context.Context) (context.Context, *Report) {
	r := &Report{results: map[string]Result{}}
	return context.WithValue(ctx, reportKey{}, r), r
}

// Record notes res for the screen at responseKey in ctx's report (nothing
// without a report, or for a screen served without a cache: empty Status).
func Record(ctx context.Context, responseKey string, res Result) {
	r, ok := ctx.Value(reportKey{}).(*Report)
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
// the order they were served) and the `cache` response extension ("" and
// nil when no screen was recorded).
func (r *Report) Render() (string, map[string]any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.keys) == 0 {
		return "", nil
	}
	hdr := make([]string, 0, len(r.keys))
	ext := make(map[string]any, len(r.keys))
	for _, k := range r.keys {
		res := r.results[k]
		hdr = append(hdr, res.CacheStatusHeader())
		ext[k] = res.Extension()
	}
	return strings.Join(hdr, ", "), ext
}

// Summary is the statuses of the recorded screens, comma-separated, for
// the request's log line.
func (r *Report) Summary() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := make([]string, len(r.keys))
	for i, k := range r.keys {
		s[i] = string(r.results[k].Status)
	}
	return strings.Join(s, ",")
}
