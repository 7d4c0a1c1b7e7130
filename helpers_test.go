package primus_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/primusgo/primus"
)

// waitTimeout bounds every wait for an event; tests never sleep to
// synchronise, they wait for the event with this deadline.
const waitTimeout = 10 * time.Second

// queue is an unbounded FIFO: server callbacks and client readers put into
// it without ever blocking, tests take from it with a deadline.
type queue[T any] struct {
	mu     sync.Mutex
	items  []T
	closed bool
	signal chan struct{}
}

func newQueue[T any]() *queue[T] { return &queue[T]{signal: make(chan struct{}, 1)} }

func (q *queue[T]) put(v T) {
	q.mu.Lock()
	q.items = append(q.items, v)
	q.mu.Unlock()
	select {
	case q.signal <- struct{}{}:
	default:
	}
}

// finish marks the end of the items: get stops waiting once it took them all.
func (q *queue[T]) finish() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	select {
	case q.signal <- struct{}{}:
	default:
	}
}

// get takes the oldest item, waiting until ctx is done or the queue is
// finished and empty.
func (q *queue[T]) get(ctx context.Context) (T, bool) {
	for {
		q.mu.Lock()
		if len(q.items) > 0 {
			v := q.items[0]
			var zero T
			q.items[0] = zero
			q.items = q.items[1:]
			q.mu.Unlock()
			return v, true
		}
		closed := q.closed
		q.mu.Unlock()
		if closed {
			var zero T
			return zero, false
		}
		select {
		case <-q.signal:
		case <-ctx.Done():
			var zero T
			return zero, false
		}
	}
}

// tryGet takes the oldest item if there is one.
func (q *queue[T]) tryGet() (T, bool) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return q.get(ctx)
}

func (q *queue[T]) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.items)
}

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
	conns  *queue[*primus.Spark]
	discs  *queue[*primus.Spark]
	joins  *queue[roomEvent]
	leaves *queue[roomEvent]
}

