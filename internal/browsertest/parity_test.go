package browsertest

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/primusgo/primus"
	"github.com/primusgo/primus/internal/nodefixture"
)

//go:embed testdata/parity.html
var parityPage string

// parityEvents gives a spark the events and commands that
// testdata/node/server.js serves with EMITTER=1, with the Go API.
func parityEvents(s *primus.Spark) {
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
		if len(args) > 0 {
			_ = s.Send(str(args, 0), anys(args[1:])...)
		}
	})
	s.OnEvent("ask", func(s *primus.Spark, args []json.RawMessage, ack func(...any) error) {
		if len(args) > 0 {
			_ = s.Send(str(args, 0), append(anys(args[1:]), primus.AckFunc(func(reply []json.RawMessage) {
				_ = s.Send("answered", anys(reply)...)
			}))...)
		}
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
		if d.IsBinary() || d.Decode(&m) != nil {
			return
		}
		switch m.Cmd {
		case "echo":
			_ = s.Write(m.Data)
		case "query":
			q := map[string]string{}
			for k, v := range s.Query() {
				q[k] = v[0]
			}
			_ = s.Write(map[string]any{"query": q})
		case "end":
			s.End()
		case "reconnect":
			s.EndReconnect()
		}
	})
}

// refusedURL returns an http URL where nothing listens.
func refusedURL(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "http://" + addr
}

// TestParityPage runs one page, written against the original client API
// with primus-emitter, against the original Node server (its own primus.js
// with primus-emitter's client code) and against ours, in one test run:
// every scenario must give the same result with both (the events of the
// original, public and internal, in the same order with the same
// arguments), and the result must be right.
func TestParityPage(t *testing.T) {
	browser := NewBrowser(t)
	node := nodefixture.StartServer(t, nodefixture.ServerOptions{PingInterval: time.Second, Env: []string{"EMITTER=1"}})
	ours, err := primus.New(primus.Config{PingInterval: time.Second, OnConnection: parityEvents})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(ours)
	t.Cleanup(func() {
		hs.Close()
	})
	defer func() { _ = ours.Shutdown(t.Context()) }()

	results := map[string]map[string]string{}
	for _, srv := range []struct{ name, url string }{{"node", node.URL()}, {"ours", hs.URL}} {
		page := strings.NewReplacer("{{SERVER}}", srv.url, "{{HANG}}", hangingServer(t), "{{HANG2}}", hangingServer(t),
			"{{REFUSED}}", refusedURL(t)).Replace(parityPage)
		ps := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			fmt.Fprint(w, page)
		}))
		t.Cleanup(ps.Close)
		tab := NewTab(t, browser)
		Load(t, tab, ps.URL)
		results[srv.name] = map[string]string{}
		for _, name := range Eval[[]string](t, tab, `window.scenarioNames`) {
			r, err := TryEval[string](tab, fmt.Sprintf(`run(%q)`, name))
			if err != nil {
				out, _ := TryEval[string](tab, `document.getElementById('out').textContent`)
				t.Fatalf("%s: scenario %s: %v; the page shows:\n%s", srv.name, name, err, out)
			}
			results[srv.name][name] = r
		}
		Screenshot(t, tab, "parity-"+srv.name)
	}
	for name, want := range results["node"] {
		got := results["ours"][name]
		if got != want {
			t.Errorf("scenario %s differs\n  node: %s\n  ours: %s", name, want, got)
		}
		checkParity(t, name, "node", want)
		checkParity(t, name, "ours", got)
	}
}

