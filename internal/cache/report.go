package cache

import (
	"context"
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// Report collects, for one request, what the cache did for each screen it
// served, by the screen's response key (the field's alias), and renders it
// as the Cache-Status header (RFC 9211) and the `cache` response extension.
type Report struct {
	mu      sync.Mutex
	keys    []string
	results []Result // results[i] is the result of keys[i]
}

type reportKey struct{}

// NewReport returns an empty report, for a caller that records into it
// with Add rather than through a context.
func NewReport() *Report { return &Report{} }

// WithReport returns ctx carrying a fresh report.
func WithReport(ctx context.Context) (context.Context, *Report) {
	r := NewReport()
	return context.WithValue(ctx, reportKey{}, r), r
}

// Record notes res for the screen at responseKey in ctx's report (nothing
// without a report, or for a screen served without a cache: empty Status).
func Record(ctx context.Context, responseKey string, res Result) {
	if r, ok := ctx.Value(reportKey{}).(*Report); ok {
		r.Add(responseKey, res)
	}
}

// Add notes res for the screen at responseKey (nothing for a screen served
// without a cache: empty Status); a later result for the same key replaces
// the earlier one.
func (r *Report) Add(responseKey string, res Result) {
	if res.Status == "" {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if i := slices.Index(r.keys, responseKey); i >= 0 {
		r.results[i] = res
		return
	}
	r.keys = append(r.keys, responseKey)
	r.results = append(r.results, res)
}

// Render returns the Cache-Status header value (one member per screen, in
// the order they were served) and the `cache` response extension as JSON,
// {"<response key>":{"status":"hit","ttl":42},...} with the keys sorted as
// encoding/json sorts a map's ("" and nil when no screen was recorded).
func (r *Report) Render() (string, json.RawMessage) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.keys) == 0 {
		return "", nil
	}
	members := make([]string, len(r.results))
	for i, res := range r.results {
		members[i] = res.CacheStatusHeader()
	}
	order := make([]int, len(r.keys))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int { return strings.Compare(r.keys[a], r.keys[b]) })
	ext := make([]byte, 0, 48*len(r.keys))
	ext = append(ext, '{')
	for n, i := range order {
		if n > 0 {
			ext = append(ext, ',')
		}
		ext = appendMember(ext, r.keys[i], r.results[i])
	}
	return strings.Join(members, ", "), append(ext, '}')
}

// appendMember appends the member of the `cache` extension for the screen
// at responseKey: "<response key>":{"status":"hit","ttl":42}.
func appendMember(ext []byte, responseKey string, res Result) []byte {
	ext = appendJSONString(ext, responseKey)
	ext = append(ext, `:{"status":`...)
	ext = appendJSONString(ext, string(res.Status))
	ext = append(ext, `,"ttl":`...)
	ext = strconv.AppendInt(ext, res.TTLSeconds(), 10)
	return append(ext, '}')
}

// AppendSingle appends to ext the `cache` extension that Render returns
// for a report holding res alone, at responseKey, without making the
// report (a fast-path hit). That report's Cache-Status header value is
// res.CacheStatusHeader() and its Summary res.Status.
func AppendSingle(ext []byte, responseKey string, res Result) []byte {
	return append(appendMember(append(ext, '{'), responseKey, res), '}')
}

// appendJSONString appends s as a JSON string: as it is between quotes when
// it needs no escaping (response keys are GraphQL names), else as
// encoding/json writes it.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s) // a string always encodes
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// Summary is the statuses of the recorded screens, comma-separated, for
// the request's log line.
func (r *Report) Summary() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.results) == 1 {
		return string(r.results[0].Status)
	}
	s := make([]string, len(r.results))
	for i, res := range r.results {
		s[i] = string(res.Status)
	}
	return strings.Join(s, ",")
}
