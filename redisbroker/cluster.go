package redisbroker

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"
)

// Cluster mode (Config.ClusterAddrs): how it works.
//
// Rooms are spread over partitions (partition.go); all channels of a
// partition share one hash slot, hence one shard. A node keeps at most one
// subscription connection per shard (master address), shared by every
// partition that shard owns, and one goroutine per partition that attaches
// the partition to the connection of its owner: SSUBSCRIBE the service
// channel first, then the partition's rooms, 512 channels per command, in
// one round trip. The partition stays attached until
//
//   - the connection breaks (the master died, a restart, a network
//     failure, or a failed idle probe): every partition on it retries with
//     backoff, asking the cluster for the slot's owner again, and is woken
//     at once when the topology shows a new owner (a promoted replica);
//   - Redis pushes a sunsubscribe for the service channel: its slot moved
//     to another shard (the end of a migration); the partition re-attaches
//     at once on the new owner, the other partitions on that connection are
//     not touched;
//   - an SSUBSCRIBE is answered MOVED: the partition follows the address in
//     the reply at once.
//
// The other partitions keep delivering throughout. Publishing goes through
// the rueidis cluster client (SPUBLISH routed by slot, MOVED and ASK
// followed). An idle connection is probed on the service channel of one of
// its partitions: every node subscribed there hears the probe, so one probe
// per idle interval proves every node's connection to that shard.

var (
	errReleased   = errors.New("redisbroker: shard connection no longer needed")
	errNotCluster = errors.New("redisbroker: ClusterAddrs do not lead to a Redis Cluster (cluster support disabled?)")
	errNoOwner    = errors.New("redisbroker: no master owns the partition's slot")
)

const (
	// topologyRefresh is how often the slot map is re-read when nothing is
	// wrong (for the shard gauges); topologyRetry while a partition is
	// detached (to notice a promotion or a moved slot quickly).
	topologyRefresh = 5 * time.Second
	topologyRetry   = 200 * time.Millisecond
	// maxRedirects is how many MOVED replies in a row a partition follows
	// before it waits and asks the cluster for its slot map instead.
	maxRedirects = 3
)

// cluster is a Broker's cluster-mode state.
type cluster struct {
	b      *Broker
	n      int
	parts  []*partition
	svc    map[string]*partition // service channel -> partition (read-only)
	prefix string                // "<Channel>:{"

	mu     sync.Mutex
	conns  map[string]*shardConn  // master address -> connection (live or dialing)
	shards map[string]*shardStats // master address -> counters, for every address ever used

	topoMu       sync.Mutex
	topo         *topology // the latest slot map (nil before the first)
	topoStart    time.Time // when the fetch that produced topo started
	topoInflight chan struct{}
	inflightAt   time.Time
	refreshing   atomic.Bool
	lastRefresh  time.Time // housekeeping's last refresh start
}

// partition is one group of rooms sharing a hash slot.
type partition struct {
	idx        int
	tag        string
	slot       int
	svc        string        // "<Channel>:{tag}:svc"
	roomPrefix string        // "<Channel>:{tag}:room:"
	wake       chan struct{} // room changes to apply (cap 1)
	retry      chan struct{} // detached: try again now (cap 1)
	moved      chan struct{} // sunsubscribe of svc on the attached connection (cap 1)

	// Guarded by Broker.mu, like the room index they mirror.
	rooms    map[string]*roomState
	toSub    map[string]struct{}
	unwanted map[string]time.Time

	conn       atomic.Pointer[shardConn] // attached or attaching to
	attached   atomic.Bool               // svc and rooms confirmed on conn
	subscribed atomic.Int64              // room channels subscribed on conn
	everUp     bool                      // owned by the partition's goroutine
	lastAddr   atomic.Pointer[string]    // the address it last tried
}

// shardConn is the subscription connection to one master, shared by the
// partitions that master owns.
type shardConn struct {
	cl     *cluster
	addr   string
	ready  chan struct{} // closed when dialing is over
	dead   chan struct{} // closed by fail
	once   sync.Once
	err    error // why it died (written before dead is closed)
	refs   int   // partitions using it (cluster.mu)
	up     bool  // dialed and hooked (written before ready is closed)
	client rueidis.Client
	dc     rueidis.DedicatedClient

	lastRecv   atomic.Int64 // nanoseconds since the broker's epoch
	probeAcked atomic.Uint64
	probe      prober // owned by housekeeping
	probeSeq   uint64
}

