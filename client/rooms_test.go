package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/primusgo/primus/internal/redistest"
	"github.com/primusgo/primus/internal/serverapp"
	"github.com/primusgo/primus/redisbroker"
)

// Rooms kept by Join, and room history with Recover, against the
// standalone server (internal/serverapp) in process.

// startApp runs a standalone server on a loopback port until the test ends.
func startApp(t *testing.T, opts serverapp.Options) (*serverapp.App, *httptest.Server) {
	t.Helper()
	if opts.PingInterval == 0 {
		opts.PingInterval = -1
	}
	app, err := serverapp.New(opts)
	if err != nil {
		t.Fatalf("serverapp.New: %v", err)
	}
	ts := httptest.NewServer(app)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = app.Shutdown(ctx)
		ts.Close()
	})
	return app, ts
}

func hostOf(ts *httptest.Server) string { return strings.TrimPrefix(ts.URL, "http://") }

// recoverEvent is one OnRecover call.
type recoverEvent struct {
	room      string
	recovered bool
	after     int // messages delivered before it
}

// recorder records what a client delivers: its messages (Handler, or the
// Messages channel read by a goroutine) and OnRecover calls.
type recorder struct {
	mu      sync.Mutex
	msgs    []Message
	recov   []recoverEvent
	errs    []error // OnError
	changed chan struct{}
	done    chan struct{} // closed when the channel reader exits
}

func newRecorder() *recorder {
	return &recorder{changed: make(chan struct{}, 1), done: make(chan struct{})}
}

func (r *recorder) signal() {
	select {
	case r.changed <- struct{}{}:
	default:
	}
}

func (r *recorder) message(m Message) {
	r.mu.Lock()
	r.msgs = append(r.msgs, m)
	r.mu.Unlock()
	r.signal()
}

func (r *recorder) onRecover(room string, recovered bool) {
	r.mu.Lock()
	r.recov = append(r.recov, recoverEvent{room, recovered, len(r.msgs)})
	r.mu.Unlock()
	r.signal()
}

// options hooks the recorder into o; with channel, the test must call
// readChannel after Dial.
func (r *recorder) options(o Options, channel bool) Options {
	if !channel {
		o.Handler = r.message
		close(r.done)
	}
	o.OnRecover = r.onRecover
	o.OnError = func(err error) {
		r.mu.Lock()
		r.errs = append(r.errs, err)
		r.mu.Unlock()
		r.signal()
	}
	return o
}

// readChannel records c's Messages until the channel closes.
func (r *recorder) readChannel(t *testing.T, c *Client) {
	go func() {
		defer close(r.done)
		for m := range c.Messages() {
			r.message(m)
		}
	}()
	t.Cleanup(func() { c.Close(); <-r.done })
}

// waitUntil waits until cond, checked with r.mu held, holds.
func (r *recorder) waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(30 * time.Second)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		ok := cond()
		r.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-r.changed:
		case <-deadline.C:
			r.mu.Lock()
			n, ev, errs := len(r.msgs), r.recov, r.errs
			r.mu.Unlock()
			t.Fatalf("timed out waiting for %s (%d messages, recover events %v, errors %v)", what, n, ev, errs)
		}
	}
}

// waitData waits for a message with data want and returns it.
func (r *recorder) waitData(t *testing.T, want string) Message {
	t.Helper()
	var got Message
	r.waitUntil(t, "message "+want, func() bool {
		for _, m := range r.msgs {
			if string(m.Data) == want {
				got = m
				return true
			}
		}
		return false
	})
	return got
}

