package client

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// stubServer is a minimal Primus server for tests, speaking the wire
// protocol of spec §1 (pings, "primus::id::", "primus::server::close",
// close frames without status) and the standalone server's command
// protocol:
//
//	{"join":"r","ack":1}                    -> {"ack":1,"ok":true}
//	{"leave":"r"}
//	{"publish":{"room":"r","data":X}}       X to every member of r
//
// plus test commands:
//
//	{"echo":X}      X back to the sender
//	{"end":true}    spark.end(): "primus::server::close", then close
//	{"drop":true}   spark.end({reconnect:true}): close only
//	{"raw":"text"}  "text" as a text frame, unencoded
//	{"binary":"t"}  "t" as a binary frame
type stubServer struct {
	URL string // http://127.0.0.1:port

	cfg  stubConfig
	srv  *httptest.Server
	wg   sync.WaitGroup
	mu   sync.Mutex
	conn map[*stubConn]bool
	room map[string]map[*stubConn]bool

	refuse   atomic.Bool  // answer upgrades with 503
	refused  atomic.Int64 // upgrades refused
	accepted atomic.Int64 // connections accepted

	// conns receives every accepted connection.
	conns chan *stubConn
}

type stubConfig struct {
	// pingInterval is the heartbeat; 0 disables it.
	pingInterval time.Duration
	// strictPong closes a connection that did not answer the previous ping
	// by the next one, as Primus does. Off by default: on a loaded machine
	// it makes timing-sensitive tests flaky, and tests check pongs
	// directly.
	strictPong bool
	// tls serves https (wss) with httptest's certificate; use s.srv.Client().
	tls bool
	// manualAcks leaves the acknowledgement of join and leave to the
	// test, which writes it on the stubConn.
	manualAcks bool
}

type stubConn struct {
	id     string
	uri    string // request URI of the upgrade
	header http.Header
	ws     *websocket.Conn
	s      *stubServer
	// frames receives the text of every frame the client sent.
	frames chan string
	// done is closed when the connection has ended.
	done  chan struct{}
	alive atomic.Bool
	// closeStatus is the close code the client sent (-1: none), valid
	// once done is closed.
	closeStatus websocket.StatusCode
	readErr     error
}

func newStubServer(cfg stubConfig) *stubServer {
	s := &stubServer{
		cfg:   cfg,
		conn:  map[*stubConn]bool{},
		room:  map[string]map[*stubConn]bool{},
		conns: make(chan *stubConn, 256),
	}
	if cfg.tls {
		s.srv = httptest.NewTLSServer(http.HandlerFunc(s.serveHTTP))
	} else {
		s.srv = httptest.NewServer(http.HandlerFunc(s.serveHTTP))
	}
	s.URL = s.srv.URL
	return s
}

// Close ends every connection (abruptly) and stops the server.
func (s *stubServer) Close() {
	s.refuse.Store(true)
	s.mu.Lock()
	for sc := range s.conn {
		sc.ws.CloseNow()
	}
	s.mu.Unlock()
	s.srv.Close()
	s.wg.Wait()
}

// dropAll closes every connection without "primus::server::close" (the
// client must reconnect).
func (s *stubServer) dropAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for sc := range s.conn {
		sc.ws.Close(websocket.StatusNoStatusRcvd, "")
	}
}

func (s *stubServer) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if !strings.HasPrefix(r.URL.Path, "/primus") {
		http.NotFound(w, r)
		return
	}
	if s.refuse.Load() {
		s.refused.Add(1)
		http.Error(w, "refusing connections", http.StatusServiceUnavailable)
		return
	}
	ws, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	s.wg.Add(1)
	defer s.wg.Done()
	sc := &stubConn{
		id:     newStubID(),
		uri:    r.URL.RequestURI(),
		header: r.Header.Clone(),
		ws:     ws,
		s:      s,
		frames: make(chan string, 1024),
		done:   make(chan struct{}),
	}
	sc.alive.Store(true)
	s.mu.Lock()
	s.conn[sc] = true
	s.mu.Unlock()
	s.accepted.Add(1)
	select {
	case s.conns <- sc:
	default: // a test that waits for it fails visibly
	}

	ctx, cancel := context.WithCancel(context.Background())
	var hb sync.WaitGroup
	if s.cfg.pingInterval > 0 {
		hb.Add(1)
		go func() {
			defer hb.Done()
			sc.heartbeat(ctx, s.cfg.pingInterval)
		}()
	}
	sc.readLoop()
	cancel()
	hb.Wait()
	ws.CloseNow()
	s.mu.Lock()
	delete(s.conn, sc)
	for _, members := range s.room {
		delete(members, sc)
	}
	s.mu.Unlock()
	close(sc.done)
}

