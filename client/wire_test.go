package client

// The wire format's edge cases, each with what a Primus server and a Primus
// client make of it, checked three ways: against internal/protocol (always),
// against the original Primus 8.0.9 server and client on node
// (TestWireCasesNode*; they need node and npm, like nodeserver_test.go), and
// end to end against this package's client (TestWireCasesGoClient).

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/primusgo/primus/internal/nodefixture"
	"github.com/primusgo/primus/internal/protocol"
)

// wireCase is one text frame and what each side of Primus makes of it.
type wireCase struct {
	frame string
	// server is what a server makes of it from a client (spark.js
	// protocol(), protocol.Classify): KindData, KindPong or KindID.
	server protocol.Kind
	// client is what a client makes of it from the server (primus.js
	// protocol(), protocol.ClassifyFromServer), with value (the id, the
	// ping's value, the server:: value).
	client protocol.Kind
	value  string
	// pong answers a ping: 'primus::pong::' + Number(value).
	pong string
	// invalid: not JSON; both sides drop it and report an error.
	invalid bool
}

const (
	kData   = protocol.KindData
	kPong   = protocol.KindPong
	kID     = protocol.KindID
	kPing   = protocol.KindPing
	kClose  = protocol.KindServerClose
	kIgnore = protocol.KindIgnored
)

// wireCases: the "primus::server::close" case must stay last, as it ends
// the client under test.
var wireCases = []wireCase{
	{frame: `"primus::ping::1712000000000"`, server: kData, client: kPing, value: "1712000000000", pong: `"primus::pong::1712000000000"`},
	{frame: `"primus::ping::"`, server: kData, client: kPing, value: "", pong: `"primus::pong::0"`},
	// No ':' after the type: the type is all but the last character.
	{frame: `"primus::pingX"`, server: kData, client: kPing, value: "rimus::pingX", pong: `"primus::pong::NaN"`},
	{frame: `"primus::pingé"`, server: kData, client: kPing, value: "rimus::pingé", pong: `"primus::pong::NaN"`},
	{frame: `"primus::ping"`, server: kData, client: kData},
	// One ':': the value still starts two characters after it.
	{frame: `"primus::ping:x7"`, server: kData, client: kPing, value: "7", pong: `"primus::pong::7"`},
	{frame: `"\u0070rimus::ping::7"`, server: kData, client: kPing, value: "7", pong: `"primus::pong::7"`},
	{frame: `"primus::ping::\u2028"`, server: kData, client: kPing, value: "\u2028", pong: `"primus::pong::0"`},
	{frame: `"primus::ping::0x10"`, server: kData, client: kPing, value: "0x10", pong: `"primus::pong::16"`},
	{frame: `"primus::ping:: 12 "`, server: kData, client: kPing, value: " 12 ", pong: `"primus::pong::12"`},
	{frame: `"primus::ping::1e21"`, server: kData, client: kPing, value: "1e21", pong: `"primus::pong::1e+21"`},
	{frame: `"primus::ping::-0"`, server: kData, client: kPing, value: "-0", pong: `"primus::pong::0"`},
	{frame: `"primus::ping::Infinity"`, server: kData, client: kPing, value: "Infinity", pong: `"primus::pong::Infinity"`},
	{frame: `"primus::ping::\u00855"`, server: kData, client: kPing, value: "\u00855", pong: `"primus::pong::NaN"`},
	{frame: `"primus::ping::\ufeff5"`, server: kData, client: kPing, value: "\ufeff5", pong: `"primus::pong::5"`},

	{frame: `"primus::pong::1712000000000"`, server: kPong, client: kData},
	{frame: `"primus::pong::whatever"`, server: kPong, client: kData},
	{frame: `"primus::pongX"`, server: kPong, client: kData},
	{frame: `"primus::pong"`, server: kData, client: kData},
	{frame: `"primus::pong😀"`, server: kData, client: kData}, // the type keeps half of the emoji
	{frame: `"\u0070rimus::pong::7"`, server: kPong, client: kData},

	{frame: `"primus::id::"`, server: kID, client: kID, value: ""},
	{frame: `"primus::id::abc"`, server: kID, client: kID, value: "abc"},
	{frame: `"primus::idX"`, server: kID, client: kID, value: "rimus::idX"},
	{frame: `"primus::id"`, server: kData, client: kData},
	{frame: `"primus::id::a\u2028b"`, server: kID, client: kID, value: "a\u2028b"},
	{frame: "\"primus::id::a\u2028b\"", server: kID, client: kID, value: "a\u2028b"},
	{frame: `"primus::id:😀5"`, server: kID, client: kID, value: "\uFFFD5"}, // JavaScript keeps a lone low surrogate

	{frame: `"primus::server::closeX"`, server: kData, client: kIgnore, value: "closeX"},
	{frame: `"primus::server:close"`, server: kData, client: kIgnore, value: "lose"},
	{frame: `"primus::serverX"`, server: kData, client: kIgnore, value: "rimus::serverX"},
	{frame: `"primus::server::"`, server: kData, client: kIgnore, value: ""},

	{frame: `"primus::foo::bar"`, server: kData, client: kData},
	{frame: `"primus::"`, server: kData, client: kData},
	{frame: `"primus:"`, server: kData, client: kData},
	{frame: `"a\u2028b"`, server: kData, client: kData},
	{frame: "\"a\u2028b\"", server: kData, client: kData},
	{frame: `{"primus::ping::1":1}`, server: kData, client: kData},
	{frame: `["primus::id::"]`, server: kData, client: kData},
	{frame: `1`, server: kData, client: kData},
	{frame: `null`, server: kData, client: kData},
	{frame: `true`, server: kData, client: kData},
	{frame: `{"a":`, invalid: true},

	{frame: `"primus::server::close"`, server: kData, client: kClose, value: "close"},
}

