package serverapp

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

func TestParseCommand(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want command
		err  string
	}{
		{`{"join":"a"}`, command{Join: rooms{"a"}}, ""},
		{`{"join":["a","b"],"ack":1}`, command{Join: rooms{"a", "b"}, Ack: json.RawMessage(`1`)}, ""},
		{`{"join":[],"ack":{"x":[1,2]}}`, command{Join: rooms{}, Ack: json.RawMessage(`{"x":[1,2]}`)}, ""},
		{`{"join":null}`, command{}, ""},
		{`{"leave":"a","leaveAll":true}`, command{Leave: rooms{"a"}, LeaveAll: true}, ""},
		{`{"leaveAll":false}`, command{}, ""},
		{`{"publish":{"room":"r","rooms":["a"],"except":["x"],"data":{"k":"\u2028"}},"other":[1,{"a":2}]}`,
			command{Publish: &publishCommand{Room: "r", Rooms: []string{"a"}, Except: []string{"x"}, Data: json.RawMessage(`{"k":"\u2028"}`)}}, ""},
		{`{"publish":{"room":"r","data":null}}`, command{Publish: &publishCommand{Room: "r", Data: json.RawMessage(`null`)}}, ""},
		{`{"publish":null}`, command{}, ""},
		{`{"join":"a","join":"b"}`, command{Join: rooms{"b"}}, ""}, // the last one counts
		{`{"JOIN":"a"}`, command{}, ""},                            // names are exact
		{`{"join":"\u0061\ud83d\ude00"}`, command{Join: rooms{"a😀"}}, ""},
		{`{"join":5,"ack":2}`, command{}, "a room must be a string or a list of strings"},
		{`{"join":["a",5]}`, command{}, "join must be a list of strings"},
		{`{"leaveAll":"yes"}`, command{}, "leaveAll must be true or false"},
		{`{"publish":[1]}`, command{}, "publish must be an object"},
		{`{"publish":{"room":1}}`, command{}, "room must be a string"},
		{`{"publish":{"except":"x"}}`, command{}, "except must be a list of strings"},
		{`[1]`, command{}, "a command is a JSON object"},
	} {
		got, err := parseCommand([]byte(tt.in), limits{})
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%s: error %v, want %q", tt.in, err, tt.err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: got %+v (publish %+v), %v; want %+v", tt.in, got, got.Publish, err, tt.want)
		}
	}
	// Lists are refused at their first entry over the bound.
	lim := limits{join: 2, publish: 3, except: 1}
	for in, want := range map[string]string{
		`{"join":["a","b","c"]}`:                               "primus: too many rooms for one spark (at most 2)",
		`{"leave":["a","b","c"]}`:                              "leave: more than 2 entries",
		`{"publish":{"rooms":["a","b","c","d"],"data":1}}`:     "rooms: more than 3 entries",
		`{"publish":{"room":"r","except":["x","y"],"data":1}}`: "except: more than 1 entries",
	} {
		if _, err := parseCommand([]byte(in), lim); err == nil || err.Error() != want {
			t.Errorf("%s: %v, want %q", in, err, want)
		}
	}
	if c, err := parseCommand([]byte(`{"join":["a","b"],"publish":{"rooms":["a","b","c"],"except":["x"],"data":1}}`), lim); err != nil || len(c.Join) != 2 {
		t.Errorf("at the bounds: %+v, %v", c, err)
	}
	for in, want := range map[string]string{
		`{"join":5,"ack":2}`:         `2`,
		`{"ack":[3],"leaveAll":"x"}`: `[3]`,
		`{"x":{"ack":1}}`:            ``,
		`"s"`:                        ``,
	} {
		if got := ackOf([]byte(in)); string(got) != want {
			t.Errorf("ackOf(%s) = %s, want %s", in, got, want)
		}
	}
}

// FuzzParseCommand: any valid JSON object parses without panicking, and a
// command built by encoding/json parses back to itself.
func FuzzParseCommand(f *testing.F) {
	f.Add(`{"join":"a","ack":1}`, "r", "d", true)
	f.Add(`{"publish":{"rooms":["a"],"data":[1,{"b":null}]}}`, "", "", false)
	f.Fuzz(func(t *testing.T, raw, room, id string, all bool) {
		if json.Valid([]byte(raw)) {
			_, _ = parseCommand([]byte(raw), limits{join: 3, publish: 3, except: 3})
			_ = ackOf([]byte(raw))
		}
		want := command{Join: rooms{room}, Leave: rooms{id, room}, LeaveAll: all,
			Publish: &publishCommand{Room: room, Rooms: []string{room, id}, Except: []string{id}, Data: json.RawMessage(`{"x":1}`)},
			Ack:     json.RawMessage(`"` + strings.Repeat("z", len(id)%5) + `"`)}
		b, err := json.Marshal(want) // invalid UTF-8 becomes U+FFFD
		if err != nil {
			t.Fatal(err)
		}
		got, err := parseCommand(b, limits{})
		if err != nil {
			t.Fatalf("%s: %v", b, err)
		}
		// encoding/json replaces invalid UTF-8; compare with its own round trip.
		var ref command
		if err := json.Unmarshal(b, &ref); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, ref) {
			t.Fatalf("%s: got %+v, encoding/json %+v", b, got, ref)
		}
	})
}

// BenchmarkParseCommand: a member's publish in the chat scenario, with
// the tokenizer and with encoding/json for reference.
func BenchmarkParseCommand(b *testing.B) {
	raw := []byte(`{"publish":{"room":"room-01234","data":{"s":1234,"t":1795920509327123,"p":"0123456789abcdef0123456789abcdef"}}}`)
	b.Run("tokenizer", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := parseCommand(raw, limits{}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding/json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var c struct {
				Publish *struct {
					Room string          `json:"room"`
					Data json.RawMessage `json:"data"`
				} `json:"publish"`
			}
			if err := json.Unmarshal(raw, &c); err != nil {
				b.Fatal(err)
			}
		}
	})
}
