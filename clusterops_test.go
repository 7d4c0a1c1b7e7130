package primus_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/primusgo/primus"
	"github.com/primusgo/primus/internal/testkit"
)

// testNodeTTL is the membership TTL of the cluster-call tests: short, so
// that a dead node leaves quickly, long enough for a loaded machine.
const testNodeTTL = time.Second

// faultyBroker is a memory broker whose node messages can be cut, both
// ways, as if its process had died (kill -9) while its room traffic and
// its sparks stay.
type faultyBroker struct {
	*primus.MemoryBroker
	dead atomic.Bool
	sent atomic.Int64 // node messages sent
	max  atomic.Int64 // largest node message sent
}

func (b *faultyBroker) EnableCluster(id string, h primus.NodeHandler) error {
	return b.MemoryBroker.EnableCluster(id, faultyHandler{b, h})
}

func (b *faultyBroker) count(p []byte) {
	b.sent.Add(1)
	for {
		m := b.max.Load()
		if int64(len(p)) <= m || b.max.CompareAndSwap(m, int64(len(p))) {
			return
		}
	}
}

func (b *faultyBroker) Broadcast(ctx context.Context, p []byte) error {
	if b.dead.Load() {
		return nil
	}
	b.count(p)
	return b.MemoryBroker.Broadcast(ctx, p)
}

func (b *faultyBroker) Send(ctx context.Context, to string, p []byte) error {
	if b.dead.Load() {
		return nil
	}
	b.count(p)
	return b.MemoryBroker.Send(ctx, to, p)
}

type faultyHandler struct {
	b *faultyBroker
	h primus.NodeHandler
}

func (f faultyHandler) HandleNodeMessage(p []byte) {
	if !f.b.dead.Load() {
		f.h.HandleNodeMessage(p)
	}
}
func (f faultyHandler) NodeLinkUp() { f.h.NodeLinkUp() }

type opsCluster struct {
	nodes   []*testServer
	brokers []*faultyBroker
}

// startOpsCluster starts n servers named n0, n1, ... on one memory hub,
// with cluster-call timings for tests.
func startOpsCluster(t *testing.T, n int, cfg primus.Config) *opsCluster {
	t.Helper()
	hub := primus.NewMemoryHub()
	oc := &opsCluster{}
	for i := range n {
		b := &faultyBroker{MemoryBroker: hub.NewBroker()}
		c := cfg
		c.Broker, c.NodeID, c.NodeTTL = b, fmt.Sprintf("n%d", i), testNodeTTL
		oc.nodes = append(oc.nodes, startServer(t, c))
		oc.brokers = append(oc.brokers, b)
	}
	oc.awaitMembership(t, n)
	return oc
}

