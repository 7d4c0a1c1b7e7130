package serverapp

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/primusgo/primus"
	"github.com/primusgo/primus/internal/redistest"
	"github.com/primusgo/primus/internal/testkit"
	"github.com/primusgo/primus/redisbroker"
)

// The proofs of room history on a real Redis: positioned clients on every
// node, a steady publisher, a fault; then every client must have received
// every offset of every room exactly once, in order, and the same data at
// each offset as the others.

var historyRooms = []string{"h1", "h2"}

// histNode is one node: an App on a Redis broker.
type histNode struct {
	app *App
	b   *redisbroker.Broker
	ts  *httptest.Server
}

func startHistoryNodes(t *testing.T, n int, cfg redisbroker.Config) []*histNode {
	t.Helper()
	var nodes []*histNode
	for range n {
		b, err := redisbroker.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		app, ts := startApp(t, Options{Broker: b, HistorySize: 100_000, HistoryTTL: 10 * time.Minute, PingInterval: -1})
		nodes = append(nodes, &histNode{app, b, ts})
	}
	return nodes
}

func historyRedisConfig(addr string) redisbroker.Config {
	return redisbroker.Config{
		Addr:           addr,
		Channel:        fmt.Sprintf("hist%d", time.Now().UnixNano()),
		DialTimeout:    time.Second,
		CommandTimeout: time.Second,
		ProbeInterval:  time.Second,
		MaxBackoff:     200 * time.Millisecond,
	}
}

// received is one positioned delivery.
type received struct {
	Room   string          `json:"room"`
	Offset uint64          `json:"offset"`
	Epoch  string          `json:"epoch"`
	Data   json.RawMessage `json:"data"`
}

// posClient is a client positioned in historyRooms, recording what it
// receives.
type posClient struct {
	name string
	c    *testClient

	mu    sync.Mutex
	start map[string]primus.HistoryPosition // from the join acks
	got   map[string][]received
	plain []string // anything else that is not an ack
	acks  map[string]string
}