func TestWireCasesClassify(t *testing.T) {
	t.Parallel()
	for i, tc := range wireCases {
		if tc.client == kClose && i != len(wireCases)-1 {
			t.Errorf("%s: the server close case must be the last", tc.frame)
		}
		kind, err := protocol.Classify([]byte(tc.frame))
		if (err != nil) != tc.invalid || (!tc.invalid && kind != tc.server) {
			t.Errorf("Classify(%s) = %v, %v; want %v", tc.frame, kind, err, tc.server)
		}
		kind, value, err := protocol.ClassifyFromServer([]byte(tc.frame))
		if (err != nil) != tc.invalid || (!tc.invalid && (kind != tc.client || value != tc.value)) {
			t.Errorf("ClassifyFromServer(%s) = %v %q, %v; want %v %q", tc.frame, kind, value, err, tc.client, tc.value)
		}
		if kind == kPing {
			if got := string(protocol.Pong(value)); got != tc.pong {
				t.Errorf("%s: Pong = %s, want %s", tc.frame, got, tc.pong)
			}
		}
	}
}

// canonical re-encodes JSON text, so that values from node and Go compare.
func canonical(t *testing.T, text []byte) string {
	t.Helper()
	if len(text) == 0 {
		text = []byte("null")
	}
	var v any
	if err := json.Unmarshal(text, &v); err != nil {
		t.Fatalf("canonical(%s): %v", text, err)
	}
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// serverWant describes what a Primus server does with tc: a "data" event,
// a "heartbeat" (an accepted pong), an "id reply", or an "error".
func (tc wireCase) serverWant(t *testing.T) string {
	switch {
	case tc.invalid:
		return "error"
	case tc.server == kPong:
		return "heartbeat"
	case tc.server == kID:
		return "id reply"
	}
	return "data " + canonical(t, []byte(tc.frame))
}

// clientSaw is what a client did with one frame.
type clientSaw struct {
	data   []string // data events, canonical JSON
	ids    []string // answers to the pending id request
	errors int      // error events
	sent   []string // frames sent back (other than id requests)
	ended  bool     // the client ended when the server closed the connection
}

func (s clientSaw) String() string {
	var parts []string
	for _, d := range s.data {
		parts = append(parts, "data "+d)
	}
	for _, id := range s.ids {
		parts = append(parts, "id "+strconv.Quote(id))
	}
	if s.errors > 0 {
		parts = append(parts, fmt.Sprintf("%d error", s.errors))
	}
	for _, f := range s.sent {
		parts = append(parts, "sent "+f)
	}
	if s.ended {
		parts = append(parts, "ended")
	}
	if parts == nil {
		return "nothing"
	}
	return strings.Join(parts, "; ")
}

// clientWant describes what a Primus client does with tc, as clientSaw
// prints it.
func (tc wireCase) clientWant(t *testing.T) string {
	var w clientSaw
	switch {
	case tc.invalid:
		w.errors = 1
	case tc.client == kData:
		w.data = []string{canonical(t, []byte(tc.frame))}
	case tc.client == kPing:
		w.sent = []string{tc.pong}
	case tc.client == kID:
		w.ids = []string{tc.value}
	case tc.client == kClose:
		w.ended = true
	}
	return w.String()
}

// TestWireCasesNodeServer sends every frame to the original server and
// reads what it made of it (testdata/spark-report.js reports it on the
// connection).
func TestWireCasesNodeServer(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	url := startSparkReport(t)
	ws, _, err := websocket.Dial(ctx, url+"/primus", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()

	for i, tc := range wireCases {
		marker := fmt.Sprintf(`{"marker":%d}`, i)
		for _, f := range []string{tc.frame, marker} {
			if err := ws.Write(ctx, websocket.MessageText, []byte(f)); err != nil {
				t.Fatal(err)
			}
		}
		// Node handles a connection's frames in order: everything it did
		// with the frame comes before the echo of the marker.
		var did []string
		for {
			_, b, err := ws.Read(ctx)
			if err != nil {
				t.Fatalf("%s: %v", tc.frame, err)
			}
			if strings.HasPrefix(string(b), `"primus::id::`) {
				did = append(did, "id reply")
				continue
			}
			var report struct {
				Data      json.RawMessage `json:"data"`
				Heartbeat bool            `json:"heartbeat"`
				Error     *string         `json:"error"`
			}
			if err := json.Unmarshal(b, &report); err != nil {
				t.Fatalf("%s: unexpected frame %s", tc.frame, b)
			}
			switch {
			case report.Data != nil && canonical(t, report.Data) == marker:
			case report.Data != nil:
				did = append(did, "data "+canonical(t, report.Data))
				continue
			case report.Heartbeat:
				did = append(did, "heartbeat")
				continue
			case report.Error != nil:
				did = append(did, "error")
				continue
			default:
				t.Fatalf("%s: unexpected frame %s", tc.frame, b)
			}
			break
		}
		if got, want := strings.Join(did, "; "), tc.serverWant(t); got != want {
			t.Errorf("Primus server, %s: %s; the table says %s", tc.frame, got, want)
		}
	}
}

// startSparkReport runs testdata/spark-report.js and returns its URL.
func startSparkReport(t *testing.T) string {
	t.Helper()
	nodefixture.Require(t)
	primusDir := filepath.Join(nodefixture.Dir(), "node_modules", "primus")
	cmd := exec.Command("node", filepath.Join("testdata", "spark-report.js"), primusDir)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	first := make(chan string, 1)
	read := make(chan struct{})
	go func() {
		defer close(read)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			select {
			case first <- sc.Text():
			default:
			}
		}
	}()
	t.Cleanup(func() {
		stdin.Close()
		cmd.Process.Kill()
		<-read // Wait closes stdout: read it to the end first
		cmd.Wait()
		if t.Failed() {
			t.Logf("spark-report.js stderr:\n%s", stderr.String())
		}
	})
	select {
	case line := <-first:
		port, ok := strings.CutPrefix(line, "listening ")
		if !ok {
			t.Fatalf("spark-report.js printed %q", line)
		}
		return "ws://127.0.0.1:" + port
	case <-read:
		t.Fatal("spark-report.js exited before listening")
	case <-time.After(30 * time.Second):
		t.Fatal("spark-report.js did not start")
	}
	return ""
}

// frameServer is a WebSocket server that lets a test write any frame to a
// client and read every frame the client sends.
type frameServer struct {
	URL   string
	conns chan *frameConn
	quit  chan struct{}
	wg    sync.WaitGroup
	mu    sync.Mutex
	open  []*websocket.Conn
}

type frameConn struct {
	ws     *websocket.Conn
	frames chan string // text frames from the client; closed at the end
}

func startFrameServer(t *testing.T) *frameServer {
	fs := &frameServer{conns: make(chan *frameConn, 4), quit: make(chan struct{})}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Counted before the upgrade: srv.Close stops waiting for a
		// connection once it is hijacked.
		fs.wg.Add(1)
		defer fs.wg.Done()
		ws, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer ws.CloseNow()
		fs.mu.Lock()
		fs.open = append(fs.open, ws)
		fs.mu.Unlock()
		fc := &frameConn{ws: ws, frames: make(chan string, 64)}
		defer close(fc.frames)
		select {
		case fs.conns <- fc:
		case <-fs.quit:
			return
		}
		for {
			typ, b, err := ws.Read(context.Background())
			if err != nil {
				return
			}
			if typ != websocket.MessageText {
				continue
			}
			select {
			case fc.frames <- string(b):
			case <-fs.quit:
				return
			}
		}
	}))
	fs.URL = srv.URL
	t.Cleanup(func() {
		close(fs.quit)
		fs.mu.Lock()
		for _, ws := range fs.open {
			ws.CloseNow()
		}
		fs.mu.Unlock()
		srv.Close()
		fs.wg.Wait()
	})
	return fs
}

