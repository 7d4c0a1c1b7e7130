package browsertest

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	// The browser subtests mostly wait on timers and the network, so run
	// more of them at once than GOMAXPROCS (the default), unless -parallel
	// was given explicitly.
	flag.Parse()
	explicit := false
	flag.Visit(func(f *flag.Flag) { explicit = explicit || f.Name == "test.parallel" })
	if !explicit {
		_ = flag.Set("test.parallel", "8")
	}
	goleak.VerifyTestMain(m)
}

const wait = 10 * time.Second

// withStub starts a stub server (pinging every interval, 0 = never) and a tab
// showing its harness page.
func withStub(t *testing.T, browser context.Context, interval time.Duration) (*stub, context.Context) {
	t.Helper()
	s := newStub(t, interval)
	tab := NewTab(t, browser) // closed before the stub stops (cleanups run LIFO)
	Load(t, tab, s.URL()+"/")
	return s, tab
}

// check fails the test unless the JavaScript expression is true.
func check(t *testing.T, tab context.Context, expr string) {
	t.Helper()
	if !Eval[bool](t, tab, "!!("+expr+")") {
		t.Fatalf("expected %s; events: %s", expr, debugState(tab))
	}
}

// jsValue evaluates expr and JSON-decodes it into a generic value.
func jsValue(t *testing.T, tab context.Context, expr string) any {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(Eval[string](t, tab, "JSON.stringify("+expr+")")), &v); err != nil {
		t.Fatalf("%s: %v", expr, err)
	}
	return v
}