// shardStats are one master address's counters.
type shardStats struct {
	connects, losses, connectErrors atomic.Uint64
	resubscribes, movedSlots        atomic.Uint64
	probesSent, probeFailures       atomic.Uint64
}

func newCluster(b *Broker) *cluster {
	n := b.cfg.ClusterPartitions
	cl := &cluster{
		b:      b,
		n:      n,
		svc:    make(map[string]*partition, n),
		prefix: b.cfg.Channel + ":{",
		conns:  make(map[string]*shardConn),
		shards: make(map[string]*shardStats),
	}
	for i, tag := range partitionTags(n) {
		p := &partition{
			idx:        i,
			tag:        tag,
			slot:       partitionSlot(i, n),
			svc:        cl.prefix + tag + "}:svc",
			roomPrefix: cl.prefix + tag + "}:room:",
			wake:       make(chan struct{}, 1),
			retry:      make(chan struct{}, 1),
			moved:      make(chan struct{}, 1),
			rooms:      make(map[string]*roomState),
			toSub:      make(map[string]struct{}),
			unwanted:   make(map[string]time.Time),
		}
		cl.parts = append(cl.parts, p)
		cl.svc[p.svc] = p
	}
	return cl
}

func poke(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// partOf is room's partition.
func (cl *cluster) partOf(room string) *partition { return cl.parts[partitionOf(room, cl.n)] }

// roomOf parses a cluster room channel.
func (cl *cluster) roomOf(channel string) (string, bool) {
	rest, ok := strings.CutPrefix(channel, cl.prefix)
	if !ok {
		return "", false
	}
	i := strings.Index(rest, "}:room:")
	if i < 0 {
		return "", false
	}
	return rest[i+len("}:room:"):], true
}

func (cl *cluster) shard(addr string) *shardStats {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	s := cl.shards[addr]
	if s == nil {
		s = &shardStats{}
		cl.shards[addr] = s
	}
	return s
}

// run starts the partition loops and does the housekeeping until Close.
// The cluster client exists.
func (cl *cluster) run() {
	b := cl.b
	for _, p := range cl.parts {
		b.wg.Add(1)
		go cl.runPartition(p)
	}
	cl.housekeeping()
}

// ---- topology ----

// topology is a slot map: which master owns which slots.
type topology struct {
	ranges []slotRange // sorted by lo
}

type slotRange struct {
	lo, hi int
	master string
}

func (t *topology) owner(slot int) string {
	for _, r := range t.ranges {
		if slot >= r.lo && slot <= r.hi {
			return r.master
		}
	}
	return ""
}

// masters are the distinct masters owning slots, sorted.
func (t *topology) masters() []string {
	var out []string
	for _, r := range t.ranges {
		if !slices.Contains(out, r.master) {
			out = append(out, r.master)
		}
	}
	slices.Sort(out)
	return out
}

// topologyAfter returns a slot map fetched no earlier than t (the cached
// one if it is recent enough); concurrent callers share one fetch.
func (cl *cluster) topologyAfter(t time.Time) (*topology, error) {
	for {
		cl.topoMu.Lock()
		if cl.topo != nil && !cl.topoStart.Before(t) {
			top := cl.topo
			cl.topoMu.Unlock()
			return top, nil
		}
		if ch := cl.topoInflight; ch != nil {
			cl.topoMu.Unlock()
			select {
			case <-ch:
			case <-cl.b.done:
				return nil, errClientMissing
			}
			continue
		}
		start := time.Now()
		ch := make(chan struct{})
		cl.topoInflight, cl.inflightAt = ch, start
		cl.topoMu.Unlock()
		top, err := cl.fetchTopology()
		cl.topoMu.Lock()
		cl.topoInflight = nil
		if err == nil {
			cl.topo, cl.topoStart = top, start
		}
		close(ch)
		cl.topoMu.Unlock()
		return top, err
	}
}

func (cl *cluster) cachedTopology() *topology {
	cl.topoMu.Lock()
	defer cl.topoMu.Unlock()
	return cl.topo
}

// fetchTopology asks up to four known nodes at once for CLUSTER SLOTS and
// takes the first answer.
func (cl *cluster) fetchTopology() (*topology, error) {
	cb := cl.b.client.Load()
	if cb == nil {
		return nil, errClientMissing
	}
	nodes := cb.c.Nodes()
	addrs := make([]string, 0, len(nodes))
	for a := range nodes {
		addrs = append(addrs, a)
	}
	rand.Shuffle(len(addrs), func(i, j int) { addrs[i], addrs[j] = addrs[j], addrs[i] })
	if len(addrs) > 4 {
		addrs = addrs[:4]
	}
	// The context is not cancelled when the first answer is in: a
	// connection being dialed for a query would fail with it, and so would
	// the next command waiting on that dial.
	ctx, cancel := context.WithTimeout(context.Background(), cl.b.cfg.CommandTimeout)
	type result struct {
		top *topology
		err error
	}
	results := make(chan result, len(addrs)+1)
	ask := func(c rueidis.Client, addr string) {
		v, err := c.Do(ctx, c.B().ClusterSlots().Build()).ToArray()
		if err != nil {
			results <- result{err: fmt.Errorf("CLUSTER SLOTS on %s: %w", addr, err)}
			return
		}
		top, err := parseSlots(v, addr)
		results <- result{top, err}
	}
	for _, a := range addrs {
		go ask(nodes[a], a)
	}
	if len(addrs) == 0 {
		go ask(cb.c, "a seed") // the cluster client picks a node
		addrs = append(addrs, "")
	}
	var errs []error
	for i := range addrs {
		r := <-results
		if r.err == nil {
			b := cl.b
			b.wg.Add(1)
			go func(left int) {
				defer b.wg.Done()
				defer cancel()
				for range left {
					<-results
				}
			}(len(addrs) - i - 1)
			return r.top, nil
		}
		errs = append(errs, r.err)
	}
	cancel()
	return nil, errors.Join(errs...)
}

// parseSlots reads a CLUSTER SLOTS reply; from is the address asked (a
// node may report its own host as "").
func parseSlots(v []rueidis.RedisMessage, from string) (*topology, error) {
	fromHost, _, _ := net.SplitHostPort(from)
	top := &topology{}
	for _, e := range v {
		f, err := e.ToArray()
		if err != nil || len(f) < 3 {
			return nil, fmt.Errorf("redisbroker: malformed CLUSTER SLOTS entry from %s", from)
		}
		lo, err1 := f[0].AsInt64()
		hi, err2 := f[1].AsInt64()
		m, err3 := f[2].ToArray()
		if err1 != nil || err2 != nil || err3 != nil || len(m) < 2 {
			return nil, fmt.Errorf("redisbroker: malformed CLUSTER SLOTS entry from %s", from)
		}
		host, _ := m[0].ToString()
		port, err := m[1].AsInt64()
		if err != nil || host == "?" {
			continue
		}
		if host == "" {
			host = fromHost
		}
		top.ranges = append(top.ranges, slotRange{int(lo), int(hi), net.JoinHostPort(host, strconv.FormatInt(port, 10))})
	}
	if len(top.ranges) == 0 {
		return nil, fmt.Errorf("redisbroker: %s reports no slots", from)
	}
	slices.SortFunc(top.ranges, func(a, b slotRange) int { return a.lo - b.lo })
	return top, nil
}

// ---- shard connections ----

// acquire returns the subscription connection to addr, dialing it if
// there is none; release gives it back.
func (cl *cluster) acquire(addr string) (*shardConn, error) {
	b := cl.b
	cl.mu.Lock()
	sc := cl.conns[addr]
	if sc == nil {
		sc = &shardConn{cl: cl, addr: addr, ready: make(chan struct{}), dead: make(chan struct{})}
		sc.refs++
		cl.conns[addr] = sc
		cl.mu.Unlock()
		sc.dial()
	} else {
		sc.refs++
		cl.mu.Unlock()
		select {
		case <-sc.ready:
		case <-b.done:
		}
	}
	select {
	case <-sc.dead:
		err := sc.err
		cl.release(sc)
		return nil, err
	case <-b.done:
		cl.release(sc)
		return nil, errClientMissing
	default:
	}
	return sc, nil
}

func (cl *cluster) release(sc *shardConn) {
	cl.mu.Lock()
	sc.refs--
	last := sc.refs == 0
	if last && cl.conns[sc.addr] == sc {
		delete(cl.conns, sc.addr)
	}
	cl.mu.Unlock()
	if last {
		sc.fail(errReleased)
	}
}

// dial connects to the master at sc.addr: a single-node client with the
// broker's options, and one dedicated connection of it for Pub/Sub.
func (sc *shardConn) dial() {
	defer close(sc.ready)
	b := sc.cl.b
	opt := b.opt
	opt.InitAddress = []string{sc.addr}
	opt.ForceSingleClient = true
	client, err := rueidis.NewClient(opt)
	if err != nil {
		sc.cl.shard(sc.addr).connectErrors.Add(1)
		sc.fail(err)
		return
	}
	sc.client = client
	dc, _ := client.Dedicate()
	sc.dc = dc
	sc.lastRecv.Store(int64(b.clock.Now().Sub(b.epoch)))
	closed := dc.SetPubSubHooks(rueidis.PubSubHooks{
		OnMessage:      func(m rueidis.PubSubMessage) { sc.onMessage(m) },
		OnSubscription: func(s rueidis.PubSubSubscription) { sc.onSubscription(s) },
	})
	select {
	case err := <-closed:
		sc.cl.shard(sc.addr).connectErrors.Add(1)
		sc.fail(orClosed(err))
		return
	default:
	}
	sc.up = true
	b.stats.connects.Add(1)
	sc.cl.shard(sc.addr).connects.Add(1)
	b.log.Info("redis shard connected", "shard", sc.addr)
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		select {
		case err := <-closed:
			sc.fail(orClosed(err))
		case <-sc.dead:
		}
	}()
}

