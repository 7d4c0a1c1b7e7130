package browsertest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/primusgo/primus"
	"github.com/primusgo/primus/internal/serverapp"
)

// proxy is a loopback TCP proxy in front of a server: cut closes every
// connection through it and refuses new ones (accepted, then closed at
// once) until restore, which may point it at another server.
type proxy struct {
	ln   net.Listener
	wg   sync.WaitGroup
	mu   sync.Mutex
	to   string
	down bool
	cns  map[net.Conn]struct{}
}

func startProxy(t *testing.T, to string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, to: to, cns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(func() {
		_ = ln.Close()
		p.cut()
		p.wg.Wait()
	})
	return p
}

func (p *proxy) URL() string { return "http://" + p.ln.Addr().String() }

func (p *proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.down {
			p.mu.Unlock()
			_ = c.Close()
			continue
		}
		p.cns[c] = struct{}{}
		to := p.to
		p.wg.Add(1)
		p.mu.Unlock()
		go p.pipe(c, to)
	}
}

// track adds c to the connections cut closes; false if the proxy is down.
func (p *proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.down {
		return false
	}
	p.cns[c] = struct{}{}
	return true
}

func (p *proxy) forget(cs ...net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range cs {
		delete(p.cns, c)
		_ = c.Close()
	}
}

func (p *proxy) pipe(c net.Conn, to string) {
	defer p.wg.Done()
	b, err := net.DialTimeout("tcp", to, 5*time.Second)
	if err != nil {
		p.forget(c)
		return
	}
	if !p.track(b) {
		p.forget(c, b)
		return
	}
	done := make(chan struct{}, 2)
	cp := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		done <- struct{}{}
	}
	go cp(b, c)
	go cp(c, b)
	<-done
	p.forget(c, b) // ends the other copy
	<-done
}

// cut closes every connection and refuses new ones until restore.
func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = true
	for c := range p.cns {
		_ = c.Close()
	}
}

// restore accepts connections again, to to if it is not empty.
func (p *proxy) restore(to string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if to != "" {
		p.to = to
	}
	p.down = false
}

// historyApp is the standalone server (serverapp) with room history, also
// serving the harness page at "/".
type historyApp struct {
	app *serverapp.App
	hs  *httptest.Server
}

func startHistoryApp(t *testing.T, opts serverapp.Options) *historyApp {
	t.Helper()
	app, err := serverapp.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, PageHTML("/primus/primus.js"))
	})
	mux.Handle("/", app)
	h := &historyApp{app: app, hs: httptest.NewServer(mux)}
	t.Cleanup(h.stop)
	return h
}

func (h *historyApp) addr() string { return h.hs.Listener.Addr().String() }

// stop closes the server (idempotent).
func (h *historyApp) stop() {
	h.hs.CloseClientConnections()
	h.hs.Close()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	_ = h.app.Shutdown(ctx)
}

// roomsPageJS records what the page's client p receives (not through the
// harness's track, which logs every message into the page: too slow at
// 1 000 messages a second). For history room h: the count of each
// (epoch, offset) and whether each came in order, exactly after the one
// before it, with data equal to its offset.
const roomsPageJS = `
window.seen = {}; window.n = 0; window.last = null; window.bad = []; window.other = [];
window.recov = []; window.acks = []; window.closes = 0; window.opens = 0; window.reconnects = 0;
window.errors = [];
window.addEventListener('error', function (e) { errors.push('uncaught: ' + e.message); });
window.p = new Primus(location.origin, {reconnect: {min: 100, max: 300, retries: 100}});
p.on('open', function () { opens++; });
p.on('close', function () { closes++; });
p.on('reconnected', function () { reconnects++; });
p.on('error', function (e) { errors.push(e.message); });
p.on('recovered', function (room, ok) { recov.push([room, ok]); });
p.on('data', function (m) {
  if (m && typeof m === 'object' && m.room === 'h') {
    var k = m.epoch + ':' + m.offset;
    seen[k] = (seen[k] || 0) + 1;
    n++;
    if (m.data !== m.offset) bad.push('data ' + JSON.stringify(m.data) + ' at offset ' + m.offset);
    if (last && last.epoch === m.epoch && m.offset !== last.offset + 1) bad.push('offset ' + m.offset + ' after ' + last.offset);
    last = {offset: m.offset, epoch: m.epoch};
    return;
  }
  if (other.length < 100) other.push(m);
});
window.ackOf = function (name) {
  return function (err, reply) { acks.push({name: name, err: err ? err.message : null, reply: reply}); };
};
window.dupes = function () {
  return Object.keys(seen).filter(function (k) { return seen[k] !== 1; });
};
`

