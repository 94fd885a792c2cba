package cache

import (
	"encoding/binary"
	"sync"
)

// maxWatermarks bounds the dependencies whose newest event a Cache keeps;
// beyond it the map is cleared and its newest position becomes the floor
// for every dependency (stricter, never looser).
const maxWatermarks = 1 << 16

// watermarks are the newest event positions this instance has seen: the
// head, and per dependency.
type watermarks struct {
	mu    sync.Mutex
	head  int64
	floor int64
	deps  map[Dep]int64
}

// Observe records that this instance's event broker has handed out the
// event at position pos, which changed deps. From then on this Cache
// refuses (as a miss) every entry of those deps that was loaded before
// its loader had seen that position, whatever the generations say: an
// instance that sees an event never serves a screen older than it, even
// when the writer's invalidation did not reach Redis. Call it for every
// event, in any order.
func (c *Cache) Observe(pos int64, deps ...Dep) {
	w := &c.marks
	w.mu.Lock()
	defer w.mu.Unlock()
	w.head = max(w.head, pos)
	if w.deps == nil {
		w.deps = map[Dep]int64{}
	}
	if len(w.deps) >= maxWatermarks {
		w.floor = w.head
		clear(w.deps)
	}
	for _, d := range deps {
		w.deps[d] = max(w.deps[d], pos)
	}
}

// seen returns the newest position observed: every event up to it has
// committed (positions follow commit order), so a load that starts now
// reflects all of them.
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
	p := w.floor
	for _, d := range deps {
		p = max(p, w.deps[d])
	}
	return p
}

// entryFormat is part of every entry key: an entry is the position its
// loader had seen (8 bytes, big endian) followed by the encoded value.
const entryFormat = "pos1"

func encodeEntry(pos int64, data []byte) []byte {
	out := make([]byte, 8, 8+len(data))
	binary.BigEndian.PutUint64(out, uint64(pos))
	return append(out, data...)
}

func decodeEntry(b []byte) (int64, []byte, bool) {
	if len(b) < 8 {
		return 0, nil, false
	}
	return int64(binary.BigEndian.Uint64(b)), b[8:], true
}
