package loadtest

import (
	"fmt"
	"strings"
	"testing"
)

// Only a missed goal's cause is listed, and nothing when every goal is met.
func TestWhyMissedListsOnlyMissedGoals(t *testing.T) {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	writeWhyMissed(p, []Goal{{Goal: "met", Met: true, Why: "never shown"}, {Goal: "missed", Why: "the cause"}, {Goal: "unexplained"}})
	got := b.String()
	if !strings.Contains(got, "- **missed**: the cause") || strings.Contains(got, "never shown") || strings.Contains(got, "unexplained") {
		t.Fatalf("why section:\n%s", got)
	}
	b.Reset()
	writeWhyMissed(p, []Goal{{Goal: "met", Met: true, Why: "never shown"}})
	if b.Len() != 0 {
		t.Fatalf("a run that met every goal lists causes:\n%s", b.String())
	}
}
