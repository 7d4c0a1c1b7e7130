package bench

import (
	"fmt"
	"math"
	"slices"
	"strings"
)

// Chart colours and the order in which the stacks are drawn (the floor
// first, under the others) and listed.
var (
	stackColors = map[string]string{"node": "#3c873a", "centrifuge": "#d9480f", "go": "#00add8", "floor": "#888888",
		"go-cluster": "#5f3dc4", "go-history": "#0b7285"}
	stackOrder = []string{"floor", "node", "centrifuge", "go", "go-cluster", "go-history"}
)

// legendOrder is the order in which the stacks are listed.
var legendOrder = []string{"node", "centrifuge", "go", "go-cluster", "go-history", "floor"}

// panelTitles name the scenarios in the chart.
var panelTitles = map[string]string{
	"S1": "S1 cross-node fan-out: delivered/s vs p99",
	"S2": "S2 big room: delivered/s vs p99",
	"S3": "S3 chat, members publish: delivered/s vs p99",
	"S4": "S4 fan-out from Redis only: delivered/s vs p99",
	"S5": "S5 RSS per idle connection",
}

// floorNote explains the floor wherever it is drawn: it is a reference
// for the machine's costs, not a competitor, and its maximum is no bound
// for the others (it writes once per delivery and never coalesces).
const floorNote = "floor: trivial server, not a Primus implementation (one write per delivery, no Redis; its maximum is not a bound)"

// stackNames are the legend's names of the stacks, with the versions of
// the setup.
func stackNames(st Setup) map[string]string {
	node := "Node (Primus"
	if st.Primus != "" && st.Primus != "?" {
		node += " " + st.Primus + ", primus-redis-rooms " + st.RedisRooms
	}
	cf := "Centrifuge"
	if st.Centrifuge != "" {
		cf += " " + st.Centrifuge
	}
	return map[string]string{
		"node":       node + ")",
		"centrifuge": cf + " (Redis broker, JSON)",
		"go":         "Go (this project)",
		"floor":      "floor (dashed)",
		"go-cluster": "Go on a 3-master Redis Cluster",
		"go-history": "Go, history on (positioned clients)",
	}
}

