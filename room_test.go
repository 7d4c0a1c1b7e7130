package primus_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/primusgo/primus"
	"github.com/primusgo/primus/internal/testkit"
)

// connectN dials n clients and returns them with their sparks, in order.
func connectN(t *testing.T, ts *testServer, n int) ([]*testkit.Client, []*primus.Spark) {
	t.Helper()
	cs := make([]*testkit.Client, n)
	ss := make([]*primus.Spark, n)
	for i := range n {
		cs[i] = ts.dial(t, testkit.DialOptions{})
		ss[i] = ts.nextSpark(t)
	}
	return cs, ss
}

func TestJoinLeaveEvents(t *testing.T) {
	ts := startServer(t, primus.Config{})
	_, ss := connectN(t, ts, 1)
	s := ss[0]
	if err := s.Join("b", "a", "a"); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"b", "a"} {
		if e := ts.nextJoin(t); e.spark != s || e.room != want {
			t.Fatalf("OnJoin %q, want %q", e.room, want)
		}
	}
	// Joining again is a no-op: the next event is for "c".
	_ = s.Join("a")
	_ = s.Join("c")
	if e := ts.nextJoin(t); e.room != "c" {
		t.Fatalf("OnJoin %q, want c (re-join must not emit)", e.room)
	}
	if got := s.Rooms(); !slices.Equal(got, []string{"a", "b", "c"}) {
		t.Fatalf("Rooms() = %v", got)
	}
	if err := s.Join("d", ""); !errors.Is(err, primus.ErrInvalidRoom) {
		t.Fatalf("Join(\"\") = %v, want ErrInvalidRoom", err)
	}
	if slices.Contains(s.Rooms(), "d") {
		t.Fatal("a failed Join joined some rooms")
	}
	s.Leave("a", "not-a-member")
	if e := ts.nextLeave(t); e.room != "a" {
		t.Fatalf("OnLeave %q, want a", e.room)
	}
	s.LeaveAll()
	for _, want := range []string{"b", "c"} {
		if e := ts.nextLeave(t); e.spark != s || e.room != want {
			t.Fatalf("OnLeave %q, want %q", e.room, want)
		}
	}
	if ts.leaves.Len() != 0 || len(s.Rooms()) != 0 || ts.Stats().Rooms != 0 {
		t.Fatalf("after LeaveAll: %d extra leaves, rooms %v, %d server rooms", ts.leaves.Len(), s.Rooms(), ts.Stats().Rooms)
	}
}

func TestRoomWriteExactlyOnce(t *testing.T) {
	ts := startServer(t, primus.Config{})
	cs, ss := connectN(t, ts, 4)
	_ = ss[0].Join("a", "b")
	_ = ss[1].Join("a")
	_ = ss[2].Join("b", "c")
	// ss[3] is in no room.
	if err := ts.Room("a", "b", "a").Write(map[string]int{"n": 1}); err != nil {
		t.Fatal(err)
	}
	if err := ts.Room("b").Write("only b"); err != nil {
		t.Fatal(err)
	}
	if err := ts.Write("marker"); err != nil {
		t.Fatal(err)
	}
	cs[0].Expect(t, `{"n":1}`)
	cs[0].Expect(t, `"only b"`)
	cs[0].Expect(t, `"marker"`)
	cs[1].Expect(t, `{"n":1}`)
	cs[1].Expect(t, `"marker"`)
	cs[2].Expect(t, `{"n":1}`)
	cs[2].Expect(t, `"only b"`)
	cs[2].Expect(t, `"marker"`)
	cs[3].Expect(t, `"marker"`)
	if n := ts.Stats().Deliveries; n != 5 {
		t.Errorf("Deliveries = %d, want 5", n)
	}
}

