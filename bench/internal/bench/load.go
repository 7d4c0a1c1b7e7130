package bench

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"
)

// LoadConfig describes one load run: who connects where, who publishes
// how, and the rates.
type LoadConfig struct {
	Name     string   // scenario name for the report
	Stack    string   // system under test, for the report
	Protocol string   // the servers' client protocol (ProtoPrimus, the default, or ProtoCentrifuge)
	Targets  []Target // server nodes

	Clients     int
	Rooms       int
	Layout      string // "mod": client i joins room i mod Rooms; "block": contiguous blocks of Clients/Rooms
	ClientNodes []int  // targets hosting the clients, client i on ClientNodes[i mod len]

	Path        string // publish path (PathWS, ...)
	PublishNode int    // target of the ws and http paths
	RedisAddr   string // redis paths
	Channel     string // Redis channel prefix (default "primus"; Centrifuge: "centrifuge")
	Size        int    // message size in bytes

	// Fixed rate: Rate deliveries per second for Duration. With Step set,
	// Rate is the first step and the run steps up to the maximum.
	Rate     float64
	Duration time.Duration
	Step     *StepConfig
	// Warm is a period of unmeasured load at Rate before the measurement
	// (default 2s; negative: none).
	Warm time.Duration

	// Processes to measure (CPU, RSS): name -> pid. Names starting with
	// "server" count as server CPU.
	Procs []Proc

	Parallel   int           // concurrent dials (default 32)
	Loops      int           // generator epoll loops (default 2)
	BusyPause  time.Duration // see PoolConfig.BusyPause
	BusyEvents int
	Log        func(format string, args ...any)
}

// Proc is a measured process.
type Proc struct {
	Name string `json:"name"`
	Pid  int    `json:"pid"`
}

// StepConfig finds the maximum rate: double until a step fails, then
// bisect between the last passing and the first failing rate.
type StepConfig struct {
	Factor  float64       // growth until the first failure (default 2)
	Bisect  int           // bisection steps after it (default 3)
	MaxStep int           // steps in all (default 14)
	P99     time.Duration // p99 bound of a passing step
	Loss    float64       // loss bound of a passing step (default 0.001)
	MaxRate float64       // do not go above this many deliveries/s (0: no bound)
}

// StepResult is one measured step (or the whole of a fixed-rate run).
type StepResult struct {
	Scenario string `json:"scenario"`
	Stack    string `json:"stack"`
	Step     int    `json:"step"`

	TargetRate      float64 `json:"target_deliveries_per_s"`
	TargetPubRate   float64 `json:"target_publishes_per_s"`
	AchievedPubRate float64 `json:"achieved_publishes_per_s"`
	Seconds         float64 `json:"seconds"`
	Published       int64   `json:"published"`
	Expected        int64   `json:"expected"`
	Received        int64   `json:"received"`
	Duplicates      int64   `json:"duplicates"`
	Lost            int64   `json:"lost"`
	Loss            float64 `json:"loss"`
	Misrouted       int64   `json:"misrouted"`
	Refused         int64   `json:"refused,omitempty"` // commands (publishes) the servers refused
	Gaps            int64   `json:"gaps"`
	DeliveredPerSec float64 `json:"delivered_per_s"`
	PublishLagMs    float64 `json:"publish_lag_max_ms"`
	DrainMs         float64 `json:"drain_ms"`
	LostConns       int64   `json:"lost_connections"`
	FramesPerRead   float64 `json:"frames_per_read"`

	Latency Latency `json:"latency_ms"`

	Procs           []ProcResult `json:"procs"`
	ServerCPU       float64      `json:"server_cpu_s"`
	RedisCPU        float64      `json:"redis_cpu_s"`
	GeneratorCPU    float64      `json:"generator_cpu_s"`
	CPUPerDelivery  float64      `json:"server_cpu_us_per_delivery"`
	CPUPerDelivery2 float64      `json:"server_and_redis_cpu_us_per_delivery"`

	Pass   bool   `json:"pass"`
	Reason string `json:"reason,omitempty"`
}

// Latency quantiles in milliseconds.
type Latency struct {
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p99_9"`
	Max  float64 `json:"max"`
	N    int64   `json:"n"`
}

