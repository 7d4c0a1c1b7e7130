package nodefixture

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/primusgo/primus/internal/redistest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// timeout is generous: a single wait in these tests normally takes
// milliseconds.
func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// dataIs matches a data payload equal to want (compared as compact JSON).
func dataIs(want string) func(json.RawMessage) bool {
	var w bytes.Buffer
	if err := json.Compact(&w, []byte(want)); err != nil {
		panic(err)
	}
	return func(d json.RawMessage) bool {
		var g bytes.Buffer
		return json.Compact(&g, d) == nil && bytes.Equal(g.Bytes(), w.Bytes())
	}
}

func mustOpen(t *testing.T, ctx context.Context, c *Client) {
	t.Helper()
	if _, err := c.WaitFor(ctx, "open"); err != nil {
		t.Fatal(err)
	}
}

func mustData(t *testing.T, ctx context.Context, c *Client, want string) {
	t.Helper()
	if _, err := c.WaitForData(ctx, dataIs(want)); err != nil {
		t.Fatalf("waiting for %s: %v\nevents: %s", want, err, rawEvents(c.Events()))
	}
}

func rawEvents(evs []Event) string {
	var s []string
	for _, ev := range evs {
		s = append(s, string(ev.Raw))
	}
	return strings.Join(s, "\n")
}

var sparkID = regexp.MustCompile(`^[A-Za-z0-9_-]{21}$`)

// The real Node client against the reference server: id, acknowledged join,
// a publish from a second client, an HTTP publish, and the error replies.
func TestRealClientAgainstReferenceServer(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t, 20*time.Second)
	srv := StartServer(t, ServerOptions{})
	a := StartClient(t, srv.URL(), ClientOptions{})
	b := StartClient(t, srv.URL(), ClientOptions{})
	mustOpen(t, ctx, a)
	mustOpen(t, ctx, b)

	id, err := a.ID(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !sparkID.MatchString(id) {
		t.Errorf("spark id %q is not 21 chars of [A-Za-z0-9_-]", id)
	}

	// The ack as the brief specifies it, raw.
	if err := a.Write(map[string]any{"join": "r", "ack": 1}); err != nil {
		t.Fatal(err)
	}
	mustData(t, ctx, a, `{"ack":1,"ok":true}`)

	if err := b.Write(map[string]any{"publish": map[string]any{"room": "r", "data": map[string]any{"hello": "from b"}}, "ack": "p"}); err != nil {
		t.Fatal(err)
	}
	mustData(t, ctx, b, `{"ack":"p","ok":true}`)
	mustData(t, ctx, a, `{"hello":"from b"}`)

	if err := srv.Publish(ctx, []any{"via", "http", 1}, "r"); err != nil {
		t.Fatal(err)
	}
	mustData(t, ctx, a, `["via","http",1]`)

	for _, tc := range []struct {
		cmd  map[string]any
		want string
	}{
		{map[string]any{"publish": map[string]any{"room": "r", "data": 1, "except": []string{id}}}, "except is not supported by primus-redis-rooms"},
		{map[string]any{"publish": map[string]any{"room": "r", "data": nil}}, "May not write null values to stream"},
		{map[string]any{"join": 42}, "join: a room name or a list of room names (strings) is required"},
	} {
		err := b.Do(ctx, tc.cmd)
		if err == nil || err.Error() != tc.want {
			t.Errorf("%v: got error %v, want %q", tc.cmd, err, tc.want)
		}
	}
	// None of the refused publishes reached a.
	if err := srv.Publish(ctx, "marker", "r"); err != nil {
		t.Fatal(err)
	}
	ev, err := a.Next(ctx)
	if err != nil || ev.Name != "data" || string(ev.Data) != `"marker"` {
		t.Errorf("a's next event = %s, %v; want the marker", ev.Raw, err)
	}
}