// TestClientAPIDocListsEveryEvent keeps docs/client-api.md true: every
// event the parity page records, and every scenario that proves an entry,
// has its place in the table.
func TestClientAPIDocListsEveryEvent(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join(RepoRoot(t), "docs", "client-api.md"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?s)var EVENTS = \[(.*?)\];`).FindStringSubmatch(parityPage)
	if m == nil {
		t.Fatal("the parity page lists no EVENTS")
	}
	events := regexp.MustCompile(`'([^']+)'`).FindAllStringSubmatch(m[1], -1)
	if len(events) < 20 {
		t.Fatalf("only %d events on the page", len(events))
	}
	for _, e := range events {
		if !strings.Contains(string(doc), "`"+e[1]+"`") {
			t.Errorf("docs/client-api.md does not list the event %s", e[1])
		}
	}
	for name := range parityWant {
		if !regexp.MustCompile(`\[[a-zA-Z, ]*\b` + name + `\b`).Match(doc) {
			t.Errorf("docs/client-api.md names no entry proved by the scenario %s", name)
		}
	}
}

// parityWant holds what each scenario must give (with the original, and
// so with ours), as JSON values at paths of its result; "log~" entries are
// event sequences that must appear in order (not necessarily adjacent).
var parityWant = map[string]map[string]string{
	"api": {
		"methods": `[]`, "constants": `[1,2,3]`, "connect": `true`, "version": `"8.0.9"`, "pathname": `"/primus"`,
		"readyState": `2`, "strategies": `["online,timeout","disconnect,online,timeout",""]`,
		"options": `[10000,true,"number",true]`, "recovery": `[1000,true,3,2,30000]`,
		"url": `["?token=abc&x=1","http:","/ignored"]`, "plugins": `["function",true,["emitter"]]`,
		"reserved":      `[true,true,true,true,true,true,true,false,false,true]`,
		"transformType": `"Invalid transformer type"`, "pingOption": `"The ` + "`ping` and `pong`" + ` options have been removed"`,
		"qs": `["a=1&b=x%20y&c=","?k=v%20w&n="]`, "emits": `[[1,2],[7],[]]`, "sendReturns": `true`,
		"queued": `0`, "destroyedAgain": `false`,
	},
	"lifecycle": {
		"states": `[2,1,3,2]`, "queued": `true`, "ids": `[21]`,
		"log": `["readyStateChange [\"opening\"]","outgoing::end",` +
			`"outgoing::url [{\"protocol\":\"ws:\",\"secure\":false,\"pathname\":\"/primus\",\"query\":[\"_primuscb\"]}]",` +
			`"outgoing::open","readyStateChange [\"open\"]",` +
			`"outgoing::data [\"{\\\"cmd\\\":\\\"echo\\\",\\\"data\\\":\\\"queued before open\\\"}\"]",` +
			`"open","incoming::open [{\"event\":\"open\"}]","-- open",` +
			`"outgoing::data [\"\\\"primus::id::\\\"\"]",` +
			`"outgoing::data [\"{\\\"cmd\\\":\\\"echo\\\",\\\"data\\\":{\\\"a\\\":[1,\\\"two\\\"],\\\"line\\\":\\\"x\\\\u2028y\\\"}}\"]",` +
			`"data [\"queued before open\",\"\\\"queued before open\\\"\"]","incoming::data [\"\\\"queued before open\\\"\"]",` +
			`"incoming::id [\"ID\"]","incoming::data [\"\\\"primus::id::ID\\\"\"]",` +
			`"data [{\"a\":[1,\"two\"],\"line\":\"x\u2028y\"},\"{\\\"a\\\":[1,\\\"two\\\"],\\\"line\\\":\\\"x\\\\u2028y\\\"}\"]",` +
			`"incoming::data [\"{\\\"a\\\":[1,\\\"two\\\"],\\\"line\\\":\\\"x\\\\u2028y\\\"}\"]",` +
			`"-- end","outgoing::data [\"{\\\"cmd\\\":\\\"echo\\\",\\\"data\\\":\\\"last\\\"}\"]",` +
			`"readyStateChange [\"end\"]","outgoing::end","close","end"]`,
	},
	"tokenRefresh": {
		"seen": `["tok-1 keep=1 cb=string","tok-2 keep=1 cb=string"]`,
		"log~": `["outgoing::url","-- reconnect","close","reconnect scheduled","incoming::end","outgoing::url","outgoing::reconnect","reconnect","reconnected","open"]`,
	},
	"transform": {
		"data":   `[["first","\"first\""],[{"x":1,"stamped":true,"seen":true},"{\"x\":1,\"stamped\":true}"],["done","\"done\""]]`,
		"errors": `["async transform failed"]`,
	},
	"emitter": {
		"sendResult": `true`, "opened": `1`, "acks": `[["a",1],["joined","r"]]`,
		"events": `["news [\"hello\",{\"n\":1}]","q [\"why\"] +ack","news [\"with id\"] +ack","answered [\"because\",42]","news [\"to the room\"]"]`,
	},
	"ping": {
		"pingTimeout": `1500`, "pongsMatch": `true`, "ages": `[true,true]`,
		"log~": `["open","outgoing::pong","incoming::ping","outgoing::pong","incoming::ping","end"]`, // the listeners of the test run after the client's own
	},
	"manualQueue": {"beforeOpen": `[0,2,2,0]`, "dataA": `["a2","a3"]`, "dataC": `["c1","c2","c3"]`},
	"serverEnd": {
		"readyState": `2`, "timers": `[]`, "reconnecting": `false`,
		"log~": `["open","incoming::data [\"\\\"primus::server::close\\\"\"]","readyStateChange [\"end\"]","outgoing::end","close","end","incoming::end [{\"event\":\"close\"}]"]`,
	},
	"connectTimeout": {
		"a~": `["outgoing::open","timeout","readyStateChange [\"end\"]","outgoing::end","close","end"]`,
		"b~": `["timeout","reconnect scheduled","outgoing::reconnect","reconnect","reconnect timeout","reconnect scheduled","reconnect","reconnect timeout","end","reconnect failed"]`,
	},
	"refused": {
		"a~": `["outgoing::open","error","reconnect scheduled","incoming::error","outgoing::reconnect","reconnect","end","reconnect failed"]`,
		"b~": `["outgoing::open","error","readyStateChange [\"end\"]","outgoing::end","close","end","incoming::error"]`,
	},
	"reconnect": {"log~": `["open","close","reconnect scheduled","incoming::end","outgoing::reconnect","reconnect","reconnected","readyStateChange [\"open\"]","open"]`},
	"offline":   {"log~": `["-- offline","offline","readyStateChange [\"end\"]","outgoing::end","close","end","-- online","online","reconnect scheduled","outgoing::reconnect","reconnect","reconnected","open"]`},
	"destroy":   {"first": `true`, "again": `false`, "listeners": `0`, "log~": `["close","end","destroy"]`},
}

