package bench

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
)

// Summary is the comparison's outcome: the last JSON line of the results.
type Summary struct {
	Kind    string         `json:"kind"` // "summary"
	Setup   Setup          `json:"setup"`
	Stacks  []string       `json:"stacks"`
	Targets []TargetRow    `json:"targets"`
	Details []DetailRow    `json:"details"`
	Charts  []ChartPanel   `json:"charts"`
	Errors  []string       `json:"errors,omitempty"`
	Runs    map[string]int `json:"runs"` // completed runs per scenario/stack
}

// TargetRow is one target of the issue: the median of every stack that
// measured it, Go's against the goal.
type TargetRow struct {
	Scenario string             `json:"scenario"`
	Metric   string             `json:"metric"`
	Unit     string             `json:"unit"`
	Values   map[string]float64 `json:"values"` // median per stack (node, centrifuge, go, floor), measured ones only
	Goal     string             `json:"goal"`   // Go's goal ("–": none, reported only)
	Met      bool               `json:"met"`
	Known    bool               `json:"known"` // Go measured, and Node too if the goal is relative to it
	Runs     string             `json:"runs"`  // per-run Go values
}

// value is the median of stack, NaN if it was not measured.
func (r TargetRow) value(stack string) float64 {
	if v, ok := r.Values[stack]; ok {
		return v
	}
	return math.NaN()
}

// DetailRow is the median of one measurement of one stack.
type DetailRow struct {
	Scenario  string  `json:"scenario"`
	Stack     string  `json:"stack"`
	What      string  `json:"what"`
	Delivered float64 `json:"delivered_per_s"`
	Lost      float64 `json:"lost"`
	Dups      float64 `json:"duplicates"`
	Lat       Latency `json:"latency_ms"`
	CPU       float64 `json:"server_cpu_us_per_delivery"`
	RedisCPU  float64 `json:"redis_cpu_us_per_delivery"`
	GenCPU    float64 `json:"generator_cpu_share"`
	PeakKB    float64 `json:"server_peak_rss_kb"`
	N         int     `json:"runs"`
}

// ChartPanel is one scenario's panel: delivered/s against p99 for each
// stack (S1-S4: the steps to the maximum), or bytes of RSS per idle
// connection for each stack and connection count (S5: Bars).
type ChartPanel struct {
	Scenario string                  `json:"scenario"`
	Bound    float64                 `json:"p99_bound_ms,omitempty"`
	Series   map[string][]ChartPoint `json:"series,omitempty"`
	Unlinked map[string]bool         `json:"unlinked,omitempty"` // series of separate fixed-rate runs: points only
	Bars     []ChartBar              `json:"bars,omitempty"`
	Goal     float64                 `json:"goal,omitempty"` // S5: the bound in bytes
}

// ChartBar is the median RSS per idle connection of one stack at one
// connection count.
type ChartBar struct {
	Stack   string  `json:"stack"`
	Clients int     `json:"clients"`
	Bytes   float64 `json:"bytes"`
}

