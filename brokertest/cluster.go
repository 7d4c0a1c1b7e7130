package brokertest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/primusgo/primus"
)

// NodeRecorder is a primus.NodeHandler that keeps what it receives.
type NodeRecorder struct {
	mu     sync.Mutex
	msgs   [][]byte
	links  int
	notify chan struct{}
}

// NewNodeRecorder returns an empty NodeRecorder.
func NewNodeRecorder() *NodeRecorder { return &NodeRecorder{notify: make(chan struct{}, 1)} }

// HandleNodeMessage implements primus.NodeHandler; it copies payload.
func (r *NodeRecorder) HandleNodeMessage(payload []byte) {
	r.mu.Lock()
	r.msgs = append(r.msgs, bytes.Clone(payload))
	r.mu.Unlock()
	r.poke()
}

// NodeLinkUp implements primus.NodeHandler.
func (r *NodeRecorder) NodeLinkUp() {
	r.mu.Lock()
	r.links++
	r.mu.Unlock()
	r.poke()
}

func (r *NodeRecorder) poke() {
	select {
	case r.notify <- struct{}{}:
	default:
	}
}

// Messages returns a copy of the payloads received so far.
func (r *NodeRecorder) Messages() [][]byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.msgs)
}

// LinkUps is the number of NodeLinkUp calls so far.
func (r *NodeRecorder) LinkUps() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.links
}

// Has reports whether payload was received.
func (r *NodeRecorder) Has(payload string) bool { return r.Count(payload) > 0 }

// Count is how many times payload was received.
func (r *NodeRecorder) Count(payload string) int {
	n := 0
	for _, m := range r.Messages() {
		if string(m) == payload {
			n++
		}
	}
	return n
}

// WaitFor waits until cond holds.
func (r *NodeRecorder) WaitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(Timeout)
	defer deadline.Stop()
	for !cond() {
		select {
		case <-r.notify:
		case <-deadline.C:
			t.Fatalf("timed out waiting for %s; %d node messages, %d link-ups", what, len(r.Messages()), r.LinkUps())
		}
	}
}

type clusterNode struct {
	primus.ClusterBroker
	id    string
	nodes *NodeRecorder
	rooms *Recorder
}

// startClusterNodes enables node messages on n fresh brokers (ids n0, n1,
// ...), starts them and waits for every link.
func startClusterNodes(t *testing.T, newCluster NewCluster, n int) []clusterNode {
	t.Helper()
	brokers := newCluster(t, n)
	out := make([]clusterNode, n)
	for i, b := range brokers {
		cb, ok := b.(primus.ClusterBroker)
		if !ok {
			t.Skipf("%T is not a primus.ClusterBroker", b)
		}
		out[i] = clusterNode{ClusterBroker: cb, id: fmt.Sprintf("n%d", i), nodes: NewNodeRecorder(), rooms: NewRecorder()}
		if err := cb.EnableCluster(out[i].id, out[i].nodes); err != nil {
			t.Fatalf("EnableCluster: %v", err)
		}
		if err := cb.Start(out[i].rooms); err != nil {
			t.Fatalf("Start: %v", err)
		}
		t.Cleanup(func() { _ = cb.Close() })
	}
	for _, c := range out {
		c.nodes.WaitFor(t, c.id+"'s link", func() bool { return c.nodes.LinkUps() > 0 })
	}
	return out
}

func nodeCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), Timeout)
}

func send(t testing.TB, from clusterNode, to, payload string) {
	t.Helper()
	ctx, cancel := nodeCtx()
	defer cancel()
	if err := from.Send(ctx, to, []byte(payload)); err != nil {
		t.Fatalf("Send: %v", err)
	}
}

func broadcast(t testing.TB, from clusterNode, payload string) {
	t.Helper()
	ctx, cancel := nodeCtx()
	defer cancel()
	if err := from.Broadcast(ctx, []byte(payload)); err != nil {
		t.Fatalf("Broadcast: %v", err)
	}
}

// awaitBroadcast broadcasts markers from c until every other node got one:
// a link-up says the receiving side listens; this says the path works.
func awaitBroadcast(t testing.TB, nodes []clusterNode) {
	t.Helper()
	for _, from := range nodes {
		for i := 0; ; i++ {
			marker := fmt.Sprintf(`{"probe":%q,"n":%d}`, from.id, i)
			broadcast(t, from, marker)
			ok := true
			for _, to := range nodes {
				if to.id != from.id && !waitBriefly(to.nodes, marker) {
					ok = false
				}
			}
			if ok {
				break
			}
			if i == 100 {
				t.Fatalf("broadcasts of %s never arrive", from.id)
			}
		}
	}
}

func waitBriefly(r *NodeRecorder, payload string) bool {
	deadline := time.Now().Add(100 * time.Millisecond)
	for !r.Has(payload) {
		if time.Now().After(deadline) {
			return false
		}
		select {
		case <-r.notify:
		case <-time.After(10 * time.Millisecond):
		}
	}
	return true
}

