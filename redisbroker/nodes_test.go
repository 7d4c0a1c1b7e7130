package redisbroker

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/primusgo/primus"
	"github.com/primusgo/primus/brokertest"
	"github.com/primusgo/primus/internal/redistest"
)

// startNodeBroker creates a broker with node messages for id, starts it
// and waits for its link.
func startNodeBroker(t testing.TB, cfg Config, id string, h primus.NodeHandler) (*Broker, *brokertest.Recorder) {
	t.Helper()
	b := newBroker(t, cfg)
	if err := b.EnableCluster(id, h); err != nil {
		t.Fatal(err)
	}
	rec := brokertest.NewRecorder()
	if err := b.Start(rec); err != nil {
		t.Fatal(err)
	}
	return b, rec
}

func sendNode(t testing.TB, b *Broker, to, payload string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := b.Send(ctx, to, []byte(payload)); err != nil {
		t.Fatalf("Send: %v", err)
	}
}

// awaitNodeDelivery sends numbered payloads from b to node to until one
// arrives at rec, and returns how long that took.
func awaitNodeDelivery(t testing.TB, b *Broker, to string, rec *brokertest.NodeRecorder, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for i := 0; ; i++ {
		p := fmt.Sprintf(`{"ping":%d,"at":%d}`, i, start.UnixNano())
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		_ = b.Send(ctx, to, []byte(p))
		cancel()
		deadline := time.Now().Add(100 * time.Millisecond)
		for time.Now().Before(deadline) {
			if rec.Has(p) {
				return time.Since(start)
			}
			time.Sleep(5 * time.Millisecond)
		}
		if time.Since(start) > within {
			t.Fatalf("no node message from %s to %s within %v", b.NodeID(), to, within)
		}
	}
}

// When the server and its broker share the node id (as the standalone
// server does), node messages and idle probes share the node's channel:
// probes keep being answered, node messages reach the handler, and a
// forged probe reaches neither.
func TestNodeMessagesShareTheProbeChannel(t *testing.T) {
	srv := redistest.StartServer(t)
	cfg := testConfig(srv.Addr(), Native, freshChannel())
	cfg.ProbeInterval, cfg.ProbeTimeout = 50*time.Millisecond, time.Second
	cfg.NodeID = "a"
	recA := brokertest.NewNodeRecorder()
	a, _ := startNodeBroker(t, cfg, "a", recA)
	cfg.NodeID = "b"
	recB := brokertest.NewNodeRecorder()
	b, _ := startNodeBroker(t, cfg, "b", recB)
	recA.WaitFor(t, "a's link", func() bool { return recA.LinkUps() == 1 })
	recB.WaitFor(t, "b's link", func() bool { return recB.LinkUps() == 1 })
	awaitNodeDelivery(t, b, "a", recA, 5*time.Second)
	srv.Publish(NodeChannel(cfg.Channel, "a"), probeTag+"forged:1")
	srv.Publish(NodeChannel(cfg.Channel, "a"), a.probePrefix+"999999")
	time.Sleep(300 * time.Millisecond) // several probe intervals
	sendNode(t, b, "a", `"after"`)
	recA.WaitFor(t, "the message after the probes", func() bool { return recA.Has(`"after"`) })
	for _, m := range recA.Messages() {
		if strings.HasPrefix(string(m), probeTag) {
			t.Fatalf("a probe reached the node handler: %s", m)
		}
	}
	st := a.Stats()
	if st.ProbesSent == 0 || st.ProbeFailures != 0 || st.Reconnects != 0 {
		t.Fatalf("probes sent %d, failed %d, reconnects %d", st.ProbesSent, st.ProbeFailures, st.Reconnects)
	}
	if ns := a.NodeStats(); ns.Received < 2 || ns.LinkUps != 1 {
		t.Fatalf("NodeStats = %+v", ns)
	}
}

// blockingNodes is a node handler that blocks until released.
type blockingNodes struct {
	release chan struct{}
	once    sync.Once
	n       int
	mu      sync.Mutex
}

func (h *blockingNodes) HandleNodeMessage([]byte) {
	<-h.release
	h.mu.Lock()
	h.n++
	h.mu.Unlock()
}
func (h *blockingNodes) NodeLinkUp() {}

