package bench

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func step(rate, delivered, p99, p999, cpu float64, pass bool) StepResult {
	return StepResult{TargetRate: rate, DeliveredPerSec: delivered, Pass: pass, CPUPerDelivery: cpu,
		Latency: Latency{P50: 1, P90: 2, P99: p99, P999: p999, Max: p999 * 2}}
}

func TestSummarizeAndReports(t *testing.T) {
	c := CompareConfig{Scenarios: []string{"S1", "S5"}, Stacks: []string{"node", "centrifuge", "go"}, Idle: []int{100}}
	var recs []RunRecord
	for run := 1; run <= 3; run++ {
		f := float64(run)
		recs = append(recs,
			RunRecord{Scenario: "S1", Stack: "node", Run: run,
				Fixed:   &LoadResult{Steps: []StepResult{step(20000, 20000, 30, 12+f, 12, true)}},
				Stepped: &LoadResult{Steps: []StepResult{step(20000, 20000, 30, 40, 12, true), step(40000, 39000, 80, 90, 11, false)}}},
			RunRecord{Scenario: "S1", Stack: "go", Run: run,
				Fixed:   &LoadResult{Steps: []StepResult{step(20000, 20000, 2, 3+f, 3, true)}},
				Stepped: &LoadResult{Steps: []StepResult{step(20000, 20000, 2, 3, 3, true), step(400000, 390000, 30, 40, 2, true)}}},
			RunRecord{Scenario: "S1", Stack: "centrifuge", Run: run,
				Fixed:   &LoadResult{Steps: []StepResult{step(20000, 20000, 3, 6, 5, true)}},
				Stepped: &LoadResult{Steps: []StepResult{step(20000, 20000, 3, 6, 5, true), step(200000, 195000, 40, 45, 4, true), step(400000, 300000, 90, 95, 4, false)}}},
			RunRecord{Scenario: "S5", Stack: "go", Run: run, Idle: []IdleResult{{Clients: 100, PerConnB: 5000 + f}}},
			RunRecord{Scenario: "S5", Stack: "centrifuge", Run: run, Idle: []IdleResult{{Clients: 100, PerConnB: 6000}}},
			RunRecord{Scenario: "S5", Stack: "node", Run: run, Idle: []IdleResult{{Clients: 100, PerConnB: 10000}}},
		)
		for i := range recs {
			if recs[i].Stepped != nil && recs[i].Stepped.Max == nil {
				for j := range recs[i].Stepped.Steps {
					if s := &recs[i].Stepped.Steps[j]; s.Pass {
						recs[i].Stepped.Max = s
					}
				}
			}
		}
	}
	s := summarize(c, Setup{Runs: 3}, recs)
	byMetric := map[string]TargetRow{}
	for _, r := range s.Targets {
		byMetric[r.Scenario+" "+r.Metric] = r
	}
	max1 := byMetric["S1 max delivered/s (p99 < 50 ms, loss <= 0.1 %)"]
	if max1.value("node") != 20000 || max1.value("go") != 390000 || !max1.Met || max1.value("centrifuge") != 195000 || !math.IsNaN(max1.value("floor")) {
		t.Errorf("S1 max: %+v", max1)
	}
	if r := byMetric["S1 p99.9 at 20k deliveries/s"]; r.value("go") != 5 || r.Met {
		t.Errorf("S1 p99.9: median of 4,5,6 is 5 (> 4 ms): %+v", r)
	}
	if r := byMetric["S5 RSS per idle connection, 100 connections"]; r.value("go") != 5002 || !r.Met {
		t.Errorf("S5: %+v", r)
	}
	if len(s.Charts) != 2 || len(s.Charts[0].Series["go"]) != 2 || len(s.Charts[0].Series["centrifuge"]) != 3 ||
		s.Charts[1].Scenario != "S5" || len(s.Charts[1].Bars) != 3 {
		t.Errorf("charts %+v", s.Charts)
	}
	table := s.table()
	for _, want := range []string{
		"| Scenario | Target | Node (median) | Centrifuge (median) | Go (median) | Go / Node | Go / Centrifuge | Goal (Go) | Met | Go runs |\n",
		"| S1 | max delivered/s (p99 < 50 ms, loss <= 0.1 %) (msg/s) | 20k | 195k | 390k | 19.50 | 2.00 | >= 6 x Node | **yes** | 390k, 390k, 390k |\n",
		"| S5 | RSS per idle connection, 100 connections (bytes) | 10k | 6000 | 5002 | 0.50 | 0.83 | <= 8192 B | **yes** |",
	} {
		if !strings.Contains(table, want) {
			t.Errorf("table lacks %q:\n%s", want, table)
		}
	}
	if _, err := json.Marshal(s); err != nil {
		t.Errorf("the summary does not encode (NaN?): %v", err)
	}

	dir := t.TempDir()
	md := filepath.Join(dir, "BENCHMARKS.md")
	if err := os.WriteFile(md, []byte("# B\n\nbefore\n"+beginMarker+"\nold\n"+endMarker+"\nafter\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c.Out, c.Update = filepath.Join(dir, "bench-results"), md
	if err := os.MkdirAll(c.Out, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := writeReports(c, "compare", s, recs); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(md)
	got := string(b)
	if strings.Contains(got, "\nold\n") || !strings.Contains(got, "before\n") || !strings.Contains(got, "\nafter\n") ||
		!strings.Contains(got, "](bench-results/compare.svg)") || !strings.Contains(got, "| S1 | max delivered/s") {
		t.Errorf("BENCHMARKS.md:\n%s", got)
	}
	svg, _ := os.ReadFile(filepath.Join(c.Out, "compare.svg"))
	if !strings.HasPrefix(string(svg), "<svg") || strings.Count(string(svg), "<polyline") != 3 || strings.Count(string(svg), "<rect x=") < 3 {
		t.Errorf("svg:\n%s", svg)
	}
}

func TestMedian(t *testing.T) {
	if m := median([]float64{3, 1, 2}); m != 2 {
		t.Error(m)
	}
	if m := median([]float64{4, 1, 2, 3}); m != 2.5 {
		t.Error(m)
	}
}
