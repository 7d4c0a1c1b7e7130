package serverapp

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/primusgo/primus/internal/redistest"
	"github.com/primusgo/primus/redisbroker"
)

// BenchmarkRecover10k measures the recovery of 10 000 positioned clients
// after a node restart, on a real Redis:
//
//   - node A and node B, Apps on Redis brokers keeping the history of
//     every room (HistorySize 1000);
//   - N raw WebSocket clients on A, each joined to one of 100 rooms with
//     recover:true, tracking the offsets of their positioned deliveries;
//   - a publisher writing to the 100 rooms through B, 1000 writes/s in
//     all (10/s per room), from before the restart to the end;
//   - A is shut down (its clients see their connections end), the writes
//     go on for 1 s, a new A starts on the same Redis (a new port), and all
//     N clients reconnect at once, each joining with since {offset, epoch}.
//
// Per client, the latency is from its dial to its join ack. Every client
// must get recovered:true with every write it missed replayed before the
// ack, in order, then the live writes without a gap or a duplicate up to
// the last write (a live write may overtake the ack: it is counted in
// acks-overtaken and checked as part of the stream). The timed part
// (ns/op) is the reconnection, until every client is recovered; setup and
// checks are not timed. Run it with -benchtime 1x.
//
// The clients and both nodes live in this process, so each client takes
// two descriptors: N is cut to what RLIMIT_NOFILE allows (the soft limit
// is first raised to the hard one) and logged. Environment: RECOVER_CLIENTS
// sets N, RECOVER_RATE the write rate (writes/s reports what the
// publisher achieved: its writes are synchronous and it falls behind on a
// saturated machine), RECOVER_PROGRESS=1 logs the reconnection's progress
// every second.
func BenchmarkRecover10k(b *testing.B) {
	n := recoverClients(b, 10_000)
	srv := redistest.StartServer(b)
	var lat, total, replayed, overtaken, writeRate, latDial, latJoin []float64
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		r := runRecover(b, srv, n, i)
		lat = append(lat, r.lat...)
		latDial = append(latDial, r.dial...)
		latJoin = append(latJoin, r.join...)
		total = append(total, r.total)
		replayed = append(replayed, r.replayed)
		overtaken = append(overtaken, r.overtaken)
		writeRate = append(writeRate, r.writeRate)
	}
	slices.Sort(lat)
	slices.Sort(latDial)
	slices.Sort(latJoin)
	b.ReportMetric(float64(n), "clients")
	b.ReportMetric(pct(lat, 50), "p50-ms")
	b.ReportMetric(pct(lat, 99), "p99-ms")
	b.ReportMetric(lat[len(lat)-1], "max-ms")
	b.ReportMetric(pct(latDial, 99), "dial-p99-ms")
	b.ReportMetric(pct(latJoin, 50), "join-p50-ms")
	b.ReportMetric(pct(latJoin, 99), "join-p99-ms")
	b.ReportMetric(mean(total), "all-recovered-ms")
	b.ReportMetric(mean(replayed), "replayed/client")
	b.ReportMetric(mean(overtaken), "acks-overtaken")
	b.ReportMetric(mean(writeRate), "writes/s")
}

// The setup of BenchmarkRecover10k.
const (
	recoverRooms   = 100
	recoverRate    = 1000 // writes per second in all (RECOVER_RATE sets it)
	recoverWriters = 100  // each writes to recoverRooms/recoverWriters rooms
	recoverHistory = 1000
	recoverPhase   = 2 * time.Minute // bounds each phase
)

// recoverClients is how many clients fit the descriptor limit (two each,
// and some for the rest), at most want.
func recoverClients(b *testing.B, want int) int {
	if s := os.Getenv("RECOVER_CLIENTS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 {
			b.Fatalf("RECOVER_CLIENTS=%q", s)
		}
		return n
	}
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		b.Fatal(err)
	}
	if lim.Cur < lim.Max {
		lim.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			b.Logf("raising RLIMIT_NOFILE to %d: %v", lim.Max, err)
		}
		_ = syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim)
	}
	n := min(want, (int(lim.Cur)-200)/2)
	if n < want {
		b.Logf("RLIMIT_NOFILE %d (hard %d): %d clients instead of %d (each takes a client and a server descriptor)", lim.Cur, lim.Max, n, want)
	}
	if n < 100 {
		b.Fatalf("RLIMIT_NOFILE %d leaves room for %d clients", lim.Cur, n)
	}
	return n
}

