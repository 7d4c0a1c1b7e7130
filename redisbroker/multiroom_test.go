package redisbroker

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/primusgo/primus"
	"github.com/primusgo/primus/brokertest"
	"github.com/primusgo/primus/internal/redistest"
)

// summaryRecorder records a summary of the handler calls that carry data
// (rooms and except, not the data nor Skip: on a per-room path those would
// add up to gigabytes) and passes every other call to rest.
type summaryRecorder struct {
	data   string
	rest   *brokertest.Recorder
	mu     sync.Mutex
	calls  []call
	notify chan struct{}
}

type call struct {
	rooms, except []string
	skip          int
}

func newSummaryRecorder(data string) *summaryRecorder {
	return &summaryRecorder{data: data, rest: brokertest.NewRecorder(), notify: make(chan struct{}, 1)}
}

func (r *summaryRecorder) HandleMessage(m *primus.Message, skip []string) {
	if string(m.Data) != r.data {
		r.rest.HandleMessage(m, skip)
		return
	}
	r.mu.Lock()
	r.calls = append(r.calls, call{rooms: slices.Clone(m.Rooms), except: slices.Clone(m.Except), skip: len(skip)})
	r.mu.Unlock()
	select {
	case r.notify <- struct{}{}:
	default:
	}
}

func (r *summaryRecorder) Calls() []call {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.calls)
}

// waitRooms waits until the calls cover n rooms in all, or until limit.
func (r *summaryRecorder) waitRooms(n int, limit time.Duration) []call {
	deadline := time.NewTimer(limit)
	defer deadline.Stop()
	for {
		calls := r.Calls()
		got := 0
		for _, c := range calls {
			got += len(c.rooms)
		}
		if got >= n {
			return calls
		}
		select {
		case <-r.notify:
		case <-deadline.C:
			return calls
		}
	}
}

// netBytes reads Redis's network byte counters.
func netBytes(t testing.TB, srv *redistest.Server) (in, out int64) {
	t.Helper()
	v, err := srv.Do("INFO", "stats")
	if err != nil {
		t.Fatal(err)
	}
	return infoInt(t, v, "total_net_input_bytes"), infoInt(t, v, "total_net_output_bytes")
}

func infoInt(t testing.TB, info any, field string) int64 {
	t.Helper()
	s, _ := info.(string)
	for line := range strings.SplitSeq(s, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), field+":"); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				t.Fatalf("INFO %s: %q", field, v)
			}
			return n
		}
	}
	return -1
}

func roomNames(n int) []string {
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("room-%05d", i)
	}
	return names
}

