package primus_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/primusgo/primus"
	"github.com/primusgo/primus/internal/testkit"
)

// historyFor keeps history for the rooms starting with "h" (size n).
func historyFor(n int) func(string) primus.HistoryOptions {
	return func(room string) primus.HistoryOptions {
		if strings.HasPrefix(room, "h") {
			return primus.HistoryOptions{Size: n, TTL: time.Minute}
		}
		return primus.HistoryOptions{}
	}
}

// histFrame is a frame a client received: positioned or plain.
type histFrame struct {
	Room       string          `json:"room"`
	Offset     uint64          `json:"offset"`
	Epoch      string          `json:"epoch"`
	Data       json.RawMessage `json:"data"`
	positioned bool
	raw        string
}

func parseHistFrame(t testing.TB, f testkit.Frame) histFrame {
	t.Helper()
	if f.Type != websocket.MessageText {
		t.Fatalf("binary frame %s", f)
	}
	var h histFrame
	h.raw = string(f.Data)
	var keys map[string]json.RawMessage
	if json.Unmarshal(f.Data, &keys) == nil && keys["offset"] != nil && keys["data"] != nil {
		if err := json.Unmarshal(f.Data, &h); err != nil {
			t.Fatalf("positioned frame %s: %v", f, err)
		}
		h.positioned = true
	} else {
		h.Data = json.RawMessage(f.Data)
	}
	return h
}

// nextHist returns the client's next data frame, parsed.
func nextHist(t testing.TB, c *testkit.Client) histFrame {
	t.Helper()
	return parseHistFrame(t, c.NextData(t))
}

type histWrite struct {
	W int `json:"w"`
	I int `json:"i"`
}

// historyPair is two nodes on a memory hub with history for rooms "h*".
func historyPair(t *testing.T, size int, tweak ...func(*primus.Config)) (a, b *testServer) {
	t.Helper()
	hub := primus.NewMemoryHub()
	mk := func() *testServer {
		cfg := primus.Config{Broker: hub.NewBroker(), History: historyFor(size), PingInterval: -1}
		for _, f := range tweak {
			f(&cfg)
		}
		return startServer(t, cfg)
	}
	return mk(), mk()
}

// joinClient connects a client to ts and joins room: positioned (since
// may be nil) or plain.
func joinClient(t *testing.T, ts *testServer, room string, positioned bool, since *primus.HistoryPosition) (*testkit.Client, primus.Recovery) {
	t.Helper()
	c := ts.dial(t, testkit.DialOptions{})
	s := ts.nextSpark(t)
	if !positioned {
		if err := s.Join(room); err != nil {
			t.Fatal(err)
		}
		return c, primus.Recovery{}
	}
	ctx, cancel := waitCtx()
	defer cancel()
	rec, err := s.JoinRecover(ctx, room, since)
	if err != nil {
		t.Fatalf("JoinRecover: %v", err)
	}
	return c, rec
}