// joinPositioned connects a client to node and joins historyRooms with
// recover; a goroutine records its frames until the test ends.
func joinPositioned(t *testing.T, name string, node *histNode) *posClient {
	t.Helper()
	pc := &posClient{name: name, c: dial(t, node.ts), start: map[string]primus.HistoryPosition{},
		got: map[string][]received{}, acks: map[string]string{}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	go func() {
		defer close(done)
		for {
			f, ok := pc.c.Frames.Get(ctx)
			if !ok {
				return
			}
			pc.record(string(f.Data))
		}
	}()
	for _, r := range historyRooms {
		pc.c.send(`{"join":"` + r + `","recover":true,"ack":"` + r + `"}`)
		ack := pc.waitAck(t, r)
		var a struct {
			OK     bool
			Offset uint64
			Epoch  string
		}
		if err := json.Unmarshal([]byte(ack), &a); err != nil || !a.OK || a.Epoch == "" {
			t.Fatalf("%s: join %s: %s", name, r, ack)
		}
		pc.mu.Lock()
		pc.start[r] = primus.HistoryPosition{Offset: a.Offset, Epoch: a.Epoch}
		pc.mu.Unlock()
	}
	return pc
}

func (pc *posClient) record(msg string) {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	if strings.HasPrefix(msg, `{"ack":`) {
		var a struct{ Ack string }
		_ = json.Unmarshal([]byte(msg), &a)
		pc.acks[a.Ack] = msg
		return
	}
	var r received
	if strings.HasPrefix(msg, `{"room":`) && json.Unmarshal([]byte(msg), &r) == nil && r.Offset > 0 {
		pc.got[r.Room] = append(pc.got[r.Room], r)
		return
	}
	pc.plain = append(pc.plain, msg)
}

func (pc *posClient) waitAck(t *testing.T, ack string) string {
	t.Helper()
	var msg string
	testkit.WaitFor(t, pc.name+" ack "+ack, func() bool {
		pc.mu.Lock()
		defer pc.mu.Unlock()
		msg = pc.acks[ack]
		return msg != ""
	})
	return msg
}

// last is the last offset pc received in room (its join position before).
func (pc *posClient) last(room string) uint64 {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	if g := pc.got[room]; len(g) > 0 {
		return g[len(g)-1].Offset
	}
	return pc.start[room].Offset
}

// publisher writes to historyRooms from every node, each every interval,
// until stopped; write errors (Redis down) are counted, not fatal.
type publisher struct {
	stop   chan struct{}
	wg     sync.WaitGroup
	writes atomic.Int64
	errors atomic.Int64

	mu    sync.Mutex
	acked map[string]bool // the data of every write that succeeded

	gate sync.RWMutex // writes hold it shared; pause takes it
}

// pause waits for the writes in flight and holds the others until resume.
func (p *publisher) pause()  { p.gate.Lock() }
func (p *publisher) resume() { p.gate.Unlock() }

func startPublisher(nodes []*histNode, interval time.Duration) *publisher {
	p := &publisher{stop: make(chan struct{}), acked: map[string]bool{}}
	for w, n := range nodes {
		p.wg.Go(func() {
			t := time.NewTicker(interval)
			defer t.Stop()
			for i := 0; ; i++ {
				select {
				case <-p.stop:
					return
				case <-t.C:
				}
				room := historyRooms[i%len(historyRooms)]
				p.gate.RLock()
				err := n.app.Primus.Room(room).Write(map[string]int{"w": w, "i": i})
				p.gate.RUnlock()
				if err != nil {
					p.errors.Add(1)
				} else {
					p.writes.Add(1)
					p.mu.Lock()
					p.acked[fmt.Sprintf(`{"i":%d,"w":%d}`, i, w)] = true
					p.mu.Unlock()
				}
			}
		})
	}
	return p
}

// replOffset reads a replication offset from INFO replication.
func replOffset(info any, field string) int64 {
	s, _ := info.(string)
	for line := range strings.SplitSeq(s, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), field+":"); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	return -1
}

// waitWrites waits until n writes succeeded in all.
func (p *publisher) waitWrites(t *testing.T, n int64) {
	t.Helper()
	if !testkit.Eventually(30*time.Second, func() bool { return p.writes.Load() >= n }) {
		t.Fatalf("only %d of %d writes succeeded (%d failed)", p.writes.Load(), n, p.errors.Load())
	}
}

func (p *publisher) halt() {
	close(p.stop)
	p.wg.Wait()
}

