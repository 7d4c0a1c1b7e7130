//go:build unix

package writer

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"slices"
	"testing"
	"time"
)

func TestUnsent(t *testing.T) {
	batch := func() [][]byte { return [][]byte{[]byte("abc"), []byte("de"), []byte("fghi")} }
	for sent, want := range []string{"abcdefghi", "bcdefghi", "cdefghi", "defghi", "efghi", "fghi", "ghi", "hi", "i", ""} {
		got := unsent(batch(), sent)
		if s := string(bytes.Join(got, nil)); s != want {
			t.Errorf("unsent(%d) = %q, want %q", sent, s, want)
		}
		if len(got) > 0 && len(got[0]) == 0 {
			t.Errorf("unsent(%d) starts with an empty frame", sent)
		}
	}
}

// tcpPair returns both ends of a loopback TCP connection with small
// send buffer, so that a few hundred KiB fill it.
func tcpPair(t *testing.T) (server, client *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s := <-accepted
	if s == nil {
		t.Fatal("accept failed")
	}
	server, client = s.(*net.TCPConn), c.(*net.TCPConn)
	_ = server.SetWriteBuffer(16 << 10)
	t.Cleanup(func() { server.Close(); client.Close() })
	return server, client
}

// A non-blocking write that stops at a full socket buffer reports what it
// wrote; a blocking write of the rest completes the stream: nothing is lost,
// repeated or reordered, whether the stop falls inside a coalesced run of
// small frames or inside a frame too large to copy.
func TestWriteNonblockingThenRest(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 8 {
		server, client := tcpPair(t)
		raw := RawConnOf(server)
		if raw == nil {
			t.Fatal("no raw conn for a TCP connection")
		}
		var batch [][]byte
		var want []byte
		for i := range 200 {
			n := 1 + rng.IntN(200)
			if i%25 == 7 {
				n = coalesceLimit + rng.IntN(coalesceLimit) // too large to copy
			}
			f := bytes.Repeat([]byte{byte('a' + (i+round)%26)}, n)
			batch = append(batch, f)
			want = append(want, f...)
		}
		w := newRawWriter()
		sent, calls, err := w.write(raw, slices.Clone(batch))
		if !errors.Is(err, errWouldBlock) || sent <= 0 || sent >= len(want) || calls < 1 {
			t.Fatalf("round %d: rawWriter.write = %d, %v; want a partial write (%d bytes) and errWouldBlock", round, sent, err, len(want))
		}
		if len(w.scratch) > coalesceLimit {
			t.Fatalf("scratch grew to %d bytes", len(w.scratch))
		}
		done := make(chan error, 1)
		go func() {
			_ = server.SetWriteDeadline(time.Now().Add(10 * time.Second))
			rest := unsent(batch, sent)
			_, err := rest.WriteTo(server)
			server.CloseWrite()
			done <- err
		}()
		_ = client.SetReadDeadline(time.Now().Add(10 * time.Second))
		got, err := io.ReadAll(client)
		if err != nil {
			t.Fatal(err)
		}
		if err := <-done; err != nil {
			t.Fatalf("writing the rest: %v", err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("round %d: stream differs (got %d bytes, want %d)", round, len(got), len(want))
		}
	}
}

// Small frames queued together leave in one write(2), in order.
func TestWriteNonblockingCoalesces(t *testing.T) {
	server, client := tcpPair(t)
	var batch [][]byte
	var want []byte
	for i := range 10 {
		f := bytes.Repeat([]byte{byte('0' + i)}, 100)
		batch = append(batch, f)
		want = append(want, f...)
	}
	sent, calls, err := newRawWriter().write(RawConnOf(server), batch)
	if err != nil || sent != len(want) || calls != 1 {
		t.Fatalf("rawWriter.write = %d bytes in %d calls, %v; want %d bytes in 1 call", sent, calls, err, len(want))
	}
	got := make([]byte, len(want))
	_ = client.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(client, got); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("read %q, %v", got, err)
	}
}

// A write to a closed connection fails with an error, not errWouldBlock.
func TestWriteNonblockingClosed(t *testing.T) {
	server, _ := tcpPair(t)
	raw := RawConnOf(server)
	server.Close()
	if _, _, err := newRawWriter().write(raw, [][]byte{[]byte("x")}); err == nil || errors.Is(err, errWouldBlock) {
		t.Fatalf("err = %v, want a write error", err)
	}
}

// countingConn adds behaviour to Write; writing around it would lose that.
type countingConn struct {
	*net.TCPConn
	n int
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.n += len(p)
	return c.TCPConn.Write(p)
}

func TestRawConnOfOnlyPlainSockets(t *testing.T) {
	server, _ := tcpPair(t)
	if RawConnOf(server) == nil {
		t.Error("no raw conn for a *net.TCPConn")
	}
	if RawConnOf(&countingConn{TCPConn: server}) != nil {
		t.Error("raw conn for a wrapper: its Write would be bypassed")
	}
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if RawConnOf(a) != nil {
		t.Error("raw conn for a net.Pipe")
	}
}
