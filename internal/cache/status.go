package cache

import (
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Status is what the cache did for one screen.
type Status string

// Statuses, as reported in the response's extensions and in metrics.
const (
	// StatusHit: served from the cache.
	StatusHit Status = "hit"
	// StatusMiss: loaded (and normally stored).
	StatusMiss Status = "miss"
	// StatusBypass: the request asked for a fresh value (Cache-Control:
	// no-cache); loaded and stored.
	StatusBypass Status = "bypass"
	// StatusError: Redis was unavailable; loaded, not cached.
	StatusError Status = "error"
)

// Result describes what the cache did for one Load.
type Result struct {
	// Status is what happened.
	Status Status
	// TTL is the time left for a hit, or the TTL set for a stored value.
	TTL time.Duration
	// Stored reports that a loaded value was written to the cache.
	Stored bool
	// Validator identifies the value: the key and the generations it is
	// found or stored under ("" when Redis was unavailable). Two equal
	// validators name the same value, so it serves as an HTTP validator
	// (see Cache.Validator).
	Validator string

	missed *missed // a Peek's miss (see AfterMiss)
}

// CacheName is the cache's name in the Cache-Status header.
const CacheName = "bff"

// CacheStatusHeader returns the member of the Cache-Status header (RFC 9211)
// for r, e.g. "bff; hit; ttl=42", "bff; fwd=miss; stored",
// "bff; fwd=request; stored" (bypass: the request's no-cache forbade using a
// stored value, which RFC 9211 names fwd=request) or
// "bff; fwd=miss; detail=error" (Redis unavailable).
func (r Result) CacheStatusHeader() string {
	switch r.Status {
	case StatusHit:
		var b [48]byte
		return string(r.AppendCacheStatus(b[:0]))
	case StatusError:
		return CacheName + "; fwd=miss; detail=error"
	}
	fwd := "miss"
	if r.Status == StatusBypass {
		fwd = "request"
	}
	s := CacheName + "; fwd=" + fwd
	if r.Stored {
		s += "; stored"
	}
	return s
}

// AppendCacheStatus appends the Cache-Status header value of r (see
// CacheStatusHeader) to b.
func (r Result) AppendCacheStatus(b []byte) []byte {
	if r.Status != StatusHit {
		return append(b, r.CacheStatusHeader()...)
	}
	b = append(b, CacheName+"; hit; ttl="...)
	return strconv.AppendInt(b, r.TTLSeconds(), 10)
}

// TTLSeconds is TTL in whole seconds.
func (r Result) TTLSeconds() int64 {
	return int64(r.TTL / time.Second)
}

// BypassRequested reports whether request headers h ask for a fresh value:
// a Cache-Control no-cache directive (or, without Cache-Control, the legacy
// Pragma: no-cache). Pass the result to WithBypass.
func BypassRequested(h http.Header) bool {
	cc := h.Values("Cache-Control")
	if len(cc) == 0 {
		cc = h.Values("Pragma")
	}
	for _, v := range cc {
		for d := range strings.SplitSeq(v, ",") {
			name, _, _ := strings.Cut(strings.TrimSpace(d), "=")
			if strings.EqualFold(strings.TrimSpace(name), "no-cache") {
				return true
			}
		}
	}
	return false
}