// recoverNode is node A or B.
type recoverNode struct {
	once sync.Once
	app  *App
	b    *redisbroker.Broker
	ts   *httptest.Server
}

func startRecoverNode(b *testing.B, cfg redisbroker.Config) *recoverNode {
	br, err := redisbroker.New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	app, err := New(Options{Broker: br, HistorySize: recoverHistory, HistoryTTL: 10 * time.Minute, PingInterval: -1})
	if err != nil {
		_ = br.Close()
		b.Fatal(err)
	}
	ts := httptest.NewServer(app)
	n := &recoverNode{app: app, b: br, ts: ts}
	b.Cleanup(n.stop)
	return n
}

// stop shuts the node down (again: a no-op).
func (n *recoverNode) stop() {
	n.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = n.app.Shutdown(ctx)
		n.ts.Close()
	})
}

type recoverResult struct {
	lat, dial, join []float64 // per client, ms
	total           float64   // ms until every client was recovered
	replayed        float64   // writes replayed per client
	overtaken       float64   // clients that got a live write before their ack
	writeRate       float64   // writes per second the publisher achieved
}

func runRecover(b *testing.B, srv *redistest.Server, n, iter int) recoverResult {
	cfg := redisbroker.Config{
		Addr:           srv.Addr(),
		Channel:        fmt.Sprintf("rec%d-%d", iter, time.Now().UnixNano()),
		DialTimeout:    time.Second,
		CommandTimeout: 5 * time.Second,
		ProbeInterval:  time.Second,
		MaxBackoff:     200 * time.Millisecond,
	}
	nodeB := startRecoverNode(b, cfg)
	nodeA := startRecoverNode(b, cfg)
	rooms := make([]string, recoverRooms)
	for i := range rooms {
		rooms[i] = "r" + strconv.Itoa(i)
	}
	clients := make([]*recClient, n)
	for i := range clients {
		clients[i] = &recClient{room: rooms[i%len(rooms)]}
		clients[i].reset()
	}
	defer func() {
		for _, c := range clients {
			c.close()
		}
	}()

	// Connect every client to A, joined with recover (not timed).
	setup := time.Now()
	forEach(clients, 256, func(c *recClient) {
		c.connect(nodeA.ts.URL+"/primus", fmt.Sprintf(`{"join":%q,"recover":true,"ack":1}`, c.room), false)
	})
	if err := firstErr(clients); err != nil {
		b.Fatalf("connecting to A: %v", err)
	}
	b.Logf("%d clients joined on A in %v; load %s", n, time.Since(setup).Round(time.Millisecond), loadavg())

	pubStart := time.Now()
	pub := startRecoverPublisher(nodeB, rooms)
	defer pub.halt()
	time.Sleep(2 * time.Second)
	if err := firstErr(clients); err != nil {
		b.Fatalf("before the restart: %v", err)
	}

	// A goes down; its clients see their connections end.
	nodeA.stop()
	if !waitAll(clients, recoverPhase, func(c *recClient) <-chan struct{} { return c.done }) {
		b.Fatal("clients still connected after A's shutdown")
	}
	time.Sleep(time.Second)
	nodeA = startRecoverNode(b, cfg)
	b.Logf("A restarted; %d descriptors open, %d writes so far; load %s", openFDs(), pub.writes.Load(), loadavg())

	// All at once: dial, join with since, wait for the ack (timed).
	url := nodeA.ts.URL + "/primus"
	gate := make(chan struct{})
	var wg sync.WaitGroup
	for _, c := range clients {
		c.reset()
		join := fmt.Sprintf(`{"join":%q,"since":{"offset":%d,"epoch":%q},"ack":1}`, c.room, c.last.Load(), c.epoch)
		wg.Go(func() {
			<-gate
			c.connect(url, join, true)
		})
	}
	srv.Do("CONFIG", "RESETSTAT")
	progress := make(chan struct{})
	var progressDone sync.WaitGroup
	if os.Getenv("RECOVER_PROGRESS") != "" {
		progressDone.Go(func() { logProgress(b, progress, srv, nodeA, clients) })
	}
	b.StartTimer()
	start := time.Now()
	close(gate)
	acked := waitAcked(clients, recoverPhase)
	total := time.Since(start)
	b.StopTimer()
	close(progress)
	progressDone.Wait()
	logCommandStats(b, srv)
	wg.Wait()
	if acked < n {
		// The figures of those that did recover, and why the others did not.
		var lat []float64
		why := map[string]int{}
		for _, c := range clients {
			select {
			case <-c.acked:
				lat = append(lat, ms(c.latency))
			default:
				if err := c.failure(); err != nil {
					why[err.Error()]++
				} else {
					why["no ack yet"]++
				}
			}
		}
		slices.Sort(lat)
		b.Logf("recovered: %d, p50 %.0f ms, p99 %.0f ms, max %.0f ms; load %s", len(lat), pct(lat, 50), pct(lat, 99), pct(lat, 100), loadavg())
		b.Fatalf("%d of %d clients not recovered after %v: %v", n-acked, n, total.Round(time.Millisecond), why)
	}
	b.Logf("all %d recovered in %v; load %s", n, total.Round(time.Millisecond), loadavg())

	// Live writes after the recovery, then every client must reach each
	// room's last offset with no gap and no duplicate.
	time.Sleep(time.Second)
	pub.halt()
	writeRate := float64(pub.writes.Load()) / time.Since(pubStart).Seconds()
	if e := pub.errors.Load(); e > 0 {
		b.Errorf("%d writes failed", e)
	}
	tops := map[string]uint64{}
	for _, r := range rooms {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		pos, err := nodeB.b.Position(ctx, r)
		cancel()
		if err != nil {
			b.Fatal(err)
		}
		tops[r] = pos.Offset
	}
	deadline := time.Now().Add(recoverPhase)
	for _, c := range clients {
		for c.last.Load() < tops[c.room] && c.failure() == nil && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
	}
	res := recoverResult{total: ms(total), writeRate: writeRate}
	var replayed, overtaken int
	for _, c := range clients {
		if err := c.failure(); err != nil {
			b.Fatalf("%s: %v", c.room, err)
		}
		if l := c.last.Load(); l != tops[c.room] {
			b.Fatalf("a client of %s reached offset %d, the room's last is %d", c.room, l, tops[c.room])
		}
		res.lat = append(res.lat, ms(c.latency))
		res.dial = append(res.dial, ms(c.dialTime))
		res.join = append(res.join, ms(c.latency-c.dialTime))
		replayed += c.replayed
		if c.overtaken > 0 {
			overtaken++
		}
	}
	res.replayed = float64(replayed) / float64(n)
	res.overtaken = float64(overtaken)
	s := nodeA.app.Primus.Stats()
	b.Logf("%d writes; node A: recovered %d, not recovered %d, gaps %d; %d deliveries replayed",
		pub.writes.Load(), s.HistoryRecovered, s.HistoryNotRecovered, s.HistoryGaps, replayed)
	if s.HistoryRecovered != uint64(n) || s.HistoryNotRecovered != 0 {
		b.Fatalf("node A recovered %d and did not recover %d of %d joins", s.HistoryRecovered, s.HistoryNotRecovered, n)
	}
	return res
}

