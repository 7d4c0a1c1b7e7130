package clustertest

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// wsClient is a minimal Primus client on coder/websocket: it answers
// heartbeats, runs the standalone server's room commands with acks and
// records every data frame.
type wsClient struct {
	t    testing.TB
	name string
	c    *websocket.Conn

	mu     sync.Mutex
	frames []string // data frames (JSON text), acks and primus:: excluded
	acks   map[string]string
	id     string
	notify chan struct{}
	seq    int
	closed bool
}

// dial connects to the Primus endpoint of a server at base ("http://host:port").
func dial(t testing.TB, name, base string) *wsClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	url := "ws" + strings.TrimPrefix(base, "http") + "/primus"
	c, _, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		t.Fatalf("%s: dial %s: %v", name, url, err)
	}
	c.SetReadLimit(64 << 20)
	w := &wsClient{t: t, name: name, c: c, acks: map[string]string{}, notify: make(chan struct{})}
	done := make(chan struct{})
	go w.read(done)
	t.Cleanup(func() {
		_ = c.CloseNow()
		<-done
	})
	return w
}

func (w *wsClient) read(done chan struct{}) {
	defer close(done)
	defer func() {
		w.mu.Lock()
		w.closed = true
		w.wake()
		w.mu.Unlock()
	}()
	for {
		_, b, err := w.c.Read(context.Background())
		if err != nil {
			return
		}
		s := string(b)
		if v, ok := strings.CutPrefix(s, `"primus::ping::`); ok {
			_ = w.c.Write(context.Background(), websocket.MessageText, []byte(`"primus::pong::`+v))
			continue
		}
		w.mu.Lock()
		if id, ok := strings.CutPrefix(s, `"primus::id::`); ok {
			w.id = strings.TrimSuffix(id, `"`)
		} else if ack, reply, ok := ackOf(s); ok {
			w.acks[ack] = reply
		} else {
			w.frames = append(w.frames, s)
		}
		w.wake()
		w.mu.Unlock()
	}
}

func (w *wsClient) wake() {
	close(w.notify)
	w.notify = make(chan struct{})
}

func ackOf(frame string) (ack, reply string, ok bool) {
	if !strings.HasPrefix(frame, `{"ack":`) {
		return "", "", false
	}
	var r struct {
		Ack   string `json:"ack"`
		OK    bool   `json:"ok"`
		Error string `json:"error"`
	}
	if json.Unmarshal([]byte(frame), &r) != nil || r.Ack == "" {
		return "", "", false
	}
	if r.OK {
		return r.Ack, "", true
	}
	return r.Ack, "error: " + r.Error, true
}

// waitUntil waits until cond holds on the client's state (under its lock).
func (w *wsClient) waitUntil(what string, cond func() bool) {
	w.t.Helper()
	deadline := time.NewTimer(15 * time.Second)
	defer deadline.Stop()
	for {
		w.mu.Lock()
		ok, closed, ch := cond(), w.closed, w.notify
		w.mu.Unlock()
		if ok {
			return
		}
		if closed {
			w.t.Fatalf("%s: connection closed while waiting for %s", w.name, what)
		}
		select {
		case <-ch:
		case <-deadline.C:
			w.mu.Lock()
			frames := strings.Join(w.frames, " ")
			w.mu.Unlock()
			w.t.Fatalf("%s: timed out waiting for %s; frames: %.500s", w.name, what, frames)
		}
	}
}

func (w *wsClient) send(v any) {
	w.t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		w.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := w.c.Write(ctx, websocket.MessageText, b); err != nil {
		w.t.Fatalf("%s: write: %v", w.name, err)
	}
}

// do runs a room command ({"join":...}, {"publish":...}) and waits for its ack.
func (w *wsClient) do(cmd map[string]any) {
	w.t.Helper()
	w.mu.Lock()
	w.seq++
	ack := fmt.Sprintf("%s-%d", w.name, w.seq)
	w.mu.Unlock()
	msg := map[string]any{"ack": ack}
	for k, v := range cmd {
		msg[k] = v
	}
	w.send(msg)
	w.waitUntil("ack "+ack, func() bool { _, ok := w.acks[ack]; return ok })
	w.mu.Lock()
	reply := w.acks[ack]
	w.mu.Unlock()
	if reply != "" {
		w.t.Fatalf("%s: %v: %s", w.name, cmd, reply)
	}
}

func (w *wsClient) join(rooms ...string) { w.t.Helper(); w.do(map[string]any{"join": rooms}) }

// sparkID asks the server for this connection's spark id.
func (w *wsClient) sparkID() string {
	w.t.Helper()
	w.send("primus::id::")
	w.waitUntil("the spark id", func() bool { return w.id != "" })
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.id
}

// count is how many data frames equal frame.
func (w *wsClient) count(frame string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, f := range w.frames {
		if f == frame {
			n++
		}
	}
	return n
}

// waitFrame waits until a data frame equal to frame arrived.
func (w *wsClient) waitFrame(frame string) {
	w.t.Helper()
	w.waitUntil("frame "+frame, func() bool {
		for _, f := range w.frames {
			if f == frame {
				return true
			}
		}
		return false
	})
}

// has reports whether frame arrived.
func (w *wsClient) has(frame string) bool { return w.count(frame) > 0 }
