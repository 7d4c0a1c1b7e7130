package client

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// Every wait in these tests is on an event; the timeouts only bound a
// failing test.
const testTimeout = 10 * time.Second

func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

func startStub(t *testing.T, cfg stubConfig) *stubServer {
	t.Helper()
	s := newStubServer(cfg)
	t.Cleanup(s.Close)
	return s
}

// dialStub connects a client to s and returns it with the server side of its
// first connection. The client is closed at the end of the test.
func dialStub(t *testing.T, s *stubServer, opts Options) (*Client, *stubConn) {
	t.Helper()
	ctx := testCtx(t)
	c, err := Dial(ctx, s.URL, opts)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c, nextConn(t, s)
}

func nextConn(t *testing.T, s *stubServer) *stubConn {
	t.Helper()
	select {
	case sc := <-s.conns:
		return sc
	case <-time.After(testTimeout):
		t.Fatal("timed out waiting for a connection")
		return nil
	}
}

// recv returns the next message's JSON text.
func recv(t *testing.T, c *Client) string {
	t.Helper()
	select {
	case m, ok := <-c.Messages():
		if !ok {
			t.Fatalf("Messages closed; Err = %v", c.Err())
		}
		if m.IsBinary() {
			return "binary:" + string(m.Binary)
		}
		return string(m.Data)
	case <-time.After(testTimeout):
		t.Fatal("timed out waiting for a message")
		return ""
	}
}

func expectFrame(t *testing.T, sc *stubConn, want string) {
	t.Helper()
	got, err := sc.next(testCtx(t), notHeartbeat)
	if err != nil {
		t.Fatalf("want frame %s: %v", want, err)
	}
	if got != want {
		t.Fatalf("frame = %s, want %s", got, want)
	}
}

// events records hook calls.
type events struct {
	open      chan struct{}
	close     chan error
	reconnect chan ReconnectEvent
	errs      chan error
}

func newEvents() *events {
	return &events{
		open:      make(chan struct{}, 64),
		close:     make(chan error, 64),
		reconnect: make(chan ReconnectEvent, 64),
		errs:      make(chan error, 64),
	}
}

// options returns o with the four hooks recording into e.
func (e *events) options(o Options) Options {
	o.OnOpen = func(*Client) { e.open <- struct{}{} }
	o.OnClose = func(err error) { e.close <- err }
	o.OnReconnect = func(ev ReconnectEvent) { e.reconnect <- ev }
	o.OnError = func(err error) { e.errs <- err }
	return o
}

func waitFor[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(testTimeout):
		t.Fatalf("timed out waiting for %s", what)
		var zero T
		return zero
	}
}

// fastReconnect retries quickly and for ever.
var fastReconnect = ReconnectPolicy{Min: 5 * time.Millisecond, Max: 20 * time.Millisecond, Factor: 1, Retries: -1}

