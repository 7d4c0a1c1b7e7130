// Package brokertest is the conformance suite every primus.Broker passes.
//
// A broker implementation's test calls Run with a function that builds a
// fresh cluster of n connected nodes (for example n Redis brokers on one
// Redis server, with a fresh channel prefix per call):
//
//	func TestConformance(t *testing.T) {
//		brokertest.Run(t, func(t testing.TB, n int) []primus.Broker { ... })
//	}
//
// A broker that implements primus.ClusterBroker also runs the Cluster
// tests (node messages: Broadcast, Send, link-ups, MaxNodeMessage).
package brokertest

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/primusgo/primus"
)

// NewCluster returns n nodes of a new, empty cluster. The suite starts and
// closes them.
type NewCluster func(t testing.TB, n int) []primus.Broker

// Timeout bounds every wait of the suite.
var Timeout = 10 * time.Second

// Limits declares what a broker's wire format cannot carry between nodes,
// for brokers that must speak a fixed foreign format (the Redis broker's
// primus-redis-rooms compatible mode). The zero value demands everything.
type Limits struct {
	// NoExcept: Except ids do not cross nodes; receivers get no Except.
	NoExcept bool
	// PerRoomCopies: a write to several rooms travels as independent
	// single-room messages without Skip, so a spark in k of the target
	// rooms on a remote node receives k copies.
	PerRoomCopies bool
	// NoCluster: node messages cannot be carried (cluster calls are not
	// supported); a ClusterBroker's EnableCluster must then fail with an
	// error wrapping primus.ErrNotSupported.
	NoCluster bool
}

// Run runs the conformance suite.
func Run(t *testing.T, newCluster NewCluster) { RunWithLimits(t, newCluster, Limits{}) }

// RunWithLimits runs the conformance suite for a broker with the given
// limits: the affected tests check the documented weaker behaviour exactly
// instead of the full semantics.
func RunWithLimits(t *testing.T, newCluster NewCluster, limits Limits) {
	tests := []struct {
		name string
		fn   func(t *testing.T, newCluster NewCluster)
	}{
		{"DeliversToSubscribedNode", testDelivers},
		{"FieldsSurvive", func(t *testing.T, nc NewCluster) { testFieldsSurvive(t, nc, limits) }},
		{"NoEchoToOrigin", testNoEcho},
		{"OnlyHostingNodes", testOnlyHostingNodes},
		{"MultiRoomExactlyOnce", func(t *testing.T, nc NewCluster) { testMultiRoomExactlyOnce(t, nc, limits) }},
		{"PerRoomOrder", testPerRoomOrder},
		{"ResubscribeAfterUnsubscribe", testResubscribe},
		{"ConcurrentPublishers", testConcurrentPublishers},
		{"LargeMessage", testLargeMessage},
		{"Close", testClose},
		{"SubscribeDuringDelivery", testSubscribeDuringDelivery},
		{"Cluster", func(t *testing.T, nc NewCluster) { testCluster(t, nc, limits) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.fn(t, newCluster) })
	}
}

// Received is a message as a broker handed it to its handler: a copy of
// the message and the rooms it said to skip.
type Received struct {
	primus.Message
	Skip []string
}

// Recorder is a BrokerHandler that keeps what it receives.
type Recorder struct {
	mu     sync.Mutex
	msgs   []*Received
	notify chan struct{}
}

// NewRecorder returns an empty Recorder.
func NewRecorder() *Recorder { return &Recorder{notify: make(chan struct{}, 1)} }

// HandleMessage implements primus.BrokerHandler; it copies m.
func (r *Recorder) HandleMessage(m *primus.Message, skip []string) {
	c := Received{Message: *m, Skip: slices.Clone(skip)}
	c.Rooms = slices.Clone(m.Rooms)
	c.Except = slices.Clone(m.Except)
	c.Data = bytes.Clone(m.Data)
	r.mu.Lock()
	r.msgs = append(r.msgs, &c)
	r.mu.Unlock()
	select {
	case r.notify <- struct{}{}:
	default:
	}
}

// Messages returns a copy of everything received so far.
func (r *Recorder) Messages() []*Received {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.msgs)
}