func TestRoomExcept(t *testing.T) {
	ts := startServer(t, primus.Config{})
	cs, ss := connectN(t, ts, 3)
	for _, s := range ss {
		_ = s.Join("r")
	}
	base := ts.Room("r")
	if err := base.Except(ss[0].ID()).Write("not 0"); err != nil {
		t.Fatal(err)
	}
	// Except returns a copy: base still reaches everyone, and two Excepts
	// derived from one base do not see each other's ids.
	e1 := base.Except(ss[1].ID())
	e2 := base.Except(ss[2].ID())
	_ = e1.Write("not 1")
	_ = e2.Write("not 2")
	_ = base.Write("all")
	_ = base.Except(ss[0].ID(), ss[1].ID()).Except(ss[2].ID()).Write("nobody")
	// Spark.Room does not exclude the spark itself.
	_ = ss[0].Room("r").Write("from 0")
	_ = ss[0].Room("r").Except(ss[0].ID()).Write("from 0, not to 0")
	_ = ts.Write("marker")
	cs[0].Expect(t, `"not 1"`)
	cs[0].Expect(t, `"not 2"`)
	cs[0].Expect(t, `"all"`)
	cs[0].Expect(t, `"from 0"`)
	cs[0].Expect(t, `"marker"`)
	cs[1].Expect(t, `"not 0"`)
	cs[1].Expect(t, `"not 2"`)
	cs[1].Expect(t, `"all"`)
	cs[1].Expect(t, `"from 0"`)
	cs[1].Expect(t, `"from 0, not to 0"`)
	cs[1].Expect(t, `"marker"`)
	cs[2].Expect(t, `"not 0"`)
	cs[2].Expect(t, `"not 1"`)
	cs[2].Expect(t, `"all"`)
	cs[2].Expect(t, `"from 0"`)
	cs[2].Expect(t, `"from 0, not to 0"`)
	cs[2].Expect(t, `"marker"`)
	if got := base.Except(ss[1].ID()).Clients(); len(got) != 2 || slices.Contains(got, ss[1].ID()) {
		t.Errorf("Except(1).Clients() = %v", got)
	}
}

func TestRoomExceptMany(t *testing.T) {
	// More than a handful of excepted ids takes the set path.
	ts := startServer(t, primus.Config{})
	cs, ss := connectN(t, ts, 2)
	_ = ss[0].Join("r")
	_ = ss[1].Join("r")
	except := []string{ss[0].ID()}
	for i := range 20 {
		except = append(except, fmt.Sprintf("other-%d", i))
	}
	_ = ts.Room("r").Except(except...).Write("x")
	_ = ts.Write("marker")
	cs[0].Expect(t, `"marker"`)
	cs[1].Expect(t, `"x"`)
}

func TestRoomQueries(t *testing.T) {
	ts := startServer(t, primus.Config{})
	_, ss := connectN(t, ts, 3)
	_ = ss[0].Join("a", "b")
	_ = ss[1].Join("a")
	_ = ss[2].Join("c")
	sorted := func(ids []string) []string { slices.Sort(ids); return ids }
	want := sorted([]string{ss[0].ID(), ss[1].ID()})
	if got := sorted(ts.Clients("a")); !slices.Equal(got, want) {
		t.Errorf("Clients(a) = %v, want %v", got, want)
	}
	if got := ts.Clients("nobody"); len(got) != 0 {
		t.Errorf("Clients(nobody) = %v", got)
	}
	want = sorted([]string{ss[0].ID(), ss[1].ID(), ss[2].ID()})
	if got := sorted(ts.Room("a", "b", "c").Clients()); !slices.Equal(got, want) {
		t.Errorf("Room(a,b,c).Clients() = %v, want each once %v", got, want)
	}
	if got := ts.Rooms(); !slices.Equal(got, []string{"a", "b", "c"}) {
		t.Errorf("Rooms() = %v", got)
	}
	if got := ts.RoomSizes(); len(got) != 3 || got["a"] != 2 || got["b"] != 1 || got["c"] != 1 {
		t.Errorf("RoomSizes() = %v", got)
	}
	if ts.IsRoomEmpty("a") || !ts.IsRoomEmpty("nobody") {
		t.Error("IsRoomEmpty wrong")
	}
	if n := ts.Stats().Rooms; n != 3 {
		t.Errorf("Stats().Rooms = %d", n)
	}

	ts.Empty("a", "c", "nobody")
	left := map[string]int{}
	for range 3 {
		left[ts.nextLeave(t).room]++
	}
	if left["a"] != 2 || left["c"] != 1 {
		t.Errorf("OnLeave by Empty: %v", left)
	}
	if !ts.IsRoomEmpty("a") || !ts.IsRoomEmpty("c") || ts.IsRoomEmpty("b") {
		t.Error("Empty emptied the wrong rooms")
	}
	if got := ss[0].Rooms(); !slices.Equal(got, []string{"b"}) {
		t.Errorf("spark rooms after Empty = %v", got)
	}
	if got := ts.Rooms(); !slices.Equal(got, []string{"b"}) {
		t.Errorf("Rooms() after Empty = %v", got)
	}
}

