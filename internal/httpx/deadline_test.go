package httpx

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A request context that nobody waits on starts no timer, yet reports its
// deadline, its state and, once the deadline passed, DeadlineExceeded (and
// its cause) from Err alone.
func TestDeadlineCtxWithoutWaiting(t *testing.T) {
	st := &requestState{}
	ctx := newDeadlineCtx(context.Background(), 20*time.Millisecond, st)
	defer ctx.end()
	d, ok := ctx.Deadline()
	require.True(t, ok)
	assert.WithinDuration(t, time.Now().Add(20*time.Millisecond), d, 20*time.Millisecond)
	assert.Same(t, st, stateOf(ctx))
	assert.NoError(t, ctx.Err())
	assert.Nil(t, ctx.timed.Load(), "no timer while nobody waits")

	cctx, cancel := context.WithCancel(ctx) // waits on Done: the timer starts
	defer cancel()
	assert.NotNil(t, ctx.timed.Load())
	<-cctx.Done()
	assert.ErrorIs(t, cctx.Err(), context.DeadlineExceeded, "a derived context ends at the deadline")
	assert.ErrorIs(t, ctx.Err(), context.DeadlineExceeded)
	assert.ErrorIs(t, context.Cause(ctx), context.DeadlineExceeded)
}

// Err notices a passed deadline although nothing started the timer.
func TestDeadlineCtxErrAfterTheDeadline(t *testing.T) {
	ctx := newDeadlineCtx(context.Background(), time.Nanosecond, &requestState{})
	defer ctx.end()
	for time.Now().Before(ctx.deadline) { // the clock passes the deadline
	}
	assert.ErrorIs(t, ctx.Err(), context.DeadlineExceeded)
	assert.ErrorIs(t, context.Cause(ctx), context.DeadlineExceeded, "the cause is the timer's once Err saw it")
	select {
	case <-ctx.Done():
	default:
		t.Fatal("Done is closed after the deadline")
	}
}

// The parent's cancellation reaches the context, with and without a timer,
// and the sooner deadline of the parent is the context's.
func TestDeadlineCtxFollowsItsParent(t *testing.T) {
	cause := errors.New("client went away")
	parent, cancel := context.WithCancelCause(context.Background())
	ctx := newDeadlineCtx(parent, time.Hour, &requestState{})
	defer ctx.end()
	cancel(cause)
	assert.ErrorIs(t, ctx.Err(), context.Canceled, "without a timer")
	<-ctx.Done()
	assert.ErrorIs(t, ctx.Err(), context.Canceled)
	assert.ErrorIs(t, context.Cause(ctx), cause)

	soon, cancelSoon := context.WithTimeout(context.Background(), time.Minute)
	defer cancelSoon()
	ctx2 := newDeadlineCtx(soon, time.Hour, &requestState{})
	defer ctx2.end()
	want, _ := soon.Deadline()
	got, ok := ctx2.Deadline()
	assert.True(t, ok)
	assert.Equal(t, want, got)
	assert.Equal(t, "v", context.WithValue(ctx2, stateKey{}, "v").Value(stateKey{}))
}
