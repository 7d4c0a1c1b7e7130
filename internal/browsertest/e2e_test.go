package browsertest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/primusgo/primus"
)

// node is a real primus.Server behind an http.Server that also serves the
// harness page at "/". Its application protocol, for the browser:
//
//	{"join": room} / {"leave": room}      Spark.Join / Spark.Leave
//	{"room": room, "data": x}             Server.Room(room).Write(x)
//	{"echo": x}                           Spark.Write(x)
//	{"cmd": "end"} / {"cmd": "endReconnect"}  Spark.End / Spark.EndReconnect
//
// Everything the server sees is recorded in the shared journal.
type node struct {
	t    testing.TB
	name string
	srv  *primus.Server
	hs   *http.Server
	addr string
	done chan struct{}
	j    *journal
}

// journal records server-side events of one or more nodes.
type journal struct {
	mu      sync.Mutex
	changed chan struct{}
	sparks  []*primus.Spark
	joins   []string // "<node>:<spark id>:<room>"
	discs   []string // "<node>:<spark id>:<reason>"
	data    []string // "<node>:<spark id>:<json>"
}

func newJournal() *journal { return &journal{changed: make(chan struct{})} }

func (j *journal) add(f func()) {
	j.mu.Lock()
	f()
	close(j.changed)
	j.changed = make(chan struct{})
	j.mu.Unlock()
}

// await waits until cond (called with j.mu held) is true.
func (j *journal) await(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	for {
		j.mu.Lock()
		ok, ch := cond(), j.changed
		j.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-ch:
		case <-deadline.C:
			j.mu.Lock()
			defer j.mu.Unlock()
			t.Fatalf("waited %v for %s; joins %q, disconnections %q, data %q", wait, what, j.joins, j.discs, j.data)
		}
	}
}

func (j *journal) has(list *[]string, entry string) func() bool {
	return func() bool {
		for _, e := range *list {
			if e == entry {
				return true
			}
		}
		return false
	}
}

// startNode starts a node on addr ("" = any free port) with the broker.
func startNode(t testing.TB, name, addr string, j *journal, cfg primus.Config) *node {
	t.Helper()
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	n := &node{t: t, name: name, j: j, done: make(chan struct{})}
	cfg.OnConnection = func(s *primus.Spark) {
		j.add(func() { j.sparks = append(j.sparks, s) })
		s.OnData(n.handle)
	}
	cfg.OnDisconnection = func(s *primus.Spark) {
		j.add(func() { j.discs = append(j.discs, name+":"+s.ID()+":"+s.CloseReason().String()) })
	}
	cfg.OnJoin = func(s *primus.Spark, room string) {
		j.add(func() { j.joins = append(j.joins, name+":"+s.ID()+":"+room) })
	}
	srv, err := primus.New(cfg)
	if err != nil {
		t.Fatalf("primus.New: %v", err)
	}
	n.srv = srv
	page := http.NewServeMux()
	page.HandleFunc("/{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, PageHTML(srv.Pathname()+"/primus.js"))
	})
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		_ = srv.Shutdown(context.Background())
		t.Fatalf("listen %s: %v", addr, err)
	}
	n.addr = ln.Addr().String()
	n.hs = &http.Server{Handler: srv.Middleware(page), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		defer close(n.done)
		_ = n.hs.Serve(ln)
	}()
	t.Cleanup(n.stop)
	return n
}

func (n *node) URL() string { return "http://" + n.addr }

// stop closes the listener, then shuts the Primus server down (sparks are
// closed reconnect-style, so clients try to reconnect). Idempotent.
func (n *node) stop() {
	_ = n.hs.Close()
	<-n.done
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := n.srv.Shutdown(ctx); err != nil && !errors.Is(err, primus.ErrServerClosed) {
		n.t.Errorf("%s: Shutdown: %v", n.name, err)
	}
}

func (n *node) handle(s *primus.Spark, d primus.Data) {
	n.j.add(func() { n.j.data = append(n.j.data, n.name+":"+s.ID()+":"+d.String()) })
	var m struct {
		Join, Leave, Room, Cmd string
		Data, Echo             json.RawMessage
	}
	if d.IsBinary() || d.Decode(&m) != nil {
		return
	}
	var err error
	switch {
	case m.Join != "":
		err = s.Join(m.Join)
	case m.Leave != "":
		s.Leave(m.Leave)
	case m.Room != "":
		err = n.srv.Room(m.Room).Write(m.Data)
	case m.Echo != nil:
		err = s.Write(m.Echo)
	case m.Cmd == "end":
		s.End()
	case m.Cmd == "endReconnect":
		s.EndReconnect()
	}
	if err != nil {
		n.t.Errorf("%s: handling %s: %v", n.name, d, err)
	}
}