// WaitFor waits until pred holds for the received messages.
func (r *Recorder) WaitFor(t testing.TB, what string, pred func([]*Received) bool) []*Received {
	t.Helper()
	deadline := time.NewTimer(Timeout)
	defer deadline.Stop()
	for {
		msgs := r.Messages()
		if pred(msgs) {
			return msgs
		}
		select {
		case <-r.notify:
		case <-deadline.C:
			t.Fatalf("timed out waiting for %s; received %d messages: %s", what, len(msgs), describe(msgs))
		}
	}
}

func describe(msgs []*Received) string {
	var b strings.Builder
	for i, m := range msgs {
		if i == 10 {
			b.WriteString(" ...")
			break
		}
		fmt.Fprintf(&b, " [rooms=%v skip=%v except=%v data=%.40s]", m.Rooms, m.Skip, m.Except, m.Data)
	}
	return b.String()
}

type node struct {
	primus.Broker
	rec *Recorder
}

func start(t testing.TB, newCluster NewCluster, n int) []node {
	t.Helper()
	brokers := newCluster(t, n)
	if len(brokers) != n {
		t.Fatalf("NewCluster returned %d brokers, want %d", len(brokers), n)
	}
	nodes := make([]node, n)
	for i, b := range brokers {
		rec := NewRecorder()
		if err := b.Start(rec); err != nil {
			t.Fatalf("Start: %v", err)
		}
		nodes[i] = node{b, rec}
		t.Cleanup(func() { _ = b.Close() })
	}
	return nodes
}

func publish(t testing.TB, b primus.Broker, m *primus.Message) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	if err := b.Publish(ctx, m); err != nil {
		t.Fatalf("Publish(%v): %v", m.Rooms, err)
	}
}

func hasData(data string) func([]*Received) bool {
	return func(msgs []*Received) bool {
		for _, m := range msgs {
			if string(m.Data) == data {
				return true
			}
		}
		return false
	}
}

// AwaitSubscribed publishes probe messages from pub to room until sub
// receives one: subscriptions are applied in the background, so this is how
// a test knows that sub now hears room.
func AwaitSubscribed(t testing.TB, pub primus.Broker, sub *Recorder, room string) {
	t.Helper()
	deadline := time.Now().Add(Timeout)
	for i := 0; ; i++ {
		data := fmt.Sprintf(`{"probe":%q,"n":%d}`, room, i)
		publish(t, pub, &primus.Message{Rooms: []string{room}, Data: []byte(data)})
		wait := time.NewTimer(50 * time.Millisecond)
		for !hasData(data)(sub.Messages()) {
			select {
			case <-sub.notify:
				continue
			case <-wait.C:
			}
			break
		}
		wait.Stop()
		if hasData(data)(sub.Messages()) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("node never started receiving room %q", room)
		}
	}
}

func isProbe(m *Received) bool { return bytes.HasPrefix(m.Data, []byte(`{"probe":`)) }

func withoutProbes(msgs []*Received) []*Received {
	return slices.DeleteFunc(slices.Clone(msgs), isProbe)
}

func testDelivers(t *testing.T, newCluster NewCluster) {
	n := start(t, newCluster, 2)
	n[0].Subscribe("r")
	AwaitSubscribed(t, n[1], n[0].rec, "r")
	publish(t, n[1], &primus.Message{Rooms: []string{"r"}, Data: []byte(`{"hello":"world"}`)})
	n[0].rec.WaitFor(t, "the message", hasData(`{"hello":"world"}`))
}

func testFieldsSurvive(t *testing.T, newCluster NewCluster, limits Limits) {
	n := start(t, newCluster, 2)
	n[0].Subscribe("a")
	AwaitSubscribed(t, n[1], n[0].rec, "a")
	data := "{\"s\":\"caf\u00e9 \u2028 \\\"q\\\" \\u0000\",\"n\":[1,2.5,null,true]}"
	publish(t, n[1], &primus.Message{ID: "m1", Rooms: []string{"a"}, Except: []string{"x1", "x2"}, Data: []byte(data)})
	msgs := n[0].rec.WaitFor(t, "the message", hasData(data))
	for _, m := range msgs {
		if string(m.Data) != data {
			continue
		}
		if !slices.Contains(m.Rooms, "a") {
			t.Errorf("Rooms = %v, want to contain a", m.Rooms)
		}
		switch {
		case limits.NoExcept && len(m.Except) != 0:
			t.Errorf("Except = %v, want none (NoExcept)", m.Except)
		case !limits.NoExcept && !slices.Equal(m.Except, []string{"x1", "x2"}):
			t.Errorf("Except = %v, want [x1 x2]", m.Except)
		}
	}
}