// testCluster is the suite for ClusterBroker: node messages.
func testCluster(t *testing.T, newCluster NewCluster, limits Limits) {
	if limits.NoCluster {
		t.Run("NotSupported", func(t *testing.T) {
			b := newCluster(t, 1)[0]
			t.Cleanup(func() { _ = b.Close() })
			cb, ok := b.(primus.ClusterBroker)
			if !ok {
				return
			}
			if err := cb.EnableCluster("n0", NewNodeRecorder()); !errors.Is(err, primus.ErrNotSupported) {
				t.Fatalf("EnableCluster = %v, want an error wrapping primus.ErrNotSupported", err)
			}
		})
		return
	}
	t.Run("Broadcast", func(t *testing.T) {
		n := startClusterNodes(t, newCluster, 3)
		awaitBroadcast(t, n)
		payload := `{"hello":"every node","bytes":"` + "\u00e9\u2028\\u0000" + `"}`
		broadcast(t, n[0], payload)
		for _, c := range n[1:] {
			c.nodes.WaitFor(t, c.id+" gets the broadcast", func() bool { return c.nodes.Has(payload) })
		}
		broadcast(t, n[1], `"after"`)
		n[2].nodes.WaitFor(t, "the marker", func() bool { return n[2].nodes.Has(`"after"`) })
		for _, c := range n[1:] {
			if k := c.nodes.Count(payload); k != 1 {
				t.Errorf("%s got the broadcast %d times", c.id, k)
			}
		}
	})
	t.Run("SendReachesOnlyItsNode", func(t *testing.T) {
		n := startClusterNodes(t, newCluster, 3)
		awaitBroadcast(t, n)
		send(t, n[0], "n1", `"for n1"`)
		send(t, n[0], "n2", `"for n2"`)
		send(t, n[1], "n0", `"for n0"`)
		send(t, n[0], "nobody", `"for nobody"`)
		n[1].nodes.WaitFor(t, "n1's message", func() bool { return n[1].nodes.Has(`"for n1"`) })
		n[2].nodes.WaitFor(t, "n2's message", func() bool { return n[2].nodes.Has(`"for n2"`) })
		n[0].nodes.WaitFor(t, "n0's message", func() bool { return n[0].nodes.Has(`"for n0"`) })
		broadcast(t, n[0], `"marker"`)
		for _, c := range n[1:] {
			c.nodes.WaitFor(t, "the marker", func() bool { return c.nodes.Has(`"marker"`) })
		}
		for i, c := range n {
			for j, other := range []string{`"for n0"`, `"for n1"`, `"for n2"`, `"for nobody"`} {
				if got, want := c.nodes.Count(other), 0; j != i && got != want {
					t.Errorf("%s got %s", c.id, other)
				} else if j == i && got != 1 {
					t.Errorf("%s got %s %d times", c.id, other, got)
				}
			}
		}
	})
	t.Run("LargeMessage", func(t *testing.T) {
		n := startClusterNodes(t, newCluster, 2)
		awaitBroadcast(t, n)
		payload := `"` + strings.Repeat("x", primus.MaxNodeMessage-2) + `"`
		send(t, n[0], "n1", payload)
		n[1].nodes.WaitFor(t, "the MaxNodeMessage payload", func() bool { return n[1].nodes.Has(payload) })
	})
	t.Run("Burst", func(t *testing.T) {
		n := startClusterNodes(t, newCluster, 2)
		awaitBroadcast(t, n)
		const count = 300
		for i := range count {
			send(t, n[0], "n1", fmt.Sprintf(`{"i":%d}`, i))
		}
		n[1].nodes.WaitFor(t, "every message of the burst", func() bool {
			for i := range count {
				if !n[1].nodes.Has(fmt.Sprintf(`{"i":%d}`, i)) {
					return false
				}
			}
			return true
		})
	})
	t.Run("SeparateFromRooms", func(t *testing.T) {
		n := startClusterNodes(t, newCluster, 2)
		awaitBroadcast(t, n)
		n[1].Subscribe("r")
		AwaitSubscribed(t, n[0], n[1].rooms, "r")
		publish(t, n[0], &primus.Message{Rooms: []string{"r"}, Data: []byte(`"room write"`)})
		send(t, n[0], "n1", `"node message"`)
		n[1].rooms.WaitFor(t, "the room write", hasData(`"room write"`))
		n[1].nodes.WaitFor(t, "the node message", func() bool { return n[1].nodes.Has(`"node message"`) })
		if hasData(`"node message"`)(n[1].rooms.Messages()) || n[1].nodes.Has(`"room write"`) {
			t.Fatal("node messages and room writes mixed")
		}
		for _, m := range n[1].nodes.Messages() {
			if bytes.Contains(m, []byte(`"probe":"r"`)) {
				t.Fatalf("a room probe reached the node handler: %s", m)
			}
		}
	})
	t.Run("Close", func(t *testing.T) {
		n := startClusterNodes(t, newCluster, 2)
		awaitBroadcast(t, n)
		if err := n[1].Close(); err != nil {
			t.Fatal(err)
		}
		before := len(n[1].nodes.Messages())
		send(t, n[0], "n1", `"after close"`)
		broadcast(t, n[0], `"after close"`)
		ctx, cancel := nodeCtx()
		defer cancel()
		if err := n[1].Send(ctx, "n0", []byte(`"from a closed broker"`)); err == nil {
			t.Error("Send after Close succeeded")
		}
		if err := n[1].Broadcast(ctx, []byte(`"from a closed broker"`)); err == nil {
			t.Error("Broadcast after Close succeeded")
		}
		if got := len(n[1].nodes.Messages()); got != before {
			t.Errorf("the closed broker handled %d node messages", got-before)
		}
	})
}
