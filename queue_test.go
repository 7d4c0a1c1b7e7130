package primus_test

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/primusgo/primus"
	"github.com/primusgo/primus/internal/testkit"
)

// A client that never reads is closed as a slow consumer once its queue
// overflows (its backlog dropped at once, the connection cut when its
// goodbye has waited WriteTimeout), while a reading client in the same
// room gets every message, in order, without waiting for it.
func TestSlowConsumer(t *testing.T) {
	const payload = 32 << 10
	ts := startServer(t, primus.Config{MaxQueueBytes: 256 << 10, WriteTimeout: 200 * time.Millisecond})
	slow := ts.dial(t, testkit.DialOptions{NoRead: true})
	slowSpark := ts.nextSpark(t)
	fast := ts.dial(t, testkit.DialOptions{ReadLimit: 1 << 20})
	fastSpark := ts.nextSpark(t)
	_ = slowSpark.Join("r")
	_ = fastSpark.Join("r")
	var ends []primus.CloseReason
	slowSpark.OnEnd(func(_ *primus.Spark, r primus.CloseReason) { ends = append(ends, r) })

	pad := strings.Repeat("x", payload)
	type msg struct {
		I   int    `json:"i"`
		Pad string `json:"pad"`
	}
	closedAt := -1
	for i := 0; i < 4000; i++ {
		if err := ts.Room("r").Write(msg{i, pad}); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
		// The reading client keeps up, message by message.
		f := fast.NextData(t)
		var m msg
		if err := json.Unmarshal(f.Data, &m); err != nil || m.I != i || len(m.Pad) != payload {
			t.Fatalf("fast client got message %d (%v), want %d", m.I, err, i)
		}
		if closedAt < 0 {
			if _, ok := ts.discs.TryGet(); ok {
				closedAt = i
			}
		} else if i >= closedAt+20 {
			break
		}
	}
	if closedAt < 0 {
		t.Fatal("the slow consumer was never closed")
	}
	t.Logf("slow consumer closed after %d messages of %d KiB", closedAt+1, payload>>10)
	if r := slowSpark.CloseReason(); r != primus.ReasonSlowConsumer {
		t.Fatalf("CloseReason %v, want %v", r, primus.ReasonSlowConsumer)
	}
	if len(ends) != 1 || ends[0] != primus.ReasonSlowConsumer {
		t.Fatalf("OnEnd reasons %v", ends)
	}
	st := ts.Stats()
	if st.SlowConsumers != 1 {
		t.Fatalf("Stats().SlowConsumers = %d, want 1", st.SlowConsumers)
	}
	if st.Drops == 0 {
		t.Error("Stats().Drops = 0")
	}
	if got := ts.Clients("r"); len(got) != 1 || got[0] != fastSpark.ID() {
		t.Fatalf("room members after the close: %v", got)
	}
	if fastSpark.CloseReason() != primus.ReasonNone {
		t.Fatal("the fast client was closed")
	}
	slow.Close()
}

// One frame larger than MaxQueueBytes is accepted when the queue is empty:
// the bound is on backlog, not on message size.
func TestLargeWriteToIdleSpark(t *testing.T) {
	ts := startServer(t, primus.Config{MaxQueueBytes: 1 << 10})
	c := ts.dial(t, testkit.DialOptions{ReadLimit: 1 << 20})
	s := ts.nextSpark(t)
	big := strings.Repeat("y", 64<<10)
	if err := s.Write(big); err != nil {
		t.Fatalf("Write: %v", err)
	}
	c.Expect(t, `"`+big+`"`)
	if s.CloseReason() != primus.ReasonNone || ts.Stats().SlowConsumers != 0 {
		t.Fatal("closed as a slow consumer")
	}
}

