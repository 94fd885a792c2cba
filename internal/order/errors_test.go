package order

import (
	"context"
	"errors"
	"fmt"
	"testing"
)

func TestAsErrorTimeoutNamesOnlyWhatItKnows(t *testing.T) {
	deadline := fmt.Errorf("reading the cache: %w", context.DeadlineExceeded)

	e := AsError(deadline)
	if e.Code != CodeUnavailable || !e.Code.Retryable() {
		t.Fatalf("a deadline is %s, want retryable UNAVAILABLE", e.Code)
	}
	if _, ok := e.Extensions["dependency"]; ok {
		t.Errorf("a timeout of unknown origin claims dependency %v", e.Extensions["dependency"])
	}
	if e.Message != "the request timed out, retry later" {
		t.Errorf("message %q", e.Message)
	}
	if !errors.Is(e, context.DeadlineExceeded) {
		t.Error("the cause is lost")
	}

	for _, dep := range []string{"postgres", "redis", "payments"} {
		e := AsErrorFrom(dep, deadline)
		if e.Code != CodeUnavailable || e.Extensions["dependency"] != dep {
			t.Errorf("%s timeout: code %s, dependency %v", dep, e.Code, e.Extensions["dependency"])
		}
		if want := dep + " did not answer in time, retry later"; e.Message != want {
			t.Errorf("%s timeout: message %q, want %q", dep, e.Message, want)
		}
	}

	// An *Error in the chain is kept as it is, whoever the caller names.
	conflict := &Error{Code: CodeConflict, Message: "changed"}
	if got := AsErrorFrom("redis", fmt.Errorf("wrapped: %w", conflict)); got != conflict {
		t.Errorf("got %v, want the chain's own error", got)
	}
	// Anything else is INTERNAL with a generic message.
	if got := AsErrorFrom("postgres", errors.New("boom")); got.Code != CodeInternal || got.Message != "internal error" {
		t.Errorf("got %s %q", got.Code, got.Message)
	}
}
