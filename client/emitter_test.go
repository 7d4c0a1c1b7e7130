package client_test

// Named events (primus-emitter's format) between the Go client and two
// servers that serve the same events: this module's server (Spark.OnEvent,
// Spark.Send, Room.Send) and the original Node stack with primus-emitter
// 3.1.1 (testdata/node/server.js with EMITTER=1). The same assertions run
// against both; the wire test compares their frames byte for byte, and
// the cluster test mixes a Node and a Go node on one Redis in compat mode.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/primusgo/primus"
	"github.com/primusgo/primus/client"
	"github.com/primusgo/primus/internal/nodefixture"
	"github.com/primusgo/primus/internal/redistest"
	"github.com/primusgo/primus/redisbroker"
)

const emitterWait = 20 * time.Second

// emitterEvents gives a spark the events and commands that server.js
// serves with EMITTER=1 (see its header), written with the Go API.
func emitterEvents(s *primus.Spark) {
	str := func(args []json.RawMessage, i int) string {
		var v string
		if i < len(args) {
			_ = json.Unmarshal(args[i], &v)
		}
		return v
	}
	anys := func(args []json.RawMessage) []any {
		out := make([]any, len(args))
		for i, a := range args {
			out[i] = a
		}
		return out
	}
	s.OnEvent("echo", func(s *primus.Spark, args []json.RawMessage, ack func(...any) error) {
		if ack != nil {
			_ = ack(anys(args)...)
		}
	})
	s.OnEvent("tell", func(s *primus.Spark, args []json.RawMessage, ack func(...any) error) {
		_ = s.Send(str(args, 0), anys(args[1:])...)
	})
	s.OnEvent("ask", func(s *primus.Spark, args []json.RawMessage, ack func(...any) error) {
		_ = s.Send(str(args, 0), append(anys(args[1:]), primus.AckFunc(func(reply []json.RawMessage) {
			_ = s.Send("answered", anys(reply)...)
		}))...)
	})
	s.OnEvent("roomsend", func(s *primus.Spark, args []json.RawMessage, ack func(...any) error) {
		if len(args) >= 2 {
			_ = s.Room(str(args, 0)).Send(str(args, 1), anys(args[2:])...)
		}
	})
	s.OnEvent("join", func(s *primus.Spark, args []json.RawMessage, ack func(...any) error) {
		_ = s.Join(str(args, 0))
		if ack != nil {
			_ = ack(str(args, 0))
		}
	})
	s.OnData(func(s *primus.Spark, d primus.Data) {
		var m struct {
			Cmd  string          `json:"cmd"`
			Data json.RawMessage `json:"data"`
		}
		if d.Decode(&m) != nil {
			return
		}
		switch m.Cmd {
		case "echo":
			_ = s.Write(m.Data)
		case "query":
			_ = s.Write(map[string]any{"query": s.Query()})
		case "end":
			s.End()
		case "reconnect":
			s.EndReconnect()
		}
	})
}

// startGoEmitterServer runs this module's server with emitterEvents.
func startGoEmitterServer(t *testing.T, broker primus.Broker) string {
	t.Helper()
	srv, err := primus.New(primus.Config{Broker: broker, OnConnection: emitterEvents})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		hs.Close()
	})
	return hs.URL
}

func emitterServers(t *testing.T) map[string]string {
	return map[string]string{
		"go":   startGoEmitterServer(t, nil),
		"node": nodefixture.StartServer(t, nodefixture.ServerOptions{Env: []string{"EMITTER=1"}}).URL(),
	}
}

type got struct {
	name string
	args string
	ack  bool
}

func argsJSON(args []json.RawMessage) string {
	var b bytes.Buffer
	b.WriteByte('[')
	for i, a := range args {
		if i > 0 {
			b.WriteByte(',')
		}
		b.Write(a)
	}
	b.WriteByte(']')
	return b.String()
}

