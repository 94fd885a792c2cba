package drill

import (
	"testing"
	"time"
)

// The verdict counts only B's reads sent after A's answer, measures their
// staleness from the answer to the read's end, flags a stale read sent
// later than the bound, and counts the writer's own stale reads.
func TestPartitionVerdict(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	read := func(inst string, start, end float64, version int) PartitionRead {
		return PartitionRead{Screen: "orderScreen", Instance: inst, Start: at(start), End: at(end), Version: version}
	}
	r := PartitionRound{TTL: 5 * time.Second, Before: 1, After: 2, Sent: at(0), Answered: at(3), Reads: []PartitionRead{
		read("B", 0.5, 0.6, 1), // before the answer: not covered
		read("B", 2.9, 3.2, 1), // sent before the answer: not covered
		read("B", 3.5, 3.6, 1), // stale, 0.6 s after the answer
		read("B", 8.0, 8.7, 1), // stale, 5.7 s after, sent within the bound (5.5 s)
		read("B", 8.6, 8.7, 1), // stale, sent 5.6 s after: over the bound
		read("B", 9.0, 9.1, 2), // new from here on
		read("A", 3.1, 3.2, 1), // the writer served the old version
		read("B", 9.2, 9.3, 2), //
		{Screen: "orderScreen", Instance: "B", Start: at(4), End: at(4.1), Code: "UNAVAILABLE"},
	}}
	v := r.Verdict()
	if v.Reads != 5 || v.Stale != 3 || v.OverBound != 1 || v.Writer != 1 {
		t.Fatalf("reads %d stale %d over %d writer %d, want 5 3 1 1 (%v)", v.Reads, v.Stale, v.OverBound, v.Writer, v.Details)
	}
	if want := 5700 * time.Millisecond; v.MaxStaleness != want {
		t.Fatalf("max staleness %v, want %v", v.MaxStaleness, want)
	}
	if want := 9100 * time.Millisecond; v.NewAfter != want {
		t.Fatalf("new version after %v, want %v", v.NewAfter, want)
	}
	res := PartitionResult{Rounds: []PartitionRound{r}}
	if !res.Failed() {
		t.Fatal("a read over the bound did not fail the run")
	}
	r.Reads = r.Reads[:4]
	r.Reads = append(r.Reads, read("B", 9.0, 9.1, 2))
	if v := r.Verdict(); v.OverBound != 0 || (PartitionResult{Rounds: []PartitionRound{r}}).Failed() {
		t.Fatalf("reads within the bound failed the run: %+v", v)
	}
	r.Code, r.After = "UNAVAILABLE", 0
	if v := r.Verdict(); v.Reads != 0 || v.NewAfter != -1 {
		t.Fatalf("a failed mutation covers no read: %+v", v)
	}
}