// verifyExactlyOnce waits until every client reached each room's last
// offset and checks that each received every offset after its join
// position exactly once, in order, in epochs (a new epoch, when want,
// starts again at 1), and that all clients agree on the data at each
// offset. With one epoch and a publisher p, every write p saw succeed must
// have been delivered (a write acknowledged and then lost, as by a demoted
// master, is a loss even when the offsets have no hole).
func verifyExactlyOnce(t *testing.T, reader *histNode, clients []*posClient, epochs int, p *publisher) {
	t.Helper()
	tops := map[string]primus.HistoryPosition{}
	for _, r := range historyRooms {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		pos, err := reader.b.Position(ctx, r)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		tops[r] = pos
	}
	for _, pc := range clients {
		for _, r := range historyRooms {
			if !testkit.Eventually(20*time.Second, func() bool {
				pc.mu.Lock()
				defer pc.mu.Unlock()
				g := pc.got[r]
				return len(g) > 0 && g[len(g)-1].Offset == tops[r].Offset && g[len(g)-1].Epoch == tops[r].Epoch
			}) {
				pc.mu.Lock()
				n := len(pc.got[r])
				var lastSeen received
				if n > 0 {
					lastSeen = pc.got[r][n-1]
				}
				pc.mu.Unlock()
				t.Fatalf("%s never reached %s %+v: %d deliveries, the last %+v", pc.name, r, tops[r], n, lastSeen)
			}
		}
	}
	data := map[string]string{} // room/epoch/offset -> data
	total := 0
	for _, pc := range clients {
		pc.mu.Lock()
		for _, r := range historyRooms {
			start := pc.start[r]
			want, epoch, seen := start.Offset+1, start.Epoch, 1
			for i, m := range pc.got[r] {
				if m.Epoch != epoch {
					seen++
					if seen > epochs {
						t.Errorf("%s %s: delivery %d in epoch %s, more epochs than %d", pc.name, r, i, m.Epoch, epochs)
						break
					}
					epoch, want = m.Epoch, 1
				}
				if m.Offset != want {
					t.Errorf("%s %s: delivery %d has offset %d, want %d (epoch %s): lost or duplicated", pc.name, r, i, m.Offset, want, m.Epoch)
					break
				}
				want++
				key := fmt.Sprintf("%s/%s/%d", r, m.Epoch, m.Offset)
				if d, ok := data[key]; ok && d != string(m.Data) {
					t.Errorf("%s %s: offset %d is %s here, %s elsewhere", pc.name, r, m.Offset, m.Data, d)
				}
				data[key] = string(m.Data)
				total++
			}
			if seen != epochs {
				t.Errorf("%s %s: %d epochs, want %d", pc.name, r, seen, epochs)
			}
		}
		if len(pc.plain) > 0 {
			t.Errorf("%s got plain frames: %.3q", pc.name, pc.plain)
		}
		pc.mu.Unlock()
	}
	if p != nil && epochs == 1 {
		delivered := map[string]bool{}
		for _, d := range data {
			delivered[d] = true
		}
		p.mu.Lock()
		lost := 0
		for d := range p.acked {
			if !delivered[d] {
				if lost++; lost <= 5 {
					t.Errorf("write %s succeeded but reached no client", d)
				}
			}
		}
		p.mu.Unlock()
		if lost > 0 {
			t.Errorf("%d acknowledged writes lost", lost)
		}
	}
	t.Logf("%d clients, %d positioned deliveries checked; last offsets %+v", len(clients), total, tops)
}

func positionedClients(t *testing.T, nodes []*histNode, perNode int) []*posClient {
	t.Helper()
	var clients []*posClient
	for i, n := range nodes {
		for j := range perNode {
			clients = append(clients, joinPositioned(t, fmt.Sprintf("node%d/client%d", i, j), n))
		}
	}
	return clients
}

func logNodeStats(t *testing.T, nodes []*histNode, p *publisher) {
	t.Helper()
	for i, n := range nodes {
		s, bs := n.app.Primus.Stats(), n.b.Stats()
		t.Logf("node %d: resyncs %d, gaps %d, reconnects %d, probe failures %d, history reads %d", i, s.HistoryResyncs, s.HistoryGaps, bs.Reconnects, bs.ProbeFailures, bs.HistoryReads)
	}
	t.Logf("writes %d, failed writes %d", p.writes.Load(), p.errors.Load())
}

// CLIENT KILL TYPE pubsub every 2 s for 30 s under a steady publisher:
// every node's subscription breaks again and again, and every positioned
// client of every node still gets every write exactly once, in order.
func TestHistoryPubSubKills(t *testing.T) {
	srv := redistest.StartServer(t)
	nodes := startHistoryNodes(t, 2, historyRedisConfig(srv.Addr()))
	clients := positionedClients(t, nodes, 3)
	p := startPublisher(nodes, 4*time.Millisecond) // 500 writes/s in all
	run := 30 * time.Second
	if testing.Short() {
		run = 6 * time.Second
	}
	kills := 0
	for start := time.Now(); time.Since(start) < run; {
		time.Sleep(2 * time.Second)
		v, err := srv.Do("CLIENT", "KILL", "TYPE", "pubsub")
		if err != nil {
			t.Fatal(err)
		}
		if n, _ := v.(int64); n > 0 {
			kills++
		}
	}
	p.halt()
	verifyExactlyOnce(t, nodes[0], clients, 1, p)
	logNodeStats(t, nodes, p)
	if kills < 3 {
		t.Fatalf("only %d kills hit a connection", kills)
	}
	for i, n := range nodes {
		if s := n.app.Primus.Stats(); s.HistoryGaps != 0 {
			t.Errorf("node %d counted %d gaps", i, s.HistoryGaps)
		}
		if n.b.Stats().Reconnects == 0 {
			t.Errorf("node %d never reconnected", i)
		}
	}
}