func TestRoomWriteErrors(t *testing.T) {
	ts := startServer(t, primus.Config{})
	if err := ts.Room().Write("x"); !errors.Is(err, primus.ErrNoRooms) {
		t.Errorf("Room().Write = %v, want ErrNoRooms", err)
	}
	if err := ts.Room("").Write("x"); !errors.Is(err, primus.ErrNoRooms) {
		t.Errorf("Room(\"\").Write = %v, want ErrNoRooms", err)
	}
	if err := ts.Room("a").Write(func() {}); err == nil {
		t.Error("Room.Write(func) succeeded")
	}
	// Writing to a room nobody is in is fine and does not create it.
	if err := ts.Room("nobody").Write("x"); err != nil {
		t.Errorf("write to an empty room: %v", err)
	}
	if ts.Stats().Rooms != 0 {
		t.Error("a write created a room")
	}
}

func TestDisconnectLeavesAllRooms(t *testing.T) {
	ts := startServer(t, primus.Config{})
	cs, ss := connectN(t, ts, 2)
	rooms := []string{"r1", "r2", "r3", "r4", "r5"}
	_ = ss[0].Join(rooms...)
	_ = ss[1].Join("r3")
	for range 6 {
		ts.nextJoin(t)
	}
	cs[0].Close()
	left := map[string]bool{}
	for range rooms {
		e := ts.nextLeave(t)
		if e.spark != ss[0] || left[e.room] {
			t.Fatalf("unexpected OnLeave %q", e.room)
		}
		left[e.room] = true
	}
	if got := ts.nextDisconnection(t); got != ss[0] {
		t.Fatal("wrong spark disconnected")
	}
	if ts.leaves.Len() != 0 {
		t.Fatal("extra OnLeave events")
	}
	if got := ts.Rooms(); !slices.Equal(got, []string{"r3"}) {
		t.Fatalf("Rooms() = %v, want [r3]", got)
	}
	if got := ts.Clients("r3"); !slices.Equal(got, []string{ss[1].ID()}) {
		t.Fatalf("Clients(r3) = %v", got)
	}
	if len(ss[0].Rooms()) != 0 {
		t.Fatalf("closed spark still in %v", ss[0].Rooms())
	}
	cs[1].Close()
	ts.nextLeave(t)
	ts.nextDisconnection(t)
	if n := ts.Stats().Rooms; n != 0 {
		t.Fatalf("Stats().Rooms = %d after everyone left", n)
	}
}

func TestJoinClosedSpark(t *testing.T) {
	ts := startServer(t, primus.Config{})
	cs, ss := connectN(t, ts, 2)
	// Closed.
	cs[0].Close()
	ts.nextDisconnection(t)
	if err := ss[0].Join("a"); !errors.Is(err, primus.ErrSparkClosed) {
		t.Fatalf("Join on a closed spark = %v, want ErrSparkClosed", err)
	}
	// Closing (End called, handshake not finished yet).
	ss[1].End()
	if err := ss[1].Join("a"); !errors.Is(err, primus.ErrSparkClosed) {
		t.Fatalf("Join on an ending spark = %v, want ErrSparkClosed", err)
	}
	ts.nextDisconnection(t)
	if n := ts.Stats().Rooms; n != 0 || ts.joins.Len() != 0 {
		t.Fatalf("closed sparks joined rooms: %d rooms, %d joins", n, ts.joins.Len())
	}
}

