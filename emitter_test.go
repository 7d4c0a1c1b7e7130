package primus_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/primusgo/primus"
	"github.com/primusgo/primus/internal/testkit"
)

func TestSparkSendWire(t *testing.T) {
	ts := startServer(t, primus.Config{})
	cs, ss := connectN(t, ts, 1)
	c, s := cs[0], ss[0]

	if err := s.Send("news", "hi", 1.5, map[string]bool{"a": true}, nil, "a\u2028b"); err != nil {
		t.Fatal(err)
	}
	c.Expect(t, `{"type":0,"data":["news","hi",1.5,{"a":true},null,"a\u2028b"]}`)
	if err := s.Send("bare"); err != nil {
		t.Fatal(err)
	}
	c.Expect(t, `{"type":0,"data":["bare"]}`)
	// A string argument that starts with primus:: is fine inside a packet.
	if err := s.Send("proto", "primus::server::close"); err != nil {
		t.Fatal(err)
	}
	c.Expect(t, `{"type":0,"data":["proto","primus::server::close"]}`)

	// A callback last asks for an acknowledgement: ids count from 1 per spark.
	acks := testkit.NewQueue[[]json.RawMessage]()
	if err := s.Send("ask", "q1", primus.AckFunc(func(args []json.RawMessage) { acks.Put(args) })); err != nil {
		t.Fatal(err)
	}
	c.Expect(t, `{"type":0,"data":["ask","q1"],"id":1}`)
	if err := s.Send("ask", func(args []json.RawMessage) { acks.Put(append(args, json.RawMessage(`"second"`))) }); err != nil {
		t.Fatal(err)
	}
	c.Expect(t, `{"type":0,"data":["ask"],"id":2}`)
	// Acks in any order; 2.0 is 2; a repeated or unknown ack is ignored.
	c.Send(t, `{"id":2.0,"type":1,"data":[]}`)
	c.Send(t, `{"id":1,"type":1,"data":["yes",{"n":2}]}`)
	c.Send(t, `{"id":1,"type":1,"data":["again"]}`)
	c.Send(t, `{"id":9,"type":1,"data":["unknown"]}`)
	ctx, cancel := waitCtx()
	defer cancel()
	for _, want := range []string{`["second"]`, `["yes",{"n":2}]`} {
		got, ok := acks.Get(ctx)
		if !ok {
			t.Fatalf("timed out waiting for the ack %s", want)
		}
		if b, _ := json.Marshal(got); string(b) != want {
			t.Errorf("ack args %s, want %s", b, want)
		}
	}
	// The later acks were ignored: a marker round trip shows nothing else came.
	s.OnData(func(s *primus.Spark, d primus.Data) {
		if d.String() == `"marker"` {
			_ = s.Write("marker seen")
		}
	})
	c.Send(t, `"marker"`)
	c.Expect(t, `"marker seen"`)
	if n := acks.Len(); n != 0 {
		t.Errorf("%d more acks ran", n)
	}

	// Names the client would drop are refused; nothing is sent.
	for _, name := range []string{"open", "data", "end", "error", "reconnect scheduled", "readyStateChange",
		"incoming::data", "outgoing::url", "toString", "__proto__", "constructor", "newListener", "removeListenerX"} {
		if err := s.Send(name, 1); !errors.Is(err, primus.ErrReservedEvent) {
			t.Errorf("Send(%q) = %v, want ErrReservedEvent", name, err)
		}
	}
	if err := s.Send("bad", func() {}); err == nil {
		t.Error("Send with an unencodable argument succeeded")
	}
	if err := s.Send("after", "x"); err != nil {
		t.Fatal(err)
	}
	c.Expect(t, `{"type":0,"data":["after","x"]}`)

	s.End()
	ts.nextDisconnection(t)
	if err := s.Send("closed"); !errors.Is(err, primus.ErrSparkClosed) {
		t.Errorf("Send on a closed spark = %v", err)
	}
}