// fail marks the connection dead (once) and closes it aside: its
// partitions notice and re-attach elsewhere or later.
func (sc *shardConn) fail(err error) {
	sc.once.Do(func() {
		sc.err = err
		close(sc.dead)
		cl := sc.cl
		if sc.up && err != errReleased && !cl.b.closing.Load() {
			cl.b.stats.losses.Add(1)
			cl.shard(sc.addr).losses.Add(1)
			cl.b.log.Warn("redis shard connection lost", "shard", sc.addr, "err", err)
		}
		cl.mu.Lock()
		if cl.conns[sc.addr] == sc {
			delete(cl.conns, sc.addr)
		}
		cl.mu.Unlock()
		if sc.client == nil {
			return
		}
		b := cl.b
		b.wg.Add(1)
		go func() {
			defer b.wg.Done()
			sc.dc.Close()
			sc.client.Close()
		}()
	})
}

func (sc *shardConn) isDead() bool {
	select {
	case <-sc.dead:
		return true
	default:
		return false
	}
}

// do runs commands on the connection in one round trip (bounded as
// Broker.do bounds it).
func (sc *shardConn) do(cmds []rueidis.Completed) []rueidis.RedisResult {
	timeout := sc.cl.b.cfg.CommandTimeout + time.Duration(len(cmds))*time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return sc.dc.DoMulti(ctx, cmds...)
}

