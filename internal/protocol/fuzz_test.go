package protocol

import (
	"encoding/json"
	"testing"
)

// FuzzClassify feeds the inbound decoder arbitrary client text: it must
// never panic, must reject exactly what JSON rejects, and must only report a
// control message for strings that really are one.
func FuzzClassify(f *testing.F) {
	for _, s := range []string{
		`"primus::pong::1"`, `"primus::id::"`, `"primus::foo::bar"`, `{"join":"a","ack":1}`,
		`{"publish":{"room":"r","data":[1,2,3]}}`, `null`, `"\u0070rimus::pong::x"`, `{"a":`, "\"\xe2\x80\xa8\"", ``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		kind, err := Classify(in)
		if (err != nil) == json.Valid(in) {
			t.Fatalf("Classify(%q) error %v disagrees with json.Valid", in, err)
		}
		if kind == KindData {
			return
		}
		var s string
		if err := json.Unmarshal(in, &s); err != nil {
			t.Fatalf("Classify(%q) = %v for a non-string", in, kind)
		}
		typ, _, ok := Parse(s)
		if !ok || (kind == KindPong) != (typ == "pong") || (kind == KindID) != (typ == "id") {
			t.Fatalf("Classify(%q) = %v, Parse = %q %v", in, kind, typ, ok)
		}
	})
}

// FuzzClassifyFromServer checks the client side against Parse on the decoded
// string, and that a pong always is valid JSON.
func FuzzClassifyFromServer(f *testing.F) {
	for _, s := range []string{`"primus::ping::1"`, `"primus::id::x"`, `"primus::server::close"`, `"primus::pingX"`, `"\u0070rimus::ping::\u2028"`, `1`, `{"a":`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		kind, value, err := ClassifyFromServer(in)
		if (err != nil) == json.Valid(in) {
			t.Fatalf("ClassifyFromServer(%q) error %v disagrees with json.Valid", in, err)
		}
		var s string
		if json.Unmarshal(in, &s) != nil {
			if kind != KindData {
				t.Fatalf("ClassifyFromServer(%q) = %v for a non-string", in, kind)
			}
			return
		}
		typ, v, ok := Parse(s)
		var want Kind
		switch {
		case !ok:
		case typ == "ping":
			want = KindPing
		case typ == "id":
			want = KindID
		case typ == "server" && v == "close":
			want = KindServerClose
		case typ == "server":
			want = KindIgnored
		}
		if want == KindData {
			v = ""
		}
		if kind != want || value != v {
			t.Fatalf("ClassifyFromServer(%q) = %v %q, Parse = %q %q %v", in, kind, value, typ, v, ok)
		}
		if kind == KindPing && !json.Valid(Pong(value)) {
			t.Fatalf("Pong(%q) = %s is not JSON", value, Pong(value))
		}
	})
}

// FuzzEncode checks that every encoded value is valid JSON without raw line terminators.
func FuzzEncode(f *testing.F) {
	f.Add("plain")
	f.Add("line\u2028sep\u2029")
	f.Fuzz(func(t *testing.T, s string) {
		b, err := Encode(s)
		if err != nil {
			t.Fatal(err)
		}
		if !json.Valid(b) || indexLineTerminator(b) >= 0 {
			t.Fatalf("Encode(%q) = %q", s, b)
		}
		b, err = Encode(json.RawMessage(b))
		if err != nil || indexLineTerminator(b) >= 0 {
			t.Fatalf("Encode(raw %q) = %q, %v", s, b, err)
		}
	})
}
