package primus

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Membership: every node broadcasts a heartbeat every NodeTTL/4 and is
// live until NodeTTL after the last one this node heard. A node announces
// itself with a "hello" heartbeat when its broker starts listening (and
// after each reconnection), which every node answers at once with its own
// heartbeat sent to it, so a new node knows the cluster within a round
// trip; cluster calls made before that wait for it (warm). A node that
// shuts down says bye. Calls in progress stop waiting for a node the
// moment it leaves the membership.

const (
	// maxNodes bounds the membership table: heartbeats of more nodes
	// (forged ones, say) are ignored.
	maxNodes = 1024
	// clusterWorkers serve other nodes' requests; clusterQueue more may
	// wait, further ones are refused (dropped and counted).
	clusterWorkers = 4
	clusterQueue   = 256
	// maxHelloWait bounds how long a node waits for the answers to its
	// hello before its first cluster call (NodeTTL/20 if shorter).
	maxHelloWait = 250 * time.Millisecond
)

// clusterState is a server's side of the node protocol.
type clusterState struct {
	srv       *Server
	cb        ClusterBroker // nil: cluster calls are not supported (err says why)
	err       error
	self      string
	startedAt time.Time
	ttl       time.Duration
	beatEvery time.Duration
	helloWait time.Duration

	mu      sync.Mutex
	nodes   map[string]*nodeEntry
	pending map[string]*pendingCall
	closed  bool

	warm     chan struct{} // closed once the first hello had time to be answered
	warmOnce sync.Once
	linkUp   chan struct{} // cap 1: the broker (re)started listening
	hellos   chan string   // nodes that asked for our heartbeat
	serveQ   chan *incomingRequest
	// stopCtx ends with close: the loop, the workers and their sends stop.
	stopCtx context.Context
	stopNow context.CancelFunc
	wg      sync.WaitGroup

	calls, partialCalls, served, refused, malformed, unmatched atomic.Uint64
}

type nodeEntry struct {
	info NodeInfo
}

// newClusterState enables the node protocol on the server's broker
// (before it starts). An error fails New.
func newClusterState(srv *Server) (*clusterState, error) {
	cfg := &srv.cfg
	c := &clusterState{
		srv:       srv,
		self:      cfg.NodeID,
		startedAt: time.Now(),
		ttl:       cfg.NodeTTL,
		beatEvery: cfg.NodeTTL / 4,
		helloWait: min(maxHelloWait, cfg.NodeTTL/20),
		nodes:     make(map[string]*nodeEntry),
		pending:   make(map[string]*pendingCall),
		warm:      make(chan struct{}),
		linkUp:    make(chan struct{}, 1),
		hellos:    make(chan string, 64),
		serveQ:    make(chan *incomingRequest, clusterQueue),
	}
	c.stopCtx, c.stopNow = context.WithCancel(context.Background())
	cb, ok := cfg.Broker.(ClusterBroker)
	if !ok {
		c.err = fmt.Errorf("%w (%T is not a ClusterBroker)", ErrNotSupported, cfg.Broker)
		return c, nil
	}
	if err := cb.EnableCluster(c.self, clusterHandler{c}); err != nil {
		if errors.Is(err, ErrNotSupported) {
			c.err = err
			srv.log.Info("primus: cluster calls not supported by the broker", "err", err)
			return c, nil
		}
		return nil, fmt.Errorf("primus: enabling cluster calls: %w", err)
	}
	c.cb = cb
	return c, nil
}

// start runs the membership loop and the request workers (after the
// broker started).
func (c *clusterState) start() {
	if c.cb == nil {
		return
	}
	c.wg.Add(1 + clusterWorkers)
	go c.loop()
	for range clusterWorkers {
		go c.worker()
	}
}

// close says bye, stops the goroutines and fails the calls in progress
// (at the start of a shutdown: the other nodes stop waiting for this one).
func (c *clusterState) close() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	calls := make([]*pendingCall, 0, len(c.pending))
	for _, p := range c.pending {
		calls = append(calls, p)
	}
	c.mu.Unlock()
	for _, p := range calls {
		p.abort(ErrServerClosed)
	}
	if c.cb == nil {
		return
	}
	c.stopNow()
	c.wg.Wait()
	if b, err := encodeNodeMessage(&nodeMessage{T: msgBye, From: c.self}); err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), min(time.Second, c.srv.cfg.PublishTimeout))
		_ = c.cb.Broadcast(ctx, b)
		cancel()
	}
}

func (c *clusterState) usable() error {
	if c.cb == nil {
		return c.err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return ErrServerClosed
	}
	return nil
}

// withTimeout gives ctx Config.ClusterTimeout when it has no deadline:
// every cluster call ends.
func (c *clusterState) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, c.srv.cfg.ClusterTimeout)
}

func (c *clusterState) awaitWarm(ctx context.Context) error {
	select {
	case <-c.warm:
		return nil
	default:
	}
	select {
	case <-c.warm:
		return nil
	case <-c.stopCtx.Done():
		return ErrServerClosed
	case <-ctx.Done():
		return fmt.Errorf("primus: the cluster membership is not known yet (the broker has not started listening): %w", ctx.Err())
	}
}

// nodeList is the membership with this node, sorted by id.
func (c *clusterState) nodeList() []NodeInfo {
	now := time.Now()
	st := c.srv.Stats()
	out := []NodeInfo{{ID: c.self, Sparks: int(st.Connections), Rooms: st.Rooms, StartedAt: c.startedAt, LastSeen: now, Self: true}}
	c.mu.Lock()
	for _, e := range c.nodes {
		if now.Sub(e.info.LastSeen) <= c.ttl {
			out = append(out, e.info)
		}
	}
	c.mu.Unlock()
	slices.SortFunc(out, func(a, b NodeInfo) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// liveOthers are the ids of the live nodes but this one.
func (c *clusterState) liveOthers() []string {
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]string, 0, len(c.nodes))
	for id, e := range c.nodes {
		if now.Sub(e.info.LastSeen) <= c.ttl {
			out = append(out, id)
		}
	}
	return out
}