// recClient is one positioned client. Its reader goroutine owns the
// fields below the connection until done is closed; last is read by the
// benchmark too.
type recClient struct {
	room  string
	epoch string

	last      atomic.Uint64 // the last offset received in order
	pending   []uint64      // offsets received before the join ack
	replayed  int           // writes replayed before the since join's ack
	overtaken int           // live writes that arrived before it
	dialTime  time.Duration
	latency   time.Duration // from the dial to the join ack

	conn  *websocket.Conn
	acked chan struct{}
	done  chan struct{} // the reader ended
	mu    sync.Mutex
	err   error
}

// reset prepares c for a new connection (the previous one ended).
func (c *recClient) reset() {
	c.mu.Lock()
	c.conn = nil
	c.mu.Unlock()
	c.pending, c.acked, c.done = nil, make(chan struct{}), make(chan struct{})
}

// connect (after reset) dials url, sends join and reads until the connection ends,
// checking every positioned delivery; acked is closed at the join ack.
// since says that join has a since position (it must be recovered).
func (c *recClient) connect(url, join string, since bool) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), recoverPhase)
	conn, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{CompressionMode: websocket.CompressionDisabled})
	cancel()
	if err != nil {
		c.fail(fmt.Errorf("dial: %w", err))
		close(c.done)
		return
	}
	c.dialTime = time.Since(start)
	c.mu.Lock()
	c.conn = conn
	c.mu.Unlock()
	if err := conn.Write(context.Background(), websocket.MessageText, []byte(join)); err != nil {
		c.fail(fmt.Errorf("join: %w", err))
		close(c.done)
		return
	}
	go c.read(conn, start, since)
}

