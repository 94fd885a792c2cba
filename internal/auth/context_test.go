package auth_test

import (
	"context"
	"testing"
	"time"

	"github.com/shop/bff/internal/auth"
	"github.com/shop/bff/internal/order"
)

type otherKey struct{}

// A session's context keeps everything of its parent: values, deadline and
// cancellation, and the session an inner WithSession replaces.
func TestSessionContext(t *testing.T) {
	parent, cancel := context.WithTimeout(context.WithValue(context.Background(), otherKey{}, "v"), time.Hour)
	alice, bob := &order.User{ID: "a"}, &order.User{ID: "b"}
	exp := time.Now().Add(time.Minute).Truncate(time.Second)
	ctx := auth.WithSession(parent, alice, exp)
	if u, ok := auth.UserFrom(ctx); !ok || u != alice {
		t.Fatalf("user %v %v", u, ok)
	}
	if e, ok := auth.SessionExpiry(ctx); !ok || !e.Equal(exp) {
		t.Fatalf("expiry %v %v", e, ok)
	}
	if v := ctx.Value(otherKey{}); v != "v" {
		t.Fatalf("parent's value %v", v)
	}
	if d, ok := ctx.Deadline(); !ok || d != func() time.Time { d, _ := parent.Deadline(); return d }() {
		t.Fatalf("deadline %v %v", d, ok)
	}
	inner := auth.WithUser(ctx, bob)
	if u, _ := auth.UserFrom(inner); u != bob {
		t.Fatalf("inner user %v", u)
	}
	if e, _ := auth.SessionExpiry(inner); !e.Equal(exp) {
		t.Fatalf("inner expiry %v", e)
	}
	if u, _ := auth.UserFrom(ctx); u != alice {
		t.Fatalf("outer user changed to %v", u)
	}
	child, stop := context.WithCancel(inner)
	defer stop()
	cancel()
	<-child.Done() // a cancellation reaches through the session's context
	if child.Err() != context.Canceled || ctx.Err() != context.Canceled {
		t.Fatalf("errors %v %v", child.Err(), ctx.Err())
	}
	if _, ok := auth.UserFrom(context.Background()); ok {
		t.Fatal("a user without a session")
	}
}
