package bench

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"
)

const usage = `primus-bench: load generator and Node/Centrifuge/Go comparison for Primus servers.

Usage:
  primus-bench run     -targets ws://127.0.0.1:8081/primus,ws://127.0.0.1:8082/primus [-protocol primus|centrifuge] [flags]
  primus-bench idle    -target ws://127.0.0.1:8081/primus -clients 10000 -pid <server pid>
  primus-bench compare [-quick] [-runs 3] [-scenarios S1,S2,S3,S4,S5] [-stacks node,centrifuge,go,floor] [-update BENCHMARKS.md]
  primus-bench serve   [-cpuprofile file] [-pprof addr] -- <primus-server flags>
  primus-bench floor   [-addr 127.0.0.1:0]
  primus-bench report  [-in bench-results/compare.jsonl] [-update BENCHMARKS.md]
  primus-bench drain   [-clients 10000] [-delay 2s] [-duration 10s] [-server bin]

run: N clients over the targets join rooms, a publisher sends benchmark
messages at a fixed rate (or steps up to the maximum rate), and the
deliveries, loss, duplicates, latency and server CPU are reported.
idle: N idle connections; the server's RSS per connection.
compare: starts Redis and two nodes of each stack (Node: testdata/node/server.js,
Centrifuge: bench/centrifuge, Go: cmd/primus-server) per scenario and writes
bench-results/.
serve: the standalone server (same code as cmd/primus-server) with profiling.
report: re-renders the table and chart of a compare results file.
drain: N clients on one primus-server, SIGTERM, and when /readyz failed and
each client was closed: the reconnect spread of the lame-duck shutdown.
floor: a trivial one-process fan-out server (no Primus, no Redis) that writes
one prebuilt frame per member: the machine's floor (compare -stacks floor,...).

Run "primus-bench <command> -h" for the flags.
`

// Main runs the command line; it returns the exit code.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	logf := func(format string, a ...any) {
		fmt.Fprintf(stderr, "%s %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, a...))
	}
	var err error
	switch args[0] {
	case "run":
		err = cmdRun(ctx, args[1:], stdout, stderr, logf)
	case "idle":
		err = cmdIdle(ctx, args[1:], stdout, stderr, logf)
	case "compare":
		err = cmdCompare(ctx, args[1:], stderr, logf)
	case "serve":
		err = cmdServe(ctx, args[1:], stderr)
	case "floor":
		err = cmdFloor(ctx, args[1:], stdout, stderr)
	case "report":
		err = cmdReport(args[1:], stderr)
	case "drain":
		err = cmdDrain(ctx, args[1:], stdout, stderr, logf)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "primus-bench:", err)
		return 1
	}
	return 0
}

func intList(s string) ([]int, error) {
	var out []int
	for f := range strings.SplitSeq(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil {
			return nil, fmt.Errorf("%q: %w", f, err)
		}
		out = append(out, n)
	}
	return out, nil
}

// parseProcs parses name=pid,name=pid.
func parseProcs(s string) ([]Proc, error) {
	var out []Proc
	for f := range strings.SplitSeq(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		name, pid, ok := strings.Cut(f, "=")
		n, err := strconv.Atoi(pid)
		if !ok || err != nil {
			return nil, fmt.Errorf("-pids: want name=pid, got %q", f)
		}
		out = append(out, Proc{Name: name, Pid: n})
	}
	return out, nil
}

