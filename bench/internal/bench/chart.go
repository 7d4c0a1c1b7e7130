package bench

import (
	"fmt"
	"math"
	"slices"
	"strings"
)

// renderSVG draws one panel per scenario: delivered messages per second
// (x, linear) against p99 latency (y, logarithmic), one line per stack,
// failing steps hollow, the scenario's p99 bound dashed.
func renderSVG(panels []ChartPanel) string {
	const (
		pw, ph         = 420, 300 // panel size
		ml, mr, mt, mb = 62, 14, 34, 46
		legendH        = 28
		gap            = 10
	)
	colors := map[string]string{"go": "#00add8", "node": "#3c873a", "floor": "#999999"}
	names := map[string]string{"go": "Go", "node": "Node (primus 8.0.9, primus-redis-rooms 0.3.2)", "floor": "floor (trivial fan-out, no Redis)"}
	n := max(len(panels), 1)
	w := n*pw + (n-1)*gap
	h := ph + legendH
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="11">`+"\n", w, h, w, h)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="#fff"/>`+"\n", w, h)
	if len(panels) == 0 {
		b.WriteString(`<text x="10" y="20">no stepping results</text></svg>` + "\n")
		return b.String()
	}
	for pi, p := range panels {
		ox := pi * (pw + gap)
		x0, x1 := float64(ox+ml), float64(ox+pw-mr)
		y0, y1 := float64(ph-mb), float64(mt) // bottom, top
		var maxX, maxY, minY float64 = 1, p.Bound, p.Bound
		for _, pts := range p.Series {
			for _, q := range pts {
				maxX = max(maxX, q.X)
				maxY = max(maxY, q.Y)
				minY = min(minY, q.Y)
			}
		}
		xStep := niceStep(maxX / 5)
		xMax := math.Ceil(maxX*1.05/xStep) * xStep
		lo := math.Pow(10, math.Floor(math.Log10(max(minY, 0.01))))
		hi := math.Pow(10, math.Ceil(math.Log10(max(maxY, lo*10))))
		sx := func(v float64) float64 { return x0 + (x1-x0)*v/xMax }
		sy := func(v float64) float64 {
			v = min(max(v, lo), hi)
			return y0 - (y0-y1)*(math.Log10(v)-math.Log10(lo))/(math.Log10(hi)-math.Log10(lo))
		}
		fmt.Fprintf(&b, `<text x="%d" y="18" font-size="13" font-weight="bold">%s: delivered/s vs p99</text>`+"\n", ox+ml, p.Scenario)
		// Grid and axes.
		for v := lo; v <= hi*1.0001; v *= 10 {
			y := sy(v)
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#ddd"/>`+"\n", x0, y, x1, y)
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="end">%s</text>`+"\n", x0-4, y+4, fmtMs(v))
		}
		for v := 0.0; v <= xMax*1.0001; v += xStep {
			x := sx(v)
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#eee"/>`+"\n", x, y0, x, y1)
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n", x, y0+14, fmtRate(v))
		}
		fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="none" stroke="#999"/>`+"\n", x0, y1, x1-x0, y0-y1)
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">delivered messages / s</text>`+"\n", (x0+x1)/2, ph-mb+32)
		fmt.Fprintf(&b, `<text transform="translate(%d,%.1f) rotate(-90)" text-anchor="middle">p99 latency</text>`+"\n", ox+14, (y0+y1)/2)
		by := sy(p.Bound)
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#c00" stroke-dasharray="4 3"/>`+"\n", x0, by, x1, by)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" fill="#c00">p99 bound %s</text>`+"\n", x0+4, by-4, fmtMs(p.Bound))
		stacks := make([]string, 0, len(p.Series))
		for s := range p.Series {
			stacks = append(stacks, s)
		}
		slices.Sort(stacks)
		for _, s := range stacks {
			pts := p.Series[s]
			col := colors[s]
			if col == "" {
				col = "#888"
			}
			var path []string
			for _, q := range pts {
				path = append(path, fmt.Sprintf("%.1f,%.1f", sx(q.X), sy(q.Y)))
			}
			if !p.Unlinked[s] {
				fmt.Fprintf(&b, `<polyline points="%s" fill="none" stroke="%s" stroke-width="2"/>`+"\n", strings.Join(path, " "), col)
			}
			for _, q := range pts {
				fill := col
				if !q.Pass {
					fill = "#fff"
				}
				fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="3.5" fill="%s" stroke="%s" stroke-width="1.5"><title>%s: %.0f/s, p99 %.2f ms</title></circle>`+"\n",
					sx(q.X), sy(q.Y), fill, col, s, q.X, q.Y)
			}
		}
	}
	// Legend.
	lx := 10
	present := map[string]bool{}
	for _, p := range panels {
		for s := range p.Series {
			present[s] = true
		}
	}
	for _, s := range []string{"node", "go", "floor"} {
		if !present[s] {
			continue
		}
		fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="3"/>`+"\n", lx, ph+8, lx+22, ph+8, colors[s])
		fmt.Fprintf(&b, `<text x="%d" y="%d">%s</text>`+"\n", lx+28, ph+12, names[s])
		lx += 40 + 6*len(names[s])
	}
	fmt.Fprintf(&b, `<circle cx="%d" cy="%d" r="3.5" fill="#fff" stroke="#555" stroke-width="1.5"/><text x="%d" y="%d">hollow: step over a bound (loss, p99, publisher behind)</text>`+"\n", 21, ph+24, 38, ph+28)
	b.WriteString("</svg>\n")
	return b.String()
}

// niceStep rounds v up to 1, 2 or 5 times a power of ten.
func niceStep(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}

func fmtMs(v float64) string {
	switch {
	case v >= 1000:
		return fmt.Sprintf("%gs", v/1000)
	default:
		return fmt.Sprintf("%gms", v)
	}
}

func fmtRate(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%gM", v/1e6)
	case v >= 1e3:
		return fmt.Sprintf("%gk", v/1e3)
	}
	return fmt.Sprintf("%g", v)
}
