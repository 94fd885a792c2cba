package loadtest

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	var lat []time.Duration
	for i := 1; i <= 100; i++ {
		lat = append(lat, time.Duration(i)*time.Millisecond)
	}
	cases := []struct {
		p    float64
		want time.Duration
	}{
		{0, 1 * time.Millisecond}, {1, 1 * time.Millisecond}, {50, 50 * time.Millisecond},
		{90, 90 * time.Millisecond}, {99, 99 * time.Millisecond}, {99.9, 100 * time.Millisecond}, {100, 100 * time.Millisecond},
	}
	for _, c := range cases {
		if got := Percentile(lat, c.p); got != c.want {
			t.Errorf("Percentile(1..100ms, %v) = %v, want %v", c.p, got, c.want)
		}
	}
	if got := Percentile(nil, 99); got != 0 {
		t.Errorf("Percentile(nil) = %v, want 0", got)
	}
	one := []time.Duration{7 * time.Millisecond}
	if got := Percentile(one, 99); got != 7*time.Millisecond {
		t.Errorf("Percentile of one sample = %v", got)
	}
}

func TestSummarize(t *testing.T) {
	lat := []time.Duration{5 * time.Millisecond, 1 * time.Millisecond, 3 * time.Millisecond, 2 * time.Millisecond, 4 * time.Millisecond}
	s := Summarize(lat, 1, time.Second)
	if s.Requests != 5 || s.Errors != 1 || s.RPS != 5 {
		t.Fatalf("counts: %+v", s)
	}
	if s.P50 != 3*time.Millisecond || s.P90 != 5*time.Millisecond || s.Max != 5*time.Millisecond || s.Mean != 3*time.Millisecond {
		t.Fatalf("latencies: %+v", s)
	}
	if lat[0] != time.Millisecond {
		t.Fatal("Summarize must sort its input")
	}
	if z := Summarize(nil, 0, 0); z.RPS != 0 || z.P99 != 0 {
		t.Fatalf("empty: %+v", z)
	}
}

func TestMs(t *testing.T) {
	for d, want := range map[time.Duration]string{0: "0", 250 * time.Microsecond: "0.25", 1500 * time.Microsecond: "1.5", 123 * time.Millisecond: "123"} {
		if got := Ms(d); got != want {
			t.Errorf("Ms(%v) = %q, want %q", d, got, want)
		}
	}
}

func TestMarkdownTable(t *testing.T) {
	rs := []*Result{{Name: "a-home-hot", Title: "homeScreen, hot", Concurrency: 8,
		Summary: Summary{Requests: 10, RPS: 100, P50: time.Millisecond, P99: 2 * time.Millisecond}, CeilingRatio: 1.25}}
	var b strings.Builder
	WriteResultTable(&b, rs)
	out := b.String()
	for _, want := range []string{"| a-home-hot |", "| 100 |", "1.25×"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	if strings.Count(out, "\n") != 3 {
		t.Errorf("want header, rule and one row:\n%s", out)
	}
}

func TestPlots(t *testing.T) {
	dir := t.TempDir()
	if d := os.Getenv("BFFLOAD_PLOT_DIR"); d != "" {
		dir = d
	}
	var series []Series
	for i, name := range []string{"ceiling", "a-home-hot", "b-order-hot", "c-home-nocache", "d-mixed-reads", "d-mixed-writes", "e-sse", "f-place"} {
		var lat []time.Duration
		for k := 1; k <= 1000; k++ {
			lat = append(lat, time.Duration(k*(i+1))*10*time.Microsecond)
		}
		series = append(series, Series{Name: name, Latencies: lat, Dashed: i == 0})
	}
	if err := PlotLatency(filepath.Join(dir, "latency.svg"), "test", series); err != nil {
		t.Fatal(err)
	}
	sweep := []SweepPoint{{Concurrency: 1, BFF: Summary{Requests: 1, RPS: 800, P99: 6 * time.Millisecond}, Ceiling: Summary{Requests: 1, RPS: 6000, P99: time.Millisecond}},
		{Concurrency: 16, BFF: Summary{Requests: 1, RPS: 1100, P99: 45 * time.Millisecond}, Ceiling: Summary{Requests: 1, RPS: 8600, P99: 8 * time.Millisecond}}}
	for _, rps := range []bool{true, false} {
		if err := PlotSweep(filepath.Join(dir, fmt.Sprintf("sweep-%v.svg", rps)), sweep, rps); err != nil {
			t.Fatal(err)
		}
	}
}

func TestCheckLoopback(t *testing.T) {
	for _, ok := range []string{"http://127.0.0.1:18080", "http://localhost:8080/", "http://[::1]:9000"} {
		if err := CheckLoopback(ok); err != nil {
			t.Errorf("CheckLoopback(%q) = %v, want nil", ok, err)
		}
	}
	for _, bad := range []string{"http://10.0.0.1:8080", "http://example.com", "https://127.0.0.1:8443", "http://127.0.0.2", "http://localhost.example.com", "127.0.0.1:8080"} {
		if err := CheckLoopback(bad); err == nil {
			t.Errorf("CheckLoopback(%q) = nil, want a refusal", bad)
		}
	}
}
