package writer

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// failures records a writer's OnFail calls.
type failures struct {
	mu    sync.Mutex
	calls []string
	cut   chan struct{} // closed at the first call with cut
	conn  net.Conn
}

func newFailures(conn net.Conn) *failures { return &failures{cut: make(chan struct{}), conn: conn} }

func (f *failures) onFail(fl Failure, cut bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, fmt.Sprintf("%d/%v", fl, cut))
	if cut {
		select {
		case <-f.cut:
		default:
			close(f.cut)
			_ = f.conn.Close() // what a spark does
		}
	}
}

func (f *failures) get() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

// rig is a Writer on the server end of a loopback TCP connection whose
// send buffer is small (tcpPair), with the client end to read from.
type rig struct {
	pool   *Pool
	stats  *Stats
	w      *Writer
	client *net.TCPConn
	fails  *failures
}

func newRig(t *testing.T, maxBacklog int, timeout time.Duration, raw bool) *rig {
	t.Helper()
	server, client := tcpPair(t)
	r := &rig{stats: &Stats{}, w: &Writer{}, client: client, fails: newFailures(server)}
	r.pool = NewPool(2, r.stats)
	cfg := Config{Conn: server, MaxBacklog: maxBacklog, WriteTimeout: timeout, Goodbye: []byte("BYE"), OnFail: r.fails.onFail}
	if raw {
		cfg.Raw = RawConnOf(server)
	}
	r.w.Init(r.pool, cfg)
	t.Cleanup(func() {
		server.Close()
		r.w.Discard()
		r.pool.Wait()
	})
	return r
}

// readAll reads n bytes from the client end.
func (r *rig) readAll(t *testing.T, n int) []byte {
	t.Helper()
	_ = r.client.SetReadDeadline(time.Now().Add(10 * time.Second))
	b := make([]byte, n)
	if _, err := io.ReadFull(r.client, b); err != nil {
		t.Fatalf("reading %d bytes: %v", n, err)
	}
	return b
}

func frame(i, size int) []byte {
	p := fmt.Sprintf("<%d:", i)
	return []byte(p + strings.Repeat("x", max(0, size-len(p)-1)) + ">")
}

// Everything pushed arrives once, in order, through flushers and (when
// the socket fills) a writer goroutine, for raw sockets and plain conns.
func TestOrderAndCompleteness(t *testing.T) {
	for _, raw := range []bool{true, false} {
		t.Run(fmt.Sprintf("raw=%v", raw), func(t *testing.T) {
			r := newRig(t, 64<<20, 10*time.Second, raw)
			var want bytes.Buffer
			for i := range 2000 {
				f := frame(i, 1+(i*131)%3000)
				if !r.w.Push(f) {
					t.Fatalf("Push %d refused", i)
				}
				want.Write(f)
			}
			if got := r.readAll(t, want.Len()); !bytes.Equal(got, want.Bytes()) {
				t.Fatal("the stream differs from what was pushed")
			}
			r.w.Drain(10 * time.Second)
			if n := r.stats.FramesOut.Load(); n != 2000 {
				t.Fatalf("FramesOut = %d", n)
			}
			if len(r.fails.get()) != 0 {
				t.Fatalf("failures %v", r.fails.get())
			}
		})
	}
}

// A client that takes nothing makes the backlog overflow: the writer fails
// as a slow consumer without asking for a cut (its goodbye is queued
// behind what is being written; a client that takes nothing more is cut
// when a write has waited WriteTimeout, see TestSlowReaderAndDeadPeer, or
// by its connection's read deadline).
func TestNonReaderOverflow(t *testing.T) {
	r := newRig(t, 256<<10, 10*time.Second, true)
	chunk := bytes.Repeat([]byte("f"), 32<<10)
	pushed := 0
	for ; pushed < 10000 && r.w.Push(chunk); pushed++ {
	}
	if got := r.fails.get(); len(got) != 1 || got[0] != fmt.Sprintf("%d/false", SlowConsumer) {
		t.Fatalf("OnFail calls %v", got)
	}
	if r.stats.SlowConsumers.Load() != 1 || r.stats.Drops.Load() == 0 {
		t.Fatalf("stats: %d slow consumers, %d drops", r.stats.SlowConsumers.Load(), r.stats.Drops.Load())
	}
	if r.w.Push([]byte("late")) {
		t.Fatal("a failed writer accepted a frame")
	}
	if f := r.w.Discard(); f != SlowConsumer {
		t.Fatalf("Discard = %v", f)
	}
	t.Logf("overflow after %d frames of 32 KiB", pushed)
}