func TestDialEchoQueryAndHeader(t *testing.T) {
	t.Parallel()
	s := startStub(t, stubConfig{})
	ctx := testCtx(t)
	c, err := Dial(ctx, s.URL+"?token=abc&x=1", Options{Header: http.Header{"Authorization": {"Bearer t0k"}}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sc := nextConn(t, s)
	if sc.uri != "/primus?token=abc&x=1" {
		t.Errorf("request URI = %q, want /primus?token=abc&x=1", sc.uri)
	}
	if got := sc.header.Get("Authorization"); got != "Bearer t0k" {
		t.Errorf("Authorization = %q", got)
	}
	if !c.Connected() {
		t.Error("Connected() = false after Dial")
	}

	if err := c.Write(map[string]any{"echo": "hi"}); err != nil {
		t.Fatal(err)
	}
	if got := recv(t, c); got != `"hi"` {
		t.Fatalf("got %s, want \"hi\"", got)
	}
	expectFrame(t, sc, `{"echo":"hi"}`)

	// Encoded like JSON.stringify: no HTML escaping.
	if err := c.Write(map[string]string{"echo": "<a&b>"}); err != nil {
		t.Fatal(err)
	}
	expectFrame(t, sc, `{"echo":"<a&b>"}`)
	var s2 string
	m := <-c.Messages()
	if err := m.Decode(&s2); err != nil || s2 != "<a&b>" {
		t.Fatalf("Decode = %q, %v", s2, err)
	}

	// U+2028 and U+2029 escaped, as the original client does.
	if err := c.Write(map[string]string{"echo": "a\u2028b\u2029"}); err != nil {
		t.Fatal(err)
	}
	expectFrame(t, sc, `{"echo":"a\u2028b\u2029"}`)
	if got := recv(t, c); got != `"a\u2028b\u2029"` {
		t.Fatalf("got %s", got)
	}
	if err := c.WriteRaw([]byte("{\"echo\":\"\u2028\"}")); err != nil {
		t.Fatal(err)
	}
	expectFrame(t, sc, `{"echo":"\u2028"}`)
	recv(t, c)

	raw := []byte(`{"echo":[1,2,3]}`)
	if err := c.WriteRaw(raw); err != nil {
		t.Fatal(err)
	}
	raw[0] = 'X' // WriteRaw copied it
	if got := recv(t, c); got != `[1,2,3]` {
		t.Fatalf("got %s", got)
	}
	if err := c.WriteRaw([]byte(`{nope`)); !errors.Is(err, ErrInvalidJSON) {
		t.Fatalf("WriteRaw(invalid) = %v, want ErrInvalidJSON", err)
	}
	if err := c.Write(func() {}); err == nil {
		t.Fatal("Write(func) succeeded")
	}
}

func TestDialContextOnlyBoundsTheHandshake(t *testing.T) {
	t.Parallel()
	s := startStub(t, stubConfig{})
	ctx, cancel := context.WithCancel(context.Background())
	c, err := Dial(ctx, s.URL, Options{})
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Write(map[string]any{"echo": 1}); err != nil {
		t.Fatal(err)
	}
	if got := recv(t, c); got != "1" {
		t.Fatalf("got %s", got)
	}
}

func TestDialErrors(t *testing.T) {
	t.Parallel()
	s := startStub(t, stubConfig{})
	s.refuse.Store(true)
	ctx := testCtx(t)
	if _, err := Dial(ctx, s.URL, Options{}); err == nil || !strings.Contains(err.Error(), "503") {
		t.Errorf("Dial to a refusing server: %v, want an error mentioning 503", err)
	}
	if _, err := Dial(ctx, s.URL+"/elsewhere", Options{}); err == nil || !strings.Contains(err.Error(), "pathname") {
		t.Errorf("Dial with a foreign path: %v", err)
	}
	if _, err := Dial(ctx, "ftp://127.0.0.1/", Options{}); err == nil {
		t.Error("Dial ftp:// succeeded")
	}
	if _, err := Dial(ctx, s.URL, Options{Reconnect: ReconnectPolicy{Factor: 0.5}}); err == nil {
		t.Error("Dial with factor 0.5 succeeded")
	}
	if _, err := Dial(ctx, s.URL, Options{QueueSize: -1}); err == nil {
		t.Error("Dial with queue size -1 succeeded")
	}

	// A server that accepts TCP but never answers: the connect timeout
	// applies.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var held []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, conn)
			mu.Unlock()
		}
	}()
	defer func() {
		ln.Close()
		wg.Wait()
		for _, c := range held {
			c.Close()
		}
	}()
	_, err = Dial(ctx, "http://"+ln.Addr().String(), Options{ConnectTimeout: 50 * time.Millisecond})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Dial to a silent server: %v, want DeadlineExceeded", err)
	}
}