// ProcResult is a process's CPU during a step and its memory after it.
type ProcResult struct {
	Name   string  `json:"name"`
	CPU    float64 `json:"cpu_s"`
	RSSKB  int64   `json:"rss_kb"`
	PeakKB int64   `json:"peak_rss_kb"`
}

// LoadResult is a run: its steps and, when stepping, the best passing one.
type LoadResult struct {
	Scenario string       `json:"scenario"`
	Stack    string       `json:"stack"`
	Clients  int          `json:"clients"`
	Rooms    int          `json:"rooms"`
	Path     string       `json:"path"`
	Size     int          `json:"size"`
	SetupS   float64      `json:"setup_s"`
	Steps    []StepResult `json:"steps"`
	Max      *StepResult  `json:"max,omitempty"`
}

func (c *LoadConfig) defaults() error {
	if c.Clients <= 0 || c.Rooms <= 0 || c.Rooms > c.Clients {
		return fmt.Errorf("need 0 < rooms (%d) <= clients (%d)", c.Rooms, c.Clients)
	}
	if len(c.Targets) == 0 {
		return errors.New("no targets")
	}
	if len(c.ClientNodes) == 0 {
		c.ClientNodes = []int{0}
	}
	for _, n := range append(c.ClientNodes, c.PublishNode) {
		if n < 0 || n >= len(c.Targets) {
			return fmt.Errorf("node index %d out of range (%d targets)", n, len(c.Targets))
		}
	}
	if c.Layout == "" {
		c.Layout = "mod"
	}
	if c.Channel == "" {
		c.Channel = "primus"
		if c.Protocol == ProtoCentrifuge {
			c.Channel = centrifugePrefix
		}
	}
	if c.Size <= 0 {
		c.Size = 100
	}
	if c.Duration <= 0 {
		c.Duration = 10 * time.Second
	}
	if c.Warm == 0 {
		c.Warm = 2 * time.Second
	}
	if c.Log == nil {
		c.Log = func(string, ...any) {}
	}
	if s := c.Step; s != nil {
		if s.Factor <= 1 {
			s.Factor = 2
		}
		if s.Bisect < 0 {
			s.Bisect = 0
		} else if s.Bisect == 0 {
			s.Bisect = 3
		}
		if s.MaxStep <= 0 {
			s.MaxStep = 14
		}
		if s.Loss <= 0 {
			s.Loss = 0.001
		}
	}
	if c.Rate <= 0 {
		return errors.New("rate must be positive")
	}
	return nil
}

// specs places the clients.
func (c *LoadConfig) specs() (specs []ClientSpec, members [][]int) {
	members = make([][]int, c.Rooms)
	per := c.Clients / c.Rooms
	for i := range c.Clients {
		room := i % c.Rooms
		if c.Layout == "block" {
			room = min(i/per, c.Rooms-1)
		}
		specs = append(specs, ClientSpec{Target: c.ClientNodes[i%len(c.ClientNodes)], Room: room})
		members[room] = append(members[room], i)
	}
	return specs, members
}

// RunLoad connects the clients, warms every room up, and runs the fixed
// rate or the steps.
func RunLoad(ctx context.Context, cfg LoadConfig) (*LoadResult, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	specs, members := cfg.specs()
	res := &LoadResult{Scenario: cfg.Name, Stack: cfg.Stack, Clients: cfg.Clients, Rooms: cfg.Rooms, Path: cfg.Path, Size: cfg.Size}

	pool, err := NewPool(PoolConfig{Targets: cfg.Targets, Protocol: cfg.Protocol, Loops: cfg.Loops, BusyPause: cfg.BusyPause, BusyEvents: cfg.BusyEvents})
	if err != nil {
		return nil, err
	}
	defer pool.Close()
	start := time.Now()
	if err := pool.Dial(ctx, specs, cfg.Parallel); err != nil {
		return nil, fmt.Errorf("connecting clients: %w", err)
	}
	res.SetupS = time.Since(start).Seconds()
	cfg.Log("%s/%s: %d clients connected and joined in %.1fs", cfg.Stack, cfg.Name, cfg.Clients, res.SetupS)

	pub, err := newPublisher(&cfg, pool, members)
	if err != nil {
		return nil, fmt.Errorf("publisher: %w", err)
	}
	defer pub.close()

	r := &runner{cfg: &cfg, pool: pool, pub: pub, members: members, seq: make([]int64, cfg.Rooms*maxWriters)}
	if err := r.warmup(ctx); err != nil {
		return nil, err
	}
	if cfg.Warm > 0 {
		// Unmeasured load first: JIT, heap and stack growth, first GCs.
		if _, err := r.step(ctx, -1, cfg.Rate, cfg.Warm, 0, 0); err != nil {
			return nil, err
		}
	}
	if cfg.Step == nil {
		st, err := r.step(ctx, 0, cfg.Rate, cfg.Duration, 0, 0)
		if err != nil {
			return nil, err
		}
		res.Steps = append(res.Steps, *st)
		return res, nil
	}
	res.Steps, res.Max, err = r.stepUp(ctx)
	return res, err
}