// A slow consumer that keeps reading, however slowly, gets its goodbye
// after what was being written (the socket full at the overflow).
func TestSlowReaderGetsGoodbye(t *testing.T) {
	r := newRig(t, 64<<10, 10*time.Second, true)
	chunk := bytes.Repeat([]byte("g"), 16<<10)
	for r.w.Push(chunk) {
	}
	_ = r.client.SetReadDeadline(time.Now().Add(10 * time.Second))
	var tail []byte
	buf := make([]byte, 8<<10)
	for !bytes.HasSuffix(tail, []byte("BYE")) {
		n, err := r.client.Read(buf)
		if err != nil {
			t.Fatalf("no goodbye: %v (failures %v)", err, r.fails.get())
		}
		tail = append(tail[max(0, len(tail)-8):], buf[:n]...)
		time.Sleep(time.Millisecond) // a slow reader, by design
	}
	if got := r.fails.get(); len(got) != 1 || got[0] != fmt.Sprintf("%d/false", SlowConsumer) {
		t.Fatalf("OnFail calls %v", got)
	}
}

// A backlog that overflows while the socket still takes writes (here a
// plain conn: written by a goroutine, never stalled) drops the backlog and
// sends the goodbye after what was being written, without a cut.
func TestOverflowSaysGoodbye(t *testing.T) {
	r := newRig(t, 100, 10*time.Second, false)
	if !r.w.Push([]byte("first-frame-of-many-bytes")) {
		t.Fatal("first Push refused")
	}
	for i := 0; r.w.Push(frame(i, 60)); i++ {
	}
	if got := r.fails.get(); len(got) != 1 || got[0] != fmt.Sprintf("%d/false", SlowConsumer) {
		t.Fatalf("OnFail calls %v", got)
	}
	// The client reads until the goodbye: whatever was being written (the
	// first frame, if the writer had taken it), then BYE.
	_ = r.client.SetReadDeadline(time.Now().Add(10 * time.Second))
	var got []byte
	buf := make([]byte, 4096)
	for !bytes.HasSuffix(got, []byte("BYE")) {
		n, err := r.client.Read(buf)
		if err != nil {
			t.Fatalf("after %q: %v", got, err)
		}
		got = append(got, buf[:n]...)
	}
	if string(got) != "BYE" && !bytes.HasPrefix(got, []byte("first-frame-of-many-bytes")) || len(got) > 25+100+3 {
		t.Fatalf("client read %q", got)
	}
}

// One frame larger than the bound is accepted, and frames behind it are
// bounded by the backlog besides it: a reader is not ended by one large
// frame.
func TestLargestFrameIsFree(t *testing.T) {
	r := newRig(t, 1<<10, 10*time.Second, true)
	big := bytes.Repeat([]byte("B"), 1<<20)
	if !r.w.Push(big) || !r.w.Push([]byte("small")) {
		t.Fatal("refused a large frame or the small one behind it")
	}
	if got := r.readAll(t, len(big)+5); !bytes.Equal(got[len(big):], []byte("small")) {
		t.Fatal("wrong stream")
	}
	r.w.Drain(10 * time.Second)
	// Once it is out, the bound is the bound again.
	if !r.w.Push(bytes.Repeat([]byte("s"), 800)) {
		t.Fatal("refused after the large frame left")
	}
	if len(r.fails.get()) != 0 {
		t.Fatalf("failures %v", r.fails.get())
	}
}

