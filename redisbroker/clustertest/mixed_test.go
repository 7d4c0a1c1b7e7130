package clustertest

import (
	"context"
	"testing"
	"time"

	"github.com/primusgo/primus/internal/nodefixture"
	"github.com/primusgo/primus/internal/redistest"
	"github.com/primusgo/primus/internal/testkit"
	"github.com/primusgo/primus/redisbroker"
)

// TestMixedNodeGoCompatCluster runs the original stack (two Node.js nodes:
// primus 8.0.9 + primus-redis-rooms 0.3.2) and two Go nodes in compat mode
// (one in this process, one primus-server process) on one Redis with the
// default channel "primus". Room writes made on any node reach the members
// on every node, in both directions, with the original's semantics.
func TestMixedNodeGoCompatCluster(t *testing.T) {
	t.Parallel()
	srv := redistest.StartServer(t)
	n1 := nodefixture.StartServer(t, nodefixture.ServerOptions{RedisAddr: srv.Addr()})
	n2 := nodefixture.StartServer(t, nodefixture.ServerOptions{RedisAddr: srv.Addr()})
	cfg := brokerConfig(srv, redisbroker.Compat, "") // default channel, like the Node nodes
	g1, g1b := startGoNode(t, "go1", cfg)
	g2p := startProcess(t, "go2", "-redis-url", srv.URL(), "-redis-mode", "compat")
	g2 := g2p.node
	testkit.WaitFor(t, "go1 connected", func() bool { return g1b.Stats().Connected })
	testkit.WaitFor(t, "go2 connected", func() bool { return g2.health() == "ok" })

	nodes := []node{{name: "node1", url: n1.URL()}, {name: "node2", url: n2.URL()}, g1, g2}
	isGo := map[string]bool{"go1": true, "go2": true}
	type client struct {
		c    *wsClient
		node string
		both bool // in foo and bar
	}
	var clients []client
	for _, n := range nodes {
		foo := dial(t, n.name+"-foo", n.url)
		both := dial(t, n.name+"-both", n.url)
		foo.join("foo")
		both.join("foo", "bar")
		clients = append(clients, client{foo, n.name, false}, client{both, n.name, true})
	}
	// A real Primus 8 Node client on the Go process node as well.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	real := nodefixture.StartClient(t, g2.url, nodefixture.ClientOptions{})
	if _, err := real.WaitFor(ctx, "open"); err != nil {
		t.Fatal(err)
	}
	if err := real.Do(ctx, map[string]any{"join": "foo"}); err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		for _, c := range clients {
			awaitRoute(t, n, c.c, "foo", 10*time.Second)
		}
	}

	// Round 1: every node's client writes to foo; every foo member on
	// every node receives each write exactly once. A marker from the same
	// node follows each write: one publisher channel, so in order.
	for i, n := range nodes {
		clients[2*i].c.do(map[string]any{"publish": map[string]any{"room": "foo", "data": "from-" + n.name}})
		n.publish(t, []string{"foo"}, nil, "end-"+n.name)
	}
	for _, c := range clients {
		for _, n := range nodes {
			c.c.waitFrame(`"end-` + n.name + `"`)
		}
		for _, n := range nodes {
			if got := c.c.count(`"from-` + n.name + `"`); got != 1 {
				t.Errorf("%s received the write from %s %d times, want 1", c.c.name, n.name, got)
			}
		}
	}
	for _, n := range nodes {
		// The markers of the four nodes arrive in no fixed order: look for
		// each in everything the client received, consuming nothing.
		end := `"end-` + n.name + `"`
		testkit.WaitFor(t, "the real Primus client on go2 to receive "+end, func() bool { return countData(real, end) > 0 })
	}
	for _, n := range nodes {
		if got := countData(real, `"from-`+n.name+`"`); got != 1 {
			t.Errorf("the real Primus client on go2 received the write from %s %d times, want 1", n.name, got)
		}
	}

	// Round 2: a write to foo and bar from each node. In this format it is
	// one message per room, so a remote member of both gets two copies, as
	// with primus-redis-rooms alone; a Go origin node de-duplicates for its
	// own sparks, a Node origin writes each room separately even locally.
	for _, n := range nodes {
		n.publish(t, []string{"foo", "bar"}, nil, "multi-"+n.name)
		n.publish(t, []string{"foo", "bar"}, nil, "end2-"+n.name)
	}
	for _, c := range clients {
		for _, n := range nodes {
			c.c.waitFrame(`"end2-` + n.name + `"`)
		}
		for _, n := range nodes {
			want := 1
			if c.both && !(isGo[n.name] && c.node == n.name) {
				want = 2
			}
			if got := c.c.count(`"multi-` + n.name + `"`); got != want {
				t.Errorf("%s received the two-room write from %s %d times, want %d", c.c.name, n.name, got, want)
			}
		}
	}

	// Round 3: any Redis client can inject a room write.
	srv.Publish("primus.external", `{"room":"foo","data":"external"}`)
	srv.Publish("primus.external", `{"room":"foo","data":"external-end"}`)
	for _, c := range clients {
		c.c.waitFrame(`"external-end"`)
		if got := c.c.count(`"external"`); got != 1 {
			t.Errorf("%s received the external write %d times", c.c.name, got)
		}
	}
}

func countData(c *nodefixture.Client, want string) int {
	n := 0
	for _, ev := range c.Events() {
		if ev.Name == "data" && string(ev.Data) == want {
			n++
		}
	}
	return n
}
