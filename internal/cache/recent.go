package cache

import (
	"sync"
	"time"
)

// recentFor is how long the outcome of a flight that stored its value is
// kept for callers that missed just before the store and ask just after
// the flight ended.
const recentFor = time.Second

// recentCap bounds the flights kept (the oldest go first).
const recentCap = 256

// recentFlights keeps, for a moment, the outcome of the last flights that
// stored their values, by flight key (the entry's key and generations).
//
// A caller whose read missed while a flight ran, but who asks for the
// flight after it ended, would otherwise load again: its read came before
// the store. The flight's value is the very value stored under the
// generations that caller read, so handing it over is a hit on that entry
// (the position check of a hit still applies), without the extra origin
// read or another Redis round trip.
type recentFlights struct {
	mu   sync.Mutex
	m    map[string]recentFlight
	ring [recentCap]string
	next int
}

type recentFlight struct {
	f     any // a flight[T]
	until time.Time
}

// put keeps f under key until until (at most recentFor from now).
func (r *recentFlights) put(key string, f any, until time.Time) {
	if limit := time.Now().Add(recentFor); until.After(limit) {
		until = limit
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m == nil {
		r.m = make(map[string]recentFlight, recentCap)
	}
	if _, ok := r.m[key]; !ok {
		if old := r.ring[r.next]; old != "" {
			delete(r.m, old)
		}
		r.ring[r.next] = key
		r.next = (r.next + 1) % recentCap
	}
	r.m[key] = recentFlight{f: f, until: until}
}

// get returns the flight kept under key, if it is still kept.
func (r *recentFlights) get(key string) (any, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	rf, ok := r.m[key]
	if !ok || !time.Now().Before(rf.until) {
		return nil, false
	}
	return rf.f, true
}