func (c *recClient) read(conn *websocket.Conn, start time.Time, since bool) {
	defer close(c.done)
	acked := false
	for {
		_, data, err := conn.Read(context.Background())
		if err != nil {
			if !acked {
				c.fail(fmt.Errorf("connection ended before the join ack: %w", err))
			}
			return
		}
		switch {
		case bytes.HasPrefix(data, []byte(`{"room":`)):
			off, epoch, ok := parsePositioned(data)
			if !ok {
				c.fail(fmt.Errorf("malformed delivery %.200s", data))
				return
			}
			if !acked {
				if c.epoch != "" && epoch != c.epoch {
					c.fail(fmt.Errorf("delivery %d in epoch %s, want %s", off, epoch, c.epoch))
				}
				c.pending = append(c.pending, off)
				continue
			}
			if last := c.last.Load(); off != last+1 || epoch != c.epoch {
				c.fail(fmt.Errorf("delivery %d (epoch %s) after %d (epoch %s): lost or duplicated", off, epoch, last, c.epoch))
				return
			}
			c.last.Store(off)
		case bytes.HasPrefix(data, []byte(`{"ack":`)) && !acked:
			lat := time.Since(start)
			var a struct {
				OK        bool    `json:"ok"`
				Recovered *bool   `json:"recovered"`
				Offset    uint64  `json:"offset"`
				Epoch     string  `json:"epoch"`
				Error     *string `json:"error"`
			}
			if err := json.Unmarshal(data, &a); err != nil || !a.OK {
				c.fail(fmt.Errorf("join ack %s", data))
				return
			}
			base := a.Offset // recover: the stream starts after the ack's offset
			if since {
				if a.Recovered == nil || !*a.Recovered || a.Epoch != c.epoch {
					c.fail(fmt.Errorf("not recovered since %d/%s: %s", c.last.Load(), c.epoch, data))
					return
				}
				// The replay: every write after since up to the ack's offset
				// (checked below to be in order). A live write after it may
				// overtake the ack (it is queued to the spark between the
				// join and the ack): counted, and part of the stream.
				base = c.last.Load()
				if a.Offset < base || uint64(len(c.pending)) < a.Offset-base {
					c.fail(fmt.Errorf("since %d, ack at %d: %d writes replayed %v", base, a.Offset, len(c.pending), c.pending))
					return
				}
				c.replayed = int(a.Offset - base)
				c.overtaken = len(c.pending) - c.replayed
			}
			c.epoch = a.Epoch
			for i, off := range c.pending {
				if off != base+uint64(i)+1 {
					c.fail(fmt.Errorf("delivery %d before the ack at %d: %v", i, base, c.pending))
					return
				}
			}
			c.last.Store(base + uint64(len(c.pending)))
			c.pending = nil
			c.latency = lat
			acked = true
			close(c.acked)
		default:
			c.fail(fmt.Errorf("unexpected frame %.200s", data))
			return
		}
	}
}

// parsePositioned reads offset and epoch from
// {"room":"r","offset":N,"epoch":"E","data":X}.
func parsePositioned(data []byte) (uint64, string, bool) {
	_, rest, ok := bytes.Cut(data, []byte(`,"offset":`))
	if !ok {
		return 0, "", false
	}
	num, rest, ok := bytes.Cut(rest, []byte(`,"epoch":"`))
	if !ok {
		return 0, "", false
	}
	epoch, _, ok := bytes.Cut(rest, []byte(`"`))
	if !ok {
		return 0, "", false
	}
	off, err := strconv.ParseUint(string(num), 10, 64)
	return off, string(epoch), err == nil
}

func (c *recClient) fail(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err == nil {
		c.err = err
	}
}

func (c *recClient) failure() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// close ends c's connection and waits for its reader.
func (c *recClient) close() {
	c.mu.Lock()
	conn := c.conn
	c.mu.Unlock()
	if conn != nil {
		conn.CloseNow()
	}
	if c.done != nil {
		select {
		case <-c.done:
		case <-time.After(10 * time.Second):
		}
	}
}