// TestClientAgainstStub exercises primus.js in Chromium against the protocol
// stub. Subtests run in parallel, each with its own stub and tab.
func TestClientAgainstStub(t *testing.T) {
	browser := NewBrowser(t)

	t.Run("GlobalAndConstants", func(t *testing.T) {
		t.Parallel()
		_, tab := withStub(t, browser, 0)
		check(t, tab, `typeof Primus === 'function' && typeof Primus.connect === 'function'`)
		check(t, tab, `Primus.OPENING === 1 && Primus.CLOSED === 2 && Primus.OPEN === 3`)
		check(t, tab, `Primus.prototype.OPEN === 3 && Primus.pathname === '/primus' && Primus.version === '8.0.9'`)
		check(t, tab, `(function () { var p = Primus.connect(location.href, {manual: true}); var ok = p instanceof Primus && p.readyState === Primus.CLOSED && p.options.pingTimeout === false; p.end(); return ok; })()`)
		check(t, tab, `(function () { try { new Primus(location.href, {ping: 1000}); return false; } catch (e) { return /removed/.test(e.message); } })()`)
	})

	t.Run("OpenFlushesQueuedWritesAndKeepsQuery", func(t *testing.T) {
		t.Parallel()
		s, tab := withStub(t, browser, 0)
		Exec(t, tab, `window.p = track(new Primus(location.origin + '/ignored/path?token=abc&x=1&_primuscb=old'));
			window.written = [p.write({n: 1}), p.write('two'), p.write([3])];
			window.initialState = p.readyState;`)
		WaitFor(t, tab, wait, `count('open') === 1`, "open")
		check(t, tab, `initialState === Primus.CLOSED && p.readyState === Primus.OPEN && written.every(function (x) { return x === true; })`)
		if got := jsValue(t, tab, `names().slice(0, 3)`); !reflect.DeepEqual(got, []any{"readyStateChange", "readyStateChange", "open"}) {
			t.Errorf("events %v", got)
		}
		check(t, tab, `JSON.stringify(evs('readyStateChange').map(function (e) { return e.args[0]; })) === '["opening","open"]'`)
		c := s.conn(0)
		s.await(wait, "the queued writes", func() bool { return len(c.received) == 3 })
		if got, want := s.received(c), []string{`{"n":1}`, `"two"`, `[3]`}; !reflect.DeepEqual(got, want) {
			t.Errorf("server received %q, want %q", got, want)
		}
		if c.path != "/primus" || c.query.Get("token") != "abc" || c.query.Get("x") != "1" {
			t.Errorf("connected to %s?%s; want the compiled pathname and the given query", c.path, c.query.Encode())
		}
		if cb := c.query["_primuscb"]; len(cb) != 1 || cb[0] == "old" || cb[0] == "" {
			t.Errorf("_primuscb = %q; want one fresh cache buster", cb)
		}
	})

	t.Run("DefaultURLIsThePageOrigin", func(t *testing.T) {
		t.Parallel()
		s, tab := withStub(t, browser, 0)
		Exec(t, tab, `window.p = track(new Primus());`)
		WaitFor(t, tab, wait, `count('open') === 1`, "open")
		if c := s.conn(0); c.path != "/primus" || len(c.query) != 1 {
			t.Errorf("connected to %s?%s", c.path, c.query.Encode())
		}
	})

	t.Run("DataRoundTrip", func(t *testing.T) {
		t.Parallel()
		s, tab := withStub(t, browser, 0)
		Exec(t, tab, `window.values = [{a: 1, b: [true, null, 'x']}, 'plain string', [1, 2, 3], 42, null,
				'\u00e9 \u00fc unicode \ud83d\ude00', 'line\u2028sep\u2029para', 'primus::foo::bar'];
			window.p = track(new Primus(location.origin));
			p.on('open', function () { values.forEach(function (v) { p.write(v); }); });`)
		WaitFor(t, tab, wait, `count('data') === values.length`, "the echoes")
		check(t, tab, `JSON.stringify(evs('data').map(function (e) { return e.args[0]; })) === JSON.stringify(values)`)
		got := s.received(s.conn(0))
		if len(got) != 8 || got[6] != `"line\u2028sep\u2029para"` {
			t.Errorf("U+2028/U+2029 not escaped on the wire: %q", got)
		}
		// data's second argument is the raw frame text.
		raws := jsValue(t, tab, `evs('data').map(function (e) { return e.args[1]; })`)
		for i, r := range raws.([]any) {
			if r != got[i] {
				t.Errorf("raw[%d] = %q, want the frame %q", i, r, got[i])
			}
		}
		// As the original: JSON.stringify gives undefined for undefined and
		// functions, and WebSocket.send(undefined) sends the text "undefined"
		// (the stub echoes it, which is not JSON: an error each); a circular
		// value is an error at once and sends nothing.
		check(t, tab, `p.write(undefined) === true && p.write(function () {}) === true`)
		Exec(t, tab, `window.circ = {}; circ.self = circ; p.write(circ);`)
		WaitFor(t, tab, wait, `count('error') === 3 && p.readyState === Primus.OPEN`, "errors for the echoed undefined and the circular value")
		Exec(t, tab, `p.write('after')`)
		c := s.conn(0)
		s.await(wait, "the write after the bad ones", func() bool { return len(c.received) == 11 })
		if got := s.received(c)[8:]; got[0] != "undefined" || got[1] != "undefined" || got[2] != `"after"` {
			t.Errorf("sent %q after undefined/function/circular writes", got)
		}
	})

	t.Run("ID", func(t *testing.T) {
		t.Parallel()
		s, tab := withStub(t, browser, 0)
		Exec(t, tab, `window.p = track(new Primus(location.origin));
			p.id(function (id) { window.gotID = id; });`) // before open: queued
		WaitFor(t, tab, wait, `typeof gotID === 'string'`, "the id callback")
		if id := Eval[string](t, tab, `gotID`); id != s.conn(0).id {
			t.Errorf("id() = %q, want %q", id, s.conn(0).id)
		}
		check(t, tab, `count('data') === 0`)
		if got := s.received(s.conn(0)); len(got) != 1 || got[0] != `"primus::id::"` {
			t.Errorf("id request frames %q", got)
		}
	})

	t.Run("PingPong", func(t *testing.T) {
		t.Parallel()
		// The served library gets pingTimeout 600 ms compiled in. Seeing four
		// pongs (> 1.6 s) on one connection without an offline event shows
		// every ping resets the timeout.
		s, tab := withStub(t, browser, 400*time.Millisecond)
		Exec(t, tab, `window.p = track(new Primus(location.origin));
			window.q = track(new Primus(location.origin, {pingTimeout: false}), 'q');`)
		WaitFor(t, tab, wait, `count('open') === 2`, "open")
		check(t, tab, `p.options.pingTimeout === 600 && q.options.pingTimeout === false`)
		check(t, tab, `p.timers.active('heartbeat') && !q.timers.active('heartbeat')`)
		c := s.conn(0)
		s.await(wait, "4 pongs", func() bool { return len(c.pongs) >= 4 })
		s.mu.Lock()
		for i, pong := range c.pongs {
			if pong != "primus::pong::"+c.pings[i] {
				t.Errorf("pong %d = %q for ping %q", i, pong, c.pings[i])
			}
		}
		s.mu.Unlock()
		check(t, tab, `count('offline') === 0 && count('close') === 0 && count('incoming::ping', 'p') >= 4`)
		check(t, tab, `typeof evs('incoming::ping')[0].args[0] === 'number'`)
		if n := s.numConns(); n != 2 {
			t.Errorf("%d connections, want 2", n)
		}
	})

	t.Run("PingTimeoutReconnects", func(t *testing.T) {
		t.Parallel()
		s, tab := withStub(t, browser, 400*time.Millisecond)
		Exec(t, tab, `window.p = track(new Primus(location.origin, {reconnect: {min: 100}}));
			p.on('open', function () { p.write({join: 'room'}); });`)
		WaitFor(t, tab, wait, `count('incoming::ping') >= 1`, "a first ping")
		s.pinging.Store(false)
		WaitFor(t, tab, wait, `count('close') === 1`, "close after the ping timeout")
		s.pinging.Store(true)
		WaitFor(t, tab, wait, `count('open') === 2`, "the reconnection")
		// The original's order: readyStateChange (opening) comes before reconnect.
		want := []any{"offline", "readyStateChange", "close", "reconnect scheduled", "readyStateChange",
			"reconnect", "reconnected", "online", "readyStateChange", "open"}
		got := jsValue(t, tab, `names().filter(function (n) { return n !== 'incoming::ping' && n !== 'data'; }).slice(3)`)
		if !reflect.DeepEqual(got, want) {
			t.Errorf("events after the first open: %v\nwant %v", got, want)
		}
		check(t, tab, `evs('reconnect scheduled')[0].args[0].attempt === 1 && evs('reconnect scheduled')[0].args[0].scheduled === 100`)
		c1, c2 := s.conn(0), s.conn(1)
		if c1.id == c2.id {
			t.Errorf("reconnect reused the id %s", c1.id)
		}
		s.await(wait, "the re-join and the old connection's end", func() bool {
			return c1.closed && len(c2.received) == 1 && c2.received[0] == `{"join":"room"}`
		})
	})

	t.Run("ReconnectAfterServerRestart", func(t *testing.T) {
		t.Parallel()
		s, tab := withStub(t, browser, 0)
		Exec(t, tab, `window.p = track(new Primus(location.origin, {reconnect: {min: 100, factor: 2, retries: 20}}));
			p.on('open', function () { p.write({join: 'room'}); });`)
		WaitFor(t, tab, wait, `count('open') === 1`, "open")
		first := s.conn(0)
		s.await(wait, "the join", func() bool { return len(first.received) == 1 })
		s.Stop()
		WaitFor(t, tab, wait, `count('close') === 1 && count('reconnect scheduled') >= 2`, "a failed attempt")
		Exec(t, tab, `p.write('queued while down')`)
		s.Restart()
		WaitFor(t, tab, wait, `count('open') === 2`, "the reconnection")
		check(t, tab, `count('reconnected') === 1 && count('error') === 0 && count('end') === 0 && p.readyState === Primus.OPEN`)
		check(t, tab, `names().indexOf('reconnected') < names().lastIndexOf('open')`)
		second := s.conn(1)
		if second.id == first.id {
			t.Errorf("the reconnection reused %s", first.id)
		}
		s.await(wait, "the re-join and the queued write", func() bool { return len(second.received) == 2 })
		if got := s.received(second); got[0] != `"queued while down"` || got[1] != `{"join":"room"}` {
			t.Errorf("after reconnecting the server got %q", got)
		}
		// Backoff: attempt 1 after min, attempt n within [1, 2) x min x factor^(n-1).
		sched := jsValue(t, tab, `evs('reconnect scheduled').map(function (e) { return e.args[0]; })`).([]any)
		for i, o := range sched {
			m := o.(map[string]any)
			n, d := m["attempt"].(float64), m["scheduled"].(float64)
			lo := 100 * float64(int(1)<<(int(n)-1))
			if n != float64(i+1) || (n == 1 && d != 100) || (n > 1 && (d < lo || d > 2*lo)) {
				t.Errorf("reconnect scheduled #%d: %v", i+1, m)
			}
		}
		rec := jsValue(t, tab, `evs('reconnected')[0].args[0]`).(map[string]any)
		if rec["attempt"].(float64) != float64(len(sched)) || rec["duration"].(float64) <= 0 {
			t.Errorf("reconnected opts %v after %d scheduled attempts", rec, len(sched))
		}
		Exec(t, tab, `p.write({after: 'restart'})`)
		WaitFor(t, tab, wait, `evs('data').some(function (e) { return e.args[0].after === 'restart'; })`, "an echo after the restart")
		Screenshot(t, tab, "")
	})

	t.Run("ServerCloseDoesNotReconnect", func(t *testing.T) {
		t.Parallel()
		s, tab := withStub(t, browser, 0)
		Exec(t, tab, `window.p = track(new Primus(location.origin, {reconnect: {min: 10}}));
			p.on('open', function () { p.write({cmd: 'end', data: {bye: true}}); });`)
		WaitFor(t, tab, wait, `count('end') === 1`, "end")
		got := jsValue(t, tab, `names().slice(3)`)
		if want := []any{"data", "readyStateChange", "close", "end"}; !reflect.DeepEqual(got, want) {
			t.Errorf("events %v, want %v", got, want)
		}
		check(t, tab, `evs('data')[0].args[0].bye === true && p.readyState === Primus.CLOSED`)
		check(t, tab, `Object.keys(p.timers.timers).length === 0 && !p.recovery.reconnecting()`) // nothing scheduled
		if n := s.numConns(); n != 1 {
			t.Errorf("%d connections", n)
		}
	})

	t.Run("ServerDropReconnects", func(t *testing.T) {
		t.Parallel()
		s, tab := withStub(t, browser, 0)
		Exec(t, tab, `window.p = track(new Primus(location.origin, {reconnect: {min: 10}}));
			p.once('open', function () { p.write({cmd: 'drop'}); });`)
		WaitFor(t, tab, wait, `count('open') === 2`, "the reconnection")
		check(t, tab, `count('close') === 1 && count('end') === 0 && count('reconnected') === 1`)
		if s.conn(0).id == s.conn(1).id {
			t.Errorf("same id after reconnect")
		}
	})

	t.Run("InvalidJSONAndOtherFrames", func(t *testing.T) {
		t.Parallel()
		_, tab := withStub(t, browser, 0)
		Exec(t, tab, `window.p = track(new Primus(location.origin));
			p.on('open', function () {
				p.write({cmd: 'raw', text: '{not json'});
				p.write({cmd: 'raw', text: '"primus::server::whatever"'});
				p.write({cmd: 'raw', text: '"primus::foo::bar"'});
				p.write({cmd: 'binary', bytes: [1, 2, 255]});
				p.write({still: 'alive'});
			});`)
		WaitFor(t, tab, wait, `count('data') === 3`, "the data")
		got := jsValue(t, tab, `evs('data').map(function (e) { return e.args[0]; })`)
		want := []any{"primus::foo::bar", map[string]any{"arraybuffer": []any{1.0, 2.0, 255.0}}, map[string]any{"still": "alive"}}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("data %v, want %v", got, want)
		}
		check(t, tab, `count('error') === 1 && /JSON/.test(evs('error')[0].args[0].error)`) // JSON.parse's SyntaxError, as the original
		check(t, tab, `p.readyState === Primus.OPEN && count('close') === 0 && !p.disconnect`)
	})

	t.Run("Manual", func(t *testing.T) {
		t.Parallel()
		s, tab := withStub(t, browser, 0)
		// A's open would run before B's if manual were ignored, so when B is
		// open A must still be untouched.
		Exec(t, tab, `window.a = track(new Primus(location.origin + '/?who=a', {manual: true}), 'A');
			window.b = track(new Primus(location.origin + '/?who=b'), 'B');`)
		WaitFor(t, tab, wait, `count('open', 'B') === 1`, "B open")
		check(t, tab, `a.readyState === Primus.CLOSED && names('A').length === 0`)
		if n := s.numConns(); n != 1 || s.conn(0).query.Get("who") != "b" {
			t.Fatalf("connections before a.open(): %s", s.dump())
		}
		Exec(t, tab, `a.write('hello from a'); a.open();`)
		WaitFor(t, tab, wait, `count('open', 'A') === 1`, "A open")
		c := s.conn(1)
		s.await(wait, "A's queued write", func() bool { return len(c.received) == 1 })
		if c.query.Get("who") != "a" || s.received(c)[0] != `"hello from a"` {
			t.Errorf("second connection %s", s.dump())
		}
	})

	t.Run("QueueSize", func(t *testing.T) {
		t.Parallel()
		s, tab := withStub(t, browser, 0)
		Exec(t, tab, `window.p = track(new Primus(location.origin + '/?who=p', {queueSize: 2}));
			[1, 2, 3, 4].forEach(function (n) { p.write(n); });
			window.q = track(new Primus(location.origin + '/?who=q', {queueSize: 0}), 'q');
			q.write('dropped');`)
		WaitFor(t, tab, wait, `count('open') === 2`, "open")
		Exec(t, tab, `p.write(5); q.write('sent');`)
		// Oldest dropped; queueSize 0 bounds nothing in the original (its test is
		// buffer.length === queueSize before a push), so q sends both.
		want := map[string]string{"p": "3,4,5", "q": `"dropped","sent"`}
		for _, c := range []*stubConn{s.conn(0), s.conn(1)} {
			w := want[c.query.Get("who")]
			s.await(wait, c.id+" to receive "+w, func() bool { return strings.Join(c.received, ",") == w })
		}
	})

	t.Run("ReconnectFailedAfterRetries", func(t *testing.T) {
		t.Parallel()
		s, tab := withStub(t, browser, 0)
		Exec(t, tab, `window.p = track(new Primus(location.origin, {reconnect: {min: 50, max: 120, retries: 3}}));`)
		WaitFor(t, tab, wait, `count('open') === 1`, "open")
		s.Stop()
		WaitFor(t, tab, wait, `count('end') === 1`, "end")
		got := jsValue(t, tab, `names().slice(3).filter(function (n) { return n !== 'readyStateChange'; })`)
		want := []any{"close",
			"reconnect scheduled", "reconnect",
			"reconnect scheduled", "reconnect",
			"reconnect scheduled", "reconnect",
			"end", "reconnect failed"} // the original emits end first
		if !reflect.DeepEqual(got, want) {
			t.Errorf("events %v\nwant %v", got, want)
		}
		sched := jsValue(t, tab, `evs('reconnect scheduled').map(function (e) { return e.args[0].scheduled; })`).([]any)
		if len(sched) != 3 || sched[0] != 50.0 || sched[1].(float64) < 100 || sched[1].(float64) > 120 || sched[2] != 120.0 {
			t.Errorf("scheduled delays %v; want 50, [100,120], 120 (capped by max)", sched)
		}
		check(t, tab, `evs('reconnect failed')[0].args[0].error === 'Unable to recover' && evs('reconnect failed')[0].args[1].attempt === 3`)
		check(t, tab, `count('error') === 0 && p.readyState === Primus.CLOSED && Object.keys(p.timers.timers).length === 0`)
	})

	t.Run("EndWhileReconnecting", func(t *testing.T) {
		t.Parallel()
		s, tab := withStub(t, browser, 0)
		Exec(t, tab, `window.p = track(new Primus(location.origin, {reconnect: {min: 60000}}));`)
		WaitFor(t, tab, wait, `count('open') === 1`, "open")
		s.Stop()
		WaitFor(t, tab, wait, `count('reconnect scheduled') === 1`, "the scheduled reconnect")
		Exec(t, tab, `p.end()`)
		check(t, tab, `count('end') === 1 && count('close') === 1 && Object.keys(p.timers.timers).length === 0 && !p.recovery.reconnecting()`)
	})

	t.Run("ConnectTimeout", func(t *testing.T) {
		t.Parallel()
		_, tab := withStub(t, browser, 0)
		// Chromium lets one WebSocket handshake per host:port be pending, so
		// each client gets its own never-answering server.
		h1, h2 := hangingServer(t), hangingServer(t)
		Exec(t, tab, fmt.Sprintf(`
			window.a = track(new Primus(%q, {timeout: 200, strategy: 'disconnect,online'}), 'A');
			window.b = track(new Primus(%q, {timeout: 200, reconnect: {min: 20, retries: 2, 'reconnect timeout': 150}}), 'B');`, h1, h2))
		WaitFor(t, tab, wait, `count('end', 'A') === 1 && count('end', 'B') === 1`, "both clients to end")
		if got := jsValue(t, tab, `names('A')`); !reflect.DeepEqual(got, []any{"readyStateChange", "timeout", "readyStateChange", "close", "end"}) {
			t.Errorf("A (no timeout strategy): %v", got)
		}
		got := jsValue(t, tab, `names('B').filter(function (n) { return n !== 'readyStateChange'; })`)
		want := []any{"timeout",
			"reconnect scheduled", "reconnect", "reconnect timeout",
			"reconnect scheduled", "reconnect", "reconnect timeout",
			"end", "reconnect failed"}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("B: %v\nwant %v", got, want)
		}
		// A's end() emits close although it never opened, as the original's.
		check(t, tab, `count('error') === 0 && count('close', 'A') === 1 && count('close', 'B') === 0 && count('open') === 0`)
	})

	t.Run("FirstConnectionRefused", func(t *testing.T) {
		t.Parallel()
		s, tab := withStub(t, browser, 0)
		s.Stop()
		Exec(t, tab, `window.a = track(new Primus(location.origin, {reconnect: {min: 20, retries: 1}}), 'A');
			window.b = track(new Primus(location.origin, {strategy: 'disconnect'}), 'B');`)
		WaitFor(t, tab, wait, `count('end', 'A') === 1 && count('end', 'B') === 1`, "both clients to end")
		check(t, tab, `count('error', 'A') === 1 && count('reconnect scheduled', 'A') === 1 && count('reconnect failed', 'A') === 1`)
		check(t, tab, `count('error', 'B') === 1 && count('reconnect scheduled', 'B') === 0 && count('close', 'B') === 1 && count('close', 'A') === 0`)
	})

	t.Run("EndAndDestroy", func(t *testing.T) {
		t.Parallel()
		s, tab := withStub(t, browser, 0)
		Exec(t, tab, `window.p = track(new Primus(location.origin));
			window.q = track(new Primus(location.origin), 'q');`)
		WaitFor(t, tab, wait, `count('open') === 2`, "open")
		Exec(t, tab, `p.end({last: true})`)
		check(t, tab, `JSON.stringify(names('p').slice(3)) === '["readyStateChange","close","end"]' && p.readyState === Primus.CLOSED`)
		s.await(wait, "the last write and the close", func() bool {
			for _, c := range s.conns {
				if c.closed && len(c.received) == 1 && c.received[0] == `{"last":true}` {
					return true
				}
			}
			return false
		})
		check(t, tab, `p.end() === p && count('end', 'p') === 1`) // idempotent
		check(t, tab, `q.destroy() === true && q.destroy() === false`)
		check(t, tab, `count('destroy', 'q') === 1 && count('end', 'q') === 1 && q.listeners('open').length === 0`)
		check(t, tab, `Object.keys(p.timers.timers).length === 0 && q.timers === null`) // destroy frees the timers
	})

	t.Run("BrowserOfflineOnline", func(t *testing.T) {
		t.Parallel()
		s, tab := withStub(t, browser, 0)
		Exec(t, tab, `window.p = track(new Primus(location.origin, {reconnect: {min: 10}}));
			window.q = track(new Primus(location.origin, {strategy: 'disconnect,timeout'}), 'q');`)
		WaitFor(t, tab, wait, `count('open') === 2`, "open")
		Exec(t, tab, `window.dispatchEvent(new Event('offline'))`)
		// The original ends the client when the browser goes offline; with the
		// "online" strategy, online brings it back.
		check(t, tab, `JSON.stringify(names('p').slice(3)) === '["offline","readyStateChange","close","end"]' && p.readyState === Primus.CLOSED`)
		check(t, tab, `Object.keys(p.timers.timers).length === 0 && !p.recovery.reconnecting()`)
		check(t, tab, `JSON.stringify(names('q').slice(3)) === '["offline","readyStateChange","close","end"]'`)
		Exec(t, tab, `window.dispatchEvent(new Event('online'))`)
		WaitFor(t, tab, wait, `count('open', 'p') === 2`, "reconnection after online")
		check(t, tab, `count('online', 'p') === 1 && count('reconnected', 'p') === 1 && count('online', 'q') === 1 && count('open', 'q') === 1`)
		if n := s.numConns(); n != 3 {
			t.Errorf("%d connections, want 3", n)
		}
	})
}
