package redisbroker

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/primusgo/primus"
)

func TestEnvelopeRoundTrip(t *testing.T) {
	msgs := []*primus.Message{
		{ID: "m1", Origin: "node-a", Rooms: []string{"r"}, Data: []byte(`1`)},
		{ID: "", Origin: "", Rooms: nil, Data: []byte(`null`)},
		{ID: "id", Origin: "o", Rooms: []string{"a", "b c", "", "caf\u00e9 \u2028"}, Except: []string{"x1", "x2"}, Data: []byte(`{"s":"\u2028","n":[1,2.5,null,true]}`)},
		{ID: strings.Repeat("i", 300), Origin: strings.Repeat("o", 200), Rooms: []string{strings.Repeat("r", 70000)}, Data: []byte(`"` + strings.Repeat("d", 1<<16) + `"`)},
	}
	for _, m := range msgs {
		b := AppendEnvelope(nil, m)
		if len(b) != envelopeSize(m) {
			t.Errorf("envelopeSize = %d, encoded %d", envelopeSize(m), len(b))
		}
		got, err := DecodeEnvelope(b)
		if err != nil {
			t.Fatalf("DecodeEnvelope(%q): %v", b[:min(len(b), 40)], err)
		}
		if got.ID != m.ID || got.Origin != m.Origin || !slices.Equal(got.Rooms, m.Rooms) ||
			!slices.Equal(got.Except, m.Except) || !bytes.Equal(got.Data, m.Data) {
			t.Errorf("round trip: got %+v, want %+v", got, m)
		}
	}
}

// TestEnvelopeBytes pins the documented layout: other languages publish
// these bytes.
func TestEnvelopeBytes(t *testing.T) {
	m := &primus.Message{ID: "7", Origin: "n1", Rooms: []string{"a", "b"}, Except: []string{"s9"}, Data: []byte(`{"x":1}`)}
	want := "\x01" + "\x017" + "\x02n1" + "\x02" + "\x01a" + "\x01b" + "\x01" + "\x02s9" + `{"x":1}`
	if got := string(AppendEnvelope(nil, m)); got != want {
		t.Fatalf("envelope = %q, want %q", got, want)
	}
	// A 200-byte room name takes a two-byte varint length.
	long := strings.Repeat("r", 200)
	got := AppendEnvelope(nil, &primus.Message{Rooms: []string{long}, Data: []byte(`1`)})
	if want := "\x01\x00\x00\x01\xc8\x01" + long + "\x001"; string(got) != want {
		t.Fatalf("long room envelope prefix = %q", got[:8])
	}
}

func TestDecodeEnvelopeErrors(t *testing.T) {
	valid := string(AppendEnvelope(nil, &primus.Message{ID: "i", Origin: "o", Rooms: []string{"r"}, Except: []string{"x"}, Data: []byte(`[1]`)}))
	cases := []struct {
		name    string
		payload string
		want    error
	}{
		{"empty", "", ErrMalformed},
		{"json null", "null", ErrUnknownVersion},
		{"compat payload", `{"room":"r","data":1}`, ErrUnknownVersion},
		{"version 3", "\x03" + valid[1:], ErrUnknownVersion},
		{"version 2 without offset or skip", "\x02\x00\x00\x00" + valid[1:], ErrMalformed},
		{"version 2 offset without epoch", "\x02\x05\x00\x00" + valid[1:], ErrMalformed},
		{"version 2 epoch without offset", "\x02\x00\x01e\x01" + valid[1:], ErrMalformed},
		{"version 2 epoch too long", "\x02\x05\x41" + strings.Repeat("e", 65) + "\x00" + valid[1:], ErrMalformed},
		{"version 2 lead past rooms", "\x02\x05\x01e\x02" + valid[1:], ErrMalformed},
		{"version 2 offset overflow", "\x02\xff\xff\xff\xff\xff\xff\xff\xff\xff\x02\x01e\x00" + valid[1:], ErrMalformed},
		{"version 0", "\x00" + valid[1:], ErrUnknownVersion},
		{"only version", "\x01", ErrMalformed},
		{"no data", valid[:len(valid)-3], ErrMalformed},
		{"invalid json data", valid[:len(valid)-3] + "[1", ErrMalformed},
		{"two json values", valid + " 2", ErrMalformed},
		{"id length past end", "\x01\x7f", ErrMalformed},
		{"huge room count", "\x01\x00\x00\xff\xff\xff\xff\x0f1", ErrMalformed},
		{"varint overflow", "\x01\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", ErrMalformed},
		{"truncated varint", "\x01\x80", ErrMalformed},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := DecodeEnvelope([]byte(c.payload))
			if !errors.Is(err, c.want) {
				t.Fatalf("err = %v, want %v", err, c.want)
			}
		})
	}
}

