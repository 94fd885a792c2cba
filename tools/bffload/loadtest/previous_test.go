package loadtest

import (
	"os"
	"testing"
)

// The "before" rows come from the profile table of the committed page.
func TestPreviousProfilesOfThePage(t *testing.T) {
	page, err := os.ReadFile("../../../docs/benchmarks.md")
	if err != nil {
		t.Fatal(err)
	}
	rows, from := PreviousProfiles(page)
	if len(rows) < 2 || from == "" {
		t.Fatalf("rows %q from %q", rows, from)
	}
	for _, r := range rows {
		if r[0] != '|' || r[1] == '-' {
			t.Fatalf("not a table row: %q", r)
		}
	}
}
