package primus_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/primusgo/primus"
	"github.com/primusgo/primus/internal/redistest"
	"github.com/primusgo/primus/internal/testkit"
	"github.com/primusgo/primus/redisbroker"
)

// 30 000 sparks over three nodes on a real Redis: every spark listed once,
// with its node, by every node; the answers travel in pages over Pub/Sub.
func TestClusterClients30kRedis(t *testing.T) {
	srv := redistest.StartServer(t)
	var nodes []*primus.Server
	for i := range 3 {
		b, err := redisbroker.New(redisbroker.Config{Addr: srv.Addr(), Channel: "ops30k", NodeID: fmt.Sprintf("n%d", i)})
		if err != nil {
			t.Fatal(err)
		}
		s, err := primus.New(primus.Config{Broker: b, NodeID: b.NodeID(), NodeTTL: 2 * time.Second, PingInterval: -1})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			_ = s.Shutdown(ctx)
		})
		if err := primus.AddDetachedSparks(s, fmt.Sprintf("s%d", i), 10_000, "all"); err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, s)
	}
	for _, s := range nodes {
		testkit.WaitFor(t, s.NodeID()+" sees the cluster", func() bool {
			ns, err := s.Nodes(context.Background())
			return err == nil && len(ns) == 3
		})
	}
	for _, s := range nodes {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		got, err := s.ClusterClients(ctx, "all")
		cancel()
		if err != nil || len(got) != 30_000 {
			t.Fatalf("%s: %d sparks, %v", s.NodeID(), len(got), err)
		}
		for i, c := range got {
			if i > 0 && got[i-1].ID >= c.ID {
				t.Fatalf("not sorted or not unique at %d: %s, %s", i, got[i-1].ID, c.ID)
			}
			if !strings.HasPrefix(c.ID, "s"+c.Node[1:]+"-") {
				t.Fatalf("%s listed on %s", c.ID, c.Node)
			}
		}
	}
	if empty, err := nodes[0].ClusterIsRoomEmpty(context.Background(), "all"); err != nil || empty {
		t.Fatalf("ClusterIsRoomEmpty(all) = %v, %v", empty, err)
	}
}
