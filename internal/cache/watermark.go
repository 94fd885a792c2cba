package cache

import (
	"context"
	"encoding/binary"
	"slices"
	"sync"
	"time"
)

// maxWatermarks bounds the dependencies whose newest event a Cache keeps
// per period; beyond it the period's map is cleared and its newest
// position becomes the floor for every dependency (stricter, never
// looser).
const maxWatermarks = 1 << 16

// watermarks are the newest event positions this instance has seen: the
// head, and per dependency. Observations are kept in two periods of
// maxAge() each: an observation is needed only while an entry loaded
// before its event can still be served, and every entry expires within
// maxAge() of the start of its load (see fly), so each observation is
// kept at least that long and at most twice that.
type watermarks struct {
	mu      sync.Mutex
	head    int64
	now     func() time.Time // test hook; time.Now by default
	started time.Time        // start of the current period
	cur     period
	prev    period
}

// period is the observations of one period.
type period struct {
	floor int64
	deps  map[Dep]int64
}

// Observe records that this instance's event broker has handed out the
// event at position pos, which changed deps. From then on this Cache
// refuses (as a miss) every entry of those deps whose value does not
// reflect that position, whatever the generations say: an instance that
// has seen an event never serves a screen older than it, even when the
// writer's invalidation did not reach Redis. Call it for every event the
// broker hands out, in the broker's order (a position is handed out once
// every position before it is final), before the event reaches a stream
// of this instance (a client that refetches on the event must not get the
// older screen).
func (c *Cache) Observe(pos int64, deps ...Dep) {
	w := &c.marks
	w.mu.Lock()
	defer w.mu.Unlock()
	c.rotateLocked()
	w.head = max(w.head, pos)
	if w.cur.deps == nil {
		w.cur.deps = map[Dep]int64{}
	}
	if len(w.cur.deps) >= maxWatermarks {
		w.cur.floor = w.head
		clear(w.cur.deps)
	}
	for _, d := range deps {
		w.cur.deps[d] = max(w.cur.deps[d], pos)
	}
}

// maxAge is the longest an entry lives after the start of its load: the
// TTL with its jitter.
func (c *Cache) maxAge() time.Duration {
	return time.Duration(float64(c.cfg.TTL) * (1 + c.cfg.Jitter))
}

// rotateLocked starts a new period when the current one is maxAge() old,
// forgetting the observations of the one before.
func (c *Cache) rotateLocked() {
	w := &c.marks
	now := time.Now()
	if w.now != nil {
		now = w.now()
	}
	switch age := now.Sub(w.started); {
	case w.started.IsZero():
		w.started = now
	case age >= 2*c.maxAge():
		w.prev, w.cur, w.started = period{}, period{}, now
	case age >= c.maxAge():
		w.prev, w.cur, w.started = w.cur, period{}, now
	}
}

// seen returns the newest position observed: the broker hands out a
// position only once every position before it is final, so a load that
// starts now reflects every event up to it.
func (c *Cache) seen() int64 {
	c.marks.mu.Lock()
	defer c.marks.mu.Unlock()
	return c.marks.head
}

// newest returns the newest position observed for any of deps.
func (c *Cache) newest(deps []Dep) int64 {
	w := &c.marks
	w.mu.Lock()
	defer w.mu.Unlock()
	c.rotateLocked()
	p := max(w.cur.floor, w.prev.floor)
	for _, d := range deps {
		p = max(p, w.cur.deps[d], w.prev.deps[d])
	}
	return p
}

// Reflects tells the Load whose loader is running with ctx that the value
// being loaded reflects every event of the key's dependencies up to
// position pos (for example the newest event of the order or customer, read
// in the same snapshot as the value, since one customer's positions follow
// commit order). The entry then records pos, and an instance that has
// observed an event up to pos does not refuse it: a value loaded after an
// event committed is not taken for one loaded before it while the event is
// still on its way to this instance's broker. Without it, an entry records
// the newest position observed when its load started, which is never
// newer than what the value reflects, only older. Several calls keep the
// oldest position. Outside a loader it does nothing.
func Reflects(ctx context.Context, pos int64) {
	if n, ok := ctx.Value(noteKey{}).(*note); ok {
		n.add(pos, time.Time{})
	}
}

