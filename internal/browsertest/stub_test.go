package browsertest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/primusgo/primus/internal/clientjs"
)

// stub is a minimal Primus protocol server for testing the client library
// without the real server: it serves a harness page at "/", the library at
// /primus/primus.js and WebSockets under /primus. It pings every interval
// (while pinging is on), answers "primus::id::", echoes every other text
// frame, and obeys commands sent as {"cmd": ...} objects:
//
//	{"cmd":"end","data":x}    send x (if present), "primus::server::close", close
//	{"cmd":"drop"}            drop the TCP connection (no close handshake)
//	{"cmd":"raw","text":s}    send s verbatim as a text frame
//	{"cmd":"binary","bytes":[...]}  send a binary frame
//
// Stop and Restart take the whole server down and up again on the same port.
type stub struct {
	t        testing.TB
	addr     string
	interval time.Duration
	handler  http.Handler
	pinging  atomic.Bool

	mu        sync.Mutex
	srv       *http.Server
	serveDone chan struct{}
	stopped   bool
	conns     []*stubConn   // every connection ever accepted, in order
	changed   chan struct{} // closed (and replaced) whenever anything is recorded
	wg        sync.WaitGroup
}

type stubConn struct {
	id    string
	path  string
	query url.Values
	ws    *websocket.Conn
	// guarded by stub.mu:
	received []string // text frames from the client except pongs
	pings    []string // ping values sent
	pongs    []string // pong frames received
	closed   bool
}

func newStub(t testing.TB, interval time.Duration) *stub {
	t.Helper()
	s := &stub{t: t, interval: interval, changed: make(chan struct{})}
	s.pinging.Store(interval > 0)
	mux := http.NewServeMux()
	mux.Handle("/primus/primus.js", clientjs.Handler(clientjs.Options{PingInterval: interval}))
	mux.HandleFunc("/primus", s.serveWS)
	mux.HandleFunc("/primus/", s.serveWS)
	mux.HandleFunc("/{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, PageHTML("/primus/primus.js"))
	})
	s.handler = mux
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("stub: %v", err)
	}
	s.addr = ln.Addr().String()
	s.serve(ln)
	t.Cleanup(s.Stop)
	return s
}

func (s *stub) URL() string { return "http://" + s.addr }

func (s *stub) serve(ln net.Listener) {
	srv := &http.Server{Handler: s.handler, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	s.mu.Lock()
	s.srv, s.serveDone, s.stopped = srv, done, false
	s.mu.Unlock()
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
}

// Stop closes the listener and every connection (without a close handshake)
// and waits for all the stub's goroutines. Idempotent.
func (s *stub) Stop() {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return
	}
	s.stopped = true
	srv, done := s.srv, s.serveDone
	var open []*stubConn
	for _, c := range s.conns {
		if !c.closed {
			open = append(open, c)
		}
	}
	s.mu.Unlock()
	_ = srv.Close()
	<-done
	for _, c := range open {
		_ = c.ws.CloseNow()
	}
	s.wg.Wait()
}

// Restart listens again on the same address after Stop.
func (s *stub) Restart() {
	s.t.Helper()
	ln, err := net.Listen("tcp", s.addr)
	if err != nil {
		s.t.Fatalf("stub: listening again on %s: %v", s.addr, err)
	}
	s.serve(ln)
}

func (s *stub) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// await waits until cond (called with s.mu held) is true.
func (s *stub) await(timeout time.Duration, what string, cond func() bool) {
	s.t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		ok, ch := cond(), s.changed
		s.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-ch:
		case <-deadline.C:
			s.t.Fatalf("stub: waited %v for %s; connections: %s", timeout, what, s.dump())
		}
	}
}

// conn returns the i-th connection, waiting for it to exist.
func (s *stub) conn(i int) *stubConn {
	s.t.Helper()
	s.await(10*time.Second, fmt.Sprintf("connection #%d", i+1), func() bool { return len(s.conns) > i })
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conns[i]
}

func (s *stub) numConns() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// received returns a copy of the text frames connection i got so far.
func (s *stub) received(c *stubConn) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), c.received...)
}

func (s *stub) dump() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var b strings.Builder
	for _, c := range s.conns {
		fmt.Fprintf(&b, "[%s closed=%v received=%q pings=%d pongs=%d] ", c.id, c.closed, c.received, len(c.pings), len(c.pongs))
	}
	return b.String()
}