// With PING_INTERVAL=300 the server pings every 300 ms, the client answers
// (else the server would close it) and stays online under a 1 s pingTimeout.
func TestHeartbeat(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t, 20*time.Second)
	srv := StartServer(t, ServerOptions{PingInterval: 300 * time.Millisecond})
	c := StartClient(t, srv.URL(), ClientOptions{PingTimeout: time.Second})
	mustOpen(t, ctx, c)
	var last int64
	for i := range 4 {
		ev, err := c.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if ev.Name != "ping" {
			t.Fatalf("event %d after open = %s, want only pings", i, ev.Raw)
		}
		if last != 0 && (ev.Time-last < 200 || ev.Time-last > 1000) {
			t.Errorf("pings %d ms apart, want ~300", ev.Time-last)
		}
		last = ev.Time
	}
}

// The reference server keeps the original leaveAll, which skips every
// second room (spec §2.10 bug 1): the fixture is the real thing.
func TestLeaveAllKeepsEverySecondRoom(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t, 20*time.Second)
	srv := StartServer(t, ServerOptions{})
	c := StartClient(t, srv.URL(), ClientOptions{})
	mustOpen(t, ctx, c)
	id, err := c.ID(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, cmd := range []map[string]any{
		{"join": []string{"a", "b", "c", "d"}},
		{"leaveAll": true},
		{"join": "z"},
	} {
		if err := c.Do(ctx, cmd); err != nil {
			t.Fatalf("%v: %v", cmd, err)
		}
	}
	rooms, err := srv.Rooms(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]bool{"a": false, "b": true, "c": false, "d": true, "z": true} {
		got := len(rooms[name]) == 1 && rooms[name][0] == id
		if got != want {
			t.Errorf("room %s members %v; member after leaveAll = %v, want %v", name, rooms[name], got, want)
		}
	}
	for _, r := range []string{"a", "b", "c", "d", "z"} {
		if err := srv.Publish(ctx, r, r); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	for len(got) < 3 {
		ev, err := c.WaitFor(ctx, "data")
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, string(ev.Data))
	}
	if want := `"b" "d" "z"`; strings.Join(got, " ") != want {
		t.Errorf("received %v, want %s", got, want)
	}
}

// SIGTERM: primus.destroy() sends primus::server::close, so the real client
// ends without reconnecting, and the server exits with code 0.
func TestStopEndsClientsWithoutReconnect(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t, 20*time.Second)
	srv := StartServer(t, ServerOptions{})
	c := StartClient(t, srv.URL(), ClientOptions{ReconnectMin: 50 * time.Millisecond})
	mustOpen(t, ctx, c)
	if err := srv.Stop(); err != nil {
		t.Fatalf("Stop: %v\n%s", err, srv.Output())
	}
	if _, err := c.WaitFor(ctx, "end"); err != nil {
		t.Fatal(err)
	}
	for _, ev := range c.Events() {
		if strings.HasPrefix(ev.Name, "reconnect") {
			t.Errorf("unexpected %s after a graceful stop", ev.Raw)
		}
	}
}

// SIGKILL: the connection drops, the real client schedules reconnects per
// its options and gives up after RECONNECT_RETRIES.
func TestKillMakesClientReconnect(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t, 20*time.Second)
	srv := StartServer(t, ServerOptions{})
	c := StartClient(t, srv.URL(), ClientOptions{ReconnectMin: 100 * time.Millisecond, ReconnectMax: 200 * time.Millisecond, ReconnectRetries: 2})
	mustOpen(t, ctx, c)
	srv.Kill()
	if _, err := c.WaitFor(ctx, "close"); err != nil {
		t.Fatal(err)
	}
	ev, err := c.WaitFor(ctx, "reconnect scheduled")
	if err != nil {
		t.Fatal(err)
	}
	if ev.Attempt != 1 || ev.Scheduled != 100 || ev.Retries != 2 {
		t.Errorf("first reconnect scheduled = %s, want attempt 1 in 100 ms of 2", ev.Raw)
	}
	// Primus 8 emits `end` just BEFORE `reconnect failed` (the `reconnect
	// failed` handler emits end, then the event itself is emitted).
	if _, err := c.WaitFor(ctx, "end"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.WaitFor(ctx, "reconnect failed"); err != nil {
		t.Fatal(err)
	}
	var attempts int
	for _, ev := range c.Events() {
		if ev.Name == "reconnect" {
			attempts++
		}
	}
	if attempts != 2 {
		t.Errorf("%d reconnect attempts, want 2:\n%s", attempts, rawEvents(c.Events()))
	}
}

