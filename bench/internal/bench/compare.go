package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"
)

// CompareConfig is a side-by-side comparison of the stacks.
type CompareConfig struct {
	Runs      int      // independent runs per scenario and stack (medians are reported)
	Quick     bool     // short steps, one run, 10,000 idle connections only
	Scenarios []string // S1..S5
	Stacks    []string // "node", "centrifuge", "go", "go-cluster", "go-history", "floor"
	Out       string   // results directory
	Update    string   // markdown file whose results section is rewritten ("" = none)
	Repo      string   // module root
	NodeDir   string   // the npm fixture (testdata/node)
	GoRedis   string   // the Go nodes' -redis-mode
	Idle      []int    // idle connection counts for S5
	PingMs    int      // server heartbeat interval of the Primus stacks (Centrifuge keeps its default)
	Profile   string   // directory for CPU profiles of the Go nodes ("" = plain cmd/primus-server)
	Log       func(format string, args ...any)
}

// scenario is one of S1..S5.
type scenario struct {
	name, title string
	load        *LoadConfig // clients, rooms, layout and path (per stack for S4)
	fixedRate   float64     // deliveries/s of the fixed-rate measurement (0: none)
	step        *StepConfig // stepping to the maximum (nil: none)
	stepFrom    float64     // deliveries/s of the first step (default 20000)
	idle        bool
}

// RunRecord is one scenario run of one stack: a JSON line of the results file.
type RunRecord struct {
	Kind     string       `json:"kind"` // "run"
	Scenario string       `json:"scenario"`
	Stack    string       `json:"stack"`
	Run      int          `json:"run"`
	LoadAvg  string       `json:"loadavg"`
	Fixed    *LoadResult  `json:"fixed,omitempty"`
	Stepped  *LoadResult  `json:"stepped,omitempty"`
	Idle     []IdleResult `json:"idle,omitempty"`
	Error    string       `json:"error,omitempty"`
}

func (c *CompareConfig) scenarios() []scenario {
	stepDur, fixedDur := 5*time.Second, 10*time.Second
	bisect := 3
	if c.Quick {
		stepDur, fixedDur, bisect = 2*time.Second, 4*time.Second, 1
	}
	s1 := LoadConfig{Clients: 1000, Rooms: 10, Layout: "mod", ClientNodes: []int{0}, Path: PathWS, PublishNode: 1}
	all := []scenario{
		{name: "S1", title: "cross-node fan-out: 1000 clients on X in 10 rooms of 100, publisher on Y",
			load: &s1, fixedRate: 20000,
			step: &StepConfig{Factor: 2, Bisect: bisect, P99: 50 * time.Millisecond, MaxRate: 2_000_000}},
		{name: "S2", title: "big room: 5000 clients on X in one room, publisher on Y",
			load:      &LoadConfig{Clients: 5000, Rooms: 1, ClientNodes: []int{0}, Path: PathWS, PublishNode: 1},
			fixedRate: 20000,
			step:      &StepConfig{Factor: 2, Bisect: bisect, P99: 200 * time.Millisecond, MaxRate: 2_000_000}},
		{name: "S3", title: "chat: 4000 clients, 2000 rooms of 2 (one member on each node), members publish 2000 msgs/s",
			load:      &LoadConfig{Clients: 4000, Rooms: 2000, Layout: "block", ClientNodes: []int{0, 1}, Path: PathMembers},
			fixedRate: 4000, // 2000 publishes/s, 2 deliveries each
			step:      &StepConfig{Factor: 2, Bisect: bisect, P99: 50 * time.Millisecond, MaxRate: 2_000_000}, stepFrom: 4000},
		{name: "S4", title: "fan-out from Redis only: S1's clients, messages published straight into Redis",
			load: &LoadConfig{Clients: 1000, Rooms: 10, Layout: "mod", ClientNodes: []int{0}, Path: PathRedisCompat},
			step: &StepConfig{Factor: 2, Bisect: bisect, P99: 50 * time.Millisecond, MaxRate: 2_000_000}},
		{name: "S5", title: "idle connections on one node", idle: true},
	}
	for i := range all {
		if l := all[i].load; l != nil {
			if c.Quick {
				l.Warm = time.Second
			}
			l.Duration = stepDur
			if all[i].step == nil {
				l.Duration = fixedDur
			}
		}
	}
	var out []scenario
	for _, s := range all {
		if slices.Contains(c.Scenarios, s.name) {
			out = append(out, s)
		}
	}
	return out
}