func cmdRun(ctx context.Context, args []string, stdout, stderr io.Writer, logf func(string, ...any)) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	targets := fs.String("targets", "", "comma-separated ws://host:port/path endpoints, one per node (required; default path: the protocol's)")
	proto := fs.String("protocol", ProtoPrimus, "the servers' client protocol: primus (the Node fixture, primus-server, floor) or centrifuge")
	clients := fs.Int("clients", 1000, "client connections")
	rooms := fs.Int("rooms", 10, "rooms")
	layout := fs.String("layout", "mod", `"mod": client i joins room i mod rooms; "block": contiguous blocks of clients/rooms`)
	clientNodes := fs.String("client-nodes", "0", "indices of the targets that host clients (client i on the (i mod n)-th)")
	path := fs.String("path", PathWS, "publish path: ws, http, redis-native, redis-compat, redis-centrifuge or members")
	pubNode := fs.Int("publish-node", 1, "index of the target the ws and http publishers use")
	redis := fs.String("redis", "", "Redis host:port for the redis paths")
	channel := fs.String("channel", "", `Redis channel prefix of the servers (default "primus", or "centrifuge" with -protocol centrifuge)`)
	size := fs.Int("size", 100, "message size in bytes")
	rate := fs.Float64("rate", 20000, "deliveries per second (the first step when stepping)")
	dur := fs.Duration("duration", 10*time.Second, "publishing time (per step)")
	warm := fs.Duration("warm", 2*time.Second, "unmeasured load at -rate before measuring (0: none)")
	step := fs.Bool("step", false, "step up to the maximum rate that holds -loss and -p99")
	factor := fs.Float64("step-factor", 2, "rate growth per step until the first failing step")
	bisect := fs.Int("bisect", 3, "bisection steps after the first failing step")
	p99 := fs.Duration("p99", 50*time.Millisecond, "p99 bound of a passing step")
	loss := fs.Float64("loss", 0.001, "loss bound of a passing step (fraction)")
	maxRate := fs.Float64("max-rate", 0, "never step above this many deliveries/s (0: no bound)")
	pids := fs.String("pids", "", "processes to measure: name=pid,... (names server* count as server CPU, redis* as Redis)")
	jsonOut := fs.String("json", "", "append the result as a JSON line to this file")
	loops := fs.Int("loops", 2, "generator epoll loops")
	busy := fs.Duration("busy-pause", 300*time.Microsecond, "generator loops pause this long after a busy epoll_wait (8+ ready connections); negative: never")
	busyEv := fs.Int("busy-events", 8, "ready connections that make an epoll_wait busy (see -busy-pause)")
	cpuProfile := fs.String("cpuprofile", "", "write the generator's own CPU profile to this file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	d, err := dialectFor(*proto)
	if err != nil {
		return err
	}
	cfg := LoadConfig{Name: "run", Stack: "server", Protocol: d.name(), Clients: *clients, Rooms: *rooms, Layout: *layout, Path: *path,
		PublishNode: *pubNode, RedisAddr: *redis, Channel: *channel, Size: *size, Rate: *rate, Duration: *dur, Warm: *warm,
		Loops: *loops, BusyPause: *busy, BusyEvents: *busyEv, Log: logf}
	for t := range strings.SplitSeq(*targets, ",") {
		if t = strings.TrimSpace(t); t == "" {
			continue
		}
		tg, err := parseTarget(t, d)
		if err != nil {
			return err
		}
		cfg.Targets = append(cfg.Targets, tg)
	}
	if len(cfg.Targets) == 0 {
		return errors.New("-targets is required")
	}
	if *pubNode >= len(cfg.Targets) {
		cfg.PublishNode = len(cfg.Targets) - 1
	}
	if cfg.ClientNodes, err = intList(*clientNodes); err != nil {
		return err
	}
	if cfg.Procs, err = parseProcs(*pids); err != nil {
		return err
	}
	if *warm == 0 {
		cfg.Warm = -1
	}
	if *step {
		cfg.Step = &StepConfig{Factor: *factor, Bisect: *bisect, P99: *p99, Loss: *loss, MaxRate: *maxRate}
		if *bisect == 0 {
			cfg.Step.Bisect = -1
		}
	}
	if _, err := raiseNoFile(); err != nil {
		return err
	}
	res, err := RunLoad(ctx, cfg)
	if err != nil {
		return err
	}
	printSteps(stdout, res)
	return appendJSON(*jsonOut, res)
}

func printSteps(w io.Writer, res *LoadResult) {
	fmt.Fprintf(w, "%d clients, %d rooms, path %s, %d-byte messages\n", res.Clients, res.Rooms, res.Path, res.Size)
	fmt.Fprintf(w, "%-4s %10s %10s %9s %8s %5s %8s %8s %8s %8s %8s %10s %10s  %s\n",
		"step", "target/s", "deliv/s", "expected", "loss%", "dups", "p50ms", "p90ms", "p99ms", "p99.9ms", "maxms", "srvµs/dlv", "redisCPUs", "verdict")
	for _, s := range res.Steps {
		v := "ok"
		if !s.Pass {
			v = "FAIL: " + s.Reason
		}
		fmt.Fprintf(w, "%-4d %10.0f %10.0f %9d %8.4f %5d %8.2f %8.2f %8.2f %8.2f %8.1f %10.2f %10.2f  %s\n",
			s.Step, s.TargetRate, s.DeliveredPerSec, s.Expected, s.Loss*100, s.Duplicates,
			s.Latency.P50, s.Latency.P90, s.Latency.P99, s.Latency.P999, s.Latency.Max, s.CPUPerDelivery, s.RedisCPU, v)
	}
	if res.Max != nil {
		fmt.Fprintf(w, "maximum: %.0f deliveries/s (p99 %.2f ms, %.2f µs server CPU per delivery)\n",
			res.Max.DeliveredPerSec, res.Max.Latency.P99, res.Max.CPUPerDelivery)
	}
}