// onMessage is the connection's Pub/Sub hook (on its reading goroutine).
func (sc *shardConn) onMessage(m rueidis.PubSubMessage) {
	b := sc.cl.b
	sc.lastRecv.Store(int64(b.clock.Now().Sub(b.epoch)))
	if sc.cl.svc[m.Channel] != nil {
		if strings.HasPrefix(m.Message, probeTag) {
			// Our probes carry our secret prefix: "<prefix><node id>:<seq>".
			// Other nodes' probes prove this connection just as well
			// (lastRecv above).
			if rest, ok := strings.CutPrefix(m.Message, b.probePrefix); ok {
				if i := strings.LastIndexByte(rest, ':'); i >= 0 && rest[:i] == b.cfg.NodeID {
					if n, err := strconv.ParseUint(rest[i+1:], 10, 64); err == nil && n > sc.probeAcked.Load() {
						sc.probeAcked.Store(n)
					}
				}
			}
			return
		}
		if b.closing.Load() {
			return
		}
		if len(m.Message) > b.cfg.MaxPayload {
			b.stats.oversized.Add(1)
			return
		}
		b.queueToAll(m.Message) // a multi-room write over the fan-out budget
		return
	}
	b.enqueue(m.Channel, m.Message)
}

// onSubscription is the connection's subscription hook: a sunsubscribe of
// a service channel that nobody asked for means its slot moved away.
func (sc *shardConn) onSubscription(s rueidis.PubSubSubscription) {
	if s.Kind != "sunsubscribe" {
		return
	}
	if p := sc.cl.svc[s.Channel]; p != nil && p.conn.Load() == sc {
		poke(p.moved)
	}
}