// Compare runs every scenario against both stacks, Runs times, and writes
// the results (JSON lines, summary markdown, chart).
func Compare(ctx context.Context, c CompareConfig) error {
	if c.Log == nil {
		c.Log = func(string, ...any) {}
	}
	if c.Runs <= 0 {
		c.Runs = 3
	}
	if len(c.Idle) == 0 {
		c.Idle = []int{10000, 19900}
	}
	if c.PingMs <= 0 {
		c.PingMs = 30000
	}
	limit, err := raiseNoFile()
	if err != nil {
		return fmt.Errorf("raising the open-file limit: %w", err)
	}
	for _, n := range c.Idle {
		if uint64(n)+100 > limit {
			return fmt.Errorf("%d idle connections need an open-file limit above %d (have %d)", n, n+100, limit)
		}
	}
	tmp, err := os.MkdirTemp("", "primus-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	e := &env{repo: c.Repo, nodeDir: c.NodeDir, tmp: tmp, goRedis: c.GoRedis, pingMs: c.PingMs}
	if e.self, err = os.Executable(); err != nil {
		return err
	}
	if c.Profile != "" {
		if e.profileDir, err = filepath.Abs(c.Profile); err != nil {
			return err
		}
		if err := os.MkdirAll(e.profileDir, 0o755); err != nil {
			return err
		}
	}
	if slices.ContainsFunc(c.Stacks, func(s string) bool { return s == "go" || strings.HasPrefix(s, "go-") }) {
		e.goBin = filepath.Join(tmp, "primus-server")
		c.Log("building cmd/primus-server into %s", e.goBin)
		cmd := exec.CommandContext(ctx, "go", "build", "-o", e.goBin, "./cmd/primus-server")
		cmd.Dir = c.Repo
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go build ./cmd/primus-server: %v\n%s", err, out)
		}
	}
	if slices.Contains(c.Stacks, "centrifuge") {
		e.cfBin = filepath.Join(tmp, "centrifuge-server")
		c.Log("building bench/centrifuge into %s", e.cfBin)
		if err := buildCentrifuge(ctx, filepath.Join(c.Repo, "bench", "centrifuge"), e.cfBin); err != nil {
			return err
		}
	}
	if slices.Contains(c.Stacks, "node") {
		if err := ensureNodeModules(ctx, c.NodeDir, c.Log); err != nil {
			return err
		}
	}
	if e.redisBin, err = exec.LookPath("redis-server"); err != nil {
		return fmt.Errorf("redis-server is needed: %w", err)
	}
	if err := os.MkdirAll(c.Out, 0o755); err != nil {
		return err
	}
	base := "compare"
	if c.Quick {
		base = "quick"
	}
	jsonl, err := os.Create(filepath.Join(c.Out, base+".jsonl"))
	if err != nil {
		return err
	}
	defer jsonl.Close()
	enc := json.NewEncoder(jsonl)

	setup := machineSetup(c)
	setup.LoadBefore = loadAvg()
	_ = enc.Encode(setup)
	c.Log("setup: %s; load %s", setup.line(), setup.LoadBefore)

	var records []RunRecord
	started := time.Now()
	for run := 1; run <= c.Runs; run++ {
		for _, sc := range c.scenarios() {
			stacks := slices.Clone(c.Stacks)
			// Alternate the order between runs, except that Node comes
			// first in S4, where the others run at its maximum of the same
			// run.
			if run%2 == 0 {
				slices.Reverse(stacks)
			}
			if i := slices.Index(stacks, "node"); sc.name == "S4" && i > 0 {
				stacks = append([]string{"node"}, slices.Delete(stacks, i, i+1)...)
			}
			var nodeMax float64
			for _, stack := range stacks {
				if err := ctx.Err(); err != nil {
					return err
				}
				if stack == "floor" && (sc.name == "S4" || sc.name == "S5") {
					continue // no Redis, no Primus: nothing to compare there
				}
				if stack == "go-history" && (sc.name == "S4" || sc.name == "S5") {
					continue // S4 bypasses the nodes' history script; S5 is go's
				}
				e.logPrefix = fmt.Sprintf("r%d-%s-%s", run, sc.name, stack)
				rec := c.runOne(ctx, e, sc, stack, run, nodeMax)
				if sc.name == "S4" && stack == "node" && rec.Stepped != nil && rec.Stepped.Max != nil {
					nodeMax = rec.Stepped.Max.DeliveredPerSec
				}
				if rec.Error != "" {
					c.Log("%s/%s run %d: ERROR %s", stack, sc.name, run, rec.Error)
				}
				records = append(records, rec)
				_ = enc.Encode(rec)
			}
		}
	}
	setup.LoadAfter = loadAvg()
	setup.Minutes = time.Since(started).Minutes()
	sum := summarize(c, setup, records)
	_ = enc.Encode(sum)
	if err := writeReports(c, base, sum, records); err != nil {
		return err
	}
	c.Log("done in %.1f min:\n%s", setup.Minutes, sum.table())
	return nil
}

