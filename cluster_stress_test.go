package primus_test

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/primusgo/primus"
	"github.com/primusgo/primus/internal/testkit"
)

// Joins and leaves that create and free rooms on one node while another
// node writes to those rooms: room subscriptions (under a room index lock)
// and remote deliveries (which take room index locks) must not deadlock.
func TestClusterJoinsDuringRemoteWrites(t *testing.T) {
	nodes := startCluster(t, 2)
	a, b := nodes[0], nodes[1]
	_, sb := connectN(t, b, 4)
	const rooms = 256
	name := func(i int) string { return fmt.Sprintf("r%d", i%rooms) }
	var stop atomic.Bool
	var wg sync.WaitGroup
	for _, s := range sb {
		wg.Go(func() {
			for i := 0; !stop.Load(); i++ {
				_ = s.Join(name(i))
				s.Leave(name(i))
			}
		})
	}
	for w := range 2 {
		wg.Go(func() {
			for i := w; !stop.Load(); i += 2 {
				_ = a.Room(name(i), name(i+1)).Write(i)
			}
		})
	}
	finished := make(chan struct{})
	go func() {
		time.Sleep(500 * time.Millisecond) // load duration, not synchronisation
		stop.Store(true)
		wg.Wait()
		close(finished)
	}()
	select {
	case <-finished:
	case <-time.After(testkit.Timeout):
		t.Fatal("deadlock: joins and remote writes did not finish")
	}
	if n := b.Stats().Rooms; n != 0 {
		t.Fatalf("%d rooms left on B", n)
	}
}

// Everything at once on a two-node cluster: room writes, joins, leaves,
// server-side ends and client-side drops, heartbeats. The race detector
// watches; at the end no spark, room or goroutine is left.
func TestChaos(t *testing.T) {
	hub := primus.NewMemoryHub()
	var nodes []*testServer
	for i := range 2 {
		nodes = append(nodes, startServer(t, primus.Config{
			Broker: hub.NewBroker(), NodeID: fmt.Sprintf("n%d", i), PingInterval: 20 * time.Millisecond,
			OnConnection: func(s *primus.Spark) {
				s.OnData(func(s *primus.Spark, d primus.Data) {
					_ = s.Join(d.String())
					_ = s.Room(d.String()).Except(s.ID()).Write(d.JSON())
				})
			},
		}))
	}
	const perNode = 20
	type pair struct {
		c *testkit.Client
		s *primus.Spark
	}
	var all []pair
	for _, n := range nodes {
		for range perNode {
			c := n.dial(t, testkit.DialOptions{AutoPong: true})
			all = append(all, pair{c, n.nextSpark(t)})
		}
	}
	var wg sync.WaitGroup
	for i, p := range all {
		wg.Go(func() {
			for j := range 30 {
				room := fmt.Sprintf("r%d", (i+j)%7)
				switch j % 6 {
				case 0:
					_ = p.s.Join(room, "common")
				case 1:
					_ = nodes[j%2].Room(room, "common").Write(j)
				case 2:
					ctx, cancel := waitCtx()
					_ = p.c.Conn.Write(ctx, websocket.MessageText, []byte(`"`+room+`"`))
					cancel()
				case 3:
					p.s.Leave(room)
				case 4:
					_ = p.s.Write(j)
				case 5:
					nodes[j%2].Empty(room)
				}
			}
			switch i % 3 {
			case 0:
				p.s.End()
			case 1:
				p.s.EndReconnect()
			default:
				p.c.Close()
			}
		})
	}
	wg.Wait()
	for _, n := range nodes {
		for range perNode {
			n.nextDisconnection(t)
		}
		if st := n.Stats(); st.Connections != 0 || st.Rooms != 0 {
			t.Errorf("node %s: %d connections, %d rooms left", n.NodeID(), st.Connections, st.Rooms)
		}
	}
}
