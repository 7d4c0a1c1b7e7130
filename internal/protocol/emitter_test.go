package protocol

import (
	"encoding/json"
	"testing"
)

// FuzzDecodePacket feeds hostile packets to the emitter decoder that the
// server (client messages) and the Go client (server frames) share: it must
// never panic, and what it accepts must be what primus-emitter's ondata takes.
func FuzzDecodePacket(f *testing.F) {
	for _, s := range []string{
		`{"type":0,"data":["news",1]}`, `{"type":0,"data":["news"],"id":3}`, `{"id":3,"type":1,"data":[1,2]}`,
		`{"type":1,"data":[],"id":1e308}`, `{"type":0,"data":[]}`, `{"type":0,"data":[1]}`, `{"type":"0","data":["x"]}`,
		`{"type":0,"data":["x"],"id":"1"}`, `{"type":0,"data":["x"],"id":-1}`, `{"type":0,"data":["x"],"id":1e400}`,
		`{"data":{}}`, `{`, ``, `null`, `{"type":0,"data":["x"],"type":5}`, `  {"type":1,"data":[null],"id":0.5}`,
		`{"type":0,"data":[null]}`, `[{"type":0}]`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		p, ok := DecodePacket(b)
		if !ok {
			return
		}
		if !json.Valid(b) {
			t.Fatalf("accepted invalid JSON %q", b)
		}
		if p.ID != nil && !json.Valid(p.ID) {
			t.Fatalf("id %q", p.ID)
		}
		for _, a := range p.Args {
			if !json.Valid(a) {
				t.Fatalf("arg %q", a)
			}
		}
		if _, ok := AckKey(p.IDNum); ok && p.IDNum < 1 {
			t.Fatalf("ack key for %v", p.IDNum)
		}
	})
}

func TestDecodePacket(t *testing.T) {
	for _, c := range []struct {
		in    string
		ok    bool
		ack   bool
		event string
		id    string
	}{
		{`{"type":0,"data":["news",1]}`, true, false, "news", ""},
		{`{"type":0,"data":["news"],"id":2.0}`, true, false, "news", "2"},
		{`{"id":1,"type":1,"data":[]}`, true, true, "", "1"},
		{`{"type":0,"data":["news"],"id":0}`, true, false, "news", ""},
		{`{"type":0,"data":["a"],"type":1}`, true, true, "", ""}, // the last duplicate wins, as in JSON.parse
		{`{"type":0,"data":["news"],"id":"1"}`, false, false, "", ""},
		{`{"type":0,"data":[null]}`, false, false, "", ""},
		{`{"type":0,"data":[]}`, false, false, "", ""},
		{`{"type":"0","data":["news"]}`, false, false, "", ""},
		{`{"Type":0,"data":["news"]}`, false, false, "", ""},
		{`{"type":0,"data":"news"}`, false, false, "", ""},
		{`{"type":2,"data":["news"]}`, false, false, "", ""},
		{`["news"]`, false, false, "", ""},
	} {
		p, ok := DecodePacket([]byte(c.in))
		if ok != c.ok || (ok && (p.Ack != c.ack || p.Event != c.event || string(p.ID) != c.id)) {
			t.Errorf("DecodePacket(%s) = %+v, %v", c.in, p, ok)
		}
	}
}

func TestReservedEvents(t *testing.T) {
	for _, c := range []struct {
		name          string
		spark, client bool
	}{
		{"news", false, false},
		{"data", true, true},
		{"heartbeat", true, false},
		{"open", false, true},
		{"reconnect scheduled", false, true},
		{"incoming::data", true, true},
		{"outgoing::x", true, true},
		{"toString", true, true},
		{"__proto__", true, true},
	} {
		if got := ReservedSparkEvent(c.name); got != c.spark {
			t.Errorf("ReservedSparkEvent(%q) = %v", c.name, got)
		}
		if got := ReservedClientEvent(c.name); got != c.client {
			t.Errorf("ReservedClientEvent(%q) = %v", c.name, got)
		}
	}
	if !EmitterIgnores("newListenerX") || EmitterIgnores("news") {
		t.Error("EmitterIgnores")
	}
}
