package primus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// stallBroker is a memory broker whose Position waits while stalled.
type stallBroker struct {
	*MemoryBroker
	release chan struct{}
}

func (b *stallBroker) Position(ctx context.Context, room string) (HistoryPosition, error) {
	select {
	case <-b.release:
	case <-ctx.Done():
		return HistoryPosition{}, ctx.Err()
	}
	return b.MemoryBroker.Position(ctx, room)
}

func stallServer(t *testing.T) (*Server, *stallBroker) {
	t.Helper()
	sb := &stallBroker{MemoryBroker: NewMemoryBroker(), release: make(chan struct{})}
	srv, err := New(Config{Broker: sb, History: func(string) HistoryOptions { return HistoryOptions{Size: 100} }, PingInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
	return srv, sb
}

// A JoinRecover that fails before the spark joined (its context ends while
// the room's position is read) leaves no sequencer behind for a room
// without members.
func TestJoinRecoverFailureLeavesNoSequencer(t *testing.T) {
	srv, sb := stallServer(t)
	s := detachedSpark(srv, "s", &frameConn{}, nil)
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	if _, err := s.JoinRecover(ctx, "r", nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("JoinRecover: %v", err)
	}
	close(sb.release)
	if n := srv.Stats().HistoryRooms; n != 0 {
		t.Fatalf("%d history rooms without members", n)
	}
}

// A JoinRecover waiting for a new sequencer's position while the room's
// last member leaves (which ends that sequencer) joins through a new one
// instead of waiting for its context to end.
func TestJoinRecoverSurvivesSequencerDeath(t *testing.T) {
	srv, sb := stallServer(t)
	a := detachedSpark(srv, "a", &frameConn{}, nil)
	if err := a.Join("r"); err != nil {
		t.Fatal(err)
	}
	b := detachedSpark(srv, "b", &frameConn{}, nil)
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
		defer cancel()
		_, err := b.JoinRecover(ctx, "r", nil)
		done <- err
	}()
	time.Sleep(100 * time.Millisecond) // b waits for the position
	a.Leave("r")
	close(sb.release)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("JoinRecover: %v", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("JoinRecover still waits for a dead sequencer")
	}
	if !b.inRoom("r") || srv.Stats().HistoryRooms != 1 {
		t.Fatalf("b in r: %v, history rooms %d", b.inRoom("r"), srv.Stats().HistoryRooms)
	}
}

// stuckConn takes no bytes until released: a client that does not read.
type stuckConn struct {
	frameConn
	release chan struct{}
}

func (c *stuckConn) Write(p []byte) (int, error) {
	<-c.release
	return c.frameConn.Write(p)
}

// A replay larger than the spark's backlog bound is not attempted: the
// spark is told recovered:false instead of being ended as a slow consumer
// (after which its client reconnects and asks for the same replay again).
func TestJoinRecoverReplayOverBacklog(t *testing.T) {
	srv, err := New(Config{
		History:       func(string) HistoryOptions { return HistoryOptions{Size: 1000} },
		PingInterval:  -1,
		MaxQueueBytes: 64 << 10,
	})
	if err != nil {
		t.Fatal(err)
	}
	conn := &stuckConn{release: make(chan struct{})}
	t.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
	t.Cleanup(func() { close(conn.release) })
	big := strings.Repeat("x", 1000)
	for range 200 {
		if err := srv.Room("r").Write(big); err != nil {
			t.Fatal(err)
		}
	}
	s := detachedSpark(srv, "s", conn, nil)
	rec, err := s.JoinRecover(t.Context(), "r", &HistoryPosition{})
	if err != nil {
		t.Fatal(err)
	}
	open := s.out.Push(textFrame([]byte(`"ping"`))) // false once ended as a slow consumer
	if !open || rec.Recovered || rec.Position.Offset != 200 {
		t.Fatalf("spark open: %v, recovery %+v", open, rec)
	}
}

// injectBroker is a memory broker that lets a test hand its server
// messages as if they came from the broker (a hostile publisher).
type injectBroker struct {
	*MemoryBroker
	h BrokerHandler
}

func (b *injectBroker) Start(h BrokerHandler) error {
	b.h = h
	return b.MemoryBroker.Start(h)
}

func injectPair(t *testing.T) (a, b *Server, ib *injectBroker) {
	t.Helper()
	hub := NewMemoryHub()
	hist := func(string) HistoryOptions { return HistoryOptions{Size: 100} }
	a, err := New(Config{Broker: hub.NewBroker(), History: hist, PingInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Shutdown(context.Background()) })
	ib = &injectBroker{MemoryBroker: hub.NewBroker()}
	b, err = New(Config{Broker: ib, History: hist, PingInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Shutdown(context.Background()) })
	return a, b, ib
}

func checkPositioned(t *testing.T, msgs []string, epoch string) {
	t.Helper()
	for i, m := range msgs {
		var p positioned
		if err := json.Unmarshal([]byte(m), &p); err != nil || p.Offset != uint64(i+1) || p.Epoch != epoch || string(p.Data) != fmt.Sprint(i+1) {
			t.Fatalf("frame %d: %s (epoch %s)", i, m, epoch)
		}
	}
}

// One write of another epoch on the channel (anyone who can PUBLISH on
// Redis) does not switch the room to it: the history says which epoch is
// the room's, and the room's writes keep coming.
func TestHistoryForeignEpochWrite(t *testing.T) {
	a, b, ib := injectPair(t)
	pc := &frameConn{}
	rec, err := detachedSpark(b, "pos", pc, nil).JoinRecover(t.Context(), "r", nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 3; i++ {
		if err := a.Room("r").Write(i); err != nil {
			t.Fatal(err)
		}
	}
	waitFrames(t, pc, 3)
	ib.h.HandleMessage(&Message{ID: "evil", Origin: "evil", Rooms: []string{"r"}, Data: []byte(`"evil"`), Offset: 1, Epoch: "forged"}, nil)
	for i := 4; i <= 6; i++ {
		if err := a.Room("r").Write(i); err != nil {
			t.Fatal(err)
		}
	}
	msgs := waitFrames(t, pc, 6)
	time.Sleep(300 * time.Millisecond)
	if msgs = pc.messages(); len(msgs) != 6 {
		t.Fatalf("%d frames: %v", len(msgs), msgs)
	}
	checkPositioned(t, msgs, rec.Position.Epoch)
}

// A write far beyond the room's position (forged, or acknowledged by a
// master that lost it in a failover) is dropped after one read of the
// history says it does not exist, instead of keeping the node reading the
// history every 100 ms.
func TestHistoryForeignFarOffset(t *testing.T) {
	a, b, ib := injectPair(t)
	pc := &frameConn{}
	rec, err := detachedSpark(b, "pos", pc, nil).JoinRecover(t.Context(), "r", nil)
	if err != nil {
		t.Fatal(err)
	}
	ib.h.HandleMessage(&Message{ID: "evil", Origin: "evil", Rooms: []string{"r"}, Data: []byte(`"evil"`), Offset: 1 << 60, Epoch: rec.Position.Epoch}, nil)
	time.Sleep(300 * time.Millisecond)
	before := b.Stats().HistoryResyncs
	time.Sleep(500 * time.Millisecond)
	if after := b.Stats().HistoryResyncs; after != before {
		t.Fatalf("%d history reads in 500 ms", after-before)
	}
	for i := 1; i <= 3; i++ {
		if err := a.Room("r").Write(i); err != nil {
			t.Fatal(err)
		}
	}
	checkPositioned(t, waitFrames(t, pc, 3), rec.Position.Epoch)
}

// countBroker is a memory broker whose History calls wait while stalled
// and are counted.
type countBroker struct {
	*MemoryBroker
	resync         func([]string)
	stalled        atomic.Bool
	release        chan struct{}
	inFlight, peak atomic.Int64
}

func (b *countBroker) EnableHistory(resync func([]string)) error {
	b.resync = resync
	return nil
}

func (b *countBroker) History(ctx context.Context, room string, since uint64, limit int) ([]*Message, HistoryPosition, error) {
	if b.stalled.Load() {
		n := b.inFlight.Add(1)
		defer b.inFlight.Add(-1)
		for {
			p := b.peak.Load()
			if n <= p || b.peak.CompareAndSwap(p, n) {
				break
			}
		}
		select {
		case <-b.release:
		case <-ctx.Done():
			return nil, HistoryPosition{}, ctx.Err()
		}
	}
	return b.MemoryBroker.History(ctx, room, since, limit)
}

// A resync of every room (the node's broker reconnected) reads the rooms'
// histories a bounded number at a time, not all at once.
func TestHistoryResyncReadsBounded(t *testing.T) {
	cb := &countBroker{MemoryBroker: NewMemoryBroker(), release: make(chan struct{})}
	srv, err := New(Config{Broker: cb, History: func(string) HistoryOptions { return HistoryOptions{Size: 100} }, PingInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
	t.Cleanup(func() { close(cb.release) })
	const rooms = 3 * maxReplayReads
	s := detachedSpark(srv, "s", &frameConn{}, nil)
	for i := range rooms {
		if _, err := s.JoinRecover(t.Context(), fmt.Sprint("r", i), nil); err != nil {
			t.Fatal(err)
		}
	}
	cb.stalled.Store(true)
	cb.resync(nil)
	time.Sleep(300 * time.Millisecond)
	if p := cb.peak.Load(); p > maxReplayReads || p == 0 {
		t.Fatalf("%d history reads at once for %d rooms", p, rooms)
	}
}

// A plain join racing a leave of the same spark leaves no sequencer for
// the emptied room.
func TestHistoryJoinRacingLeave(t *testing.T) {
	srv, err := New(Config{History: func(string) HistoryOptions { return HistoryOptions{Size: 100} }, PingInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
	s := detachedSpark(srv, "s", &frameConn{}, nil)
	for i := range 2000 {
		room := fmt.Sprint("r", i)
		done := make(chan struct{})
		go func() {
			defer close(done)
			s.Leave(room)
		}()
		if err := s.Join(room); err != nil {
			t.Fatal(err)
		}
		<-done
		s.Leave(room)
	}
	if n := srv.Stats().HistoryRooms; n != 0 {
		t.Fatalf("%d history rooms without members", n)
	}
}

// failBroker is a memory broker whose History fails while failing is set.
type failBroker struct {
	*MemoryBroker
	failing atomic.Bool
}

func (b *failBroker) History(ctx context.Context, room string, since uint64, limit int) ([]*Message, HistoryPosition, error) {
	if b.failing.Load() {
		return nil, HistoryPosition{}, errors.New("history unavailable")
	}
	return b.MemoryBroker.History(ctx, room, since, limit)
}

// A positioned member whose second JoinRecover (with since) fails stays
// positioned: it keeps getting the room's writes with their offsets, not
// plain data its client cannot place.
func TestJoinRecoverFailureKeepsPosition(t *testing.T) {
	fb := &failBroker{MemoryBroker: NewMemoryBroker()}
	srv, err := New(Config{Broker: fb, History: func(string) HistoryOptions { return HistoryOptions{Size: 100} }, PingInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
	pc := &frameConn{}
	s := detachedSpark(srv, "s", pc, nil)
	rec, err := s.JoinRecover(t.Context(), "r", nil)
	if err != nil {
		t.Fatal(err)
	}
	fb.failing.Store(true)
	if _, err := s.JoinRecover(t.Context(), "r", &rec.Position); err == nil {
		t.Fatal("JoinRecover succeeded without history")
	}
	if err := srv.Room("r").Write(1); err != nil {
		t.Fatal(err)
	}
	checkPositioned(t, waitFrames(t, pc, 1), rec.Position.Epoch)
}

// readCountBroker is a memory broker that counts the entries its History
// calls return.
type readCountBroker struct {
	*MemoryBroker
	entries atomic.Int64
}

func (b *readCountBroker) History(ctx context.Context, room string, since uint64, limit int) ([]*Message, HistoryPosition, error) {
	msgs, pos, err := b.MemoryBroker.History(ctx, room, since, limit)
	b.entries.Add(int64(len(msgs)))
	return msgs, pos, err
}

// A join with since reads the history page by page and stops once the
// replay is over its budget: a client asking for a large room's whole
// history (since offset 0) does not make the node hold all of it.
func TestJoinRecoverReadsPaged(t *testing.T) {
	rb := &readCountBroker{MemoryBroker: NewMemoryBroker()}
	srv, err := New(Config{
		Broker:        rb,
		History:       func(string) HistoryOptions { return HistoryOptions{Size: MaxHistorySize} },
		PingInterval:  -1,
		MaxQueueBytes: 64 << 10,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
	data := strings.Repeat("x", 100)
	for range 20_000 {
		if err := srv.Room("r").Write(data); err != nil {
			t.Fatal(err)
		}
	}
	pc := &frameConn{}
	rec, err := detachedSpark(srv, "s", pc, nil).JoinRecover(t.Context(), "r", &HistoryPosition{})
	if err != nil || rec.Recovered || rec.Position.Offset != 20_000 {
		t.Fatalf("JoinRecover: %+v, %v", rec, err)
	}
	if n := rb.entries.Load(); n > 2*fillPage {
		t.Fatalf("%d entries read for a replay of at most 32 KiB", n)
	}
	// Within the budget, the pages make one replay.
	rec, err = detachedSpark(srv, "s2", pc, nil).JoinRecover(t.Context(), "r", &HistoryPosition{Offset: 19_900, Epoch: rec.Position.Epoch})
	if err != nil || !rec.Recovered || rec.Position.Offset != 20_000 || len(waitFrames(t, pc, 100)) != 100 {
		t.Fatalf("JoinRecover of 100: %+v, %v", rec, err)
	}
}

// A replay of several pages is every write after since, in order.
func TestJoinRecoverReplaysPages(t *testing.T) {
	srv, err := New(Config{History: func(string) HistoryOptions { return HistoryOptions{Size: 5000} }, PingInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
	const n = 2*fillPage + 500
	for i := 1; i <= n; i++ {
		if err := srv.Room("r").Write(i); err != nil {
			t.Fatal(err)
		}
	}
	pc := &frameConn{}
	rec, err := detachedSpark(srv, "s", pc, nil).JoinRecover(t.Context(), "r", &HistoryPosition{})
	if err != nil || !rec.Recovered || rec.Position.Offset != n {
		t.Fatalf("JoinRecover: %+v, %v", rec, err)
	}
	checkPositioned(t, waitFrames(t, pc, n), rec.Position.Epoch)
	// Exactly Size writes behind, and one more.
	srv2, err := New(Config{History: func(string) HistoryOptions { return HistoryOptions{Size: fillPage} }, PingInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv2.Shutdown(context.Background()) })
	for i := 1; i <= fillPage+1; i++ {
		if err := srv2.Room("r").Write(i); err != nil {
			t.Fatal(err)
		}
	}
	p, err := srv2.hist.hb.Position(t.Context(), "r")
	if err != nil {
		t.Fatal(err)
	}
	epoch := p.Epoch
	if rec, err := detachedSpark(srv2, "a", &frameConn{}, nil).JoinRecover(t.Context(), "r", &HistoryPosition{Offset: 1, Epoch: epoch}); err != nil || !rec.Recovered {
		t.Fatalf("Size behind: %+v, %v", rec, err)
	}
	if rec, err := detachedSpark(srv2, "b", &frameConn{}, nil).JoinRecover(t.Context(), "r", &HistoryPosition{Offset: 0, Epoch: epoch}); err != nil || rec.Recovered {
		t.Fatalf("Size+1 behind: %+v, %v", rec, err)
	}
}