type noteKey struct{}

// note collects, while a loader runs, what the values it was built from
// say: the oldest position they reflect (Reflects, or an inner Load), and
// when the earliest of them expires in the cache (an inner hit), which
// caps the TTL of the entry built from them.
type note struct {
	mu      sync.Mutex
	pos     int64
	hasPos  bool
	expires time.Time

	// storing and genKeys are set for the loader of a flight that stores
	// its value: its cache and the generation keys the entry is stored
	// under (see nested).
	storing *Cache
	genKeys []string
}

// withNote returns ctx carrying a fresh note for a loader.
func withNote(ctx context.Context) (context.Context, *note) {
	n := &note{}
	return context.WithValue(ctx, noteKey{}, n), n
}

// nested reports whether ctx is the context of a loader whose flight
// stores its value in c under the same generation keys as genKeys (the
// read keys without the entry's). A Load there does not use Redis: the
// value it would store is part of the value the enclosing flight stores,
// under the same generations, and is invalidated with it; storing it too
// would cost a read, an encoding and a write on every miss of the
// enclosing entry (the rendered response over the screen model), for a
// hit only when another operation reads the same screen before the next
// change.
func nested(ctx context.Context, c *Cache, genKeys []string) bool {
	n, ok := ctx.Value(noteKey{}).(*note)
	return ok && n.storing == c && slices.Equal(n.genKeys, genKeys)
}

// add records a position (kept when older) and an expiry (kept when
// earlier; zero: none).
func (n *note) add(pos int64, expires time.Time) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.hasPos || pos < n.pos {
		n.pos, n.hasPos = pos, true
	}
	if !expires.IsZero() && (n.expires.IsZero() || expires.Before(n.expires)) {
		n.expires = expires
	}
}

// result returns the position the loaded value reflects, given the
// position observed when the load started, and the expiry it carries.
func (n *note) result(seenAtStart int64) (int64, time.Time) {
	n.mu.Lock()
	defer n.mu.Unlock()
	pos := seenAtStart
	if n.hasPos {
		// Both are positions up to which every event is reflected.
		pos = max(pos, n.pos)
	}
	return pos, n.expires
}

// tell passes what a Load served to the Load whose loader called it, if
// any: the value reflects events up to pos and expires in the cache at
// expires.
func tell(ctx context.Context, pos int64, expires time.Time) {
	if n, ok := ctx.Value(noteKey{}).(*note); ok {
		n.add(pos, expires)
	}
}

// entryFormat is part of every entry key: an entry is the position its
// value reflects (8 bytes, big endian), when it expires (Unix milliseconds,
// 8 bytes, big endian: a read that does not ask Redis for the TTL knows
// it), then the encoded value. Entries of another format live under other
// keys, so instances of two versions share Redis during a rolling deploy.
const entryFormat = "pos2"

// entryHeader is the length of an entry's position and expiry.
const entryHeader = 16

func encodeEntry(pos int64, expires time.Time, data []byte) []byte {
	out := make([]byte, entryHeader, entryHeader+len(data))
	binary.BigEndian.PutUint64(out, uint64(pos))
	binary.BigEndian.PutUint64(out[8:], uint64(expires.UnixMilli()))
	return append(out, data...)
}

// decodeEntry returns the position, the expiry and the encoded value of
// entry b.
func decodeEntry(b []byte) (pos int64, expires time.Time, data []byte, ok bool) {
	if len(b) < entryHeader {
		return 0, time.Time{}, nil, false
	}
	return int64(binary.BigEndian.Uint64(b)), time.UnixMilli(int64(binary.BigEndian.Uint64(b[8:]))), b[entryHeader:], true
}

// entryPos returns the position of entry b, of which the first 8 bytes
// are enough (the read script's position read).
func entryPos(b []byte) (int64, bool) {
	if len(b) < 8 {
		return 0, false
	}
	return int64(binary.BigEndian.Uint64(b)), true
}
