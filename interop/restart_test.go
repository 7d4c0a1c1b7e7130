package interop_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"

	"github.com/primusgo/primus/internal/serverapp"
)

// lockedBuffer collects a server's log; it is shown if the test fails.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// runMain runs the standalone server (serverapp.Main, what
// cmd/primus-server runs) on addr with args until the returned stop is
// called; stop shuts it down as SIGTERM does (without a lame-duck wait)
// and returns Main's error.
func runMain(t *testing.T, addr string, log *lockedBuffer, args ...string) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan net.Addr, 1)
	done := make(chan error, 1)
	go func() {
		done <- serverapp.Main(ctx, append([]string{"-addr", addr, "-shutdown-timeout", "5s", "-log-level", "debug",
			"-lame-duck-delay", "0", "-lame-duck-duration", "0"}, args...),
			func(string) string { return "" }, io.Discard, log, func(a net.Addr) { ready <- a })
	}()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			err = <-done
		})
		return err
	}
	t.Cleanup(func() { _ = stop() })
	select {
	case a := <-ready:
		if a.String() != addr {
			t.Fatalf("Main listens on %s, want %s", a, addr)
		}
	case err := <-done:
		t.Fatalf("Main on %s returned early: %v\n%s", addr, err, log)
	}
	return stop
}

// freeAddr returns a loopback address that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// publishHTTP writes data to room through the standalone server's HTTP API.
func publishHTTP(t *testing.T, addr, room string, data any) {
	t.Helper()
	body, err := json.Marshal(map[string]any{"room": room, "data": data})
	if err != nil {
		t.Fatal(err)
	}
	resp, b := httpDo(t, http.MethodPost, "http://"+addr+"/api/publish", body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /api/publish: %s %s", resp.Status, b)
	}
}

// The standalone server is shut down as SIGTERM does and started again on
// the same port: the shutdown closes the client reconnect-style, the
// client keeps trying, and reconnects to the new server, where it can join
// a room and receive again.
func TestServerRestart(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	addr := freeAddr(t)
	log1, log2 := &lockedBuffer{}, &lockedBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("first server:\n%s\nsecond server:\n%s", log1, log2)
		}
	})
	stop1 := runMain(t, addr, log1)

	c := startClient(t, "http://"+addr, fastReconnect)
	awaitOpen(t, ctx, c)
	id1 := mustID(t, ctx, c)
	mustDo(t, ctx, c, map[string]any{"join": "r"})
	publishHTTP(t, addr, "r", "before restart")
	expectData(t, ctx, c, "before restart")

	if err := stop1(); err != nil {
		t.Fatalf("first server: Main: %v", err)
	}
	// Reconnect-style: close, then at once a scheduled reconnect, never end.
	bad := []string{"end", "reconnect failed", "reconnect timeout"}
	await(t, ctx, c, "close", bad...)
	if ev, err := c.Next(ctx); err != nil || ev.Name != "reconnect scheduled" || ev.Attempt != 1 {
		t.Fatalf("event after close: %s, %v; want the first reconnect scheduled\nclient events:\n%s", ev.Raw, err, eventLog(c.Events()))
	}
	// The port is closed: the first attempt is refused and another one is
	// scheduled.
	for {
		ev := await(t, ctx, c, "reconnect scheduled", append(bad, "open", "reconnected")...)
		if ev.Attempt >= 2 {
			break
		}
	}

	runMain(t, addr, log2)
	await(t, ctx, c, "reconnected", bad...)
	await(t, ctx, c, "open", bad...)
	id2 := mustID(t, ctx, c)
	if id2 == id1 {
		t.Errorf("same spark id %q on the new server", id2)
	}

	// Rooms do not survive the restart: a write to r before the client
	// joins again does not reach it (the acknowledgement is the next data).
	publishHTTP(t, addr, "r", "before joining again")
	if err := c.Write(map[string]any{"join": "r", "ack": "again"}); err != nil {
		t.Fatal(err)
	}
	expectData(t, ctx, c, json.RawMessage(`{"ack":"again","ok":true}`))
	publishHTTP(t, addr, "r", map[string]any{"after": "restart"})
	expectData(t, ctx, c, map[string]any{"after": "restart"})
}
