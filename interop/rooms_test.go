package interop_test

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/primusgo/primus/internal/nodefixture"
	"github.com/primusgo/primus/internal/serverapp"
)

// roomValues are values of every JSON type, sent as room writes. The
// strings hold U+2028 and U+2029, which Primus escapes on the wire (§1.2)
// and which must reach the client's data event intact.
var roomValues = []struct {
	name string
	v    any
}{
	{"object", map[string]any{"hello": "world", "nested": map[string]any{"n": 1.5, "ok": true, "none": nil, "list": []any{}}}},
	{"string", "plain string"},
	{"empty string", ""},
	{"array", []any{1.0, "two", nil, false, map[string]any{}, []any{3.0}}},
	{"integer", 42.0},
	{"negative fraction", -0.5},
	{"zero", 0.0},
	{"large number", 1e21},
	{"true", true},
	{"null", nil},
	{"unicode", "é ü 漢字 😀 \u2028line separator\u2029paragraph separator \u0000 \" \\ </script>"},
	{"unicode keys", map[string]any{"ключ": "значение", "sep\u2028key": "\u2028", "emoji😀": []any{"\u2029"}}},
}

// A client joins a room with an acknowledged command and receives room
// writes made by the server and by another real client, each exactly as
// written.
func TestJoinAndReceiveRoomWrites(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	app, url := startApp(t, serverapp.Options{})
	a := startClient(t, url, nodefixture.ClientOptions{})
	b := startClient(t, url, nodefixture.ClientOptions{})
	awaitOpen(t, ctx, a)
	awaitOpen(t, ctx, b)
	idA := mustID(t, ctx, a)
	if app.Primus.Spark(idA) == nil {
		t.Fatalf("the server has no spark %q, the id client a reports", idA)
	}

	// The join command exactly as the issue describes it.
	if err := a.Write(map[string]any{"join": "r", "ack": 1}); err != nil {
		t.Fatal(err)
	}
	expectData(t, ctx, a, json.RawMessage(`{"ack":1,"ok":true}`))
	if got := app.Primus.Clients("r"); !slices.Equal(got, []string{idA}) {
		t.Fatalf("members of r = %v, want [%s]", got, idA)
	}

	for _, tc := range roomValues {
		// From the server.
		if err := app.Primus.Room("r").Write(tc.v); err != nil {
			t.Fatalf("%s: Room.Write: %v", tc.name, err)
		}
		got := expectData(t, ctx, a, tc.v)
		checkLineTerminators(t, tc.name, tc.v, got)

		// From client b, which is not in the room.
		mustDo(t, ctx, b, map[string]any{"publish": map[string]any{"room": "r", "data": tc.v}})
		got = expectData(t, ctx, a, tc.v)
		checkLineTerminators(t, tc.name+" (publish)", tc.v, got)
	}
	// b received nothing but its acknowledgements.
	for _, ev := range mark(t, ctx, b) {
		t.Errorf("client b: unexpected %s", ev.Raw)
	}
}

// checkLineTerminators makes sure U+2028/U+2029 in want arrived as the
// characters themselves (client.js prints JSON.stringify of the value,
// which leaves them raw), not as escapes the client failed to decode.
func checkLineTerminators(t *testing.T, name string, want any, got json.RawMessage) {
	t.Helper()
	w, _ := json.Marshal(want) // escapes them as \u2028 and \u2029
	for _, r := range [][2]string{{"\u2028", `\u2028`}, {"\u2029", `\u2029`}} {
		if n, m := strings.Count(string(w), r[1]), strings.Count(string(got), r[0]); n != m {
			t.Errorf("%s: %d %+q expected, %d arrived in %s", name, n, r[0], m, got)
		}
	}
}

// A write to several rooms reaches a client that is in several of them
// once; except leaves a client out; a client in one of the rooms gets it
// too, and a publisher in a target room gets its own copy before the ack.
func TestMultiRoomWrite(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	app, url := startApp(t, serverapp.Options{})
	a := startClient(t, url, nodefixture.ClientOptions{}) // in a and b
	c := startClient(t, url, nodefixture.ClientOptions{}) // in b
	d := startClient(t, url, nodefixture.ClientOptions{}) // in neither
	for _, cl := range []*nodefixture.Client{a, c, d} {
		awaitOpen(t, ctx, cl)
	}
	idA := mustID(t, ctx, a)
	mustDo(t, ctx, a, map[string]any{"join": []string{"a", "b"}})
	mustDo(t, ctx, c, map[string]any{"join": "b"})
	mustDo(t, ctx, d, map[string]any{"join": "elsewhere"})

	// From the server: once each, then the markers prove no second copy
	// followed.
	if err := app.Primus.Room("a", "b").Write(map[string]any{"to": "a+b"}); err != nil {
		t.Fatal(err)
	}
	if err := app.Primus.Room("a", "b", "elsewhere").Except(idA).Write("not for a"); err != nil {
		t.Fatal(err)
	}
	if err := app.Primus.Room("a").Write("marker a"); err != nil {
		t.Fatal(err)
	}
	if err := app.Primus.Room("b").Write("marker b"); err != nil {
		t.Fatal(err)
	}
	expectData(t, ctx, a, map[string]any{"to": "a+b"})
	expectData(t, ctx, a, "marker a")
	expectData(t, ctx, a, "marker b")
	expectData(t, ctx, c, map[string]any{"to": "a+b"})
	expectData(t, ctx, c, "not for a")
	expectData(t, ctx, c, "marker b")
	expectData(t, ctx, d, "not for a")

	// From client c, a member of b: its own copy comes before its ack.
	if err := c.Write(map[string]any{"publish": map[string]any{"rooms": []string{"a", "b"}, "data": []any{"from", "c"}}, "ack": "p1"}); err != nil {
		t.Fatal(err)
	}
	expectData(t, ctx, c, []any{"from", "c"})
	expectData(t, ctx, c, json.RawMessage(`{"ack":"p1","ok":true}`))
	if err := c.Write(map[string]any{"publish": map[string]any{"rooms": []string{"b", "a"}, "except": []string{idA}, "data": "except a"}, "ack": "p2"}); err != nil {
		t.Fatal(err)
	}
	expectData(t, ctx, c, "except a")
	expectData(t, ctx, c, json.RawMessage(`{"ack":"p2","ok":true}`))
	if err := app.Primus.Room("b").Write("marker b 2"); err != nil {
		t.Fatal(err)
	}
	expectData(t, ctx, a, []any{"from", "c"})
	expectData(t, ctx, a, "marker b 2")

	// d, in neither room, saw nothing of it.
	for _, ev := range mark(t, ctx, d) {
		t.Errorf("client d: unexpected %s", ev.Raw)
	}
}
