package redisbroker

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/primusgo/primus"
	"github.com/primusgo/primus/brokertest"
	"github.com/primusgo/primus/internal/redistest"
)

// clusterTestConfig is a cluster-mode configuration with test-friendly
// timings.
func clusterTestConfig(c *redistest.Cluster, channel string) Config {
	return Config{
		ClusterAddrs:      c.Addrs(),
		ClusterPartitions: DefaultClusterPartitions,
		Channel:           channel,
		DialTimeout:       time.Second,
		CommandTimeout:    time.Second,
		UnsubscribeDelay:  200 * time.Millisecond,
		MaxBackoff:        500 * time.Millisecond,
	}
}

func clusterNodes(c *redistest.Cluster) brokertest.NewCluster {
	return func(t testing.TB, n int) []primus.Broker {
		ch := freshChannel()
		nodes := make([]primus.Broker, n)
		for i := range nodes {
			nodes[i] = newBroker(t, clusterTestConfig(c, ch))
		}
		return nodes
	}
}

func TestClusterConformance(t *testing.T) {
	c := redistest.StartCluster(t, redistest.ClusterConfig{})
	brokertest.Run(t, clusterNodes(c))
}

// ---- steady traffic with counted receipts ----

// counter is a handler that counts receipts per (room, seq) of the
// traffic's messages {"r":room,"s":seq}.
type counter struct {
	mu  sync.Mutex
	got map[string]map[int]int
	at  map[string]map[int]time.Time
}

func newCounter() *counter {
	return &counter{got: map[string]map[int]int{}, at: map[string]map[int]time.Time{}}
}

func (c *counter) HandleMessage(m *primus.Message, skip []string) {
	var d struct {
		R string `json:"r"`
		S int    `json:"s"`
	}
	if json.Unmarshal(m.Data, &d) != nil || d.R == "" {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.got[d.R] == nil {
		c.got[d.R], c.at[d.R] = map[int]int{}, map[int]time.Time{}
	}
	c.got[d.R][d.S]++
	if _, ok := c.at[d.R][d.S]; !ok {
		c.at[d.R][d.S] = time.Now()
	}
}

func (c *counter) count(room string, seq int) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.got[room][seq]
}

// sent is one published message.
type sent struct {
	at time.Time
	ok bool
}

// traffic publishes {"r":room,"s":seq} to every room every period, one
// goroutine per room (a room on a dead shard does not slow the others).
type traffic struct {
	t     testing.TB
	mu    sync.Mutex
	sent  map[string][]sent
	stop  chan struct{}
	wg    sync.WaitGroup
	rooms []string
}

func startTraffic(t testing.TB, pub *Broker, rooms []string, period time.Duration) *traffic {
	tr := &traffic{t: t, sent: map[string][]sent{}, stop: make(chan struct{}), rooms: rooms}
	for _, room := range rooms {
		tr.wg.Go(func() {
			tick := time.NewTicker(period)
			defer tick.Stop()
			for seq := 0; ; seq++ {
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				at := time.Now()
				err := pub.Publish(ctx, &primus.Message{Rooms: []string{room}, Data: fmt.Appendf(nil, `{"r":%q,"s":%d}`, room, seq)})
				cancel()
				tr.mu.Lock()
				tr.sent[room] = append(tr.sent[room], sent{at: at, ok: err == nil})
				tr.mu.Unlock()
				select {
				case <-tr.stop:
					return
				case <-tick.C:
				}
			}
		})
	}
	t.Cleanup(tr.halt)
	return tr
}

func (tr *traffic) halt() {
	select {
	case <-tr.stop:
	default:
		close(tr.stop)
	}
	tr.wg.Wait()
}

// lastSeq is the last seq published to room so far, and when.
func (tr *traffic) lastSeq(room string) (int, time.Time) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	s := tr.sent[room]
	if len(s) == 0 {
		return -1, time.Time{}
	}
	return len(s) - 1, s[len(s)-1].at
}

