package primus_test

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/coder/websocket"
	"go.uber.org/goleak"

	"github.com/primusgo/primus"
	"github.com/primusgo/primus/internal/testkit"
)

func TestShutdown(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	ts := startServer(t, primus.Config{PingInterval: beat})
	cs, ss := connectN(t, ts, 3)
	for i, s := range ss {
		_ = s.Join("all", string(rune('a'+i)))
	}
	ctx, cancel := context.WithTimeout(context.Background(), testkit.Timeout)
	defer cancel()
	if err := ts.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown = %v, want nil", err)
	}
	// Shutdown waited for every spark: all are closed and gone already.
	if ts.discs.Len() != 3 {
		t.Fatalf("%d disconnections when Shutdown returned, want 3", ts.discs.Len())
	}
	for _, s := range ss {
		if r := s.CloseReason(); r != primus.ReasonShutdown {
			t.Errorf("CloseReason %v, want %v", r, primus.ReasonShutdown)
		}
	}
	for _, c := range cs {
		if code := c.WaitClosed(t); code != websocket.StatusGoingAway {
			t.Errorf("client close status %v, want 1001", code)
		}
		for _, f := range c.Rest(t) {
			if !f.IsPing() {
				t.Errorf("frame %s before the shutdown close (clients must reconnect: no server::close)", f)
			}
		}
	}
	if st := ts.Stats(); st.Connections != 0 || st.Rooms != 0 {
		t.Errorf("after Shutdown: %d connections, %d rooms", st.Connections, st.Rooms)
	}
	// No new sparks.
	c, resp, err := ts.tryDial("", testkit.DialOptions{})
	if err == nil {
		c.Close()
		t.Fatal("upgrade after Shutdown succeeded")
	}
	if resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("upgrade after Shutdown: %v, want 503", resp)
	}
	if err := ts.Shutdown(ctx); !errors.Is(err, primus.ErrServerClosed) {
		t.Errorf("second Shutdown = %v, want ErrServerClosed", err)
	}
	// A room write still reaches nobody locally and reports the closed broker.
	if err := ts.Room("all").Write("x"); err == nil {
		t.Error("room write after Shutdown reported no error")
	}
	for _, c := range cs {
		c.Close()
	}
	ts.hs.Close()
	// The deferred goleak check: readers, writers, heartbeat all gone.
}

func TestShutdownUnresponsiveClient(t *testing.T) {
	// A client that never reads does not answer the close: Shutdown waits
	// CloseTimeout for it, then cuts it off, and still returns nil.
	ts := startServer(t, primus.Config{CloseTimeout: 100 * time.Millisecond})
	c := ts.dial(t, testkit.DialOptions{NoRead: true})
	s := ts.nextSpark(t)
	ctx, cancel := context.WithTimeout(context.Background(), testkit.Timeout)
	defer cancel()
	start := time.Now()
	if err := ts.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown = %v", err)
	}
	if d := time.Since(start); d > testkit.Timeout/2 {
		t.Errorf("Shutdown took %v", d)
	}
	if r := s.CloseReason(); r != primus.ReasonShutdown {
		t.Errorf("CloseReason %v", r)
	}
	c.Close()
}

func TestShutdownContextExpires(t *testing.T) {
	ts := startServer(t, primus.Config{CloseTimeout: testkit.Timeout})
	c := ts.dial(t, testkit.DialOptions{NoRead: true})
	s := ts.nextSpark(t)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := ts.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown = %v, want DeadlineExceeded", err)
	}
	// Even so, everything was torn down before Shutdown returned.
	if ts.discs.Len() != 1 || s.CloseReason() != primus.ReasonShutdown {
		t.Fatalf("%d disconnections, reason %v", ts.discs.Len(), s.CloseReason())
	}
	c.Close()
}

// An upgrade that is past its first checks when Shutdown starts must not
// produce a spark after Shutdown returned.
func TestShutdownDuringUpgrade(t *testing.T) {
	entered := make(chan struct{})
	release := make(chan struct{})
	ts := startServer(t, primus.Config{Authorize: func(*http.Request) error {
		close(entered)
		<-release
		return nil
	}})
	type result struct {
		c   *testkit.Client
		err error
	}
	dialed := make(chan result, 1)
	go func() {
		c, _, err := ts.tryDial("", testkit.DialOptions{})
		dialed <- result{c, err}
	}()
	<-entered
	shut := make(chan error, 1)
	go func() { shut <- ts.Shutdown(context.Background()) }()
	var shutErr error
	returned := false
	select {
	case shutErr = <-shut:
		returned = true
	case <-time.After(200 * time.Millisecond):
		// Shutdown may instead wait for the upgrade in flight.
	}
	close(release)
	r := <-dialed
	if !returned {
		shutErr = <-shut
	}
	if shutErr != nil {
		t.Fatalf("Shutdown = %v", shutErr)
	}
	if r.err == nil {
		// Accepted, but closed at once, reconnect-style.
		if code := r.c.WaitClosed(t); code != websocket.StatusGoingAway {
			t.Errorf("late client closed with %v, want 1001", code)
		}
		r.c.Close()
	}
	if n := ts.conns.Len(); n != 0 {
		t.Fatalf("OnConnection ran %d times for an upgrade that finished during Shutdown", n)
	}
	if n := ts.Stats().Connections; n != 0 {
		t.Fatalf("%d sparks alive after Shutdown", n)
	}
}

// Drain refuses new upgrades at once and closes the sparks reconnect-style
// in batches spread over its duration, not all together.
func TestDrain(t *testing.T) {
	const n, over = 40, 600 * time.Millisecond
	disc := testkit.NewQueue[time.Time]()
	ts := startServer(t, primus.Config{OnDisconnection: func(*primus.Spark) { disc.Put(time.Now()) }})
	cs, _ := connectN(t, ts, n)
	ctx, cancel := context.WithTimeout(context.Background(), testkit.Timeout)
	defer cancel()
	start := time.Now()
	drained := make(chan error, 1)
	go func() { drained <- ts.Drain(ctx, over) }()
	// The first batch closes at once; then no upgrade is accepted.
	if _, ok := disc.Get(ctx); !ok {
		t.Fatal("no spark closed")
	}
	if got := dialStatus(t, ts, testkit.DialOptions{}); got != http.StatusServiceUnavailable {
		t.Errorf("upgrade while draining: %d, want 503", got)
	}
	if err := <-drained; err != nil {
		t.Fatalf("Drain = %v", err)
	}
	took := time.Since(start)
	var last time.Time
	for range n - 1 {
		at, ok := disc.Get(ctx)
		if !ok {
			t.Fatal("missing disconnections")
		}
		last = at
	}
	if took < over*9/10 || last.Sub(start) < over/2 {
		t.Errorf("Drain took %v, last close after %v: not spread over %v", took, last.Sub(start), over)
	}
	for _, c := range cs {
		if code := c.WaitClosed(t); code != websocket.StatusGoingAway {
			t.Errorf("client close status %v, want 1001", code)
		}
	}
	if err := ts.Drain(ctx, over); !errors.Is(err, primus.ErrServerClosed) {
		t.Errorf("second Drain = %v", err)
	}
}
