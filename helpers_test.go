package primus_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/primusgo/primus"
	"github.com/primusgo/primus/internal/testkit"
)

// roomEvent is one OnJoin or OnLeave call.
type roomEvent struct {
	spark *primus.Spark
	room  string
}

// testServer is a primus.Server behind an httptest.Server, with its
// callbacks recorded in queues.
type testServer struct {
	*primus.Server
	hs     *httptest.Server
	conns  *testkit.Queue[*primus.Spark]
	discs  *testkit.Queue[*primus.Spark]
	joins  *testkit.Queue[roomEvent]
	leaves *testkit.Queue[roomEvent]
}

// startServer starts a server with cfg (its callbacks still run, before the
// recording ones) and shuts it down at the end of the test. Options may
// adjust the httptest.Server before it starts.
func startServer(t testing.TB, cfg primus.Config, opts ...func(*httptest.Server)) *testServer {
	t.Helper()
	ts := &testServer{
		conns:  testkit.NewQueue[*primus.Spark](),
		discs:  testkit.NewQueue[*primus.Spark](),
		joins:  testkit.NewQueue[roomEvent](),
		leaves: testkit.NewQueue[roomEvent](),
	}
	onConn, onDisc, onJoin, onLeave := cfg.OnConnection, cfg.OnDisconnection, cfg.OnJoin, cfg.OnLeave
	cfg.OnConnection = func(s *primus.Spark) {
		if onConn != nil {
			onConn(s)
		}
		ts.conns.Put(s)
	}
	cfg.OnDisconnection = func(s *primus.Spark) {
		if onDisc != nil {
			onDisc(s)
		}
		ts.discs.Put(s)
	}
	cfg.OnJoin = func(s *primus.Spark, room string) {
		if onJoin != nil {
			onJoin(s, room)
		}
		ts.joins.Put(roomEvent{s, room})
	}
	cfg.OnLeave = func(s *primus.Spark, room string) {
		if onLeave != nil {
			onLeave(s, room)
		}
		ts.leaves.Put(roomEvent{s, room})
	}
	srv, err := primus.New(cfg)
	if err != nil {
		t.Fatalf("primus.New: %v", err)
	}
	ts.Server = srv
	ts.hs = httptest.NewUnstartedServer(srv)
	for _, o := range opts {
		o(ts.hs)
	}
	if ts.hs.TLS != nil {
		ts.hs.StartTLS()
	} else {
		ts.hs.Start()
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), testkit.Timeout)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil && !errors.Is(err, primus.ErrServerClosed) {
			t.Errorf("Shutdown: %v", err)
		}
		ts.hs.Close()
	})
	return ts
}

// url returns the server's http URL for path (the pathname if empty).
func (ts *testServer) url(path string) string {
	if path == "" {
		path = ts.Pathname()
	}
	return ts.hs.URL + path
}

func waitCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), testkit.Timeout)
}

// nextSpark waits for the next OnConnection.
func (ts *testServer) nextSpark(t testing.TB) *primus.Spark {
	t.Helper()
	ctx, cancel := waitCtx()
	defer cancel()
	s, ok := ts.conns.Get(ctx)
	if !ok {
		t.Fatal("timed out waiting for a connection")
	}
	return s
}

// nextDisconnection waits for the next OnDisconnection.
func (ts *testServer) nextDisconnection(t testing.TB) *primus.Spark {
	t.Helper()
	ctx, cancel := waitCtx()
	defer cancel()
	s, ok := ts.discs.Get(ctx)
	if !ok {
		t.Fatal("timed out waiting for a disconnection")
	}
	return s
}

func nextEvent(t testing.TB, q *testkit.Queue[roomEvent], what string) roomEvent {
	t.Helper()
	ctx, cancel := waitCtx()
	defer cancel()
	e, ok := q.Get(ctx)
	if !ok {
		t.Fatalf("timed out waiting for %s", what)
	}
	return e
}

func (ts *testServer) nextJoin(t testing.TB) roomEvent {
	t.Helper()
	return nextEvent(t, ts.joins, "OnJoin")
}
func (ts *testServer) nextLeave(t testing.TB) roomEvent {
	t.Helper()
	return nextEvent(t, ts.leaves, "OnLeave")
}

// dial connects a client to the server's pathname; it is closed at the end
// of the test.
func (ts *testServer) dial(t testing.TB, o testkit.DialOptions) *testkit.Client {
	t.Helper()
	return ts.dialPath(t, "", o)
}

// dialPath connects a client to path (and query) on the server.
func (ts *testServer) dialPath(t testing.TB, path string, o testkit.DialOptions) *testkit.Client {
	t.Helper()
	return testkit.Dial(t, ts.url(path), ts.withClient(o))
}

// tryDial connects to path (the pathname if empty) and returns the
// handshake response, also of a refused upgrade; the caller closes the client.
func (ts *testServer) tryDial(path string, o testkit.DialOptions) (*testkit.Client, *http.Response, error) {
	return testkit.TryDial(ts.url(path), ts.withClient(o))
}

// withClient makes o dial with the server's HTTP client (it trusts the
// server's TLS certificate).
func (ts *testServer) withClient(o testkit.DialOptions) testkit.DialOptions {
	if o.HTTPClient == nil {
		o.HTTPClient = ts.hs.Client()
	}
	return o
}

// rawDial upgrades a connection by hand, to the pathname unless o has a
// path, over TLS if the server uses it.
func (ts *testServer) rawDial(t testing.TB, o testkit.RawOptions) *testkit.Raw {
	t.Helper()
	if o.Path == "" {
		o.Path = ts.Pathname()
	}
	if ts.hs.TLS != nil {
		o.TLS = ts.hs.Client().Transport.(*http.Transport).TLSClientConfig
	}
	return testkit.RawDial(t, ts.hs.Listener.Addr().String(), o)
}
