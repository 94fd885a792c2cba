package httpx

import (
	"context"
	"sync/atomic"
	"time"
)

// deadlineCtx is the context of a request under [BeginDeadline]: it
// carries the request's state and deadline, and starts the deadline's
// timer (a context.WithDeadline of its parent) only when something needs
// it: a call of Done (every derived cancellable context, Postgres, the
// executor), of Err once the deadline has passed, or of Value after
// either. A request that nobody waits on (a hit of the screen cache: its
// Redis call has a timeout of its own, computed from Deadline) costs no
// timer, and no child in its parent's list of children.
type deadlineCtx struct {
	parent   context.Context
	st       *requestState
	deadline time.Time
	timed    atomic.Pointer[timedCtx]
}

// timedCtx is the timer's context and its cancel func.
type timedCtx struct {
	ctx    context.Context
	cancel context.CancelFunc
}

func newDeadlineCtx(parent context.Context, d time.Duration, st *requestState) *deadlineCtx {
	return &deadlineCtx{parent: parent, st: st, deadline: time.Now().Add(d)}
}

// timer returns the timer's context, starting it on the first call.
func (c *deadlineCtx) timer() context.Context {
	if t := c.timed.Load(); t != nil {
		return t.ctx
	}
	ctx, cancel := context.WithDeadline(c.parent, c.deadline)
	if !c.timed.CompareAndSwap(nil, &timedCtx{ctx: ctx, cancel: cancel}) {
		cancel() // another goroutine started it first
	}
	return c.timed.Load().ctx
}

// end stops the timer, if it started.
func (c *deadlineCtx) end() {
	if t := c.timed.Load(); t != nil {
		t.cancel()
	}
}

// Deadline implements context.Context: the sooner of the parent's and the
// request's.
func (c *deadlineCtx) Deadline() (time.Time, bool) {
	if d, ok := c.parent.Deadline(); ok && d.Before(c.deadline) {
		return d, true
	}
	return c.deadline, true
}

// Done implements context.Context.
func (c *deadlineCtx) Done() <-chan struct{} { return c.timer().Done() }

// Err implements context.Context.
func (c *deadlineCtx) Err() error {
	if t := c.timed.Load(); t != nil {
		return t.ctx.Err()
	}
	if err := c.parent.Err(); err != nil {
		return err
	}
	if !time.Now().Before(c.deadline) {
		return c.timer().Err()
	}
	return nil
}

// Value implements context.Context: the request's state, then the
// timer's context once it started (so that context.Cause and derived
// contexts see it), else the parent's values.
func (c *deadlineCtx) Value(key any) any {
	if key == (stateKey{}) {
		return c.st
	}
	if t := c.timed.Load(); t != nil {
		return t.ctx.Value(key)
	}
	return c.parent.Value(key)
}

// String names the context in panics and logs.
func (c *deadlineCtx) String() string { return "httpx.BeginDeadline" }