func (c *clusterState) isLive(id string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.nodes[id]
	return e != nil && time.Since(e.info.LastSeen) <= c.ttl
}

// loop sends heartbeats (a hello after each link-up, until one is out),
// answers hellos, and expires silent nodes.
func (c *clusterState) loop() {
	defer c.wg.Done()
	sweep := max(c.ttl/10, 10*time.Millisecond)
	t := time.NewTicker(sweep)
	defer t.Stop()
	var lastBeat time.Time
	var warmC <-chan time.Time
	hello := false
	for {
		select {
		case <-c.stopCtx.Done():
			return
		case <-c.linkUp:
			hello = true
		case id := <-c.hellos:
			c.sendHeartbeat(id, false)
			continue
		case <-warmC:
			warmC = nil
			c.warmOnce.Do(func() { close(c.warm) })
			continue
		case <-t.C:
		}
		now := time.Now()
		if hello || now.Sub(lastBeat) >= c.beatEvery {
			if c.sendHeartbeat("", hello) && hello {
				hello = false
				// The other nodes answer within a round trip; the first
				// calls wait that long.
				warmC = time.After(c.helloWait)
			}
			lastBeat = now
		}
		c.sweep(now)
	}
}

// sendHeartbeat broadcasts this node's heartbeat (to: "") or sends it to
// one node; it reports whether the broker took it.
func (c *clusterState) sendHeartbeat(to string, hello bool) bool {
	st := c.srv.Stats()
	b, err := encodeNodeMessage(&nodeMessage{
		T: msgHeartbeat, From: c.self, Hello: hello,
		Started: c.startedAt.UnixMilli(), Sparks: st.Connections, Rooms: int64(st.Rooms),
	})
	if err != nil {
		return false
	}
	ctx, cancel := context.WithTimeout(c.stopCtx, max(c.beatEvery, 100*time.Millisecond))
	defer cancel()
	if to != "" {
		err = c.cb.Send(ctx, to, b)
	} else {
		err = c.cb.Broadcast(ctx, b)
	}
	if err != nil {
		c.srv.log.Debug("primus: heartbeat not sent", "err", err)
		return false
	}
	return true
}

// sweep removes the nodes silent for longer than NodeTTL.
func (c *clusterState) sweep(now time.Time) {
	var gone []string
	c.mu.Lock()
	for id, e := range c.nodes {
		if now.Sub(e.info.LastSeen) > c.ttl {
			delete(c.nodes, id)
			gone = append(gone, id)
		}
	}
	c.mu.Unlock()
	for _, id := range gone {
		c.srv.log.Info("primus: node left the cluster (no heartbeat)", "node", id, "ttl", c.ttl)
		c.nodeGone(id)
	}
}

// nodeGone tells the calls in progress that id will not answer.
func (c *clusterState) nodeGone(id string) {
	c.mu.Lock()
	calls := make([]*pendingCall, 0, len(c.pending))
	for _, p := range c.pending {
		calls = append(calls, p)
	}
	c.mu.Unlock()
	for _, p := range calls {
		p.gone(id)
	}
}

// clusterHandler is the NodeHandler the server gives its broker.
type clusterHandler struct{ c *clusterState }

func (h clusterHandler) NodeLinkUp() {
	select {
	case h.c.linkUp <- struct{}{}:
	default:
	}
}

func (h clusterHandler) HandleNodeMessage(payload []byte) {
	c := h.c
	m, err := decodeNodeMessage(payload)
	if err != nil {
		c.malformed.Add(1)
		c.srv.log.Debug("primus: node message dropped", "err", err)
		return
	}
	if m.From == c.self {
		return // our own broadcast
	}
	switch m.T {
	case msgHeartbeat:
		c.heartbeat(m)
	case msgBye:
		c.mu.Lock()
		_, known := c.nodes[m.From]
		delete(c.nodes, m.From)
		c.mu.Unlock()
		if known {
			c.srv.log.Info("primus: node left the cluster", "node", m.From)
			c.nodeGone(m.From)
		}
	case msgRequest:
		c.enqueue(m)
	case msgResponse:
		c.response(m)
	}
}

func (c *clusterState) heartbeat(m *nodeMessage) {
	now := time.Now()
	c.mu.Lock()
	e := c.nodes[m.From]
	if e == nil {
		if len(c.nodes) >= maxNodes {
			c.mu.Unlock()
			c.malformed.Add(1)
			return
		}
		e = &nodeEntry{}
		c.nodes[m.From] = e
		c.srv.log.Info("primus: node joined the cluster", "node", m.From)
	}
	e.info = NodeInfo{ID: m.From, Sparks: int(m.Sparks), Rooms: int(m.Rooms), StartedAt: time.UnixMilli(m.Started), LastSeen: now}
	c.mu.Unlock()
	if m.Hello {
		select {
		case c.hellos <- m.From:
		default:
		}
	}
}

func (c *clusterState) statsSnapshot() ClusterStats {
	st := ClusterStats{
		Enabled:      c.cb != nil,
		Calls:        c.calls.Load(),
		PartialCalls: c.partialCalls.Load(),
		Served:       c.served.Load(),
		Refused:      c.refused.Load(),
		Malformed:    c.malformed.Load(),
		Unmatched:    c.unmatched.Load(),
	}
	if st.Enabled {
		st.Nodes = 1 + len(c.liveOthers())
	}
	return st
}
