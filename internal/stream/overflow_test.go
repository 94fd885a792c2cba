package stream

import (
	"context"
	"fmt"
	"testing"

	"github.com/shop/bff/internal/order"
)

// The broker's overflow rules, driven directly (no sequencer running): a
// stream that overflows while it replays is not dropped but replays again
// up to the new head; a live stream that overflows is dropped at once.
func TestOverflowRules(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	b, err := New(e.store, e.rdb, Config{Buffer: 4, Channel: e.channel, Logger: testLogger})
	if err != nil {
		t.Fatal(err)
	}
	s := newSub(e.alice.ID, "", 4)
	h, err := b.register(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	defer b.unregister(s)
	items := func(from int64, n int) []*item {
		out := make([]*item, n)
		for i := range out {
			out[i] = newItem(order.Event{Position: from + int64(i), ID: "x", CustomerID: e.alice.ID, OrderID: "o"})
		}
		return out
	}

	b.dispatch(items(h+1, 10)) // while replaying: 4 buffered, 6 lost
	select {
	case <-s.gone:
		t.Fatal("a replaying stream was dropped")
	default:
	}
	until, live := b.endReplay(s)
	if live || until != h+10 || s.queued() != 0 {
		t.Fatalf("endReplay = %d, %v with %d buffered; want another pass to %d with an empty buffer", until, live, s.queued(), h+10)
	}
	if _, live := b.endReplay(s); !live {
		t.Fatal("a stream that did not overflow during its pass is not live")
	}

	b.dispatch(items(h+11, 4)) // fits
	b.dispatch(items(h+15, 1)) // overflows a live stream
	select {
	case <-s.gone:
	default:
		t.Fatal("an overflowing live stream was not dropped")
	}
	if s.why != dropOverflow {
		t.Fatalf("drop reason %d, want overflow", s.why)
	}
	b.mu.Lock()
	left := len(b.byCustomer)
	b.mu.Unlock()
	if left != 0 {
		t.Fatalf("%d customer indexes left after the only stream was dropped", left)
	}
}

// A stream opened without a resume point delivers only what is committed
// after it opened, although its broker's head trails the commits (here it
// has not seen the order's first event at all): the earlier event reaches
// the broker after the stream opened and is skipped, the later one is
// delivered, on both doors' paths (live and replay after an overflow).
func TestLiveOnlyStreamSkipsEventsCommittedBeforeItOpened(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	b, err := New(e.store, e.rdb, Config{Buffer: 4, Channel: e.channel, Logger: testLogger})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := b.ensureHead(ctx); err != nil {
		t.Fatal(err)
	}
	o, before := e.placeOrder(e.alice) // committed, not handed to the broker yet

	ch, err := b.Subscribe(ctx, e.alice, "", "")
	if err != nil {
		t.Fatal(err)
	}
	after := e.change(e.alice, o.ID) // committed after the stream opened
	var items []*item
	for _, ev := range append(append([]order.Event{}, before...), after...) {
		items = append(items, newItem(ev))
	}
	b.dispatch(items)
	got := <-ch
	if got.Position != after[0].Position {
		t.Fatalf("first event at %d (%s), want %d: the events at %v were committed before the stream opened",
			got.Position, got.Type, after[0].Position, positions(before))
	}

	// The same rule on the cursor itself, for a replay pass.
	c := &cursor{last: 5, before: []int64{7, 9}}
	var fresh []int64
	for _, p := range []int64{5, 6, 7, 8, 9, 10} {
		if c.fresh(p) {
			fresh = append(fresh, p)
			c.last = p
		}
	}
	if fmt.Sprint(fresh) != "[6 8 10]" {
		t.Fatalf("fresh positions %v, want [6 8 10]", fresh)
	}
}