// Version 2 carries a history write's offset and epoch and the rooms to
// skip, and keeps the version 1 fields; version 1 messages stay version 1.
func TestEnvelopeVersion2(t *testing.T) {
	msgs := []*primus.Message{
		{ID: "7", Origin: "n1", Rooms: []string{"h"}, Data: []byte(`{"x":1}`), Offset: 300, Epoch: "ab1"},
		{ID: "7", Origin: "n1", Rooms: []string{"h"}, Skip: []string{"a", "b"}, Except: []string{"s9"}, Data: []byte(`1`), Offset: 1, Epoch: "e"},
		{ID: "", Origin: "", Rooms: []string{"p", "q"}, Skip: []string{"h"}, Data: []byte(`null`)},
		{Rooms: []string{"h"}, Data: []byte(`2`), Offset: 1<<64 - 1, Epoch: strings.Repeat("e", 64)},
	}
	for _, m := range msgs {
		b := AppendEnvelope(nil, m)
		if b[0] != EnvelopeVersion2 || len(b) != envelopeSize(m) {
			t.Fatalf("version %d, size %d, envelopeSize %d", b[0], len(b), envelopeSize(m))
		}
		got, err := DecodeEnvelope(b)
		if err != nil {
			t.Fatalf("DecodeEnvelope(%q): %v", b, err)
		}
		if got.ID != m.ID || got.Origin != m.Origin || !slices.Equal(got.Rooms, m.Rooms) || !slices.Equal(got.Skip, m.Skip) ||
			!slices.Equal(got.Except, m.Except) || !bytes.Equal(got.Data, m.Data) || got.Offset != m.Offset || got.Epoch != m.Epoch {
			t.Errorf("round trip: got %+v, want %+v", got, m)
		}
		if origin, ok := envelopeOrigin(string(b)); !ok || origin != m.Origin {
			t.Errorf("envelopeOrigin = %q, %v", origin, ok)
		}
	}
	// The documented bytes: offset 300 (two-byte varint), epoch "ab1",
	// one room to skip "a", then the version 1 fields.
	m := &primus.Message{ID: "7", Origin: "n1", Rooms: []string{"h"}, Skip: []string{"a"}, Data: []byte(`1`), Offset: 300, Epoch: "ab1"}
	want := "\x02" + "\xac\x02" + "\x03ab1" + "\x01" + "\x017" + "\x02n1" + "\x02" + "\x01a" + "\x01h" + "\x00" + "1"
	if got := string(AppendEnvelope(nil, m)); got != want {
		t.Fatalf("envelope = %q, want %q", got, want)
	}
	// What the script publishes: version, offset and epoch before the tail.
	tail := appendEnvelopeTail(nil, m)
	if got := "\x02\xac\x02\x03ab1" + string(tail); got != want {
		t.Fatalf("script payload = %q, want %q", got, want)
	}
}

func FuzzDecodeEnvelope(f *testing.F) {
	f.Add(AppendEnvelope(nil, &primus.Message{ID: "i", Origin: "o", Rooms: []string{"h"}, Skip: []string{"s"}, Data: []byte(`[1]`), Offset: 12, Epoch: "ep"}))
	f.Add(AppendEnvelope(nil, &primus.Message{ID: "i", Origin: "o", Rooms: []string{"a", "b"}, Except: []string{"x"}, Data: []byte(`{"k":[1,"2"]}`)}))
	f.Add(AppendEnvelope(nil, &primus.Message{Data: []byte(`null`)}))
	f.Add([]byte(`{"room":"r","data":1}`))
	f.Add([]byte("\x01\xff\xff\xff\xff\x0f"))
	f.Fuzz(func(t *testing.T, payload []byte) {
		m, err := DecodeEnvelope(payload)
		origin, ok := envelopeOrigin(string(payload))
		if err != nil {
			if m != nil {
				t.Fatal("message with error")
			}
			return
		}
		// The hook's header peek agrees with the decoder.
		if !ok || origin != m.Origin {
			t.Fatalf("envelopeOrigin = %q, %v; decoded origin %q", origin, ok, m.Origin)
		}
		if !json.Valid(m.Data) {
			t.Fatalf("accepted invalid data %q", m.Data)
		}
		// Re-encoding a decoded envelope gives the same bytes.
		if again := AppendEnvelope(nil, m); !bytes.Equal(again, payload) {
			t.Fatalf("re-encoded %q, want %q", again, payload)
		}
	})
}

