package primus

import (
	"fmt"
	"io"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"
)

// recordConn remembers the backing array of every buffer written to it.
type recordConn struct {
	mu   sync.Mutex
	ptrs []*byte
}

func (c *recordConn) Read([]byte) (int, error) { return 0, io.EOF }
func (c *recordConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.ptrs = append(c.ptrs, &p[0])
	c.mu.Unlock()
	return len(p), nil
}
func (*recordConn) Close() error                     { return nil }
func (*recordConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (*recordConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (*recordConn) SetDeadline(time.Time) error      { return nil }
func (*recordConn) SetReadDeadline(time.Time) error  { return nil }
func (*recordConn) SetWriteDeadline(time.Time) error { return nil }

// detachedSpark registers a spark that has no reader goroutine: tests and
// benchmarks drive its writes directly. raw may be nil (no socket).
func detachedSpark(srv *Server, id string, conn net.Conn, raw syscall.RawConn) *Spark {
	s := &Spark{srv: srv, id: id, conn: conn}
	s.out.Init(srv.pool, srv.writerConfig(s, conn, raw))
	s.alive.Store(true)
	srv.addSpark(s)
	return s
}

// A room write is encoded once: every member's writer writes the very
// same frame bytes, also when the write spans several rooms.
func TestBroadcastSharesOneFrame(t *testing.T) {
	srv, err := New(Config{PingInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Shutdown(t.Context()) })
	var conns []*recordConn
	for i := range 50 {
		c := &recordConn{}
		s := detachedSpark(srv, string(rune('A'+i)), c, nil)
		if err := s.Join("r", string(rune('a'+i%3))); err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	for _, room := range []Room{srv.Room("r"), srv.Room("a", "b", "c", "r")} {
		for _, c := range conns {
			c.ptrs = nil
		}
		if err := room.Write(map[string]int{"x": 1}); err != nil {
			t.Fatal(err)
		}
		srv.pool.Wait() // the writers are done
		first := conns[0].ptrs
		for i, c := range conns {
			if len(c.ptrs) != 1 || c.ptrs[0] != first[0] {
				t.Fatalf("%v: spark %d wrote %d buffers, shared=%v", room.rooms, i, len(c.ptrs), len(c.ptrs) == 1 && c.ptrs[0] == first[0])
			}
		}
	}
}

// A message from another node that names a room many times (a hostile
// publisher on Redis) costs time linear in its size, not in its size times
// the room's members, and reaches each member once.
func TestRemoteRoomListsAreDeduplicated(t *testing.T) {
	srv, err := New(Config{PingInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Shutdown(t.Context()) })
	var conns []*recordConn
	for i := range 1000 {
		c := &recordConn{}
		if err := detachedSpark(srv, fmt.Sprint("s", i), c, nil).Join("big", "other"); err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	rooms := make([]string, 200_000)
	for i := range rooms {
		rooms[i] = "big"
	}
	start := time.Now()
	srv.deliverRemote(&Message{Rooms: append(rooms, "other"), Data: []byte(`"skipped"`)}, rooms)
	srv.deliverRemote(&Message{Rooms: append(rooms, "other"), Data: []byte(`"once"`)}, nil)
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("two 200 000-room messages to 1 000 members took %v (quadratic?)", d)
	}
	srv.pool.Wait()
	for i, c := range conns {
		if c.mu.Lock(); len(c.ptrs) != 1 {
			t.Fatalf("spark %d got %d frames, want 1", i, len(c.ptrs))
		}
		c.mu.Unlock()
	}
}
