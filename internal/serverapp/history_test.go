package serverapp

import (
	"bytes"
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/primusgo/primus"
)

var epochRE = regexp.MustCompile(`"epoch":"([0-9a-z]+)"`)

func epochOf(t *testing.T, msg string) string {
	t.Helper()
	m := epochRE.FindStringSubmatch(msg)
	if m == nil {
		t.Fatalf("no epoch in %s", msg)
	}
	return m[1]
}

// The command protocol of room history: a join with "recover" is acked
// with the room's position and makes the spark's deliveries positioned; a
// join with "since" replays what it missed before its ack; sparks that did
// not ask get plain data, byte for byte.
func TestHistoryCommands(t *testing.T) {
	_, ts := startApp(t, Options{HistorySize: 3, HistoryRooms: []string{"h*"}})
	pos, plain, pub := dial(t, ts), dial(t, ts), dial(t, ts)

	pos.send(`{"join":"h1","recover":true,"ack":1}`)
	ack := pos.next()
	epoch := epochOf(t, ack)
	if ack != `{"ack":1,"ok":true,"offset":0,"epoch":"`+epoch+`"}` {
		t.Fatalf("recover ack = %s", ack)
	}
	plain.send(`{"join":["h1","p"],"ack":2}`)
	plain.expect(`{"ack":2,"ok":true}`)

	for i, data := range []string{`{"a":"\u2028"}`, `"two"`, `3`, `[4]`} {
		pub.send(`{"publish":{"room":"h1","data":` + data + `},"ack":"w"}`)
		pub.expect(`{"ack":"w","ok":true}`)
		want := `{"room":"h1","offset":` + string(rune('1'+i)) + `,"epoch":"` + epoch + `","data":` + data + `}`
		pos.expect(want)
		plain.expect(data)
	}
	// A write to a room without history, and a multi-room write: plain.
	pub.send(`{"publish":{"rooms":["p","h1"],"data":"both"}}`)
	plain.expect(`"both"`)
	pos.expect(`{"room":"h1","offset":5,"epoch":"` + epoch + `","data":"both"}`)

	// Back from offset 2: 3, 4 and 5 are kept (size 3), replayed before the ack.
	again := dial(t, ts)
	again.send(`{"join":"h1","since":{"offset":2,"epoch":"` + epoch + `"},"ack":3}`)
	again.expect(`{"room":"h1","offset":3,"epoch":"` + epoch + `","data":3}`)
	again.expect(`{"room":"h1","offset":4,"epoch":"` + epoch + `","data":[4]}`)
	again.expect(`{"room":"h1","offset":5,"epoch":"` + epoch + `","data":"both"}`)
	again.expect(`{"ack":3,"ok":true,"recovered":true,"offset":5,"epoch":"` + epoch + `"}`)
	// From offset 1 or another epoch it is too late: recovered false.
	late := dial(t, ts)
	late.send(`{"join":"h1","since":{"offset":1,"epoch":"` + epoch + `"},"ack":4}`)
	late.expect(`{"ack":4,"ok":true,"recovered":false,"offset":5,"epoch":"` + epoch + `"}`)
	late.send(`{"join":"h1","since":{"offset":5,"epoch":"other"},"ack":5}`)
	late.expect(`{"ack":5,"ok":true,"recovered":false,"offset":5,"epoch":"` + epoch + `"}`)
	pub.send(`{"publish":{"room":"h1","data":6}}`)
	for _, c := range []*testClient{pos, again, late} {
		c.expect(`{"room":"h1","offset":6,"epoch":"` + epoch + `","data":6}`)
	}
	plain.expect(`6`)

	for _, tt := range []struct{ send, want string }{
		{`{"join":"p","recover":true,"ack":1}`, `{"ack":1,"error":"primus: the room keeps no history: \"p\""}`},
		{`{"join":["h1","h2"],"recover":true,"ack":2}`, `{"ack":2,"error":"recover and since take one room"}`},
		{`{"join":"h1","since":{"offset":-1},"ack":3}`, `{"ack":3,"error":"invalid command: since must be {\"offset\":\u003cinteger\u003e,\"epoch\":\"\u003cstring\u003e\"}"}`},
		{`{"join":"h1","since":{"offset":1.5},"ack":4}`, ``},
		{`{"join":"h1","since":{"offset":9223372036854775808},"ack":5}`, ``},
		{`{"join":"h1","since":{"epoch":"` + strings.Repeat("e", 65) + `"},"ack":6}`, ``},
		{`{"join":"h1","since":[1],"ack":7}`, ``},
		{`{"join":"h1","since":{"offset":1,"epoch":"a b"},"ack":8}`, ``},
		{`{"join":"h1","since":{"offset":1,"epoch":"\u00e9t\u00e9"},"ack":9}`, ``},
		{`{"join":"h1","recover":"yes","ack":8}`, `{"ack":8,"error":"invalid command: recover must be true or false"}`},
	} {
		c := dial(t, ts)
		c.send(tt.send)
		got := c.next()
		if tt.want == "" && strings.Contains(got, `"error":"invalid command: since must be`) {
			continue
		}
		var r struct{ Error string }
		_ = json.Unmarshal([]byte(got), &r)
		var want struct{ Error string }
		_ = json.Unmarshal([]byte(tt.want), &want)
		if r.Error != want.Error || r.Error == "" {
			t.Errorf("%s: got %s, want %s", tt.send, got, tt.want)
		}
	}
}