// A handler that does not return blocks neither the Redis reader (room
// writes keep arriving) nor the broker: what its queue cannot hold is
// dropped and counted.
func TestNodeMessagesNeverBlockTheReader(t *testing.T) {
	srv := redistest.StartServer(t)
	cfg := testConfig(srv.Addr(), Native, freshChannel())
	cfg.QueueSize = 16
	h := &blockingNodes{release: make(chan struct{})}
	t.Cleanup(func() { h.once.Do(func() { close(h.release) }) })
	a, recA := startNodeBroker(t, cfg, "a", h)
	b, _ := startBroker(t, cfg)
	a.Subscribe("r")
	brokertest.AwaitSubscribed(t, b, recA, "r")
	for i := range 200 {
		srv.Publish(NodeChannel(cfg.Channel, "a"), fmt.Sprintf(`{"i":%d}`, i))
	}
	brokertest.AwaitSubscribed(t, b, recA, "r")
	if ns := a.NodeStats(); ns.Dropped == 0 {
		t.Fatalf("nothing dropped: %+v", ns)
	}
	h.once.Do(func() { close(h.release) })
}

// Node messages follow a Sentinel failover: the link comes up again on
// the new master.
func TestNodeMessagesSentinelFailover(t *testing.T) {
	t.Parallel()
	g := redistest.StartSentinelGroup(t)
	cfg := sentinelConfig(g, Native, freshChannel())
	recA, recB := brokertest.NewNodeRecorder(), brokertest.NewNodeRecorder()
	a, _ := startNodeBroker(t, cfg, "a", recA)
	b, _ := startNodeBroker(t, cfg, "b", recB)
	awaitNodeDelivery(t, a, "b", recB, 10*time.Second)
	awaitNodeDelivery(t, b, "a", recA, 10*time.Second)
	g.KillMaster()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := g.WaitForPromotion(ctx); err != nil {
		t.Fatal(err)
	}
	took := awaitNodeDelivery(t, a, "b", recB, 10*time.Second)
	awaitNodeDelivery(t, b, "a", recA, 10*time.Second)
	t.Logf("node messages again %v after the promotion", took.Round(time.Millisecond))
	if recA.LinkUps() < 2 || recB.LinkUps() < 2 {
		t.Errorf("link-ups %d and %d, want a second one after the failover", recA.LinkUps(), recB.LinkUps())
	}
}

// On a Redis Cluster node messages use a connection of their own to any
// cluster node; when that node dies, the connection moves to another.
func TestNodeMessagesClusterControlConnection(t *testing.T) {
	c := redistest.StartCluster(t, redistest.ClusterConfig{})
	ch := freshChannel()
	recA, recB := brokertest.NewNodeRecorder(), brokertest.NewNodeRecorder()
	cfg := clusterTestConfig(c, ch)
	cfg.ProbeInterval, cfg.ProbeTimeout = 200*time.Millisecond, time.Second
	a, _ := startNodeBroker(t, cfg, "a", recA)
	b, _ := startNodeBroker(t, cfg, "b", recB)
	awaitNodeDelivery(t, a, "b", recB, 10*time.Second)
	awaitNodeDelivery(t, b, "a", recA, 10*time.Second)
	addr := a.nodes.controlAddr.Load()
	var victim *redistest.Server
	for _, s := range c.Nodes() {
		if s.Addr() == *addr {
			victim = s
		}
	}
	if victim == nil {
		t.Fatalf("control connection to %s: not a node of the cluster", *addr)
	}
	victim.Kill()
	start := time.Now()
	recA.WaitFor(t, "a's link on another node", func() bool { return recA.LinkUps() >= 2 })
	took := awaitNodeDelivery(t, b, "a", recA, 15*time.Second)
	t.Logf("a's node messages again %v after its cluster node was killed (on %s now)", time.Since(start).Round(time.Millisecond), *a.nodes.controlAddr.Load())
	_ = took
	if now := *a.nodes.controlAddr.Load(); now == *addr {
		t.Fatalf("still on %s", now)
	}
}
