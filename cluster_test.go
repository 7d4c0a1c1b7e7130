package primus_test

import (
	"fmt"
	"testing"

	"github.com/primusgo/primus"
	"github.com/primusgo/primus/internal/testkit"
)

// startCluster starts n servers sharing one MemoryHub.
func startCluster(t *testing.T, n int) []*testServer {
	t.Helper()
	hub := primus.NewMemoryHub()
	nodes := make([]*testServer, n)
	for i := range nodes {
		nodes[i] = startServer(t, primus.Config{Broker: hub.NewBroker(), NodeID: fmt.Sprintf("node-%d", i)})
	}
	return nodes
}

func TestClusterRoomWrite(t *testing.T) {
	nodes := startCluster(t, 2)
	a, b := nodes[0], nodes[1]
	if a.NodeID() != "node-0" || b.NodeID() != "node-1" {
		t.Fatalf("node ids %q %q", a.NodeID(), b.NodeID())
	}
	ca, sa := connectN(t, a, 1)
	cb, sb := connectN(t, b, 1)
	_ = sa[0].Join("foo")
	_ = sb[0].Join("foo")
	if err := b.Room("foo").Write(map[string]string{"hello": "from B"}); err != nil {
		t.Fatal(err)
	}
	if err := a.Room("foo").Write("from A"); err != nil {
		t.Fatal(err)
	}
	_ = a.Write("marker")
	_ = b.Write("marker")
	// Each client gets each write exactly once, in publication order.
	for _, c := range []*testkit.Client{ca[0], cb[0]} {
		c.Expect(t, `{"hello":"from B"}`)
		c.Expect(t, `"from A"`)
		c.Expect(t, `"marker"`)
	}
	if n := a.Stats().RemoteMessages; n != 1 {
		t.Errorf("A RemoteMessages = %d, want 1", n)
	}
	if n := b.Stats().Published; n != 1 {
		t.Errorf("B Published = %d, want 1", n)
	}
	// Membership is local: each node sees only its own sparks.
	if got := a.Clients("foo"); len(got) != 1 || got[0] != sa[0].ID() {
		t.Errorf("A Clients(foo) = %v", got)
	}
}

func TestClusterOnlyMembers(t *testing.T) {
	nodes := startCluster(t, 3)
	ca, sa := connectN(t, nodes[0], 2)
	cc, _ := connectN(t, nodes[2], 1)
	_ = sa[0].Join("foo")
	_ = sa[1].Join("bar")
	_ = nodes[1].Room("foo").Write("to foo")
	_ = nodes[0].Write("marker")
	_ = nodes[2].Write("marker")
	ca[0].Expect(t, `"to foo"`)
	ca[0].Expect(t, `"marker"`)
	ca[1].Expect(t, `"marker"`)
	cc[0].Expect(t, `"marker"`)
	if n := nodes[2].Stats().RemoteMessages; n != 0 {
		t.Errorf("node without members handled %d remote messages", n)
	}
}

func TestClusterMultiRoomExactlyOnce(t *testing.T) {
	nodes := startCluster(t, 2)
	a, b := nodes[0], nodes[1]
	cb, sb := connectN(t, b, 3)
	_ = sb[0].Join("x", "y")
	_ = sb[1].Join("y")
	_ = sb[2].Join("z")
	if err := a.Room("x", "y", "z").Write("once"); err != nil {
		t.Fatal(err)
	}
	_ = b.Write("marker")
	for _, c := range cb {
		c.Expect(t, `"once"`)
		c.Expect(t, `"marker"`)
	}
}

func TestClusterExcept(t *testing.T) {
	nodes := startCluster(t, 2)
	a, b := nodes[0], nodes[1]
	ca, sa := connectN(t, a, 1)
	cb, sb := connectN(t, b, 2)
	_ = sa[0].Join("foo")
	_ = sb[0].Join("foo")
	_ = sb[1].Join("foo")
	// The sender excludes itself and one spark on the other node.
	if err := sa[0].Room("foo").Except(sa[0].ID(), sb[1].ID()).Write("x"); err != nil {
		t.Fatal(err)
	}
	_ = a.Write("marker")
	_ = b.Write("marker")
	ca[0].Expect(t, `"marker"`)
	cb[0].Expect(t, `"x"`)
	cb[0].Expect(t, `"marker"`)
	cb[1].Expect(t, `"marker"`)
}

func TestClusterServerWriteIsLocal(t *testing.T) {
	nodes := startCluster(t, 2)
	a, b := nodes[0], nodes[1]
	ca, sa := connectN(t, a, 2)
	cb, sb := connectN(t, b, 1)
	_ = sa[0].Join("foo")
	_ = sb[0].Join("foo")
	if err := a.Write("everyone on A"); err != nil {
		t.Fatal(err)
	}
	_ = b.Write("marker")
	ca[0].Expect(t, `"everyone on A"`)
	ca[1].Expect(t, `"everyone on A"`)
	cb[0].Expect(t, `"marker"`)
	if err := a.Write(func() {}); err == nil {
		t.Error("Server.Write(func) succeeded")
	}
}

func TestClusterLineTerminatorsFromRemote(t *testing.T) {
	nodes := startCluster(t, 2)
	cb, sb := connectN(t, nodes[1], 1)
	_ = sb[0].Join("foo")
	_ = nodes[0].Room("foo").Write(map[string]string{"s": "a\u2028b"})
	cb[0].Expect(t, `{"s":"a\u2028b"}`)
}

func TestClusterLeaveStopsRemoteDelivery(t *testing.T) {
	nodes := startCluster(t, 2)
	a, b := nodes[0], nodes[1]
	cb, sb := connectN(t, b, 1)
	_ = sb[0].Join("foo")
	_ = a.Room("foo").Write(1)
	cb[0].Expect(t, `1`)
	sb[0].Leave("foo")
	_ = a.Room("foo").Write(2)
	_ = sb[0].Join("foo")
	_ = a.Room("foo").Write(3)
	cb[0].Expect(t, `3`)
}

func TestClusterNodeShutdown(t *testing.T) {
	nodes := startCluster(t, 2)
	a, b := nodes[0], nodes[1]
	ca, sa := connectN(t, a, 1)
	_, sb := connectN(t, b, 1)
	_ = sa[0].Join("foo")
	_ = sb[0].Join("foo")
	if err := b.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	// The remaining node still works on its own.
	if err := a.Room("foo").Write("after B left"); err != nil {
		t.Fatalf("write with a node gone: %v", err)
	}
	ca[0].Expect(t, `"after B left"`)
}
