package primus

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// frameConn parses the server frames written to it (unmasked text frames)
// into messages.
type frameConn struct {
	mu   sync.Mutex
	buf  []byte
	msgs []string
}

func (c *frameConn) Read([]byte) (int, error) { return 0, io.EOF }
func (c *frameConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.buf = append(c.buf, p...)
	for len(c.buf) >= 2 {
		n, h := int(c.buf[1]&0x7f), 2
		switch n {
		case 126:
			if len(c.buf) < 4 {
				return len(p), nil
			}
			n, h = int(binary.BigEndian.Uint16(c.buf[2:])), 4
		case 127:
			if len(c.buf) < 10 {
				return len(p), nil
			}
			n, h = int(binary.BigEndian.Uint64(c.buf[2:])), 10
		}
		if len(c.buf) < h+n {
			break
		}
		c.msgs = append(c.msgs, string(c.buf[h:h+n]))
		c.buf = c.buf[h+n:]
	}
	return len(p), nil
}
func (*frameConn) Close() error                     { return nil }
func (*frameConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (*frameConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (*frameConn) SetDeadline(time.Time) error      { return nil }
func (*frameConn) SetReadDeadline(time.Time) error  { return nil }
func (*frameConn) SetWriteDeadline(time.Time) error { return nil }

func (c *frameConn) messages() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.msgs...)
}

// lossyBroker is a memory broker that drops the history writes drop picks
// on their way in, and keeps the resync callback.
type lossyBroker struct {
	*MemoryBroker
	drop   func(*Message) bool
	resync func([]string)
}

func (b *lossyBroker) Start(h BrokerHandler) error {
	return b.MemoryBroker.Start(BrokerHandlerFunc(func(m *Message, skip []string) {
		if m.Offset > 0 && b.drop(m) {
			return
		}
		h.HandleMessage(m, skip)
	}))
}

func (b *lossyBroker) EnableHistory(resync func([]string)) error {
	b.resync = resync
	return nil
}

// positioned is a parsed positioned frame.
type positioned struct {
	Room   string          `json:"room"`
	Offset uint64          `json:"offset"`
	Epoch  string          `json:"epoch"`
	Data   json.RawMessage `json:"data"`
}

