package serverapp

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/primusgo/primus"
	"github.com/primusgo/primus/internal/testkit"
)

// startHubApps starts n apps on one memory hub (a cluster in a process)
// with the API key "k", and waits until each sees the others.
func startHubApps(t *testing.T, hub *primus.MemoryHub, n int) ([]*App, []*httptest.Server) {
	t.Helper()
	var apps []*App
	var servers []*httptest.Server
	for range n {
		app, ts := startApp(t, Options{Broker: hub.NewBroker(), APIKey: "k"})
		apps, servers = append(apps, app), append(servers, ts)
	}
	for _, app := range apps {
		testkit.WaitFor(t, "the membership", func() bool {
			nodes, err := app.Primus.Nodes(context.Background())
			return err == nil && len(nodes) == n
		})
	}
	return apps, servers
}

type remoteAnswer struct {
	Nodes []struct {
		Node                    string
		Sparks, Changed, Failed int
	}
	Sparks, Changed, Failed int
	Missing                 []string
	Error                   string
}

func decode[T any](t *testing.T, body string) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		t.Fatalf("%s: %v", body, err)
	}
	return v
}

func TestClusterAPI(t *testing.T) {
	apps, servers := startHubApps(t, primus.NewMemoryHub(), 2)
	a, b := servers[0], servers[1]
	ca, cb := dial(t, a), dial(t, b)
	ida, idb := ca.id(), cb.id()
	ca.send(`{"join":["news","a-only"],"ack":1}`)
	ca.expect(`{"ack":1,"ok":true}`)
	cb.send(`{"join":"news","ack":1}`)
	cb.expect(`{"ack":1,"ok":true}`)

	if code, _ := get(t, a.URL+"/api/nodes", ""); code != 401 {
		t.Fatalf("/api/nodes without the key: %d", code)
	}
	code, body := get(t, a.URL+"/api/nodes", "k")
	nodes := decode[struct {
		Node  string
		Nodes []struct {
			ID     string
			Sparks int
			Self   bool
		}
	}](t, body)
	if code != 200 || len(nodes.Nodes) != 2 || nodes.Node != apps[0].Primus.NodeID() {
		t.Fatalf("/api/nodes: %d %s", code, body)
	}

	// Rooms over the cluster; ?local=1 for this node only.
	code, body = get(t, b.URL+"/api/rooms", "k")
	rooms := decode[struct {
		Scope   string
		Rooms   map[string]int
		Missing []string
	}](t, body)
	if code != 200 || rooms.Scope != "cluster" || rooms.Rooms["news"] != 2 || rooms.Rooms["a-only"] != 1 || len(rooms.Missing) != 0 {
		t.Fatalf("/api/rooms: %d %s", code, body)
	}
	code, body = get(t, b.URL+"/api/rooms?local=1", "k")
	if local := decode[struct{ Rooms map[string]int }](t, body); code != 200 || len(local.Rooms) != 1 || local.Rooms["news"] != 1 {
		t.Fatalf("/api/rooms?local=1: %d %s", code, body)
	}
	code, body = get(t, b.URL+"/api/rooms/news", "k")
	members := decode[struct {
		Room    string
		Count   int
		Members []struct{ ID, Node string }
	}](t, body)
	if code != 200 || members.Count != 2 || !slices.ContainsFunc(members.Members, func(m struct{ ID, Node string }) bool {
		return m.ID == ida && m.Node == apps[0].Primus.NodeID()
	}) {
		t.Fatalf("/api/rooms/news: %d %s", code, body)
	}

	// b's spark joins a room through a's API; a publish there reaches it.
	code, body = post(t, a.URL+"/api/join", "k", `{"ids":["`+idb+`","nobody"],"rooms":["vip"]}`)
	res := decode[remoteAnswer](t, body)
	if code != 200 || res.Sparks != 1 || res.Changed != 1 || len(res.Nodes) != 2 {
		t.Fatalf("/api/join: %d %s", code, body)
	}
	if code, body := post(t, a.URL+"/api/publish", "k", `{"room":"vip","data":"vip only"}`); code != 200 {
		t.Fatalf("publish: %d %s", code, body)
	}
	cb.expect(`"vip only"`)
	code, body = post(t, b.URL+"/api/leave", "k", `{"ids":["`+idb+`"],"rooms":["vip","news"]}`)
	if res := decode[remoteAnswer](t, body); code != 200 || res.Changed != 2 {
		t.Fatalf("/api/leave: %d %s", code, body)
	}

	// Disconnect by room (a's spark, from b) and by id.
	code, body = post(t, b.URL+"/api/disconnect", "k", `{"room":"a-only","reconnect":true}`)
	if res := decode[remoteAnswer](t, body); code != 200 || res.Changed != 1 {
		t.Fatalf("/api/disconnect room: %d %s", code, body)
	}
	ca.WaitClosed(t)
	code, body = post(t, a.URL+"/api/disconnect", "k", `{"ids":["`+idb+`"]}`)
	if res := decode[remoteAnswer](t, body); code != 200 || res.Changed != 1 || res.Sparks != 1 {
		t.Fatalf("/api/disconnect ids: %d %s", code, body)
	}
	cb.expect(`"primus::server::close"`)
	if code, body := get(t, a.URL+"/api/rooms", "k"); code != 200 || !strings.Contains(body, `"rooms":{}`) {
		t.Fatalf("/api/rooms after the disconnections: %d %s", code, body)
	}

	for _, bad := range []struct{ path, body string }{
		{"/api/join", `{"ids":["x"]}`},
		{"/api/join", `{"ids":["x"],"rooms":[""]}`},
		{"/api/join", `{"ids":["x"],"rooms":["r"],"extra":1}`},
		{"/api/join", `{"ids":["x"],"rooms":["r"]} {}`},
		{"/api/leave", `{"rooms":["r"]}`},
		{"/api/disconnect", `{}`},
		{"/api/disconnect", `{"ids":["x"],"room":"r"}`},
		{"/api/disconnect", `{"room":5}`},
		{"/api/disconnect?timeout=soon", `{"ids":["x"]}`},
		// Invalid room names: refused at once, not sent to nodes that
		// would drop the request (a name over 64 KiB) and be waited for.
		{"/api/disconnect", `{"room":"` + strings.Repeat("r", 300) + `"}`},
		{"/api/disconnect", `{"room":"` + strings.Repeat("r", 70<<10) + `"}`},
		{"/api/leave", `{"ids":["x"],"rooms":["` + strings.Repeat("r", 70<<10) + `"]}`},
		{"/api/join", `{"ids":[` + strings.Repeat(`"x",`, maxAPIIDs) + `"x"],"rooms":["r"]}`},
	} {
		if code, body := post(t, a.URL+bad.path, "k", bad.body); code != 400 || !strings.Contains(body, `"error"`) {
			t.Errorf("POST %s %.60s: %d %s, want 400", bad.path, bad.body, code, body)
		}
	}
	if code, _ := post(t, a.URL+"/api/join", "", `{"ids":["x"],"rooms":["r"]}`); code != 401 {
		t.Errorf("/api/join without the key: %d", code)
	}
	_, body = get(t, a.URL+"/metrics", "")
	for _, want := range []string{"primus_cluster_nodes 2\n", "primus_cluster_calls_total ", "primus_cluster_requests_served_total "} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

// silentNodes is a node that hears everything and answers nothing.
type silentNodes struct{}

func (silentNodes) HandleNodeMessage([]byte) {}
func (silentNodes) NodeLinkUp()              {}

// A node that is in the membership but does not answer: 207 with the
// answers of the others and its name; a call without time to start: 504.
func TestClusterAPIPartial(t *testing.T) {
	hub := primus.NewMemoryHub()
	apps, servers := startHubApps(t, hub, 2)
	zombie := hub.NewBroker()
	if err := zombie.EnableCluster("zombie", silentNodes{}); err != nil {
		t.Fatal(err)
	}
	if err := zombie.Start(primus.BrokerHandlerFunc(func(*primus.Message, []string) {})); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = zombie.Close() })
	// One heartbeat: the zombie is live for NodeTTL (5s).
	hb := `{"v":1,"t":"hb","from":"zombie","started":1}`
	if err := zombie.Broadcast(context.Background(), []byte(hb)); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, "the zombie in the membership", func() bool {
		nodes, _ := apps[0].Primus.Nodes(context.Background())
		return len(nodes) == 3
	})
	c := dial(t, servers[1])
	id := c.id()
	start := time.Now()
	code, body := post(t, servers[0].URL+"/api/join?timeout=300ms", "k", `{"ids":["`+id+`"],"rooms":["r"]}`)
	res := decode[remoteAnswer](t, body)
	if code != 207 || !slices.Equal(res.Missing, []string{"zombie"}) || res.Changed != 1 || len(res.Nodes) != 2 || !strings.Contains(res.Error, "deadline") {
		t.Fatalf("/api/join with a silent node: %d %s", code, body)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("took %v with a 300ms timeout", took)
	}
	code, body = get(t, servers[1].URL+"/api/rooms?timeout=200ms", "k")
	if code != 207 || !strings.Contains(body, `"missing":["zombie"]`) || !strings.Contains(body, `"r":1`) {
		t.Fatalf("/api/rooms with a silent node: %d %s", code, body)
	}
	if code, body := get(t, servers[1].URL+"/api/rooms/r?timeout=1ns", "k"); code != 504 {
		t.Fatalf("/api/rooms/r without time: %d %s", code, body)
	}
}

// In compat mode the cluster calls are not supported: /api/rooms answers
// for the node ("scope":"node"), the other cluster routes 501.
func TestClusterAPINotSupported(t *testing.T) {
	_, ts := startApp(t, Options{Broker: notCluster{primus.NewMemoryBroker()}})
	c := dial(t, ts)
	c.send(`{"join":"r","ack":1}`)
	c.expect(`{"ack":1,"ok":true}`)
	if code, body := get(t, ts.URL+"/api/rooms", ""); code != 200 || !strings.Contains(body, `"scope":"node"`) || !strings.Contains(body, `"r":1`) {
		t.Fatalf("/api/rooms: %d %s", code, body)
	}
	if code, body := get(t, ts.URL+"/api/nodes", ""); code != 501 {
		t.Fatalf("/api/nodes: %d %s", code, body)
	}
	if code, body := post(t, ts.URL+"/api/disconnect", "", `{"room":"r"}`); code != 501 {
		t.Fatalf("/api/disconnect: %d %s", code, body)
	}
}

// notCluster hides the memory broker's ClusterBroker methods.
type notCluster struct{ primus.Broker }