// A Redis restart with persistence (appendonly yes): the history and its
// epoch survive, the nodes read back what was written while they
// reconnected, and no positioned client loses or repeats a write.
func TestHistoryRedisRestartPersistent(t *testing.T) {
	srv := redistest.StartServer(t, redistest.WithArgs("--appendonly", "yes", "--appendfsync", "always"))
	if v, _ := srv.Do("CONFIG", "GET", "appendonly"); fmt.Sprint(v) != "[appendonly yes]" {
		t.Fatalf("appendonly: %v", v)
	}
	nodes := startHistoryNodes(t, 2, historyRedisConfig(srv.Addr()))
	clients := positionedClients(t, nodes, 3)
	p := startPublisher(nodes, 4*time.Millisecond)
	time.Sleep(2 * time.Second)
	srv.Kill()
	time.Sleep(time.Second)
	srv.Start()
	time.Sleep(3 * time.Second)
	p.halt()
	verifyExactlyOnce(t, nodes[0], clients, 1, p)
	logNodeStats(t, nodes, p)
	for i, n := range nodes {
		if s := n.app.Primus.Stats(); s.HistoryGaps != 0 {
			t.Errorf("node %d counted %d gaps", i, s.HistoryGaps)
		}
	}
}

// A Redis restart without persistence loses the history: a new epoch
// starts. Every positioned client sees the new epoch (its clients then
// report recovered:false) and gets the new epoch's writes from offset 1,
// each once; a client that reconnects with a position of the old epoch is
// told recovered:false; nobody gets a duplicate.
func TestHistoryRedisRestartWithoutPersistence(t *testing.T) {
	srv := redistest.StartServer(t)
	nodes := startHistoryNodes(t, 2, historyRedisConfig(srv.Addr()))
	clients := positionedClients(t, nodes, 3)
	p := startPublisher(nodes, 4*time.Millisecond)
	time.Sleep(2 * time.Second)
	srv.Kill()
	time.Sleep(500 * time.Millisecond)
	srv.Start()
	time.Sleep(3 * time.Second)
	p.halt()
	verifyExactlyOnce(t, nodes[0], clients, 2, p)
	logNodeStats(t, nodes, p)
	for _, pc := range clients {
		c := dial(t, nodes[1].ts)
		old := pc.start["h1"]
		c.send(`{"join":"h1","since":{"offset":` + fmt.Sprint(old.Offset+1) + `,"epoch":"` + old.Epoch + `"},"ack":1}`)
		if got := c.next(); !strings.Contains(got, `"recovered":false`) {
			t.Fatalf("%s back with a position of the old epoch: %s", pc.name, got)
		}
	}
	for i, n := range nodes {
		if s := n.app.Primus.Stats(); s.HistoryGaps == 0 {
			t.Errorf("node %d did not count the lost history", i)
		}
	}
}