func TestSparkOnEvent(t *testing.T) {
	type call struct {
		name string
		args string
		ack  bool
	}
	calls := testkit.NewQueue[call]()
	data := testkit.NewQueue[string]()
	ackErrs := testkit.NewQueue[error]()
	var mu sync.Mutex
	var order []string
	ts := startServer(t, primus.Config{OnConnection: func(s *primus.Spark) {
		s.OnData(func(s *primus.Spark, d primus.Data) {
			mu.Lock()
			order = append(order, "data")
			mu.Unlock()
			data.Put(d.String())
		})
		record := func(name string) func(*primus.Spark, []json.RawMessage, func(...any) error) {
			return func(s *primus.Spark, args []json.RawMessage, ack func(...any) error) {
				mu.Lock()
				order = append(order, "event "+name)
				mu.Unlock()
				b, _ := json.Marshal(args)
				calls.Put(call{name, string(b), ack != nil})
				if ack != nil && name == "echo" {
					_ = ack(args[0], "pong", nil)
					ackErrs.Put(ack("twice"))
				}
			}
		}
		for _, name := range []string{"echo", "plain", "data", "end", "error", "heartbeat", "readyStateChange",
			"toString", "hasOwnProperty", "incoming::data", "outgoing::x", "", "open"} {
			s.OnEvent(name, record(name))
		}
		s.OnEvent("plain", record("plain second"))
	}})
	cs, _ := connectN(t, ts, 1)
	c := cs[0]
	ctx, cancel := waitCtx()
	defer cancel()
	next := func() call {
		t.Helper()
		v, ok := calls.Get(ctx)
		if !ok {
			t.Fatal("timed out waiting for an event handler")
		}
		return v
	}
	nextData := func(want string) {
		t.Helper()
		v, ok := data.Get(ctx)
		if !ok || v != want {
			t.Fatalf("data handler got %q (%v), want %q", v, ok, want)
		}
	}

	c.Send(t, `{"type":0,"data":["echo",{"a":[1,2]}],"id":5}`)
	if got := next(); got != (call{"echo", `[{"a":[1,2]}]`, true}) {
		t.Fatalf("echo handler got %+v", got)
	}
	c.Expect(t, `{"id":5,"type":1,"data":[{"a":[1,2]},"pong",null]}`)
	if err, _ := ackErrs.Get(ctx); !errors.Is(err, primus.ErrAckSent) {
		t.Errorf("second ack = %v, want ErrAckSent", err)
	}
	nextData(`{"type":0,"data":["echo",{"a":[1,2]}],"id":5}`) // the data handlers see the packet too

	// No id, a falsy id (0, null, false, ""): no ack function. Every handler of the name runs.
	c.Send(t, `{"type":0,"data":["plain",1]}`)
	c.Send(t, `{"type":0,"data":["plain",1],"id":0}`)
	c.Send(t, `{"id":null,"data":["plain",1],"type":0}`)
	c.Send(t, `{"type":0,"data":["plain",1],"id":false}`)
	c.Send(t, `{"type":0,"data":["plain",1],"id":""}`)
	for _, pkt := range []string{`{"type":0,"data":["plain",1]}`, `{"type":0,"data":["plain",1],"id":0}`,
		`{"id":null,"data":["plain",1],"type":0}`, `{"type":0,"data":["plain",1],"id":false}`, `{"type":0,"data":["plain",1],"id":""}`} {
		for _, name := range []string{"plain", "plain second"} {
			if got := next(); got != (call{name, `[1]`, false}) {
				t.Fatalf("%s: handler got %+v", pkt, got)
			}
		}
		nextData(pkt)
	}
	// 1.5 is a valid id (echoed as JavaScript writes it), as is 1e2.
	c.Send(t, `{"type":0,"data":["echo","x"],"id":1e2}`)
	next()
	c.Expect(t, `{"id":100,"type":1,"data":["x","pong",null]}`)
	nextData(`{"type":0,"data":["echo","x"],"id":1e2}`)
	ackErrs.Get(ctx)

	// Reserved names, names that are not strings, and malformed packets reach
	// no event handler; they are data as any other message.
	dropped := []string{
		`{"type":0,"data":["data",1]}`, `{"type":0,"data":["end"]}`, `{"type":0,"data":["error"]}`,
		`{"type":0,"data":["heartbeat"]}`, `{"type":0,"data":["readyStateChange"]}`,
		`{"type":0,"data":["toString"]}`, `{"type":0,"data":["hasOwnProperty"]}`,
		`{"type":0,"data":["incoming::data"]}`, `{"type":0,"data":["outgoing::x"]}`,
		`{"type":0,"data":[]}`, `{"type":0,"data":[1,"plain"]}`, `{"type":0,"data":[null]}`,
		`{"type":"0","data":["plain"]}`, `{"type":2,"data":["plain"]}`, `{"data":["plain"]}`,
		`{"type":0,"data":"plain"}`, `{"type":0,"data":{"0":"plain"}}`, `{"type":0}`,
		`{"type":0,"data":["plain"],"id":"7"}`, `{"type":0,"data":["plain"],"id":true}`, `{"type":0,"data":["plain"],"id":[1]}`,
		`{"TYPE":0,"DATA":["plain"]}`, `["plain"]`, `"plain"`, `null`, `0`,
	}
	for _, pkt := range dropped {
		c.Send(t, pkt)
	}
	for _, pkt := range dropped {
		nextData(pkt)
	}
	if n := calls.Len(); n != 0 {
		v, _ := calls.TryGet()
		t.Errorf("%d handlers ran for reserved or malformed events, first %+v", n, v)
	}
	// "open" is reserved only on the client; a spark takes it.
	c.Send(t, `{"type":0,"data":["open"]}`)
	if got := next(); got.name != "open" {
		t.Errorf("handler %+v", got)
	}
	nextData(`{"type":0,"data":["open"]}`)
	mu.Lock()
	defer mu.Unlock()
	if order[0] != "event echo" || order[1] != "data" {
		t.Errorf("order %v: event handlers run before the data handlers", order[:2])
	}
}

