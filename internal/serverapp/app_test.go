package serverapp

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/primusgo/primus/internal/testkit"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testClient is a kit client bound to its test, so that the command
// exchanges below read as a conversation.
type testClient struct {
	*testkit.Client
	t *testing.T
}

func startApp(t *testing.T, opts Options) (*App, *httptest.Server) {
	t.Helper()
	app, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
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

func dial(t *testing.T, ts *httptest.Server) *testClient {
	t.Helper()
	c, _, err := tryDial(t, ts.URL+"/primus", testkit.DialOptions{})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	return c
}

// tryDial connects to url (http, https, ws or wss) with o and a 16 MiB
// read limit; the connection is closed at the end of the test.
func tryDial(t *testing.T, url string, o testkit.DialOptions) (*testClient, *http.Response, error) {
	t.Helper()
	o.ReadLimit = 16 << 20
	c, resp, err := testkit.TryDial(url, o)
	if err != nil {
		return nil, resp, err
	}
	t.Cleanup(c.Close)
	return &testClient{c, t}, resp, nil
}

func (c *testClient) send(msg string) {
	c.t.Helper()
	c.Send(c.t, msg)
}

// next returns the next message that is not a heartbeat.
func (c *testClient) next() string {
	c.t.Helper()
	return string(c.NextData(c.t).Data)
}

// nextWithin is next with its own deadline.
func (c *testClient) nextWithin(d time.Duration) string {
	c.t.Helper()
	return string(c.NextDataWithin(c.t, d).Data)
}

func (c *testClient) expect(want string) {
	c.t.Helper()
	c.Expect(c.t, want)
}

// id asks the server for the spark id.
func (c *testClient) id() string {
	c.t.Helper()
	return c.ID(c.t)
}

func TestCommands(t *testing.T) {
	_, ts := startApp(t, Options{})
	a, b := dial(t, ts), dial(t, ts)
	bid := b.id()

	a.send(`{"join":"r1","ack":1}`)
	a.expect(`{"ack":1,"ok":true}`)
	a.send(`{"join":["r2","r3"],"ack":"two"}`)
	a.expect(`{"ack":"two","ok":true}`)
	b.send(`{"join":["r1","r2"],"ack":{"n":3}}`)
	b.expect(`{"ack":{"n":3},"ok":true}`)

	// A multi-room publish reaches each member once; the publisher too.
	b.send(`{"publish":{"rooms":["r1","r2","r3"],"data":{"x":[1,"é"]}},"ack":4}`)
	b.expect(`{"x":[1,"é"]}`)
	b.expect(`{"ack":4,"ok":true}`)
	a.expect(`{"x":[1,"é"]}`)

	// except skips the given sparks.
	a.send(`{"publish":{"room":"r1","except":["` + bid + `"],"data":"not for b"}}`)
	a.expect(`"not for b"`)
	a.send(`{"publish":{"room":"r1","data":"for both"}}`)
	a.expect(`"for both"`)
	b.expect(`"for both"`) // b's first message after the join ack: the excepted one never came

	// leave and leaveAll.
	b.send(`{"leave":"r1","ack":5}`)
	b.expect(`{"ack":5,"ok":true}`)
	a.send(`{"publish":{"room":"r1","data":1}}`)
	a.expect(`1`)
	a.send(`{"leaveAll":true,"ack":6}`)
	a.expect(`{"ack":6,"ok":true}`)
	b.send(`{"publish":{"rooms":["r1","r2","r3"],"data":2},"ack":7}`)
	b.expect(`2`)
	b.expect(`{"ack":7,"ok":true}`)
	a.send(`"primus::id::"`) // a's next message must be the id reply, not a room write
	if got := a.next(); !strings.HasPrefix(got, `"primus::id::`) {
		t.Fatalf("a received %s after leaveAll", got)
	}
}

func TestCommandErrors(t *testing.T) {
	_, ts := startApp(t, Options{})
	c := dial(t, ts)
	tests := []struct{ send, want string }{
		{`{"join":"","ack":1}`, `{"ack":1,"error":"primus: invalid room name: empty name"}`},
		{`{"join":["a","` + strings.Repeat("n", 257) + `"],"ack":11}`, `{"ack":11,"error":"primus: invalid room name: 257 bytes, over the limit of 256"}`},
		{`{"publish":{"room":"r","data":"primus::server::close"},"ack":12}`, `{"ack":12,"error":"primus: data is a string starting with \"primus::\", which clients take as a protocol message"}`},
		{`{"publish":{"room":"r","data":"\u0070rimus::id::x"},"ack":13}`, `{"ack":13,"error":"primus: data is a string starting with \"primus::\", which clients take as a protocol message"}`},
		{`{"join":5,"ack":2}`, `{"ack":2,"error":"invalid command: a room must be a string or a list of strings"}`},
		{`{"publish":{"data":1},"ack":3}`, `{"ack":3,"error":"publish needs a room or rooms"}`},
		{`{"publish":{"room":"r"},"ack":4}`, `{"ack":4,"error":"publish needs data"}`},
		{`{"hello":"world","ack":5}`, `{"ack":5,"error":"unknown command: expected join, leave, leaveAll or publish"}`},
	}
	for _, tt := range tests {
		c.send(tt.send)
		c.expect(tt.want)
	}
	// Ordinary data gets no reply at all.
	c.send(`{"hello":"world"}`)
	c.send(`"just a string"`)
	c.send(`[1,2]`)
	c.send(`{"join":"ok","ack":9}`)
	c.expect(`{"ack":9,"ok":true}`)
}

func post(t *testing.T, url, key, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b))
}