// checkParity checks a scenario's result against parityWant.
func checkParity(t *testing.T, name, server, result string) {
	t.Helper()
	var got map[string]json.RawMessage
	if err := json.Unmarshal([]byte(result), &got); err != nil {
		t.Errorf("%s %s: %v: %s", server, name, err, result)
		return
	}
	want, ok := parityWant[name]
	if !ok {
		t.Errorf("scenario %s has no expectations", name)
		return
	}
	for key, w := range want {
		if field, ok := strings.CutSuffix(key, "~"); ok {
			var seq, log []string
			if json.Unmarshal([]byte(w), &seq) != nil || json.Unmarshal(got[field], &log) != nil {
				t.Errorf("%s %s: %s: bad sequence", server, name, key)
				continue
			}
			i := 0
			for _, l := range log {
				if i < len(seq) && (l == seq[i] || strings.HasPrefix(l, seq[i]+" ")) {
					i++
				}
			}
			if i < len(seq) {
				t.Errorf("%s %s: %s lacks %q (in order from %q) in\n%s", server, name, field, seq[i], seq[0], strings.Join(log, "\n"))
			}
			continue
		}
		var a, b any
		if err := json.Unmarshal([]byte(w), &a); err != nil {
			t.Fatalf("parityWant[%s][%s]: %v", name, key, err)
		}
		_ = json.Unmarshal(got[key], &b)
		if aj, bj := mustJSON(t, a), mustJSON(t, b); aj != bj {
			t.Errorf("%s %s: %s = %s, want %s", server, name, key, got[key], w)
		}
	}
}
