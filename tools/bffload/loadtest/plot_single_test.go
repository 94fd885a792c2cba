package loadtest

import (
	"testing"
	"time"
)

// A sweep of a single concurrency (`-sweep 1`) is drawn: its log-scale
// axis gets a range around the one point instead of an empty one.
func TestPlotSingleConcurrency(t *testing.T) {
	pt := SweepPoint{Concurrency: 1}
	pt.BFF.RPS, pt.Ceiling.RPS = 100, 200
	pt.BFF.P99, pt.Ceiling.P99 = 2*time.Millisecond, time.Millisecond
	pt.BFF.Requests, pt.Ceiling.Requests = 10, 10
	pts := []SweepPoint{pt}
	for _, rps := range []bool{true, false} {
		if err := PlotSweep(t.TempDir()+"/sweep.svg", pts, rps); err != nil {
			t.Fatal(err)
		}
		if err := PlotLines(t.TempDir()+"/lines.svg", "writes", rps, []Line{{Name: "w", Points: pts}}); err != nil {
			t.Fatal(err)
		}
	}
}