// next returns the next frame the client sent.
func (fc *frameConn) next(ctx context.Context) (string, error) {
	select {
	case f, ok := <-fc.frames:
		if !ok {
			return "", fmt.Errorf("connection closed")
		}
		return f, nil
	case <-ctx.Done():
		return "", fmt.Errorf("waiting for a frame from the client: %w", ctx.Err())
	}
}

// wireClient is a Primus client under test, connected to a frameServer.
type wireClient interface {
	// awaitOpen waits until the first connection is open.
	awaitOpen(ctx context.Context) error
	// askID makes sure an id request is pending and reports whether the
	// client sends one on the current connection.
	askID(ctx context.Context) (bool, error)
	// collect returns what the client did until it received marker.
	collect(ctx context.Context, marker string) (clientSaw, error)
	write(v any) error
	// afterClose waits until the client reconnected (false) or ended (true)
	// after the server closed the connection.
	afterClose(ctx context.Context) (ended bool, err error)
}

// runWireCases sends every frame to cl, one connection per frame, and
// compares what it did with the table.
func runWireCases(t *testing.T, name string, fs *frameServer, cl wireClient) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for i, tc := range wireCases {
		var fc *frameConn
		select {
		case fc = <-fs.conns:
		case <-ctx.Done():
			t.Fatalf("%s: no connection", tc.frame)
		}
		if i == 0 {
			if err := cl.awaitOpen(ctx); err != nil {
				t.Fatal(err)
			}
		}
		// An id request pending, so that an id reply has someone to
		// answer; the frame goes out once the request arrived.
		sent, err := cl.askID(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if sent {
			if f, err := fc.next(ctx); err != nil || f != `"primus::id::"` {
				t.Fatalf("%s: want the id request, got %s, %v", tc.frame, f, err)
			}
		}
		marker := fmt.Sprintf(`{"marker":%d}`, i)
		for _, f := range []string{tc.frame, marker} {
			if err := fc.ws.Write(ctx, websocket.MessageText, []byte(f)); err != nil {
				t.Fatal(err)
			}
		}
		saw, err := cl.collect(ctx, marker)
		if err != nil {
			t.Fatalf("%s: %v", tc.frame, err)
		}
		// What the client sent back comes before what it writes now.
		if err := cl.write(map[string]int{"sync": i}); err != nil {
			t.Fatal(err)
		}
		sync := fmt.Sprintf(`{"sync":%d}`, i)
		for {
			f, err := fc.next(ctx)
			if err != nil {
				t.Fatalf("%s: %v", tc.frame, err)
			}
			if f == sync {
				break
			}
			saw.sent = append(saw.sent, f)
		}
		// Closed without "primus::server::close": the client comes back,
		// unless the frame announced the end.
		fc.ws.Close(websocket.StatusGoingAway, "")
		if saw.ended, err = cl.afterClose(ctx); err != nil {
			t.Fatalf("%s: %v", tc.frame, err)
		}
		if got, want := saw.String(), tc.clientWant(t); got != want {
			t.Errorf("%s, %s: %s; the table says %s", name, tc.frame, got, want)
		}
		if saw.ended && i != len(wireCases)-1 {
			t.Fatalf("%s ended after %s; cases left untested", name, tc.frame)
		}
	}
}