func TestID(t *testing.T) {
	t.Parallel()
	s := startStub(t, stubConfig{})
	c, sc := dialStub(t, s, Options{Reconnect: fastReconnect})
	ctx := testCtx(t)
	id, err := c.ID(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if id != sc.id {
		t.Fatalf("ID = %q, want %q", id, sc.id)
	}
	// The id of a connection does not change: asked once.
	if id2, err := c.ID(ctx); err != nil || id2 != id {
		t.Fatalf("second ID = %q, %v", id2, err)
	}
	c.Write(map[string]any{"echo": 1})
	expectFrame(t, sc, `"primus::id::"`)
	expectFrame(t, sc, `{"echo":1}`)

	// A reconnect is a new session with a new id.
	c.Write(map[string]any{"drop": true})
	sc2 := nextConn(t, s)
	id3, err := c.ID(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if id3 != sc2.id || id3 == id {
		t.Fatalf("ID after reconnect = %q, want %q (old %q)", id3, sc2.id, id)
	}

	// ctx bounds the wait.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	c2, _ := dialStub(t, s, Options{})
	if _, err := c2.ID(cctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("ID(cancelled ctx) = %v", err)
	}
}

func TestHeartbeatKeepsConnectionAlive(t *testing.T) {
	t.Parallel()
	// Every ping is answered, and pings keep the connection alive well past
	// several ping timeouts (generous margins: a loaded machine delays
	// timers).
	s := startStub(t, stubConfig{pingInterval: 20 * time.Millisecond})
	ev := newEvents()
	c, sc := dialStub(t, s, ev.options(Options{PingTimeout: time.Second}))
	start := time.Now()
	for i := 0; i < 6 || time.Since(start) < 2*time.Second; i++ {
		f, err := sc.next(testCtx(t), nil)
		if err != nil {
			select {
			case err := <-ev.close:
				t.Fatalf("connection closed: %v", err)
			default:
			}
			t.Fatal(err)
		}
		var v string
		if json.Unmarshal([]byte(f), &v) != nil || !strings.HasPrefix(v, "primus::pong::") {
			t.Fatalf("frame %d = %s, want a pong", i, f)
		}
		// The pong echoes the ping's value, the server's Date.now().
		ms, err := strconv.ParseInt(strings.TrimPrefix(v, "primus::pong::"), 10, 64)
		if err != nil || time.Since(time.UnixMilli(ms)) > testTimeout || ms > time.Now().UnixMilli() {
			t.Fatalf("pong %s does not echo a ping timestamp", f)
		}
	}
	select {
	case err := <-ev.close:
		t.Fatalf("connection closed: %v", err)
	default:
	}
	if got := s.accepted.Load(); got != 1 {
		t.Fatalf("%d connections, want 1", got)
	}
	if !c.Connected() {
		t.Fatal("not connected")
	}
}

func TestPingTimeoutReconnects(t *testing.T) {
	t.Parallel()
	s := startStub(t, stubConfig{}) // never pings
	ev := newEvents()
	c, _ := dialStub(t, s, ev.options(Options{PingTimeout: 50 * time.Millisecond, Reconnect: fastReconnect}))
	waitFor(t, ev.open, "first open")
	if err := waitFor(t, ev.close, "close"); !errors.Is(err, ErrPingTimeout) {
		t.Fatalf("close reason = %v, want ErrPingTimeout", err)
	}
	if e := waitFor(t, ev.reconnect, "reconnect"); e.Attempt != 1 || !errors.Is(e.Err, ErrPingTimeout) {
		t.Fatalf("reconnect event = %+v", e)
	}
	nextConn(t, s)
	waitFor(t, ev.open, "second open")
	if c.Err() != nil {
		t.Fatalf("Err = %v", c.Err())
	}
}

func TestServerEndIsFinal(t *testing.T) {
	t.Parallel()
	s := startStub(t, stubConfig{})
	ev := newEvents()
	c, _ := dialStub(t, s, ev.options(Options{Reconnect: fastReconnect}))
	c.Write(map[string]any{"echo": "bye"})
	c.Write(map[string]any{"end": true})
	if got := recv(t, c); got != `"bye"` {
		t.Fatalf("got %s", got)
	}
	ctx := testCtx(t)
	if err := c.Wait(ctx); !errors.Is(err, ErrServerEnded) {
		t.Fatalf("Wait = %v, want ErrServerEnded", err)
	}
	if _, ok := <-c.Messages(); ok {
		t.Fatal("Messages not closed")
	}
	if err := waitFor(t, ev.close, "close"); !errors.Is(err, ErrServerEnded) {
		t.Fatalf("close reason = %v", err)
	}
	select {
	case e := <-ev.reconnect:
		t.Fatalf("reconnect scheduled after server::close: %+v", e)
	default:
	}
	// Done is closed, so the client can no longer reconnect: one connection.
	if got := s.accepted.Load(); got != 1 {
		t.Fatalf("%d connections, want 1", got)
	}
	if err := c.Write(1); !errors.Is(err, ErrClosed) || !errors.Is(err, ErrServerEnded) {
		t.Fatalf("Write after end = %v", err)
	}
	if _, err := c.ID(ctx); !errors.Is(err, ErrClosed) {
		t.Fatalf("ID after end = %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if !errors.Is(c.Err(), ErrServerEnded) {
		t.Fatalf("Err after Close = %v", c.Err())
	}
}

func TestReconnectRunsOnOpenAgain(t *testing.T) {
	t.Parallel()
	s := startStub(t, stubConfig{})
	opens := make(chan int, 8)
	var n int
	join := func(c *Client) {
		n++ // only the connection goroutine runs hooks
		if err := c.Write(map[string]any{"join": "news", "ack": n}); err != nil {
			t.Error(err)
		}
		opens <- n
	}
	c, _ := dialStub(t, s, Options{OnOpen: join, Reconnect: fastReconnect})
	pub, _ := dialStub(t, s, Options{})
	waitFor(t, opens, "open 1")
	if got := recv(t, c); got != `{"ack":1,"ok":true}` {
		t.Fatalf("got %s", got)
	}

	c.Write(map[string]any{"drop": true}) // the server drops us without server::close
	if got := waitFor(t, opens, "open 2"); got != 2 {
		t.Fatalf("open #%d", got)
	}
	if got := recv(t, c); got != `{"ack":2,"ok":true}` {
		t.Fatalf("got %s", got)
	}
	pub.Write(map[string]any{"publish": map[string]any{"room": "news", "data": "after reconnect"}})
	if got := recv(t, c); got != `"after reconnect"` {
		t.Fatalf("got %s", got)
	}
	if st := c.Stats(); st.Connects != 2 || st.Received != 3 {
		t.Fatalf("stats %+v, want 2 connects, 3 messages", st)
	}
}

// disconnect makes the stub refuse connections and drop c's connection, and
// returns once c knows it is disconnected.
func disconnect(t *testing.T, s *stubServer, c *Client, ev *events) {
	t.Helper()
	s.refuse.Store(true)
	if err := c.Write(map[string]any{"drop": true}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ev.close, "close")
	if c.Connected() {
		t.Fatal("still connected")
	}
}

func TestWritesQueuedWhileReconnecting(t *testing.T) {
	t.Parallel()
	s := startStub(t, stubConfig{})
	ev := newEvents()
	opts := ev.options(Options{Reconnect: fastReconnect})
	opts.OnOpen = func(c *Client) { c.Write(map[string]any{"echo": "open"}) }
	c, _ := dialStub(t, s, opts)
	if got := recv(t, c); got != `"open"` {
		t.Fatalf("got %s", got)
	}
	disconnect(t, s, c, ev)
	for _, m := range []string{"q1", "q2", "q3"} {
		if err := c.Write(map[string]any{"echo": m}); err != nil {
			t.Fatal(err)
		}
	}
	// At least one attempt failed: the messages waited.
	waitFor(t, ev.reconnect, "attempt 1")
	if e := waitFor(t, ev.reconnect, "attempt 2"); !strings.Contains(e.Err.Error(), "503") {
		t.Fatalf("attempt 1 failed with %v", e.Err)
	}
	s.refuse.Store(false)
	sc := nextConn(t, s)
	// OnOpen's message first, then the queue in order.
	for _, want := range []string{`{"echo":"open"}`, `{"echo":"q1"}`, `{"echo":"q2"}`, `{"echo":"q3"}`} {
		expectFrame(t, sc, want)
	}
	for _, want := range []string{`"open"`, `"q1"`, `"q2"`, `"q3"`} {
		if got := recv(t, c); got != want {
			t.Fatalf("got %s, want %s", got, want)
		}
	}
}

func TestOnOpenRunsBeforeTheBacklog(t *testing.T) {
	t.Parallel()
	s := startStub(t, stubConfig{})
	ev := newEvents()
	release := make(chan struct{})
	inHook := make(chan struct{})
	var opens int
	hook := func(c *Client) {
		if opens++; opens == 1 {
			return
		}
		c.Write(map[string]any{"echo": "j1"})
		inHook <- struct{}{}
		<-release
		c.Write(map[string]any{"echo": "j2"})
	}
	opts := ev.options(Options{Reconnect: fastReconnect})
	opts.OnOpen = hook
	c, _ := dialStub(t, s, opts)
	disconnect(t, s, c, ev)
	if err := c.Write(map[string]any{"echo": "backlog"}); err != nil {
		t.Fatal(err)
	}
	s.refuse.Store(false)
	sc := nextConn(t, s)
	waitFor(t, inHook, "OnOpen")
	expectFrame(t, sc, `{"echo":"j1"}`) // hook writes go out at once
	// Written while the hook runs: sent with the hook's writes.
	if err := c.Write(map[string]any{"echo": "during"}); err != nil {
		t.Fatal(err)
	}
	expectFrame(t, sc, `{"echo":"during"}`)
	close(release)
	expectFrame(t, sc, `{"echo":"j2"}`)
	// The backlog waited for the hook to return.
	expectFrame(t, sc, `{"echo":"backlog"}`)
}

func TestQueueBound(t *testing.T) {
	t.Parallel()
	s := startStub(t, stubConfig{})
	ev := newEvents()
	c, _ := dialStub(t, s, ev.options(Options{Reconnect: fastReconnect, QueueSize: 3}))
	disconnect(t, s, c, ev)
	for i := 1; i <= 3; i++ {
		if err := c.Write(map[string]any{"echo": i}); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
	}
	if err := c.Write(map[string]any{"echo": 4}); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("4th write = %v, want ErrQueueFull", err)
	}
	if st := c.Stats(); st.QueueFull != 1 {
		t.Fatalf("stats %+v, want QueueFull 1", st)
	}
	s.refuse.Store(false)
	for i := 1; i <= 3; i++ {
		if got := recv(t, c); got != string(rune('0'+i)) {
			t.Fatalf("got %s, want %d", got, i)
		}
	}
	if err := c.Write(map[string]any{"echo": 5}); err != nil {
		t.Fatal(err)
	}
	if got := recv(t, c); got != "5" {
		t.Fatalf("got %s", got)
	}
}

func TestFlush(t *testing.T) {
	t.Parallel()
	s := startStub(t, stubConfig{})
	ev := newEvents()
	c, sc := dialStub(t, s, ev.options(Options{Reconnect: fastReconnect}))
	ctx := testCtx(t)
	for i := 0; i < 100; i++ {
		c.Write(map[string]any{"n": i})
	}
	if err := c.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 100; i++ {
		if _, err := sc.next(ctx, notHeartbeat); err != nil {
			t.Fatal(err)
		}
	}

	disconnect(t, s, c, ev)
	c.Write(map[string]any{"echo": "late"})
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if err := c.Flush(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Flush while disconnected = %v", err)
	}
	s.refuse.Store(false)
	if err := c.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if got := recv(t, c); got != `"late"` {
		t.Fatalf("got %s", got)
	}
}

func TestReconnectGivesUpAfterRetries(t *testing.T) {
	t.Parallel()
	s := startStub(t, stubConfig{})
	ev := newEvents()
	c, _ := dialStub(t, s, ev.options(Options{Reconnect: ReconnectPolicy{Min: time.Millisecond, Factor: 1, Retries: 3}}))
	disconnect(t, s, c, ev)
	err := c.Wait(testCtx(t))
	if !errors.Is(err, ErrReconnectFailed) || !strings.Contains(err.Error(), "503") {
		t.Fatalf("Wait = %v, want ErrReconnectFailed after 503s", err)
	}
	for i := 1; i <= 3; i++ {
		if e := waitFor(t, ev.reconnect, "reconnect event"); e.Attempt != i {
			t.Fatalf("attempt %d, want %d", e.Attempt, i)
		}
	}
	select {
	case e := <-ev.reconnect:
		t.Fatalf("extra attempt %+v", e)
	default:
	}
	if got := s.refused.Load(); got != 3 {
		t.Fatalf("server refused %d upgrades, want 3", got)
	}
	if _, ok := <-c.Messages(); ok {
		t.Fatal("Messages not closed")
	}
}

func TestDisableReconnect(t *testing.T) {
	t.Parallel()
	s := startStub(t, stubConfig{})
	c, _ := dialStub(t, s, Options{DisableReconnect: true})
	c.Write(map[string]any{"drop": true})
	if err := c.Wait(testCtx(t)); !errors.Is(err, ErrConnectionLost) {
		t.Fatalf("Wait = %v, want ErrConnectionLost", err)
	}
	if got := s.accepted.Load(); got != 1 {
		t.Fatalf("%d connections", got)
	}
}

func TestCloseIsIdempotentAndGraceful(t *testing.T) {
	t.Parallel()
	s := startStub(t, stubConfig{})
	c, sc := dialStub(t, s, Options{})
	c.Write(map[string]any{"echo": 1})
	recv(t, c)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-c.Done():
	default:
		t.Fatal("Done not closed after Close")
	}
	if !errors.Is(c.Err(), ErrClosed) {
		t.Fatalf("Err = %v", c.Err())
	}
	if _, ok := <-c.Messages(); ok {
		t.Fatal("Messages not closed")
	}
	if st := c.Stats(); st.Sent != 1 || st.Received != 1 || st.Connects != 1 || st.Lost+st.Discarded != 0 {
		t.Fatalf("stats %+v", st)
	}
	if err := c.Write(1); !errors.Is(err, ErrClosed) {
		t.Fatalf("Write after Close = %v", err)
	}
	if err := c.Flush(testCtx(t)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Flush after Close = %v", err)
	}
	waitFor(t, sc.done, "server side close")
	if sc.closeStatus != websocket.StatusNormalClosure {
		t.Fatalf("server saw close status %v (%v), want 1000", sc.closeStatus, sc.readErr)
	}
}

func TestCloseWhileReconnecting(t *testing.T) {
	t.Parallel()
	s := startStub(t, stubConfig{})
	ev := newEvents()
	c, _ := dialStub(t, s, ev.options(Options{Reconnect: ReconnectPolicy{Min: time.Hour}}))
	disconnect(t, s, c, ev)
	waitFor(t, ev.reconnect, "reconnect scheduled")
	c.Write("a")
	c.Write("b")
	ctx := testCtx(t)
	idErr := make(chan error, 1)
	go func() { _, err := c.ID(ctx); idErr <- err }()
	closed := make(chan struct{})
	go func() { c.Close(); close(closed) }()
	waitFor(t, closed, "Close during a 1h backoff")
	if err := waitFor(t, idErr, "ID to return"); !errors.Is(err, ErrClosed) {
		t.Fatalf("ID = %v", err)
	}
	if st := c.Stats(); st.Discarded != 2 {
		t.Fatalf("stats %+v, want 2 discarded", st)
	}
}

func TestCloseWhileApplicationIsNotReading(t *testing.T) {
	t.Parallel()
	s := startStub(t, stubConfig{})
	c, sc := dialStub(t, s, Options{MessageBuffer: 1})
	for i := 0; i < 5; i++ {
		c.Write(map[string]any{"echo": i})
	}
	for i := 0; i < 5; i++ {
		expectFrame(t, sc, `{"echo":`+string(rune('0'+i))+`}`)
	}
	closed := make(chan struct{})
	go func() { c.Close(); close(closed) }()
	waitFor(t, closed, "Close with a blocked reader")
}

func TestBackpressureDropsNothing(t *testing.T) {
	t.Parallel()
	s := startStub(t, stubConfig{})
	c, sc := dialStub(t, s, Options{MessageBuffer: 1})
	const n = 200
	for i := 0; i < n; i++ {
		c.Write(map[string]any{"echo": i})
	}
	// All echoes were requested before the application reads anything.
	c.Flush(testCtx(t))
	for i := 0; i < n; i++ {
		if _, err := sc.next(testCtx(t), notHeartbeat); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < n; i++ {
		var got int
		m := <-c.Messages()
		if err := m.Decode(&got); err != nil || got != i {
			t.Fatalf("message %d = %s (%v)", i, m.Data, err)
		}
	}
}

func TestInvalidJSONIsReportedAndSkipped(t *testing.T) {
	t.Parallel()
	s := startStub(t, stubConfig{})
	ev := newEvents()
	c, _ := dialStub(t, s, ev.options(Options{}))
	waitFor(t, ev.open, "open")
	c.Write(map[string]any{"raw": "{not json"})
	c.Write(map[string]any{"echo": "still alive"})
	if err := waitFor(t, ev.errs, "error hook"); !errors.Is(err, ErrInvalidJSON) {
		t.Fatalf("error = %v", err)
	}
	if got := recv(t, c); got != `"still alive"` {
		t.Fatalf("got %s", got)
	}
	if st := c.Stats(); st.InvalidFrames != 1 || st.Received != 1 {
		t.Fatalf("stats %+v, want 1 invalid frame and 1 message", st)
	}
}

func TestProtocolLookalikesAreData(t *testing.T) {
	t.Parallel()
	s := startStub(t, stubConfig{})
	c, sc := dialStub(t, s, Options{})
	for _, v := range []string{
		"primus::foo::bar",       // unknown type: data
		"primus::server::reboot", // server:: other than close: swallowed
		"primus::id::unasked",    // id nobody asked for: swallowed
		"primus::",               // no type: data
		"last",
	} {
		c.Write(map[string]any{"echo": v})
	}
	for _, want := range []string{`"primus::foo::bar"`, `"primus::"`, `"last"`} {
		if got := recv(t, c); got != want {
			t.Fatalf("got %s, want %s", got, want)
		}
	}
	// The unasked id was not taken for the answer to a later request.
	if id, err := c.ID(testCtx(t)); err != nil || id != sc.id {
		t.Fatalf("ID = %q, %v; want %q", id, err, sc.id)
	}
}

func TestBinaryFrames(t *testing.T) {
	t.Parallel()
	s := startStub(t, stubConfig{})
	c, _ := dialStub(t, s, Options{})
	c.Write(map[string]any{"binary": "abc"})
	m := <-c.Messages()
	if !m.IsBinary() || string(m.Binary) != "abc" || m.Data != nil {
		t.Fatalf("message = %+v", m)
	}
	var v any
	if err := m.Decode(&v); !errors.Is(err, ErrBinary) {
		t.Fatalf("Decode = %v", err)
	}
}

func TestHandler(t *testing.T) {
	t.Parallel()
	s := startStub(t, stubConfig{})
	got := make(chan Message, 8)
	c, _ := dialStub(t, s, Options{Handler: func(m Message) { got <- m }})
	c.Write(map[string]any{"echo": map[string]int{"a": 1}})
	if m := waitFor(t, got, "handler"); string(m.Data) != `{"a":1}` {
		t.Fatalf("handler got %s", m.Data)
	}
	c.Close()
	if _, ok := <-c.Messages(); ok {
		t.Fatal("Messages delivered or not closed in handler mode")
	}
}

func TestTLS(t *testing.T) {
	t.Parallel()
	s := startStub(t, stubConfig{tls: true})
	if !strings.HasPrefix(s.URL, "https://") {
		t.Fatalf("URL %s", s.URL)
	}
	c, _ := dialStub(t, s, Options{HTTPClient: s.srv.Client()})
	c.Write(map[string]any{"echo": "secure"})
	if got := recv(t, c); got != `"secure"` {
		t.Fatalf("got %s", got)
	}
	// Without the test CA the handshake fails.
	if _, err := Dial(testCtx(t), s.URL, Options{}); err == nil {
		t.Fatal("Dial without the server's CA succeeded")
	}
}

func TestReadLimit(t *testing.T) {
	t.Parallel()
	s := startStub(t, stubConfig{})
	ev := newEvents()
	c, _ := dialStub(t, s, ev.options(Options{ReadLimit: 16, Reconnect: fastReconnect}))
	c.Write(map[string]any{"echo": "short"})
	if got := recv(t, c); got != `"short"` {
		t.Fatalf("got %s", got)
	}
	c.Write(map[string]any{"echo": strings.Repeat("x", 100)})
	if err := waitFor(t, ev.close, "close"); err == nil || !strings.Contains(err.Error(), "read limited") {
		t.Fatalf("close reason = %v, want the read limit", err)
	}
	nextConn(t, s) // reconnected
}
