package loadtest

import (
	"context"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// RetentionResult is the size of the events table during the run: the
// BFF prunes events older than its replay window, so under a long write
// run the table stays bounded by what one window writes.
type RetentionResult struct {
	// Written is the number of events written during the run (positions
	// issued), Samples how many readings were taken.
	Written int64
	Samples int
	// MaxRows and LastRows are the highest and the last row counts;
	// OldestAge is the age of the oldest kept event at the last reading.
	MaxRows, LastRows int64
	OldestAge         time.Duration
}

// SampleRetention reads the events table every interval until the
// returned function is called, which returns the readings.
func SampleRetention(ctx context.Context, databaseURL string, interval time.Duration) func() *RetentionResult {
	conn, err := pgx.Connect(ctx, databaseURL)
	if err != nil {
		return func() *RetentionResult { return nil }
	}
	read := func() (rows, issued int64, age time.Duration, ok bool) {
		var secs *float64
		err := conn.QueryRow(ctx, `SELECT count(*), coalesce(pg_sequence_last_value('order_events_position_seq'), 0),
			extract(epoch FROM now() - min(at))::float8 FROM order_events`).Scan(&rows, &issued, &secs)
		if secs != nil {
			age = time.Duration(*secs * float64(time.Second))
		}
		return rows, issued, age, err == nil
	}
	out := &RetentionResult{}
	_, first, _, ok := read()
	if !ok {
		conn.Close(ctx)
		return func() *RetentionResult { return nil }
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-ctx.Done():
				return
			case <-t.C:
			}
			if rows, _, _, ok := read(); ok {
				out.Samples++
				out.MaxRows = max(out.MaxRows, rows)
			}
		}
	}()
	return func() *RetentionResult {
		close(stop)
		wg.Wait()
		defer conn.Close(context.WithoutCancel(ctx))
		rows, issued, age, ok := read()
		if !ok {
			return nil
		}
		out.Samples++
		out.MaxRows = max(out.MaxRows, rows)
		out.LastRows, out.OldestAge, out.Written = rows, age, issued-first
		return out
	}
}