func (c *CompareConfig) runOne(ctx context.Context, e *env, sc scenario, stack string, run int, nodeMax float64) (rec RunRecord) {
	rec = RunRecord{Kind: "run", Scenario: sc.name, Stack: stack, Run: run, LoadAvg: loadAvg()}
	fail := func(err error) RunRecord {
		rec.Error = err.Error()
		return rec
	}
	if sc.idle {
		for _, n := range c.Idle {
			d, err := e.deploy(ctx, stack, fmt.Sprintf("idle%d", n))
			if err != nil {
				return fail(err)
			}
			time.Sleep(time.Second) // let the process settle before its baseline
			settle := 5 * time.Second
			if c.Quick {
				settle = 2 * time.Second
			}
			res, err := RunIdle(ctx, IdleConfig{
				Name: sc.name, Stack: stack, Protocol: stackProtocol(stack), Target: d.targets[0], Clients: n,
				Pid: d.nodes[0].pid(), Settle: settle, Parallel: 16, Log: c.Log,
			})
			if aerr := d.alive(); err == nil && aerr != nil {
				err = aerr
			}
			d.stop()
			if err != nil {
				return fail(err)
			}
			rec.Idle = append(rec.Idle, *res)
		}
		return rec
	}

	d, err := e.deploy(ctx, stack, "")
	if err != nil {
		return fail(err)
	}
	defer d.stop()
	lc := *sc.load
	lc.Name, lc.Stack, lc.Protocol, lc.Targets, lc.RedisAddr, lc.Procs, lc.Log = sc.name, stack, stackProtocol(stack), d.targets, d.redisAt, d.procs(), c.Log
	if lc.Path == PathRedisCompat {
		// Straight into Redis in each broker's own format.
		switch {
		case stack == "go" && e.goRedis == "native":
			lc.Path = PathRedisNative
		case stack == "centrifuge":
			lc.Path, lc.Channel = PathRedisCentrifuge, centrifugePrefix
		}
	}
	if lc.Path == PathRedisCompat && stack == "go-cluster" {
		// Straight into a cluster would need the generator to route
		// SPUBLISH by slot: node 1 publishes instead (HTTP API), and node
		// 0, which holds the clients, only receives from Redis, as in S4;
		// compare server-x's CPU.
		lc.Path, lc.PublishNode = PathHTTP, 1
	}

	fixed := sc.fixedRate
	if sc.name == "S4" && stack != "node" {
		// The others at Node's maximum of this run, then their own.
		fixed = nodeMax
		if fixed <= 0 {
			fixed = 60000
		}
	}
	if fixed > 0 {
		fl := lc
		fl.Rate = fixed
		if sc.step != nil {
			fl.Duration = 2 * lc.Duration
		}
		res, err := RunLoad(ctx, fl)
		if err != nil {
			return fail(err)
		}
		rec.Fixed = res
		if err := d.alive(); err != nil {
			return fail(err)
		}
	}
	if sc.step != nil {
		sl := lc
		st := *sc.step
		sl.Step = &st
		sl.Rate = sc.stepFrom
		if sl.Rate <= 0 {
			sl.Rate = 20000
		}
		res, err := RunLoad(ctx, sl)
		if res != nil {
			rec.Stepped = res
		}
		if err != nil {
			return fail(err)
		}
		if err := d.alive(); err != nil {
			return fail(err)
		}
	}
	return rec
}