func newPublisher(cfg *LoadConfig, pool *Pool, members [][]int) (publisher, error) {
	switch cfg.Path {
	case PathWS:
		return dialWSPublisher(cfg.Targets[cfg.PublishNode], pool.d, cfg.Size)
	case PathHTTP:
		if pool.d.name() != ProtoPrimus {
			return nil, fmt.Errorf("%w: the http path is the Primus stacks' POST /api/publish, not %s's", errNoPublisher, pool.d.name())
		}
		return newHTTPPublisher(cfg.Targets[cfg.PublishNode], cfg.Size), nil
	case PathRedisNative, PathRedisCompat, PathRedisCentrifuge:
		if cfg.RedisAddr == "" {
			return nil, errors.New("the redis paths need the Redis address")
		}
		format := map[string]redisFormat{PathRedisNative: redisNative, PathRedisCompat: redisCompat, PathRedisCentrifuge: redisCentrifuge}[cfg.Path]
		return dialRedisPublisher(cfg.RedisAddr, cfg.Channel, format, cfg.Size)
	case PathMembers:
		return &memberPublisher{d: pool.d, pool: pool, members: members, pb: payloadBuf{size: cfg.Size}}, nil
	}
	return nil, fmt.Errorf("%w %q (want ws, http, redis-native, redis-compat, redis-centrifuge or members)", errNoPublisher, cfg.Path)
}

type runner struct {
	cfg     *LoadConfig
	pool    *Pool
	pub     publisher
	members [][]int
	seq     []int64 // per room and writer
	next    int64   // messages published so far (round robin over rooms)
}

