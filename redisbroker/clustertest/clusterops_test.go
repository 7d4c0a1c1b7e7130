package clustertest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/primusgo/primus/internal/redistest"
	"github.com/primusgo/primus/internal/testkit"
	"github.com/primusgo/primus/redisbroker"
)

// call makes an HTTP request to the node's API and returns the status and
// body.
func (n node) call(t testing.TB, method, path, body string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, method, n.url+path, strings.NewReader(body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s: %s %s: %v", n.name, method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func decodeJSON[T any](t testing.TB, body string) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		t.Fatalf("%.300s: %v", body, err)
	}
	return v
}

type apiNodes struct {
	Node  string
	Nodes []struct {
		ID   string
		Self bool
	}
}

type apiMembers struct {
	Count   int
	Members []struct{ ID, Node string }
	Missing []string
}

type apiRemote struct {
	Nodes []struct {
		Node                    string
		Sparks, Changed, Failed int
	}
	Sparks, Changed, Failed int
	Missing                 []string
	Error                   string
}

// nodeIDs waits until every node lists want live nodes and returns each
// node's own id.
func nodeIDs(t testing.TB, nodes []node, want int) []string {
	t.Helper()
	ids := make([]string, len(nodes))
	for i, n := range nodes {
		testkit.WaitFor(t, n.name+" sees the cluster", func() bool {
			code, body := n.call(t, "GET", "/api/nodes", "")
			if code != 200 {
				return false
			}
			v := decodeJSON[apiNodes](t, body)
			ids[i] = v.Node
			return len(v.Nodes) == want
		})
	}
	return ids
}

// TestClusterOpsProcesses: three primus-server processes on one Redis
// answer as one server: membership, a room's members across them each
// once, remote join/leave/disconnect of a spark connected to another
// process (seen by the room writes that follow), and a process killed with
// -9 in the middle of a request.
func TestClusterOpsProcesses(t *testing.T) {
	t.Parallel()
	srv := redistest.StartServer(t)
	ch := freshChannel()
	procs := make([]*process, 3)
	nodes := make([]node, 3)
	for i := range procs {
		procs[i] = startProcess(t, fmt.Sprintf("proc%d", i+1), "-redis-url", srv.URL(), "-channel", ch, "-node-ttl", "2s")
		nodes[i] = procs[i].node
	}
	ids := nodeIDs(t, nodes, 3)

	// 20 clients per process in "all"; every one is listed once, with its
	// process, by every process.
	want := map[string]string{}
	clients := make([][]*wsClient, 3)
	for i, n := range nodes {
		for j := range 20 {
			c := dial(t, fmt.Sprintf("%s-c%d", n.name, j), n.url)
			c.join("all", fmt.Sprintf("p%d", i))
			want[c.ID(t)] = ids[i]
			clients[i] = append(clients[i], c)
		}
	}
	for _, n := range nodes {
		code, body := n.call(t, "GET", "/api/rooms/all", "")
		m := decodeJSON[apiMembers](t, body)
		if code != 200 || m.Count != 60 || len(m.Missing) != 0 {
			t.Fatalf("%s: /api/rooms/all: %d %.300s", n.name, code, body)
		}
		for _, mem := range m.Members {
			if want[mem.ID] != mem.Node {
				t.Fatalf("%s lists %s on %s, want %s", n.name, mem.ID, mem.Node, want[mem.ID])
			}
		}
	}
	code, body := nodes[1].call(t, "GET", "/api/rooms", "")
	if rooms := decodeJSON[struct{ Rooms map[string]int }](t, body); code != 200 || rooms.Rooms["all"] != 60 || rooms.Rooms["p2"] != 20 {
		t.Fatalf("/api/rooms: %d %s", code, body)
	}

	// A spark of proc3 joins "vip" through proc1; proc2's write reaches it.
	target := clients[2][0]
	tid := target.ID(t)
	code, body = nodes[0].call(t, "POST", "/api/join", `{"ids":["`+tid+`"],"rooms":["vip"]}`)
	if r := decodeJSON[apiRemote](t, body); code != 200 || r.Changed != 1 || len(r.Nodes) != 3 {
		t.Fatalf("/api/join: %d %s", code, body)
	}
	nodes[1].publish(t, []string{"vip"}, nil, "vip 1")
	target.waitFrame(`"vip 1"`)
	code, body = nodes[1].call(t, "POST", "/api/leave", `{"ids":["`+tid+`"],"rooms":["vip"]}`)
	if r := decodeJSON[apiRemote](t, body); code != 200 || r.Changed != 1 {
		t.Fatalf("/api/leave: %d %s", code, body)
	}
	nodes[0].publish(t, []string{"vip"}, nil, "vip 2")
	nodes[0].publish(t, []string{"p2"}, nil, "after leave")
	target.waitFrame(`"after leave"`)
	if target.has(`"vip 2"`) {
		t.Fatal("a write after the remote leave reached the spark")
	}
	// Disconnected through proc2: gone from the room everywhere.
	code, body = nodes[1].call(t, "POST", "/api/disconnect", `{"ids":["`+tid+`"]}`)
	if r := decodeJSON[apiRemote](t, body); code != 200 || r.Changed != 1 {
		t.Fatalf("/api/disconnect: %d %s", code, body)
	}
	target.waitFrame(`"primus::server::close"`)
	code, body = nodes[0].call(t, "GET", "/api/rooms/all", "")
	if m := decodeJSON[apiMembers](t, body); code != 200 || m.Count != 59 {
		t.Fatalf("/api/rooms/all after the disconnection: %d %.200s", code, body)
	}

	// proc3 is killed with -9 while it serves a disconnection: one of its
	// sparks never answers its close, so proc3 waits for it when it dies.
	victim := procs[2]
	raw := testkit.RawDial(t, strings.TrimPrefix(victim.url, "http://"), testkit.RawOptions{Path: "/primus"})
	raw.WriteFrame(t, 0x81, []byte(`{"join":"slow","ack":1}`), true)
	for {
		_, p, err := raw.ReadFrame()
		if err != nil {
			t.Fatal(err)
		}
		if string(p) == `{"ack":1,"ok":true}` {
			break
		}
	}
	clients[1][0].join("slow")
	var wg sync.WaitGroup
	var killedAt time.Time
	wg.Go(func() {
		time.Sleep(500 * time.Millisecond)
		killedAt = time.Now()
		_ = victim.cmd.Process.Kill()
	})
	start := time.Now()
	code, body = nodes[0].call(t, "POST", "/api/disconnect?timeout=2s", `{"room":"slow"}`)
	took := time.Since(start)
	wg.Wait()
	r := decodeJSON[apiRemote](t, body)
	if code != 207 || !slices.Equal(r.Missing, []string{ids[2]}) || r.Changed != 1 || len(r.Nodes) != 2 {
		t.Fatalf("/api/disconnect while proc3 dies: %d %s", code, body)
	}
	t.Logf("the call returned after %v (timeout 2s), naming the killed node", took.Round(time.Millisecond))
	// At the deadline, or when the killed node's TTL ran out, which is
	// about then too (its last heartbeat came at most a beat before it
	// was killed, 500ms into the call).
	if took < 1500*time.Millisecond || took > 4*time.Second {
		t.Errorf("returned after %v, want at its 2s deadline", took)
	}
	// After the TTL (2s), calls no longer wait for it.
	time.Sleep(time.Until(killedAt.Add(2500 * time.Millisecond)))
	start = time.Now()
	code, body = nodes[1].call(t, "GET", "/api/rooms?timeout=10s", "")
	if rooms := decodeJSON[struct {
		Rooms   map[string]int
		Missing []string
	}](t, body); code != 200 || rooms.Rooms["all"] != 39 || len(rooms.Missing) != 0 { // 59 - proc3's 19 - the one of "slow"
		t.Fatalf("/api/rooms after the TTL: %d %s", code, body)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("/api/rooms took %v after the dead node's TTL", took)
	}
	code, body = nodes[0].call(t, "GET", "/api/nodes", "")
	if v := decodeJSON[apiNodes](t, body); code != 200 || len(v.Nodes) != 2 {
		t.Fatalf("/api/nodes after the TTL: %d %s", code, body)
	}
}