// TestMultiRoomWriteBytes is the regression test for multi-room writes
// that grew quadratically in Redis: one write of 150 KB to 10 000 rooms
// once put about 1 GB into Redis (the envelope, with every room name, on
// every room's channel) and overflowed the subscriber's Pub/Sub output
// buffer. Bytes into Redis must be of the order of data + room names.
func TestMultiRoomWriteBytes(t *testing.T) {
	const rooms = 10000
	srv := redistest.StartServer(t) // dedicated: only this test talks to it
	cfg := testConfig(srv.Addr(), Native, freshChannel())
	cfg.CommandTimeout = 5 * time.Second
	a, _ := startBroker(t, cfg)
	data := `{"blob":"` + strings.Repeat("x", 150_000) + `"}`
	rec := newSummaryRecorder(data)
	b := newBroker(t, cfg)
	if err := b.Start(rec); err != nil {
		t.Fatal(err)
	}
	names := roomNames(rooms)
	for _, r := range names {
		b.Subscribe(r)
	}
	waitStats(t, b, "all rooms subscribed", func(s Stats) bool { return s.Connected && s.SubscribedRooms == rooms })
	brokertest.AwaitSubscribed(t, a, rec.rest, names[rooms-1])

	in0, out0 := netBytes(t, srv)
	in1, out1 := netBytes(t, srv) // the cost of one INFO, subtracted below
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	err := a.Publish(ctx, &primus.Message{ID: "big", Rooms: names, Except: []string{"s1"}, Data: []byte(data)})
	cancel()
	published := time.Since(start)
	calls := rec.waitRooms(rooms, 10*time.Second)
	received := time.Since(start)
	in2, out2 := netBytes(t, srv)
	in, out := (in2-in1)-(in1-in0), (out2-out1)-(out1-out0)
	t.Logf("one %d-byte write to %d rooms: %d bytes into Redis, %d bytes out; published in %v, received in %v",
		len(data), rooms, in, out, published.Round(time.Millisecond), received.Round(time.Millisecond))
	const limit = 5 << 20
	if in > limit || out > limit {
		t.Errorf("%.1f MB into Redis, %.1f MB out, want < %d MB each", float64(in)/1e6, float64(out)/1e6, limit>>20)
	}
	if err != nil {
		t.Fatalf("Publish: %v", err)
	}

	// The server must deliver once per member: one call with every
	// hosted room, in list order, the except list, no Skip.
	if len(calls) != 1 {
		t.Fatalf("node B got the write in %d handler calls, want 1", len(calls))
	}
	if c := calls[0]; !slices.Equal(c.rooms, names) || !slices.Equal(c.except, []string{"s1"}) || c.skip != 0 {
		t.Errorf("call: %d rooms (equal to the list: %v), except %v, skip %d", len(c.rooms), slices.Equal(c.rooms, names), c.except, c.skip)
	}

	// The subscription survived: a marker still crosses, and neither the
	// broker nor Redis saw the connection go.
	brokertest.AwaitSubscribed(t, a, rec.rest, names[0])
	if s := b.Stats(); s.ConnectionLosses != 0 || s.Reconnects != 0 || s.Dropped != 0 {
		t.Errorf("node B: %+v", s)
	}
	if v, err := srv.Do("INFO", "stats"); err != nil {
		t.Fatal(err)
	} else if n := infoInt(t, v, "client_output_buffer_limit_disconnections"); n > 0 {
		t.Errorf("Redis cut %d clients over their output buffer limit", n)
	}
	log, err := os.ReadFile(filepath.Join(srv.Dir(), "redis.log"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(log), "output buffer limits") {
		t.Errorf("Redis closed a client over its output buffer limit:\n%s", log)
	}
	if calls := rec.Calls(); len(calls) != 1 {
		t.Errorf("node B got %d calls in the end", len(calls))
	}
}

func isProbe(m *brokertest.Received) bool { return strings.HasPrefix(string(m.Data), `{"probe":`) }

// TestMultiRoomOrder: a write on the multi-room channel is handed to the
// server in publication order with the single-room writes of its rooms,
// although those rooms are spread over several workers.
func TestMultiRoomOrder(t *testing.T) {
	srv := redistest.StartServer(t)
	cfg := testConfig(srv.Addr(), Native, freshChannel())
	a, _ := startBroker(t, cfg)
	cfgB := cfg
	cfgB.Workers = 4
	b, rec := startBroker(t, cfgB)
	rooms := roomNames(40)
	for _, r := range rooms {
		b.Subscribe(r)
	}
	for _, r := range rooms {
		brokertest.AwaitSubscribed(t, a, rec, r)
	}
	singles := rooms[:8]
	workers := map[int]bool{}
	for _, r := range singles {
		workers[b.queueIndex(RoomChannel(cfg.Channel, r))] = true
	}
	if len(workers) < 2 {
		t.Fatalf("the single-room writes all go to one worker: %v", workers)
	}

	const rounds = 100
	filler := strings.Repeat("x", 2000) // 40 x 2 KB: over the fan-out budget
	ctx := context.Background()
	for i := range rounds {
		big := fmt.Sprintf(`{"big":%d,"f":%q}`, i, filler)
		if err := a.Publish(ctx, &primus.Message{Rooms: rooms, Data: []byte(big)}); err != nil {
			t.Fatal(err)
		}
		for _, r := range singles {
			if err := a.Publish(ctx, &primus.Message{Rooms: []string{r}, Data: fmt.Appendf(nil, `{"single":%d}`, i)}); err != nil {
				t.Fatal(err)
			}
		}
	}
	if n := a.Stats().MultiRoomBroadcasts; n != rounds {
		t.Fatalf("MultiRoomBroadcasts = %d, want %d", n, rounds)
	}
	want := rounds * (1 + len(singles))
	msgs := rec.WaitFor(t, "every write", func(m []*brokertest.Received) bool {
		return len(slices.DeleteFunc(slices.Clone(m), isProbe)) >= want
	})
	// Per room, the writes that include it arrive as published.
	for _, r := range singles {
		var got []string
		for _, m := range msgs {
			if isProbe(m) || !slices.Contains(m.Rooms, r) {
				continue
			}
			if len(m.Skip) > 0 {
				t.Fatalf("message with Skip %v", m.Skip)
			}
			if s, ok := strings.CutPrefix(string(m.Data), `{"big":`); ok {
				got = append(got, "big "+s[:strings.IndexByte(s, ',')])
			} else {
				got = append(got, "single "+strings.TrimSuffix(strings.TrimPrefix(string(m.Data), `{"single":`), "}"))
			}
		}
		for i := range rounds {
			if len(got) < 2*i+2 || got[2*i] != fmt.Sprintf("big %d", i) || got[2*i+1] != fmt.Sprintf("single %d", i) {
				t.Fatalf("room %s: order %v", r, got[:min(len(got), 2*i+2)])
			}
		}
		if len(got) != 2*rounds {
			t.Fatalf("room %s: %d writes, want %d", r, len(got), 2*rounds)
		}
	}
	if s := b.Stats(); s.Dropped != 0 || s.DecodeErrors != 0 {
		t.Errorf("receiver: %+v", s)
	}
}

// recipients applies the server's delivery rule to the calls a node got
// for one write: a call reaches the members of its Rooms that are in no
// Skip room and not excepted.
func recipients(calls []*brokertest.Received, members map[string][]string) map[string]int {
	got := map[string]int{}
	for _, c := range calls {
		skipped := map[string]bool{}
		for _, r := range c.Skip {
			for _, s := range members[r] {
				skipped[s] = true
			}
		}
		for _, r := range c.Rooms {
			for _, s := range members[r] {
				if !skipped[s] && !slices.Contains(c.Except, s) {
					skipped[s] = true
					got[s]++
				}
			}
		}
	}
	return got
}

// TestMultiRoomExactlyOnceMixed: small multi-room writes fan out per room
// channel (Skip), large ones go once to every node; either way each member
// is served once, except lists are honoured, and a node hosting none of
// the rooms gets nothing from the first and ignores the second.
func TestMultiRoomExactlyOnceMixed(t *testing.T) {
	srv := redistest.StartServer(t)
	cfg := testConfig(srv.Addr(), Native, freshChannel())
	pub, _ := startBroker(t, cfg)
	n1, rec1 := startBroker(t, cfg)
	n2, rec2 := startBroker(t, cfg)
	for _, r := range []string{"r1", "r2", "r3"} {
		n1.Subscribe(r)
		brokertest.AwaitSubscribed(t, pub, rec1, r)
	}
	n2.Subscribe("elsewhere")
	brokertest.AwaitSubscribed(t, pub, rec2, "elsewhere")
	// Members on n1; x is excepted.
	members := map[string][]string{
		"r1": {"s1", "s12", "s123"},
		"r2": {"s2", "s12", "s123"},
		"r3": {"s123", "x"},
	}
	fillers := roomNames(2000) // hosted nowhere; 2000 x 13 KB is over the budget
	bigRooms := append(append([]string{"r3"}, fillers...), "r2", "r1")
	ctx := context.Background()
	if err := pub.Publish(ctx, &primus.Message{ID: "small", Rooms: []string{"r1", "r2", "r3", "r4"}, Except: []string{"x"}, Data: []byte(`"small"`)}); err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish(ctx, &primus.Message{ID: "big", Rooms: bigRooms, Except: []string{"x"}, Data: []byte(`"big"`)}); err != nil {
		t.Fatal(err)
	}
	if s := pub.Stats(); s.MultiRoomBroadcasts != 1 || s.Published < 2 {
		t.Fatalf("publisher: %+v", s)
	}
	// Markers on each room after both writes: when they are in, so is
	// every copy of the writes (per-room order, and the big write is
	// ordered with every room).
	for _, r := range []string{"r1", "r2", "r3"} {
		if err := pub.Publish(ctx, &primus.Message{Rooms: []string{r}, Data: fmt.Appendf(nil, `"after %s"`, r)}); err != nil {
			t.Fatal(err)
		}
	}
	msgs := rec1.WaitFor(t, "the markers", func(m []*brokertest.Received) bool {
		n := 0
		for _, m := range m {
			if strings.HasPrefix(string(m.Data), `"after `) {
				n++
			}
		}
		return n == 3
	})
	var small, big []*brokertest.Received
	for _, m := range msgs {
		switch string(m.Data) {
		case `"small"`:
			small = append(small, m)
		case `"big"`:
			big = append(big, m)
		}
	}
	want := map[string]int{"s1": 1, "s2": 1, "s12": 1, "s123": 1}
	for name, calls := range map[string][]*brokertest.Received{"small": small, "big": big} {
		if got := recipients(calls, members); !maps.Equal(got, want) {
			t.Errorf("%s write: recipients %v, want %v", name, got, want)
		}
	}
	if len(small) != 3 {
		t.Errorf("small write: %d calls, want one per hosted room", len(small))
	}
	if len(big) != 1 || !slices.Equal(big[0].Rooms, []string{"r3", "r2", "r1"}) || len(big[0].Skip) != 0 || big[0].ID != "big" {
		t.Errorf("big write: %d calls, first %+v", len(big), big[0])
	}

	// n2 hosts none of the rooms: it ignores the big write and never hears
	// the small one (it is not subscribed to those channels; the big write
	// came after it, and is ordered after it).
	waitStats(t, n2, "the big write to be ignored", func(s Stats) bool { return s.Ignored == 1 })
	for _, m := range rec2.Messages() {
		if !isProbe(m) {
			t.Errorf("n2 received %s", m.Data)
		}
	}
	if s := n1.Stats(); s.Ignored != 0 || s.DecodeErrors != 0 || s.Dropped != 0 {
		t.Errorf("n1: %+v", s)
	}
}

// TestCloseAtBarrier: Close while workers wait at a barrier for a worker
// stuck in the handler neither deadlocks nor leaks (TestMain checks
// goroutines), and the write is not delivered after Close.
func TestCloseAtBarrier(t *testing.T) {
	srv := redistest.StartServer(t)
	cfg := testConfig(srv.Addr(), Native, freshChannel())
	a, _ := startBroker(t, cfg)
	cfgB := cfg
	cfgB.Workers = 3
	b := newBroker(t, cfgB)
	rec := brokertest.NewRecorder()
	entered, release := make(chan struct{}), make(chan struct{})
	var releaseOnce sync.Once
	t.Cleanup(func() { releaseOnce.Do(func() { close(release) }) })
	if err := b.Start(primus.BrokerHandlerFunc(func(m *primus.Message, skip []string) {
		if string(m.Data) == `"block"` {
			close(entered)
			<-release
		}
		rec.HandleMessage(m, skip)
	})); err != nil {
		t.Fatal(err)
	}
	// The stuck worker is neither the lead (queue 0) nor the last one.
	var stuck string
	rooms := roomNames(100)
	for _, r := range rooms {
		b.Subscribe(r)
		if stuck == "" && b.queueIndex(RoomChannel(cfg.Channel, r)) == 1 {
			stuck = r
		}
	}
	// Confirmed by Redis; AwaitSubscribed could leave a stray probe that
	// would sit in a queue.
	waitStats(t, b, "rooms subscribed", func(s Stats) bool { return s.SubscribedRooms == len(rooms) })
	ctx := context.Background()
	if err := a.Publish(ctx, &primus.Message{Rooms: []string{stuck}, Data: []byte(`"block"`)}); err != nil {
		t.Fatal(err)
	}
	<-entered
	big := `"` + strings.Repeat("b", 1000) + `"`
	if err := a.Publish(ctx, &primus.Message{Rooms: rooms, Data: []byte(big)}); err != nil {
		t.Fatal(err)
	}
	// Queued to all three workers; 0 and 2 took it and wait at the barrier.
	waitStats(t, b, "workers 0 and 2 at the barrier", func(s Stats) bool { return s.QueueDepth == 1 })

	closed := make(chan struct{})
	go func() { _ = b.Close(); close(closed) }()
	for !b.closing.Load() {
		runtime.Gosched() // Close has begun: release the stuck worker now
	}
	releaseOnce.Do(func() { close(release) })
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return")
	}
	for _, m := range rec.Messages() {
		if string(m.Data) == big {
			t.Fatal("the write at the barrier was delivered during Close")
		}
	}
}

