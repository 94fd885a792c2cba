package heapfloor

import (
	"runtime"
	"runtime/debug"
	"testing"
)

func TestPercent(t *testing.T) {
	const mib = 1 << 20
	for _, c := range []struct {
		live, floor uint64
		base, want  int
	}{
		{4 * mib, 64 * mib, 100, 1500},      // goal 4 MiB × 16 = 64 MiB
		{32 * mib, 64 * mib, 100, 100},      // 2× live already reaches the floor
		{200 * mib, 64 * mib, 100, 100},     // large heap: the usual goal
		{16 * mib, 64 * mib, 400, 400},      // a higher GOGC is kept
		{4 * mib, 0, 100, 100},              // no floor
		{4 * mib, 64 * mib, -1, -1},         // GOGC=off stays off
		{0, 64 * mib, 100, 1500},            // before the first collection: the runtime's 4 MiB basis
		{1 * mib, 64 * mib, 100, 1500},      // a live heap under 4 MiB counts as 4 MiB
		{4 * mib, 1 << 50, 100, maxPercent}, // bounded
	} {
		if got := Percent(c.live, c.floor, c.base); got != c.want {
			t.Errorf("Percent(%d, %d, %d) = %d, want %d", c.live, c.floor, c.base, got, c.want)
		}
	}
}

func gcPercent() int {
	p := debug.SetGCPercent(100)
	debug.SetGCPercent(p)
	return p
}

// A collection raises GOGC so that the goal reaches the floor, and Stop
// restores the GOGC of before.
func TestFloorFollowsCollections(t *testing.T) {
	before := gcPercent()
	if before < 0 {
		t.Fatal("run without GOGC=off")
	}
	const floor = 1 << 40 // far above this test's live heap: the bound applies
	got := make(chan int, 16)
	f := start(floor, func(p int) {
		select {
		case got <- p:
		default:
		}
	})
	if p := <-got; p != maxPercent { // the first apply, at start
		t.Fatalf("GOGC at start = %d, want %d", p, maxPercent)
	}
	runtime.GC()
	if p := <-got; p != maxPercent {
		t.Fatalf("GOGC after a collection = %d, want %d", p, maxPercent)
	}
	if p := gcPercent(); p != maxPercent {
		t.Fatalf("runtime GOGC = %d, want %d", p, maxPercent)
	}
	f.Stop()
	if p := gcPercent(); p != before {
		t.Fatalf("GOGC after Stop = %d, want %d", p, before)
	}
}
