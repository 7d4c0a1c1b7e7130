package protocol

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestClassify(t *testing.T) {
	tests := []struct {
		in      string
		want    Kind
		invalid bool
	}{
		{`"primus::pong::1234"`, KindPong, false},
		{`"primus::pong::whatever"`, KindPong, false},
		{` "primus::pong::1" `, KindPong, false},
		{`"\u0070rimus::pong::1"`, KindPong, false},
		{`"primus::id::"`, KindID, false},
		{`"primus::id::ignored"`, KindID, false},
		{`"primus::foo::bar"`, KindData, false},
		{`"primus::"`, KindData, false},
		{`"primus::ping::1"`, KindData, false},
		{`"hello"`, KindData, false},
		{`{"join":"a"}`, KindData, false},
		{`null`, KindData, false},
		{`123`, KindData, false},
		{`{"a":`, KindData, true},
		{``, KindData, true},
		{`"primus::pong::1`, KindData, true},
		// No ':' after the type: Primus takes all but the last character
		// (msg.slice(8, -1)), so these differ from what they look like.
		{`"primus::pong"`, KindData, false},
		{`"primus::id"`, KindData, false},
		{`"primus::pongX"`, KindPong, false},
		{`"primus::idX"`, KindID, false},
		{`"primus::pong\u00e9"`, KindPong, false},
		{`"primus::pong😀"`, KindData, false},
		{`"primus::pong:"`, KindPong, false},
		{`"primus::id:"`, KindID, false},
	}
	for _, tt := range tests {
		got, err := Classify([]byte(tt.in))
		if tt.invalid != (err != nil) {
			t.Errorf("Classify(%q) error = %v, want invalid=%v", tt.in, err, tt.invalid)
			continue
		}
		if err != nil && !errors.Is(err, ErrInvalidJSON) {
			t.Errorf("Classify(%q) error %v does not wrap ErrInvalidJSON", tt.in, err)
		}
		if got != tt.want {
			t.Errorf("Classify(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestParse(t *testing.T) {
	typ, val, ok := Parse("primus::ping::1712")
	if !ok || typ != "ping" || val != "1712" {
		t.Fatalf("Parse = %q %q %v", typ, val, ok)
	}
	typ, val, ok = Parse("primus::server::close")
	if !ok || typ != "server" || val != "close" {
		t.Fatalf("Parse = %q %q %v", typ, val, ok)
	}
	// Values as JavaScript's primus.js computes them (node -e, see the spec §1.3).
	for _, tt := range []struct{ in, typ, value string }{
		{"primus::pong", "pon", "rimus::pong"},
		{"primus::pongX", "pong", "rimus::pongX"},
		{"primus::", "", "rimus::"},
		{"primus::p", "", "rimus::p"},
		{"primus::pong:", "pong", ""},
		{"primus::id:", "id", ""},
		{"primus::a::b::c", "a", "b::c"},
		{"primus::ping:x5", "ping", "5"},
		// The character skipped after the ':' is one UTF-16 code unit.
		{"primus::id:\u00e95", "id", "5"},
		{"primus::id:\U0001F6005", "id", "\uFFFD5"},
	} {
		typ, val, ok := Parse(tt.in)
		if !ok || typ != tt.typ || val != tt.value {
			t.Errorf("Parse(%q) = %q %q %v, want %q %q", tt.in, typ, val, ok, tt.typ, tt.value)
		}
	}
	if _, _, ok := Parse("primus:x"); ok {
		t.Fatal("Parse accepted a string without the prefix")
	}
}

func TestClassifyFromServer(t *testing.T) {
	tests := []struct {
		in      string
		kind    Kind
		value   string
		invalid bool
	}{
		{`"primus::ping::1712000000000"`, KindPing, "1712000000000", false},
		{`"primus::ping::"`, KindPing, "", false},
		{`"primus::pingX"`, KindPing, "rimus::pingX", false},
		{`"primus::ping"`, KindData, "", false},
		{`"\u0070rimus::ping::7"`, KindPing, "7", false},
		{`"primus::ping::\u2028"`, KindPing, "\u2028", false},
		{`"primus::id::abc"`, KindID, "abc", false},
		{`"primus::id::"`, KindID, "", false},
		{`"primus::idX"`, KindID, "rimus::idX", false},
		{`"primus::server::close"`, KindServerClose, "close", false},
		{`"primus::server::closeX"`, KindIgnored, "closeX", false},
		{`"primus::serverX"`, KindIgnored, "rimus::serverX", false},
		{`"primus::pong::1"`, KindData, "", false}, // a server's message, not a client's
		{`"primus::foo::bar"`, KindData, "", false},
		{`"primus::"`, KindData, "", false},
		{`["primus::ping::1"]`, KindData, "", false},
		{`{"primus::ping::1":1}`, KindData, "", false},
		{`"hello"`, KindData, "", false},
		{`null`, KindData, "", false},
		{`"primus::ping::1`, KindData, "", true},
	}
	for _, tt := range tests {
		kind, value, err := ClassifyFromServer([]byte(tt.in))
		if tt.invalid != (err != nil) || (err != nil && !errors.Is(err, ErrInvalidJSON)) {
			t.Errorf("ClassifyFromServer(%s) error = %v, want invalid=%v", tt.in, err, tt.invalid)
			continue
		}
		if kind != tt.kind || value != tt.value {
			t.Errorf("ClassifyFromServer(%s) = %v %q, want %v %q", tt.in, kind, value, tt.kind, tt.value)
		}
	}
}

func TestEncode(t *testing.T) {
	tests := []struct {
		in   any
		want string
	}{
		{map[string]any{"a": "<b>&"}, `{"a":"<b>&"}`},
		{"caf\u00e9 \u2028 \u2029", `"café \u2028 \u2029"`},
		{json.RawMessage("\"x\u2028y\""), `"x\u2028y"`},
		{json.RawMessage(`{"a": 1}`), `{"a": 1}`},
		{nil, `null`},
		{[]int{1, 2, 3}, `[1,2,3]`},
	}
	for _, tt := range tests {
		got, err := Encode(tt.in)
		if err != nil {
			t.Fatalf("Encode(%v): %v", tt.in, err)
		}
		if string(got) != tt.want {
			t.Errorf("Encode(%v) = %s, want %s", tt.in, got, tt.want)
		}
	}
	if _, err := Encode(json.RawMessage(`{`)); !errors.Is(err, ErrInvalidJSON) {
		t.Errorf("Encode(invalid raw) error = %v", err)
	}
	if _, err := Encode(func() {}); err == nil {
		t.Error("Encode(func) succeeded")
	}
}

func TestEscapeLineTerminatorsNoCopy(t *testing.T) {
	b := []byte(`"plain \xe2\x82\xac"`)
	if got := EscapeLineTerminators(b); &got[0] != &b[0] {
		t.Error("EscapeLineTerminators copied a slice without line terminators")
	}
}

func TestControlMessages(t *testing.T) {
	if got := string(Ping(1700000000000)); got != `"primus::ping::1700000000000"` {
		t.Errorf("Ping = %s", got)
	}
	if got := string(IDReply("abc_-1")); got != `"primus::id::abc_-1"` {
		t.Errorf("IDReply = %s", got)
	}
	if string(ServerClose) != `"primus::server::close"` {
		t.Errorf("ServerClose = %s", ServerClose)
	}
	if string(IDRequest) != `"primus::id::"` {
		t.Errorf("IDRequest = %s", IDRequest)
	}
	for value, want := range map[string]string{
		"1712000000000": `"primus::pong::1712000000000"`,
		"":              `"primus::pong::0"`,
		"rimus::pingX":  `"primus::pong::NaN"`,
		"0x10":          `"primus::pong::16"`, // Number("0x10"); see TestNumberString
	} {
		if got := string(Pong(value)); got != want {
			t.Errorf("Pong(%q) = %s, want %s", value, got, want)
		}
	}
}

func TestIsControl(t *testing.T) {
	for text, want := range map[string]bool{
		`"primus::server::close"`:       true,
		`"primus::"`:                    true,
		` "primus::id::x"`:              true,
		`"primus::ping::1"`:             true,
		`"\u0070rimus::server::close"`:  true,
		`"primus\u003a\u003Aserver"`:    true,
		`"prim\u0075s\/::x"`:            false,
		`"primus:"`:                     false,
		`"primus"`:                      false,
		`"Primus::x"`:                   false,
		`"xprimus::"`:                   false,
		`{"primus::":1}`:                false,
		`["primus::x"]`:                 false,
		`"primus\n::"`:                  false,
		`"primus\u00e9::"`:              false,
		`"primus\u003`:                  false,
		`"primus:\`:                     false,
		``:                              false,
		`"`:                             false,
		`"primu`:                        false,
		`"primus\u003a\u003a` + `more"`: true,
	} {
		if got := IsControl([]byte(text)); got != want {
			t.Errorf("IsControl(%s) = %v, want %v", text, got, want)
		}
	}
}

// FuzzIsControl checks IsControl against decoding the whole value.
func FuzzIsControl(f *testing.F) {
	for _, s := range []string{`"primus::x"`, `"\u0070rimus::"`, `"prim"`, `1`, `"primus\/::"`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, text []byte) {
		var s string
		if json.Unmarshal(text, &s) != nil {
			return // only whole, valid values are compared
		}
		if want := strings.HasPrefix(s, Prefix); IsControl(text) != want {
			t.Fatalf("IsControl(%q) = %v, decoded %q", text, !want, s)
		}
	})
}
