package clustertest

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/primusgo/primus/internal/nodefixture"
	"github.com/primusgo/primus/internal/redistest"
	"github.com/primusgo/primus/internal/serverapp"
	"github.com/primusgo/primus/internal/testkit"
	"github.com/primusgo/primus/redisbroker"
)

// Wildcard rooms across three Go nodes in native mode: a pattern joined on
// one node receives the writes to matching rooms made on any node, each
// spark once whatever it joined; a node hosting neither the room nor a
// matching pattern hears nothing.
func TestWildcardsNative(t *testing.T) {
	t.Parallel()
	srv := redistest.StartServer(t)
	cfg := brokerConfig(srv, redisbroker.Native, freshChannel())
	opts := serverapp.Options{Wildcards: true}
	a, _ := startGoNodeWith(t, "a", cfg, opts)
	b, _ := startGoNodeWith(t, "b", cfg, opts)
	c, cb := startGoNodeWith(t, "c", cfg, opts)
	pa, ra, pb := dial(t, "pa", a.url), dial(t, "ra", a.url), dial(t, "pb", b.url)
	pa.join("user:*")
	ra.join("user:42")
	pb.join("user:*", "user:42", "*:42") // three ways to match user:42: still once
	for _, cl := range []*wsClient{pa, ra, pb} {
		awaitRoute(t, c, cl, "user:42", 10*time.Second)
	}
	received := cb.Stats().Received

	c.publish(t, []string{"user:42"}, nil, "w1")
	c.publish(t, []string{"user:7"}, nil, "w2")
	c.publish(t, []string{"user:7", "user:42", "user:8"}, nil, "w3")
	// Over the fan-out budget: once on the all-nodes channel.
	big := strings.Repeat("x", 40<<10)
	c.publish(t, []string{"user:1", "user:2", "user:42"}, nil, big)
	a.publish(t, []string{"user:9"}, nil, "w4") // from a node with members
	for _, cl := range []*wsClient{pa, ra, pb} {
		c.publish(t, []string{"user:42"}, nil, "end-"+cl.name)
		cl.waitFrame(`"end-` + cl.name + `"`)
	}
	for _, tt := range []struct {
		cl   *wsClient
		want map[string]int
	}{
		{pa, map[string]int{"w1": 1, "w2": 1, "w3": 1, big: 1, "w4": 1}},
		{ra, map[string]int{"w1": 1, "w2": 0, "w3": 1, big: 1, "w4": 0}},
		{pb, map[string]int{"w1": 1, "w2": 1, "w3": 1, big: 1, "w4": 1}},
	} {
		for data, want := range tt.want {
			if got := tt.cl.count(`"` + data + `"`); got != want {
				t.Errorf("%s received %.10s %d times, want %d", tt.cl.name, data, got, want)
			}
		}
	}
	// Node c hosts nothing: nothing was handed to its server (the big write
	// reached it, on the all-nodes channel, but names no room it hosts).
	if got := cb.Stats().Received - received; got != 0 {
		t.Errorf("node c handed %d messages to its server", got)
	}
}

// In compat mode Go nodes with wildcards share Redis with the Node
// original (primus-redis-rooms, no wildcards): a Go member of user:*
// receives the Node node's write to user:42, and the Node node's member
// of user:42 receives the Go node's write.
func TestWildcardsCompatWithNode(t *testing.T) {
	t.Parallel()
	srv := redistest.StartServer(t)
	n1 := nodefixture.StartServer(t, nodefixture.ServerOptions{RedisAddr: srv.Addr()})
	cfg := brokerConfig(srv, redisbroker.Compat, "")
	g, gb := startGoNodeWith(t, "go", cfg, serverapp.Options{Wildcards: true})
	testkit.WaitFor(t, "go connected", func() bool { return gb.Stats().Connected })
	nodeNode := node{name: "node1", url: n1.URL()}
	pattern, plainOnNode := dial(t, "pattern", g.url), dial(t, "plain", nodeNode.url)
	pattern.join("user:*")
	plainOnNode.join("user:42")
	awaitRoute(t, nodeNode, pattern, "user:42", 10*time.Second)
	awaitRoute(t, g, plainOnNode, "user:42", 10*time.Second)
	for i, n := range []node{nodeNode, g} {
		n.publish(t, []string{"user:42"}, nil, fmt.Sprint("from-", i))
		n.publish(t, []string{"user:42"}, nil, fmt.Sprint("end-", i))
	}
	for _, cl := range []*wsClient{pattern, plainOnNode} {
		cl.waitFrame(`"end-0"`)
		cl.waitFrame(`"end-1"`)
		for i := range 2 {
			if got := cl.count(fmt.Sprintf(`"from-%d"`, i)); got != 1 {
				t.Errorf("%s received from-%d %d times, want 1", cl.name, i, got)
			}
		}
	}
}