// TestWireCasesNodeClient drives the original client (testdata/node/client.js).
func TestWireCasesNodeClient(t *testing.T) {
	t.Parallel()
	fs := startFrameServer(t)
	nc := nodefixture.StartClient(t, fs.URL, nodefixture.ClientOptions{ReconnectMin: 10 * time.Millisecond, ReconnectMax: 50 * time.Millisecond})
	runWireCases(t, "Primus client", fs, &nodeWireClient{c: nc})
}

type nodeWireClient struct {
	c       *nodefixture.Client
	pending bool // an id callback is registered
}

func (n *nodeWireClient) awaitOpen(ctx context.Context) error {
	_, err := n.c.WaitFor(ctx, "open")
	return err
}

func (n *nodeWireClient) askID(ctx context.Context) (bool, error) {
	// The original registers one callback per id() call and keeps it
	// across reconnects: ask again only once it was answered.
	if n.pending {
		return false, nil
	}
	n.pending = true
	return true, n.c.Send(map[string]any{"op": "id"})
}

func (n *nodeWireClient) collect(ctx context.Context, marker string) (clientSaw, error) {
	var saw clientSaw
	for {
		ev, err := n.c.Next(ctx)
		if err != nil {
			return saw, err
		}
		switch ev.Name {
		case "data":
			var v any
			if len(ev.Data) > 0 {
				if err := json.Unmarshal(ev.Data, &v); err != nil {
					return saw, err
				}
			}
			b, _ := json.Marshal(v)
			if string(b) == marker {
				return saw, nil
			}
			saw.data = append(saw.data, string(b))
		case "id":
			n.pending = false
			saw.ids = append(saw.ids, ev.ID)
		case "error":
			saw.errors++
		}
	}
}