func testNoEcho(t *testing.T, newCluster NewCluster) {
	n := start(t, newCluster, 2)
	n[0].Subscribe("r")
	n[1].Subscribe("r")
	AwaitSubscribed(t, n[1], n[0].rec, "r")
	AwaitSubscribed(t, n[0], n[1].rec, "r")
	publish(t, n[1], &primus.Message{Rooms: []string{"r"}, Data: []byte(`"own"`)})
	n[0].rec.WaitFor(t, "the message on the other node", hasData(`"own"`))
	// A marker published by node 0 after node 0 saw "own" reaches node 1
	// after "own" would have: when it arrives, the echo would be there.
	publish(t, n[0], &primus.Message{Rooms: []string{"r"}, Data: []byte(`"marker"`)})
	msgs := n[1].rec.WaitFor(t, "the marker", hasData(`"marker"`))
	if hasData(`"own"`)(msgs) {
		t.Fatal("the origin node received its own publication")
	}
	if hasData(`"marker"`)(n[0].rec.Messages()) {
		t.Fatal("the origin node received its own marker")
	}
}

func testOnlyHostingNodes(t *testing.T, newCluster NewCluster) {
	n := start(t, newCluster, 3)
	n[0].Subscribe("r")
	n[2].Subscribe("other")
	AwaitSubscribed(t, n[1], n[0].rec, "r")
	AwaitSubscribed(t, n[1], n[2].rec, "other")
	publish(t, n[1], &primus.Message{Rooms: []string{"r"}, Data: []byte(`"for r"`)})
	publish(t, n[1], &primus.Message{Rooms: []string{"other"}, Data: []byte(`"for other"`)})
	n[0].rec.WaitFor(t, "the message for r", hasData(`"for r"`))
	// Node 2 hears "other" after "r" was published (one publisher, and the
	// broker must not reorder one node's publications to different rooms
	// beyond the moment they reach the backend).
	msgs := n[2].rec.WaitFor(t, "the message for other", hasData(`"for other"`))
	if hasData(`"for r"`)(msgs) {
		t.Fatal("a node that does not host room r received its message")
	}
}

// recipients applies the server's delivery rule to the copies of one
// message a node received: a copy reaches the members of its Rooms that are
// neither in a Skip room nor excepted.
func recipients(copies []*Received, members map[string][]string) map[string]int {
	got := map[string]int{}
	inAny := func(spark string, rooms []string) bool {
		for _, r := range rooms {
			if slices.Contains(members[r], spark) {
				return true
			}
		}
		return false
	}
	for _, c := range copies {
		seen := map[string]bool{}
		for _, r := range c.Rooms {
			for _, s := range members[r] {
				if seen[s] || inAny(s, c.Skip) || slices.Contains(c.Except, s) {
					continue
				}
				seen[s] = true
				got[s]++
			}
		}
	}
	return got
}

