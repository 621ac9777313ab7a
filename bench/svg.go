package bench

import (
	"fmt"
	"html"
	"io"
	"math"
	"slices"
	"strings"
)

// The plot is hand-written SVG: two panels, latency by percentile at
// keep-alive c=1, and throughput by concurrency. No plotting dependency.

const (
	svgW, svgH   = 960, 432
	panelW       = 400
	panelH       = 300
	panelTop     = 72
	panelLeft1   = 70
	panelLeft2   = 550
	legendHeight = 18
)

var seriesColor = map[string]string{
	"floor":      "#7f7f7f",
	"exless/uid": "#1f77b4",
	"exless/exe": "#2ca02c",
	"vault":      "#d62728",
}

var seriesOrder = []string{"floor", "exless/uid", "exless/exe", "vault"}

// qx maps a percentile to the plot's x scale: log10(1/(1-q)), so 90, 99,
// 99.9 and 99.99 are evenly spaced; the maximum sits at 5.
func qx(q float64) float64 {
	if q >= 100 {
		return 5
	}
	return math.Min(5, math.Log10(1/(1-q/100)))
}

type svgBuf struct{ strings.Builder }

func (b *svgBuf) f(format string, a ...any) { fmt.Fprintf(&b.Builder, format, a...) }

func (b *svgBuf) text(x, y float64, anchor, size, s string) {
	b.f(`<text x="%.1f" y="%.1f" text-anchor="%s" font-size="%s">%s</text>`+"\n", x, y, anchor, size, html.EscapeString(s))
}

// niceLogTicks returns 1-2-5 ticks covering [lo, hi].
func niceLogTicks(lo, hi float64) []float64 {
	var ticks []float64
	for e := math.Floor(math.Log10(lo)); e <= math.Ceil(math.Log10(hi)); e++ {
		for _, m := range []float64{1, 2, 5} {
			v := m * math.Pow(10, e)
			if v >= lo/1.0001 && v <= hi*1.0001 {
				ticks = append(ticks, v)
			}
		}
	}
	return ticks
}

func fmtTickUS(v float64) string {
	if v >= 1000 {
		return fmt.Sprintf("%gms", v/1000)
	}
	return fmt.Sprintf("%gµs", v)
}

func fmtTickRPS(v float64) string {
	if v >= 1000 {
		return fmt.Sprintf("%gk", v/1000)
	}
	return fmt.Sprintf("%g", v)
}

// WriteSVG draws the report's latency plot.
func (r *Report) WriteSVG(w io.Writer) error {
	var b svgBuf
	b.f(`<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif">`+"\n", svgW, svgH, svgW, svgH)
	b.f(`<rect width="100%%" height="100%%" fill="white"/>` + "\n")
	title := fmt.Sprintf("exless %s — %d CPUs, load average %s → %s, %d × %s per run", r.Meta.Version, r.Meta.CPUs, r.Meta.LoadBefore, r.Meta.LoadAfter, max(r.Meta.Rounds, 1), r.Meta.Duration)
	b.text(svgW/2, 22, "middle", "14", title)
	if !r.Meta.ExeHashed {
		b.text(svgW/2, 40, "middle", "11", "exless/exe: the exlessd measured does not hash executables yet, so this is its path for a policy with an exe rule, unhashed")
	}
	r.spectrumPanel(&b, panelLeft1)
	r.throughputPanel(&b, panelLeft2)

	// Legend.
	x := float64(panelLeft1)
	y := float64(panelTop + panelH + 50)
	for _, s := range seriesOrder {
		b.f(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="2.5"/>`+"\n", x, y-4, x+24, y-4, seriesColor[s])
		b.text(x+30, y, "start", "12", s)
		x += 130
	}
	b.f(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="black" stroke-width="1.5"/>`+"\n", x, y-4, x+24, y-4)
	b.text(x+30, y, "start", "12", "keep-alive")
	x += 110
	b.f(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="black" stroke-width="1.5" stroke-dasharray="5,4"/>`+"\n", x, y-4, x+24, y-4)
	b.text(x+30, y, "start", "12", "new connection per request")
	b.f("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

func (r *Report) spectrumPanel(b *svgBuf, left float64) {
	top := float64(panelTop)
	b.text(left+panelW/2, top-8, "middle", "13", "latency by percentile, c=1 (log scales)")
	var runs []RunResult
	lo, hi := math.Inf(1), 0.0
	for _, s := range seriesOrder {
		for _, conn := range []string{ConnKeepAlive, ConnNew} {
			for _, x := range r.Runs {
				if x.Label() == s && x.Concurrency == 1 && x.Conn == conn && len(x.Spectrum) > 0 {
					runs = append(runs, x)
					for _, p := range x.Spectrum {
						if p.US > 0 {
							lo, hi = math.Min(lo, p.US), math.Max(hi, p.US)
						}
					}
				}
			}
		}
	}
	if len(runs) == 0 {
		return
	}
	lo, hi = math.Pow(10, math.Floor(math.Log10(lo))), math.Pow(10, math.Ceil(math.Log10(hi)))
	y := func(v float64) float64 {
		return top + panelH - (math.Log10(math.Max(v, lo))-math.Log10(lo))/(math.Log10(hi)-math.Log10(lo))*panelH
	}
	x := func(q float64) float64 { return left + qx(q)/5*panelW }
	b.f(`<rect x="%.1f" y="%.1f" width="%d" height="%d" fill="none" stroke="#444"/>`+"\n", left, top, panelW, panelH)
	for _, t := range niceLogTicks(lo, hi) {
		b.f(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#ddd"/>`+"\n", left, y(t), left+panelW, y(t))
		b.text(left-5, y(t)+4, "end", "11", fmtTickUS(t))
	}
	for _, q := range []float64{0, 50, 90, 99, 99.9, 99.99, 100} {
		label := fmt.Sprintf("p%g", q)
		switch q {
		case 0:
			label = "" // min: too close to p50 to label
		case 100:
			label = "max"
		}
		b.f(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#ddd"/>`+"\n", x(q), top, x(q), top+panelH)
		b.text(x(q), top+panelH+16, "middle", "11", label)
	}
	for _, run := range runs {
		var pts []string
		for _, p := range run.Spectrum {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(p.Q), y(p.US)))
		}
		dash := ""
		if run.Conn == ConnNew {
			dash = ` stroke-dasharray="5,4"`
		}
		b.f(`<polyline points="%s" fill="none" stroke="%s" stroke-width="2"%s/>`+"\n", strings.Join(pts, " "), seriesColor[run.Label()], dash)
	}
}

