package primus

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// sizeBroker is a memory broker that records the node messages its node
// sends.
type sizeBroker struct {
	*MemoryBroker
	n, max atomic.Int64
}

func (b *sizeBroker) record(p []byte) {
	b.n.Add(1)
	for m := b.max.Load(); int64(len(p)) > m && !b.max.CompareAndSwap(m, int64(len(p))); m = b.max.Load() {
	}
}

func (b *sizeBroker) Broadcast(ctx context.Context, p []byte) error {
	b.record(p)
	return b.MemoryBroker.Broadcast(ctx, p)
}

func (b *sizeBroker) Send(ctx context.Context, to string, p []byte) error {
	b.record(p)
	return b.MemoryBroker.Send(ctx, to, p)
}

// detachedCluster starts n servers on one hub, without heartbeats to
// clients (their sparks are detached: no connection to read).
func detachedCluster(t testing.TB, n int) ([]*Server, []*sizeBroker) {
	t.Helper()
	hub := NewMemoryHub()
	var srvs []*Server
	var brokers []*sizeBroker
	for i := range n {
		b := &sizeBroker{MemoryBroker: hub.NewBroker()}
		srv, err := New(Config{Broker: b, NodeID: fmt.Sprintf("n%d", i), NodeTTL: time.Second, PingInterval: -1})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			_ = srv.Shutdown(ctx)
		})
		srvs = append(srvs, srv)
		brokers = append(brokers, b)
	}
	deadline := time.Now().Add(10 * time.Second)
	for _, srv := range srvs {
		for {
			nodes, err := srv.Nodes(context.Background())
			if err == nil && len(nodes) == n {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s sees %d nodes (%v)", srv.NodeID(), len(nodes), err)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	return srvs, brokers
}

// 30 000 sparks over three nodes: ClusterClients returns each exactly once,
// with its node, in pages no larger than pageBytes plus a little.
func TestClusterClients30k(t *testing.T) {
	srvs, brokers := detachedCluster(t, 3)
	const perNode = 10_000
	for i, srv := range srvs {
		for j := range perNode {
			s := detachedSpark(srv, fmt.Sprintf("s%d-%05d", i, j), &recordConn{}, nil)
			rooms := []string{"all"}
			if j%2 == 0 {
				rooms = append(rooms, "even")
			}
			if err := s.Join(rooms...); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, srv := range srvs {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		got, err := srv.ClusterClients(ctx, "all", "even")
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 3*perNode {
			t.Fatalf("%s: %d sparks, want %d", srv.NodeID(), len(got), 3*perNode)
		}
		seen := map[string]bool{}
		for _, s := range got {
			if seen[s.ID] {
				t.Fatalf("%s listed twice", s.ID)
			}
			seen[s.ID] = true
			if want := "n" + s.ID[1:2]; s.Node != want {
				t.Fatalf("%s on %s, want %s", s.ID, s.Node, want)
			}
		}
	}
	sizes, err := srvs[1].ClusterRoomSizes(context.Background())
	if err != nil || sizes["all"] != 3*perNode || sizes["even"] != 3*perNode/2 {
		t.Fatalf("ClusterRoomSizes = %v, %v", sizes, err)
	}
	for _, b := range brokers {
		if m := b.max.Load(); m > pageBytes+4096 {
			t.Errorf("a node message of %d bytes (pages are cut at %d)", m, pageBytes)
		}
	}
}

// A room of 100 000 members on one node travels in pages.
func TestClusterClientsPaged100k(t *testing.T) {
	if testing.Short() {
		t.Skip("100 000 sparks")
	}
	srvs, brokers := detachedCluster(t, 2)
	const members = 100_000
	for j := range members {
		if err := detachedSpark(srvs[1], fmt.Sprintf("spark-%06d", j), &recordConn{}, nil).Join("huge"); err != nil {
			t.Fatal(err)
		}
	}
	before := brokers[1].n.Load()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	got, err := srvs[0].ClusterClients(ctx, "huge")
	if err != nil || len(got) != members {
		t.Fatalf("%d members, %v", len(got), err)
	}
	pages := brokers[1].n.Load() - before
	if m := brokers[1].max.Load(); m > pageBytes+4096 || pages < members*10/pageBytes {
		t.Errorf("%d pages, the largest %d bytes", pages, m)
	}
	t.Logf("100 000 members in %d pages of at most %d bytes", pages, brokers[1].max.Load())
}

// Another node's messages are hostile: malformed ones are dropped and
// counted, forged answers for a call in progress do not count for a node
// that is not live, and answers cannot exceed their bounds.
func TestClusterHostileMessages(t *testing.T) {
	srvs, _ := detachedCluster(t, 2)
	srv := srvs[0]
	h := clusterHandler{srv.cluster}
	for _, p := range []string{
		``, `null`, `[]`, `{`, `{"v":1}`, `{"v":2,"t":"hb","from":"x"}`, `{"v":1,"t":"hb"}`,
		`{"v":1,"t":"hb","from":"x","sparks":-1}`, `{"v":1,"t":"req","from":"x","id":"i","op":"join","ttl":100}`,
		`{"v":1,"t":"req","from":"x","id":"i","op":"disconnect","ttl":100}`,
		`{"v":1,"t":"req","from":"x","id":"i","op":"clients","ttl":0}`,
		`{"v":1,"t":"req","from":"x","id":"i","op":"nope","ttl":100}`,
		`{"v":1,"t":"res","from":"x","id":"i","seq":-1}`,
		`{"v":1,"t":"res","from":"x","id":"i","sizes":{"r":-5}}`,
		`{"v":1,"t":"hb","from":"` + strings.Repeat("x", 300) + `"}`,
		`{"v":1,"v":1,"t":"bye","from":"x"}`, "{\"v\":1,\"t\":\"bye\",\"from\":\"\xff\"}", `{"V":1,"t":"bye","from":"x"}`,
		`{"v":1,"t":"req","from":"x","id":"i","op":"clients","ttl":100,"ids":[` + strings.Repeat(`"a",`, 1000) + `"a"]}`,
	} {
		before := srv.cluster.malformed.Load()
		h.HandleNodeMessage([]byte(p))
		if srv.cluster.malformed.Load() != before+1 {
			t.Errorf("%.60s: not counted as malformed", p)
		}
	}

	// A call in progress: forged answers from a node that is not live, an
	// inconsistent page and a page past the last do not complete it.
	_ = detachedSpark(srvs[1], "real", &recordConn{}, nil).Join("r")
	var wg sync.WaitGroup
	var got []ClusterSpark
	var err error
	wg.Go(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		got, err = srv.ClusterClients(ctx, "r")
	})
	wg.Wait()
	if err != nil || len(got) != 1 || got[0].ID != "real" {
		t.Fatalf("ClusterClients = %v, %v", got, err)
	}
	c := srv.cluster
	p := &pendingCall{c: c, id: "forged", op: opClients, expect: map[string]bool{"n1": true}, nodes: map[string]*nodeAnswer{}, remaining: 1, done: make(chan struct{})}
	page := func(from string, seq int64, last bool, ids ...string) []byte {
		b, _ := json.Marshal(nodeMessage{V: 1, T: msgResponse, From: from, ID: "forged", Seq: seq, Last: last, IDs: ids})
		return b
	}
	c.mu.Lock()
	c.pending["forged"] = p
	c.mu.Unlock()
	defer func() { c.mu.Lock(); delete(c.pending, "forged"); c.mu.Unlock() }()
	h.HandleNodeMessage(page("ghost", 0, true, "g1"))  // not live: ignored
	h.HandleNodeMessage(page("n1", 3, false, "a"))     // page 3 of ?
	h.HandleNodeMessage(page("n1", 3, false, "a"))     // duplicate: ignored
	h.HandleNodeMessage(page("n1", 1, true, "b"))      // last is 1, but 3 was seen: invalid
	h.HandleNodeMessage(page("n1", 0, true, "c", "d")) // after completion: ignored
	select {
	case <-p.done:
	default:
		t.Fatal("the call did not complete")
	}
	if na := p.nodes["n1"]; na.err != "inconsistent pages" || p.nodes["ghost"] != nil {
		t.Fatalf("n1 answer %+v, ghost %v", na, p.nodes["ghost"])
	}
}

// Requests beyond what the workers and the queue take are refused, and
// the node keeps serving.
func TestClusterRequestFlood(t *testing.T) {
	srvs, _ := detachedCluster(t, 2)
	c := srvs[1].cluster
	h := clusterHandler{c}
	// Every worker busy: each waits for a spark that never closes (a
	// detached spark has no reader to finish it).
	for i := range clusterWorkers {
		id := fmt.Sprint("stuck", i)
		detachedSpark(srvs[1], id, &recordConn{}, nil)
		b, _ := json.Marshal(nodeMessage{V: 1, T: msgRequest, From: "n0", ID: "block" + id, Op: opDisconnect, TTL: 1500, IDs: []string{id}})
		h.HandleNodeMessage(b)
	}
	for i := range 2 * clusterQueue {
		b, _ := json.Marshal(nodeMessage{V: 1, T: msgRequest, From: "n0", ID: fmt.Sprint("flood", i), Op: opSizes, TTL: 1000})
		h.HandleNodeMessage(b)
	}
	if n := c.refused.Load(); n < clusterQueue-clusterWorkers {
		t.Fatalf("%d refused", n)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := srvs[0].ClusterRoomSizes(ctx)
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("n1 never answered again: %v", err)
		}
	}
}

func FuzzDecodeNodeMessage(f *testing.F) {
	for _, m := range []nodeMessage{
		{T: msgHeartbeat, From: "n1", Hello: true, Started: 1, Sparks: 3, Rooms: 2},
		{T: msgBye, From: "n1"},
		{T: msgRequest, From: "n1", ID: "r", Op: opJoin, TTL: 100, IDs: []string{"a"}, Target: []string{"x"}},
		{T: msgRequest, From: "n1", ID: "r", Op: opClients, TTL: 100, In: []string{"x"}, Except: []string{"e"}},
		{T: msgResponse, From: "n2", ID: "r", Seq: 1, Last: true, IDs: []string{"a", "b"}},
		{T: msgResponse, From: "n2", ID: "r", Sizes: map[string]int64{"x": 3}, N: &wireCounts{1, 2, 3}},
	} {
		m.V = wireVersion
		b, _ := json.Marshal(m)
		f.Add(b)
	}
	f.Add([]byte(`{"v":1,"t":"res","from":"x","id":"i","sizes":{"":1}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeNodeMessage(b)
		if err != nil {
			return
		}
		if len(m.From) == 0 || len(m.From) > maxWireNodeID || len(m.IDs) > max(maxWireIDs, maxPageItems) || len(m.Sizes) > maxPageItems ||
			len(m.Except) > maxWireExcept || len(m.In) > maxWireRooms || len(m.Target) > maxWireRooms || m.Seq < 0 || m.Seq >= maxWirePages {
			t.Fatalf("out of bounds: %+v", m)
		}
		if m.T == msgRequest && (m.TTL <= 0 || m.TTL > maxWireTTL) {
			t.Fatalf("ttl %d", m.TTL)
		}
	})
}

// Whatever another node sends, the handler neither panics nor blocks.
func FuzzHandleNodeMessage(f *testing.F) {
	f.Add([]byte(`{"v":1,"t":"req","from":"x","id":"i","op":"clients","ttl":50,"in":["r"]}`))
	f.Add([]byte(`{"v":1,"t":"req","from":"x","id":"i","op":"disconnect","ttl":50,"in":["r"],"except":["s1"]}`))
	f.Add([]byte(`{"v":1,"t":"req","from":"x","id":"i","op":"join","ttl":50,"ids":["s1"],"target":["a","b"]}`))
	f.Add([]byte(`{"v":1,"t":"hb","from":"y","hello":true,"started":1}`))
	f.Add([]byte(`{"v":1,"t":"bye","from":"y"}`))
	f.Add([]byte(`{"v":1,"t":"res","from":"y","id":"i","seq":0,"last":true,"n":{"sparks":1,"changed":0,"failed":0}}`))
	srv, err := New(Config{NodeTTL: time.Second, PingInterval: -1})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
	for i := range 3 {
		_ = detachedSpark(srv, fmt.Sprint("s", i), &recordConn{}, nil).Join("r")
	}
	h := clusterHandler{srv.cluster}
	f.Fuzz(func(t *testing.T, b []byte) {
		done := make(chan struct{})
		go func() {
			defer close(done)
			h.HandleNodeMessage(b)
		}()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("HandleNodeMessage blocked")
		}
	})
}

// BenchmarkClusterClients10k: ClusterClients on a room of 10 000 members
// spread over three nodes of a memory hub (the library's cost of a call:
// requests, pages, merging; no network).
func BenchmarkClusterClients10k(b *testing.B) {
	srvs, _ := detachedCluster(b, 3)
	for i := range 10_000 {
		if err := detachedSpark(srvs[i%3], fmt.Sprintf("spark-%05d-abcdefghij", i), &recordConn{}, nil).Join("big"); err != nil {
			b.Fatal(err)
		}
	}
	ctx := context.Background()
	for b.Loop() {
		got, err := srvs[0].ClusterClients(ctx, "big")
		if err != nil || len(got) != 10_000 {
			b.Fatalf("%d, %v", len(got), err)
		}
	}
}

// BenchmarkRemoteJoin: RemoteJoin of one spark on another node of a
// memory hub, three nodes (and the leave that undoes it).
func BenchmarkRemoteJoin(b *testing.B) {
	srvs, _ := detachedCluster(b, 3)
	s := detachedSpark(srvs[2], "target", &recordConn{}, nil)
	ctx := context.Background()
	for b.Loop() {
		if res, err := srvs[0].RemoteJoin(ctx, []string{s.id}, []string{"r"}); err != nil || res.Changed() != 1 {
			b.Fatalf("%+v, %v", res, err)
		}
		if _, err := srvs[0].RemoteLeave(ctx, []string{s.id}, []string{"r"}); err != nil {
			b.Fatal(err)
		}
	}
}

// A forged answer cannot make a call hold more than maxCallBytes of names:
// pages of few, long room names are refused by their bytes, not only by
// their count of items.
func TestClusterAnswerBytesBounded(t *testing.T) {
	srvs, _ := detachedCluster(t, 2)
	c := srvs[0].cluster
	h := clusterHandler{c}
	p := &pendingCall{c: c, id: "big", op: opSizes, expect: map[string]bool{"n1": true}, nodes: map[string]*nodeAnswer{}, remaining: 1, done: make(chan struct{})}
	c.mu.Lock()
	c.pending["big"] = p
	c.mu.Unlock()
	defer func() { c.mu.Lock(); delete(c.pending, "big"); c.mu.Unlock() }()
	const perPage = 15 // rooms of maxWireRoom bytes: just under MaxNodeMessage
	pages := maxCallBytes/(perPage*maxWireRoom) + 2
	for seq := range pages {
		sizes := make(map[string]int64, perPage)
		for i := range perPage {
			name := fmt.Sprintf("%06d-%02d-", seq, i)
			sizes[name+strings.Repeat("r", maxWireRoom-len(name))] = 1
		}
		b, err := json.Marshal(nodeMessage{V: 1, T: msgResponse, From: "n1", ID: "big", Seq: int64(seq), Sizes: sizes})
		if err != nil || len(b) > MaxNodeMessage {
			t.Fatalf("page of %d bytes: %v", len(b), err)
		}
		h.HandleNodeMessage(b)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	na := p.nodes["n1"]
	if na == nil || na.err != "answer too large" {
		t.Fatalf("n1's answer after %d pages of %d long names: not refused", pages, perPage)
	}
	held := 0
	for room := range na.sizes {
		held += len(room)
	}
	if held > maxCallBytes {
		t.Fatalf("the call holds %d bytes of room names (bound %d)", held, maxCallBytes)
	}
}

// Empty pages count as items: a forged stream of them cannot grow a call's
// page bookkeeping past maxCallItems.
func TestClusterEmptyPagesBounded(t *testing.T) {
	srvs, _ := detachedCluster(t, 2)
	c := srvs[0].cluster
	p := &pendingCall{c: c, id: "empty", op: opCount, expect: map[string]bool{"n1": true}, nodes: map[string]*nodeAnswer{}, remaining: 1, done: make(chan struct{}),
		items: maxCallItems - 10}
	for seq := range int64(20) {
		p.add(&nodeMessage{V: 1, T: msgResponse, From: "n1", ID: "empty", Seq: seq}, true)
	}
	if na := p.nodes["n1"]; na == nil || na.err != "answer too large" || len(na.seen) > 11 {
		t.Fatalf("n1's answer: %+v", na)
	}
}