func dialClient(t *testing.T, url string, o Options) *Client {
	t.Helper()
	if o.PingTimeout == 0 {
		o.PingTimeout = -1
	}
	if o.Reconnect == (ReconnectPolicy{}) {
		o.Reconnect = fastReconnect
	}
	c, err := Dial(testCtx(t), url, o)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// Join and Leave of plain rooms: acknowledged, kept across reconnects,
// and the application's own acks pass through.
func TestJoinLeaveKeepsRooms(t *testing.T) {
	app, ts := startApp(t, serverapp.Options{})
	p := startCutProxy(t, hostOf(ts))
	rec := newRecorder()
	opens := make(chan struct{}, 8)
	o := rec.options(Options{OnOpen: func(*Client) { opens <- struct{}{} }}, true)
	c := dialClient(t, p.URL(), o)
	rec.readChannel(t, c)
	waitFor(t, opens, "first open")
	ctx := testCtx(t)

	if err := c.Join(ctx, "a"); err != nil {
		t.Fatalf("Join: %v", err)
	}
	if err := c.Join(ctx, "a"); err != nil { // again: nothing new
		t.Fatalf("Join again: %v", err)
	}
	if err := c.Join(ctx, "a", Recover()); !errors.Is(err, ErrJoinConflict) {
		t.Fatalf("Join with other options = %v", err)
	}
	if err := c.Write(map[string]any{"join": "b", "ack": 7}); err != nil {
		t.Fatal(err)
	}
	if m := rec.waitData(t, `{"ack":7,"ok":true}`); m.Room != "" {
		t.Fatalf("application ack: %+v", m)
	}
	if err := app.Primus.Room("a").Write("one"); err != nil {
		t.Fatal(err)
	}
	if m := rec.waitData(t, `"one"`); m.Room != "" || m.Offset != 0 || m.Epoch != "" {
		t.Fatalf("plain message: %+v", m)
	}

	// A new session: "a" is joined again on its own ("b", written by the
	// application, is not). A Join of "z" after it (names are rejoined
	// in order) says when the rejoin is done.
	p.cut()
	p.restore()
	waitFor(t, opens, "reopen")
	if err := c.Join(ctx, "z"); err != nil {
		t.Fatalf("Join z: %v", err)
	}
	if err := app.Primus.Room("a", "b").Write("two"); err != nil {
		t.Fatal(err)
	}
	rec.waitData(t, `"two"`)

	if err := c.Leave(ctx, "a"); err != nil {
		t.Fatalf("Leave: %v", err)
	}
	if err := app.Primus.Room("a").Write("gone"); err != nil {
		t.Fatal(err)
	}
	if err := app.Primus.Room("z").Write("three"); err != nil {
		t.Fatal(err)
	}
	rec.waitData(t, `"three"`)
	rec.mu.Lock()
	for _, m := range rec.msgs {
		if string(m.Data) == `"gone"` {
			t.Error("a message of a room left")
		}
		if strings.Contains(string(m.Data), ackPrefix) {
			t.Errorf("the client's own ack was delivered: %s", m.Data)
		}
	}
	rec.mu.Unlock()
	// Not kept any more: after a reconnect only z is joined.
	p.cut()
	p.restore()
	waitFor(t, opens, "reopen")
	if err := c.Join(ctx, "zz"); err != nil {
		t.Fatal(err)
	}
	if err := app.Primus.Room("a").Write("gone again"); err != nil {
		t.Fatal(err)
	}
	if err := app.Primus.Room("z").Write("four"); err != nil {
		t.Fatal(err)
	}
	rec.waitData(t, `"four"`)
	rec.mu.Lock()
	for _, m := range rec.msgs {
		if string(m.Data) == `"gone again"` {
			t.Error("a room left was joined again")
		}
	}
	rec.mu.Unlock()
}

// The errors of Join and Leave; none of them leaves the room kept.
func TestJoinErrors(t *testing.T) {
	_, ts := startApp(t, serverapp.Options{HistorySize: 10, HistoryRooms: []string{"h*"}, MaxRoomsPerSpark: 3})
	p := startCutProxy(t, hostOf(ts))
	c := dialClient(t, p.URL(), Options{MaxRooms: 2})
	ctx := testCtx(t)

	if err := c.Join(ctx, "plain", Recover()); !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "keeps no history") {
		t.Fatalf("Recover of a room without history = %v", err)
	}
	if err := c.Join(ctx, strings.Repeat("x", 300)); !errors.Is(err, ErrRefused) {
		t.Fatalf("Join of an invalid room = %v", err)
	}
	if _, _, ok := c.Position("plain"); ok {
		t.Fatal("a refused room has a position")
	}
	if err := c.Join(ctx, "h1", Recover()); err != nil {
		t.Fatal(err)
	}
	if off, epoch, ok := c.Position("h1"); !ok || off != 0 || epoch == "" {
		t.Fatalf("Position = %d, %q, %v", off, epoch, ok)
	}
	if err := c.Join(ctx, "h2"); err != nil {
		t.Fatal(err)
	}
	if err := c.Join(ctx, "h3"); !errors.Is(err, ErrTooManyRooms) {
		t.Fatalf("Join beyond MaxRooms = %v", err)
	}
	if err := c.Leave(ctx, "h2"); err != nil {
		t.Fatal(err)
	}

	// While disconnected a Join waits for the next connection; when its
	// context ends first the room is not kept.
	p.cut()
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	err := c.Join(short, "h3")
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Join while disconnected = %v", err)
	}
	if err := c.Leave(ctx, "h1"); err != nil { // disconnected: at once
		t.Fatalf("Leave while disconnected = %v", err)
	}
	c.rooms.mu.Lock()
	n := len(c.rooms.rooms)
	c.rooms.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d rooms kept", n)
	}
	joined := make(chan error, 1)
	go func() { joined <- c.Join(ctx, "h4") }()
	p.restore()
	if err := waitFor(t, joined, "Join after reconnecting"); err != nil {
		t.Fatalf("Join while disconnected, then connected: %v", err)
	}

	c.Close()
	if err := c.Join(ctx, "h5"); !errors.Is(err, ErrClosed) {
		t.Fatalf("Join after Close = %v", err)
	}
	if err := c.Leave(ctx, "h4"); !errors.Is(err, ErrClosed) {
		t.Fatalf("Leave after Close = %v", err)
	}
	if _, err := Dial(ctx, p.URL(), Options{MaxRooms: -1}); err == nil {
		t.Fatal("negative MaxRooms accepted")
	}
}