func get(t *testing.T, url, key string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestHTTPPublishAndRooms(t *testing.T) {
	_, ts := startApp(t, Options{APIKey: "s3cret", MaxLength: 1024})
	c := dial(t, ts)
	id := c.id()
	c.send(`{"join":["news","all"],"ack":1}`)
	c.expect(`{"ack":1,"ok":true}`)

	if code, body := post(t, ts.URL+"/api/publish", "", `{"rooms":["news"],"data":1}`); code != 401 || !strings.Contains(body, "API key") {
		t.Fatalf("no key: %d %s", code, body)
	}
	if code, _ := post(t, ts.URL+"/api/publish", "wrong", `{"rooms":["news"],"data":1}`); code != 401 {
		t.Fatalf("wrong key: %d", code)
	}
	if code, body := post(t, ts.URL+"/api/publish", "s3cret", `{"rooms":["news","all"],"data":{"headline":"hi"}}`); code != 200 || body != `{"ok":true}` {
		t.Fatalf("publish: %d %s", code, body)
	}
	c.expect(`{"headline":"hi"}`)
	if code, _ := post(t, ts.URL+"/api/publish", "s3cret", `{"rooms":["news"],"except":["`+id+`"],"data":"skipped"}`); code != 200 {
		t.Fatalf("publish with except: %d", code)
	}
	if code, _ := post(t, ts.URL+"/api/publish", "s3cret", `{"room":"news","data":"second"}`); code != 200 {
		t.Fatalf("publish with room: %d", code)
	}
	c.expect(`"second"`)

	for _, bad := range []struct {
		body string
		code int
	}{
		{`{"rooms":["news"],`, 400},
		{`{"rooms":[],"data":1}`, 400},
		{`{"rooms":["news"]}`, 400},
		{`{"rooms":["news"],"data":1,"extra":true}`, 400},
		{`{"rooms":["news"],"data":"` + strings.Repeat("x", 2000) + `"}`, 413},
	} {
		if code, body := post(t, ts.URL+"/api/publish", "s3cret", bad.body); code != bad.code || !strings.Contains(body, `"error"`) {
			t.Errorf("POST %.40s: %d %s, want %d with an error", bad.body, code, body, bad.code)
		}
	}

	if code, _ := get(t, ts.URL+"/api/rooms", ""); code != 401 {
		t.Fatalf("rooms without key: %d", code)
	}
	code, body := get(t, ts.URL+"/api/rooms", "s3cret")
	var rooms struct {
		Node  string         `json:"node"`
		Rooms map[string]int `json:"rooms"`
	}
	if err := json.Unmarshal([]byte(body), &rooms); code != 200 || err != nil {
		t.Fatalf("rooms: %d %s %v", code, body, err)
	}
	if rooms.Rooms["news"] != 1 || rooms.Rooms["all"] != 1 || len(rooms.Rooms) != 2 || rooms.Node == "" {
		t.Fatalf("rooms = %+v", rooms)
	}
}

func TestHealthMetricsDemo(t *testing.T) {
	app, ts := startApp(t, Options{})
	c := dial(t, ts)
	c.send(`{"join":"m","ack":1}`)
	c.expect(`{"ack":1,"ok":true}`)
	c.send(`{"publish":{"room":"m","data":1}}`)
	c.expect(`1`)

	code, body := get(t, ts.URL+"/healthz", "")
	if code != 200 || !strings.Contains(body, `"status":"ok"`) || !strings.Contains(body, `"connections":1`) {
		t.Fatalf("healthz: %d %s", code, body)
	}
	if code, body := get(t, ts.URL+"/readyz", ""); code != 200 || body != `{"status":"ready"}`+"\n" {
		t.Fatalf("readyz: %d %s", code, body)
	}
	code, body = get(t, ts.URL+"/metrics", "")
	if code != 200 {
		t.Fatalf("metrics: %d", code)
	}
	for _, want := range []string{
		"primus_connections 1", "primus_rooms 1", "primus_messages_in_total 2", "primus_messages_out_total 1",
		"primus_drops_total 0", "primus_slow_consumer_ends_total 0", "primus_publish_requests_total 1",
		"primus_frames_out_total 2", "primus_writes_total 2", // the ack, then the message
		`primus_rejected_upgrades_total{reason="origin"} 0`, `primus_ends_total{reason="rate_limited"} 0`, "primus_ready 1",
		"primus_rate_limited_messages_total 0", "primus_reserved_refused_total 0", "primus_forbidden_commands_total 0",
	} {
		if !strings.Contains(body, want+"\n") {
			t.Errorf("metrics lack %q", want)
		}
	}
	if !regexp.MustCompile(`primus_build_info\{goversion="go[^"]+",revision="[^"]*",version="[^"]+"\} 1\n`).MatchString(body) {
		t.Errorf("metrics lack primus_build_info")
	}
	code, body = get(t, ts.URL+"/", "")
	if code != 200 || !strings.Contains(body, `<script src="/primus/primus.js"></script>`) {
		t.Fatalf("demo page: %d", code)
	}
	if code, _ := get(t, ts.URL+"/nothing", ""); code != 404 {
		t.Fatalf("/nothing: %d", code)
	}
	if code, body := get(t, ts.URL+"/primus/primus.js", ""); code != 200 || !strings.Contains(body, "Primus") {
		t.Fatalf("primus.js: %d", code)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := app.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	// Liveness stays 200; readiness fails.
	if code, body := get(t, ts.URL+"/healthz", ""); code != 200 || !strings.Contains(body, `"status":"draining"`) {
		t.Fatalf("healthz while draining: %d %s", code, body)
	}
	if code, body := get(t, ts.URL+"/readyz", ""); code != 503 || !strings.Contains(body, "draining") {
		t.Fatalf("readyz while draining: %d %s", code, body)
	}
}

func TestParseFlags(t *testing.T) {
	env := map[string]string{"PRIMUS_ADDR": "127.0.0.1:9999", "PRIMUS_PING_INTERVAL": "5s", "PRIMUS_REDIS_MODE": "compat", "PRIMUS_CHANNEL": "env"}
	getenv := func(k string) string { return env[k] }
	var stderr bytes.Buffer
	c, err := ParseFlags([]string{"-channel", "flag", "-max-length", "64"}, getenv, &stderr)
	if err != nil {
		t.Fatal(err)
	}
	if c.Addr != "127.0.0.1:9999" || c.PingInterval != 5*time.Second || c.Redis.Mode != "compat" || c.Redis.Channel != "flag" || c.MaxLength != 64 {
		t.Fatalf("config = %+v", c)
	}
	if c.Pathname != "/primus" || c.Redis.Enabled() {
		t.Fatalf("defaults = %+v", c)
	}
	for _, args := range [][]string{
		{"-ping-interval", "soon"}, {"-max-length", "-1"}, {"-redis-mode", "cluster"}, {"-log-level", "loud"}, {"extra"}, {"-nope"},
	} {
		if _, err := ParseFlags(args, func(string) string { return "" }, &stderr); err == nil {
			t.Errorf("ParseFlags(%v) accepted", args)
		}
	}
}