func (n *nodeWireClient) write(v any) error { return n.c.Write(v) }

func (n *nodeWireClient) afterClose(ctx context.Context) (bool, error) {
	for {
		ev, err := n.c.Next(ctx)
		if err != nil {
			return false, err
		}
		switch ev.Name {
		case "open":
			return false, nil
		case "end":
			return true, nil
		}
	}
}

// TestWireCasesGoClient drives this package's client the same way.
func TestWireCasesGoClient(t *testing.T) {
	t.Parallel()
	fs := startFrameServer(t)
	g := &goWireClient{
		opens:  make(chan struct{}, 1),
		errs:   make(chan error, 8),
		idDone: make(chan string, 1),
	}
	c, err := Dial(testCtx(t), fs.URL, Options{
		Reconnect: fastReconnect,
		OnOpen:    func(*Client) { g.opens <- struct{}{} },
		OnError:   func(err error) { g.errs <- err },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	g.c = c
	runWireCases(t, "Go client", fs, g)
}

type goWireClient struct {
	c      *Client
	opens  chan struct{}
	errs   chan error
	asking bool        // an ID call is running
	idDone chan string // its result
}

func (g *goWireClient) awaitOpen(ctx context.Context) error {
	select {
	case <-g.opens:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (g *goWireClient) askID(ctx context.Context) (bool, error) {
	// A running ID call asks again on every new connection by itself.
	if !g.asking {
		g.asking = true
		go func() {
			id, err := g.c.ID(ctx)
			if err != nil {
				id = "error: " + err.Error()
			}
			g.idDone <- id
		}()
	}
	return true, nil
}

func (g *goWireClient) collect(ctx context.Context, marker string) (clientSaw, error) {
	var saw clientSaw
	for {
		var m Message
		select {
		case m = <-g.c.Messages():
		case <-ctx.Done():
			return saw, ctx.Err()
		}
		var v any
		if err := m.Decode(&v); err != nil {
			return saw, err
		}
		b, _ := json.Marshal(v)
		if string(b) == marker {
			break
		}
		saw.data = append(saw.data, string(b))
	}
	// The reader handled the frame before the marker: its error was
	// reported and its id recorded by now.
	for len(g.errs) > 0 {
		<-g.errs
		saw.errors++
	}
	g.c.mu.Lock()
	answered := g.c.cur != nil && g.c.cur.idKnown
	g.c.mu.Unlock()
	if answered {
		select {
		case id := <-g.idDone:
			g.asking = false
			saw.ids = append(saw.ids, id)
		case <-ctx.Done():
			return saw, ctx.Err()
		}
	}
	return saw, nil
}

func (g *goWireClient) write(v any) error { return g.c.Write(v) }

func (g *goWireClient) afterClose(ctx context.Context) (bool, error) {
	select {
	case <-g.opens:
		return false, nil
	case <-g.c.Done():
		return true, nil
	case <-ctx.Done():
		return false, ctx.Err()
	}
}
