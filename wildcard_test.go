package primus_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/primusgo/primus"
)

func TestWildcardRooms(t *testing.T) {
	ts := startServer(t, primus.Config{Wildcards: true})
	cs, ss := connectN(t, ts, 3)
	must(t, ss[0].Join("user:*"))
	must(t, ss[1].Join("user:42"))
	must(t, ss[2].Join("other", "*:42"))
	for _, step := range []struct {
		room primus.Room
		data string
		to   []int
	}{
		{ts.Room("user:42"), "a", []int{0, 1, 2}}, // "*:42" matches too
		{ts.Room("user:7"), "b", []int{0}},
		{ts.Room("user:42", "user:7"), "c", []int{0, 1, 2}}, // each once
		{ts.Room("user:42").Except(ss[0].ID()), "d", []int{1, 2}},
		{ts.Room("other"), "e", []int{2}},
		{ts.Room("user:*"), "f", []int{0}}, // the pattern room itself
		{ts.Room("users:42"), "g", []int{2}},
	} {
		must(t, step.room.Write(step.data))
		for _, i := range step.to {
			cs[i].Expect(t, `"`+step.data+`"`)
		}
	}
	for _, c := range cs { // nothing else arrived: the marker is next
		must(t, ts.Write("marker"))
		c.Expect(t, `"marker"`)
	}
	// Clients lists the exact room, as primus-rooms does.
	if got := ts.Clients("user:42"); len(got) != 1 || got[0] != ss[1].ID() {
		t.Errorf("Clients(user:42) = %v", got)
	}
}

func TestWildcardsOffByDefault(t *testing.T) {
	ts := startServer(t, primus.Config{})
	cs, ss := connectN(t, ts, 1)
	must(t, ss[0].Join("user:*"))
	must(t, ts.Room("user:42").Write("not for the pattern"))
	must(t, ts.Room("user:*").Write("for the room named user:*"))
	cs[0].Expect(t, `"for the room named user:*"`)
}

// A pattern joined on one node receives writes made on another; a node
// without members of any matching room receives nothing.
func TestWildcardsAcrossNodes(t *testing.T) {
	hub := primus.NewMemoryHub()
	var nodes []*testServer
	for i := range 3 {
		nodes = append(nodes, startServer(t, primus.Config{Broker: hub.NewBroker(), NodeID: fmt.Sprint("n", i), Wildcards: true}))
	}
	ca, sa := connectN(t, nodes[0], 1)
	must(t, sa[0].Join("news:*"))
	must(t, nodes[1].Room("news:sport").Write("one"))
	must(t, nodes[1].Room("news:sport", "news:art").Write("two"))
	must(t, nodes[1].Room("weather").Write("not for news"))
	ca[0].Expect(t, `"one"`)
	ca[0].Expect(t, `"two"`)
	must(t, nodes[0].Write("marker"))
	ca[0].Expect(t, `"marker"`)
	if n := nodes[2].Stats().RemoteMessages; n != 0 {
		t.Errorf("a node without matching members received %d messages", n)
	}
}

func TestMaxPatterns(t *testing.T) {
	ts := startServer(t, primus.Config{Wildcards: true, MaxPatterns: 2})
	_, ss := connectN(t, ts, 2)
	must(t, ss[0].Join("a*", "b*"))
	must(t, ss[1].Join("a*", "plain")) // already held: no new pattern
	if err := ss[1].Join("c*"); !errors.Is(err, primus.ErrTooManyRooms) {
		t.Fatalf("a third pattern: %v, want ErrTooManyRooms", err)
	}
}

// notPatterns is a Broker that cannot carry wildcard rooms.
type notPatterns struct{ primus.Broker }

func TestWildcardsNeedAPatternBroker(t *testing.T) {
	if _, err := primus.New(primus.Config{Wildcards: true, Broker: notPatterns{primus.NewMemoryBroker()}}); err == nil {
		t.Fatal("New accepted a broker without patterns")
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