func TestRoomSendAcrossNodes(t *testing.T) {
	nodes := startCluster(t, 2)
	a, b := nodes[0], nodes[1]
	ca, sa := connectN(t, a, 1)
	cb, sb := connectN(t, b, 2)
	_ = sa[0].Join("r")
	_ = sb[0].Join("r")
	if err := a.Room("r").Send("news", map[string]int{"n": 1}, "two"); err != nil {
		t.Fatal(err)
	}
	want := `{"type":0,"data":["news",{"n":1},"two"]}`
	ca[0].Expect(t, want)
	cb[0].Expect(t, want)
	if err := b.Room("r").Except(sa[0].ID()).Send("only-b"); err != nil {
		t.Fatal(err)
	}
	cb[0].Expect(t, `{"type":0,"data":["only-b"]}`)
	if err := a.Room("r").Send("open"); !errors.Is(err, primus.ErrReservedEvent) {
		t.Errorf("Room.Send(open) = %v", err)
	}
	if err := a.Room().Send("x"); !errors.Is(err, primus.ErrNoRooms) {
		t.Errorf("Room().Send = %v", err)
	}
	// Server.Send reaches every local spark and no other node.
	if err := b.Send("all", 1); err != nil {
		t.Fatal(err)
	}
	for _, c := range cb {
		c.Expect(t, `{"type":0,"data":["all",1]}`)
	}
	_ = a.Write("marker")
	ca[0].Expect(t, `"marker"`)
}

func TestReservedEventNames(t *testing.T) {
	for _, c := range []struct {
		name          string
		spark, client bool
	}{
		{"news", false, false},
		{"data", true, true},
		{"end", true, true},
		{"error", true, true},
		{"heartbeat", true, false},
		{"readyStateChange", true, true},
		{"open", false, true},
		{"close", false, true},
		{"reconnect scheduled", false, true},
		{"incoming::x", true, true},
		{"outgoing::", true, true},
		{"xincoming::", false, false},
		{"toString", true, true},
		{"__proto__", true, true},
		{"newListener", false, true},
		{"removeListenerX", false, true},
		{"", false, false},
	} {
		if got := primus.ReservedSparkEvent(c.name); got != c.spark {
			t.Errorf("ReservedSparkEvent(%q) = %v", c.name, got)
		}
		if got := primus.ReservedClientEvent(c.name); got != c.client {
			t.Errorf("ReservedClientEvent(%q) = %v", c.name, got)
		}
	}
}

func ExampleSpark_OnEvent() {
	srv, err := primus.New(primus.Config{
		OnConnection: func(s *primus.Spark) {
			// Browser: primus.send('join', 'news', function (ok) { ... })
			s.OnEvent("join", func(s *primus.Spark, args []json.RawMessage, ack func(v ...any) error) {
				var room string
				if len(args) == 0 || json.Unmarshal(args[0], &room) != nil {
					return
				}
				err := s.Join(room)
				if ack != nil {
					_ = ack(err == nil)
				}
				// Browser: primus.on('news', function (text) { ... })
				_ = s.Room(room).Send("news", fmt.Sprintf("%s joined", s.ID()))
			})
		},
	})
	if err != nil {
		panic(err)
	}
	defer srv.Shutdown(context.Background())
	fmt.Println(srv.Pathname())
	// Output: /primus
}