// report is what one node saw of one room's traffic.
type report struct {
	published, publishErrs int
	lost                   []int // published without error, never received
	missing                int   // lost plus failed publishes
	dups                   int   // receipts beyond the first
	// gapFrom..gapTo is the publication time span of the messages that
	// did not arrive (failed or lost); zero if none.
	gapFrom, gapTo time.Time
	resumedAt      time.Time // publication time of the first message received after the gap
}

func (tr *traffic) report(c *counter, room string) report {
	tr.mu.Lock()
	msgs := slices.Clone(tr.sent[room])
	tr.mu.Unlock()
	var r report
	inGap := false
	for seq, m := range msgs {
		r.published++
		if !m.ok {
			r.publishErrs++
		}
		n := c.count(room, seq)
		if n > 1 {
			r.dups += n - 1
		}
		if n == 0 {
			if m.ok {
				r.lost = append(r.lost, seq)
			}
			r.missing++
			if r.gapFrom.IsZero() {
				r.gapFrom = m.at
			}
			r.gapTo = m.at
			inGap = true
			continue
		}
		if inGap {
			r.resumedAt = m.at
			inGap = false
		}
	}
	return r
}

// awaitAfter waits until every node's counter has a message of room
// published after since, and returns when that was.
func (tr *traffic) awaitAfter(t testing.TB, counters []*counter, room string, since time.Time, limit time.Duration) time.Duration {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		tr.mu.Lock()
		msgs := slices.Clone(tr.sent[room])
		tr.mu.Unlock()
		for seq := len(msgs) - 1; seq >= 0 && msgs[seq].at.After(since); seq-- {
			all := true
			for _, c := range counters {
				if c.count(room, seq) == 0 {
					all = false
					break
				}
			}
			if all {
				// The earliest such message.
				first := seq
				for s := seq - 1; s >= 0 && msgs[s].at.After(since); s-- {
					ok := true
					for _, c := range counters {
						if c.count(room, s) == 0 {
							ok = false
						}
					}
					if ok {
						first = s
					}
				}
				return msgs[first].at.Sub(since)
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("room %s: no delivery of a message published after %v within %v", room, since.Format("15:04:05.000"), limit)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// drain stops the traffic and gives the last messages time to arrive.
func (tr *traffic) drain() {
	tr.halt()
	time.Sleep(500 * time.Millisecond)
}

// roomsOn returns k room names per shard, each in a different partition,
// whose partitions' slots the shards own; cfg gives the prefix and the
// partition count.
func roomsOn(t testing.TB, shards []redistest.ClusterShard, parts, k int) [][]string {
	out := make([][]string, len(shards))
	usedPart := map[int]bool{}
	for i := 0; ; i++ {
		room := fmt.Sprintf("room-%d", i)
		p := partitionOf(room, parts)
		if usedPart[p] {
			continue
		}
		slot := partitionSlot(p, parts)
		for si, sh := range shards {
			if sh.Owns(slot) && len(out[si]) < k {
				out[si] = append(out[si], room)
				usedPart[p] = true
			}
		}
		done := true
		for _, rs := range out {
			done = done && len(rs) == k
		}
		if done {
			return out
		}
		if i > 100000 {
			t.Fatal("no rooms found")
		}
	}
}

// rig is a publisher node and hosting nodes that count receipts.
type rig struct {
	pub      *Broker
	hosts    []*Broker
	counters []*counter
}

func startRig(t testing.TB, cfg Config, hosts int, rooms []string) *rig {
	r := &rig{}
	r.pub, _ = startBroker(t, cfg)
	for range hosts {
		b := newBroker(t, cfg)
		c := newCounter()
		if err := b.Start(c); err != nil {
			t.Fatal(err)
		}
		for _, room := range rooms {
			b.Subscribe(room)
		}
		r.hosts = append(r.hosts, b)
		r.counters = append(r.counters, c)
	}
	for _, b := range r.hosts {
		waitStats(t, b, "every room subscribed", func(s Stats) bool { return s.SubscribedRooms == len(rooms) && s.PartitionsUp == s.Partitions })
	}
	return r
}

// checkClean asserts that every host got every successfully published
// message of rooms exactly once.
func (r *rig) checkClean(t testing.TB, tr *traffic, rooms []string) {
	t.Helper()
	for i, c := range r.counters {
		for _, room := range rooms {
			rep := tr.report(c, room)
			if len(rep.lost) > 0 || rep.dups > 0 || rep.publishErrs > 0 {
				t.Errorf("node %d room %s (not affected): %d published, %d publish errors, %d lost, %d duplicates", i, room, rep.published, rep.publishErrs, len(rep.lost), rep.dups)
			}
		}
	}
}

// Kill -9 a master with traffic on: its replica is promoted, the rooms of
// that shard lose messages only between the kill and the resumption
// (bounded), the other shards' rooms lose nothing, nobody gets a
// duplicate.
func TestClusterMasterFailover(t *testing.T) {
	c := redistest.StartCluster(t, redistest.ClusterConfig{})
	cfg := clusterTestConfig(c, freshChannel())
	cfg.ClusterPartitions = DefaultClusterPartitions
	shards := c.Shards()
	byShard := roomsOn(t, shards, cfg.ClusterPartitions, 3)
	var rooms []string
	for _, rs := range byShard {
		rooms = append(rooms, rs...)
	}
	r := startRig(t, cfg, 2, rooms)
	tr := startTraffic(t, r.pub, rooms, 20*time.Millisecond)
	time.Sleep(500 * time.Millisecond)

	victim := shards[1]
	victim.Master.Kill()
	killed := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	nm, err := c.WaitForNewMaster(ctx, victim.Master, victim.Slots[0][0])
	if err != nil {
		t.Fatal(err)
	}
	promoted := time.Now()
	t.Logf("master %s killed; replica %s promoted after %v (cluster-node-timeout %v)", victim.Master.Addr(), nm.Addr(), promoted.Sub(killed).Round(time.Millisecond), c.NodeTimeout())
	// Down is reported while the shard is down.
	var worst time.Duration
	for _, room := range byShard[1] {
		d := tr.awaitAfter(t, r.counters, room, killed, 20*time.Second)
		worst = max(worst, d)
	}
	resumed := killed.Add(worst)
	t.Logf("rooms of the failed shard delivered again to every node %v after the kill, %v after the promotion", worst.Round(time.Millisecond), resumed.Sub(promoted).Round(time.Millisecond))
	time.Sleep(500 * time.Millisecond)
	tr.drain()

	r.checkClean(t, tr, append(slices.Clone(byShard[0]), byShard[2]...))
	for i, ctr := range r.counters {
		for _, room := range byShard[1] {
			rep := tr.report(ctr, room)
			t.Logf("node %d room %s: %d published, %d publish errors, %d lost after a successful publish, window %v..%v (%v), resumed +%v after the kill",
				i, room, rep.published, rep.publishErrs, len(rep.lost), rep.gapFrom.Sub(killed).Round(time.Millisecond), rep.gapTo.Sub(killed).Round(time.Millisecond),
				rep.gapTo.Sub(rep.gapFrom).Round(time.Millisecond), rep.resumedAt.Sub(killed).Round(time.Millisecond))
			if rep.dups > 0 {
				t.Errorf("node %d room %s: %d duplicates", i, room, rep.dups)
			}
			if rep.missing > 0 && (rep.gapFrom.Before(killed.Add(-100*time.Millisecond)) || rep.gapTo.After(resumed)) {
				t.Errorf("node %d room %s: messages missing outside the failover window", i, room)
			}
		}
	}
	if d := resumed.Sub(promoted); d > c.NodeTimeout()+2*time.Second {
		t.Errorf("delivery resumed %v after the promotion, want within cluster-node-timeout + 2 s", d)
	}
	for i, b := range r.hosts {
		s := b.Stats()
		var moved, resub uint64
		for _, sh := range s.Shards {
			moved += sh.MovedSlots
			resub += sh.Resubscribes
		}
		t.Logf("node %d: shards %d, down %v, connection losses %d, resubscribes %d", i, s.ClusterShards, s.ShardsDown(), s.ConnectionLosses, resub)
		if s.ConnectionLosses == 0 || resub == 0 {
			t.Errorf("node %d: the loss and the resubscription were not counted: %+v", i, s.Shards)
		}
		if len(s.ShardsDown()) != 0 {
			t.Errorf("node %d: shards down after the failover: %v", i, s.ShardsDown())
		}
	}
}

// Reshard slots that hold active rooms with traffic on: the moved rooms
// resume within a second of their slot's move, the others lose nothing,
// nobody gets a duplicate.
func TestClusterReshard(t *testing.T) {
	c := redistest.StartCluster(t, redistest.ClusterConfig{})
	cfg := clusterTestConfig(c, freshChannel())
	cfg.ClusterPartitions = DefaultClusterPartitions
	cfg.Logger = testLogger(t)
	shards := c.Shards()
	// redis-cli moves the source's lowest slots: moving 1100 slots from
	// the first shard moves the partitions whose slot is below 1100.
	const moved = 1100
	src, dst := shards[0], shards[1]
	lowest := src.Slots[0][0]
	var movedRooms, stayRooms []string
	for _, rs := range roomsOn(t, shards, cfg.ClusterPartitions, 4) {
		for _, room := range rs {
			if s := partitionSlot(partitionOf(room, cfg.ClusterPartitions), cfg.ClusterPartitions); s >= lowest && s < lowest+moved {
				movedRooms = append(movedRooms, room)
			} else {
				stayRooms = append(stayRooms, room)
			}
		}
	}
	// Plus a room in every partition that moves.
	for p := range cfg.ClusterPartitions {
		if s := partitionSlot(p, cfg.ClusterPartitions); s >= lowest && s < lowest+moved {
			movedRooms = append(movedRooms, roomIn(p, cfg.ClusterPartitions, "moving"))
		}
	}
	rooms := append(slices.Clone(movedRooms), stayRooms...)
	r := startRig(t, cfg, 2, rooms)
	tr := startTraffic(t, r.pub, rooms, 20*time.Millisecond)
	time.Sleep(500 * time.Millisecond)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	start := time.Now()
	if err := c.Reshard(ctx, src.Master, dst.Master, moved); err != nil {
		t.Fatal(err)
	}
	t.Logf("resharded %d slots (rooms %v) from %s to %s in %v", moved, movedRooms, src.Master.Addr(), dst.Master.Addr(), time.Since(start).Round(time.Millisecond))
	for _, room := range movedRooms {
		if got := c.ShardOf(partitionSlot(partitionOf(room, cfg.ClusterPartitions), cfg.ClusterPartitions)).Master; got != dst.Master {
			t.Fatalf("room %s's slot not moved", room)
		}
	}
	time.Sleep(time.Second)
	tr.drain()

	r.checkClean(t, tr, stayRooms)
	for i, ctr := range r.counters {
		for _, room := range movedRooms {
			rep := tr.report(ctr, room)
			var window time.Duration
			if rep.missing > 0 {
				window = rep.resumedAt.Sub(rep.gapFrom)
			}
			t.Logf("node %d moved room %s: %d published, %d publish errors, %d lost, %d duplicates, delivery resumed %v after the first loss", i, room, rep.published, rep.publishErrs, len(rep.lost), rep.dups, window.Round(time.Millisecond))
			if rep.dups > 0 {
				t.Errorf("node %d room %s: %d duplicates", i, room, rep.dups)
			}
			if rep.missing > 0 && rep.resumedAt.Sub(rep.gapFrom) > time.Second {
				t.Errorf("node %d room %s: delivery resumed %v after it stopped, want within 1 s", i, room, rep.resumedAt.Sub(rep.gapFrom))
			}
		}
		var movedSlots uint64
		for _, sh := range r.hosts[i].Stats().Shards {
			movedSlots += sh.MovedSlots
		}
		if want := countParts(movedRooms, cfg.ClusterPartitions); movedSlots < uint64(want) {
			t.Errorf("node %d: %d moved slots followed, want %d", i, movedSlots, want)
		}
	}
	// Each node subscribes the moved rooms on the new owner only.
	for _, room := range movedRooms {
		ch := ClusterRoomChannel(cfg.Channel, cfg.ClusterPartitions, room)
		for _, s := range []*redistest.Server{src.Master, dst.Master} {
			v, err := s.Do("PUBSUB", "SHARDNUMSUB", ch)
			arr, _ := v.([]any)
			if err != nil || len(arr) != 2 {
				t.Fatalf("SHARDNUMSUB: %v %v", v, err)
			}
			want := int64(0)
			if s == dst.Master {
				want = 2
			}
			if arr[1] != want {
				t.Errorf("%s on %s: %v subscribers, want %d", ch, s.Addr(), arr[1], want)
			}
		}
	}
}

// roomIn is a room name of partition p of n.
func roomIn(p, n int, prefix string) string {
	for i := 0; ; i++ {
		if room := fmt.Sprintf("%s-%d", prefix, i); partitionOf(room, n) == p {
			return room
		}
	}
}

func countParts(rooms []string, n int) int {
	seen := map[int]bool{}
	for _, r := range rooms {
		seen[partitionOf(r, n)] = true
	}
	return len(seen)
}

// A whole shard down (master and replica): its rooms stop, the others lose
// nothing, Stats names the shard; when it is back its rooms resume.
func TestClusterShardDown(t *testing.T) {
	c := redistest.StartCluster(t, redistest.ClusterConfig{})
	cfg := clusterTestConfig(c, freshChannel())
	cfg.ClusterPartitions = DefaultClusterPartitions
	shards := c.Shards()
	byShard := roomsOn(t, shards, cfg.ClusterPartitions, 2)
	var rooms []string
	for _, rs := range byShard {
		rooms = append(rooms, rs...)
	}
	r := startRig(t, cfg, 2, rooms)
	tr := startTraffic(t, r.pub, rooms, 20*time.Millisecond)
	time.Sleep(300 * time.Millisecond)

	victim := shards[2]
	victim.Master.Kill()
	for _, s := range victim.Replicas {
		s.Kill()
	}
	down := time.Now()
	for i, b := range r.hosts {
		s := waitStats(t, b, "the shard reported down", func(s Stats) bool { return len(s.ShardsDown()) == 1 })
		if got := s.ShardsDown()[0]; got != victim.Master.Addr() {
			t.Errorf("node %d: shard down %s, want %s", i, got, victim.Master.Addr())
		}
		if !s.Connected {
			t.Errorf("node %d: not connected with two shards of three up", i)
		}
	}
	time.Sleep(2 * c.NodeTimeout()) // the cluster marks the shard failed meanwhile
	victim.Master.Start()
	for _, s := range victim.Replicas {
		s.Start()
	}
	back := time.Now()
	t.Logf("shard %s down for %v", victim.Master.Addr(), back.Sub(down).Round(time.Millisecond))
	var worst time.Duration
	for _, room := range byShard[2] {
		worst = max(worst, tr.awaitAfter(t, r.counters, room, back, 20*time.Second))
	}
	t.Logf("its rooms delivered again %v after it was restarted", worst.Round(time.Millisecond))
	if worst > 3*time.Second {
		t.Errorf("rooms resumed %v after the shard came back, want < 3 s", worst)
	}
	time.Sleep(300 * time.Millisecond)
	tr.drain()
	r.checkClean(t, tr, append(slices.Clone(byShard[0]), byShard[1]...))
	for i, ctr := range r.counters {
		for _, room := range byShard[2] {
			rep := tr.report(ctr, room)
			t.Logf("node %d room %s: %d published, %d publish errors, %d lost, %d duplicates", i, room, rep.published, rep.publishErrs, len(rep.lost), rep.dups)
			if rep.dups > 0 {
				t.Errorf("node %d room %s: %d duplicates", i, room, rep.dups)
			}
			if rep.missing > 0 && (rep.gapFrom.Before(down.Add(-100*time.Millisecond)) || rep.gapTo.After(back.Add(worst))) {
				t.Errorf("node %d room %s: messages missing outside the outage", i, room)
			}
		}
		waitStats(t, r.hosts[i], "every shard up", func(s Stats) bool { return len(s.ShardsDown()) == 0 })
	}
}

// A node that hosts room A never receives room B's messages: its broker
// is not even handed them by Redis (nothing ignored), and each room
// channel has exactly its hosting nodes as subscribers on its shard.
func TestClusterOnlyHostingNodesReceive(t *testing.T) {
	c := redistest.StartCluster(t, redistest.ClusterConfig{})
	cfg := clusterTestConfig(c, freshChannel())
	cfg.ClusterPartitions = DefaultClusterPartitions
	shards := c.Shards()
	byShard := roomsOn(t, shards, cfg.ClusterPartitions, 2)
	pub, _ := startBroker(t, cfg)
	var hosts []*Broker
	var counters []*counter
	for i := range shards {
		b := newBroker(t, cfg)
		ctr := newCounter()
		if err := b.Start(ctr); err != nil {
			t.Fatal(err)
		}
		for _, room := range byShard[i] {
			b.Subscribe(room)
		}
		waitStats(t, b, "subscribed", func(s Stats) bool { return s.SubscribedRooms == len(byShard[i]) })
		hosts, counters = append(hosts, b), append(counters, ctr)
	}
	var rooms []string
	for _, rs := range byShard {
		rooms = append(rooms, rs...)
	}
	const per = 50
	for seq := range per {
		for _, room := range rooms {
			if err := pub.Publish(context.Background(), &primus.Message{Rooms: []string{room}, Data: fmt.Appendf(nil, `{"r":%q,"s":%d}`, room, seq)}); err != nil {
				t.Fatal(err)
			}
		}
	}
	for i, b := range hosts {
		want := uint64(per * len(byShard[i]))
		s := waitStats(t, b, "every message of its rooms", func(s Stats) bool { return s.Received >= want })
		time.Sleep(200 * time.Millisecond)
		s = b.Stats()
		t.Logf("node %d (rooms %v on shard %s): received %d, ignored %d", i, byShard[i], shards[i].Master.Addr(), s.Received, s.Ignored)
		if s.Received != want || s.Ignored != 0 || s.Dropped != 0 {
			t.Errorf("node %d: received %d (want %d), ignored %d, dropped %d", i, s.Received, want, s.Ignored, s.Dropped)
		}
		for room, seqs := range counters[i].got {
			if !slices.Contains(byShard[i], room) {
				t.Errorf("node %d received %d messages of room %s it does not host", i, len(seqs), room)
			}
		}
	}
	for i, sh := range shards {
		for _, room := range byShard[i] {
			v, err := sh.Master.Do("PUBSUB", "SHARDNUMSUB", ClusterRoomChannel(cfg.Channel, cfg.ClusterPartitions, room))
			if arr, _ := v.([]any); err != nil || len(arr) != 2 || arr[1] != int64(1) {
				t.Errorf("room %s on %s: SHARDNUMSUB %v %v, want 1 subscriber", room, sh.Master.Addr(), v, err)
			}
		}
	}
}

// Multi-room writes whose rooms live on different shards reach every
// member once, except lists included: fanned out per room (small) and
// once on a service channel (over the fan-out budget).
func TestClusterMultiRoomAcrossShards(t *testing.T) {
	c := redistest.StartCluster(t, redistest.ClusterConfig{})
	cfg := clusterTestConfig(c, freshChannel())
	cfg.ClusterPartitions = DefaultClusterPartitions
	byShard := roomsOn(t, c.Shards(), cfg.ClusterPartitions, 1)
	r1, r2, r3 := byShard[0][0], byShard[1][0], byShard[2][0]
	a, recA := startBroker(t, cfg)
	b, _ := startBroker(t, cfg)
	for _, room := range []string{r1, r2, r3} {
		a.Subscribe(room)
		brokertest.AwaitSubscribed(t, b, recA, room)
	}
	members := map[string][]string{r1: {"s1", "s12", "s123"}, r2: {"s2", "s12", "s123"}, r3: {"s123", "x"}}
	want := map[string]int{"s1": 1, "s2": 1, "s12": 1, "s123": 1}
	// Over the budget: enough extra rooms that rooms x size > 64 KiB.
	var many []string
	for i := range 2000 {
		many = append(many, fmt.Sprintf("absent-%d", i))
	}
	big := append([]string{r1, r2, r3}, many...)
	for _, tc := range []struct {
		name  string
		rooms []string
	}{{"fan-out", []string{r1, r2, r3, "absent"}}, {"service-channel", big}} {
		data := fmt.Sprintf(`"%s"`, tc.name)
		if err := b.Publish(context.Background(), &primus.Message{ID: tc.name, Rooms: tc.rooms, Except: []string{"x"}, Data: []byte(data)}); err != nil {
			t.Fatal(err)
		}
		var copies []*brokertest.Received
		recA.WaitFor(t, tc.name, func(msgs []*brokertest.Received) bool {
			copies = copies[:0]
			for _, m := range msgs {
				if string(m.Data) == data {
					copies = append(copies, m)
				}
			}
			return len(got(copies, members)) == len(want)
		})
		for _, room := range []string{r1, r2, r3} {
			brokertest.AwaitSubscribed(t, b, recA, room) // stragglers would be in by now
		}
		copies = copies[:0]
		for _, m := range recA.Messages() {
			if string(m.Data) == data {
				copies = append(copies, m)
			}
		}
		if g := got(copies, members); !maps.Equal(g, want) {
			t.Errorf("%s: sparks would receive %v, want %v", tc.name, g, want)
		}
	}
	if s := b.Stats(); s.MultiRoomBroadcasts != 1 {
		t.Errorf("MultiRoomBroadcasts = %d, want 1", s.MultiRoomBroadcasts)
	}
}

// got applies the server's delivery rule (see brokertest) to copies.
func got(copies []*brokertest.Received, members map[string][]string) map[string]int {
	out := map[string]int{}
	for _, c := range copies {
		seen := map[string]bool{}
		for _, r := range c.Rooms {
			for _, s := range members[r] {
				skip := slices.Contains(c.Except, s) || seen[s]
				for _, k := range c.Skip {
					skip = skip || slices.Contains(members[k], s)
				}
				if !skip {
					seen[s] = true
					out[s]++
				}
			}
		}
	}
	return out
}

// The Pub/Sub traffic of 1000 rooms spreads evenly over three shards: each
// shard carries within 20 % of a third of the room channels and of the
// SPUBLISHes (counted by the masters themselves).
func TestClusterShardDistribution(t *testing.T) {
	c := redistest.StartCluster(t, redistest.ClusterConfig{})
	cfg := clusterTestConfig(c, freshChannel())
	a, _ := startBroker(t, cfg)
	b, _ := startBroker(t, cfg)
	const rooms = 1000
	for i := range rooms {
		a.Subscribe(fmt.Sprintf("room-%d", i))
	}
	waitStats(t, a, "every room subscribed", func(s Stats) bool { return s.SubscribedRooms == rooms })
	shards := c.Shards()
	spublishes := func(s *redistest.Server) int {
		v, err := s.Do("INFO", "commandstats")
		if err != nil {
			t.Fatal(err)
		}
		for line := range strings.SplitSeq(fmt.Sprint(v), "\n") {
			if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "cmdstat_spublish:calls="); ok {
				n, _ := strconv.Atoi(rest[:strings.IndexByte(rest, ',')])
				return n
			}
		}
		return 0
	}
	before := make([]int, len(shards))
	for i, sh := range shards {
		before[i] = spublishes(sh.Master)
	}
	for i := range rooms {
		if err := b.Publish(context.Background(), &primus.Message{Rooms: []string{fmt.Sprintf("room-%d", i)}, Data: []byte(`1`)}); err != nil {
			t.Fatal(err)
		}
	}
	third := float64(rooms) / float64(len(shards))
	for i, sh := range shards {
		v, err := sh.Master.Do("PUBSUB", "SHARDCHANNELS", cfg.Channel+":{*}:room:*")
		if err != nil {
			t.Fatal(err)
		}
		channels := len(v.([]any))
		pubs := spublishes(sh.Master) - before[i]
		t.Logf("shard %s (slots %v): %d partitions, %d room channels, %d SPUBLISH (%.1f %% of a third)", sh.Master.Addr(), sh.Slots, partsOn(sh, cfg.ClusterPartitions), channels, pubs, 100*float64(pubs)/third)
		for what, n := range map[string]int{"room channels": channels, "publishes": pubs} {
			if dev := math.Abs(float64(n)-third) / third; dev > 0.2 {
				t.Errorf("shard %s: %d %s, %.0f %% off a third", sh.Master.Addr(), n, what, 100*dev)
			}
		}
	}
}

func partsOn(sh redistest.ClusterShard, n int) int {
	k := 0
	for p := range n {
		if sh.Owns(partitionSlot(p, n)) {
			k++
		}
	}
	return k
}

func TestClusterConfigErrors(t *testing.T) {
	seeds := []string{"127.0.0.1:7000"}
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{ClusterAddrs: seeds, Mode: Compat}, "primus-redis-rooms has no cluster support"},
		{Config{ClusterAddrs: seeds, Addr: "127.0.0.1:6380"}, "not several"},
		{Config{ClusterAddrs: seeds, URL: "redis://127.0.0.1:6380"}, "not several"},
		{Config{ClusterAddrs: seeds, SentinelAddrs: seeds}, "not several"},
		{Config{ClusterAddrs: seeds, DB: 2}, "database 0"},
		{Config{ClusterAddrs: seeds, Channel: "a{b}"}, "without { or }"},
		{Config{ClusterAddrs: seeds, ClusterPartitions: 20000}, "ClusterPartitions"},
		{Config{ClusterAddrs: []string{"nope"}}, "cluster address"},
		{Config{Addr: "127.0.0.1:6380", ClusterPartitions: 8}, "without ClusterAddrs"},
	} {
		_, err := New(tc.cfg)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%+v) = %v, want an error containing %q", tc.cfg, err, tc.want)
		}
	}
	b, err := New(Config{ClusterAddrs: seeds})
	if err != nil || b.cfg.ClusterPartitions != DefaultClusterPartitions {
		t.Fatalf("defaults: %v %+v", err, b)
	}
}

// Partition tags are stable (other nodes and external publishers compute
// the same names) and land on the intended, evenly spaced slots.
func TestPartitionTags(t *testing.T) {
	for _, n := range []int{1, 3, 32, 1024, numSlots} {
		tags := partitionTags(n)
		for i, tag := range tags {
			if got := redistest.KeySlot("{" + tag + "}"); got != partitionSlot(i, n) {
				t.Fatalf("n=%d partition %d: tag %q in slot %d, want %d", n, i, tag, got, partitionSlot(i, n))
			}
		}
	}
	if got := ClusterRoomChannel("primus", 32, "news"); got != "primus:{"+partitionTags(32)[partitionOf("news", 32)]+"}:room:news" {
		t.Fatalf("ClusterRoomChannel = %s", got)
	}
	// Pinned: changing the naming breaks mixed-version deployments.
	const pinned = "primus:{10563}:room:news"
	if got := ClusterRoomChannel("primus", 32, "news"); got != pinned {
		t.Errorf("ClusterRoomChannel(primus, 32, news) = %s, was %s", got, pinned)
	}
}