// TestMultiRoomChannelPayloads: what other publishers may put on the
// multi-room channel, and what the broker makes of it.
func TestMultiRoomChannelPayloads(t *testing.T) {
	srv := redistest.StartServer(t)
	cfg := testConfig(srv.Addr(), Native, freshChannel())
	cfg.MaxPayload = 64 << 10
	b, rec := startBroker(t, cfg)
	b.Subscribe("a")
	b.Subscribe("c")
	ch := MultiRoomChannel(cfg.Channel)
	waitNumsub(t, srv, ch, 1)
	waitNumsub(t, srv, RoomChannel(cfg.Channel, "c"), 1)
	env := func(m *primus.Message) string { return string(AppendEnvelope(nil, m)) }
	bad := []string{
		"",
		"\x02" + env(&primus.Message{Rooms: []string{"a"}, Data: []byte(`1`)})[1:],
		"\x01\x7f",
		env(&primus.Message{Data: []byte(`1`)}), // no rooms: fine on a room channel, not here
		env(&primus.Message{Rooms: []string{"a"}, Data: []byte(`{bad`)}),
	}
	for _, p := range bad {
		srv.Publish(ch, p)
	}
	srv.Publish(ch, env(&primus.Message{Origin: b.NodeID(), Rooms: []string{"a"}, Data: []byte(`"own"`)}))
	srv.Publish(ch, env(&primus.Message{Rooms: []string{"x", "y"}, Data: []byte(`"none hosted"`)}))
	srv.Publish(ch, env(&primus.Message{Rooms: []string{"a"}, Data: []byte(`"` + strings.Repeat("o", 70<<10) + `"`)}))
	srv.Publish(ch, env(&primus.Message{ID: "e", Rooms: []string{"c", "x", "a", "c"}, Except: []string{"s"}, Data: []byte(`"external"`)}))
	msgs := rec.WaitFor(t, "the external write", func(m []*brokertest.Received) bool { return len(m) > 0 })
	if len(msgs) != 1 || string(msgs[0].Data) != `"external"` {
		t.Fatalf("received %d messages, first %s", len(msgs), msgs[0].Data)
	}
	if m := msgs[0]; m.ID != "e" || m.Origin != "" || !slices.Equal(m.Rooms, []string{"c", "a", "c"}) || len(m.Skip) != 0 || !slices.Equal(m.Except, []string{"s"}) {
		t.Errorf("message %+v", m)
	}
	if s := b.Stats(); s.DecodeErrors != uint64(len(bad)) || s.Ignored != 1 || s.Oversized != 1 || s.Received != 1 {
		t.Errorf("stats: decode errors %d (want %d), ignored %d, oversized %d, received %d", s.DecodeErrors, len(bad), s.Ignored, s.Oversized, s.Received)
	}
}