// recoverPublisher writes to the rooms through a node at recoverRate.
type recoverPublisher struct {
	stop   chan struct{}
	once   sync.Once
	wg     sync.WaitGroup
	writes atomic.Int64
	errors atomic.Int64
}

func startRecoverPublisher(n *recoverNode, rooms []string) *recoverPublisher {
	p := &recoverPublisher{stop: make(chan struct{})}
	per := len(rooms) / recoverWriters
	rate := recoverRate
	if v, err := strconv.Atoi(os.Getenv("RECOVER_RATE")); err == nil && v > 0 {
		rate = v
	}
	interval := time.Second * recoverWriters / time.Duration(rate)
	for w := range recoverWriters {
		mine := rooms[w*per : (w+1)*per]
		p.wg.Go(func() {
			t := time.NewTicker(interval)
			defer t.Stop()
			for i := 0; ; i++ {
				select {
				case <-p.stop:
					return
				case <-t.C:
				}
				if err := n.app.Primus.Room(mine[i%len(mine)]).Write(map[string]int{"w": w, "i": i}); err != nil {
					p.errors.Add(1)
				} else {
					p.writes.Add(1)
				}
			}
		})
	}
	return p
}

func (p *recoverPublisher) halt() {
	p.once.Do(func() { close(p.stop) })
	p.wg.Wait()
}

// forEach runs f for every client, conc at a time.
func forEach(clients []*recClient, conc int, f func(*recClient)) {
	sem := make(chan struct{}, conc)
	var wg sync.WaitGroup
	for _, c := range clients {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			f(c)
		})
	}
	wg.Wait()
	waitAcked(clients, recoverPhase)
}

// waitAcked waits until every client got its join ack or failed, at most
// d, and returns how many got it.
func waitAcked(clients []*recClient, d time.Duration) int {
	deadline := time.After(d)
	n := 0
	for _, c := range clients {
		select {
		case <-c.acked:
			n++
		case <-c.done:
			select {
			case <-c.acked:
				n++
			default:
			}
		case <-deadline:
			return n
		}
	}
	return n
}

// waitAll waits until ch(c) is closed for every client, at most d.
func waitAll(clients []*recClient, d time.Duration, ch func(*recClient) <-chan struct{}) bool {
	deadline := time.After(d)
	for _, c := range clients {
		select {
		case <-ch(c):
		case <-deadline:
			return false
		}
	}
	return true
}

func firstErr(clients []*recClient) error {
	for _, c := range clients {
		if err := c.failure(); err != nil {
			return err
		}
	}
	return nil
}

func pct(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted))*p/100+0.5) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

func mean(v []float64) float64 {
	s := 0.0
	for _, x := range v {
		s += x
	}
	return s / float64(len(v))
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	return string(bytes.TrimSpace(b))
}

func openFDs() int {
	e, _ := os.ReadDir("/proc/self/fd")
	return len(e)
}

// logProgress logs, every second until stop, how many clients were
// dialled and recovered, node A's history reads and Redis's CPU time.
func logProgress(b *testing.B, stop <-chan struct{}, srv *redistest.Server, node *recoverNode, clients []*recClient) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	start := time.Now()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		dialled, acked := 0, 0
		for _, c := range clients {
			c.mu.Lock()
			if c.conn != nil {
				dialled++
			}
			c.mu.Unlock()
			select {
			case <-c.acked:
				acked++
			default:
			}
		}
		b.Logf("%4.1fs: %d connected, %d recovered, %d history reads on A, Redis CPU %s, load %s",
			time.Since(start).Seconds(), dialled, acked, node.b.Stats().HistoryReads, redisInfo(srv, "cpu", "used_cpu_user:", "used_cpu_sys:"), loadavg())
	}
}

// logCommandStats logs the Lua calls Redis ran and their cost.
func logCommandStats(b *testing.B, srv *redistest.Server) {
	b.Logf("Redis commandstats: %s", redisInfo(srv, "commandstats", "cmdstat_evalsha:", "cmdstat_eval:", "cmdstat_publish:"))
}

func redisInfo(srv *redistest.Server, section string, fields ...string) string {
	v, err := srv.Do("INFO", section)
	if err != nil {
		return err.Error()
	}
	s, _ := v.(string)
	var out []string
	for line := range strings.SplitSeq(s, "\n") {
		for _, f := range fields {
			if strings.HasPrefix(line, f) {
				out = append(out, strings.TrimSpace(line))
			}
		}
	}
	return strings.Join(out, " ")
}