func TestJoinInOnDisconnectionAndOnEnd(t *testing.T) {
	errs := make(chan error, 2)
	ts := startServer(t, primus.Config{
		OnConnection: func(s *primus.Spark) {
			s.OnEnd(func(s *primus.Spark, _ primus.CloseReason) { errs <- s.Join("late") })
		},
		OnDisconnection: func(s *primus.Spark) { errs <- s.Join("later") },
	})
	c := ts.dial(t, testkit.DialOptions{})
	ts.nextSpark(t)
	c.Close()
	ts.nextDisconnection(t)
	for range 2 {
		if err := <-errs; !errors.Is(err, primus.ErrSparkClosed) {
			t.Fatalf("Join from a close callback = %v", err)
		}
	}
	if ts.Stats().Rooms != 0 {
		t.Fatal("room leaked")
	}
}

// Many sparks joining and leaving many rooms concurrently, with room
// writes going on: at the end no room is left behind.
func TestRoomChurn(t *testing.T) {
	const sparks, rooms, rounds = 200, 50, 20
	ts := startServer(t, primus.Config{})
	cs, ss := connectN(t, ts, sparks)
	name := func(i int) string { return fmt.Sprintf("room-%d", i) }
	var wg sync.WaitGroup
	for i, s := range ss {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(i), 1))
			for range rounds {
				a, b := name(r.IntN(rooms)), name(r.IntN(rooms))
				_ = s.Join(a, b)
				_ = ts.Room(a).Write(i)
				s.Leave(a)
				_ = s.Join(name(r.IntN(rooms)))
				if r.IntN(4) == 0 {
					s.LeaveAll()
				} else {
					s.Leave(b)
				}
			}
		})
	}
	wg.Wait()
	// Every spark's own view agrees with the index.
	total := 0
	for _, s := range ss {
		total += len(s.Rooms())
	}
	sum := 0
	for _, n := range ts.RoomSizes() {
		sum += n
	}
	if total != sum {
		t.Fatalf("sparks are in %d rooms, the index holds %d memberships", total, sum)
	}
	if ts.joins.Len()-ts.leaves.Len() != total {
		t.Fatalf("%d joins - %d leaves != %d memberships", ts.joins.Len(), ts.leaves.Len(), total)
	}
	// Half leave explicitly, half disconnect.
	for i, s := range ss {
		if i%2 == 0 {
			s.LeaveAll()
		}
	}
	for i, c := range cs {
		if i%2 == 1 {
			c.Close()
			ts.nextDisconnection(t)
		}
	}
	if n := ts.Stats().Rooms; n != 0 {
		t.Fatalf("Stats().Rooms = %d after churn, want 0 (%v)", n, ts.RoomSizes())
	}
	if ts.joins.Len() != ts.leaves.Len() {
		t.Fatalf("%d joins but %d leaves", ts.joins.Len(), ts.leaves.Len())
	}
}