// Writes to one spark from many goroutines all arrive, each frame intact.
func TestConcurrentWrites(t *testing.T) {
	ts := startServer(t, primus.Config{})
	c := ts.dial(t, testkit.DialOptions{})
	s := ts.nextSpark(t)
	const writers, each = 8, 200
	done := make(chan struct{})
	for w := range writers {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := range each {
				if err := s.Write([2]int{w, i}); err != nil {
					t.Errorf("Write: %v", err)
					return
				}
			}
		}()
	}
	for range writers {
		<-done
	}
	next := make([]int, writers)
	for range writers * each {
		var v [2]int
		if err := json.Unmarshal(c.NextData(t).Data, &v); err != nil {
			t.Fatal(err)
		}
		if v[1] != next[v[0]] {
			t.Fatalf("writer %d: got %d, want %d (per-writer order lost)", v[0], v[1], next[v[0]])
		}
		next[v[0]]++
	}
	st := ts.Stats()
	if st.FramesOut != writers*each {
		t.Errorf("FramesOut = %d, want %d", st.FramesOut, writers*each)
	}
	if st.Writes == 0 || st.Writes > st.FramesOut {
		t.Errorf("Writes = %d for %d frames", st.Writes, st.FramesOut)
	}
}

// A client that stops reading for a while and then catches up gets every
// message intact and in order: the writes that found its socket full
// continue, from the byte where they stopped, on a writer of its own.
func TestBackloggedClientCatchesUp(t *testing.T) {
	_, c, s := crampedSpark(t, 0)
	var want []string
	for i := range 400 {
		n := 1 + (i*37)%300
		if i%40 == 3 {
			n = 100<<10 + i // larger than a flusher copies
		}
		m := fmt.Sprintf("%d:%s", i, strings.Repeat(string(rune('a'+i%26)), n))
		want = append(want, m)
		if err := s.Write(m); err != nil {
			t.Fatalf("Write %d: %v", i, err)
		}
	}
	for i, w := range want {
		op, p, err := c.ReadFrame()
		if err != nil {
			t.Fatalf("reading message %d: %v", i, err)
		}
		var got string
		if op != 0x1 || json.Unmarshal(p, &got) != nil || got != w {
			t.Fatalf("message %d: op %d, %d bytes %.20q..., want %.20q...", i, op, len(p), p, w)
		}
	}
	if r := s.CloseReason(); r != primus.ReasonNone {
		t.Fatalf("spark closed: %v", r)
	}
}

// A client that stops reading, with a queue bound too large to overflow,
// is closed once a write has waited WriteTimeout for its socket.
func TestWriteTimeout(t *testing.T) {
	ts, _, s := crampedSpark(t, 200*time.Millisecond)
	chunk := strings.Repeat("z", 64<<10)
	for range 64 { // 4 MiB: far more than both socket buffers hold
		if err := s.Write(chunk); errors.Is(err, primus.ErrSparkClosed) {
			break // on a slow machine the timeout may strike before the end
		} else if err != nil {
			t.Fatalf("Write: %v", err)
		}
	}
	if got := ts.nextDisconnection(t); got != s {
		t.Fatalf("disconnected %s, want %s", got.ID(), s.ID())
	}
	if r := s.CloseReason(); r != primus.ReasonWriteError {
		t.Fatalf("CloseReason %v, want %v", r, primus.ReasonWriteError)
	}
}

// A spark whose writes once went through a writer goroutine (its socket
// was full for a moment) keeps working after WriteTimeout has passed: the
// writer's deadline does not outlive it.
func TestNoStaleWriteDeadline(t *testing.T) {
	const timeout = time.Second
	_, c, s := crampedSpark(t, timeout)
	const n = 32 // 2 MiB: more than the socket buffers, so a writer goroutine takes over
	chunk := writeChunks(t, s, n)
	for i := range n {
		if _, p, err := c.ReadFrame(); err != nil || len(p) != len(chunk)+2 {
			t.Fatalf("frame %d: %d bytes, %v", i, len(p), err)
		}
	}
	// The bug needs the old deadline to pass; there is no event for that.
	time.Sleep(timeout + 100*time.Millisecond)
	if err := s.Write("after"); err != nil {
		t.Fatalf("Write after the pause: %v", err)
	}
	if _, p, err := c.ReadFrame(); err != nil || string(p) != `"after"` {
		t.Fatalf("after the pause: %q, %v (CloseReason %v)", p, err, s.CloseReason())
	}
	if r := s.CloseReason(); r != primus.ReasonNone {
		t.Fatalf("spark closed: %v", r)
	}
}