// ensureNodeModules installs the fixture's pinned packages when missing.
func ensureNodeModules(ctx context.Context, dir string, log func(string, ...any)) error {
	if _, err := os.Stat(filepath.Join(dir, "server.js")); err != nil {
		return fmt.Errorf("node fixture: %w", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "primus-redis-rooms", "package.json")); err == nil {
		return nil
	}
	log("npm ci --ignore-scripts in %s", dir)
	cmd := exec.CommandContext(ctx, "npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("npm ci in %s: %v\n%s", dir, err, out)
	}
	return nil
}

// Setup describes the machine and versions: the first JSON line.
type Setup struct {
	Kind        string   `json:"kind"` // "setup"
	Date        string   `json:"date"`
	CPU         string   `json:"cpu"`
	Cores       int      `json:"cores"`
	MemGiB      float64  `json:"mem_gib"`
	Kernel      string   `json:"kernel"`
	Go          string   `json:"go"`
	Node        string   `json:"node"`
	Redis       string   `json:"redis"`
	Primus      string   `json:"primus"`
	RedisRooms  string   `json:"primus_redis_rooms"`
	WS          string   `json:"ws"`
	Centrifuge  string   `json:"centrifuge,omitempty"` // the library's version in bench/centrifuge/go.mod
	Commit      string   `json:"commit"`
	Runs        int      `json:"runs"`
	Quick       bool     `json:"quick"`
	GoRedisMode string   `json:"go_redis_mode"`
	PingMs      int      `json:"ping_interval_ms"`
	Scenarios   []string `json:"scenarios"`
	Stacks      []string `json:"stacks"`
	Idle        []int    `json:"idle"`
	LoadBefore  string   `json:"loadavg_before"`
	LoadAfter   string   `json:"loadavg_after"`
	Minutes     float64  `json:"minutes"`
}

func (s Setup) line() string {
	cf := ""
	if s.Centrifuge != "" {
		cf = "; centrifuge " + s.Centrifuge
	}
	return fmt.Sprintf("%s, %d cores, %.0f GiB, Linux %s; %s, node %s, %s; primus %s, primus-redis-rooms %s, ws %s%s; commit %s",
		s.CPU, s.Cores, s.MemGiB, s.Kernel, s.Go, s.Node, s.Redis, s.Primus, s.RedisRooms, s.WS, cf, s.Commit)
}

// centrifugeVersion is the version of github.com/centrifugal/centrifuge
// that bench/centrifuge requires.
func centrifugeVersion(repo string) string {
	b, err := os.ReadFile(filepath.Join(repo, "bench", "centrifuge", "go.mod"))
	if err != nil {
		return ""
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "github.com/centrifugal/centrifuge" {
			return f[1]
		}
	}
	return ""
}

func machineSetup(c CompareConfig) Setup {
	s := Setup{Kind: "setup", Date: time.Now().UTC().Format(time.RFC3339), Cores: runtime.NumCPU(),
		Go: runtime.Version(), Runs: c.Runs, Quick: c.Quick, GoRedisMode: c.GoRedis, PingMs: c.PingMs, Scenarios: c.Scenarios,
		Stacks: c.Stacks, Idle: c.Idle}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				s.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb float64
		fmt.Sscanf(strings.TrimPrefix(strings.SplitN(string(b), "\n", 2)[0], "MemTotal:"), "%f", &kb)
		s.MemGiB = kb / (1 << 20)
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		s.Kernel = strings.TrimSpace(string(b))
	}
	s.Node = cmdOutput(c.Repo, "node", "--version")
	if v := cmdOutput(c.Repo, "redis-server", "--version"); v != "" {
		f := strings.Fields(v)
		for _, x := range f {
			if strings.HasPrefix(x, "v=") {
				s.Redis = "redis " + strings.TrimPrefix(x, "v=")
			}
		}
	}
	s.Commit = cmdOutput(c.Repo, "git", "rev-parse", "--short", "HEAD")
	pkgVersion := func(name string) string {
		b, err := os.ReadFile(filepath.Join(c.NodeDir, "node_modules", name, "package.json"))
		if err != nil {
			return "?"
		}
		var p struct{ Version string }
		_ = json.Unmarshal(b, &p)
		return p.Version
	}
	s.Primus, s.RedisRooms, s.WS = pkgVersion("primus"), pkgVersion("primus-redis-rooms"), pkgVersion("ws")
	if slices.Contains(c.Stacks, "centrifuge") {
		s.Centrifuge = centrifugeVersion(c.Repo)
	}
	return s
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

var errNoResults = errors.New("no results")
