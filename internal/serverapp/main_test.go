package serverapp

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// TestMainGracefulShutdown runs the whole standalone server and stops it
// the way SIGTERM does: the client is closed with 1001 (going away), so a
// Primus client reconnects to another node.
func TestMainGracefulShutdown(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addrs := make(chan net.Addr, 1)
	done := make(chan error, 1)
	go func() {
		done <- Main(ctx, []string{"-addr", "127.0.0.1:0", "-shutdown-timeout", "5s"},
			func(string) string { return "" }, io.Discard, func(a net.Addr) { addrs <- a })
	}()
	var addr net.Addr
	select {
	case addr = <-addrs:
	case err := <-done:
		t.Fatalf("Main returned early: %v", err)
	}
	ts := &httptest.Server{URL: "http://" + addr.String()}
	c := dial(t, ts)
	c.send(`{"join":"x","ack":1}`)
	c.expect(`{"ack":1,"ok":true}`)

	cancel()
	for range c.msgs {
	}
	if got := websocket.CloseStatus(c.err); got != websocket.StatusGoingAway {
		t.Fatalf("close status = %v (%v), want 1001 going away", got, c.err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Main: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Main did not return after cancellation")
	}
	if _, err := net.Dial("tcp", addr.String()); err == nil {
		t.Fatal("server still accepts connections after shutdown")
	}
}

func TestMainBadFlags(t *testing.T) {
	err := Main(context.Background(), []string{"-addr", "127.0.0.1:0", "-redis-mode", "nope"}, func(string) string { return "" }, io.Discard, nil)
	if err == nil {
		t.Fatal("Main accepted -redis-mode nope")
	}
	err = Main(context.Background(), []string{"-addr", "256.0.0.1:1"}, func(string) string { return "" }, io.Discard, nil)
	var opErr *net.OpError
	if !errors.As(err, &opErr) {
		t.Fatalf("Main with a bad address: %v", err)
	}
}
