package interop_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/primusgo/primus"
	"github.com/primusgo/primus/internal/nodefixture"
	"github.com/primusgo/primus/internal/serverapp"
	"github.com/primusgo/primus/internal/testkit"
)

// TestMain fails the package if a test leaves a goroutine behind (spark
// readers and writers, heartbeats, proxies, HTTP servers and clients).
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// waitTimeout bounds every wait of a test. A single wait normally takes
// milliseconds; the margin is for node start-up on a loaded machine.
const waitTimeout = 45 * time.Second

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	t.Cleanup(cancel)
	return ctx
}

// sparkIDPattern is nanoid's shape, which Primus uses for spark ids (§1.5).
var sparkIDPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{21}$`)

// fastReconnect makes a reconnecting client come back within 50 ms, so
// that reconnection (or its wrongful absence) shows quickly.
var fastReconnect = nodefixture.ClientOptions{
	ReconnectMin:     20 * time.Millisecond,
	ReconnectMax:     50 * time.Millisecond,
	ReconnectRetries: 100,
}

// sparkError is one OnError call.
type sparkError struct {
	spark *primus.Spark
	err   error
}

// hub is a bare primus.Server behind an httptest.Server that records its
// sparks' lives: connections, disconnections (the spark's CloseReason is
// final by then) and errors. Every data message is answered with
// {"echo": <message>}.
type hub struct {
	*primus.Server
	url   string
	conns *testkit.Queue[*primus.Spark]
	gone  *testkit.Queue[*primus.Spark]
	errs  *testkit.Queue[sparkError]
}

func startHub(t *testing.T, cfg primus.Config) *hub {
	t.Helper()
	h := &hub{conns: testkit.NewQueue[*primus.Spark](), gone: testkit.NewQueue[*primus.Spark](), errs: testkit.NewQueue[sparkError]()}
	cfg.OnConnection = func(s *primus.Spark) {
		s.OnData(func(s *primus.Spark, d primus.Data) {
			_ = s.Write(map[string]json.RawMessage{"echo": d.JSON()})
		})
		s.OnError(func(s *primus.Spark, err error) { h.errs.Put(sparkError{s, err}) })
		h.conns.Put(s)
	}
	cfg.OnDisconnection = func(s *primus.Spark) { h.gone.Put(s) }
	srv, err := primus.New(cfg)
	if err != nil {
		t.Fatalf("primus.New: %v", err)
	}
	h.Server = srv
	hs := httptest.NewServer(srv)
	h.url = hs.URL
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		hs.Close()
	})
	return h
}

// nextConn waits for the next connection.
func (h *hub) nextConn(t *testing.T, ctx context.Context) *primus.Spark {
	t.Helper()
	s, ok := h.conns.Get(ctx)
	if !ok {
		t.Fatalf("waiting for a connection: %v", ctx.Err())
	}
	return s
}

// nextGone waits for the next disconnection.
func (h *hub) nextGone(t *testing.T, ctx context.Context) *primus.Spark {
	t.Helper()
	s, ok := h.gone.Get(ctx)
	if !ok {
		t.Fatalf("waiting for a disconnection: %v", ctx.Err())
	}
	return s
}

// startApp runs the standalone server's App behind an httptest.Server.
func startApp(t *testing.T, opts serverapp.Options) (*serverapp.App, string) {
	t.Helper()
	app, err := serverapp.New(opts)
	if err != nil {
		t.Fatalf("serverapp.New: %v", err)
	}
	hs := httptest.NewServer(app)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		if err := app.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		hs.Close()
	})
	return app, hs.URL
}

// startClient starts the real Primus client against url.
func startClient(t *testing.T, url string, opts nodefixture.ClientOptions) *nodefixture.Client {
	t.Helper()
	return nodefixture.StartClient(t, url, opts)
}

// lifecycle are the client events that say something happened to the
// connection.
var lifecycle = []string{
	"open", "close", "end", "reconnect scheduled", "reconnect", "reconnected",
	"reconnect timeout", "reconnect failed", "offline", "online", "timeout", "error",
}

// await consumes c's events up to the first one named name and returns it.
// It fails the test if an event named in forbidden comes first.
func await(t *testing.T, ctx context.Context, c *nodefixture.Client, name string, forbidden ...string) nodefixture.Event {
	t.Helper()
	for {
		ev, err := c.Next(ctx)
		if err != nil {
			t.Fatalf("waiting for %q: %v\nclient events:\n%s", name, err, eventLog(c.Events()))
		}
		if ev.Name == name {
			return ev
		}
		if slices.Contains(forbidden, ev.Name) {
			t.Fatalf("got %s while waiting for %q\nclient events:\n%s", ev.Raw, name, eventLog(c.Events()))
		}
	}
}

// awaitOpen waits for the client's first open; nothing else of the
// lifecycle may happen before it.
func awaitOpen(t *testing.T, ctx context.Context, c *nodefixture.Client) {
	t.Helper()
	await(t, ctx, c, "open", without(lifecycle, "open", "online")...)
}

func without(list []string, drop ...string) []string {
	return slices.DeleteFunc(slices.Clone(list), func(s string) bool { return slices.Contains(drop, s) })
}

// nextData returns the payload of c's next data event. Heartbeat pings may
// come before it; any other event fails the test.
func nextData(t *testing.T, ctx context.Context, c *nodefixture.Client) json.RawMessage {
	t.Helper()
	for {
		ev, err := c.Next(ctx)
		if err != nil {
			t.Fatalf("waiting for data: %v\nclient events:\n%s", err, eventLog(c.Events()))
		}
		switch ev.Name {
		case "ping":
			continue
		case "data":
			return payload(t, ev)
		}
		t.Fatalf("got %s while waiting for data\nclient events:\n%s", ev.Raw, eventLog(c.Events()))
	}
}

// payload returns the "data" member of a data event as client.js printed it
// (JSON.stringify of what the client's data event received), "null"
// included; a data event without one (undefined) fails the test.
func payload(t *testing.T, ev nodefixture.Event) json.RawMessage {
	t.Helper()
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(ev.Raw, &fields); err != nil {
		t.Fatalf("event %s: %v", ev.Raw, err)
	}
	d, ok := fields["data"]
	if !ok {
		t.Fatalf("data event without data: %s", ev.Raw)
	}
	return d
}

// expectData fails unless c's next data event carries a value equal to
// want (compared as decoded JSON).
func expectData(t *testing.T, ctx context.Context, c *nodefixture.Client, want any) json.RawMessage {
	t.Helper()
	got := nextData(t, ctx, c)
	if !sameJSON(t, got, want) {
		w, _ := json.Marshal(want)
		t.Fatalf("client received %s, want %s\nclient events:\n%s", got, w, eventLog(c.Events()))
	}
	return got
}

// sameJSON compares JSON text with a Go value (or other JSON text) as the
// values they decode to.
func sameJSON(t *testing.T, got json.RawMessage, want any) bool {
	t.Helper()
	wb, ok := want.(json.RawMessage)
	if !ok {
		var err error
		if wb, err = json.Marshal(want); err != nil {
			t.Fatalf("marshal %v: %v", want, err)
		}
	}
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("client data %q is not JSON: %v", got, err)
	}
	if err := json.Unmarshal(wb, &w); err != nil {
		t.Fatal(err)
	}
	return reflect.DeepEqual(g, w)
}

func eventLog(evs []nodefixture.Event) string {
	var b strings.Builder
	for _, ev := range evs {
		b.Write(ev.Raw)
		b.WriteByte('\n')
	}
	return b.String()
}

// mustID asks the client for its spark id (client.id()).
func mustID(t *testing.T, ctx context.Context, c *nodefixture.Client) string {
	t.Helper()
	id, err := c.ID(ctx)
	if err != nil {
		t.Fatalf("client.id(): %v\nclient events:\n%s", err, eventLog(c.Events()))
	}
	if !sparkIDPattern.MatchString(id) {
		t.Fatalf("client.id() = %q, want 21 characters of [A-Za-z0-9_-]", id)
	}
	return id
}

// mustDo runs a command of the standalone server's protocol and requires ok.
func mustDo(t *testing.T, ctx context.Context, c *nodefixture.Client, cmd map[string]any) {
	t.Helper()
	if err := c.Do(ctx, cmd); err != nil {
		t.Fatalf("%v: %v\nclient events:\n%s", cmd, err, eventLog(c.Events()))
	}
}

// mark sends client.js a command it does not know: it answers with a
// "command error" event from its stdin handler, so once that event is read,
// every event the client emitted before handling the command has been read
// too. It returns the events received since the previous Next.
func mark(t *testing.T, ctx context.Context, c *nodefixture.Client) []nodefixture.Event {
	t.Helper()
	if err := c.Send(map[string]any{"op": "interop-marker"}); err != nil {
		t.Fatal(err)
	}
	var before []nodefixture.Event
	for {
		ev, err := c.Next(ctx)
		if err != nil {
			t.Fatalf("waiting for the marker: %v\nclient events:\n%s", err, eventLog(c.Events()))
		}
		if ev.Name == "command error" && strings.Contains(ev.Message, "interop-marker") {
			return before
		}
		before = append(before, ev)
	}
}

// httpClient does not keep connections alive, so no transport goroutine
// outlives a test.
var httpClient = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: waitTimeout}

func httpDo(t *testing.T, method, url string, body []byte) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", method, url, err)
	}
	return resp, b
}

// mutingProxy is a TCP proxy that can silently drop everything a client
// sends on the connections open at the time (MuteUpstream) while still
// forwarding the server's bytes: a half-dead network path. Connections
// made later are forwarded normally.
type mutingProxy struct {
	l      net.Listener
	target string
	wg     sync.WaitGroup

	mu     sync.Mutex
	closed bool
	conns  []*proxyConn
}

type proxyConn struct {
	client, server net.Conn
	muted          atomic.Bool
}

func startProxy(t *testing.T, target string) *mutingProxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &mutingProxy{l: l, target: target}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

// url is the proxy's http URL.
func (p *mutingProxy) url() string { return "http://" + p.l.Addr().String() }

func (p *mutingProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.l.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			_ = c.Close()
			continue
		}
		pc := &proxyConn{client: c, server: s}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			_ = c.Close()
			_ = s.Close()
			return
		}
		p.conns = append(p.conns, pc)
		p.wg.Add(2)
		p.mu.Unlock()
		go p.pump(pc, c, s, &pc.muted)
		go p.pump(pc, s, c, nil)
	}
}

// pump copies from -> to, dropping the bytes while *muted is set; when
// either side ends, the whole connection is closed.
func (p *mutingProxy) pump(pc *proxyConn, from, to net.Conn, muted *atomic.Bool) {
	defer p.wg.Done()
	defer func() { _ = pc.client.Close(); _ = pc.server.Close() }()
	buf := make([]byte, 32<<10)
	for {
		n, err := from.Read(buf)
		if n > 0 && (muted == nil || !muted.Load()) {
			if _, werr := to.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// muteUpstream drops, from now on, what the clients of the currently open
// connections send.
func (p *mutingProxy) muteUpstream() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, pc := range p.conns {
		pc.muted.Store(true)
	}
}

func (p *mutingProxy) close() {
	_ = p.l.Close()
	p.mu.Lock()
	p.closed = true
	for _, pc := range p.conns {
		_ = pc.client.Close()
		_ = pc.server.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}