// renderSVG draws the panels in a grid of up to three columns: for S1-S4
// delivered messages per second (x, logarithmic) against p99 latency (y,
// logarithmic), one line per stack through the steps of its median run,
// failing steps hollow, the scenario's p99 bound dashed, the floor as a
// thin dashed reference line labelled as such; for S5 a bar per stack and
// connection count with the 8 KiB goal.
func renderSVG(panels []ChartPanel, names map[string]string) string {
	const (
		pw, ph = 420, 300 // panel size
		gap    = 10
	)
	n := max(len(panels), 1)
	cols := min(n, 3)
	rows := (n + cols - 1) / cols
	w := cols*pw + (cols-1)*gap
	var panelsSVG strings.Builder
	present := map[string]bool{}
	for pi, p := range panels {
		ox, oy := (pi%cols)*(pw+gap), (pi/cols)*(ph+gap)
		if p.Bars != nil {
			drawBars(&panelsSVG, p, ox, oy, pw, ph, present)
		} else {
			drawSteps(&panelsSVG, p, ox, oy, pw, ph, present)
		}
	}
	// Legend, wrapped to the width (about 6 px per character).
	var legend strings.Builder
	ly := rows*ph + (rows-1)*gap + 16
	lx := 10
	for _, s := range legendOrder {
		if !present[s] {
			continue
		}
		if ew := 44 + 6*len(names[s]); lx > 10 && lx+ew > w {
			lx, ly = 10, ly+18
		}
		dash := ""
		if s == "floor" {
			dash = ` stroke-dasharray="3 3"`
		}
		fmt.Fprintf(&legend, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="3"%s/>`+"\n", lx, ly-4, lx+22, ly-4, stackColors[s], dash)
		fmt.Fprintf(&legend, `<text x="%d" y="%d">%s</text>`+"\n", lx+28, ly, esc(names[s]))
		lx += 44 + 6*len(names[s])
	}
	notes := []string{"hollow: a step over a bound (loss, p99, publisher behind); a line joins the steps of a stack's median run"}
	if present["floor"] {
		notes = append(notes, floorNote)
	}
	for i, note := range notes {
		for j, line := range wrapText(note, (w-20)/6) {
			ly += 18
			if i == 0 && j == 0 {
				fmt.Fprintf(&legend, `<circle cx="15" cy="%d" r="3.5" fill="#fff" stroke="#555" stroke-width="1.5"/>`+"\n", ly-4)
			}
			indent := 10
			if i == 0 {
				indent = 24
			}
			fmt.Fprintf(&legend, `<text x="%d" y="%d" fill="#444">%s</text>`+"\n", indent, ly, esc(line))
		}
	}
	h := ly + 12
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="11">`+"\n", w, h, w, h)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="#fff"/>`+"\n", w, h)
	if len(panels) == 0 {
		b.WriteString(`<text x="10" y="20">no results</text></svg>` + "\n")
		return b.String()
	}
	b.WriteString(panelsSVG.String())
	b.WriteString(legend.String())
	b.WriteString("</svg>\n")
	return b.String()
}

// wrapText breaks s into lines of at most width characters, at spaces.
func wrapText(s string, width int) []string {
	var lines []string
	line := ""
	for _, word := range strings.Fields(s) {
		if line != "" && len(line)+1+len(word) > width {
			lines = append(lines, line)
			line = ""
		}
		if line != "" {
			line += " "
		}
		line += word
	}
	return append(lines, line)
}

// drawSteps draws a delivered/s against p99 panel at (ox, oy).
func drawSteps(b *strings.Builder, p ChartPanel, ox, oy, pw, ph int, present map[string]bool) {
	const ml, mr, mt, mb = 62, 14, 34, 46
	x0, x1 := float64(ox+ml), float64(ox+pw-mr)
	y0, y1 := float64(oy+ph-mb), float64(oy+mt) // bottom, top
	minX, maxX := math.Inf(1), 0.0
	maxY, minY := p.Bound, p.Bound
	for _, pts := range p.Series {
		for _, q := range pts {
			if q.X > 0 {
				minX, maxX = min(minX, q.X), max(maxX, q.X)
			}
			maxY = max(maxY, q.Y)
			minY = min(minY, q.Y)
		}
	}
	if maxX == 0 {
		minX, maxX = 1000, 10000
	}
	xlo, xhi := tick125(minX*0.9, false), tick125(maxX*1.1, true)
	if xhi <= xlo {
		xhi = xlo * 10
	}
	ylo := math.Pow(10, math.Floor(math.Log10(max(minY, 0.01))))
	yhi := math.Pow(10, math.Ceil(math.Log10(max(maxY, ylo*10))))
	sx := func(v float64) float64 {
		v = min(max(v, xlo), xhi)
		return x0 + (x1-x0)*(math.Log10(v)-math.Log10(xlo))/(math.Log10(xhi)-math.Log10(xlo))
	}
	sy := func(v float64) float64 {
		v = min(max(v, ylo), yhi)
		return y0 - (y0-y1)*(math.Log10(v)-math.Log10(ylo))/(math.Log10(yhi)-math.Log10(ylo))
	}
	title := panelTitles[p.Scenario]
	if title == "" {
		title = p.Scenario + ": delivered/s vs p99"
	}
	fmt.Fprintf(b, `<text x="%d" y="%d" font-size="13" font-weight="bold">%s</text>`+"\n", ox+ml-40, oy+18, esc(title))
	// Grid and axes.
	for v := ylo; v <= yhi*1.0001; v *= 10 {
		y := sy(v)
		fmt.Fprintf(b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#ddd"/>`+"\n", x0, y, x1, y)
		fmt.Fprintf(b, `<text x="%.1f" y="%.1f" text-anchor="end">%s</text>`+"\n", x0-4, y+4, fmtMs(v))
	}
	for v := xlo; v <= xhi*1.0001; v = tick125(v*1.01, true) {
		x := sx(v)
		fmt.Fprintf(b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#eee"/>`+"\n", x, y0, x, y1)
		fmt.Fprintf(b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n", x, y0+14, fmtRate(v))
	}
	fmt.Fprintf(b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="none" stroke="#999"/>`+"\n", x0, y1, x1-x0, y0-y1)
	fmt.Fprintf(b, `<text x="%.1f" y="%d" text-anchor="middle">delivered messages / s (log)</text>`+"\n", (x0+x1)/2, oy+ph-mb+32)
	fmt.Fprintf(b, `<text transform="translate(%d,%.1f) rotate(-90)" text-anchor="middle">p99 latency</text>`+"\n", ox+14, (y0+y1)/2)
	by := sy(p.Bound)
	fmt.Fprintf(b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#c00" stroke-dasharray="4 3"/>`+"\n", x0, by, x1, by)
	fmt.Fprintf(b, `<text x="%.1f" y="%.1f" fill="#c00">p99 bound %s</text>`+"\n", x0+4, by-4, fmtMs(p.Bound))
	for _, s := range orderedStacks(p.Series) {
		pts := p.Series[s]
		present[s] = true
		col := stackColors[s]
		if col == "" {
			col = "#888"
		}
		var path []string
		for _, q := range pts {
			path = append(path, fmt.Sprintf("%.1f,%.1f", sx(q.X), sy(q.Y)))
		}
		width, dash, r := "2", "", 3.5
		if s == "floor" {
			width, dash, r = "1.2", ` stroke-dasharray="3 3"`, 2.2
		}
		if !p.Unlinked[s] {
			fmt.Fprintf(b, `<polyline points="%s" fill="none" stroke="%s" stroke-width="%s"%s/>`+"\n", strings.Join(path, " "), col, width, dash)
		}
		for _, q := range pts {
			fill := col
			if !q.Pass {
				fill = "#fff"
			}
			fmt.Fprintf(b, `<circle cx="%.1f" cy="%.1f" r="%.1f" fill="%s" stroke="%s" stroke-width="1.5"><title>%s: %.0f/s, p99 %.2f ms</title></circle>`+"\n",
				sx(q.X), sy(q.Y), r, fill, col, s, q.X, q.Y)
		}
		if s == "floor" && len(pts) > 0 {
			// Named on the panel: a reference, not a competitor.
			last := pts[len(pts)-1]
			lx, anchor := sx(last.X)+6, "start"
			if lx > x1-110 {
				lx, anchor = sx(last.X)-6, "end"
			}
			fmt.Fprintf(b, `<text x="%.1f" y="%.1f" fill="#666" font-size="10" text-anchor="%s">floor: trivial server</text>`+"\n",
				lx, sy(last.Y)+4, anchor)
		}
	}
}

// drawBars draws the S5 panel at (ox, oy): bytes of RSS per idle
// connection, a group of bars per connection count.
func drawBars(b *strings.Builder, p ChartPanel, ox, oy, pw, ph int, present map[string]bool) {
	const ml, mr, mt, mb = 62, 14, 34, 46
	x0, x1 := float64(ox+ml), float64(ox+pw-mr)
	y0, y1 := float64(oy+ph-mb), float64(oy+mt)
	top := p.Goal
	var counts []int
	for _, bar := range p.Bars {
		top = max(top, bar.Bytes)
		if !slices.Contains(counts, bar.Clients) {
			counts = append(counts, bar.Clients)
		}
	}
	step := niceStep(top*1.15/1024/5) * 1024 // whole KiB
	yMax := math.Ceil(top*1.15/step) * step
	sy := func(v float64) float64 { return y0 - (y0-y1)*max(v, 0)/yMax }
	title := panelTitles[p.Scenario]
	if p.Goal > 0 {
		title += " (goal " + fmtKiB(p.Goal) + ", dashed)"
	}
	fmt.Fprintf(b, `<text x="%d" y="%d" font-size="13" font-weight="bold">%s</text>`+"\n", ox+ml-40, oy+18, esc(title))
	for v := 0.0; v <= yMax*1.0001; v += step {
		y := sy(v)
		fmt.Fprintf(b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#ddd"/>`+"\n", x0, y, x1, y)
		fmt.Fprintf(b, `<text x="%.1f" y="%.1f" text-anchor="end">%s</text>`+"\n", x0-4, y+4, fmtKiB(v))
	}
	fmt.Fprintf(b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="none" stroke="#999"/>`+"\n", x0, y1, x1-x0, y0-y1)
	fmt.Fprintf(b, `<text transform="translate(%d,%.1f) rotate(-90)" text-anchor="middle">RSS per connection</text>`+"\n", ox+14, (y0+y1)/2)
	groupW := (x1 - x0) / float64(max(len(counts), 1))
	for gi, n := range counts {
		var bars []ChartBar
		for _, s := range stackOrder {
			for _, bar := range p.Bars {
				if bar.Clients == n && bar.Stack == s {
					bars = append(bars, bar)
				}
			}
		}
		gx := x0 + float64(gi)*groupW
		bw := min(groupW*0.8/float64(max(len(bars), 1)), 48)
		start := gx + (groupW-bw*float64(len(bars)))/2
		for i, bar := range bars {
			present[bar.Stack] = true
			x := start + float64(i)*bw
			fmt.Fprintf(b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%s: %.0f bytes per connection</title></rect>`+"\n",
				x+2, sy(bar.Bytes), bw-4, y0-sy(bar.Bytes), stackColors[bar.Stack], bar.Stack, bar.Bytes)
			fmt.Fprintf(b, `<text x="%.1f" y="%.1f" text-anchor="middle" font-size="10">%s</text>`+"\n", x+bw/2, sy(bar.Bytes)-3, fmtKiB(bar.Bytes))
		}
		fmt.Fprintf(b, `<text x="%.1f" y="%.1f" text-anchor="middle">%d connections</text>`+"\n", gx+groupW/2, y0+14, n)
	}
	if p.Goal > 0 {
		gy := sy(p.Goal)
		fmt.Fprintf(b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#c00" stroke-dasharray="4 3"/>`+"\n", x0, gy, x1, gy)
	}
}

// orderedStacks lists the series in drawing order.
func orderedStacks(series map[string][]ChartPoint) []string {
	var out []string
	for _, s := range stackOrder {
		if _, ok := series[s]; ok {
			out = append(out, s)
		}
	}
	var other []string
	for s := range series {
		if !slices.Contains(stackOrder, s) {
			other = append(other, s)
		}
	}
	slices.Sort(other)
	return append(out, other...)
}

// tick125 rounds v to the 1-2-5 sequence: up to the next value (up) or
// down to the previous one.
func tick125(v float64, up bool) float64 {
	if v <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	ms := []float64{1, 2, 5, 10}
	if up {
		for _, m := range ms {
			if m*p >= v*(1-1e-9) {
				return m * p
			}
		}
		return 10 * p
	}
	for i := len(ms) - 1; i >= 0; i-- {
		if ms[i]*p <= v*(1+1e-9) {
			return ms[i] * p
		}
	}
	return p
}

// niceStep rounds v up to 1, 2 or 5 times a power of ten.
func niceStep(v float64) float64 {
	if v <= 0 {
		return 1
	}
	return tick125(v, true)
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

func fmtKiB(v float64) string {
	return fmt.Sprintf("%.3g KiB", v/1024)
}

// esc escapes text for SVG.
func esc(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}