// TestJoinRecoverAcrossCut is the proof of the browser part of room
// history: a publisher writes to a history room at 1 000 messages a
// second; the page's client, joined with {recover: true}, loses its
// connection mid-stream (a proxy cuts it, and refuses new ones for 2 s);
// it reconnects, joins with since, and receives every message exactly
// once, in order, with a `recovered` event (true).
func TestJoinRecoverAcrossCut(t *testing.T) {
	const total = 6000 // 6 s at 1 000/s
	browser := NewBrowser(t)
	srv := startHistoryApp(t, serverapp.Options{HistorySize: 20000, HistoryTTL: time.Minute})
	px := startProxy(t, srv.addr())
	tab := NewTab(t, browser)
	Load(t, tab, px.URL()+"/")
	Exec(t, tab, roomsPageJS+`p.join('h', {recover: true}, ackOf('join'));`)
	WaitFor(t, tab, wait, `acks.length === 1`, "the join's ack")
	check(t, tab, `acks[0].err === null && acks[0].reply.ok === true && acks[0].reply.offset === 0 && typeof acks[0].reply.epoch === 'string'`)

	// The publisher: message i (offset i) at i ms from the start.
	var published atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	pubDone := make(chan error, 1)
	go func() {
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		start := time.Now()
		for i := 1; i <= total; {
			due := int(time.Since(start) / time.Millisecond)
			for ; i <= due && i <= total; i++ {
				if err := srv.app.Primus.Room("h").Write(i); err != nil {
					pubDone <- fmt.Errorf("write %d: %w", i, err)
					return
				}
				published.Store(int64(i))
			}
			select {
			case <-tick.C:
			case <-ctx.Done():
				pubDone <- ctx.Err()
				return
			}
		}
		pubDone <- nil
	}()
	defer func() {
		cancel()
		<-pubDone
	}()

	WaitFor(t, tab, wait, `n >= 1500`, "1 500 messages before the cut")
	px.cut()
	atCut := published.Load()
	WaitFor(t, tab, wait, `closes === 1`, "the client to see the cut")
	time.Sleep(2 * time.Second) // the outage itself, not a synchronisation
	atRestore := published.Load()
	px.restore("")
	if atRestore-atCut < 1500 {
		t.Errorf("only %d messages published during the outage", atRestore-atCut)
	}
	t.Logf("cut at %d published, restored at %d", atCut, atRestore)

	WaitFor(t, tab, 2*wait, `recov.length === 1`, "the recovered event")
	check(t, tab, `recov[0][0] === 'h' && recov[0][1] === true && reconnects === 1`)
	if err := <-pubDone; err != nil {
		t.Fatalf("publisher: %v", err)
	}
	pubDone <- nil // for the deferred receive
	WaitFor(t, tab, wait, fmt.Sprintf(`n >= %d`, total), "every message")
	got := jsValue(t, tab, `{n: n, distinct: Object.keys(seen).length, dupes: dupes().slice(0, 10), bad: bad.slice(0, 10),
		other: other, errors: errors, last: last, opens: opens, closes: closes, recov: recov, acks: acks.length}`).(map[string]any)
	t.Logf("page: %v", got)
	if got["n"] != float64(total) || got["distinct"] != float64(total) || len(got["dupes"].([]any)) != 0 || len(got["bad"].([]any)) != 0 {
		t.Errorf("not every message exactly once in order: %v", got)
	}
	if last := got["last"].(map[string]any); last["offset"] != float64(total) {
		t.Errorf("last message %v, want offset %d", last, total)
	}
	if len(got["other"].([]any)) != 0 || len(got["errors"].([]any)) != 0 || got["opens"] != float64(2) || got["acks"] != float64(1) {
		t.Errorf("acks reached the app, errors, or more connections: %v", got)
	}
	Screenshot(t, tab, "")
}

