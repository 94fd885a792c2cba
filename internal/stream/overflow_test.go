package stream

import (
	"context"
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
	s := &sub{customerID: e.alice.ID, ch: make(chan *item, 4), gone: make(chan struct{})}
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
	if live || until != h+10 || len(s.ch) != 0 {
		t.Fatalf("endReplay = %d, %v with %d buffered; want another pass to %d with an empty buffer", until, live, len(s.ch), h+10)
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