// FuzzValidJSON checks the fast validator against encoding/json.
func FuzzValidJSON(f *testing.F) {
	for _, s := range []string{`{"a":1,"a":2}`, "\"a\xffb\"", `1 2`, ` [1, {"x": null}] `, `[1,]`, `"\ud800"`, ``, `nul`, `1e400`, `-0.0e-7`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := validJSON(s), json.Valid([]byte(s)); got != want {
			t.Fatalf("validJSON(%q) = %v, encoding/json says %v", s, got, want)
		}
	})
}

func TestUniqueRooms(t *testing.T) {
	a := []string{"a", "b", "c"}
	if got := uniqueRooms(a); &got[0] != &a[0] {
		t.Error("copied a slice without duplicates")
	}
	if got := uniqueRooms([]string{"a", "b", "a", "c", "b"}); !slices.Equal(got, []string{"a", "b", "c"}) {
		t.Errorf("uniqueRooms = %v", got)
	}
	// Large lists take the linear path.
	many := make([]string, 10000)
	for i := range many {
		many[i] = fmt.Sprintf("room-%05d", i)
	}
	if got := uniqueRooms(many); &got[0] != &many[0] {
		t.Error("copied a large slice without duplicates")
	}
	dup := append(slices.Clone(many), many[5], "extra", many[0], "extra")
	if got := uniqueRooms(dup); !slices.Equal(got, append(slices.Clone(many), "extra")) {
		t.Errorf("uniqueRooms with duplicates: %d rooms, last %q", len(got), got[len(got)-1])
	}
}

func BenchmarkEnvelopeEncode(b *testing.B) {
	m := &primus.Message{ID: "12345", Origin: "3f1c2a9e-5b7d-4c1e-9a2b-0c4d5e6f7a8b", Rooms: []string{"chat:lobby"}, Data: []byte(`{"user":"alice","text":"hello, world","ts":1732550000000}`)}
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendEnvelope(buf[:0], m)
	}
	b.SetBytes(int64(len(buf)))
}

func BenchmarkEnvelopeDecode(b *testing.B) {
	m := &primus.Message{ID: "12345", Origin: "3f1c2a9e-5b7d-4c1e-9a2b-0c4d5e6f7a8b", Rooms: []string{"chat:lobby"}, Except: []string{"sparkid-0123456789abc"}, Data: []byte(`{"user":"alice","text":"hello, world","ts":1732550000000}`)}
	p := string(AppendEnvelope(nil, m))
	b.SetBytes(int64(len(p)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := decodeEnvelope(p); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCompatEncode(b *testing.B) {
	data := []byte(`{"user":"alice","text":"hello, world","ts":1732550000000}`)
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		buf = appendCompat(buf[:0], "chat:lobby", data)
	}
}

func BenchmarkCompatDecode(b *testing.B) {
	p := string(appendCompat(nil, "chat:lobby", []byte(`{"user":"alice","text":"hello, world","ts":1732550000000}`)))
	b.SetBytes(int64(len(p)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := decodeCompat(p); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEnvelopeDecode1MiB(b *testing.B) {
	m := &primus.Message{ID: "1", Origin: "n", Rooms: []string{"big"}, Data: []byte(`{"blob":"` + strings.Repeat("0123456789abcdef", 1<<16) + `"}`)}
	p := string(AppendEnvelope(nil, m))
	b.SetBytes(int64(len(p)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := decodeEnvelope(p); err != nil {
			b.Fatal(err)
		}
	}
}
