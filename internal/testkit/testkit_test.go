package testkit

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/coder/websocket"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestQueue(t *testing.T) {
	q := NewQueue[int]()
	if _, ok := q.TryGet(); ok {
		t.Fatal("TryGet on an empty queue")
	}
	q.Put(1)
	q.Put(2)
	if n := q.Len(); n != 2 {
		t.Fatalf("Len = %d", n)
	}
	got := make(chan int)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), Timeout)
		defer cancel()
		for {
			v, ok := q.Get(ctx)
			if !ok {
				close(got)
				return
			}
			got <- v
		}
	}()
	q.Put(3) // while the reader may wait
	q.Finish()
	var all []int
	for v := range got {
		all = append(all, v)
	}
	if len(all) != 3 || all[0] != 1 || all[1] != 2 || all[2] != 3 {
		t.Fatalf("got %v, want [1 2 3] and the end", all)
	}
}

func TestEventually(t *testing.T) {
	n := 0
	if !Eventually(Timeout, func() bool { n++; return n == 3 }) || n != 3 {
		t.Fatalf("held after %d calls", n)
	}
	start := time.Now()
	if Eventually(20*time.Millisecond, func() bool { return false }) {
		t.Fatal("a false condition held")
	}
	if d := time.Since(start); d < 20*time.Millisecond {
		t.Fatalf("gave up after %v", d)
	}
}

// commandServer answers like the standalone server, with a data frame
// ("noise") before each reply, and pings once first.
func commandServer(t *testing.T) *httptest.Server {
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		ctx := r.Context()
		write := func(s string) { _ = c.Write(ctx, websocket.MessageText, []byte(s)) }
		write(`"primus::ping::7"`)
		for {
			_, b, err := c.Read(ctx)
			if err != nil {
				return
			}
			var cmd map[string]json.RawMessage
			switch {
			case string(b) == `"primus::pong::7"`:
				write(`"pong seen"`)
			case string(b) == `"primus::id::"`:
				write(`"noise"`)
				write(`"primus::id::abc"`)
			case json.Unmarshal(b, &cmd) == nil && cmd["ack"] != nil:
				write(`"noise"`)
				if cmd["join"] != nil {
					write(`{"ack":` + string(cmd["ack"]) + `,"ok":true}`)
				} else {
					write(`{"ack":` + string(cmd["ack"]) + `,"error":"unknown command"}`)
				}
			}
		}
	}))
	t.Cleanup(hs.Close)
	return hs
}

// ID and Command take their replies; every other frame stays for Next,
// in order, and so do the replies to acks a test chose itself.
func TestClientReplies(t *testing.T) {
	hs := commandServer(t)
	c := Dial(t, hs.URL, DialOptions{AutoPong: true})
	if f := c.Next(t); !f.IsPing() {
		t.Fatalf("first frame %s, want the ping", f)
	}
	c.Expect(t, `"pong seen"`)
	if id := c.ID(t); id != "abc" {
		t.Fatalf("ID = %q", id)
	}
	if err := c.Command(t, `{"join":"r"}`); err != nil {
		t.Fatalf("join: %v", err)
	}
	if err := c.Command(t, `{"hello":1}`); err == nil || err.Error() != "unknown command" {
		t.Fatalf("hello: %v", err)
	}
	c.Send(t, `{"join":"r","ack":1}`)
	for _, want := range []string{`"noise"`, `"noise"`, `"noise"`, `"noise"`, `{"ack":1,"ok":true}`} {
		c.Expect(t, want)
	}
	if n := c.Pings(); n != 1 {
		t.Fatalf("Pings = %d", n)
	}
	c.Close()
	if c.IsOpen() || c.Err() == nil {
		t.Fatalf("open %v, err %v after Close", c.IsOpen(), c.Err())
	}
}