// WriteTimeout is for a client that takes nothing: one that reads slowly
// but steadily is not cut off, however long its backlog takes.
func TestSlowReaderNotCutOff(t *testing.T) {
	const timeout = time.Second
	_, c, s := crampedSpark(t, timeout)
	const n = 20
	chunk := writeChunks(t, s, n)
	start := time.Now()
	for i := range n {
		if _, p, err := c.ReadFrame(); err != nil || len(p) != len(chunk)+2 {
			t.Fatalf("frame %d after %v: %d bytes, %v (CloseReason %v)", i, time.Since(start), len(p), err, s.CloseReason())
		}
		time.Sleep(100 * time.Millisecond) // a slow reader, by design
	}
	if d := time.Since(start); d < timeout {
		t.Fatalf("the backlog took %v, less than WriteTimeout: the test proves nothing", d)
	}
	if r := s.CloseReason(); r != primus.ReasonNone {
		t.Fatalf("spark closed: %v", r)
	}
}

// crampedSpark connects a raw client to a server with a queue bound too
// large to overflow and the given WriteTimeout (0: the default), with the
// spark's send buffer and the client's receive buffer at 16 KiB, so that a
// few hundred KiB fill the socket.
func crampedSpark(t *testing.T, writeTimeout time.Duration) (*testServer, *testkit.Raw, *primus.Spark) {
	t.Helper()
	ts := startServer(t, primus.Config{MaxQueueBytes: 64 << 20, WriteTimeout: writeTimeout})
	c := ts.rawDial(t, testkit.RawOptions{})
	if err := c.Conn.(*net.TCPConn).SetReadBuffer(16 << 10); err != nil {
		t.Fatal(err)
	}
	s := ts.nextSpark(t)
	if err := primus.ShrinkSendBuffer(s, 16<<10); err != nil {
		t.Fatal(err)
	}
	return ts, c, s
}

// writeChunks writes n copies of a 64 KiB string to s and returns it.
func writeChunks(t *testing.T, s *primus.Spark, n int) string {
	t.Helper()
	chunk := strings.Repeat("c", 64<<10)
	for range n {
		if err := s.Write(chunk); err != nil {
			t.Fatalf("Write: %v", err)
		}
	}
	return chunk
}

// One large message does not end the readers of a room: with the default
// bounds (MaxLength 10 MiB above MaxQueueBytes 4 MiB), a 9 MB write to 20
// members that read as fast as they can, followed at once by a small one,
// reaches every member whole, and nobody is a slow consumer.
func TestLargeMessageDoesNotEndReaders(t *testing.T) {
	ts := startServer(t, primus.Config{})
	const members = 20
	var clients []*testkit.Client
	for range members {
		clients = append(clients, ts.dial(t, testkit.DialOptions{ReadLimit: 16 << 20}))
		if err := ts.nextSpark(t).Join("r"); err != nil {
			t.Fatal(err)
		}
	}
	big := json.RawMessage(`"` + strings.Repeat("b", 9_000_000) + `"`)
	if err := ts.Room("r").Write(big); err != nil {
		t.Fatal(err)
	}
	if err := ts.Room("r").Write("small"); err != nil {
		t.Fatal(err)
	}
	// 180 MB to read: more time than testkit.Timeout on a busy machine under -race.
	ctx, cancel := context.WithTimeout(context.Background(), 6*testkit.Timeout)
	defer cancel()
	for i, c := range clients {
		for _, want := range []int{len(big), len(`"small"`)} {
			f, ok := c.Frames.Get(ctx)
			for ok && f.IsPing() {
				f, ok = c.Frames.Get(ctx)
			}
			if !ok || len(f.Data) != want {
				t.Fatalf("client %d: got %d bytes (%v), want %d", i, len(f.Data), c.Err(), want)
			}
		}
	}
	if st := ts.Stats(); st.SlowConsumers != 0 || st.Connections != members {
		t.Fatalf("%d slow consumers, %d connections left of %d", st.SlowConsumers, st.Connections, members)
	}
}