// TestClientAgainstServer runs primus.js in Chromium against the real
// primus.Server (root package), served by it through Config.ClientLibrary.
func TestClientAgainstServer(t *testing.T) {
	browser := NewBrowser(t)

	t.Run("EchoAndID", func(t *testing.T) {
		t.Parallel()
		j := newJournal()
		n := startNode(t, "X", "", j, primus.Config{})
		tab := NewTab(t, browser)
		Load(t, tab, n.URL()+"/")
		Exec(t, tab, `window.values = [{a: [1, 'two', null]}, 'line\u2028sep', 42, ['x'], '\u00e9\ud83d\ude00'];
			window.p = track(new Primus(location.origin + '/anything?user=alice'));
			p.id(function (id) { window.gotID = id; });
			values.forEach(function (v) { p.write({echo: v}); });`)
		WaitFor(t, tab, wait, `typeof gotID === 'string' && count('data') === values.length`, "id and echoes")
		check(t, tab, `JSON.stringify(evs('data').map(function (e) { return e.args[0]; })) === JSON.stringify(values)`)
		check(t, tab, `p.options.pingTimeout === 45000 && p.readyState === Primus.OPEN`)
		j.mu.Lock()
		s := j.sparks[0]
		j.mu.Unlock()
		if id := Eval[string](t, tab, `gotID`); id != s.ID() || len(id) != 21 {
			t.Errorf("id() = %q, spark id %q", id, s.ID())
		}
		if q := s.Query(); q.Get("user") != "alice" || q.Get("_primuscb") == "" {
			t.Errorf("spark query %v", q)
		}
	})

	t.Run("HeartbeatKeepsTheConnection", func(t *testing.T) {
		t.Parallel()
		// The server ends sparks that miss one ping; seeing five pings on one
		// connection shows the client answers them. The client's compiled
		// pingTimeout is 1.5 x 300 ms.
		j := newJournal()
		n := startNode(t, "X", "", j, primus.Config{PingInterval: 300 * time.Millisecond})
		tab := NewTab(t, browser)
		Load(t, tab, n.URL()+"/")
		Exec(t, tab, `window.p = track(new Primus());`)
		WaitFor(t, tab, wait, `count('incoming::ping') >= 5`, "five pings")
		check(t, tab, `p.options.pingTimeout === 450 && count('close') === 0 && count('offline') === 0 && count('open') === 1`)
		j.mu.Lock()
		defer j.mu.Unlock()
		if len(j.sparks) != 1 || len(j.discs) != 0 {
			t.Errorf("sparks %d, disconnections %q", len(j.sparks), j.discs)
		}
	})

	t.Run("RoomsAcrossNodes", func(t *testing.T) {
		t.Parallel()
		hub := primus.NewMemoryHub()
		j := newJournal()
		x := startNode(t, "X", "", j, primus.Config{Broker: hub.NewBroker()})
		y := startNode(t, "Y", "", j, primus.Config{Broker: hub.NewBroker()})
		tab := NewTab(t, browser)
		Load(t, tab, x.URL()+"/")
		// A on X and B on Y join "news"; C on Y joins "other".
		Exec(t, tab, fmt.Sprintf(`
			function client(url, label, room) {
				var c = track(new Primus(url), label);
				c.on('open', function () { c.write({join: room}); });
				c.id(function (id) { window[label + 'id'] = id; });
				return c;
			}
			window.a = client(%q, 'A', 'news');
			window.b = client(%q, 'B', 'news');
			window.c = client(%q, 'C', 'other');`, x.URL(), y.URL(), y.URL()))
		WaitFor(t, tab, wait, `window.Aid && window.Bid && window.Cid`, "the ids")
		ids := jsValue(t, tab, `[Aid, Bid, Cid]`).([]any)
		j.await(t, "three joins", func() bool {
			return j.has(&j.joins, "X:"+ids[0].(string)+":news")() &&
				j.has(&j.joins, "Y:"+ids[1].(string)+":news")() &&
				j.has(&j.joins, "Y:"+ids[2].(string)+":other")()
		})
		if err := x.srv.Room("news").Write(map[string]string{"hello": "from X"}); err != nil {
			t.Fatal(err)
		}
		Exec(t, tab, `b.write({room: 'news', data: 'from B'})`)
		WaitFor(t, tab, wait, `count('data', 'A') === 2 && count('data', 'B') === 2`, "both room writes at A and B")
		if err := y.srv.Room("other").Write("for C"); err != nil {
			t.Fatal(err)
		}
		WaitFor(t, tab, wait, `count('data', 'C') === 1`, "C's room write")
		check(t, tab, `evs('data', 'C')[0].args[0] === 'for C'`)
		for _, who := range []string{"A", "B"} {
			got := jsValue(t, tab, `evs('data', '`+who+`').map(function (e) { return e.args[0]; })`)
			s := fmt.Sprint(got)
			if !strings.Contains(s, "map[hello:from X]") || !strings.Contains(s, "from B") {
				t.Errorf("%s received %v", who, got)
			}
		}
	})

	t.Run("SparkEndDoesNotReconnect", func(t *testing.T) {
		t.Parallel()
		j := newJournal()
		n := startNode(t, "X", "", j, primus.Config{})
		tab := NewTab(t, browser)
		Load(t, tab, n.URL()+"/")
		Exec(t, tab, `window.p = track(new Primus(location.origin, {reconnect: {min: 10}}));
			p.on('open', function () { p.write({cmd: 'end'}); });`)
		WaitFor(t, tab, wait, `count('end') === 1`, "end")
		check(t, tab, `count('close') === 1 && count('reconnect scheduled') === 0 && Object.keys(p.timers.timers).length === 0`)
		j.await(t, "the disconnection", func() bool { return len(j.discs) == 1 && strings.HasSuffix(j.discs[0], ":ended") })
	})

	t.Run("EndReconnectRejoins", func(t *testing.T) {
		t.Parallel()
		j := newJournal()
		n := startNode(t, "X", "", j, primus.Config{})
		tab := NewTab(t, browser)
		Load(t, tab, n.URL()+"/")
		Exec(t, tab, `window.p = track(new Primus(location.origin, {reconnect: {min: 10}}));
			p.on('open', function () { p.write({join: 'lobby'}); });
			p.once('open', function () { p.write({cmd: 'endReconnect'}); });`)
		WaitFor(t, tab, wait, `count('open') === 2`, "the reconnection")
		check(t, tab, `count('close') === 1 && count('reconnected') === 1 && count('end') === 0`)
		j.await(t, "two sparks joining", func() bool {
			return len(j.sparks) == 2 && j.has(&j.joins, "X:"+j.sparks[1].ID()+":lobby")()
		})
		if err := n.srv.Room("lobby").Write("welcome back"); err != nil {
			t.Fatal(err)
		}
		WaitFor(t, tab, wait, `evs('data').some(function (e) { return e.args[0] === 'welcome back'; })`, "the room write")
		j.mu.Lock()
		defer j.mu.Unlock()
		if j.sparks[0].ID() == j.sparks[1].ID() || len(j.discs) != 1 || !strings.HasSuffix(j.discs[0], ":ended (reconnect)") {
			t.Errorf("sparks %s, %s; disconnections %q", j.sparks[0].ID(), j.sparks[1].ID(), j.discs)
		}
	})

	t.Run("ServerRestart", func(t *testing.T) {
		t.Parallel()
		j := newJournal()
		n := startNode(t, "X", "", j, primus.Config{})
		tab := NewTab(t, browser)
		Load(t, tab, n.URL()+"/")
		Exec(t, tab, `window.p = track(new Primus(location.origin, {reconnect: {min: 50, retries: 20}}));
			p.on('open', function () { p.write({join: 'news'}); });`)
		WaitFor(t, tab, wait, `count('open') === 1`, "open")
		j.await(t, "the join", func() bool { return len(j.joins) == 1 })
		n.stop()
		WaitFor(t, tab, wait, `count('close') === 1 && count('reconnect scheduled') >= 2`, "a failed reconnect attempt")
		n2 := startNode(t, "X2", n.addr, j, primus.Config{})
		WaitFor(t, tab, wait, `count('open') === 2`, "the reconnection to the new server")
		j.await(t, "the re-join on the new server", func() bool {
			return len(j.joins) == 2 && strings.HasPrefix(j.joins[1], "X2:")
		})
		if err := n2.srv.Room("news").Write("after restart"); err != nil {
			t.Fatal(err)
		}
		WaitFor(t, tab, wait, `evs('data').some(function (e) { return e.args[0] === 'after restart'; })`, "the room write")
		check(t, tab, `count('reconnected') === 1 && count('end') === 0 && count('error') === 0`)
		j.mu.Lock()
		disc := append([]string(nil), j.discs...)
		j.mu.Unlock()
		if len(disc) != 1 || !strings.HasSuffix(disc[0], ":server shutdown") {
			t.Errorf("disconnections %q", disc)
		}
		Screenshot(t, tab, "")
	})

	t.Run("ClientEnd", func(t *testing.T) {
		t.Parallel()
		j := newJournal()
		n := startNode(t, "X", "", j, primus.Config{})
		tab := NewTab(t, browser)
		Load(t, tab, n.URL()+"/")
		Exec(t, tab, `window.p = track(new Primus());
			p.on('open', function () { p.end({bye: true}); });`)
		WaitFor(t, tab, wait, `count('end') === 1`, "end")
		j.await(t, "the last message and the disconnection", func() bool {
			return len(j.data) == 1 && strings.HasSuffix(j.data[0], `:{"bye":true}`) &&
				len(j.discs) == 1 && strings.HasSuffix(j.discs[0], ":client closed")
		})
	})
}