// A Sentinel failover (SENTINEL FAILOVER: the replica is promoted, the
// old master demoted): the nodes move to the new master, read back what
// they missed, and no positioned client loses or repeats a write.
//
// The data nodes run with min-replicas-to-write 1, as docs/history.md asks
// of Sentinel deployments: Sentinel demotes the old master a while after
// promoting the replica, and without it the old master keeps accepting
// the writes of nodes that have not switched yet (up to hundreds here),
// which its demotion then throws away and whose offsets the new master
// hands out again. With it, those writes fail (their writers are told)
// instead of being lost.
func TestHistorySentinelFailover(t *testing.T) {
	g := redistest.StartSentinelGroup(t)
	for _, s := range g.Servers() {
		if _, err := s.Do("CONFIG", "SET", "min-replicas-to-write", "1"); err != nil {
			t.Fatal(err)
		}
	}
	cfg := historyRedisConfig("")
	cfg.Addr, cfg.SentinelAddrs, cfg.SentinelMaster = "", g.SentinelAddrs(), g.MasterName()
	nodes := startHistoryNodes(t, 2, cfg)
	clients := positionedClients(t, nodes, 3)
	p := startPublisher(nodes, 4*time.Millisecond)
	p.waitWrites(t, 500)
	// Replication is asynchronous: a write acknowledged in the instant
	// before its replica is promoted, not yet replicated, is lost with
	// any client (docs/history.md). Writes pause from the moment the
	// replica has everything until it is master; they resume while the
	// nodes still write to the old master, which is what is proved here.
	p.pause()
	master, replica := g.Servers()[0], g.Servers()[1]
	if !testkit.Eventually(10*time.Second, func() bool {
		m, err1 := master.Do("INFO", "replication")
		r, err2 := replica.Do("INFO", "replication")
		return err1 == nil && err2 == nil && replOffset(m, "master_repl_offset") > 0 &&
			replOffset(m, "master_repl_offset") == replOffset(r, "slave_repl_offset")
	}) {
		t.Fatal("the replica never caught up")
	}
	g.Failover()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := g.WaitForPromotion(ctx); err != nil {
		t.Fatal(err)
	}
	p.resume()
	p.waitWrites(t, p.writes.Load()+500) // the new master takes writes
	p.halt()
	verifyExactlyOnce(t, nodes[0], clients, 1, p)
	logNodeStats(t, nodes, p)
}

// Joins with a since position racing writes from two nodes on Redis:
// every joining client gets everything after its position, then the live
// writes, without a gap or a duplicate.
func TestHistoryJoinSinceRacingWritesRedis(t *testing.T) {
	srv := redistest.StartServer(t)
	nodes := startHistoryNodes(t, 2, historyRedisConfig(srv.Addr()))
	first := joinPositioned(t, "first", nodes[0])
	p := startPublisher(nodes, time.Millisecond)
	var clients []*posClient
	for i := range 12 {
		time.Sleep(40 * time.Millisecond)
		node := nodes[i%2]
		pc := &posClient{name: fmt.Sprintf("since%d", i), c: dial(t, node.ts), start: map[string]primus.HistoryPosition{},
			got: map[string][]received{}, acks: map[string]string{}}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		t.Cleanup(func() { cancel(); <-done })
		go func() {
			defer close(done)
			for {
				f, ok := pc.c.Frames.Get(ctx)
				if !ok {
					return
				}
				pc.record(string(f.Data))
			}
		}()
		for _, r := range historyRooms {
			since := first.last(r) / 2 // somewhere behind
			epoch := first.start[r].Epoch
			pc.mu.Lock()
			pc.start[r] = primus.HistoryPosition{Offset: since, Epoch: epoch}
			pc.mu.Unlock()
			pc.c.send(fmt.Sprintf(`{"join":%q,"since":{"offset":%d,"epoch":%q},"ack":%q}`, r, since, epoch, r))
			if ack := pc.waitAck(t, r); !strings.Contains(ack, `"recovered":true`) {
				t.Fatalf("%s join %s since %d: %s", pc.name, r, since, ack)
			}
		}
		clients = append(clients, pc)
	}
	p.halt()
	verifyExactlyOnce(t, nodes[0], append(clients, first), 1, p)
	if slices.ContainsFunc(clients, func(pc *posClient) bool { return len(pc.got["h1"]) == 0 }) {
		t.Fatal("a client got nothing")
	}
}