// ---- partitions ----

// outcome is how a partition's attachment ended.
type outcome struct {
	established bool   // it had been attached
	movedTo     string // an SSUBSCRIBE was answered MOVED to this address
	migrated    bool   // its service channel was sunsubscribed by Redis
	closed      bool   // the broker is closing
	err         error
}

// runPartition keeps partition p attached to its owner's connection.
func (cl *cluster) runPartition(p *partition) {
	b := cl.b
	defer b.wg.Done()
	bo := backoff{min: 50 * time.Millisecond, max: b.cfg.MaxBackoff}
	var (
		hint      string
		redirects int
		following bool      // re-attaching after a slot move
		fresh     time.Time // the slot map must be fetched after this
	)
	for !b.closing.Load() {
		addr := hint
		hint = ""
		if addr == "" {
			top, err := cl.topologyAfter(fresh)
			if err == nil {
				if addr = top.owner(p.slot); addr == "" {
					err = errNoOwner
				}
			}
			if err != nil {
				b.stats.connectErrors.Add(1)
				b.log.Warn("redis cluster slot map unavailable", "partition", p.idx, "err", err)
				fresh = time.Now()
				if !cl.wait(p, bo.next()) {
					return
				}
				continue
			}
		}
		p.lastAddr.Store(&addr)
		sc, err := cl.acquire(addr)
		if err != nil {
			if b.closing.Load() {
				return
			}
			b.stats.connectErrors.Add(1)
			b.log.Warn("redis shard unreachable", "shard", addr, "partition", p.idx, "err", err)
			fresh = time.Now()
			if !cl.wait(p, bo.next()) {
				return
			}
			continue
		}
		o := cl.attach(p, sc, following)
		cl.release(sc)
		following = false
		switch {
		case o.closed:
			return
		case o.movedTo != "":
			redirects++
			b.log.Info("partition slot moved (MOVED)", "partition", p.idx, "slot", p.slot, "from", addr, "to", o.movedTo)
			following = true
			if redirects <= maxRedirects {
				hint = o.movedTo
				continue
			}
			fresh = time.Now()
		case o.migrated:
			redirects = 0
			bo.reset()
			b.log.Info("partition slot migrated away (sunsubscribe)", "partition", p.idx, "slot", p.slot, "from", addr)
			following = true
			fresh = time.Now()
			continue
		default:
			redirects = 0
			if o.established {
				bo.reset()
			}
			fresh = time.Now()
			b.log.Warn("partition detached", "partition", p.idx, "shard", addr, "err", o.err)
		}
		if !cl.wait(p, bo.next()) {
			return
		}
	}
}

// wait sleeps d, or until the partition is told to retry or the broker
// closes (false).
func (cl *cluster) wait(p *partition, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-cl.b.done:
		return false
	case <-p.retry:
		return true
	case <-t.C:
		return true
	}
}