// awaitMembership waits until every node sees n live nodes.
func (oc *opsCluster) awaitMembership(t *testing.T, n int) {
	t.Helper()
	for _, ts := range oc.nodes {
		testkit.WaitFor(t, ts.NodeID()+" sees the cluster", func() bool {
			nodes, err := ts.Nodes(t.Context())
			return err == nil && len(nodes) == n
		})
	}
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestClusterNodes(t *testing.T) {
	oc := startOpsCluster(t, 3, primus.Config{})
	connectN(t, oc.nodes[1], 2)
	testkit.WaitFor(t, "n1's heartbeat with its sparks", func() bool {
		nodes, err := oc.nodes[0].Nodes(t.Context())
		return err == nil && len(nodes) == 3 && nodes[1].Sparks == 2
	})
	nodes, err := oc.nodes[0].Nodes(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for i, n := range nodes {
		if n.ID != fmt.Sprintf("n%d", i) || n.Self != (i == 0) || n.StartedAt.IsZero() || time.Since(n.LastSeen) > testNodeTTL {
			t.Errorf("node %d: %+v", i, n)
		}
	}
	if st := oc.nodes[0].ClusterStats(); !st.Enabled || st.Nodes != 3 {
		t.Errorf("ClusterStats = %+v", st)
	}
}

func clusterSparkIDs(list []primus.ClusterSpark) map[string]string {
	out := map[string]string{}
	for _, s := range list {
		out[s.ID] = s.Node
	}
	return out
}

func TestClusterQueries(t *testing.T) {
	oc := startOpsCluster(t, 3, primus.Config{})
	want := map[string]string{} // members of "r": id -> node
	var all []*primus.Spark
	for i, ts := range oc.nodes {
		_, ss := connectN(t, ts, 3)
		for j, s := range ss {
			all = append(all, s)
			rooms := []string{fmt.Sprintf("own%d", i)}
			if j < 2 {
				rooms = append(rooms, "r")
				want[s.ID()] = ts.NodeID()
			}
			if err := s.Join(rooms...); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, ts := range oc.nodes {
		got, err := ts.ClusterClients(ctxFor(t, 5*time.Second), "r")
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 6 || !maps(clusterSparkIDs(got), want) || !slices.IsSortedFunc(got, func(a, b primus.ClusterSpark) int {
			return cmpString(a.ID, b.ID)
		}) {
			t.Fatalf("%s: ClusterClients(r) = %v, want %v", ts.NodeID(), got, want)
		}
	}
	// Several rooms: each spark once; Except on the room form.
	got, err := oc.nodes[2].Room("r", "own0").Except(all[0].ID()).ClusterClients(t.Context())
	if err != nil || len(got) != 6 { // r's 6 + own0's 3 - the 2 in both - 1 excepted
		t.Fatalf("Room(r, own0).Except.ClusterClients = %v, %v", got, err)
	}
	// No rooms: every spark.
	if got, err := oc.nodes[1].ClusterClients(t.Context()); err != nil || len(got) != 9 {
		t.Fatalf("ClusterClients() = %d sparks, %v", len(got), err)
	}
	sizes, err := oc.nodes[0].ClusterRoomSizes(t.Context())
	if err != nil || len(sizes) != 4 || sizes["r"] != 6 || sizes["own0"] != 3 || sizes["own2"] != 3 {
		t.Fatalf("ClusterRoomSizes = %v, %v", sizes, err)
	}
	for room, want := range map[string]bool{"own2": false, "r": false, "nobody": true} {
		if empty, err := oc.nodes[0].ClusterIsRoomEmpty(t.Context(), room); err != nil || empty != want {
			t.Errorf("ClusterIsRoomEmpty(%s) = %v, %v", room, empty, err)
		}
	}
	// Local answers stay local.
	if n := len(oc.nodes[0].Clients("r")); n != 2 {
		t.Errorf("Clients(r) on n0 = %d, want 2", n)
	}
}

func maps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Join, leave and disconnect a spark connected to another node: its events
// fire there before the call returns, and a room write made after the call
// sees the change.
func TestRemoteOperations(t *testing.T) {
	oc := startOpsCluster(t, 3, primus.Config{})
	caller, holder, writer := oc.nodes[0], oc.nodes[2], oc.nodes[1]
	cs, ss := connectN(t, holder, 2)
	c, s := cs[0], ss[0]

	res, err := caller.RemoteJoin(ctxFor(t, 5*time.Second), []string{s.ID(), "no-such-spark"}, []string{"a", "b"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Sparks() != 1 || res.Changed() != 2 || res.Failed() != 0 || len(res.Nodes) != 3 {
		t.Fatalf("RemoteJoin = %+v", res)
	}
	for _, n := range res.Nodes {
		if want := n.Node == holder.NodeID(); (n.Changed == 2) != want {
			t.Errorf("node %s changed %d", n.Node, n.Changed)
		}
	}
	// The events fired before the call returned.
	for _, room := range []string{"a", "b"} {
		e, ok := holder.joins.TryGet()
		if !ok || e.spark != s || e.room != room {
			t.Fatalf("OnJoin after RemoteJoin: %v %v, want %s", e, ok, room)
		}
	}
	if err := writer.Room("a").Write("to a"); err != nil {
		t.Fatal(err)
	}
	c.Expect(t, `"to a"`)

	// Joining again changes nothing.
	if res, err := caller.RemoteJoin(t.Context(), []string{s.ID()}, []string{"a"}); err != nil || res.Sparks() != 1 || res.Changed() != 0 {
		t.Fatalf("RemoteJoin again = %+v, %v", res, err)
	}

	res, err = caller.RemoteLeave(t.Context(), []string{s.ID()}, []string{"a", "c"})
	if err != nil || res.Changed() != 1 {
		t.Fatalf("RemoteLeave = %+v, %v", res, err)
	}
	if e, ok := holder.leaves.TryGet(); !ok || e.spark != s || e.room != "a" {
		t.Fatalf("OnLeave after RemoteLeave: %v %v", e, ok)
	}
	_ = writer.Room("a").Write("to a again")
	_ = writer.Room("b").Write("to b")
	c.Expect(t, `"to b"`) // and not "to a again", which was written first
	if got := s.Rooms(); !slices.Equal(got, []string{"b"}) {
		t.Fatalf("Rooms = %v", got)
	}

	res, err = caller.RemoteDisconnect(ctxFor(t, 5*time.Second), []string{s.ID()}, false)
	if err != nil || res.Sparks() != 1 || res.Changed() != 1 {
		t.Fatalf("RemoteDisconnect = %+v, %v", res, err)
	}
	// OnDisconnection ran before the call returned: the spark is gone
	// everywhere.
	if d, ok := holder.discs.TryGet(); !ok || d != s {
		t.Fatalf("OnDisconnection after RemoteDisconnect: %v %v", d, ok)
	}
	if e, ok := holder.leaves.TryGet(); !ok || e.room != "b" {
		t.Fatalf("OnLeave of the disconnection: %v %v", e, ok)
	}
	c.Expect(t, `"primus::server::close"`)
	if code := c.WaitClosed(t); code != websocket.StatusCode(-1) && code != websocket.StatusNoStatusRcvd {
		t.Logf("close status %d", code)
	}
	if got, err := writer.ClusterClients(t.Context(), "b"); err != nil || len(got) != 0 {
		t.Fatalf("ClusterClients(b) after the disconnection = %v, %v", got, err)
	}
	if got, err := writer.ClusterClients(t.Context()); err != nil || len(got) != 1 || got[0].ID != ss[1].ID() {
		t.Fatalf("ClusterClients() = %v, %v", got, err)
	}
}

func TestRemoteOperationsRoomForms(t *testing.T) {
	oc := startOpsCluster(t, 3, primus.Config{})
	var members []*primus.Spark
	var clients []*testkit.Client
	for _, ts := range oc.nodes {
		cs, ss := connectN(t, ts, 2)
		for _, s := range ss {
			if err := s.Join("lobby"); err != nil {
				t.Fatal(err)
			}
		}
		members = append(members, ss...)
		clients = append(clients, cs...)
	}
	kept := members[3] // on n1
	lobby := oc.nodes[0].Room("lobby").Except(kept.ID())

	res, err := lobby.JoinAll(t.Context(), "game")
	if err != nil || res.Sparks() != 5 || res.Changed() != 5 || len(res.Nodes) != 3 {
		t.Fatalf("JoinAll = %+v, %v", res, err)
	}
	if got, err := oc.nodes[2].ClusterClients(t.Context(), "game"); err != nil || len(got) != 5 || slices.ContainsFunc(got, func(s primus.ClusterSpark) bool { return s.ID == kept.ID() }) {
		t.Fatalf("game members = %v, %v", got, err)
	}
	_ = oc.nodes[1].Room("game").Write("game on")
	for i, c := range clients {
		if members[i] != kept {
			c.Expect(t, `"game on"`)
		}
	}

	res, err = oc.nodes[1].Room("lobby").LeaveAll(t.Context())
	if err != nil || res.Sparks() != 6 || res.Changed() != 6 {
		t.Fatalf("LeaveAll = %+v, %v", res, err)
	}
	if empty, err := oc.nodes[2].ClusterIsRoomEmpty(t.Context(), "lobby"); err != nil || !empty {
		t.Fatalf("lobby empty = %v, %v", empty, err)
	}

	res, err = oc.nodes[2].Room("game").DisconnectAll(ctxFor(t, 5*time.Second), true)
	if err != nil || res.Sparks() != 5 || res.Changed() != 5 {
		t.Fatalf("DisconnectAll = %+v, %v", res, err)
	}
	left, err := oc.nodes[0].ClusterClients(t.Context())
	if err != nil || len(left) != 1 || left[0].ID != kept.ID() || left[0].Node != "n1" {
		t.Fatalf("after DisconnectAll: %v, %v", left, err)
	}
	for i, c := range clients {
		if members[i] != kept {
			c.WaitClosed(t)
		}
	}
	// Reconnect-style: no "primus::server::close" went first.
	for _, f := range clients[0].Rest(t) {
		if string(f.Data) == `"primus::server::close"` {
			t.Fatal("DisconnectAll(reconnect) sent primus::server::close")
		}
	}
	if _, err := oc.nodes[0].Room().JoinAll(t.Context(), "x"); !errors.Is(err, primus.ErrNoRooms) {
		t.Errorf("Room().JoinAll = %v, want ErrNoRooms", err)
	}
}

// A node that dies in the middle of a call: the call returns at its
// deadline naming it, with the others' answers; after NodeTTL it has left
// the membership and calls no longer wait for it.
func TestClusterCallDeadNode(t *testing.T) {
	oc := startOpsCluster(t, 3, primus.Config{})
	for _, ts := range oc.nodes {
		_, ss := connectN(t, ts, 1)
		_ = ss[0].Join("r")
	}
	oc.brokers[1].dead.Store(true) // n1 "killed": silent from now on

	start := time.Now()
	got, err := oc.nodes[0].ClusterClients(ctxFor(t, 300*time.Millisecond), "r")
	took := time.Since(start)
	var pe *primus.PartialError
	if !errors.As(err, &pe) || !slices.Equal(pe.Missing, []string{"n1"}) || !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, primus.ErrPartial) {
		t.Fatalf("err = %v, want a PartialError missing n1 at the deadline", err)
	}
	if len(got) != 2 {
		t.Fatalf("partial answer %v, want the sparks of n0 and n2", got)
	}
	if took < 250*time.Millisecond || took > 2*time.Second {
		t.Errorf("returned after %v, want at the 300ms deadline", took)
	}
	res, err := oc.nodes[2].RemoteJoin(ctxFor(t, 200*time.Millisecond), []string{got[0].ID}, []string{"x"})
	if !errors.As(err, &pe) || !slices.Equal(pe.Missing, []string{"n1"}) || res.Changed() != 1 || len(res.Nodes) != 2 {
		t.Fatalf("RemoteJoin = %+v, %v", res, err)
	}

	// A call waiting when the node leaves the membership returns then,
	// not at its deadline.
	start = time.Now()
	_, err = oc.nodes[0].ClusterRoomSizes(ctxFor(t, 4*testNodeTTL))
	if !errors.As(err, &pe) || !slices.Equal(pe.Missing, []string{"n1"}) || pe.Err != nil {
		t.Fatalf("err = %v, want n1 missing because it left", err)
	}
	if took := time.Since(start); took > 2*testNodeTTL {
		t.Errorf("waited %v for a node that left after its TTL of %v", took, testNodeTTL)
	}
	nodes, _ := oc.nodes[0].Nodes(t.Context())
	if len(nodes) != 2 {
		t.Fatalf("Nodes = %v, want n1 gone", nodes)
	}
	start = time.Now()
	if sizes, err := oc.nodes[0].ClusterRoomSizes(ctxFor(t, 5*time.Second)); err != nil || sizes["r"] != 2 {
		t.Fatalf("ClusterRoomSizes = %v, %v", sizes, err)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("the next call took %v", took)
	}
	if st := oc.nodes[0].ClusterStats(); st.PartialCalls != 2 {
		t.Errorf("PartialCalls = %d, want 2", st.PartialCalls)
	}
}

// A node that shuts down says bye: the others drop it at once.
func TestClusterShutdownSaysBye(t *testing.T) {
	oc := startOpsCluster(t, 3, primus.Config{})
	if err := oc.nodes[2].Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	nodes, err := oc.nodes[0].Nodes(t.Context())
	if err != nil || len(nodes) != 2 {
		// bye travels through a queue: give it a moment, far below the TTL.
		testkit.WaitFor(t, "n2 gone", func() bool {
			nodes, err := oc.nodes[0].Nodes(t.Context())
			return err == nil && len(nodes) == 2
		})
	}
	if _, err := oc.nodes[2].ClusterClients(t.Context()); !errors.Is(err, primus.ErrServerClosed) {
		t.Errorf("a call after Shutdown: %v", err)
	}
}

// plainBroker is a Broker that is not a ClusterBroker.
type plainBroker struct{ primus.Broker }

func TestClusterNotSupported(t *testing.T) {
	ts := startServer(t, primus.Config{Broker: plainBroker{primus.NewMemoryBroker()}})
	_, ss := connectN(t, ts, 1)
	_ = ss[0].Join("r")
	if _, err := ts.ClusterClients(t.Context(), "r"); !errors.Is(err, primus.ErrNotSupported) {
		t.Fatalf("ClusterClients = %v", err)
	}
	if _, err := ts.Nodes(t.Context()); !errors.Is(err, primus.ErrNotSupported) {
		t.Fatalf("Nodes = %v", err)
	}
	if _, err := ts.RemoteJoin(t.Context(), []string{ss[0].ID()}, []string{"x"}); !errors.Is(err, primus.ErrNotSupported) {
		t.Fatalf("RemoteJoin = %v", err)
	}
	if got := ts.Clients("r"); len(got) != 1 {
		t.Fatalf("local Clients = %v", got)
	}
	if ts.ClusterStats().Enabled {
		t.Error("ClusterStats.Enabled")
	}
}

// A single server with the default broker answers cluster calls alone.
func TestClusterSingleNode(t *testing.T) {
	ts := startServer(t, primus.Config{})
	_, ss := connectN(t, ts, 2)
	_ = ss[0].Join("r")
	got, err := ts.ClusterClients(t.Context(), "r")
	if err != nil || len(got) != 1 || got[0].Node != ts.NodeID() {
		t.Fatalf("ClusterClients = %v, %v", got, err)
	}
	res, err := ts.RemoteJoin(t.Context(), []string{ss[1].ID()}, []string{"r"})
	if err != nil || res.Changed() != 1 {
		t.Fatalf("RemoteJoin = %+v, %v", res, err)
	}
	if _, err := ts.RemoteJoin(t.Context(), []string{ss[1].ID()}, []string{""}); !errors.Is(err, primus.ErrInvalidRoom) {
		t.Fatalf("RemoteJoin of an invalid room = %v", err)
	}
}

// Many sparks: every spark once, and concurrent calls from every node.
func TestClusterConcurrentCalls(t *testing.T) {
	oc := startOpsCluster(t, 3, primus.Config{})
	for _, ts := range oc.nodes {
		_, ss := connectN(t, ts, 4)
		for _, s := range ss {
			_ = s.Join("r")
		}
	}
	var wg sync.WaitGroup
	for _, ts := range oc.nodes {
		for range 10 {
			wg.Go(func() {
				got, err := ts.ClusterClients(ctxFor(t, 5*time.Second), "r")
				if err != nil || len(got) != 12 {
					t.Errorf("%s: %d clients, %v", ts.NodeID(), len(got), err)
				}
			})
		}
	}
	wg.Wait()
}