func (s *stub) serveWS(w http.ResponseWriter, r *http.Request) {
	if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		http.Error(w, "Upgrade Required", http.StatusUpgradeRequired)
		return
	}
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		http.Error(w, "stopped", http.StatusServiceUnavailable)
		return
	}
	s.wg.Add(1)
	s.mu.Unlock()
	defer s.wg.Done()

	ws, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	c := &stubConn{path: r.URL.Path, query: r.URL.Query(), ws: ws}
	s.mu.Lock()
	c.id = fmt.Sprintf("spark-%d", len(s.conns)+1)
	s.conns = append(s.conns, c)
	stopped := s.stopped
	s.notifyLocked()
	s.mu.Unlock()
	if stopped { // Stop ran between the check above and now
		_ = ws.CloseNow()
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if s.interval > 0 {
		s.wg.Add(1)
		go s.pinger(ctx, c)
	}
	for {
		typ, data, err := ws.Read(ctx)
		if err != nil {
			break
		}
		if typ == websocket.MessageText {
			s.handle(ctx, c, string(data))
		}
	}
	_ = ws.CloseNow()
	s.mu.Lock()
	c.closed = true
	s.notifyLocked()
	s.mu.Unlock()
}

func (s *stub) pinger(ctx context.Context, c *stubConn) {
	defer s.wg.Done()
	tick := time.NewTicker(s.interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if !s.pinging.Load() {
			continue
		}
		v := fmt.Sprint(time.Now().UnixMilli())
		s.mu.Lock()
		c.pings = append(c.pings, v)
		s.mu.Unlock()
		_ = c.ws.Write(ctx, websocket.MessageText, []byte(`"primus::ping::`+v+`"`))
	}
}

func (s *stub) handle(ctx context.Context, c *stubConn, text string) {
	var v any
	_ = json.Unmarshal([]byte(text), &v)
	if str, ok := v.(string); ok && strings.HasPrefix(str, "primus::pong::") {
		s.mu.Lock()
		c.pongs = append(c.pongs, str)
		s.notifyLocked()
		s.mu.Unlock()
		return
	}
	s.mu.Lock()
	c.received = append(c.received, text)
	s.notifyLocked()
	s.mu.Unlock()

	send := func(typ websocket.MessageType, b []byte) { _ = c.ws.Write(ctx, typ, b) }
	if str, ok := v.(string); ok && strings.HasPrefix(str, "primus::id::") {
		b, _ := json.Marshal("primus::id::" + c.id)
		send(websocket.MessageText, b)
		return
	}
	var cmd struct {
		Cmd   string          `json:"cmd"`
		Data  json.RawMessage `json:"data"`
		Text  string          `json:"text"`
		Bytes []int           `json:"bytes"`
	}
	if m, ok := v.(map[string]any); !ok || m["cmd"] == nil || json.Unmarshal([]byte(text), &cmd) != nil {
		send(websocket.MessageText, []byte(text)) // echo
		return
	}
	switch cmd.Cmd {
	case "end":
		if cmd.Data != nil {
			send(websocket.MessageText, cmd.Data)
		}
		send(websocket.MessageText, []byte(`"primus::server::close"`))
		_ = c.ws.Close(websocket.StatusNoStatusRcvd, "") // like Primus: close frame without status
	case "drop":
		_ = c.ws.CloseNow()
	case "raw":
		send(websocket.MessageText, []byte(cmd.Text))
	case "binary":
		b := make([]byte, len(cmd.Bytes))
		for i, x := range cmd.Bytes {
			b[i] = byte(x)
		}
		send(websocket.MessageBinary, b)
	default:
		send(websocket.MessageText, []byte(text))
	}
}

// hangingServer accepts TCP connections and never answers, so WebSocket
// handshakes to it stay pending. Returns its http:// URL.
func hangingServer(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("hanging server: %v", err)
	}
	var (
		mu    sync.Mutex
		conns []net.Conn
		done  = make(chan struct{})
	)
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				if !errors.Is(err, net.ErrClosed) {
					t.Errorf("hanging server: %v", err)
				}
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		<-done
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
	})
	return "http://" + ln.Addr().String()
}