func TestEmitterGoClient(t *testing.T) {
	t.Parallel()
	for name, url := range emitterServers(t) {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), emitterWait)
			defer cancel()
			events := make(chan got, 16)
			on := func(c *client.Client, event string, answer ...any) {
				c.On(event, func(args []json.RawMessage, ack func(...any) error) {
					events <- got{event, argsJSON(args), ack != nil}
					if ack != nil {
						if err := ack(answer...); err != nil {
							t.Errorf("ack: %v", err)
						}
						if err := ack("again"); !errors.Is(err, client.ErrAckSent) {
							t.Errorf("second ack = %v", err)
						}
					}
				})
			}
			c, err := client.Dial(ctx, url, client.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			on(c, "news")
			on(c, "q", "because", 42)
			on(c, "answered")
			next := func(want got) {
				t.Helper()
				select {
				case g := <-events:
					if g != want {
						t.Fatalf("event %+v, want %+v", g, want)
					}
				case <-ctx.Done():
					t.Fatalf("timed out waiting for %+v", want)
				}
			}

			acks := make(chan string, 4)
			if err := c.Send("echo", "a", 1, map[string]any{"k": []int{1}}, client.AckFunc(func(args []json.RawMessage) {
				acks <- argsJSON(args)
			})); err != nil {
				t.Fatal(err)
			}
			select {
			case a := <-acks:
				if a != `["a",1,{"k":[1]}]` {
					t.Errorf("echo ack %s", a)
				}
			case <-ctx.Done():
				t.Fatal("timed out waiting for the echo ack")
			}

			if err := c.Send("tell", "news", "x\u2028y", nil); err != nil {
				t.Fatal(err)
			}
			next(got{"news", `["x\u2028y",null]`, false})
			// The server asks with a callback; the handler's ack goes back to it.
			if err := c.Send("ask", "q", "why"); err != nil {
				t.Fatal(err)
			}
			next(got{"q", `["why"]`, true})
			next(got{"answered", `["because",42]`, false})

			// Events without a handler, and events named like the
			// client's own events, are ordinary messages.
			if err := c.Send("tell", "unhandled", 1); err != nil {
				t.Fatal(err)
			}
			if err := c.Write(map[string]any{"cmd": "echo", "data": json.RawMessage(`{"type":0,"data":["open"]}`)}); err != nil {
				t.Fatal(err)
			}
			for _, want := range []string{`{"type":0,"data":["unhandled",1]}`, `{"type":0,"data":["open"]}`} {
				select {
				case m := <-c.Messages():
					if string(m.Data) != want {
						t.Errorf("message %s, want %s", m.Data, want)
					}
				case <-ctx.Done():
					t.Fatalf("timed out waiting for %s", want)
				}
			}
			for _, bad := range []string{"data", "end", "error", "heartbeat", "incoming::x", "toString", "newListener"} {
				if err := c.Send(bad); !errors.Is(err, client.ErrReservedEvent) {
					t.Errorf("Send(%q) = %v", bad, err)
				}
			}
			if n := len(events); n != 0 {
				t.Errorf("%d unexpected events", n)
			}
		})
	}
}

