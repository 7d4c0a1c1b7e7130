package primus

import (
	"encoding/json"
	"testing"
)

// FuzzDecodePacket feeds hostile client messages to the emitter's packet
// decoder: it must never panic, and what it accepts must be what
// primus-emitter's ondata takes.
func FuzzDecodePacket(f *testing.F) {
	for _, s := range []string{
		`{"type":0,"data":["news",1]}`, `{"type":0,"data":["news"],"id":3}`, `{"id":3,"type":1,"data":[1,2]}`,
		`{"type":1,"data":[],"id":1e308}`, `{"type":0,"data":[]}`, `{"type":0,"data":[1]}`, `{"type":"0","data":["x"]}`,
		`{"type":0,"data":["x"],"id":"1"}`, `{"type":0,"data":["x"],"id":-1}`, `{"type":0,"data":["x"],"id":1e400}`,
		`{"data":{}}`, `{`, ``, `null`, `{"type":0,"data":["x"],"type":5}`, `  {"type":1,"data":[null],"id":0.5}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		p, ok := decodePacket(b)
		if !ok {
			return
		}
		if !json.Valid(b) {
			t.Fatalf("accepted invalid JSON %q", b)
		}
		if p.typ != packetEvent && p.typ != packetAck {
			t.Fatalf("type %d", p.typ)
		}
		if p.id != nil && !json.Valid(p.id) {
			t.Fatalf("id %q", p.id)
		}
		for _, a := range p.args {
			if !json.Valid(a) {
				t.Fatalf("arg %q", a)
			}
		}
		if _, ok := ackKey(p.idNum); ok && p.idNum < 1 {
			t.Fatalf("ack key for %v", p.idNum)
		}
	})
}