// attach subscribes p on sc and keeps applying its room changes until the
// attachment ends.
func (cl *cluster) attach(p *partition, sc *shardConn, following bool) (o outcome) {
	b := cl.b
	p.conn.Store(sc)
	select {
	case <-p.moved: // a stale signal from an earlier attachment
	default:
	}
	defer func() {
		p.attached.Store(false)
		p.subscribed.Store(0)
		p.conn.Store(nil)
	}()
	start := time.Now()
	n := cl.resetPartition(p)
	if o, ok := cl.apply(p, sc, true); !ok {
		return o
	}
	took := time.Since(start)
	p.attached.Store(true)
	st := cl.shard(sc.addr)
	if p.everUp {
		st.resubscribes.Add(1)
		// What was written while the partition was detached is read
		// back from its history rooms' streams.
		b.historyResync(b.partitionRooms(p))
	}
	if following {
		st.movedSlots.Add(1)
	}
	p.everUp = true
	b.stats.lastResubscribe.Store(int64(took))
	b.stats.lastResubscribeRooms.Store(int64(n))
	b.log.Debug("partition attached", "partition", p.idx, "shard", sc.addr, "rooms", n, "took", took)
	for {
		select {
		case <-b.done:
			return outcome{established: true, closed: true}
		case <-sc.dead:
			return outcome{established: true, err: sc.err}
		case <-p.moved:
			return outcome{established: true, migrated: true}
		case <-p.wake:
			if o, ok := cl.apply(p, sc, false); !ok {
				o.established = true
				return o
			}
		}
	}
}

// resetPartition marks p's wanted rooms as to be subscribed (a new
// attachment has none) and forgets the others; it returns their number.
func (cl *cluster) resetPartition(p *partition) int {
	b := cl.b
	b.mu.Lock()
	defer b.mu.Unlock()
	clear(p.unwanted)
	clear(p.toSub)
	n := 0
	for room, st := range p.rooms {
		st.subscribed = false
		setLive(st, false)
		if !st.wanted {
			delete(p.rooms, room)
			delete(b.rooms, room)
			continue
		}
		p.toSub[room] = struct{}{}
		n++
	}
	return n
}

// apply subscribes p's rooms waiting for it and unsubscribes those left
// longer than UnsubscribeDelay ago (first: the service channel first), all
// in one round trip. ok is false when the attachment must end.
func (cl *cluster) apply(p *partition, sc *shardConn, first bool) (o outcome, ok bool) {
	b := cl.b
	now := b.clock.Now()
	b.mu.Lock()
	var subs, unsubs, subRooms []string
	for room := range p.toSub {
		if st := p.rooms[room]; st != nil && st.wanted && !st.subscribed {
			st.subscribed = true
			subs = append(subs, p.roomPrefix+room)
			subRooms = append(subRooms, room)
		}
	}
	clear(p.toSub)
	for room, since := range p.unwanted {
		if now.Sub(since) >= b.cfg.UnsubscribeDelay {
			unsubs = append(unsubs, room)
			delete(p.unwanted, room)
			if st := p.rooms[room]; st != nil {
				setLive(st, false) // a join from now on waits for the new SSUBSCRIBE
			}
		}
	}
	b.mu.Unlock()
	var cmds []rueidis.Completed
	if first {
		cmds = append(cmds, sc.dc.B().Ssubscribe().Channel(p.svc).Build())
	}
	for chunk := range slices.Chunk(subs, subscribeBatch) {
		cmds = append(cmds, sc.dc.B().Ssubscribe().Channel(chunk...).Build())
	}
	unsubChannels := make([]string, len(unsubs))
	for i, room := range unsubs {
		unsubChannels[i] = p.roomPrefix + room
	}
	for chunk := range slices.Chunk(unsubChannels, subscribeBatch) {
		cmds = append(cmds, sc.dc.B().Sunsubscribe().Channel(chunk...).Build())
	}
	if len(cmds) == 0 {
		return outcome{}, true
	}
	var firstErr error
	anyOK := false
	for _, r := range sc.do(cmds) {
		if err := r.Error(); err == nil {
			anyOK = true
		} else if firstErr == nil {
			firstErr = err
		}
	}
	if firstErr != nil {
		var re *rueidis.RedisError
		if !errors.As(firstErr, &re) {
			// The connection failed or timed out: whatever it holds is
			// unknown, so nobody keeps using it.
			sc.fail(firstErr)
			return outcome{err: firstErr}, false
		}
		if addr, moved := re.IsMoved(); moved {
			// Nothing of p is subscribed on sc: either every command was
			// refused, or the slot moved in between, which removed the
			// channels subscribed before.
			return outcome{movedTo: addr}, false
		}
		if anyOK || !first {
			// Some of p's channels are subscribed, some not: start this
			// connection afresh rather than leave p half-subscribed.
			sc.fail(firstErr)
		}
		return outcome{err: firstErr}, false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	p.subscribed.Add(int64(len(subs) - len(unsubs)))
	for _, room := range subRooms {
		if st := p.rooms[room]; st != nil && st.subscribed {
			setLive(st, true)
		}
	}
	for _, room := range unsubs {
		st := p.rooms[room]
		if st == nil {
			continue
		}
		if st.wanted {
			// Joined again while the SUNSUBSCRIBE was in flight.
			st.subscribed = false
			p.toSub[room] = struct{}{}
			poke(p.wake)
			continue
		}
		delete(p.rooms, room)
		delete(b.rooms, room)
	}
	return outcome{}, true
}

// ---- housekeeping ----

// housekeeping runs every tick: due lazy unsubscribes, idle probes of the
// shard connections, and slot-map refreshes (often while a partition is
// detached, to wake it as soon as its slot has a new owner).
func (cl *cluster) housekeeping() {
	b := cl.b
	ticks, stop := b.clock.Ticker(tick)
	defer stop()
	for {
		select {
		case <-b.done:
			return
		case <-ticks:
		}
		now := b.clock.Now()
		b.mu.RLock()
		for _, p := range cl.parts {
			for _, since := range p.unwanted {
				if now.Sub(since) >= b.cfg.UnsubscribeDelay {
					poke(p.wake)
					break
				}
			}
		}
		b.mu.RUnlock()
		cl.probe(now)
		cl.maybeRefresh()
		b.flushDropped()
		if b.ticked != nil {
			b.ticked()
		}
	}
}

// maybeRefresh re-reads the slot map in the background when it is due,
// and wakes the detached partitions whose slot changed owner.
func (cl *cluster) maybeRefresh() {
	detached := false
	for _, p := range cl.parts {
		if !p.attached.Load() {
			detached = true
			break
		}
	}
	every := topologyRefresh
	if detached {
		every = topologyRetry
	}
	if time.Since(cl.lastRefresh) < every || !cl.refreshing.CompareAndSwap(false, true) {
		return
	}
	cl.lastRefresh = time.Now()
	b := cl.b
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		defer cl.refreshing.Store(false)
		top, err := cl.topologyAfter(time.Now())
		if err != nil {
			return
		}
		for _, p := range cl.parts {
			if p.attached.Load() {
				continue
			}
			if last := p.lastAddr.Load(); last != nil && top.owner(p.slot) != *last {
				poke(p.retry)
			}
		}
	}()
}