func (sc *stubConn) heartbeat(ctx context.Context, every time.Duration) {
	// A timer restarted after each ping rather than a ticker: a ticker
	// delayed by a loaded test machine fires twice in a row and would
	// give the client no time to answer.
	t := time.NewTimer(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			t.Reset(every)
		}
		if !sc.alive.Swap(false) && sc.s.cfg.strictPong {
			sc.ws.Close(websocket.StatusNoStatusRcvd, "")
			return
		}
		sc.write("primus::ping::" + strconv.FormatInt(time.Now().UnixMilli(), 10))
	}
}

func (sc *stubConn) readLoop() {
	for {
		typ, b, err := sc.ws.Read(context.Background())
		if err != nil {
			sc.closeStatus = websocket.CloseStatus(err)
			sc.readErr = err
			return
		}
		if typ != websocket.MessageText {
			continue
		}
		select {
		case sc.frames <- string(b):
		default: // tests read what they need; never block the server
		}
		var v any
		if json.Unmarshal(b, &v) != nil {
			continue
		}
		switch v := v.(type) {
		case string:
			switch {
			case strings.HasPrefix(v, "primus::pong::"):
				sc.alive.Store(true)
			case strings.HasPrefix(v, "primus::id::"):
				sc.write("primus::id::" + sc.id)
			}
		case map[string]any:
			sc.command(v)
		}
	}
}

func (sc *stubConn) command(m map[string]any) {
	s := sc.s
	ok := true
	switch {
	case m["join"] != nil:
		name, _ := m["join"].(string)
		s.mu.Lock()
		if s.room[name] == nil {
			s.room[name] = map[*stubConn]bool{}
		}
		s.room[name][sc] = true
		s.mu.Unlock()
	case m["leave"] != nil:
		name, _ := m["leave"].(string)
		s.mu.Lock()
		delete(s.room[name], sc)
		s.mu.Unlock()
	case m["publish"] != nil:
		p, _ := m["publish"].(map[string]any)
		name, _ := p["room"].(string)
		s.mu.Lock()
		var members []*stubConn
		for member := range s.room[name] {
			members = append(members, member)
		}
		s.mu.Unlock()
		for _, member := range members {
			member.write(p["data"])
		}
	case m["echo"] != nil:
		sc.write(m["echo"])
	case m["end"] != nil:
		sc.write("primus::server::close")
		sc.ws.Close(websocket.StatusNoStatusRcvd, "")
		return
	case m["drop"] != nil:
		sc.ws.Close(websocket.StatusNoStatusRcvd, "")
		return
	case m["raw"] != nil:
		text, _ := m["raw"].(string)
		sc.ws.Write(context.Background(), websocket.MessageText, []byte(text))
	case m["binary"] != nil:
		text, _ := m["binary"].(string)
		sc.ws.Write(context.Background(), websocket.MessageBinary, []byte(text))
	default:
		ok = false
	}
	if s.cfg.manualAcks && (m["join"] != nil || m["leave"] != nil) {
		return
	}
	if ack, has := m["ack"]; has && ok {
		sc.write(map[string]any{"ack": ack, "ok": true})
	}
}

func (sc *stubConn) write(v any) {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	sc.ws.Write(context.Background(), websocket.MessageText, b)
}

// next returns the next frame the client sent that satisfies keep.
func (sc *stubConn) next(ctx context.Context, keep func(string) bool) (string, error) {
	for {
		select {
		case f := <-sc.frames:
			if keep == nil || keep(f) {
				return f, nil
			}
		case <-ctx.Done():
			return "", errors.New("timed out waiting for a frame from the client")
		}
	}
}

// notHeartbeat skips pongs.
func notHeartbeat(f string) bool { return !strings.HasPrefix(f, `"primus::pong::`) }

func newStubID() string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"
	var b [21]byte
	rand.Read(b[:])
	for i := range b {
		b[i] = alphabet[b[i]&63]
	}
	return string(b[:])
}