// TestJoinRecoverNewEpoch: the server restarts (memory broker: the history
// is gone, a new epoch); after its reconnect the client's join with since
// is answered recovered false, which the page gets as `recovered` (h,
// false), and the room's new writes arrive (offsets from 1 again, in the
// new epoch, not taken for duplicates). The plain join is rejoined as well,
// before the message the app queued while offline; leave forgets a room.
func TestJoinRecoverNewEpoch(t *testing.T) {
	browser := NewBrowser(t)
	opts := serverapp.Options{HistorySize: 100, HistoryRooms: []string{"h"}}
	srv1 := startHistoryApp(t, opts)
	px := startProxy(t, srv1.addr())
	tab := NewTab(t, browser)
	Load(t, tab, px.URL()+"/")
	Exec(t, tab, roomsPageJS+`p.join('h', {recover: true}, ackOf('h')); p.join('p', ackOf('p'));`)
	WaitFor(t, tab, wait, `acks.length === 2`, "the joins' acks")
	check(t, tab, `acks[0].name === 'h' && acks[0].reply.offset === 0 && acks[1].name === 'p' && acks[1].err === null && !('offset' in acks[1].reply)`)
	for i := 1; i <= 3; i++ {
		if err := srv1.app.Primus.Room("h").Write(i); err != nil {
			t.Fatal(err)
		}
	}
	WaitFor(t, tab, wait, `n === 3`, "three messages")
	epoch1 := Eval[string](t, tab, `last.epoch`)

	px.cut()
	WaitFor(t, tab, wait, `closes === 1`, "the client to see the cut")
	Exec(t, tab, `p.write({publish: {room: 'p', data: 'queued while offline'}});`)
	srv1.stop()
	srv2 := startHistoryApp(t, opts)
	px.restore(srv2.addr())

	WaitFor(t, tab, 2*wait, `recov.length === 1`, "the recovered event")
	check(t, tab, `recov[0][0] === 'h' && recov[0][1] === false && reconnects === 1`)
	// The plain room was joined before the queued publish went out: the
	// client receives its own publish.
	WaitFor(t, tab, wait, `other.indexOf('queued while offline') !== -1`, "the queued publish, through the rejoined room")
	for i := 1; i <= 2; i++ {
		if err := srv2.app.Primus.Room("h").Write(i); err != nil {
			t.Fatal(err)
		}
	}
	WaitFor(t, tab, wait, `n === 5`, "the new epoch's messages")
	check(t, tab, `last.offset === 2 && last.epoch !== `+jsString(epoch1)+` && dupes().length === 0 && bad.length === 0`)

	// A second client starts from a position the app kept: it is given
	// what came after it, then recovered true.
	Exec(t, tab, `window.q = new Primus(location.origin);
		window.qdata = []; window.qrecov = [];
		q.on('data', function (m) { qdata.push(m); });
		q.on('recovered', function (room, ok) { qrecov.push([room, ok]); });
		q.join('h', {recover: true, since: {offset: 1, epoch: last.epoch}});`)
	WaitFor(t, tab, wait, `qrecov.length === 1`, "the second client's recovered event")
	check(t, tab, `qrecov[0][1] === true && qdata.length === 1 && qdata[0].offset === 2 && qdata[0].data === 2 && qdata[0].room === 'h'`)
	Exec(t, tab, `q.destroy()`)

	Exec(t, tab, `p.leave('p', ackOf('leave'));`)
	WaitFor(t, tab, wait, `acks.length === 3`, "the leave's ack")
	check(t, tab, `acks[2].name === 'leave' && acks[2].err === null && acks[2].reply.ok === true &&
		p._rooms.list.map(function (e) { return e.room; }).join() === 'h' && errors.length === 0 && other.length === 1`)
}

