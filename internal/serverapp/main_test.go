package serverapp

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// lockedBuffer is a log destination the test reads while Main writes.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestMainGracefulShutdown runs the whole standalone server and stops it
// the way SIGTERM does: the client is closed with 1001 (going away), so a
// Primus client reconnects to another node. The profiler listens on its
// own address while the server runs, and stops with it.
func TestMainGracefulShutdown(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addrs := make(chan net.Addr, 1)
	done := make(chan error, 1)
	var logs lockedBuffer
	go func() {
		done <- Main(ctx, []string{"-addr", "127.0.0.1:0", "-shutdown-timeout", "5s", "-pprof-addr", "127.0.0.1:0",
			"-lame-duck-delay", "0", "-lame-duck-duration", "0"},
			func(string) string { return "" }, io.Discard, &logs, func(a net.Addr) { addrs <- a })
	}()
	var addr net.Addr
	select {
	case addr = <-addrs:
	case err := <-done:
		t.Fatalf("Main returned early: %v", err)
	}
	m := regexp.MustCompile(`msg="pprof listening" addr=(\S+)`).FindStringSubmatch(logs.String())
	if m == nil {
		t.Fatalf("no pprof address in the log:\n%s", logs.String())
	}
	pprofAddr := m[1]
	resp, err := http.Get("http://" + pprofAddr + "/debug/pprof/goroutine?debug=1")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "goroutine profile") {
		t.Fatalf("pprof: %s %.200s", resp.Status, body)
	}
	http.DefaultClient.CloseIdleConnections()
	ts := &httptest.Server{URL: "http://" + addr.String()}
	c := dial(t, ts)
	c.send(`{"join":"x","ack":1}`)
	c.expect(`{"ack":1,"ok":true}`)

	cancel()
	if got := c.WaitClosed(t); got != websocket.StatusGoingAway {
		t.Fatalf("close status = %v (%v), want 1001 going away", got, c.Err())
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Main: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Main did not return after cancellation")
	}
	for _, a := range []string{addr.String(), pprofAddr} {
		if _, err := net.Dial("tcp", a); err == nil {
			t.Fatalf("%s still accepts connections after shutdown", a)
		}
	}
}

func TestMainBadFlags(t *testing.T) {
	err := Main(context.Background(), []string{"-addr", "127.0.0.1:0", "-redis-mode", "nope"}, func(string) string { return "" }, io.Discard, io.Discard, nil)
	if err == nil {
		t.Fatal("Main accepted -redis-mode nope")
	}
	err = Main(context.Background(), []string{"-addr", "256.0.0.1:1"}, func(string) string { return "" }, io.Discard, io.Discard, nil)
	var opErr *net.OpError
	if !errors.As(err, &opErr) {
		t.Fatalf("Main with a bad address: %v", err)
	}
}

// mainRun is the standalone server run by Main in the background.
type mainRun struct {
	addr   string
	logs   *lockedBuffer
	cancel context.CancelFunc // what SIGTERM does
	done   chan error
}

// startMain runs Main on a free loopback port with args (and no lame-duck
// wait unless args set one); the server is stopped at the end of the test.
func startMain(t *testing.T, args ...string) *mainRun {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	m := &mainRun{logs: &lockedBuffer{}, cancel: cancel, done: make(chan error, 1)}
	addrs := make(chan net.Addr, 1)
	all := append([]string{"-addr", "127.0.0.1:0", "-shutdown-timeout", "5s", "-lame-duck-delay", "0", "-lame-duck-duration", "0"}, args...)
	go func() {
		m.done <- Main(ctx, all, func(string) string { return "" }, io.Discard, m.logs, func(a net.Addr) { addrs <- a })
	}()
	select {
	case a := <-addrs:
		m.addr = a.String()
	case err := <-m.done:
		cancel()
		t.Fatalf("Main returned early: %v\n%s", err, m.logs.String())
	}
	t.Cleanup(func() { _ = m.stop() })
	return m
}

// stop cancels Main's context and returns its error (once; later calls return nil).
func (m *mainRun) stop() error {
	m.cancel()
	select {
	case err, ok := <-m.done:
		if ok {
			close(m.done)
		}
		return err
	case <-time.After(30 * time.Second):
		return errors.New("Main did not return")
	}
}
