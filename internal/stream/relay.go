package stream

import (
	"context"
	"math"
	"time"

	"github.com/shop/bff/internal/order"
)

// relayBatch bounds one sweep of the relay.
const relayBatch = 200

// relayLoop sweeps the outbox every RelayInterval until ctx ends.
func (b *Broker) relayLoop(ctx context.Context) {
	tick := time.NewTicker(b.cfg.RelayInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		for ctx.Err() == nil {
			n, err := b.relayOnce(ctx)
			if err != nil {
				b.log.Warn("stream: relay sweep failed", "error", err)
			}
			if err != nil || n < relayBatch {
				break
			}
		}
	}
}

// Settle runs Config.BeforePublish (the screens' invalidation) for every
// committed event nobody has marked published yet, at once rather than at
// the relay's next sweep. Call it before answering with the stored
// response of a keyed mutation: its effect may have committed on an
// instance that crashed (or lost Postgres) before it invalidated, and the
// client that gets the answer must not read the screens from before it.
func (b *Broker) Settle(ctx context.Context) error {
	evs, err := b.unpublishedUpTo(ctx, math.MaxInt64)
	if err != nil {
		return err
	}
	b.beforePublish(ctx, evs)
	return nil
}

// relayOnce publishes the events that are still unpublished a moment
// after they were written (their committing instance crashed, or could
// not reach Postgres after commit): BeforePublish, local streams, Redis,
// then marked published, all while the rows are locked. Rows locked by
// another instance's sweep (or by a Publish marking them) are skipped. It
// returns how many events it published.
func (b *Broker) relayOnce(ctx context.Context) (int, error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	evs, err := b.store.RelayUnpublished(ctx, b.cfg.relayGrace(), relayBatch, func(ctx context.Context, evs []order.Event) {
		b.log.Info("stream: relaying unpublished events", "count", len(evs), "first", evs[0].Position)
		b.beforePublish(ctx, evs)
		if err := b.publishRedis(ctx, evs); err != nil {
			// Marked anyway: the screens are invalidated, and every instance
			// reads these events from Postgres when Redis does not bring them.
			b.log.Warn("stream: relay could not publish on redis", "error", err)
		}
	})
	if err != nil || len(evs) == 0 {
		return 0, err
	}
	select {
	case b.in <- evs: // the sequencer's from now on
	default:
		b.wakeSequencer()
	}
	return len(evs), nil
}

// pruneLoop deletes the events older than the replay window every
// PruneInterval until ctx ends.
func (b *Broker) pruneLoop(ctx context.Context) {
	tick := time.NewTicker(b.cfg.PruneInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if _, err := b.prune(ctx); err != nil && ctx.Err() == nil {
			b.log.Warn("stream: pruning old events failed", "error", err)
		}
		if _, err := b.store.VacuumEvents(ctx); err != nil && ctx.Err() == nil {
			b.log.Warn("stream: vacuuming the events table failed", "error", err)
		}
	}
}

// prune deletes the events older than the replay window, PruneBatch at a
// time, and returns how many it deleted.
func (b *Broker) prune(ctx context.Context) (int64, error) {
	var total int64
	for ctx.Err() == nil {
		n, err := b.store.PruneEvents(ctx, b.cfg.ReplayWindow, b.cfg.PruneBatch)
		total += n
		if err != nil || n < int64(b.cfg.PruneBatch) {
			return total, err
		}
	}
	return total, ctx.Err()
}