// warmup publishes seq-0 messages to every room until every client got
// one: subscriptions (Redis SUBSCRIBE after a join) are in place after it.
func (r *runner) warmup(ctx context.Context) error {
	deadline := time.Now().Add(60 * time.Second)
	batch := make([]pubMsg, 0, len(r.members))
	for round := 0; ; round++ {
		if r.pool.Warmed() >= int64(r.cfg.Clients) {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("warm-up: only %d of %d clients received a message in 60s", r.pool.Warmed(), r.cfg.Clients)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		batch = batch[:0]
		now := r.pool.now()
		for room, m := range r.members {
			batch = append(batch, pubMsg{room: room, writer: round % len(m), t: now})
		}
		for i := 0; i < len(batch); i += 500 {
			if err := r.pub.publish(batch[i:min(i+500, len(batch))]); err != nil {
				return fmt.Errorf("warm-up: %w", err)
			}
		}
		sleepPrecise(200 * time.Millisecond)
	}
	// Let stragglers of the warm-up arrive, then start counting afresh.
	time.Sleep(300 * time.Millisecond)
	r.pool.Swap()
	return nil
}

// fanout is the mean number of deliveries per publish.
func (r *runner) fanout() float64 { return float64(r.cfg.Clients) / float64(r.cfg.Rooms) }

// step publishes at rate deliveries/s for d, waits for the deliveries and
// measures. The rate is open loop: messages are due at start + k/rate,
// whatever the servers do; each carries the time it was handed to the
// socket (the generator's lag behind the schedule is reported).
func (r *runner) step(ctx context.Context, n int, rate float64, d time.Duration, p99 time.Duration, maxLoss float64) (*StepResult, error) {
	cfg := r.cfg
	pubRate := rate / r.fanout()
	total := int64(math.Round(pubRate * d.Seconds()))
	if total < 1 {
		total = 1
	}
	before := sampleProcs(cfg.Procs)
	recvBefore := r.pool.Received()
	lostBefore := r.pool.Lost()
	interval := float64(time.Second) / pubRate

	var (
		expected, sent int64
		lagMax         time.Duration
		batch          []pubMsg
		pubErr         error
	)
	start := time.Now()
	for sent < total {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		now := time.Now()
		elapsed := now.Sub(start)
		due := min(int64(float64(elapsed)/interval)+1, total)
		if due <= sent {
			sleepPrecise(time.Duration(float64(sent)*interval) - elapsed)
			continue
		}
		if lag := elapsed - time.Duration(float64(sent)*interval); lag > lagMax {
			lagMax = lag
		}
		due = min(due, sent+1000)
		t := r.pool.now()
		batch = batch[:0]
		for k := sent; k < due; k++ {
			g := r.next
			r.next++
			room := int(g % int64(cfg.Rooms))
			w := 0
			if cfg.Path == PathMembers {
				w = int(g/int64(cfg.Rooms)) % len(r.members[room])
			}
			if w >= maxWriters {
				w = 0
			}
			si := room*maxWriters + w
			r.seq[si]++
			batch = append(batch, pubMsg{room: room, writer: w, seq: r.seq[si], t: t})
			expected += int64(len(r.members[room]))
		}
		if err := r.pub.publish(batch); err != nil {
			pubErr = err
			break
		}
		sent = due
	}
	// The publishing time is the schedule's (total messages at the rate),
	// or longer if the publisher fell behind it.
	pubTime := max(time.Since(start), time.Duration(float64(total)*interval))

	// Drain: until everything expected arrived, or nothing came for a while.
	drainStart := time.Now()
	last, lastChange := r.pool.Received(), time.Now()
	for r.pool.Received()-recvBefore < expected {
		time.Sleep(20 * time.Millisecond)
		got := r.pool.Received()
		if got != last {
			last, lastChange = got, time.Now()
		}
		quiet := time.Since(lastChange)
		if quiet > 2*time.Second || time.Since(drainStart) > 30*time.Second || ctx.Err() != nil {
			break
		}
	}
	drain := time.Since(drainStart)
	after := sampleProcs(cfg.Procs)
	st := r.pool.Swap()

	res := &StepResult{
		Scenario:        cfg.Name,
		Stack:           cfg.Stack,
		Step:            n,
		TargetRate:      rate,
		TargetPubRate:   pubRate,
		AchievedPubRate: float64(sent) / pubTime.Seconds(),
		Seconds:         pubTime.Seconds(),
		Published:       sent,
		Expected:        expected,
		Received:        st.received,
		Duplicates:      st.dups,
		Misrouted:       st.misrouted,
		Refused:         st.refused,
		Gaps:            st.gaps,
		PublishLagMs:    ms(lagMax),
		DrainMs:         ms(drain),
		LostConns:       r.pool.Lost() - lostBefore,
		Latency:         latencyOf(st),
	}
	if st.reads > 0 {
		res.FramesPerRead = float64(st.received) / float64(st.reads)
	}
	unique := st.received - st.dups
	res.Lost = max(expected-unique, 0)
	if expected > 0 {
		res.Loss = float64(res.Lost) / float64(expected)
	}
	res.DeliveredPerSec = float64(unique) / pubTime.Seconds()
	res.Procs, res.ServerCPU, res.RedisCPU = diffProcs(cfg.Procs, before, after)
	res.GeneratorCPU = after.self - before.self
	if unique > 0 {
		res.CPUPerDelivery = res.ServerCPU * 1e6 / float64(unique)
		res.CPUPerDelivery2 = (res.ServerCPU + res.RedisCPU) * 1e6 / float64(unique)
	}
	res.Pass, res.Reason = judge(res, p99, maxLoss)
	if pubErr != nil {
		res.Pass, res.Reason = false, "publish: "+pubErr.Error()
	}
	if n < 0 {
		cfg.Log("%s/%s warm-up load: %s", cfg.Stack, cfg.Name, res.summary())
	} else {
		cfg.Log("%s/%s step %d: %s", cfg.Stack, cfg.Name, n, res.summary())
	}
	return res, nil
}

// judge decides whether a step holds the rate: everything delivered once
// (loss within maxLoss), p99 within bound (if any), the publisher on
// schedule, no connection lost.
func judge(s *StepResult, p99 time.Duration, maxLoss float64) (bool, string) {
	switch {
	case s.LostConns > 0:
		return false, fmt.Sprintf("%d connections lost", s.LostConns)
	case s.Duplicates > 0:
		return false, fmt.Sprintf("%d duplicates", s.Duplicates)
	case s.Misrouted > 0:
		return false, fmt.Sprintf("%d misrouted", s.Misrouted)
	case s.Refused > 0:
		return false, fmt.Sprintf("%d commands refused", s.Refused)
	case s.Loss > maxLoss:
		return false, fmt.Sprintf("loss %.3f%% > %.3f%%", s.Loss*100, maxLoss*100)
	case p99 > 0 && s.Latency.P99 > ms(p99):
		return false, fmt.Sprintf("p99 %.1f ms > %.0f ms", s.Latency.P99, ms(p99))
	case s.AchievedPubRate < 0.97*s.TargetPubRate:
		return false, fmt.Sprintf("publisher behind: %.0f/s of %.0f/s", s.AchievedPubRate, s.TargetPubRate)
	}
	return true, ""
}

func (s *StepResult) summary() string {
	verdict := "ok"
	if !s.Pass {
		verdict = "FAIL " + s.Reason
	}
	return fmt.Sprintf("target %.0f/s delivered %.0f/s loss %.4f%% dups %d p50 %.2f p99 %.2f p99.9 %.2f max %.1f ms, server CPU %.2f µs/delivery (gen %.1fs cpu, %.1f msgs/read) %s",
		s.TargetRate, s.DeliveredPerSec, s.Loss*100, s.Duplicates, s.Latency.P50, s.Latency.P99, s.Latency.P999, s.Latency.Max, s.CPUPerDelivery, s.GeneratorCPU, s.FramesPerRead, verdict)
}

// stepUp doubles the rate until a step fails, then bisects.
func (r *runner) stepUp(ctx context.Context) ([]StepResult, *StepResult, error) {
	sc := r.cfg.Step
	var (
		steps      []StepResult
		best       *StepResult
		pass, fail float64
	)
	rate := r.cfg.Rate
	bisected := 0
	for n := 0; n < sc.MaxStep; n++ {
		if sc.MaxRate > 0 && rate > sc.MaxRate {
			rate = sc.MaxRate
		}
		st, err := r.step(ctx, n, rate, r.cfg.Duration, sc.P99, sc.Loss)
		if err != nil {
			return steps, best, err
		}
		steps = append(steps, *st)
		if st.Pass {
			if best == nil || st.DeliveredPerSec > best.DeliveredPerSec {
				b := *st
				best = &b
			}
			pass = max(pass, rate)
		} else {
			if rate <= pass {
				break // noise: a lower rate failed after a higher one passed
			}
			fail = rate
		}
		if st.LostConns > 0 || r.pool.Lost() > 0 {
			break // the clients are no longer all there
		}
		if fail == 0 {
			if sc.MaxRate > 0 && rate >= sc.MaxRate {
				break
			}
			rate *= sc.Factor
			continue
		}
		if pass == 0 {
			rate /= sc.Factor
			if rate < 1 {
				break
			}
			continue
		}
		if bisected >= sc.Bisect {
			break
		}
		bisected++
		rate = (pass + fail) / 2
	}
	return steps, best, nil
}

func latencyOf(st *recvStats) Latency {
	h := st.hist
	q := func(p float64) float64 { return float64(h.ValueAtQuantile(p)) / 1000 }
	return Latency{P50: q(50), P90: q(90), P99: q(99), P999: q(99.9), Max: float64(h.Max()) / 1000, N: h.TotalCount()}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
