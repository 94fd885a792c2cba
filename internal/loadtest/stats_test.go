package loadtest

import (
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