// Two reference nodes share a room through a real Redis: a write on either
// node reaches both nodes' members exactly once.
func TestTwoNodesShareRoomThroughRedis(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t, 30*time.Second)
	r := redistest.StartServer(t)
	n1 := StartServer(t, ServerOptions{RedisAddr: r.Addr()})
	n2 := StartServer(t, ServerOptions{RedisAddr: r.Addr()})
	a := StartClient(t, n1.URL(), ClientOptions{})
	b := StartClient(t, n2.URL(), ClientOptions{})
	mustOpen(t, ctx, a)
	mustOpen(t, ctx, b)
	for _, c := range []*Client{a, b} {
		if err := c.Do(ctx, map[string]any{"join": "shared"}); err != nil {
			t.Fatal(err)
		}
	}

	// b publishes on n2: b gets its local copy (before the ack), a gets it via Redis.
	if err := b.Write(map[string]any{"publish": map[string]any{"room": "shared", "data": "from b"}}); err != nil {
		t.Fatal(err)
	}
	mustData(t, ctx, a, `"from b"`)
	mustData(t, ctx, b, `"from b"`)

	// n1 publishes: a locally, b via Redis.
	if err := n1.Publish(ctx, map[string]any{"from": "n1"}, "shared"); err != nil {
		t.Fatal(err)
	}
	mustData(t, ctx, b, `{"from":"n1"}`)
	mustData(t, ctx, a, `{"from":"n1"}`)

	// Exactly once: the next thing either client sees is the next message,
	// not an echo of an earlier one.
	if err := n2.Publish(ctx, "next", "shared"); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*Client{a, b} {
		ev, err := c.Next(ctx)
		if err != nil || string(ev.Data) != `"next"` {
			t.Errorf("next event = %s, %v; want \"next\"\nall: %s", ev.Raw, err, rawEvents(c.Events()))
		}
	}
}

// With the error listeners server.js attaches, a Redis outage does not kill
// the node (stock primus-redis-rooms would crash, spec §2.9): it reconnects,
// re-subscribes, and cross-node delivery resumes.
func TestNodesSurviveRedisRestart(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t, 30*time.Second)
	r := redistest.StartServer(t)
	n1 := StartServer(t, ServerOptions{RedisAddr: r.Addr(), Channel: "blip"})
	n2 := StartServer(t, ServerOptions{RedisAddr: r.Addr(), Channel: "blip"})
	a := StartClient(t, n1.URL(), ClientOptions{})
	mustOpen(t, ctx, a)
	if err := a.Do(ctx, map[string]any{"join": "r"}); err != nil {
		t.Fatal(err)
	}

	r.Kill()
	for _, n := range []*Server{n1, n2} {
		if err := n.WaitLog(ctx, `"ev":"redis-error"`, 2); err != nil {
			t.Fatal(err)
		}
	}
	r.Start() // on the same port
	if err := n1.WaitLog(ctx, `"ev":"psubscribe","pattern":"blip.*"`, 2); err != nil {
		t.Fatal(err)
	}
	if err := n2.WaitLog(ctx, `"ev":"redis-ready","client":"pub"`, 2); err != nil {
		t.Fatal(err)
	}
	if err := n2.Publish(ctx, "after restart", "r"); err != nil {
		t.Fatal(err)
	}
	mustData(t, ctx, a, `"after restart"`)
}

func TestNextAfterExit(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t, 20*time.Second)
	c := StartClient(t, "http://127.0.0.1:1", ClientOptions{Strategy: "none"})
	if err := c.Send(map[string]any{"op": "exit"}); err != nil {
		t.Fatal(err)
	}
	if err := c.Wait(ctx); err != nil {
		t.Fatalf("exit code: %v", err)
	}
	for {
		_, err := c.Next(ctx)
		if errors.Is(err, ErrExited) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Send(map[string]any{"op": "id"}); !errors.Is(err, ErrExited) {
		t.Errorf("Send after exit: %v, want ErrExited", err)
	}
}