// publisher writes 1, 2, 3, ... to a room at rate writes per second until
// total, through the server (a write any node of the cluster could make).
type publisher struct {
	sent atomic.Int64
	stop chan struct{}
	done chan struct{}
	err  atomic.Value
}

func startPublisher(app *serverapp.App, room string, rate, total int) *publisher {
	p := &publisher{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		start := time.Now()
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		n := 0
		for n < total {
			select {
			case <-p.stop:
				return
			case <-tick.C:
			}
			due := min(total, int(time.Since(start).Seconds()*float64(rate)))
			for n < due {
				n++
				if err := app.Primus.Room(room).Write(json.RawMessage(strconv.Itoa(n))); err != nil {
					p.err.Store(err)
					return
				}
				p.sent.Store(int64(n))
			}
		}
	}()
	return p
}

func (p *publisher) halt() {
	select {
	case <-p.stop:
	default:
		close(p.stop)
	}
	<-p.done
}

// reached waits until the publisher has written n.
func (p *publisher) reached(t *testing.T, n int64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for p.sent.Load() < n {
		select {
		case <-tick.C:
		case <-p.done:
			if p.sent.Load() >= n {
				return
			}
			t.Fatalf("publisher ended at %d: %v", p.sent.Load(), p.err.Load())
		}
		if time.Now().After(deadline) {
			t.Fatalf("publisher at %d, waiting for %d", p.sent.Load(), n)
		}
	}
}

// THE PROOF of recovery: a publisher writes 1 000 messages a second to a
// history room; the client, joined with Recover, loses its connection in
// the middle of the stream and cannot reconnect for 2 s; it comes back on
// its own and has every message exactly once, in order, and
// OnRecover(room, true) was called.
func TestRecoverAcrossOutage(t *testing.T) {
	app, ts := startApp(t, serverapp.Options{HistorySize: 100_000, HistoryTTL: 10 * time.Minute})
	proveRecovery(t, app, ts)
}