func appendJSON(file string, v any) error {
	if file == "" {
		return nil
	}
	f, err := os.OpenFile(file, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	return json.NewEncoder(f).Encode(v)
}

func cmdIdle(ctx context.Context, args []string, stdout, stderr io.Writer, logf func(string, ...any)) error {
	fs := flag.NewFlagSet("idle", flag.ContinueOnError)
	fs.SetOutput(stderr)
	target := fs.String("target", "", "ws://host:port/path endpoint (required; default path: the protocol's)")
	proto := fs.String("protocol", ProtoPrimus, "the server's client protocol: primus or centrifuge")
	clients := fs.Int("clients", 10000, "idle connections")
	pid := fs.Int("pid", 0, "server process whose RSS is measured")
	settle := fs.Duration("settle", 5*time.Second, "idle time before measuring")
	jsonOut := fs.String("json", "", "append the result as a JSON line to this file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	d, err := dialectFor(*proto)
	if err != nil {
		return err
	}
	tg, err := parseTarget(*target, d)
	if err != nil {
		return err
	}
	if _, err := raiseNoFile(); err != nil {
		return err
	}
	res, err := RunIdle(ctx, IdleConfig{Name: "idle", Stack: "server", Protocol: d.name(), Target: tg, Clients: *clients, Pid: *pid, Settle: *settle, Log: logf})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%d idle connections in %.1fs: RSS %d -> %d KiB (peak %d KiB): %.0f bytes per connection, %d lost\n",
		res.Connected, res.ConnectS, res.BaseRSSKB, res.RSSKB, res.PeakKB, res.PerConnB, res.LostConns)
	return appendJSON(*jsonOut, res)
}

func cmdCompare(ctx context.Context, args []string, stderr io.Writer, logf func(string, ...any)) error {
	fs := flag.NewFlagSet("compare", flag.ContinueOnError)
	fs.SetOutput(stderr)
	quick := fs.Bool("quick", false, "one run with short steps and 10,000 idle connections (a few minutes)")
	runs := fs.Int("runs", 3, "runs per scenario and stack (medians are reported)")
	scen := fs.String("scenarios", "S1,S2,S3,S4,S5", "scenarios to run")
	stacks := fs.String("stacks", "node,centrifuge,go,floor", "stacks to run: node, centrifuge, go, floor (the trivial reference server, S1-S3 only), go-cluster (Go on a 3-master Redis Cluster), go-history (Go with history for every room and clients joined with recover, S1-S3 only)")
	out := fs.String("out", "bench-results", "results directory (relative to -repo)")
	update := fs.String("update", "", "markdown file whose results section (between the primus-bench markers) is rewritten, e.g. BENCHMARKS.md")
	repo := fs.String("repo", "", "module root (default: found upwards from the working directory)")
	nodeDir := fs.String("node-dir", "", "the Node fixture (default <repo>/testdata/node)")
	goRedis := fs.String("go-redis-mode", "native", "the Go nodes' -redis-mode (native or compat)")
	idle := fs.String("idle", "", "idle connection counts for S5 (default 10000,19900; quick: 10000)")
	ping := fs.Duration("ping-interval", 30*time.Second, "heartbeat interval of the Primus stacks (the Primus default; Centrifuge keeps its own, 25s)")
	profile := fs.String("profile", "", "run the Go nodes under \"primus-bench serve\" and write their CPU profiles into this directory")
	if err := fs.Parse(args); err != nil {
		return err
	}
	c := CompareConfig{Runs: *runs, Quick: *quick, GoRedis: *goRedis, PingMs: int(ping.Milliseconds()), Log: logf, Profile: *profile}
	var err error
	if c.Repo = *repo; c.Repo == "" {
		if c.Repo, err = findRepo(); err != nil {
			return err
		}
	}
	if c.NodeDir = *nodeDir; c.NodeDir == "" {
		c.NodeDir = filepath.Join(c.Repo, "testdata", "node")
	}
	c.Out = *out
	if !filepath.IsAbs(c.Out) {
		c.Out = filepath.Join(c.Repo, c.Out)
	}
	if c.Update = *update; c.Update != "" && !filepath.IsAbs(c.Update) {
		c.Update = filepath.Join(c.Repo, c.Update)
	}
	for s := range strings.SplitSeq(*scen, ",") {
		if s = strings.ToUpper(strings.TrimSpace(s)); s != "" {
			c.Scenarios = append(c.Scenarios, s)
		}
	}
	for s := range strings.SplitSeq(*stacks, ",") {
		if s = strings.TrimSpace(s); s != "" {
			c.Stacks = append(c.Stacks, s)
		}
	}
	if c.Quick {
		if !isFlagSet(fs, "runs") {
			c.Runs = 1
		}
		c.Idle = []int{10000}
	}
	if *idle != "" {
		if c.Idle, err = intList(*idle); err != nil {
			return err
		}
	}
	return Compare(ctx, c)
}

func isFlagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// findRepo looks upwards from the working directory for this module's go.mod.
func findRepo() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := wd; ; d = filepath.Dir(d) {
		if b, err := os.ReadFile(filepath.Join(d, "go.mod")); err == nil && strings.Contains(string(b), "module github.com/primusgo/primus\n") {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", errors.New("run inside the primus repository or give -repo")
		}
	}
}

func cmdFloor(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("floor", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:0", "listen address")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ln, err := net.Listen("tcp4", *addr)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "listening %d\n", ln.Addr().(*net.TCPAddr).Port)
	return serveFloor(ctx, ln)
}

func cmdReport(args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("report", flag.ContinueOnError)
	fs.SetOutput(stderr)
	in := fs.String("in", "bench-results/compare.jsonl", "results file written by compare")
	update := fs.String("update", "", "markdown file whose results section is rewritten (e.g. BENCHMARKS.md)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	base := strings.TrimSuffix(filepath.Base(*in), ".jsonl")
	return Report(*in, filepath.Dir(*in), base, *update)
}