func TestHistoryFlags(t *testing.T) {
	none := func(string) string { return "" }
	var stderr bytes.Buffer
	c, err := ParseFlags([]string{"-history-size", "100", "-history-ttl", "1m", "-history-rooms", "chat:*, news"}, none, &stderr)
	if err != nil || c.History.Size != 100 || c.History.TTL != time.Minute || strings.Join(c.History.Rooms, "|") != "chat:*|news" {
		t.Fatalf("flags: %+v, %v", c.History, err)
	}
	env := map[string]string{"PRIMUS_HISTORY_SIZE": "7", "PRIMUS_HISTORY_TTL": "30s"}
	c, err = ParseFlags(nil, func(k string) string { return env[k] }, &stderr)
	if err != nil || c.History.Size != 7 || c.History.TTL != 30*time.Second {
		t.Fatalf("env: %+v, %v", c.History, err)
	}
	for _, args := range [][]string{
		{"-history-size", "-1"},
		{"-history-size", "100001"},
		{"-history-ttl", "1m"},
		{"-history-rooms", "a"},
		{"-history-size", "1", "-history-ttl", "-1s"},
		{"-history-size", "10", "-redis-url", "127.0.0.1:1", "-redis-mode", "compat"},
	} {
		if _, err := ParseFlags(args, none, &stderr); err == nil {
			t.Errorf("ParseFlags(%v) accepted", args)
		}
	}
	h := historyConfig(Options{HistorySize: 5, HistoryRooms: []string{"chat:*", "news"}})
	for room, want := range map[string]int{"chat:1": 5, "chat:": 5, "news": 5, "newsx": 0, "x": 0} {
		if got := h(room); got.Size != want {
			t.Errorf("history(%q) = %+v", room, got)
		}
	}
	if historyConfig(Options{}) != nil {
		t.Error("history without a size")
	}
	if got := historyConfig(Options{HistorySize: 2})("any"); got != (primus.HistoryOptions{Size: 2}) {
		t.Errorf("every room: %+v", got)
	}
}

// The history metrics are exported when history is on.
func TestHistoryMetrics(t *testing.T) {
	_, ts := startApp(t, Options{HistorySize: 10})
	c := dial(t, ts)
	c.send(`{"join":"h","since":{"offset":0,"epoch":""},"ack":1}`)
	if got := c.next(); !strings.Contains(got, `"recovered":true,"offset":0`) {
		t.Fatalf("ack = %s", got)
	}
	_, body := get(t, ts.URL+"/metrics", "")
	for _, want := range []string{"primus_history_gaps_total 0", "primus_history_rooms 1", `primus_history_recoveries_total{recovered="true"} 1`, "primus_history_resyncs_total"} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}
