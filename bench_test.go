package primus

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// discardConn is the client end of a benchmark spark: writes vanish (and
// are counted), reads end at once. Benchmarks measure the server's side of
// a broadcast: encode once, enqueue to every member, write each queue.
type discardConn struct{ written *atomic.Int64 }

func (c discardConn) Read([]byte) (int, error) { return 0, io.EOF }
func (c discardConn) Write(p []byte) (int, error) {
	c.written.Add(int64(len(p)))
	return len(p), nil
}
func (discardConn) Close() error                     { return nil }
func (discardConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (discardConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (discardConn) SetDeadline(time.Time) error      { return nil }
func (discardConn) SetReadDeadline(time.Time) error  { return nil }
func (discardConn) SetWriteDeadline(time.Time) error { return nil }

type benchServer struct {
	*Server
	written atomic.Int64
	sparks  []*Spark
}

// sink is where a benchmark spark's frames go.
type sink int

const (
	// sinkDevNull: an open /dev/null behind the spark's raw connection, so
	// frames take the production path (flushers, non-blocking write(2))
	// with the cheapest real system call.
	sinkDevNull sink = iota
	// sinkConn: a net.Conn that is not a socket (as a TLS connection), so
	// every woken spark gets a writer goroutine.
	sinkConn
)

// newBenchServer returns a server with n registered sparks that have no
// reader goroutine; only their writers run.
func newBenchServer(tb testing.TB, n int, to sink) *benchServer {
	tb.Helper()
	srv, err := New(Config{PingInterval: -1})
	if err != nil {
		tb.Fatal(err)
	}
	bs := &benchServer{Server: srv}
	for i := range n {
		var raw syscall.RawConn
		if to == sinkDevNull {
			f, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
			if err != nil {
				tb.Fatal(err)
			}
			tb.Cleanup(func() { f.Close() })
			if raw, err = f.SyscallConn(); err != nil {
				tb.Fatal(err)
			}
		}
		bs.sparks = append(bs.sparks, detachedSpark(srv, fmt.Sprintf("spark-%06d", i), discardConn{&bs.written}, raw))
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			tb.Errorf("Shutdown: %v", err)
		}
	})
	return bs
}

var benchPayload = map[string]any{"type": "tick", "room": "r", "seq": 12345, "data": "0123456789abcdef0123456789abcdef"}

// BenchmarkBroadcast10k: one room write to 10,000 local sparks. The value
// is encoded once and the same frame is queued to every spark; each op
// includes waking the writers, and the timer runs until every frame is
// written. "devnull" is the production path (flushers writing to a file
// descriptor), "conn" the fallback for connections that are not sockets.
func BenchmarkBroadcast10k(b *testing.B) {
	for _, c := range []struct {
		name string
		to   sink
	}{{"devnull", sinkDevNull}, {"conn", sinkConn}} {
		b.Run(c.name, func(b *testing.B) { benchmarkBroadcast(b, 10_000, c.to) })
	}
}

func benchmarkBroadcast(b *testing.B, n int, to sink) {
	bs := newBenchServer(b, n, to)
	for _, s := range bs.sparks {
		if err := s.Join("r"); err != nil {
			b.Fatal(err)
		}
	}
	room := bs.Room("r")
	b.ReportAllocs()
	ops := 0
	for b.Loop() {
		if err := room.Write(benchPayload); err != nil {
			b.Fatal(err)
		}
		ops++
	}
	bs.pool.Wait() // every writer finished
	b.StopTimer()
	if got, want := bs.writeStats.FramesOut.Load(), uint64(ops*n); got != want {
		b.Fatalf("%d frames written, want %d", got, want)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(ops*n), "ns/delivery")
}

// BenchmarkMultiRoomDedupe: a write to 3 rooms whose 1,000 members are in
// all three; every spark gets the frame once.
func BenchmarkMultiRoomDedupe(b *testing.B) {
	const n = 1000
	bs := newBenchServer(b, n, sinkDevNull)
	for _, s := range bs.sparks {
		if err := s.Join("a", "b", "c"); err != nil {
			b.Fatal(err)
		}
	}
	room := bs.Room("a", "b", "c")
	b.ReportAllocs()
	ops := 0
	for b.Loop() {
		if err := room.Write(benchPayload); err != nil {
			b.Fatal(err)
		}
		ops++
	}
	bs.pool.Wait()
	b.StopTimer()
	if got, want := bs.stats.deliveries.Load(), uint64(ops*n); got != want {
		b.Fatalf("%d deliveries, want %d (a spark got a frame twice?)", got, want)
	}
}

// BenchmarkJoinLeaveChurn: a spark joins a room it is alone in and leaves
// it, so every op creates and frees a room (and subscribes and unsubscribes
// it at the broker).
func BenchmarkJoinLeaveChurn(b *testing.B) {
	const n, rooms = 1000, 100
	bs := newBenchServer(b, n, sinkDevNull)
	names := make([]string, rooms)
	for i := range names {
		names[i] = fmt.Sprintf("room-%d", i)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		s := bs.sparks[i%n]
		room := names[i%rooms]
		if err := s.Join(room); err != nil {
			b.Fatal(err)
		}
		s.Leave(room)
		i++
	}
	b.StopTimer()
	if r := bs.index.count(); r != 0 {
		b.Fatalf("%d rooms left", r)
	}
}

// BenchmarkJoinLeaveChurnParallel: the same from every P at once, on
// different sparks and rooms (the index is sharded by room).
func BenchmarkJoinLeaveChurnParallel(b *testing.B) {
	const n = 1000
	bs := newBenchServer(b, n, sinkDevNull)
	var next atomic.Int64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		g := int(next.Add(1))
		i := 0
		for pb.Next() {
			s := bs.sparks[(g*97+i)%n]
			room := fmt.Sprintf("g%d-%d", g, i%50)
			if err := s.Join(room); err != nil {
				b.Fatal(err)
			}
			s.Leave(room)
			i++
		}
	})
	if r := bs.index.count(); r != 0 {
		b.Fatalf("%d rooms left", r)
	}
}