// A slow but steady reader is never cut off, however long the backlog
// takes; one that takes nothing for WriteTimeout is.
func TestSlowReaderAndDeadPeer(t *testing.T) {
	t.Run("slow reader", func(t *testing.T) {
		r := newRig(t, 64<<20, 300*time.Millisecond, true)
		chunk := bytes.Repeat([]byte("s"), 64<<10)
		const n = 12 // well over both socket buffers
		for range n {
			r.w.Push(chunk)
		}
		start := time.Now()
		for range n {
			r.readAll(t, len(chunk))
			time.Sleep(60 * time.Millisecond) // a slow reader, by design
		}
		if time.Since(start) < 300*time.Millisecond {
			t.Fatal("the backlog took less than WriteTimeout: the test proves nothing")
		}
		if len(r.fails.get()) != 0 {
			t.Fatalf("a slow reader failed: %v", r.fails.get())
		}
	})
	t.Run("dead peer", func(t *testing.T) {
		r := newRig(t, 64<<20, 200*time.Millisecond, true)
		chunk := bytes.Repeat([]byte("d"), 64<<10)
		for i := 0; i < 128 && r.w.Push(chunk); i++ {
		}
		select {
		case <-r.fails.cut:
		case <-time.After(10 * time.Second):
			t.Fatal("a peer that takes nothing was never cut")
		}
		if got := r.fails.get(); got[0] != fmt.Sprintf("%d/true", WriteError) {
			t.Fatalf("OnFail calls %v", got)
		}
		if f := r.w.Discard(); f != WriteError {
			t.Fatalf("Discard = %v", f)
		}
	})
}

// Closing a connection with frames queued (a shutdown): Discard drops them,
// every goroutine of the pool ends, nothing more is accepted.
func TestDiscardWithFramesQueued(t *testing.T) {
	stats := &Stats{}
	pool := NewPool(2, stats)
	var ws []*Writer
	for range 8 {
		server, _ := tcpPair(t) // the client never reads
		w := &Writer{}
		w.Init(pool, Config{Conn: server, Raw: RawConnOf(server), MaxBacklog: 64 << 20, WriteTimeout: time.Minute, OnFail: func(Failure, bool) {}})
		ws = append(ws, w)
		for range 64 { // 4 MiB: the socket fills, a writer goroutine waits
			w.Push(bytes.Repeat([]byte("q"), 64<<10))
		}
	}
	for _, w := range ws {
		w.cfg.Conn.Close()
		if f := w.Discard(); f != None && f != WriteError {
			t.Fatalf("Discard = %v", f)
		}
		if w.Push([]byte("x")) {
			t.Fatal("a discarded writer accepted a frame")
		}
	}
	done := make(chan struct{})
	go func() { pool.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the pool's goroutines did not end")
	}
}

// Drain waits for what is queued, and returns at once when idle.
func TestDrain(t *testing.T) {
	r := newRig(t, 64<<20, 10*time.Second, true)
	r.w.Drain(time.Minute) // idle: at once
	r.w.PushFinal([]byte("last"))
	if r.w.Push([]byte("after")) {
		t.Fatal("accepted a frame after the final one")
	}
	if !r.w.Drain(10 * time.Second) {
		t.Fatal("Drain: not everything was written")
	}
	if got := r.readAll(t, 4); string(got) != "last" {
		t.Fatalf("read %q", got)
	}
}

// What a writer goroutine wrote leaves the backlog: a client that keeps
// up is never a slow consumer however much it receives in total. (Writes
// through net.Buffers empty the frames in place; the backlog once never
// shrank on this path, so every TLS client was cut after MaxBacklog bytes.)
func TestBacklogShrinksAfterBlockingWrites(t *testing.T) {
	for _, raw := range []bool{false, true} {
		t.Run(fmt.Sprintf("raw=%v", raw), func(t *testing.T) {
			r := newRig(t, 256<<10, 10*time.Second, raw)
			frame := bytes.Repeat([]byte("k"), 100<<10)
			for round := range 20 { // 300 KB a round, 6 MB in all: far over the bound
				for range 3 {
					if !r.w.Push(frame) {
						t.Fatalf("round %d: refused (%v)", round, r.fails.get())
					}
				}
				r.readAll(t, 3*len(frame))
				if !r.w.Drain(10 * time.Second) {
					t.Fatalf("round %d: not drained", round)
				}
			}
			r.w.mu.Lock()
			bytes, largest := r.w.bytes, r.w.largest
			r.w.mu.Unlock()
			if bytes != 0 || largest != 0 || len(r.fails.get()) != 0 {
				t.Fatalf("after 6 MB: backlog %d, largest %d, failures %v", bytes, largest, r.fails.get())
			}
		})
	}
}