// probe publishes a probe on each shard connection that was silent for
// ProbeInterval (on the service channel of one of its partitions, so it is
// routed to the shard that owns that slot now) and fails a connection
// whose probe did not come back within ProbeTimeout.
func (cl *cluster) probe(now time.Time) {
	b := cl.b
	if b.cfg.ProbeInterval < 0 {
		return
	}
	cl.mu.Lock()
	conns := make([]*shardConn, 0, len(cl.conns))
	for _, sc := range cl.conns {
		conns = append(conns, sc)
	}
	cl.mu.Unlock()
	for _, sc := range conns {
		if sc.isDead() {
			continue
		}
		select {
		case <-sc.ready:
		default:
			continue
		}
		p := &sc.probe
		if p.outstanding {
			if sc.probeAcked.Load() >= p.seq {
				p.outstanding = false
				continue
			}
			if now.Sub(p.sent) > b.cfg.ProbeTimeout {
				b.stats.probeFailures.Add(1)
				cl.shard(sc.addr).probeFailures.Add(1)
				b.log.Warn("shard probe failed", "shard", sc.addr, "seq", p.seq, "sent", p.sent)
				sc.fail(errProbeFailed)
			}
			continue
		}
		if now.Sub(b.epoch)-time.Duration(sc.lastRecv.Load()) < b.cfg.ProbeInterval {
			continue
		}
		// The lowest attached partition: every node picks the same
		// service channel, so one node's probe serves the others.
		var svc string
		for _, part := range cl.parts {
			if part.conn.Load() == sc && part.attached.Load() {
				svc = part.svc
				break
			}
		}
		if svc == "" {
			continue
		}
		sc.probeSeq++
		p.seq, p.outstanding, p.sent = sc.probeSeq, true, now
		b.stats.probesSent.Add(1)
		cl.shard(sc.addr).probesSent.Add(1)
		payload := b.probePrefix + b.cfg.NodeID + ":" + strconv.FormatUint(p.seq, 10)
		cb := b.client.Load()
		if cb == nil {
			continue
		}
		c := cb.c
		b.wg.Add(1)
		go func() {
			defer b.wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), b.cfg.ProbeTimeout)
			defer cancel()
			// An error shows up as the probe not coming back.
			_ = c.Do(ctx, c.B().Spublish().Channel(svc).Message(payload).Build()).Error()
		}()
	}
}

