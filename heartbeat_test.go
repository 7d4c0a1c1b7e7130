package primus_test

import (
	"context"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/primusgo/primus"
	"github.com/primusgo/primus/internal/testkit"
)

const beat = 50 * time.Millisecond

// waitPings waits until c has seen n heartbeat pings, or fails if it closes.
func waitPings(t *testing.T, c *testkit.Client, n int) {
	t.Helper()
	for int(c.Pings()) < n {
		c.Next(t)
	}
}

func TestHeartbeatPongKeepsAlive(t *testing.T) {
	ts := startServer(t, primus.Config{PingInterval: beat})
	c := ts.dial(t, testkit.DialOptions{AutoPong: true})
	s := ts.nextSpark(t)
	before := time.Now().UnixMilli()
	f := c.Next(t)
	if !f.IsPing() {
		t.Fatalf("first frame %s, want a ping", f)
	}
	ms, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimPrefix(string(f.Data), `"primus::ping::`), `"`), 10, 64)
	if err != nil || ms < before-1000 || ms > time.Now().UnixMilli()+1000 {
		t.Fatalf("ping %s does not carry the server time in ms (%v)", f, err)
	}
	waitPings(t, c, 6)
	// Still open: a write gets through.
	_ = s.Write("alive")
	c.Expect(t, `"alive"`)
	if n := ts.Stats().HeartbeatTimeouts; n != 0 {
		t.Fatalf("HeartbeatTimeouts = %d", n)
	}
}

func TestHeartbeatSilentClientClosed(t *testing.T) {
	ts := startServer(t, primus.Config{PingInterval: beat})
	c := ts.dial(t, testkit.DialOptions{})
	s := ts.nextSpark(t)
	if code := c.WaitClosed(t); code != websocket.StatusNoStatusRcvd {
		t.Fatalf("close status %v, want 1005 (no status)", code)
	}
	for _, f := range c.Rest(t) {
		if !f.IsPing() {
			t.Fatalf("unexpected frame %s (a heartbeat death sends no server::close)", f)
		}
	}
	if n := c.Pings(); n != 1 {
		t.Errorf("saw %d pings before the close, want 1", n)
	}
	ts.nextDisconnection(t)
	if r := s.CloseReason(); r != primus.ReasonHeartbeatTimeout {
		t.Fatalf("CloseReason %v, want %v", r, primus.ReasonHeartbeatTimeout)
	}
	if n := ts.Stats().HeartbeatTimeouts; n != 1 {
		t.Fatalf("HeartbeatTimeouts = %d, want 1", n)
	}
}

func TestHeartbeatWebSocketPingKeepsAlive(t *testing.T) {
	ts := startServer(t, primus.Config{PingInterval: beat})
	c := ts.dial(t, testkit.DialOptions{}) // never answers primus pings
	s := ts.nextSpark(t)
	stop := make(chan struct{})
	pinger := make(chan error, 1)
	go func() {
		tick := time.NewTicker(beat / 4)
		defer tick.Stop()
		for {
			// Not cancelled by stop: cancelling a coder/websocket call
			// in flight closes the connection.
			pctx, pcancel := context.WithTimeout(context.Background(), testkit.Timeout)
			err := c.Conn.Ping(pctx) // the reader goroutine reads the pong
			pcancel()
			if err != nil {
				pinger <- err
				return
			}
			select {
			case <-stop:
				pinger <- nil
				return
			case <-tick.C:
			}
		}
	}()
	waitPings(t, c, 6)
	close(stop)
	if err := <-pinger; err != nil {
		t.Fatalf("WebSocket ping failed: %v", err)
	}
	_ = s.Write("alive")
	c.Expect(t, `"alive"`)
	if n := ts.Stats().HeartbeatTimeouts; n != 0 {
		t.Fatalf("HeartbeatTimeouts = %d", n)
	}
}

func TestHeartbeatDataDoesNotKeepAlive(t *testing.T) {
	ts := startServer(t, primus.Config{PingInterval: beat, OnConnection: echoConfig().OnConnection})
	c := ts.dial(t, testkit.DialOptions{})
	s := ts.nextSpark(t)
	stop := make(chan struct{})
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		tick := time.NewTicker(beat / 5)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			ctx, cancel := context.WithTimeout(context.Background(), testkit.Timeout)
			err := c.Conn.Write(ctx, websocket.MessageText, []byte(strconv.Itoa(i)))
			cancel()
			if err != nil {
				return
			}
		}
	}()
	code := c.WaitClosed(t)
	close(stop)
	<-sent
	if code != websocket.StatusNoStatusRcvd {
		t.Fatalf("close status %v, want 1005", code)
	}
	ts.nextDisconnection(t)
	if r := s.CloseReason(); r != primus.ReasonHeartbeatTimeout {
		t.Fatalf("CloseReason %v, want %v", r, primus.ReasonHeartbeatTimeout)
	}
	echoes := 0
	for _, f := range c.Rest(t) {
		if !f.IsPing() {
			echoes++
		}
	}
	if echoes == 0 {
		t.Error("no data was echoed before the heartbeat close; the test did not exercise data frames")
	}
}

func TestHeartbeatDisabled(t *testing.T) {
	ts := startServer(t, primus.Config{PingInterval: -1})
	c := ts.dial(t, testkit.DialOptions{})
	s := ts.nextSpark(t)
	// With heartbeats on at this interval the silent client would be gone
	// long before the marker; there is nothing to wait for but time.
	time.Sleep(3 * beat)
	_ = s.Write("marker")
	c.Expect(t, `"marker"`)
	if n := c.Pings(); n != 0 {
		t.Fatalf("%d pings with heartbeats disabled", n)
	}
}

// An http.Server's ReadTimeout must not reach into hijacked WebSocket
// connections: a healthy spark lives longer than it.
func TestHTTPServerTimeoutsDoNotKillSparks(t *testing.T) {
	// Heartbeats slow enough for a loaded machine to answer in time, and
	// timeouts of the http.Server far below the time the spark lives.
	const ping = 250 * time.Millisecond
	ts := startServer(t, primus.Config{PingInterval: ping}, func(hs *httptest.Server) {
		hs.Config.ReadTimeout = 100 * time.Millisecond
		hs.Config.WriteTimeout = 100 * time.Millisecond
	})
	c := ts.dial(t, testkit.DialOptions{AutoPong: true})
	s := ts.nextSpark(t)
	waitPings(t, c, 4) // 1 s: ten times the timeouts
	c.Send(t, `"primus::id::"`)
	c.Expect(t, `"primus::id::`+s.ID()+`"`)
	if r := s.CloseReason(); r != primus.ReasonNone {
		t.Fatalf("spark closed: %v", r)
	}
}