// Writes from two nodes, made concurrently, reach every member on both
// nodes in one order: the offsets' (positioned sparks get every offset
// once, in order; plain sparks get the same data, byte for byte as
// without history, in the same order).
func TestHistoryOrderAcrossNodes(t *testing.T) {
	a, b := historyPair(t, 10000)
	type member struct {
		c          *testkit.Client
		positioned bool
	}
	var members []member
	for _, ts := range []*testServer{a, b} {
		for i := range 3 {
			c, rec := joinClient(t, ts, "h1", i > 0, nil)
			if i > 0 && (rec.Position.Offset != 0 || rec.Position.Epoch == "") {
				t.Fatalf("position of a fresh room = %+v", rec.Position)
			}
			members = append(members, member{c, i > 0})
		}
	}
	const writers, perWriter = 4, 150
	var wg sync.WaitGroup
	for w := range writers {
		srv := []*testServer{a, b}[w%2]
		wg.Go(func() {
			for i := range perWriter {
				if err := srv.Room("h1").Write(histWrite{w, i}); err != nil {
					t.Errorf("write: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	var ref []string // data by offset, from the first positioned member
	for _, m := range members {
		last := make([]int, writers)
		for w := range last {
			last[w] = -1
		}
		var seq []string
		for k := range writers * perWriter {
			f := nextHist(t, m.c)
			if f.positioned != m.positioned {
				t.Fatalf("frame %s: positioned = %v, want %v", f.raw, f.positioned, m.positioned)
			}
			if m.positioned && (f.Room != "h1" || f.Offset != uint64(k+1)) {
				t.Fatalf("frame %d = %s, want offset %d", k, f.raw, k+1)
			}
			var hw histWrite
			if err := json.Unmarshal(f.Data, &hw); err != nil {
				t.Fatal(err)
			}
			if hw.I != last[hw.W]+1 {
				t.Fatalf("writer %d: %d after %d", hw.W, hw.I, last[hw.W])
			}
			last[hw.W] = hw.I
			if !m.positioned && f.raw != fmt.Sprintf(`{"w":%d,"i":%d}`, hw.W, hw.I) {
				t.Fatalf("plain frame %s is not the data as written", f.raw)
			}
			seq = append(seq, string(f.Data))
		}
		if ref == nil {
			ref = seq
		} else if strings.Join(seq, "\n") != strings.Join(ref, "\n") {
			t.Fatal("members received the writes in different orders")
		}
	}
}

// Joins with a since position, racing writes from both nodes, replay
// everything after it and then the live writes: no gap, no duplicate.
func TestJoinRecoverRacingWrites(t *testing.T) {
	a, b := historyPair(t, 100000)
	_, first := joinClient(t, a, "h2", true, nil)
	epoch := first.Position.Epoch

	const total = 1200
	var written sync.WaitGroup
	var progress sync.Mutex
	top := uint64(0)
	for w := range 2 {
		srv := []*testServer{a, b}[w]
		written.Go(func() {
			for i := range total / 2 {
				if err := srv.Room("h2").Write(histWrite{w, i}); err != nil {
					t.Errorf("write: %v", err)
					return
				}
				progress.Lock()
				top++
				progress.Unlock()
				if i%50 == 0 {
					time.Sleep(time.Millisecond)
				}
			}
		})
	}
	type joined struct {
		c     *testkit.Client
		since uint64
	}
	var clients []joined
	for i := range 16 {
		progress.Lock()
		since := rand.N(top + 1)
		progress.Unlock()
		ts := []*testServer{a, b}[i%2]
		c, rec := joinClient(t, ts, "h2", true, &primus.HistoryPosition{Offset: since, Epoch: epoch})
		if !rec.Recovered || rec.Position.Epoch != epoch || rec.Position.Offset < since {
			t.Fatalf("join since %d: %+v", since, rec)
		}
		clients = append(clients, joined{c, since})
		time.Sleep(time.Duration(rand.N(5)) * time.Millisecond)
	}
	written.Wait()
	for _, j := range clients {
		for want := j.since + 1; want <= total; want++ {
			f := nextHist(t, j.c)
			if !f.positioned || f.Offset != want || f.Epoch != epoch {
				t.Fatalf("client since %d: got %s, want offset %d", j.since, f.raw, want)
			}
		}
	}
	// Nothing more (no duplicate at the end either).
	if err := a.Room("h2").Write("end"); err != nil {
		t.Fatal(err)
	}
	for _, j := range clients {
		if f := nextHist(t, j.c); f.Offset != total+1 {
			t.Fatalf("after the last write: %s", f.raw)
		}
	}
}

// A since position of another epoch, one further back than the history
// keeps, or one from the future is not recovered: nothing is replayed, the
// spark receives the writes after the position returned.
func TestJoinRecoverNotRecovered(t *testing.T) {
	a, _ := historyPair(t, 5)
	_, first := joinClient(t, a, "h3", true, nil)
	for i := range 20 {
		if err := a.Room("h3").Write(i); err != nil {
			t.Fatal(err)
		}
	}
	epoch := first.Position.Epoch
	top := uint64(20)
	for _, since := range []primus.HistoryPosition{
		{Offset: 3, Epoch: "other"},
		{Offset: 10, Epoch: epoch}, // the history keeps 16..20
		{Offset: 99, Epoch: epoch},
		{Offset: 5, Epoch: ""},
	} {
		c, rec := joinClient(t, a, "h3", true, &since)
		if rec.Recovered || rec.Position != (primus.HistoryPosition{Offset: top, Epoch: epoch}) {
			t.Fatalf("since %+v: %+v", since, rec)
		}
		top++
		if err := a.Room("h3").Write("next"); err != nil {
			t.Fatal(err)
		}
		if f := nextHist(t, c); f.Offset != top {
			t.Fatalf("since %+v: first frame %s, want offset %d", since, f.raw, top)
		}
	}
}

// Recovered: the last 5 are kept; since 15 replays 16..20; since 20
// replays nothing; both then get the live writes.
func TestJoinRecoverReplay(t *testing.T) {
	a, b := historyPair(t, 5)
	_, first := joinClient(t, a, "h4", true, nil)
	epoch := first.Position.Epoch
	for i := range 20 {
		if err := a.Room("h4").Write(i); err != nil {
			t.Fatal(err)
		}
	}
	for _, since := range []uint64{15, 20} {
		c, rec := joinClient(t, b, "h4", true, &primus.HistoryPosition{Offset: since, Epoch: epoch})
		if !rec.Recovered || rec.Position != (primus.HistoryPosition{Offset: 20, Epoch: epoch}) {
			t.Fatalf("since %d: %+v", since, rec)
		}
		for o := since + 1; o <= 20; o++ {
			if f := nextHist(t, c); f.Offset != o || string(f.Data) != fmt.Sprint(o-1) {
				t.Fatalf("since %d: replayed %s, want offset %d", since, f.raw, o)
			}
		}
		defer func() {
			if f := nextHist(t, c); f.Offset != 21 || string(f.Data) != `"live"` {
				t.Fatalf("since %d: live %s", since, f.raw)
			}
		}()
	}
	if err := b.Room("h4").Write("live"); err != nil {
		t.Fatal(err)
	}
}

// A multi-room write naming history rooms: a plain spark in several of
// its rooms receives it once; a positioned spark receives it positioned
// once per history room it is positioned in; too many history rooms fail
// the write before anything is delivered.
func TestHistoryMultiRoomWrite(t *testing.T) {
	a, b := historyPair(t, 100, func(c *primus.Config) { c.MaxHistoryRoomsPerWrite = 3 })
	for _, ts := range []*testServer{a, b} {
		plain := ts.dial(t, testkit.DialOptions{})
		ps := ts.nextSpark(t)
		if err := ps.Join("ha", "hb", "p"); err != nil {
			t.Fatal(err)
		}
		pos := ts.dial(t, testkit.DialOptions{})
		s := ts.nextSpark(t)
		ctx, cancel := waitCtx()
		for _, r := range []string{"ha", "hb"} {
			if _, err := s.JoinRecover(ctx, r, nil); err != nil {
				t.Fatal(err)
			}
		}
		cancel()
		if err := s.Join("p"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if t.Failed() {
				return
			}
			plain.Expect(t, `"one"`)
			plain.Expect(t, `"two"`)
			got := map[string]bool{}
			for range 2 {
				f := nextHist(t, pos)
				got[fmt.Sprintf("%s/%d/%s", f.Room, f.Offset, f.Data)] = true
			}
			if !got[`ha/1/"one"`] || !got[`hb/1/"one"`] {
				t.Fatalf("positioned spark got %v", got)
			}
			// "two" reaches it through room p only, in which it is plain.
			pos.Expect(t, `"two"`)
		})
	}
	if err := a.Room("ha", "p", "hb").Write("one"); err != nil {
		t.Fatal(err)
	}
	if err := a.Room("p", "x").Write("two"); err != nil {
		t.Fatal(err)
	}
	err := b.Room("ha", "hb", "hc", "hd").Write("three")
	if !errors.Is(err, primus.ErrTooManyHistoryRooms) {
		t.Fatalf("write to 4 history rooms: %v", err)
	}
}

// JoinRecover refuses rooms without history, and sparks over their read
// rate.
func TestJoinRecoverRefusals(t *testing.T) {
	a, _ := historyPair(t, 10, func(c *primus.Config) { c.HistoryReadRate, c.HistoryReadBurst = 0.001, 2 })
	a.dial(t, testkit.DialOptions{})
	s := a.nextSpark(t)
	ctx, cancel := waitCtx()
	defer cancel()
	if _, err := s.JoinRecover(ctx, "plain", nil); !errors.Is(err, primus.ErrNoHistory) {
		t.Fatalf("room without history: %v", err)
	}
	if got := s.Rooms(); len(got) != 0 {
		t.Fatalf("rooms after a refused join: %v", got)
	}
	since := &primus.HistoryPosition{}
	for i := range 3 {
		_, err := s.JoinRecover(ctx, "h5", since)
		if i < 2 && err != nil {
			t.Fatalf("read %d: %v", i, err)
		}
		if i == 2 && !errors.Is(err, primus.ErrHistoryRateLimited) {
			t.Fatalf("read over the rate: %v", err)
		}
	}
	if _, err := s.JoinRecover(ctx, "h5", &primus.HistoryPosition{Epoch: strings.Repeat("e", 65)}); err == nil {
		t.Fatal("a 65-byte epoch was accepted")
	}
	nohist := startServer(t, primus.Config{})
	nohist.dial(t, testkit.DialOptions{})
	if _, err := nohist.nextSpark(t).JoinRecover(ctx, "h5", nil); !errors.Is(err, primus.ErrNoHistory) {
		t.Fatalf("server without history: %v", err)
	}
}

// A broker that is not a HistoryBroker fails New.
func TestHistoryNeedsHistoryBroker(t *testing.T) {
	_, err := primus.New(primus.Config{Broker: plainBroker{primus.NewMemoryBroker()}, History: historyFor(1)})
	if err == nil || !strings.Contains(err.Error(), "HistoryBroker") {
		t.Fatalf("New: %v", err)
	}
}

// countingBroker counts history reads.
type countingBroker struct {
	*primus.MemoryBroker
	reads atomic.Int64
}

func (b *countingBroker) History(ctx context.Context, room string, since uint64, limit int) ([]*primus.Message, primus.HistoryPosition, error) {
	b.reads.Add(1)
	return b.MemoryBroker.History(ctx, room, since, limit)
}

// A herd of joins with since (clients coming back after a node restart)
// racing writes: each gets every write after its own position once, in
// order, then the live ones, and the joins of the room share their history
// reads instead of making one each.
func TestJoinRecoverHerdSharesReads(t *testing.T) {
	hub := primus.NewMemoryHub()
	cb := &countingBroker{MemoryBroker: hub.NewBroker()}
	a := startServer(t, primus.Config{Broker: cb, History: historyFor(100000), PingInterval: -1, HistoryReadRate: -1})
	b := startServer(t, primus.Config{Broker: hub.NewBroker(), History: historyFor(100000), PingInterval: -1})
	_, first := joinClient(t, b, "h5", true, nil)
	epoch := first.Position.Epoch
	for i := range 300 {
		if err := b.Room("h5").Write(histWrite{0, i}); err != nil {
			t.Fatal(err)
		}
	}
	const joiners = 60
	clients := make([]*testkit.Client, joiners)
	sparks := make([]*primus.Spark, joiners)
	sinces := make([]uint64, joiners)
	for i := range joiners {
		clients[i] = a.dial(t, testkit.DialOptions{})
		sparks[i] = a.nextSpark(t)
		sinces[i] = uint64(rand.N(300))
	}
	const total = 900
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 300; i < total; i++ {
			if err := b.Room("h5").Write(histWrite{0, i}); err != nil {
				t.Errorf("write: %v", err)
				return
			}
		}
	})
	before := cb.reads.Load()
	for i := range joiners {
		wg.Go(func() {
			ctx, cancel := waitCtx()
			defer cancel()
			rec, err := sparks[i].JoinRecover(ctx, "h5", &primus.HistoryPosition{Offset: sinces[i], Epoch: epoch})
			if err != nil || !rec.Recovered || rec.Position.Epoch != epoch || rec.Position.Offset < sinces[i] {
				t.Errorf("join since %d: %+v %v", sinces[i], rec, err)
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	reads := cb.reads.Load() - before
	t.Logf("%d joins with since made %d history reads", joiners, reads)
	if reads > joiners/2 {
		t.Errorf("%d joins with since made %d history reads: not shared", joiners, reads)
	}
	for i, c := range clients {
		for want := sinces[i] + 1; want <= total; want++ {
			f := nextHist(t, c)
			if !f.positioned || f.Offset != want || f.Epoch != epoch {
				t.Fatalf("client since %d: got %s, want offset %d", sinces[i], f.raw, want)
			}
		}
	}
}

// stallingBroker makes history reads wait for release, then fail.
type stallingBroker struct {
	*primus.MemoryBroker
	entered chan struct{}
	release chan struct{}
}

func (b *stallingBroker) History(ctx context.Context, room string, since uint64, limit int) ([]*primus.Message, primus.HistoryPosition, error) {
	b.entered <- struct{}{}
	<-b.release
	return nil, primus.HistoryPosition{}, errors.New("history unavailable")
}

// A join with since whose history read fails leaves the spark as it was:
// a spark that was not a member gets no frame of the room (not even plain
// ones written during the read); a plain member gets every write, plain,
// those written during the read included.
func TestJoinRecoverFailedRead(t *testing.T) {
	for _, was := range []bool{false, true} {
		t.Run(fmt.Sprintf("member=%v", was), func(t *testing.T) {
			hub := primus.NewMemoryHub()
			sb := &stallingBroker{MemoryBroker: hub.NewBroker(), entered: make(chan struct{}, 1), release: make(chan struct{})}
			a := startServer(t, primus.Config{Broker: sb, History: historyFor(100), PingInterval: -1})
			_, first := joinClient(t, a, "h6", true, nil) // the room's sequencer is ready
			c := a.dial(t, testkit.DialOptions{})
			s := a.nextSpark(t)
			if was {
				if err := s.Join("h6"); err != nil {
					t.Fatal(err)
				}
			}
			done := make(chan error, 1)
			go func() {
				ctx, cancel := waitCtx()
				defer cancel()
				_, err := s.JoinRecover(ctx, "h6", &primus.HistoryPosition{Offset: 0, Epoch: first.Position.Epoch})
				done <- err
			}()
			<-sb.entered
			if err := a.Room("h6").Write("during"); err != nil {
				t.Fatal(err)
			}
			close(sb.release)
			if err := <-done; err == nil {
				t.Fatal("JoinRecover succeeded with a failing history read")
			}
			if err := a.Room("h6").Write("after"); err != nil {
				t.Fatal(err)
			}
			if err := s.Write("marker"); err != nil {
				t.Fatal(err)
			}
			var got []string
			for {
				f := nextHist(t, c)
				if f.positioned {
					t.Fatalf("positioned frame after a failed join: %s", f.raw)
				}
				if f.raw == `"marker"` {
					break
				}
				got = append(got, f.raw)
			}
			want := []string{}
			if was {
				want = []string{`"during"`, `"after"`}
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("frames %q, want %q", got, want)
			}
		})
	}
}

// A replay larger than half of the spark's queue bound is not made: the
// spark is told it was not recovered (and reloads) rather than ended as a
// slow consumer at every reconnect; a smaller one is.
func TestJoinRecoverReplayBound(t *testing.T) {
	hub := primus.NewMemoryHub()
	a := startServer(t, primus.Config{Broker: hub.NewBroker(), History: historyFor(1000), PingInterval: -1,
		MaxQueueBytes: 64 << 10, MaxLength: 16 << 10})
	_, first := joinClient(t, a, "h7", true, nil)
	data := strings.Repeat("x", 1000)
	for range 100 { // about 100 KiB of history
		if err := a.Room("h7").Write(data); err != nil {
			t.Fatal(err)
		}
	}
	epoch := first.Position.Epoch
	c, rec := joinClient(t, a, "h7", true, &primus.HistoryPosition{Offset: 0, Epoch: epoch})
	if rec.Recovered || rec.Position.Offset != 100 {
		t.Fatalf("a 100 KiB replay with a 64 KiB queue: %+v", rec)
	}
	c2, rec2 := joinClient(t, a, "h7", true, &primus.HistoryPosition{Offset: 90, Epoch: epoch})
	if !rec2.Recovered || rec2.Position.Offset != 100 {
		t.Fatalf("a 10 KiB replay with a 64 KiB queue: %+v", rec2)
	}
	for want := uint64(91); want <= 100; want++ {
		if f := nextHist(t, c2); f.Offset != want {
			t.Fatalf("replay: %s, want offset %d", f.raw, want)
		}
	}
	if err := a.Room("h7").Write("live"); err != nil {
		t.Fatal(err)
	}
	for _, cl := range []*testkit.Client{c, c2} {
		if f := nextHist(t, cl); f.Offset != 101 || string(f.Data) != `"live"` {
			t.Fatalf("live write: %s", f.raw)
		}
	}
}

// gatedBroker makes history reads wait for release once entered.
type gatedBroker struct {
	*primus.MemoryBroker
	entered chan struct{}
	release chan struct{}
}

func (b *gatedBroker) History(ctx context.Context, room string, since uint64, limit int) ([]*primus.Message, primus.HistoryPosition, error) {
	b.entered <- struct{}{} // buffered
	<-b.release
	return b.MemoryBroker.History(ctx, room, since, limit)
}

// Live writes beyond what a replay may hold arriving while the replay is
// read: the spark is not recovered (and, since the catch-up buffer stops
// at the replay's byte bound, the node holds no more than that for it
// meanwhile), and it is not ended.
func TestJoinRecoverCatchUpBound(t *testing.T) {
	hub := primus.NewMemoryHub()
	gb := &gatedBroker{MemoryBroker: hub.NewBroker(), entered: make(chan struct{}, 100), release: make(chan struct{})}
	a := startServer(t, primus.Config{Broker: gb, History: historyFor(1000), PingInterval: -1,
		MaxQueueBytes: 64 << 10, MaxLength: 16 << 10})
	_, first := joinClient(t, a, "h8", true, nil)
	c := a.dial(t, testkit.DialOptions{})
	s := a.nextSpark(t)
	done := make(chan primus.Recovery, 1)
	go func() {
		ctx, cancel := waitCtx()
		defer cancel()
		rec, err := s.JoinRecover(ctx, "h8", &primus.HistoryPosition{Offset: 0, Epoch: first.Position.Epoch})
		if err != nil {
			t.Errorf("JoinRecover: %v", err)
		}
		done <- rec
	}()
	<-gb.entered // the replay read waits
	data := strings.Repeat("x", 1000)
	for range 100 { // about 100 KiB written meanwhile
		if err := a.Room("h8").Write(data); err != nil {
			t.Fatal(err)
		}
	}
	close(gb.release)
	if rec := <-done; rec.Recovered || rec.Position.Offset != 100 {
		t.Fatalf("100 KiB held with a 64 KiB queue: %+v", rec)
	}
	if err := a.Room("h8").Write("live"); err != nil {
		t.Fatal(err)
	}
	if f := nextHist(t, c); f.Offset != 101 || string(f.Data) != `"live"` {
		t.Fatalf("after the join: %s", f.raw)
	}
}