func (r *Report) throughputPanel(b *svgBuf, left float64) {
	top := float64(panelTop)
	b.text(left+panelW/2, top-8, "middle", "13", "throughput by concurrency (req/s, log scales)")
	concs := slices.Clone(r.Meta.Concurrency)
	slices.Sort(concs)
	if len(concs) == 0 {
		return
	}
	lo, hi := math.Inf(1), 0.0
	for _, x := range r.Runs {
		if x.Throughput > 0 {
			lo, hi = math.Min(lo, x.Throughput), math.Max(hi, x.Throughput)
		}
	}
	if hi == 0 {
		return
	}
	lo, hi = math.Pow(10, math.Floor(math.Log10(lo))), math.Pow(10, math.Ceil(math.Log10(hi)))
	y := func(v float64) float64 {
		return top + panelH - (math.Log10(math.Max(v, lo))-math.Log10(lo))/(math.Log10(hi)-math.Log10(lo))*panelH
	}
	x := func(c int) float64 {
		if len(concs) == 1 {
			return left + panelW/2
		}
		i := slices.Index(concs, c)
		return left + 20 + float64(i)/float64(len(concs)-1)*(panelW-40)
	}
	b.f(`<rect x="%.1f" y="%.1f" width="%d" height="%d" fill="none" stroke="#444"/>`+"\n", left, top, panelW, panelH)
	for _, t := range niceLogTicks(lo, hi) {
		b.f(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#ddd"/>`+"\n", left, y(t), left+panelW, y(t))
		b.text(left-5, y(t)+4, "end", "11", fmtTickRPS(t))
	}
	for _, c := range concs {
		b.text(x(c), top+panelH+16, "middle", "11", fmt.Sprintf("c=%d", c))
	}
	for _, s := range seriesOrder {
		for _, conn := range []string{ConnKeepAlive, ConnNew} {
			var pts []string
			for _, c := range concs {
				for _, run := range r.Runs {
					if run.Label() == s && run.Conn == conn && run.Concurrency == c && run.Throughput > 0 {
						pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(c), y(run.Throughput)))
					}
				}
			}
			if len(pts) == 0 {
				continue
			}
			dash := ""
			if conn == ConnNew {
				dash = ` stroke-dasharray="5,4"`
			}
			b.f(`<polyline points="%s" fill="none" stroke="%s" stroke-width="2"%s/>`+"\n", strings.Join(pts, " "), seriesColor[s], dash)
			for _, p := range pts {
				xy := strings.Split(p, ",")
				b.f(`<circle cx="%s" cy="%s" r="3" fill="%s"/>`+"\n", xy[0], xy[1], seriesColor[s])
			}
		}
	}
}