// A slow consumer whose socket still takes writes gets a close frame (1013)
// after what was already being written; its backlog is dropped. (A TLS
// connection is written by a writer goroutine, never "stalled", so the
// close frame is queued even while the client does not read; the test
// then reads.)
func TestSlowConsumerGetsCloseFrame(t *testing.T) {
	ts := startServer(t, primus.Config{MaxQueueBytes: 256 << 10}, func(hs *httptest.Server) { hs.TLS = &tls.Config{} })
	c := ts.rawDial(t, testkit.RawOptions{})
	s := ts.nextSpark(t)
	chunk := strings.Repeat("q", 64<<10)
	writes := 0
	for ; writes < 2000; writes++ { // at most 128 MiB: far more than socket buffers hold
		if err := s.Write(chunk); errors.Is(err, primus.ErrSparkClosed) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
	}
	if st := ts.Stats(); st.SlowConsumers != 1 {
		t.Fatalf("after %d writes: %d slow consumers", writes, st.SlowConsumers)
	}
	data := 0
	for {
		op, p, err := c.ReadFrame()
		if err != nil {
			t.Fatalf("after %d data frames: %v", data, err)
		}
		if op == 0x1 {
			data++
			continue
		}
		if op != 0x8 || len(p) < 2 || binary.BigEndian.Uint16(p) != 1013 || string(p[2:]) != "slow consumer" {
			t.Fatalf("got op %d %q, want close 1013 slow consumer", op, p)
		}
		break
	}
	if data > writes {
		t.Fatalf("%d data frames of %d writes arrived", data, writes)
	}
	if _, err := c.Write(testkit.BuildFrame(0x88, nil, true)); err != nil {
		t.Fatal(err)
	}
	if got := ts.nextDisconnection(t); got != s || s.CloseReason() != primus.ReasonSlowConsumer {
		t.Fatalf("disconnected %s with %v", got.ID(), got.CloseReason())
	}
}

// A TLS client that keeps reading receives far more than MaxQueueBytes in
// all without being taken for a slow consumer (its writes go through a
// writer goroutine, whose written frames must leave the backlog).
func TestTLSReaderReceivesMoreThanTheBound(t *testing.T) {
	ts := startServer(t, primus.Config{MaxQueueBytes: 64 << 10}, func(hs *httptest.Server) { hs.TLS = &tls.Config{} })
	c := ts.dial(t, testkit.DialOptions{})
	s := ts.nextSpark(t)
	chunk := strings.Repeat("t", 16<<10)
	for i := range 100 { // 1.6 MB: 25 times the bound
		if err := s.Write(chunk); err != nil {
			t.Fatalf("write %d: %v (CloseReason %v)", i, err, s.CloseReason())
		}
		if f := c.NextData(t); len(f.Data) != len(chunk)+2 {
			t.Fatalf("message %d: %d bytes", i, len(f.Data))
		}
	}
	if st := ts.Stats(); st.SlowConsumers != 0 {
		t.Fatalf("%d slow consumers", st.SlowConsumers)
	}
}

// With the default bound (twice MaxLength), a burst of two messages of
// about MaxLength does not end readers either.
func TestTwoLargeMessagesDoNotEndReaders(t *testing.T) {
	ts := startServer(t, primus.Config{})
	var clients []*testkit.Client
	for range 5 {
		clients = append(clients, ts.dial(t, testkit.DialOptions{ReadLimit: 16 << 20}))
		if err := ts.nextSpark(t).Join("r"); err != nil {
			t.Fatal(err)
		}
	}
	big := json.RawMessage(`"` + strings.Repeat("b", 10_000_000) + `"`)
	for range 2 {
		if err := ts.Room("r").Write(big); err != nil {
			t.Fatal(err)
		}
	}
	if err := ts.Room("r").Write("small"); err != nil {
		t.Fatal(err)
	}
	for i, c := range clients {
		for _, want := range []int{len(big), len(big), len(`"small"`)} {
			if f := c.NextDataWithin(t, 6*testkit.Timeout); len(f.Data) != want {
				t.Fatalf("client %d: %d bytes, want %d", i, len(f.Data), want)
			}
		}
	}
	if st := ts.Stats(); st.SlowConsumers != 0 {
		t.Fatalf("%d slow consumers", st.SlowConsumers)
	}
}
