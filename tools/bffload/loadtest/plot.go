package loadtest

import (
	"fmt"
	"image/color"
	"math"
	"strconv"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

// palette has one distinct colour per series (plotutil's repeats after seven).
var palette = []color.RGBA{
	{0x1f, 0x77, 0xb4, 0xff}, {0xff, 0x7f, 0x0e, 0xff}, {0x2c, 0xa0, 0x2c, 0xff}, {0xd6, 0x27, 0x28, 0xff},
	{0x94, 0x67, 0xbd, 0xff}, {0x8c, 0x56, 0x4b, 0xff}, {0xe3, 0x77, 0xc2, 0xff}, {0x7f, 0x7f, 0x7f, 0xff},
	{0xbc, 0xbd, 0x22, 0xff}, {0x17, 0xbe, 0xcf, 0xff},
}

func colour(i int) color.Color { return palette[i%len(palette)] }

// Series is one named latency distribution for PlotLatency.
type Series struct {
	Name      string
	Latencies []time.Duration // sorted
	Dashed    bool
}

// PlotLatency draws the latency distributions as quantile curves: the x
// axis is the percentile on a scale that spreads the tail (p50, p90,
// p99, p99.9 equally spaced), the y axis latency in ms on a log scale.
func PlotLatency(file, title string, series []Series) error {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "percentile"
	p.Y.Label.Text = "latency (ms, log scale)"
	p.Y.Scale = plot.LogScale{}
	p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
	p.X.Min, p.X.Max = 0, 3
	p.X.Tick.Marker = plot.ConstantTicks([]plot.Tick{{Value: 0, Label: "p0"}, {Value: math.Log10(2), Label: "p50"},
		{Value: 1, Label: "p90"}, {Value: 2, Label: "p99"}, {Value: 3, Label: "p99.9"}})
	p.Legend.Top = true
	p.Legend.Left = true
	p.Legend.YOffs = -vg.Points(16)
	p.Legend.XOffs = vg.Points(6)
	p.Add(plotter.NewGrid())
	top := 0.0
	for _, s := range series {
		if n := len(s.Latencies); n > 0 {
			top = math.Max(top, float64(s.Latencies[n-1])/1e6)
		}
	}
	// Room above the curves for the legend: one decade per three series.
	p.Y.Max = math.Max(top, 0.1) * math.Pow(10, math.Ceil(float64(len(series))/3))
	for i, s := range series {
		if len(s.Latencies) == 0 {
			continue
		}
		var pts plotter.XYs
		for x := 0.0; x <= 3.0001; x += 0.02 {
			q := 100 * (1 - math.Pow(10, -x))
			pts = append(pts, plotter.XY{X: x, Y: math.Max(float64(Percentile(s.Latencies, q))/1e6, 0.01)})
		}
		l, err := plotter.NewLine(pts)
		if err != nil {
			return err
		}
		l.Color = colour(i)
		l.Width = vg.Points(1.5)
		if s.Dashed {
			l.Dashes = []vg.Length{vg.Points(5), vg.Points(3)}
		}
		p.Add(l)
		p.Legend.Add(s.Name, l)
	}
	return p.Save(8*vg.Inch, 5*vg.Inch, file)
}

// PlotSweep draws hot homeScreen requests per second (rps true) or p99
// latency against concurrency, for the BFF and the ceiling.
func PlotSweep(file string, sweep []SweepPoint, rps bool) error {
	p := plot.New()
	p.X.Label.Text = "concurrent clients (log scale)"
	p.X.Scale = plot.LogScale{}
	var ticks []plot.Tick
	for _, s := range sweep {
		ticks = append(ticks, plot.Tick{Value: float64(s.Concurrency), Label: strconv.Itoa(s.Concurrency)})
	}
	p.X.Tick.Marker = plot.ConstantTicks(ticks)
	widenSingle(p, ticks)
	if rps {
		p.Title.Text = "homeScreen (hot cache): throughput against concurrency"
		p.Y.Label.Text = "requests per second"
		p.Y.Min = 0
	} else {
		p.Title.Text = "homeScreen (hot cache): p99 latency against concurrency"
		p.Y.Label.Text = "p99 latency (ms, log scale)"
		p.Y.Scale = plot.LogScale{}
		p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
	}
	p.Legend.Top = true
	p.Legend.Left = true
	p.Legend.YOffs = -vg.Points(16)
	p.Legend.XOffs = vg.Points(6)
	p.Add(plotter.NewGrid())
	top := 0.0
	for _, s := range sweep {
		if rps {
			top = math.Max(top, math.Max(s.BFF.RPS, s.Ceiling.RPS))
		} else {
			top = math.Max(top, float64(max(s.BFF.P99, s.Ceiling.P99))/1e6)
		}
	}
	if rps {
		p.Y.Max = top * 1.3
	} else {
		p.Y.Max = math.Max(top, 0.1) * 10
	}
	val := func(s Summary) float64 {
		if rps {
			return s.RPS
		}
		return math.Max(float64(s.P99)/1e6, 0.01)
	}
	for i, name := range []string{"BFF homeScreen", "ceiling (net/http + one Redis GET)"} {
		var pts plotter.XYs
		for _, s := range sweep {
			sum := s.BFF
			if i == 1 {
				sum = s.Ceiling
			}
			if sum.Requests > 0 {
				pts = append(pts, plotter.XY{X: float64(s.Concurrency), Y: val(sum)})
			}
		}
		if len(pts) == 0 {
			continue
		}
		l, sc, err := plotter.NewLinePoints(pts)
		if err != nil {
			return fmt.Errorf("plot %s: %w", file, err)
		}
		l.Color, sc.Color = colour(i), colour(i)
		l.Width = vg.Points(1.5)
		if i == 1 {
			l.Dashes = []vg.Length{vg.Points(5), vg.Points(3)}
		}
		p.Add(l, sc)
		p.Legend.Add(name, l, sc)
	}
	return p.Save(8*vg.Inch, 4.5*vg.Inch, file)
}

// widenSingle gives a log-scale concurrency axis with a single tick (a
// sweep of one concurrency) a range around it: an empty range cannot be
// drawn.
func widenSingle(p *plot.Plot, ticks []plot.Tick) {
	if len(ticks) == 1 {
		p.X.Min, p.X.Max = ticks[0].Value/2, ticks[0].Value*2
	}
}

// Line is one series of PlotLines: a summary per concurrency.
type Line struct {
	Name   string
	Points []SweepPoint // BFF only
}

// PlotLines writes an SVG of throughput (rps) or p99 latency against
// concurrency, one line per series (the write sweeps).
func PlotLines(file, title string, rps bool, lines []Line) error {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "concurrent clients (log scale)"
	p.X.Scale = plot.LogScale{}
	var ticks []plot.Tick
	seen := map[int]bool{}
	top := 0.0
	for _, l := range lines {
		for _, s := range l.Points {
			if !seen[s.Concurrency] {
				seen[s.Concurrency] = true
				ticks = append(ticks, plot.Tick{Value: float64(s.Concurrency), Label: strconv.Itoa(s.Concurrency)})
			}
			if rps {
				top = math.Max(top, s.BFF.RPS)
			} else {
				top = math.Max(top, float64(s.BFF.P99)/1e6)
			}
		}
	}
	p.X.Tick.Marker = plot.ConstantTicks(ticks)
	widenSingle(p, ticks)
	if rps {
		p.Y.Label.Text = "requests per second"
		p.Y.Min, p.Y.Max = 0, top*1.3
	} else {
		p.Y.Label.Text = "p99 latency (ms, log scale)"
		p.Y.Scale = plot.LogScale{}
		p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
		p.Y.Max = math.Max(top, 0.1) * 10
	}
	p.Legend.Top, p.Legend.Left = true, true
	p.Add(plotter.NewGrid())
	for i, l := range lines {
		var pts plotter.XYs
		for _, s := range l.Points {
			if s.BFF.Requests == 0 {
				continue
			}
			y := s.BFF.RPS
			if !rps {
				y = math.Max(float64(s.BFF.P99)/1e6, 0.01)
			}
			pts = append(pts, plotter.XY{X: float64(s.Concurrency), Y: y})
		}
		if len(pts) == 0 {
			continue
		}
		ln, sc, err := plotter.NewLinePoints(pts)
		if err != nil {
			return fmt.Errorf("plot %s: %w", file, err)
		}
		ln.Color, sc.Color = colour(i), colour(i)
		ln.Width = vg.Points(1.5)
		p.Add(ln, sc)
		p.Legend.Add(l.Name, ln, sc)
	}
	return p.Save(8*vg.Inch, 4.5*vg.Inch, file)
}
