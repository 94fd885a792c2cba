package loadtest

import (
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Percentile returns the p-th percentile (0 < p <= 100) of sorted by the
// nearest-rank method: the smallest sample such that at least p percent of
// the samples are less than or equal to it. It returns 0 for no samples;
// p <= 0 gives the minimum.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	if p <= 0 {
		return sorted[0]
	}
	rank := int(math.Ceil(p / 100 * float64(n)))
	if rank < 1 {
		rank = 1
	}
	if rank > n {
		rank = n
	}
	return sorted[rank-1]
}

// Summary is the latency and throughput of one series of requests.
type Summary struct {
	// Requests counts every request, failed ones included.
	Requests int
	// Errors counts the failed requests.
	Errors int
	// Elapsed is the wall time of the series.
	Elapsed time.Duration
	// RPS is Requests per second of Elapsed.
	RPS float64
	// P50, P90, P99 are nearest-rank percentiles, Max the slowest request.
	P50, P90, P99, Max time.Duration
	// Mean is the average latency.
	Mean time.Duration
}

// Summarize sorts lat in place and summarizes it.
func Summarize(lat []time.Duration, errors int, elapsed time.Duration) Summary {
	slices.Sort(lat)
	s := Summary{Requests: len(lat), Errors: errors, Elapsed: elapsed}
	if elapsed > 0 {
		s.RPS = float64(len(lat)) / elapsed.Seconds()
	}
	if len(lat) == 0 {
		return s
	}
	var sum time.Duration
	for _, d := range lat {
		sum += d
	}
	s.Mean = sum / time.Duration(len(lat))
	s.P50 = Percentile(lat, 50)
	s.P90 = Percentile(lat, 90)
	s.P99 = Percentile(lat, 99)
	s.Max = lat[len(lat)-1]
	return s
}

// Ms formats d in milliseconds with a precision that suits its size.
func Ms(d time.Duration) string {
	ms := float64(d) / float64(time.Millisecond)
	switch {
	case ms == 0:
		return "0"
	case ms < 1:
		return trimFloat(ms, 3)
	case ms < 100:
		return trimFloat(ms, 2)
	default:
		return trimFloat(ms, 0)
	}
}

func trimFloat(f float64, prec int) string {
	s := strconv.FormatFloat(f, 'f', prec, 64)
	if strings.Contains(s, ".") {
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	}
	return s
}