// startServer starts a server with cfg (its callbacks still run, before the
// recording ones) and shuts it down at the end of the test. Options may
// adjust the httptest.Server before it starts.
func startServer(t testing.TB, cfg primus.Config, opts ...func(*httptest.Server)) *testServer {
	t.Helper()
	ts := &testServer{
		conns:  newQueue[*primus.Spark](),
		discs:  newQueue[*primus.Spark](),
		joins:  newQueue[roomEvent](),
		leaves: newQueue[roomEvent](),
	}
	onConn, onDisc, onJoin, onLeave := cfg.OnConnection, cfg.OnDisconnection, cfg.OnJoin, cfg.OnLeave
	cfg.OnConnection = func(s *primus.Spark) {
		if onConn != nil {
			onConn(s)
		}
		ts.conns.put(s)
	}
	cfg.OnDisconnection = func(s *primus.Spark) {
		if onDisc != nil {
			onDisc(s)
		}
		ts.discs.put(s)
	}
	cfg.OnJoin = func(s *primus.Spark, room string) {
		if onJoin != nil {
			onJoin(s, room)
		}
		ts.joins.put(roomEvent{s, room})
	}
	cfg.OnLeave = func(s *primus.Spark, room string) {
		if onLeave != nil {
			onLeave(s, room)
		}
		ts.leaves.put(roomEvent{s, room})
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
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
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
	return context.WithTimeout(context.Background(), waitTimeout)
}

// nextSpark waits for the next OnConnection.
func (ts *testServer) nextSpark(t testing.TB) *primus.Spark {
	t.Helper()
	ctx, cancel := waitCtx()
	defer cancel()
	s, ok := ts.conns.get(ctx)
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
	s, ok := ts.discs.get(ctx)
	if !ok {
		t.Fatal("timed out waiting for a disconnection")
	}
	return s
}

func nextEvent(t testing.TB, q *queue[roomEvent], what string) roomEvent {
	t.Helper()
	ctx, cancel := waitCtx()
	defer cancel()
	e, ok := q.get(ctx)
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

// frame is one message a client received.
type frame struct {
	typ  websocket.MessageType
	data []byte
}

func (f frame) String() string {
	if f.typ == websocket.MessageBinary {
		return fmt.Sprintf("binary %x", f.data)
	}
	return string(f.data)
}

func (f frame) isPing() bool {
	return f.typ == websocket.MessageText && strings.HasPrefix(string(f.data), `"primus::ping::`)
}

// client is a coder/websocket connection whose frames a goroutine reads
// into a queue.
type client struct {
	conn   *websocket.Conn
	resp   *http.Response
	frames *queue[frame]
	pings  atomic.Int32 // "primus::ping::" frames seen
	done   chan struct{}
	err    error // why reading stopped; valid once done is closed
}

type dialOpts struct {
	path      string      // request path and query (default: the pathname)
	header    http.Header // extra handshake headers
	autoPong  bool        // answer "primus::ping::x" with "primus::pong::x"
	noRead    bool        // never read (a slow consumer)
	readLimit int64       // client read limit (default 1 MiB)
}

// dial connects a client; it is closed at the end of the test.
func (ts *testServer) dial(t testing.TB, o dialOpts) *client {
	t.Helper()
	c, err := ts.tryDial(o)
	if err != nil {
		t.Fatalf("dial %s: %v", o.path, err)
	}
	t.Cleanup(c.close)
	return c
}

func (ts *testServer) tryDial(o dialOpts) (*client, error) {
	ctx, cancel := waitCtx()
	defer cancel()
	conn, resp, err := websocket.Dial(ctx, ts.url(o.path), &websocket.DialOptions{
		HTTPClient:      ts.hs.Client(),
		HTTPHeader:      o.header,
		CompressionMode: websocket.CompressionDisabled,
	})
	if err != nil {
		return &client{resp: resp}, err
	}
	c := &client{conn: conn, resp: resp, frames: newQueue[frame](), done: make(chan struct{})}
	if o.readLimit == 0 {
		o.readLimit = 1 << 20
	}
	conn.SetReadLimit(o.readLimit)
	if o.noRead {
		c.err = errors.New("not reading")
		close(c.done)
		return c, nil
	}
	go c.readLoop(o.autoPong)
	return c, nil
}

func (c *client) readLoop(autoPong bool) {
	defer close(c.done)
	defer c.frames.finish()
	for {
		typ, data, err := c.conn.Read(context.Background())
		if err != nil {
			c.err = err
			return
		}
		f := frame{typ, data}
		if f.isPing() {
			c.pings.Add(1)
			if autoPong {
				pong := strings.Replace(string(data), "ping", "pong", 1)
				if err := c.conn.Write(context.Background(), websocket.MessageText, []byte(pong)); err != nil {
					c.err = err
					return
				}
			}
		}
		c.frames.put(f)
	}
}

// close closes the connection without a handshake and waits for the reader.
func (c *client) close() {
	if c.conn == nil {
		return
	}
	c.conn.CloseNow()
	<-c.done
}

func (c *client) send(t testing.TB, text string) {
	t.Helper()
	c.write(t, websocket.MessageText, []byte(text))
}

func (c *client) write(t testing.TB, typ websocket.MessageType, p []byte) {
	t.Helper()
	ctx, cancel := waitCtx()
	defer cancel()
	if err := c.conn.Write(ctx, typ, p); err != nil {
		t.Fatalf("client write: %v", err)
	}
}

// next waits for the next frame, pings included.
func (c *client) next(t testing.TB) frame {
	t.Helper()
	ctx, cancel := waitCtx()
	defer cancel()
	f, ok := c.frames.get(ctx)
	if !ok {
		if ctx.Err() != nil {
			t.Fatal("timed out waiting for a frame")
		}
		t.Fatalf("connection closed while waiting for a frame: %v", c.err)
	}
	return f
}

// nextData waits for the next frame that is not a heartbeat ping.
func (c *client) nextData(t testing.TB) frame {
	t.Helper()
	for {
		if f := c.next(t); !f.isPing() {
			return f
		}
	}
}

// expect waits for the next non-ping frame and checks that it is the text want.
func (c *client) expect(t testing.TB, want string) {
	t.Helper()
	f := c.nextData(t)
	if f.typ != websocket.MessageText || string(f.data) != want {
		t.Fatalf("got frame %s, want text %s", f, want)
	}
}

// waitClosed waits until the connection is closed and returns the close
// status the client saw (-1 if it was not a close frame).
func (c *client) waitClosed(t testing.TB) websocket.StatusCode {
	t.Helper()
	select {
	case <-c.done:
	case <-time.After(waitTimeout):
		t.Fatal("timed out waiting for the connection to close")
	}
	return websocket.CloseStatus(c.err)
}

// rest waits until the connection is closed and returns the frames that
// were not taken yet.
func (c *client) rest(t testing.TB) []frame {
	t.Helper()
	c.waitClosed(t)
	var out []frame
	for {
		f, ok := c.frames.tryGet()
		if !ok {
			return out
		}
		out = append(out, f)
	}
}

// isOpen reports whether the client is still reading.
func (c *client) isOpen() bool {
	select {
	case <-c.done:
		return false
	default:
		return true
	}
}

// rawConn is a WebSocket connection after a hand-made handshake, for
// writing frames a real client would never send.
type rawConn struct {
	net.Conn
	br *bufio.Reader
}

func (ts *testServer) rawDial(t testing.TB, path string) *rawConn {
	t.Helper()
	return ts.rawDialEarly(t, path, nil)
}

// rawDialEarly sends early right behind the handshake request, in the same write.
func (ts *testServer) rawDialEarly(t testing.TB, path string, early []byte) *rawConn {
	t.Helper()
	c, _ := ts.rawDialWith(t, path, "", early)
	return c
}

// rawDialWith adds extra header lines ("Name: value\r\n" each) to the
// handshake request and returns the 101 response too.
func (ts *testServer) rawDialWith(t testing.TB, path, extra string, early []byte) (*rawConn, *http.Response) {
	t.Helper()
	if path == "" {
		path = ts.Pathname()
	}
	var conn net.Conn
	var err error
	if ts.hs.TLS != nil {
		conn, err = tls.Dial("tcp", ts.hs.Listener.Addr().String(), ts.hs.Client().Transport.(*http.Transport).TLSClientConfig)
	} else {
		conn, err = net.Dial("tcp", ts.hs.Listener.Addr().String())
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(waitTimeout))
	var key [16]byte
	_, _ = rand.Read(key[:])
	req := fmt.Sprintf("GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: %s\r\n%s\r\n",
		path, ts.hs.Listener.Addr(), base64.StdEncoding.EncodeToString(key[:]), extra)
	if _, err := conn.Write(append([]byte(req), early...)); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("handshake status %d", resp.StatusCode)
	}
	return &rawConn{Conn: conn, br: br}, resp
}

// writeFrame writes one frame; b0 is the first header byte (FIN, RSV, opcode).
func (c *rawConn) writeFrame(t testing.TB, b0 byte, payload []byte, masked bool) {
	t.Helper()
	if _, err := c.Write(buildFrame(b0, payload, masked)); err != nil {
		t.Fatalf("raw write: %v", err)
	}
}

// buildFrame builds a client frame; b0 is the first header byte.
func buildFrame(b0 byte, payload []byte, masked bool) []byte {
	b := []byte{b0}
	m := byte(0)
	if masked {
		m = 0x80
	}
	switch n := len(payload); {
	case n <= 125:
		b = append(b, m|byte(n))
	case n <= 0xffff:
		b = append(b, m|126, byte(n>>8), byte(n))
	default:
		b = append(b, m|127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	p := append([]byte(nil), payload...)
	if masked {
		key := [4]byte{0x12, 0x34, 0x56, 0x78}
		b = append(b, key[:]...)
		for i := range p {
			p[i] ^= key[i%4]
		}
	}
	return append(b, p...)
}

// readFrame reads one server frame (servers never mask or fragment here).
func (c *rawConn) readFrame() (op byte, payload []byte, err error) {
	var h [2]byte
	if _, err = io.ReadFull(c.br, h[:]); err != nil {
		return
	}
	if h[0]&0x80 == 0 || h[1]&0x80 != 0 {
		return 0, nil, fmt.Errorf("unexpected frame header %x", h)
	}
	op = h[0] & 0x0f
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var l [2]byte
		if _, err = io.ReadFull(c.br, l[:]); err != nil {
			return
		}
		n = uint64(binary.BigEndian.Uint16(l[:]))
	case 127:
		var l [8]byte
		if _, err = io.ReadFull(c.br, l[:]); err != nil {
			return
		}
		n = binary.BigEndian.Uint64(l[:])
	}
	payload = make([]byte, n)
	_, err = io.ReadFull(c.br, payload)
	return
}

// readClose reads frames until a close frame and returns its status code
// (1005 for an empty one).
func (c *rawConn) readClose(t testing.TB) int {
	t.Helper()
	for {
		op, p, err := c.readFrame()
		if err != nil {
			t.Fatalf("reading for a close frame: %v", err)
		}
		if op != 0x8 {
			continue
		}
		if len(p) == 0 {
			return 1005
		}
		return int(binary.BigEndian.Uint16(p))
	}
}