// ChartPoint is one step.
type ChartPoint struct {
	X    float64 `json:"delivered_per_s"`
	Y    float64 `json:"p99_ms"`
	Pass bool    `json:"pass"`
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	s := slices.Clone(v)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func fixedStep(r RunRecord) *StepResult {
	if r.Fixed == nil || len(r.Fixed.Steps) == 0 {
		return nil
	}
	return &r.Fixed.Steps[0]
}

func maxStep(r RunRecord) *StepResult {
	if r.Stepped == nil {
		return nil
	}
	return r.Stepped.Max
}

func idleAt(r RunRecord, n int) *IdleResult {
	for i := range r.Idle {
		if r.Idle[i].Clients == n {
			return &r.Idle[i]
		}
	}
	return nil
}

func summarize(c CompareConfig, setup Setup, records []RunRecord) *Summary {
	s := &Summary{Kind: "summary", Setup: setup, Stacks: c.Stacks, Runs: map[string]int{}}
	pick := func(sc, stack string, f func(RunRecord) (float64, bool)) []float64 {
		var out []float64
		for _, r := range records {
			if r.Scenario == sc && r.Stack == stack {
				if v, ok := f(r); ok {
					out = append(out, v)
				}
			}
		}
		return out
	}
	for _, r := range records {
		if r.Error != "" {
			s.Errors = append(s.Errors, fmt.Sprintf("%s/%s run %d: %s", r.Stack, r.Scenario, r.Run, firstLine(r.Error)))
		} else {
			s.Runs[r.Scenario+"/"+r.Stack]++
		}
	}
	fromMax := func(f func(*StepResult) float64) func(RunRecord) (float64, bool) {
		return func(r RunRecord) (float64, bool) {
			if m := maxStep(r); m != nil {
				return f(m), true
			}
			return 0, false
		}
	}
	fromFixed := func(f func(*StepResult) float64) func(RunRecord) (float64, bool) {
		return func(r RunRecord) (float64, bool) {
			if m := fixedStep(r); m != nil {
				return f(m), true
			}
			return 0, false
		}
	}
	delivered := func(m *StepResult) float64 { return m.DeliveredPerSec }
	cpu := func(m *StepResult) float64 { return m.CPUPerDelivery }
	p99 := func(m *StepResult) float64 { return m.Latency.P99 }
	p999 := func(m *StepResult) float64 { return m.Latency.P999 }
	same := func(f func(RunRecord) (float64, bool)) func(string) func(RunRecord) (float64, bool) {
		return func(string) func(RunRecord) (float64, bool) { return f }
	}

	// add appends a target row: of gets a stack's measurement from a run;
	// met judges Go's median against Node's.
	add := func(sc, metric, unit, goal string, of func(stack string) func(RunRecord) (float64, bool), met func(n, g float64) bool) {
		row := TargetRow{Scenario: sc, Metric: metric, Unit: unit, Goal: goal, Values: map[string]float64{}}
		var gov []float64
		for _, stack := range c.Stacks {
			v := pick(sc, stack, of(stack))
			if len(v) > 0 {
				row.Values[stack] = median(v)
			}
			if stack == "go" {
				gov = v
			}
		}
		_, haveNode := row.Values["node"]
		row.Known = met != nil && len(gov) > 0 && (haveNode || !strings.Contains(goal, "Node"))
		if row.Known {
			row.Met = met(row.value("node"), row.value("go"))
		}
		var runs []string
		for _, v := range gov {
			runs = append(runs, fmtNum(v))
		}
		row.Runs = strings.Join(runs, ", ")
		if slices.Contains(c.Scenarios, sc) {
			s.Targets = append(s.Targets, row)
		}
	}
	add("S1", "max delivered/s (p99 < 50 ms, loss <= 0.1 %)", "msg/s", ">= 6 x Node",
		same(fromMax(delivered)), func(n, g float64) bool { return g >= 6*n })
	add("S1", "server CPU per delivery at the maximum", "µs", "<= Node / 5",
		same(fromMax(cpu)), func(n, g float64) bool { return g <= n/5 })
	add("S1", "p99.9 at 20k deliveries/s", "ms", "<= 4 ms",
		same(fromFixed(p999)), func(_, g float64) bool { return g <= 4 })
	add("S2", "max delivered/s (p99 < 200 ms, loss <= 0.1 %)", "msg/s", ">= 2 x Node",
		same(fromMax(delivered)), func(n, g float64) bool { return g >= 2*n })
	add("S2", "p99 at 20k deliveries/s", "ms", "<= 0.75 x Node",
		same(fromFixed(p99)), func(n, g float64) bool { return g <= 0.75*n })
	add("S3", "max delivered/s (p99 < 50 ms, loss <= 0.1 %)", "msg/s", "–",
		same(fromMax(delivered)), nil)
	add("S3", "p99.9 at 2000 msgs/s", "ms", "<= 5 ms",
		same(fromFixed(p999)), func(_, g float64) bool { return g <= 5 })
	add("S4", "server CPU per delivery at Node's maximum rate", "µs", "<= Node / 5",
		func(stack string) func(RunRecord) (float64, bool) {
			if stack == "node" {
				return fromMax(cpu) // the others ran at it
			}
			return fromFixed(cpu)
		}, func(n, g float64) bool { return g <= n/5 })
	for _, n := range c.Idle {
		per := func(r RunRecord) (float64, bool) {
			if x := idleAt(r, n); x != nil {
				return x.PerConnB, true
			}
			return 0, false
		}
		add("S5", fmt.Sprintf("RSS per idle connection, %d connections", n), "bytes", "<= 8192 B",
			same(per), func(_, g float64) bool { return g <= 8192 })
	}
	// Zero loss and duplicates below the maximum: every passing step and
	// every fixed-rate run.
	bad := func(stack string) (float64, bool) {
		var lost float64
		seen := false
		for _, r := range records {
			if r.Stack != stack {
				continue
			}
			for _, res := range []*LoadResult{r.Fixed, r.Stepped} {
				if res == nil {
					continue
				}
				for _, st := range res.Steps {
					if st.Pass || res == r.Fixed {
						lost += float64(st.Lost + st.Duplicates)
						seen = true
					}
				}
			}
		}
		return lost, seen
	}
	row := TargetRow{Scenario: "all", Metric: "lost + duplicated deliveries below the maximum", Unit: "msgs",
		Goal: "0", Values: map[string]float64{}}
	for _, stack := range c.Stacks {
		if v, ok := bad(stack); ok {
			row.Values[stack] = v
		}
	}
	if g, ok := row.Values["go"]; ok {
		row.Known, row.Met = true, g == 0
	}
	s.Targets = append(s.Targets, row)

	// Details: medians per scenario, stack and measurement.
	for _, sc := range c.scenarios() {
		for _, stack := range c.Stacks {
			for _, what := range []string{"fixed", "max"} {
				var steps []*StepResult
				for _, r := range records {
					if r.Scenario != sc.name || r.Stack != stack {
						continue
					}
					if m := map[string]*StepResult{"fixed": fixedStep(r), "max": maxStep(r)}[what]; m != nil {
						steps = append(steps, m)
					}
				}
				if len(steps) == 0 {
					continue
				}
				med := func(f func(*StepResult) float64) float64 {
					var v []float64
					for _, st := range steps {
						v = append(v, f(st))
					}
					return median(v)
				}
				label := fmt.Sprintf("%.0f deliveries/s", med(func(s *StepResult) float64 { return s.TargetRate }))
				if what == "max" {
					label = "maximum"
				}
				s.Details = append(s.Details, DetailRow{
					Scenario: sc.name, Stack: stack, What: label, N: len(steps),
					Delivered: med(delivered),
					Lost:      med(func(s *StepResult) float64 { return float64(s.Lost) }),
					Dups:      med(func(s *StepResult) float64 { return float64(s.Duplicates) }),
					Lat: Latency{
						P50: med(func(s *StepResult) float64 { return s.Latency.P50 }), P90: med(func(s *StepResult) float64 { return s.Latency.P90 }),
						P99: med(p99), P999: med(p999), Max: med(func(s *StepResult) float64 { return s.Latency.Max }),
					},
					CPU: med(cpu),
					RedisCPU: med(func(s *StepResult) float64 {
						return s.CPUPerDelivery2 - s.CPUPerDelivery
					}),
					GenCPU: med(func(s *StepResult) float64 {
						if t := s.Seconds + s.DrainMs/1000; t > 0 {
							return s.GeneratorCPU / t
						}
						return 0
					}),
					PeakKB: med(func(s *StepResult) float64 {
						var k int64
						for _, p := range s.Procs {
							if strings.HasPrefix(p.Name, "server") {
								k = max(k, p.PeakKB)
							}
						}
						return float64(k)
					}),
				})
			}
		}
	}

	// Charts: the steps of each stack's median run (by maximum), and the
	// memory per idle connection.
	for _, sc := range []struct {
		name  string
		bound float64
	}{{"S1", 50}, {"S2", 200}, {"S3", 50}, {"S4", 50}} {
		if !slices.Contains(c.Scenarios, sc.name) {
			continue
		}
		panel := ChartPanel{Scenario: sc.name, Bound: sc.bound, Series: map[string][]ChartPoint{}}
		for _, stack := range c.Stacks {
			var runs []RunRecord
			for _, r := range records {
				if r.Scenario == sc.name && r.Stack == stack && r.Stepped != nil && r.Stepped.Max != nil {
					runs = append(runs, r)
				}
			}
			if len(runs) == 0 {
				// No stepping (results of older versions: Go in S4, S3):
				// the fixed-rate measurements.
				var pts []ChartPoint
				for _, r := range records {
					if m := fixedStep(r); m != nil && r.Scenario == sc.name && r.Stack == stack {
						pts = append(pts, ChartPoint{X: m.DeliveredPerSec, Y: m.Latency.P99, Pass: m.Pass})
					}
				}
				if len(pts) > 0 {
					sort.Slice(pts, func(i, j int) bool { return pts[i].X < pts[j].X })
					panel.Series[stack] = pts
					if panel.Unlinked == nil {
						panel.Unlinked = map[string]bool{}
					}
					panel.Unlinked[stack] = true
				}
				continue
			}
			sort.Slice(runs, func(i, j int) bool { return runs[i].Stepped.Max.DeliveredPerSec < runs[j].Stepped.Max.DeliveredPerSec })
			r := runs[len(runs)/2]
			var pts []ChartPoint
			for _, st := range r.Stepped.Steps {
				pts = append(pts, ChartPoint{X: st.DeliveredPerSec, Y: st.Latency.P99, Pass: st.Pass})
			}
			sort.Slice(pts, func(i, j int) bool { return pts[i].X < pts[j].X })
			panel.Series[stack] = pts
		}
		if len(panel.Series) > 0 {
			s.Charts = append(s.Charts, panel)
		}
	}
	if slices.Contains(c.Scenarios, "S5") {
		panel := ChartPanel{Scenario: "S5", Goal: 8192}
		for _, n := range c.Idle {
			for _, stack := range c.Stacks {
				v := pick("S5", stack, func(r RunRecord) (float64, bool) {
					if x := idleAt(r, n); x != nil {
						return x.PerConnB, true
					}
					return 0, false
				})
				if len(v) > 0 {
					panel.Bars = append(panel.Bars, ChartBar{Stack: stack, Clients: n, Bytes: median(v)})
				}
			}
		}
		if len(panel.Bars) > 0 {
			s.Charts = append(s.Charts, panel)
		}
	}
	return s
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

// fmtNum prints a figure with sensible precision.
func fmtNum(v float64) string {
	switch {
	case math.IsNaN(v):
		return "–"
	case math.Abs(v) >= 10000:
		return fmt.Sprintf("%.0fk", v/1000)
	case math.Abs(v) >= 100:
		return fmt.Sprintf("%.0f", v)
	case math.Abs(v) >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

// stackTitles are the stacks' names in the tables, in column order.
var stackTitles = []struct{ stack, title string }{
	{"node", "Node"}, {"centrifuge", "Centrifuge"}, {"go", "Go"},
}

// table renders the targets as a markdown table: a column per stack, Go's
// ratio to each of the others, Go's goal and verdict, the floor last.
func (s *Summary) table() string {
	var cols []struct{ stack, title string }
	for _, st := range stackTitles {
		if slices.Contains(s.Stacks, st.stack) {
			cols = append(cols, st)
		}
	}
	hasGo := slices.Contains(s.Stacks, "go")
	var b strings.Builder
	b.WriteString("| Scenario | Target |")
	align := "|---|---|"
	for _, col := range cols {
		fmt.Fprintf(&b, " %s (median) |", col.title)
		align += "---:|"
	}
	if hasGo {
		for _, col := range cols {
			if col.stack != "go" {
				fmt.Fprintf(&b, " Go / %s |", col.title)
				align += "---:|"
			}
		}
	}
	b.WriteString(" Goal (Go) | Met | Go runs |")
	align += "---|:-:|---|"
	if slices.Contains(s.Stacks, "floor") {
		b.WriteString(" Floor |")
		align += "---:|"
	}
	b.WriteString("\n" + align + "\n")
	for _, r := range s.Targets {
		fmt.Fprintf(&b, "| %s | %s (%s) |", r.Scenario, r.Metric, r.Unit)
		for _, col := range cols {
			fmt.Fprintf(&b, " %s |", fmtNum(r.value(col.stack)))
		}
		if hasGo {
			g := r.value("go")
			for _, col := range cols {
				if col.stack == "go" {
					continue
				}
				ratio := "–"
				if o := r.value(col.stack); o > 0 && !math.IsNaN(g) && r.Scenario != "all" {
					ratio = fmt.Sprintf("%.2f", g/o)
				}
				fmt.Fprintf(&b, " %s |", ratio)
			}
		}
		met := "no"
		switch {
		case !r.Known:
			met = "n/a"
		case r.Met:
			met = "**yes**"
		}
		fmt.Fprintf(&b, " %s | %s | %s |", r.Goal, met, r.Runs)
		if slices.Contains(s.Stacks, "floor") {
			fmt.Fprintf(&b, " %s |", fmtNum(r.value("floor")))
		}
		b.WriteString("\n")
	}
	return b.String()
}

func (s *Summary) details() string {
	var b strings.Builder
	b.WriteString("| Scenario | Stack | Measurement | Delivered/s | Lost | Dups | p50 | p90 | p99 | p99.9 | max (ms) | Server CPU µs/delivery | Redis CPU µs/delivery | Generator CPU (cores) | Server peak RSS (MiB) |\n")
	b.WriteString("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, d := range s.Details {
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %.0f | %.0f | %s | %s | %s | %s | %s | %s | %s | %.2f | %.0f |\n",
			d.Scenario, d.Stack, d.What, fmtNum(d.Delivered), d.Lost, d.Dups,
			fmtNum(d.Lat.P50), fmtNum(d.Lat.P90), fmtNum(d.Lat.P99), fmtNum(d.Lat.P999), fmtNum(d.Lat.Max),
			fmtNum(d.CPU), fmtNum(d.RedisCPU), d.GenCPU, d.PeakKB/1024)
	}
	return b.String()
}

// markdown is the generated results section.
func (s *Summary) markdown(chart string) string {
	var b strings.Builder
	st := s.Setup
	mode := "full"
	if st.Quick {
		mode = "quick"
	}
	fmt.Fprintf(&b, "Generated by `primus-bench compare` (%s mode, %d run(s), medians) on %s in %.0f min.\n\n", mode, st.Runs, st.Date, st.Minutes)
	fmt.Fprintf(&b, "Machine: %s. Load average before / after: %s / %s.\n\n", st.line(), st.LoadBefore, st.LoadAfter)
	b.WriteString(s.table())
	b.WriteString("\n")
	if chart != "" {
		fmt.Fprintf(&b, "![delivered/s against p99](%s)\n\n", chart)
	}
	b.WriteString("Medians per measurement (`fixed` = the fixed-rate run, `maximum` = the best passing step):\n\n")
	b.WriteString(s.details())
	if len(s.Errors) > 0 {
		b.WriteString("\nErrors:\n\n")
		for _, e := range s.Errors {
			fmt.Fprintf(&b, "- %s\n", e)
		}
	}
	return b.String()
}

const (
	beginMarker = "<!-- BEGIN primus-bench results -->"
	endMarker   = "<!-- END primus-bench results -->"
)

// writeReports writes <base>.md and <base>.svg in the results directory
// and rewrites the results section of c.Update.
func writeReports(c CompareConfig, base string, s *Summary, _ []RunRecord) error {
	svgPath := filepath.Join(c.Out, base+".svg")
	if err := os.WriteFile(svgPath, []byte(renderSVG(s.Charts, stackNames(s.Setup))), 0o644); err != nil {
		return err
	}
	chartRel := svgPath
	if c.Update != "" {
		if rel, err := filepath.Rel(filepath.Dir(c.Update), svgPath); err == nil {
			chartRel = rel
		}
	}
	md := s.markdown(chartRel)
	if err := os.WriteFile(filepath.Join(c.Out, base+".md"), []byte(md), 0o644); err != nil {
		return err
	}
	if c.Update == "" {
		return nil
	}
	return replaceSection(c.Update, md)
}

// replaceSection puts md between the markers of file (appending the
// markers if the file has none).
func replaceSection(file, md string) error {
	old, err := os.ReadFile(file)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	section := beginMarker + "\n" + md + endMarker
	i := bytes.Index(old, []byte(beginMarker))
	j := bytes.Index(old, []byte(endMarker))
	var out []byte
	if i >= 0 && j > i {
		out = append(append(append(out, old[:i]...), section...), old[j+len(endMarker):]...)
	} else {
		out = append(append(append(out, old...), "\n"...), section+"\n"...)
	}
	return os.WriteFile(file, out, 0o644)
}

// Report re-renders the summary, markdown and chart of a results file
// written by Compare (for example after a change to the report itself),
// into out/<base>.{md,svg}, and rewrites update's results section.
func Report(in, out, base, update string) error {
	b, err := os.ReadFile(in)
	if err != nil {
		return err
	}
	var setup Setup
	var recs []RunRecord
	dec := json.NewDecoder(bytes.NewReader(b))
	for dec.More() {
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return fmt.Errorf("%s: %w", in, err)
		}
		var k struct{ Kind string }
		_ = json.Unmarshal(raw, &k)
		switch k.Kind {
		case "setup":
			err = json.Unmarshal(raw, &setup)
		case "run":
			var r RunRecord
			err = json.Unmarshal(raw, &r)
			recs = append(recs, r)
		case "summary":
			// Its copy of the setup has the end of the run (load, minutes).
			var sum Summary
			if err = json.Unmarshal(raw, &sum); err == nil && sum.Setup.Date != "" {
				setup = sum.Setup
			}
		}
		if err != nil {
			return fmt.Errorf("%s: %w", in, err)
		}
	}
	if len(recs) == 0 {
		return fmt.Errorf("%s: %w", in, errNoResults)
	}
	c := CompareConfig{Runs: setup.Runs, Quick: setup.Quick, Scenarios: setup.Scenarios, Stacks: setup.Stacks,
		Idle: setup.Idle, Out: out, Update: update}
	if len(c.Stacks) == 0 {
		for _, st := range legendOrder {
			for _, r := range recs {
				if r.Stack == st {
					c.Stacks = append(c.Stacks, st)
					break
				}
			}
		}
	}
	if len(c.Idle) == 0 {
		for _, r := range recs {
			for _, x := range r.Idle {
				if !slices.Contains(c.Idle, x.Clients) {
					c.Idle = append(c.Idle, x.Clients)
				}
			}
		}
	}
	return writeReports(c, base, summarize(c, setup, recs), recs)
}