// TestEmitterWireMatchesNode sends the same frames to both servers with a
// plain WebSocket client and compares what comes back, byte for byte.
func TestEmitterWireMatchesNode(t *testing.T) {
	t.Parallel()
	script := []string{
		`{"type":0,"data":["tell","news","a",1,{"b":[true,null]}]}`,
		`{"type":0,"data":["tell","bare"]}`,
		`{"type":0,"data":["tell","line","x\u2028y</script>&"]}`,
		`{"type":0,"data":["echo","e",2],"id":7}`,
		`{"type":0,"data":["echo"],"id":8}`,
		`{"type":0,"data":["echo","f"],"id":1.5}`,
		`{"type":0,"data":["echo","g"],"id":1e2}`,
		`{"type":0,"data":["echo","h"],"id":0}`,
		`{"type":0,"data":["echo","i"],"id":"7"}`,
		`{"type":"0","data":["echo","j"],"id":7}`,
		`{"type":0,"data":["data","k"],"id":7}`,
		`{"type":0,"data":["toString","k"],"id":7}`,
		`{"type":0,"data":["ask","q","x"]}`,
		`{"type":0,"data":["ask","q2"]}`,
		`{"id":2,"type":1,"data":["second"]}`,
		`{"id":1,"type":1,"data":["first",{"n":1}]}`,
		`{"id":1,"type":1,"data":["repeated"]}`,
		`{"type":0,"data":["join","r"],"id":3}`,
		`{"type":0,"data":["roomsend","r","news","to the room"]}`,
		`{"cmd":"echo","data":"done"}`,
	}
	run := func(url string) []string {
		ctx, cancel := context.WithTimeout(context.Background(), emitterWait)
		defer cancel()
		ws, _, err := websocket.Dial(ctx, strings.Replace(url, "http", "ws", 1)+"/primus", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer ws.CloseNow()
		for _, f := range script {
			if err := ws.Write(ctx, websocket.MessageText, []byte(f)); err != nil {
				t.Fatal(err)
			}
		}
		var out []string
		for {
			_, b, err := ws.Read(ctx)
			if err != nil {
				t.Fatalf("%s: %v after %q", url, err, out)
			}
			if bytes.HasPrefix(b, []byte(`"primus::ping::`)) {
				continue
			}
			if string(b) == `"done"` {
				return out
			}
			out = append(out, string(b))
		}
	}
	servers := emitterServers(t)
	node, goFrames := run(servers["node"]), run(servers["go"])
	want := []string{
		`{"type":0,"data":["news","a",1,{"b":[true,null]}]}`,
		`{"type":0,"data":["bare"]}`,
		`{"type":0,"data":["line","x\u2028y</script>&"]}`,
		`{"id":7,"type":1,"data":["e",2]}`,
		`{"id":8,"type":1,"data":[]}`,
		`{"id":1.5,"type":1,"data":["f"]}`,
		`{"id":100,"type":1,"data":["g"]}`,
		`{"type":0,"data":["q","x"],"id":1}`,
		`{"type":0,"data":["q2"],"id":2}`,
		`{"type":0,"data":["answered","second"]}`,
		`{"type":0,"data":["answered","first",{"n":1}]}`,
		`{"id":3,"type":1,"data":["r"]}`,
		`{"type":0,"data":["news","to the room"]}`,
	}
	if !slices.Equal(node, want) {
		t.Errorf("the Node original sent\n%s\nwant\n%s", strings.Join(node, "\n"), strings.Join(want, "\n"))
	}
	if !slices.Equal(goFrames, node) {
		t.Errorf("the Go server sent\n%s\nthe Node original\n%s", strings.Join(goFrames, "\n"), strings.Join(node, "\n"))
	}
}

// TestEmitterMixedCompatCluster runs a Node node (primus 8.0.9 +
// primus-redis-rooms 0.3.2 + primus-emitter 3.1.1) and a Go node in compat
// mode on one Redis: a room event sent on either node reaches the room's
// members on both, and both publish the same Redis payload.
func TestEmitterMixedCompatCluster(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	rs := redistest.StartServer(t)
	watch := rs.Client()
	if err := watch.Send("PSUBSCRIBE", "primus.*"); err != nil {
		t.Fatal(err)
	}
	if _, err := watch.Receive(5 * time.Second); err != nil { // the subscription's confirmation
		t.Fatal(err)
	}
	nodeSrv := nodefixture.StartServer(t, nodefixture.ServerOptions{RedisAddr: rs.Addr(), Env: []string{"EMITTER=1"}})
	b, err := redisbroker.New(redisbroker.Config{Addr: rs.Addr(), Mode: redisbroker.Compat,
		DialTimeout: time.Second, CommandTimeout: time.Second, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	goURL := startGoEmitterServer(t, b)
	for !b.Stats().Connected {
		select {
		case <-ctx.Done():
			t.Fatal("the Go node did not connect to Redis")
		case <-time.After(10 * time.Millisecond): // polling a status, not synchronising on a sleep
		}
	}

	members := map[string]*client.Client{}
	news := make(chan string, 8)
	for name, url := range map[string]string{"go": goURL, "node": nodeSrv.URL()} {
		c, err := client.Dial(ctx, url, client.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.On("news", func(args []json.RawMessage, ack func(...any) error) {
			news <- name + " got " + argsJSON(args)
		})
		joined := make(chan struct{})
		if err := c.Send("join", "r", client.AckFunc(func([]json.RawMessage) { close(joined) })); err != nil {
			t.Fatal(err)
		}
		select {
		case <-joined:
		case <-ctx.Done():
			t.Fatalf("%s: no join ack", name)
		}
		members[name] = c
	}
	payloads := map[string]string{}
	for _, from := range []string{"go", "node"} {
		text := "from " + from
		if err := members[from].Send("roomsend", "r", "news", text, map[string]int{"n": 1}); err != nil {
			t.Fatal(err)
		}
		var seen []string
		for len(seen) < 2 {
			select {
			case s := <-news:
				seen = append(seen, s)
			case <-ctx.Done():
				t.Fatalf("room event %q: only %q arrived", text, seen)
			}
		}
		slices.Sort(seen)
		if want := []string{`go got ["` + text + `",{"n":1}]`, `node got ["` + text + `",{"n":1}]`}; !slices.Equal(seen, want) {
			t.Errorf("got %q, want %q", seen, want)
		}
		for payloads[from] == "" { // skip what else the nodes publish (the Go node's probes)
			v, err := watch.Receive(5 * time.Second)
			if err != nil {
				t.Fatal(err)
			}
			msg, ok := v.([]any) // pmessage, pattern, channel, payload
			if !ok || len(msg) != 4 {
				t.Fatalf("Redis delivered %v", v)
			}
			if p := fmt.Sprint(msg[3]); strings.Contains(p, text) {
				payloads[from] = strings.Replace(p, text, "TEXT", 1)
			}
		}
	}
	want := `{"room":"r","data":{"type":0,"data":["news","TEXT",{"n":1}]}}`
	if payloads["node"] != want || payloads["go"] != payloads["node"] {
		t.Errorf("Redis payloads: Node %s, Go %s; want both %s", payloads["node"], payloads["go"], want)
	}
}