func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// TestJoinHostileReplies: a server answering the client's commands with
// anything. Malformed acknowledgements and positioned messages never throw
// out of the client; what is not the client's own reaches the app as data.
func TestJoinHostileReplies(t *testing.T) {
	browser := NewBrowser(t)
	// The server writes back, raw, each string of {"raw": [...]}, and
	// answers nothing else.
	srv, err := primus.New(primus.Config{OnConnection: func(s *primus.Spark) {
		s.OnData(func(s *primus.Spark, d primus.Data) {
			var m struct{ Raw []string }
			if d.Decode(&m) != nil {
				return
			}
			for _, r := range m.Raw {
				_ = s.Write(json.RawMessage(r))
			}
		})
	}})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, PageHTML(srv.Pathname()+"/primus.js"))
	})
	hs := httptest.NewServer(srv.Middleware(mux))
	defer func() {
		hs.Close()
		_ = srv.Shutdown(context.Background())
	}()
	tab := NewTab(t, browser)
	Load(t, tab, hs.URL+"/")
	// Acks 1 (join r), 2 (join q), 3 (leave z) await answers.
	Exec(t, tab, roomsPageJS+`
		p.once('open', function () {
			p.join('r', {recover: true}, ackOf('r'));
			p.join('q', {recover: true}, ackOf('q'));
			p.leave('z', ackOf('z'));
			p.write({raw: [
				'null', '[]', '42', '"primus-js:1"', '{"ack":null}', '{"ack":{"x":1}}', '{"ack":[1]}',
				'{"ack":"primus-js:0"}', '{"ack":"primus-js:01"}', '{"ack":"primus-js:9"}', '{"ack":"primus-js:__proto__"}',
				'{"ack":"primus-js:1e0"}', '{"ack":"primus-js:99999999999999999999"}',
				'{"room":"__proto__","offset":1,"epoch":"e"}', '{"room":"hasOwnProperty","offset":1,"epoch":"e"}',
				'{"room":"r","offset":-1,"epoch":"e","data":"neg"}', '{"room":"r","offset":1.5,"epoch":"e","data":"frac"}',
				'{"room":"r","offset":1e400,"epoch":"e","data":"inf"}', '{"room":"r","offset":"2","epoch":"e","data":"str"}',
				'{"room":"r","offset":2,"epoch":null,"data":"noepoch"}', '{"room":["r"],"offset":2,"epoch":"e"}',
				'{"ack":"primus-js:1","ok":true,"offset":"x","epoch":5,"recovered":"yes"}',
				'{"ack":"primus-js:1","ok":true,"offset":7,"epoch":"e"}',
				'{"room":"r","offset":5,"epoch":"e","data":"five"}', '{"room":"r","offset":5,"epoch":"e","data":"dupe"}',
				'{"room":"r","offset":6,"epoch":"f","data":"six f"}', '{"room":"r","offset":6,"epoch":"f","data":"dupe"}',
				'{"ack":"primus-js:2","ok":"yes"}', '{"ack":"primus-js:3","error":{"e":1}}',
				'"end"'
			]});
		});`)
	WaitFor(t, tab, wait, `other.indexOf('end') !== -1`, "the last hostile message")
	got := jsValue(t, tab, `{other: other, acks: acks, errors: errors, open: p.readyState === Primus.OPEN,
		rooms: p._rooms.list.map(function (e) { return [e.room, e.pos]; })}`).(map[string]any)
	want := `{"acks":[` +
		`{"err":null,"name":"r","reply":{"ack":"primus-js:1","epoch":5,"offset":"x","ok":true,"recovered":"yes"}},` +
		`{"err":"primus: malformed acknowledgement","name":"q","reply":{"ack":"primus-js:2","ok":"yes"}},` +
		`{"err":"primus: malformed acknowledgement","name":"z","reply":{"ack":"primus-js:3","error":{"e":1}}}],` +
		`"errors":[],"open":true,` +
		`"other":[null,[],42,"primus-js:1",{"ack":null},{"ack":{"x":1}},{"ack":[1]},` +
		`{"ack":"primus-js:0"},{"ack":"primus-js:01"},{"ack":"primus-js:9"},{"ack":"primus-js:__proto__"},` +
		`{"ack":"primus-js:1e0"},{"ack":"primus-js:99999999999999999999"},` +
		`{"epoch":"e","offset":1,"room":"__proto__"},{"epoch":"e","offset":1,"room":"hasOwnProperty"},` +
		`{"data":"neg","epoch":"e","offset":-1,"room":"r"},{"data":"frac","epoch":"e","offset":1.5,"room":"r"},` +
		`{"data":"inf","epoch":"e","offset":null,"room":"r"},{"data":"str","epoch":"e","offset":"2","room":"r"},` +
		`{"data":"noepoch","epoch":null,"offset":2,"room":"r"},{"epoch":"e","offset":2,"room":["r"]},` +
		`{"data":"five","epoch":"e","offset":5,"room":"r"},{"data":"six f","epoch":"f","offset":6,"room":"r"},"end"],` +
		`"rooms":[["r",{"epoch":"f","offset":6}]]}`
	if s := mustJSON(t, got); s != want {
		t.Errorf("got\n%s\nwant\n%s", s, want)
	}

	// Unanswered acks are bounded: of 1 100 leaves, the oldest 76 are
	// given up (their callbacks get an error), 1 024 are awaited.
	Exec(t, tab, `window.givenUp = 0;
		for (var i = 0; i < 1100; i++) p.leave('x' + i, function (err) { if (err && /acknowledgements awaited/.test(err.message)) givenUp++; });`)
	check(t, tab, `givenUp === 76 && p._rooms.pending === 1024 && Object.keys(p._rooms.acks).length === 1024 && errors.length === 0`)
}