// TestClusterOpsRedisCluster: Go servers on a Redis Cluster answer as one
// server too (node messages on classic channels beside the sharded rooms).
func TestClusterOpsRedisCluster(t *testing.T) {
	t.Parallel()
	c := redistest.StartCluster(t, redistest.ClusterConfig{Replicas: -1})
	ch := freshChannel()
	cfg := redisbroker.Config{ClusterAddrs: c.Addrs(), Channel: ch, DialTimeout: time.Second, CommandTimeout: time.Second}
	var nodes []node
	for i := range 3 {
		n, _ := startGoNode(t, fmt.Sprintf("go%d", i+1), cfg)
		nodes = append(nodes, n)
	}
	ids := nodeIDs(t, nodes, 3)
	var members []*wsClient
	for i, n := range nodes {
		cl := dial(t, fmt.Sprintf("c%d", i), n.url)
		cl.join("room")
		members = append(members, cl)
	}
	code, body := nodes[2].call(t, "GET", "/api/rooms/room", "")
	if m := decodeJSON[apiMembers](t, body); code != 200 || m.Count != 3 {
		t.Fatalf("/api/rooms/room: %d %s", code, body)
	}
	id0 := members[0].ID(t)
	code, body = nodes[1].call(t, "POST", "/api/join", `{"ids":["`+id0+`"],"rooms":["moved"]}`)
	if r := decodeJSON[apiRemote](t, body); code != 200 || r.Changed != 1 {
		t.Fatalf("/api/join: %d %s", code, body)
	}
	awaitRoute(t, nodes[2], members[0], "moved", 10*time.Second)
	code, body = nodes[0].call(t, "POST", "/api/disconnect", `{"room":"room"}`)
	if r := decodeJSON[apiRemote](t, body); code != 200 || r.Changed != 3 || len(r.Nodes) != 3 {
		t.Fatalf("/api/disconnect: %d %s", code, body)
	}
	_ = ids
}
