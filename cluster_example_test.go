package primus_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/coder/websocket"

	"github.com/primusgo/primus"
)

// The cluster as one server: every spark joins the room of its user as it
// connects, so "user:<id>" holds that user's connections on every node.
// Node A lists them and kicks the user everywhere; each node answers after
// its sparks closed. (With Redis, give each node a redisbroker instead of
// a MemoryHub's broker: the calls are the same.)
func Example_clusterAsOneServer() {
	hub := primus.NewMemoryHub()
	var nodes []*primus.Server
	var urls []string
	for _, name := range []string{"node-a", "node-b"} {
		srv, err := primus.New(primus.Config{
			Broker: hub.NewBroker(),
			NodeID: name,
			Authenticate: func(r *http.Request) (*primus.Identity, error) {
				return &primus.Identity{UserID: r.URL.Query().Get("user")}, nil // a real app checks a token
			},
			OnConnection: func(s *primus.Spark) { _ = s.Join("user:" + s.UserID()) },
		})
		if err != nil {
			panic(err)
		}
		hs := httptest.NewServer(srv)
		defer hs.Close()
		defer srv.Shutdown(context.Background())
		nodes, urls = append(nodes, srv), append(urls, hs.URL)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// alice has a tab on each node, bob one on node B; the clients read
	// what they get (and so answer a close at once).
	got := make(chan string, 10)
	for _, c := range []struct{ url, user string }{{urls[0], "alice"}, {urls[1], "alice"}, {urls[1], "bob"}} {
		conn, _, err := websocket.Dial(ctx, c.url+"/primus?user="+c.user, nil)
		if err != nil {
			panic(err)
		}
		defer conn.CloseNow()
		go func() {
			for {
				_, msg, err := conn.Read(ctx)
				if err != nil {
					return
				}
				got <- c.user + " got " + string(msg)
			}
		}()
	}
	a := nodes[0]
	for a.Stats().Connections+nodes[1].Stats().Connections < 3 {
		time.Sleep(time.Millisecond) // the upgrades complete on the servers
	}

	// Who is alice connected as, and where?
	members, err := a.ClusterClients(ctx, "user:alice")
	if err != nil {
		panic(err)
	}
	for _, m := range members {
		fmt.Println("alice on", m.Node)
	}

	// Kick alice everywhere; bob stays.
	res, err := a.Room("user:alice").DisconnectAll(ctx, false)
	if err != nil {
		panic(err) // a *primus.PartialError names the nodes that did not answer
	}
	for _, n := range res.Nodes {
		fmt.Printf("%s ended %d\n", n.Node, n.Changed)
	}
	fmt.Println(<-got)
	fmt.Println(<-got)
	sizes, _ := a.ClusterRoomSizes(ctx)
	fmt.Println("rooms now:", sizes)
	// Unordered output:
	// alice on node-a
	// alice on node-b
	// node-a ended 1
	// node-b ended 1
	// alice got "primus::server::close"
	// alice got "primus::server::close"
	// rooms now: map[user:bob:1]
}
