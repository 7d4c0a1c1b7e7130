package client

import (
	"encoding/json"
	"testing"
)

// FuzzDecodePacket: frames from a server are not trusted either; the
// decoder never panics and takes only well-formed packets.
func FuzzDecodePacket(f *testing.F) {
	for _, s := range []string{
		`{"type":0,"data":["news",1]}`, `{"type":0,"data":["q"],"id":3}`, `{"id":3,"type":1,"data":[1,2]}`,
		`{"type":0,"data":[]}`, `{"type":0,"data":[null]}`, `{"type":0,"data":[1]}`, `{"type":"1","data":[]}`,
		`{"type":1,"data":[],"id":"1"}`, `{"type":1,"data":[],"id":1e400}`, `{`, ``, `null`, `[{"type":0}]`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		p, ok := decodePacket(b)
		if !ok {
			return
		}
		if !json.Valid(b) || (p.id != nil && !json.Valid(p.id)) {
			t.Fatalf("accepted %q (id %q)", b, p.id)
		}
		for _, a := range p.args {
			if !json.Valid(a) {
				t.Fatalf("arg %q of %q", a, b)
			}
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
		{`{"type":0,"data":["news"],"id":"1"}`, false, false, "", ""},
		{`{"type":0,"data":[null]}`, false, false, "", ""},
		{`{"type":0,"data":[]}`, false, false, "", ""},
		{`{"type":"0","data":["news"]}`, false, false, "", ""},
		{`{"Type":0,"data":["news"]}`, false, false, "", ""},
		{`{"type":0,"data":"news"}`, false, false, "", ""},
	} {
		p, ok := decodePacket([]byte(c.in))
		if ok != c.ok || (ok && (p.ack != c.ack || p.event != c.event || string(p.id) != c.id)) {
			t.Errorf("decodePacket(%s) = %+v, %v", c.in, p, ok)
		}
	}
}