// A spark is in at most MaxRoomsPerSpark rooms; a Join over the limit joins
// none of its rooms. Duplicates and rooms already joined do not count twice.
func TestJoinRoomLimit(t *testing.T) {
	ts := startServer(t, primus.Config{MaxRoomsPerSpark: 3})
	_, ss := connectN(t, ts, 1)
	s := ss[0]
	if err := s.Join("a", "b", "b", "a"); err != nil {
		t.Fatal(err)
	}
	if err := s.Join("a", "c"); err != nil {
		t.Fatalf("third room: %v", err)
	}
	if err := s.Join("a", "d"); !errors.Is(err, primus.ErrTooManyRooms) {
		t.Fatalf("fourth room: %v, want ErrTooManyRooms", err)
	}
	if err := s.Join("x", "y", "z", "w"); !errors.Is(err, primus.ErrTooManyRooms) {
		t.Fatalf("four new rooms: %v, want ErrTooManyRooms", err)
	}
	if got := s.Rooms(); !slices.Equal(got, []string{"a", "b", "c"}) {
		t.Fatalf("Rooms() = %v", got)
	}
	s.Leave("c")
	if err := s.Join("d"); err != nil {
		t.Fatalf("after a leave: %v", err)
	}

	// The default is 1 000 rooms; a negative limit is none.
	def := startServer(t, primus.Config{})
	_, ss = connectN(t, def, 1)
	rooms := make([]string, 1001)
	for i := range rooms {
		rooms[i] = fmt.Sprintf("room-%d", i)
	}
	if err := ss[0].Join(rooms...); !errors.Is(err, primus.ErrTooManyRooms) || len(ss[0].Rooms()) != 0 {
		t.Fatalf("1 001 rooms: %v, %d joined", err, len(ss[0].Rooms()))
	}
	if err := ss[0].Join(rooms[:1000]...); err != nil {
		t.Fatalf("1 000 rooms: %v", err)
	}
	open := startServer(t, primus.Config{MaxRoomsPerSpark: -1})
	_, ss = connectN(t, open, 1)
	if err := ss[0].Join(rooms...); err != nil {
		t.Fatalf("no limit: %v", err)
	}
}

// Room names are non-empty UTF-8 of at most MaxRoomNameLength bytes.
func TestRoomNames(t *testing.T) {
	ts := startServer(t, primus.Config{})
	_, ss := connectN(t, ts, 1)
	long := strings.Repeat("é", 128) // 256 bytes
	for name, want := range map[string]error{
		"":                         primus.ErrInvalidRoom,
		long:                       nil,
		long + "x":                 primus.ErrInvalidRoom,
		"bad\xffutf8":              primus.ErrInvalidRoom,
		"user:*":                   nil,
		strings.Repeat("x", 1<<20): primus.ErrInvalidRoom,
	} {
		if err := ss[0].Join(name); !errors.Is(err, want) || (want == nil) != (err == nil) {
			t.Errorf("Join(%.20q… %d bytes) = %v, want %v", name, len(name), err, want)
		}
		if err := ts.ValidateRoom(name); !errors.Is(err, want) || (want == nil) != (err == nil) {
			t.Errorf("ValidateRoom(%.20q… %d bytes) = %v, want %v", name, len(name), err, want)
		}
	}
	if err := ts.ValidateRoom(long + "x"); err == nil || !strings.Contains(err.Error(), "257 bytes, over the limit of 256") {
		t.Errorf("error text: %v", err)
	}
	open := startServer(t, primus.Config{MaxRoomNameLength: -1})
	if err := open.ValidateRoom(strings.Repeat("x", 1<<20)); err != nil {
		t.Errorf("no limit: %v", err)
	}
}

// A message from another node (or an external publisher) whose data is a
// "primus::" string is dropped and counted, never delivered.
func TestRemoteControlStringDropped(t *testing.T) {
	hub := primus.NewMemoryHub()
	ts := startServer(t, primus.Config{Broker: hub.NewBroker()})
	cs, ss := connectN(t, ts, 1)
	_ = ss[0].Join("r")
	ext := hub.NewBroker()
	if err := ext.Start(primus.BrokerHandlerFunc(func(*primus.Message, []string) {})); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ext.Close() })
	for _, data := range []string{`"primus::server::close"`, `"\u0070rimus::id::x"`, `"fine"`} {
		if err := ext.Publish(t.Context(), &primus.Message{Origin: "ext", Rooms: []string{"r"}, Data: []byte(data)}); err != nil {
			t.Fatal(err)
		}
	}
	cs[0].Expect(t, `"fine"`)
	if n := ts.Stats().ReservedRefused; n != 2 {
		t.Fatalf("ReservedRefused = %d, want 2", n)
	}
	if err := ts.Room("r").Write("primus::server::close"); !errors.Is(err, primus.ErrReservedData) {
		t.Fatalf("Room.Write: %v, want ErrReservedData", err)
	}
	if err := ts.Write(json.RawMessage(`"primus::x"`)); !errors.Is(err, primus.ErrReservedData) {
		t.Fatalf("Server.Write: %v, want ErrReservedData", err)
	}
}
