package redisbroker

import (
	"errors"
	"testing"
)

func TestAppendCompatMatchesJSONStringify(t *testing.T) {
	// Expected outputs produced by node v20:
	//   JSON.stringify({room: r, data: [1,"x"]})
	cases := []struct{ room, want string }{
		{"foo", `{"room":"foo","data":[1,"x"]}`},
		{"a\"b\\c", `{"room":"a\"b\\c","data":[1,"x"]}`},
		{"\x01\x1f\b\f\n\r\t", `{"room":"\u0001\u001f\b\f\n\r\t","data":[1,"x"]}`},
		{"caf\u00e9 \u2028 \u2029 <>&", "{\"room\":\"caf\u00e9 \u2028 \u2029 <>&\",\"data\":[1,\"x\"]}"},
		{"\U0001F600", "{\"room\":\"\U0001F600\",\"data\":[1,\"x\"]}"},
		{"\x7f", "{\"room\":\"\x7f\",\"data\":[1,\"x\"]}"},
		// Not representable in JavaScript: invalid UTF-8 becomes U+FFFD.
		{"a\xffb", `{"room":"a\ufffdb","data":[1,"x"]}`},
	}
	for _, c := range cases {
		if got := string(appendCompat(nil, c.room, []byte(`[1,"x"]`))); got != c.want {
			t.Errorf("appendCompat(%q) = %s, want %s", c.room, got, c.want)
		}
	}
}

func TestDecodeCompat(t *testing.T) {
	cases := []struct {
		name, payload string
		room, data    string
		hasData       bool
		err           error
	}{
		{"node output", `{"room":"foo","data":{"hello":"from Y"}}`, "foo", `{"hello":"from Y"}`, true, nil},
		{"string data", `{"room":"foo","data":"plain string"}`, "foo", `"plain string"`, true, nil},
		{"null data", `{"room":"foo","data":null}`, "foo", `null`, true, nil},
		{"zero", `{"room":"foo","data":0}`, "foo", `0`, true, nil},
		{"no data", `{"room":"foo"}`, "foo", "", false, nil},
		{"escaped room", `{"room":"a\"b\u00e9","data":1}`, "a\"b\u00e9", `1`, true, nil},
		{"keys swapped", `{"data":[1],"room":"r"}`, "r", `[1]`, true, nil},
		{"whitespace", ` { "room" : "r" , "data" : [ 1 ] } `, "r", `[ 1 ]`, true, nil},
		{"extra key", `{"room":"r","data":1,"x":2}`, "r", `1`, true, nil},
		{"duplicate room, last wins", `{"room":"a","data":1,"room":"b"}`, "b", `1`, true, nil},
		{"raw U+2028", "{\"room\":\"r\",\"data\":\"\u2028\"}", "r", "\"\u2028\"", true, nil},
		{"json null", `null`, "", "", false, ErrMalformed},
		{"not json", `not-json`, "", "", false, ErrMalformed},
		{"array", `[{"room":"r","data":1}]`, "", "", false, ErrMalformed},
		{"string", `"room"`, "", "", false, ErrMalformed},
		{"number", `42`, "", "", false, ErrMalformed},
		{"empty", ``, "", "", false, ErrMalformed},
		{"missing room", `{"data":1}`, "", "", false, ErrMalformed},
		{"numeric room", `{"room":5,"data":1}`, "", "", false, ErrMalformed},
		{"null room", `{"room":null,"data":1}`, "", "", false, ErrMalformed},
		{"case differs", `{"Room":"r","data":1}`, "", "", false, ErrMalformed},
		{"truncated", `{"room":"r","data":[1`, "", "", false, ErrMalformed},
		{"trailing garbage", `{"room":"r","data":1}x`, "", "", false, ErrMalformed},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m, err := decodeCompat(c.payload)
			if !errors.Is(err, c.err) {
				t.Fatalf("err = %v, want %v", err, c.err)
			}
			if err != nil {
				return
			}
			if m.room != c.room || m.hasData != c.hasData || m.data != c.data {
				t.Fatalf("got room %q data %q (has %v), want %q %q (%v)", m.room, m.data, m.hasData, c.room, c.data, c.hasData)
			}
		})
	}
}

// FuzzDecodeCompat checks that the fast path never disagrees with the
// general decoder.
func FuzzDecodeCompat(f *testing.F) {
	for _, s := range []string{`{"room":"foo","data":1}`, `{"room":"a","data":1,"room":"b"}`, `{"room":"r","data":{"x":[1,2]}}`, `null`, `{"room":"r"}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		fast, err1 := decodeCompat(p)
		slow, err2 := decodeCompatSlow(p)
		if (err1 == nil) != (err2 == nil) {
			t.Fatalf("fast err %v, slow err %v", err1, err2)
		}
		if err1 == nil && (fast.room != slow.room || fast.hasData != slow.hasData) {
			t.Fatalf("fast %+v, slow %+v", fast, slow)
		}
	})
}