// ---- stats ----

// ShardStats describes one shard (a master address) as this node uses it.
type ShardStats struct {
	// Addr is the master's host:port.
	Addr string
	// Current: the shard owns some of the partitions now (per the latest
	// slot map or an attachment). Addresses of former masters keep their
	// counters with Current false.
	Current bool
	// Up: every partition of the shard is subscribed on a live connection.
	Up bool
	// Partitions is the number of partitions it owns; SubscribedRooms the
	// room channels subscribed on it.
	Partitions, SubscribedRooms int
	// Connects counts subscription connections established to it;
	// ConnectionLosses those that broke; ConnectErrors failed attempts.
	Connects, ConnectionLosses, ConnectErrors uint64
	// Resubscribes counts partitions subscribed on it again after having
	// been subscribed somewhere before (reconnects, failovers, moves).
	Resubscribes uint64
	// MovedSlots counts partitions that followed their slot to it after a
	// migration (a sunsubscribe or a MOVED reply).
	MovedSlots uint64
	// ProbesSent and ProbeFailures count idle probes of its connection.
	ProbesSent, ProbeFailures uint64
}

// shardStats returns the per-shard view, sorted by address, the number of
// shards in the latest slot map, and whether any partition is attached.
func (cl *cluster) stats() (out []ShardStats, shards int, anyUp bool) {
	top := cl.cachedTopology()
	type agg struct {
		parts, up, rooms int
	}
	cur := map[string]*agg{}
	for _, p := range cl.parts {
		var addr string
		if sc := p.conn.Load(); sc != nil && p.attached.Load() {
			addr = sc.addr
		} else if top != nil {
			addr = top.owner(p.slot)
		} else if last := p.lastAddr.Load(); last != nil {
			addr = *last
		}
		if addr == "" {
			continue
		}
		a := cur[addr]
		if a == nil {
			a = &agg{}
			cur[addr] = a
		}
		a.parts++
		if p.attached.Load() {
			a.up++
			anyUp = true
			a.rooms += int(p.subscribed.Load())
		}
	}
	if top != nil {
		shards = len(top.masters())
	}
	for addr := range cur {
		cl.shard(addr)
	}
	cl.mu.Lock()
	for addr, s := range cl.shards {
		st := ShardStats{
			Addr:             addr,
			Connects:         s.connects.Load(),
			ConnectionLosses: s.losses.Load(),
			ConnectErrors:    s.connectErrors.Load(),
			Resubscribes:     s.resubscribes.Load(),
			MovedSlots:       s.movedSlots.Load(),
			ProbesSent:       s.probesSent.Load(),
			ProbeFailures:    s.probeFailures.Load(),
		}
		if a := cur[addr]; a != nil {
			st.Current = true
			st.Partitions, st.SubscribedRooms = a.parts, a.rooms
			st.Up = a.up == a.parts
		}
		out = append(out, st)
	}
	cl.mu.Unlock()
	slices.SortFunc(out, func(a, b ShardStats) int { return strings.Compare(a.Addr, b.Addr) })
	return out, shards, anyUp
}

func (cl *cluster) subscribedRooms() int {
	n := 0
	for _, p := range cl.parts {
		n += int(p.subscribed.Load())
	}
	return n
}

// closeAll closes the connections left (Close, after every goroutine
// ended).
func (cl *cluster) closeAll() {
	cl.mu.Lock()
	conns := make([]*shardConn, 0, len(cl.conns))
	for _, sc := range cl.conns {
		conns = append(conns, sc)
	}
	cl.mu.Unlock()
	for _, sc := range conns {
		sc.once.Do(func() {
			sc.err = errReleased
			close(sc.dead)
			if sc.client != nil {
				sc.dc.Close()
				sc.client.Close()
			}
		})
	}
}
