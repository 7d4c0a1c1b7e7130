package client

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/coder/websocket"
)

// rawWrite sends text as one text frame, unencoded.
func (sc *stubConn) rawWrite(text string) {
	sc.ws.Write(context.Background(), websocket.MessageText, []byte(text))
}

// commandFrame waits for the client's next frame holding key (join,
// leave) and returns it with its ack value as JSON.
func commandFrame(t *testing.T, sc *stubConn, key string) (frame, ack string) {
	t.Helper()
	f, err := sc.next(testCtx(t), func(f string) bool { return strings.Contains(f, `"`+key+`"`) })
	if err != nil {
		t.Fatalf("waiting for a %s: %v", key, err)
	}
	var v struct{ Ack string }
	if err := json.Unmarshal([]byte(f), &v); err != nil || !strings.HasPrefix(v.Ack, ackPrefix) {
		t.Fatalf("%s frame %s", key, f)
	}
	return f, strconv.Quote(v.Ack)
}

// A server that answers the client's commands with garbage, or sends
// positioned messages with wrong types, never makes it panic or deliver a
// positioned message twice; what is not in the protocol's shape is a
// plain message.
func TestHostileRoomReplies(t *testing.T) {
	s := startStub(t, stubConfig{manualAcks: true})
	rec := newRecorder()
	var errs []error
	o := rec.options(Options{PingTimeout: -1, Reconnect: fastReconnect}, false)
	o.OnError = func(err error) { errs = append(errs, err); rec.signal() } // the reader goroutine, as Handler
	c, sc := dialStub(t, s, o)
	ctx := testCtx(t)

	join := func(reply string) error {
		res := make(chan error, 1)
		go func() { res <- c.Join(ctx, "r", Recover()) }()
		f, ack := commandFrame(t, sc, "join")
		if want := `{"join":"r","recover":true,"ack":` + ack + `}`; f != want {
			t.Fatalf("join frame %s, want %s", f, want)
		}
		sc.rawWrite(strings.ReplaceAll(reply, "ID", ack))
		return waitFor(t, res, "Join")
	}
	for _, reply := range []string{
		`{"ack":ID,"ok":true}`,
		`{"ack":ID,"ok":true,"offset":"5","epoch":"E"}`,
		`{"ack":ID,"ok":true,"offset":-1,"epoch":"E"}`,
		`{"ack":ID,"ok":true,"offset":1.5,"epoch":"E"}`,
		`{"ack":ID,"ok":true,"offset":1e3,"epoch":"E"}`,
		`{"ack":ID,"ok":true,"offset":18446744073709551616,"epoch":"E"}`,
		`{"ack":ID,"ok":true,"offset":5,"epoch":7}`,
		`{"ack":ID,"ok":true,"offset":5}`,
		`{"ack":ID,"ok":"yes","offset":5,"epoch":"E"}`,
		`{"ack":ID,"offset":5,"epoch":"E"}`,
	} {
		if err := join(reply); !errors.Is(err, ErrInvalidReply) {
			t.Errorf("reply %s: Join = %v, want ErrInvalidReply", reply, err)
		}
	}
	for _, reply := range []string{`{"ack":ID,"error":{"nested":[1]}}`, `{"ack":ID,"error":"no","ok":true}`} {
		if err := join(reply); !errors.Is(err, ErrRefused) {
			t.Errorf("reply %s: Join = %v, want ErrRefused", reply, err)
		}
	}
	if _, _, ok := c.Position("r"); ok {
		t.Fatal("a failed join left a position")
	}
	if err := join(`{"ack":ID,"ok":true,"offset":5,"epoch":"E"}`); err != nil {
		t.Fatalf("valid join: %v", err)
	}

	for _, f := range []string{
		`{"room":"r","offset":"6","epoch":"E","data":1}`,
		`{"room":"r","offset":6.5,"epoch":"E","data":2}`,
		`{"room":5,"offset":6,"epoch":"E","data":3}`,
		`{"room":"r","offset":6,"epoch":null,"data":4}`,
		`{"room":"r","offset":6,"epoch":"E"}`,
		`{"room":"r","offset":-1,"epoch":"E","data":5}`,
		`{"room":"r","offset":6,"epoch":"E","data":"six"}`, // positioned
		`{"room":"r","offset":6,"epoch":"E","data":"dup"}`, // dropped
		`{"room":"r","offset":2,"epoch":"E","data":"old"}`, // dropped
		`{"ack":"primus-go:999","ok":true}`,                // consumed: not awaited
		`{"ack":"primus-go:1","offset":{}}`,                // consumed: answered already
		`{"ack":7,"ok":true}`,                              // the application's
		`{"room":"other","offset":1,"epoch":"E","data":"x"}`,
		`{"room":"r","offset":7,"epoch":"E","data":"seven","extra":1}`,
		`[1,2]`,
		`"end"`,
	} {
		sc.rawWrite(f)
	}
	rec.waitData(t, `"end"`)
	rec.mu.Lock()
	var got []string
	for _, m := range rec.msgs {
		if m.Room != "" {
			got = append(got, m.Room+"@"+strconv.FormatUint(m.Offset, 10)+"/"+m.Epoch+":"+string(m.Data))
		} else {
			got = append(got, string(m.Data))
		}
	}
	rec.msgs = nil
	rec.mu.Unlock()
	want := []string{
		`{"room":"r","offset":"6","epoch":"E","data":1}`,
		`{"room":"r","offset":6.5,"epoch":"E","data":2}`,
		`{"room":5,"offset":6,"epoch":"E","data":3}`,
		`{"room":"r","offset":6,"epoch":null,"data":4}`,
		`{"room":"r","offset":6,"epoch":"E"}`,
		`{"room":"r","offset":-1,"epoch":"E","data":5}`,
		`r@6/E:"six"`,
		`{"ack":7,"ok":true}`,
		`{"room":"other","offset":1,"epoch":"E","data":"x"}`,
		`{"room":"r","offset":7,"epoch":"E","data":"seven","extra":1}`,
		`[1,2]`,
		`"end"`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("delivered:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if d := c.Stats().Duplicates; d != 2 {
		t.Fatalf("duplicates = %d", d)
	}

	// reconnect drops the connection and returns the rejoin on the next
	// one, which must ask for what followed offset 6 of epoch E (or
	// want).
	reconnect := func(want string) (*stubConn, string) {
		sc.ws.Close(websocket.StatusNoStatusRcvd, "")
		sc = nextConn(t, s)
		f, ack := commandFrame(t, sc, "join")
		if w := `{"join":"r","since":` + want + `,"ack":` + ack + `}`; f != w {
			t.Fatalf("rejoin frame %s, want %s", f, w)
		}
		return sc, ack
	}
	// A rejoin answered with garbage: reported, the position is kept,
	// the message of another epoch held for the answer is dropped.
	sc, ack := reconnect(`{"offset":6,"epoch":"E"}`)
	sc.rawWrite(`{"room":"r","offset":1,"epoch":"F","data":"held"}`)
	sc.rawWrite(`{"ack":` + ack + `,"ok":true,"recovered":"yes","offset":1,"epoch":"F"}`)
	sc.rawWrite(`"mark1"`)
	rec.waitData(t, `"mark1"`)
	rec.mu.Lock()
	if len(errs) != 1 || !errors.Is(errs[0], ErrInvalidReply) || len(rec.recov) != 0 || len(rec.msgs) != 1 {
		t.Fatalf("garbage rejoin answer: errors %v, recover events %v, messages %d", errs, rec.recov, len(rec.msgs))
	}
	rec.msgs = nil
	rec.mu.Unlock()

	// Not recovered, new epoch: the messages of the new epoch that came
	// before the answer follow OnRecover(r, false) (those at or before
	// the new position are dropped).
	sc, ack = reconnect(`{"offset":6,"epoch":"E"}`)
	sc.rawWrite(`{"room":"r","offset":1,"epoch":"F","data":"f1"}`)
	sc.rawWrite(`{"room":"r","offset":2,"epoch":"F","data":"f2"}`)
	sc.rawWrite(`{"ack":` + ack + `,"ok":true,"recovered":false,"offset":1,"epoch":"F"}`)
	sc.rawWrite(`{"room":"r","offset":3,"epoch":"F","data":"f3"}`)
	rec.waitData(t, `"f3"`)
	// Recovered: the replay (and a write excepting this client, 5) come
	// before OnRecover(r, true).
	sc, ack = reconnect(`{"offset":3,"epoch":"F"}`)
	sc.rawWrite(`{"room":"r","offset":4,"epoch":"F","data":"f4"}`)
	sc.rawWrite(`{"room":"r","offset":3,"epoch":"F","data":"f3 again"}`)
	sc.rawWrite(`{"ack":` + ack + `,"ok":true,"recovered":true,"offset":5,"epoch":"F"}`)
	sc.rawWrite(`{"room":"r","offset":5,"epoch":"F","data":"f5 again"}`)
	sc.rawWrite(`{"room":"r","offset":6,"epoch":"F","data":"f6"}`)
	// A new epoch in the middle of the stream: OnRecover(r, false) first.
	sc.rawWrite(`{"room":"r","offset":1,"epoch":"G","data":"g1"}`)
	rec.waitData(t, `"g1"`)
	rec.mu.Lock()
	got = got[:0]
	for _, m := range rec.msgs {
		got = append(got, strconv.FormatUint(m.Offset, 10)+"/"+m.Epoch+":"+string(m.Data))
	}
	var events []string
	for _, ev := range rec.recov {
		events = append(events, ev.room+" "+strconv.FormatBool(ev.recovered)+" after "+strconv.Itoa(ev.after))
	}
	rec.mu.Unlock()
	if w := `2/F:"f2" 3/F:"f3" 4/F:"f4" 6/F:"f6" 1/G:"g1"`; strings.Join(got, " ") != w {
		t.Fatalf("delivered %s, want %s", strings.Join(got, " "), w)
	}
	if w := "r false after 0|r true after 3|r false after 4"; strings.Join(events, "|") != w {
		t.Fatalf("OnRecover %s, want %s", strings.Join(events, "|"), w)
	}
	if off, epoch, _ := c.Position("r"); off != 1 || epoch != "G" {
		t.Fatalf("position %d %s", off, epoch)
	}

	// More messages of another epoch before a rejoin's answer than the
	// client holds: the connection is replaced.
	sc, _ = reconnect(`{"offset":1,"epoch":"G"}`)
	for i := range maxHeld + 1 {
		sc.rawWrite(`{"room":"r","offset":` + strconv.Itoa(i+1) + `,"epoch":"H","data":0}`)
	}
	reconnect(`{"offset":1,"epoch":"G"}`)

	// Leave answered with an error.
	res := make(chan error, 1)
	go func() { res <- c.Leave(ctx, "r") }()
	f, ack := commandFrame(t, sc, "leave")
	if f != `{"leave":"r","ack":`+ack+`}` {
		t.Fatalf("leave frame %s", f)
	}
	sc.rawWrite(`{"ack":` + ack + `,"error":5}`)
	if err := waitFor(t, res, "Leave"); !errors.Is(err, ErrRefused) {
		t.Fatalf("Leave = %v", err)
	}
	if _, _, ok := c.Position("r"); ok {
		t.Fatal("a room left has a position")
	}
}