func testMultiRoomExactlyOnce(t *testing.T, newCluster NewCluster, limits Limits) {
	n := start(t, newCluster, 2)
	for _, r := range []string{"r1", "r2", "r3"} {
		n[0].Subscribe(r)
		AwaitSubscribed(t, n[1], n[0].rec, r)
	}
	// Node 0 hosts: s1 in r1, s2 in r2, s12 in r1 and r2, s123 in all, x (excepted) in r3.
	members := map[string][]string{
		"r1": {"s1", "s12", "s123"},
		"r2": {"s2", "s12", "s123"},
		"r3": {"s123", "x"},
	}
	publish(t, n[1], &primus.Message{ID: "multi", Rooms: []string{"r1", "r2", "r3", "r4"}, Except: []string{"x"}, Data: []byte(`"multi"`)})
	want := map[string]int{"s1": 1, "s2": 1, "s12": 1, "s123": 1, "x": 0}
	if limits.PerRoomCopies {
		want["s12"], want["s123"] = 2, 3
	}
	if limits.NoExcept {
		want["x"] = 1
	}
	served := 0
	for _, c := range want {
		if c > 0 {
			served++
		}
	}
	var got map[string]int
	n[0].rec.WaitFor(t, "every member served", func(msgs []*Received) bool {
		var copies []*Received
		for _, m := range msgs {
			if string(m.Data) == `"multi"` {
				copies = append(copies, m)
			}
		}
		got = recipients(copies, members)
		return len(got) == served
	})
	// Give straggling copies the time a marker takes to cross.
	publish(t, n[1], &primus.Message{Rooms: []string{"r3"}, Data: []byte(`"after"`)})
	publish(t, n[1], &primus.Message{Rooms: []string{"r1"}, Data: []byte(`"after1"`)})
	publish(t, n[1], &primus.Message{Rooms: []string{"r2"}, Data: []byte(`"after2"`)})
	msgs := n[0].rec.WaitFor(t, "markers", func(m []*Received) bool {
		return hasData(`"after"`)(m) && hasData(`"after1"`)(m) && hasData(`"after2"`)(m)
	})
	var copies []*Received
	for _, m := range msgs {
		if string(m.Data) == `"multi"` {
			copies = append(copies, m)
		}
	}
	got = recipients(copies, members)
	for s, c := range want {
		if got[s] != c {
			t.Errorf("spark %s would receive %d copies, want %d (copies: %s)", s, got[s], c, describe(copies))
		}
	}
}

func testPerRoomOrder(t *testing.T, newCluster NewCluster) {
	n := start(t, newCluster, 2)
	n[0].Subscribe("ordered")
	AwaitSubscribed(t, n[1], n[0].rec, "ordered")
	const count = 500
	for i := range count {
		publish(t, n[1], &primus.Message{Rooms: []string{"ordered"}, Data: fmt.Appendf(nil, "%d", i)})
	}
	msgs := n[0].rec.WaitFor(t, "all messages", func(m []*Received) bool { return len(withoutProbes(m)) >= count })
	msgs = withoutProbes(msgs)
	if len(msgs) != count {
		t.Fatalf("received %d messages, want %d", len(msgs), count)
	}
	for i, m := range msgs {
		if want := fmt.Sprint(i); string(m.Data) != want {
			t.Fatalf("message %d = %s, want %s", i, m.Data, want)
		}
	}
}

func testResubscribe(t *testing.T, newCluster NewCluster) {
	n := start(t, newCluster, 2)
	n[0].Subscribe("r")
	AwaitSubscribed(t, n[1], n[0].rec, "r")
	n[0].Unsubscribe("r")
	n[0].Subscribe("r")
	n[0].Unsubscribe("r")
	n[0].Subscribe("r")
	AwaitSubscribed(t, n[1], n[0].rec, "r")
	publish(t, n[1], &primus.Message{Rooms: []string{"r"}, Data: []byte(`"back"`)})
	n[0].rec.WaitFor(t, "the message after resubscribing", hasData(`"back"`))
}

func testConcurrentPublishers(t *testing.T, newCluster NewCluster) {
	n := start(t, newCluster, 3)
	n[0].Subscribe("c")
	AwaitSubscribed(t, n[1], n[0].rec, "c")
	AwaitSubscribed(t, n[2], n[0].rec, "c")
	const per = 200
	var wg sync.WaitGroup
	for p := 1; p <= 2; p++ {
		wg.Go(func() {
			for i := range per {
				publish(t, n[p], &primus.Message{Rooms: []string{"c"}, Data: fmt.Appendf(nil, `{"p":%d,"i":%d}`, p, i)})
			}
		})
	}
	wg.Wait()
	msgs := n[0].rec.WaitFor(t, "all messages", func(m []*Received) bool { return len(withoutProbes(m)) >= 2*per })
	msgs = withoutProbes(msgs)
	if len(msgs) != 2*per {
		t.Fatalf("received %d messages, want %d", len(msgs), 2*per)
	}
	next := map[byte]int{}
	for _, m := range msgs {
		var p byte = m.Data[5]
		want := fmt.Sprintf(`{"p":%c,"i":%d}`, p, next[p])
		if string(m.Data) != want {
			t.Fatalf("got %s, want %s (per-publisher order)", m.Data, want)
		}
		next[p]++
	}
}

