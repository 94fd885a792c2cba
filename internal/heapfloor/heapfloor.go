// Package heapfloor keeps the garbage collector's heap goal at or above a
// floor. With GOGC=100 the goal is twice the live heap; the BFF's live heap
// is a few MiB, so a hot read path that allocates ~10-20 KiB per request
// starts a collection every ~150 ms, and the requests that run during a
// mark phase (a dedicated mark worker on one of two Ps, assists, write
// barriers) take milliseconds longer: the tail of sequential reads. Raising
// the goal to the floor while the live heap is small makes cycles an order of
// magnitude rarer without changing anything once the live heap is large
// (the goal is then the usual GOGC one).
package heapfloor

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
)

// maxPercent bounds the GOGC that Percent returns.
const maxPercent = 100_000

// minLive is the smallest live heap Percent computes from: the runtime's
// own basis before its first collection (the live heap then reads 0, and
// the goal is 4 MiB × GOGC/100) and its floor after.
const minLive = 4 << 20

// Percent is the GOGC that makes the heap goal max(live×(1+base/100), floor):
// base when that goal already reaches the floor, more otherwise. A live heap
// under 4 MiB counts as 4 MiB (see minLive), so the goal never exceeds the
// floor.
func Percent(live, floor uint64, base int) int {
	if base < 0 || floor == 0 {
		return base
	}
	live = max(live, minLive)
	if floor/live > maxPercent/100 {
		return maxPercent
	}
	p := int((floor - min(floor, live)) * 100 / live)
	return min(max(p, base), maxPercent)
}

// Floor adjusts GOGC after every collection; see Start.
type Floor struct {
	floor uint64
	base  int

	mu      sync.Mutex
	stopped bool
	percent int
	applied func(int) // tests: called with each GOGC set
}

// Start keeps the heap goal at or above floor bytes until Stop, starting from
// the GOGC in effect (the GOGC environment variable, 100 by default). It does
// nothing when floor is 0 or the collector is off (GOGC=off).
func Start(floor uint64) *Floor { return start(floor, nil) }

func start(floor uint64, applied func(int)) *Floor {
	base := debug.SetGCPercent(100)
	debug.SetGCPercent(base)
	f := &Floor{floor: floor, base: base, percent: base, applied: applied}
	if floor == 0 || base < 0 {
		f.stopped = true
		return f
	}
	f.apply()
	return f
}

// arm schedules apply after the next collection: a finalizer runs once the
// cycle that found its object unreachable is over.
func (f *Floor) arm() {
	s := new([16]byte) // not tiny-allocated, so it gets a finalizer of its own
	runtime.SetFinalizer(s, func(*[16]byte) { f.apply() })
}

// apply sets GOGC from the live heap of the last collection and re-arms.
func (f *Floor) apply() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stopped {
		return
	}
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	var live uint64
	if s[0].Value.Kind() == metrics.KindUint64 {
		live = s[0].Value.Uint64()
	}
	if p := Percent(live, f.floor, f.base); p != f.percent {
		debug.SetGCPercent(p)
		f.percent = p
	}
	if f.applied != nil {
		f.applied(f.percent)
	}
	f.arm()
}

// Stop restores the GOGC in effect when Start was called.
func (f *Floor) Stop() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stopped {
		return
	}
	f.stopped = true
	debug.SetGCPercent(f.base)
	f.percent = f.base
}