func waitFrames(t *testing.T, c *frameConn, n int) []string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		msgs := c.messages()
		if len(msgs) >= n {
			return msgs
		}
		if time.Now().After(deadline) {
			t.Fatalf("got %d frames, want %d: %v", len(msgs), n, msgs)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitIdle waits until room's sequencer on srv reads nothing.
func waitIdle(t *testing.T, srv *Server, room string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		q := srv.hist.lookup(room)
		q.mu.Lock()
		busy := q.fetching || q.gapTimer != nil
		q.mu.Unlock()
		if !busy {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the sequencer keeps reading")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A node that misses history writes (a gap in offsets, a lost last write
// the broker reports, a history that no longer reaches back, a lost
// history) repairs what it can from the history, in order, and counts
// what it cannot.
func TestHistoryNodeRepair(t *testing.T) {
	hub := NewMemoryHub()
	hist := func(string) HistoryOptions { return HistoryOptions{Size: 100} }
	a, err := New(Config{Broker: hub.NewBroker(), History: hist, PingInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Shutdown(context.Background()) })
	var dropping atomic.Bool
	lb := &lossyBroker{MemoryBroker: hub.NewBroker(), drop: func(m *Message) bool {
		return dropping.Load() || m.Offset%7 == 0 || m.Offset == 50
	}}
	b, err := New(Config{Broker: lb, History: hist, PingInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Shutdown(context.Background()) })

	pc, plc := &frameConn{}, &frameConn{}
	ps := detachedSpark(b, "pos", pc, nil)
	rec, err := ps.JoinRecover(t.Context(), "r", nil)
	if err != nil || rec.Position.Offset != 0 {
		t.Fatalf("JoinRecover: %+v, %v", rec, err)
	}
	epoch := rec.Position.Epoch
	if err := detachedSpark(b, "plain", plc, nil).Join("r"); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 50; i++ {
		if err := a.Room("r").Write(i); err != nil {
			t.Fatal(err)
		}
	}
	// 50 never came: nothing tells the node but the broker.
	waitFrames(t, pc, 49)
	lb.resync(nil)
	msgs := waitFrames(t, pc, 50)
	for i, m := range msgs {
		var p positioned
		if err := json.Unmarshal([]byte(m), &p); err != nil || p.Offset != uint64(i+1) || p.Epoch != epoch || string(p.Data) != fmt.Sprint(i+1) {
			t.Fatalf("frame %d: %s", i, m)
		}
	}
	for i, m := range waitFrames(t, plc, 50) {
		if m != fmt.Sprint(i+1) {
			t.Fatalf("plain frame %d: %s", i, m)
		}
	}
	if s := b.Stats(); s.HistoryGaps != 0 || s.HistoryResyncs == 0 {
		t.Fatalf("stats after repairs: %+v", s)
	}

	// 51..220 are lost to b, and the history keeps 100: 122..221 come back.
	waitIdle(t, b, "r")
	dropping.Store(true)
	for i := 51; i <= 220; i++ {
		if err := a.Room("r").Write(i); err != nil {
			t.Fatal(err)
		}
	}
	dropping.Store(false)
	if err := a.Room("r").Write(221); err != nil { // 221 % 7 == 4: it arrives
		t.Fatal(err)
	}
	msgs = waitFrames(t, pc, 150)
	for i, m := range msgs[50:] {
		var p positioned
		if err := json.Unmarshal([]byte(m), &p); err != nil || p.Offset != uint64(122+i) {
			t.Fatalf("after the gap, frame %d: %s", i, m)
		}
	}
	if s := b.Stats(); s.HistoryGaps != 1 {
		t.Fatalf("gaps = %d, want 1", s.HistoryGaps)
	}

	// The history is lost: a new epoch starts at offset 1.
	hub.history.mu.Lock()
	delete(hub.history.rooms, "r")
	hub.history.mu.Unlock()
	if err := a.Room("r").Write("new"); err != nil {
		t.Fatal(err)
	}
	msgs = waitFrames(t, pc, 151)
	var p positioned
	if err := json.Unmarshal([]byte(msgs[150]), &p); err != nil || p.Offset != 1 || p.Epoch == epoch || p.Epoch == "" {
		t.Fatalf("first write of the new epoch: %s", msgs[150])
	}
	if s := b.Stats(); s.HistoryGaps != 2 || s.HistoryRooms != 1 {
		t.Fatalf("stats after the new epoch: %+v", s)
	}

	// The room's last member leaves: its sequencer goes.
	ps.LeaveAll()
	b.Spark("plain").LeaveAll()
	if s := b.Stats(); s.HistoryRooms != 0 {
		t.Fatalf("history rooms after the last leave: %d", s.HistoryRooms)
	}
}

// Held writes are bounded: a flood of writes after a missing one keeps at
// most maxPending of them and reads the rest from the history.
func TestHistoryPendingBound(t *testing.T) {
	hub := NewMemoryHub()
	hist := func(string) HistoryOptions { return HistoryOptions{Size: MaxHistorySize} }
	a, err := New(Config{Broker: hub.NewBroker(), History: hist, PingInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Shutdown(context.Background()) })
	lb := &lossyBroker{MemoryBroker: hub.NewBroker(), drop: func(m *Message) bool { return m.Offset == 1 }}
	b, err := New(Config{Broker: lb, History: hist, PingInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Shutdown(context.Background()) })
	pc := &frameConn{}
	if _, err := detachedSpark(b, "pos", pc, nil).JoinRecover(t.Context(), "r", nil); err != nil {
		t.Fatal(err)
	}
	const n = maxPending + 500
	for i := 1; i <= n; i++ {
		if err := a.Room("r").Write(i); err != nil {
			t.Fatal(err)
		}
	}
	b.hist.mu.Lock()
	q := b.hist.rooms["r"]
	b.hist.mu.Unlock()
	q.mu.Lock()
	held := len(q.pending)
	q.mu.Unlock()
	if held > maxPending {
		t.Fatalf("%d writes held", held)
	}
	msgs := waitFrames(t, pc, n)
	for i, m := range msgs {
		var p positioned
		if err := json.Unmarshal([]byte(m), &p); err != nil || p.Offset != uint64(i+1) {
			t.Fatalf("frame %d: %s", i, m)
		}
	}
}