func testLargeMessage(t *testing.T, newCluster NewCluster) {
	n := start(t, newCluster, 2)
	n[0].Subscribe("big")
	AwaitSubscribed(t, n[1], n[0].rec, "big")
	data := `"` + strings.Repeat("x", 1<<20) + `"`
	publish(t, n[1], &primus.Message{Rooms: []string{"big"}, Data: []byte(data)})
	n[0].rec.WaitFor(t, "the 1 MiB message", hasData(data))
}

func testClose(t *testing.T, newCluster NewCluster) {
	n := start(t, newCluster, 2)
	n[0].Subscribe("r")
	AwaitSubscribed(t, n[1], n[0].rec, "r")
	if err := n[0].Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	before := len(n[0].rec.Messages())
	publish(t, n[1], &primus.Message{Rooms: []string{"r"}, Data: []byte(`"after close"`)})
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	if err := n[0].Publish(ctx, &primus.Message{Rooms: []string{"r"}, Data: []byte(`1`)}); err == nil {
		t.Error("Publish after Close succeeded, want an error")
	}
	// Node 1 publishes a marker to a room it hosts on a third party? There is
	// none: Close promises no handler call starts after it returns, so any
	// message here would be a violation whenever it arrived.
	if got := len(n[0].rec.Messages()); got != before {
		t.Errorf("closed node received %d messages after Close", got-before)
	}
	if err := n[0].Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// testSubscribeDuringDelivery: the server calls Subscribe and Unsubscribe
// while holding a room index lock, and its handler takes room index locks.
// A broker whose Subscribe or Unsubscribe waits for a handler call in
// flight therefore deadlocks the server (MemoryBroker once did).
func testSubscribeDuringDelivery(t *testing.T, newCluster NewCluster) {
	brokers := newCluster(t, 2)
	if len(brokers) != 2 {
		t.Fatalf("NewCluster returned %d brokers, want 2", len(brokers))
	}
	rec0, rec1 := NewRecorder(), NewRecorder()
	entered := make(chan struct{})
	release := make(chan struct{})
	var enterOnce, releaseOnce sync.Once
	blocking := primus.BrokerHandlerFunc(func(m *primus.Message, skip []string) {
		if string(m.Data) == `"block"` {
			enterOnce.Do(func() { close(entered) })
			<-release
		}
		rec0.HandleMessage(m, skip)
	})
	for i, h := range []primus.BrokerHandler{blocking, rec1} {
		if err := brokers[i].Start(h); err != nil {
			t.Fatalf("Start: %v", err)
		}
		t.Cleanup(func() { _ = brokers[i].Close() })
	}
	t.Cleanup(func() { releaseOnce.Do(func() { close(release) }) }) // runs before the Closes
	brokers[0].Subscribe("r")
	AwaitSubscribed(t, brokers[1], rec0, "r")

	published := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), Timeout)
		defer cancel()
		published <- brokers[1].Publish(ctx, &primus.Message{Rooms: []string{"r"}, Data: []byte(`"block"`)})
	}()
	select {
	case <-entered:
	case <-time.After(Timeout):
		t.Fatal("the handler was never called")
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		brokers[0].Subscribe("other")
		brokers[0].Unsubscribe("other")
		brokers[0].Subscribe("r2")
	}()
	select {
	case <-done:
	case <-time.After(Timeout):
		t.Fatal("Subscribe/Unsubscribe blocked while a handler call was in flight")
	}
	releaseOnce.Do(func() { close(release) })
	if err := <-published; err != nil {
		t.Fatalf("Publish: %v", err)
	}
	rec0.WaitFor(t, "the blocked message", hasData(`"block"`))
	AwaitSubscribed(t, brokers[1], rec0, "r2")
}