// TestCompatMultiRoomTooLarge: compat repeats the data per room, so a
// write whose payloads add up to more than MaxPayload fails before
// anything is published.
func TestCompatMultiRoomTooLarge(t *testing.T) {
	srv := redistest.StartServer(t)
	cfg := testConfig(srv.Addr(), Compat, freshChannel())
	cfg.MaxPayload = 64 << 10
	a, _ := startBroker(t, cfg)
	b, rec := startBroker(t, cfg)
	rooms := roomNames(10)
	for _, r := range rooms {
		b.Subscribe(r)
	}
	brokertest.AwaitSubscribed(t, a, rec, rooms[0])
	publishes := func() int64 {
		v, err := srv.Do("INFO", "commandstats")
		if err != nil {
			t.Fatal(err)
		}
		s, _ := v.(string)
		_, after, ok := strings.Cut(s, "cmdstat_publish:calls=")
		if !ok {
			t.Fatalf("no PUBLISH in %s", s)
		}
		n, _ := strconv.ParseInt(after[:strings.IndexByte(after, ',')], 10, 64)
		return n
	}
	data := []byte(`"` + strings.Repeat("d", 10<<10) + `"`) // 10 KB each, 100 KB in all
	before, errsBefore := publishes(), a.Stats().PublishErrors
	err := a.Publish(context.Background(), &primus.Message{Rooms: rooms, Except: []string{"s"}, Data: data})
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Publish = %v, want ErrTooLarge", err)
	}
	if n := publishes(); n != before {
		t.Errorf("%d PUBLISH commands for a write that failed", n-before)
	}
	if s := a.Stats(); s.PublishErrors != errsBefore+1 || s.ExceptNotCarried != 0 {
		t.Errorf("stats: %+v", s)
	}
	// Five rooms fit (about 50 KB) and arrive as five messages.
	if err := a.Publish(context.Background(), &primus.Message{Rooms: rooms[:5], Data: data}); err != nil {
		t.Fatal(err)
	}
	rec.WaitFor(t, "five copies", func(m []*brokertest.Received) bool {
		n := 0
		for _, m := range m {
			if string(m.Data) == string(data) {
				n++
			}
		}
		return n == 5
	})
}