// The proof on a real Redis (native broker with history).
func TestRecoverAcrossOutageRedis(t *testing.T) {
	rs := redistest.StartServer(t)
	b, err := redisbroker.New(redisbroker.Config{
		Addr:           rs.Addr(),
		Channel:        fmt.Sprintf("clienthist%d", time.Now().UnixNano()),
		DialTimeout:    time.Second,
		CommandTimeout: time.Second,
		ProbeInterval:  time.Second,
		MaxBackoff:     200 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	app, ts := startApp(t, serverapp.Options{Broker: b, HistorySize: 100_000, HistoryTTL: 10 * time.Minute})
	proveRecovery(t, app, ts)
}

func proveRecovery(t *testing.T, app *serverapp.App, ts *httptest.Server) {
	const (
		room   = "ticker"
		rate   = 1000
		total  = 5000
		cutAt  = 1500
		outage = 2 * time.Second
	)
	p := startCutProxy(t, hostOf(ts))
	rec := newRecorder()
	// A small buffer: messages wait for the application when the cut
	// comes, some of them are lost with the connection, and must come
	// back from the history.
	c := dialClient(t, p.URL(), rec.options(Options{MessageBuffer: 4}, true))
	rec.readChannel(t, c)
	ctx := testCtx(t)
	if err := c.Join(ctx, room, Recover()); err != nil {
		t.Fatalf("Join: %v", err)
	}
	start, epoch, ok := c.Position(room)
	if !ok {
		t.Fatal("no position after Join")
	}

	pub := startPublisher(app, room, rate, total)
	defer pub.halt()
	pub.reached(t, cutAt)
	p.cut()
	atCut := pub.sent.Load()
	timer := time.NewTimer(outage) // the outage itself, not a synchronisation
	<-timer.C
	if pub.sent.Load()-atCut < rate { // the stream went on meanwhile
		t.Fatalf("only %d writes during the outage", pub.sent.Load()-atCut)
	}
	if p.refused.Load() == 0 {
		t.Fatal("the client did not try to reconnect during the outage")
	}
	p.restore()
	pub.reached(t, total)
	last := start + total
	rec.waitUntil(t, "the last message", func() bool {
		n := len(rec.msgs)
		return n > 0 && rec.msgs[n-1].Offset == last
	})

	rec.mu.Lock()
	defer rec.mu.Unlock()
	count := map[string]int{}
	prev := start
	for i, m := range rec.msgs {
		if m.Room != room || m.Epoch != epoch {
			t.Fatalf("message %d: %+v (epoch %q)", i, m, epoch)
		}
		count[m.Room+"/"+strconv.FormatUint(m.Offset, 10)]++
		if m.Offset != prev+1 {
			t.Fatalf("message %d: offset %d after %d", i, m.Offset, prev)
		}
		if want := strconv.FormatUint(m.Offset-start, 10); string(m.Data) != want {
			t.Fatalf("offset %d: data %s, want %s", m.Offset, m.Data, want)
		}
		prev = m.Offset
	}
	for key, n := range count {
		if n != 1 {
			t.Errorf("%s received %d times", key, n)
		}
	}
	if len(count) != total {
		t.Errorf("%d distinct messages, want %d", len(count), total)
	}
	var trues int
	for _, ev := range rec.recov {
		if ev.room != room || !ev.recovered {
			t.Errorf("OnRecover(%q, %v)", ev.room, ev.recovered)
		}
		trues++
	}
	if trues == 0 {
		t.Error("OnRecover(room, true) was not called")
	}
	st := c.Stats()
	t.Logf("connects %d, received %d, lost %d, duplicates %d, refused during the outage %d, recoveries %d",
		st.Connects, st.Received, st.Lost, st.Duplicates, p.refused.Load(), trues)
	if st.Connects < 2 {
		t.Errorf("connects = %d", st.Connects)
	}
}

// When the server cannot recover (a restarted server with the memory
// broker has a new epoch), OnRecover(room, false) is called and the client
// goes on from the new position.
func TestRecoverEpochChanged(t *testing.T) {
	opts := serverapp.Options{HistorySize: 100}
	app1, ts1 := startApp(t, opts)
	p := startCutProxy(t, hostOf(ts1))
	rec := newRecorder()
	c := dialClient(t, p.URL(), rec.options(Options{}, false))
	ctx := testCtx(t)
	if err := c.Join(ctx, "h", Recover()); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if err := app1.Primus.Room("h").Write(i); err != nil {
			t.Fatal(err)
		}
	}
	rec.waitData(t, "2")
	_, epoch1, _ := c.Position("h")

	// "Restart" the server: another App (another epoch) behind the same
	// address; it has seen writes the client never will.
	app2, ts2 := startApp(t, opts)
	p.cut()
	p.setTarget(hostOf(ts2))
	other := dialClient(t, ts2.URL, Options{})
	if err := other.Join(ctx, "h"); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if err := app2.Primus.Room("h").Write(fmt.Sprintf("old %d", i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := other.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	const pos0 = 2
	p.restore()
	rec.waitUntil(t, "OnRecover", func() bool { return len(rec.recov) > 0 })
	rec.mu.Lock()
	ev := rec.recov[0]
	rec.mu.Unlock()
	if ev.room != "h" || ev.recovered || ev.after != 3 {
		t.Fatalf("OnRecover event %+v, want (h, false) after the 3 messages", ev)
	}
	off, epoch2, ok := c.Position("h")
	if !ok || epoch2 == epoch1 || off < pos0 {
		t.Fatalf("position after the epoch change: %d %q (was epoch %q, server at %d)", off, epoch2, epoch1, pos0)
	}
	if err := app2.Primus.Room("h").Write("new"); err != nil {
		t.Fatal(err)
	}
	m := rec.waitData(t, `"new"`)
	if m.Room != "h" || m.Epoch != epoch2 || m.Offset != off+1 {
		t.Fatalf("after the epoch change: %+v, want offset %d epoch %q", m, off+1, epoch2)
	}
	rec.mu.Lock()
	n := len(rec.msgs)
	rec.mu.Unlock()
	if n != 4 {
		t.Fatalf("%d messages, want 4 (the old writes of the new server are not replayed)", n)
	}
}