func TestCompatPayloadsLimit(t *testing.T) {
	rooms := []string{"a", "b\n"} // the escaped room counts: {"room":"b\n","data":1}
	size := len(appendCompat(nil, "a", []byte(`1`))) + len(appendCompat(nil, "b\n", []byte(`1`)))
	if _, err := compatPayloads(rooms, []byte(`1`), size); err != nil {
		t.Errorf("at the limit: %v", err)
	}
	if _, err := compatPayloads(rooms, []byte(`1`), size-1); !errors.Is(err, ErrTooLarge) {
		t.Errorf("one byte over: %v", err)
	}
	// 10 000 rooms of 150 KB fail at once, without building 1.5 GB.
	names, data := roomNames(10000), make([]byte, 150_000)
	if n := testing.AllocsPerRun(1, func() {
		if _, err := compatPayloads(names, data, DefaultMaxPayload); !errors.Is(err, ErrTooLarge) {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("%v allocations", n)
	}
}

// TestMultiRoomFullQueue: a worker whose queue is full cannot take its
// share of a multi-room-channel write. The others do not wait for it: they
// deliver the write to the rooms they handle, and the rooms of the full
// worker lose it (one drop), so no room sees its writes out of order.
func TestMultiRoomFullQueue(t *testing.T) {
	srv := redistest.StartServer(t)
	cfg := testConfig(srv.Addr(), Native, freshChannel())
	a, _ := startBroker(t, cfg)
	cfgB := cfg
	cfgB.Workers, cfgB.QueueSize = 2, 2
	b := newBroker(t, cfgB)
	rec := brokertest.NewRecorder()
	entered, release := make(chan struct{}), make(chan struct{})
	var releaseOnce sync.Once
	t.Cleanup(func() { releaseOnce.Do(func() { close(release) }) })
	if err := b.Start(primus.BrokerHandlerFunc(func(m *primus.Message, skip []string) {
		if string(m.Data) == `"block"` {
			close(entered)
			<-release
		}
		rec.HandleMessage(m, skip)
	})); err != nil {
		t.Fatal(err)
	}
	rooms := roomNames(40)
	var stuck string
	var served []string // the rooms of worker 0
	for _, r := range rooms {
		b.Subscribe(r)
		if b.queueIndex(RoomChannel(cfg.Channel, r)) == 1 {
			stuck = cmp.Or(stuck, r)
		} else {
			served = append(served, r)
		}
	}
	// Confirmed by Redis; AwaitSubscribed could leave a stray probe that
	// would take a place in the small queues.
	waitStats(t, b, "rooms subscribed", func(s Stats) bool { return s.SubscribedRooms == len(rooms) })
	ctx := context.Background()
	for _, d := range []string{`"block"`, `"queued 1"`, `"queued 2"`} {
		if err := a.Publish(ctx, &primus.Message{Rooms: []string{stuck}, Data: []byte(d)}); err != nil {
			t.Fatal(err)
		}
	}
	<-entered
	waitStats(t, b, "worker 1's queue full", func(s Stats) bool { return s.QueueDepth == 2 })
	big := `{"big":"` + strings.Repeat("b", 2000) + `"}`
	if err := a.Publish(ctx, &primus.Message{Rooms: rooms, Data: []byte(big)}); err != nil {
		t.Fatal(err)
	}
	msgs := rec.WaitFor(t, "the big write", func(m []*brokertest.Received) bool {
		return slices.ContainsFunc(m, func(m *brokertest.Received) bool { return string(m.Data) == big })
	})
	if m := msgs[len(msgs)-1]; !slices.Equal(m.Rooms, served) {
		t.Errorf("delivered to %d rooms, want the %d of worker 0", len(m.Rooms), len(served))
	}
	if s := b.Stats(); s.Dropped != 1 {
		t.Errorf("Dropped = %d, want 1", s.Dropped)
	}
	releaseOnce.Do(func() { close(release) })
	msgs = rec.WaitFor(t, "the queued writes", func(m []*brokertest.Received) bool { return string(m[len(m)-1].Data) == `"queued 2"` })
	if got := string(msgs[len(msgs)-2].Data); got != `"queued 1"` {
		t.Errorf("before the last queued write: %s", got)
	}
}
