package clustertest

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/primusgo/primus/internal/testkit"
)

// wsClient is a kit client, named in failure messages, that answers
// heartbeats and keeps every data frame it received: the tests count the
// copies of a write, which come from several nodes in no fixed order.
type wsClient struct {
	*testkit.Client
	t    testing.TB
	name string
	seen []string // data frames (JSON text) taken from Frames so far
}

// dial connects to the Primus endpoint of a server at base ("http://host:port").
func dial(t testing.TB, name, base string) *wsClient {
	t.Helper()
	c := testkit.Dial(t, base+"/primus", testkit.DialOptions{AutoPong: true, ReadLimit: 64 << 20})
	return &wsClient{Client: c, t: t, name: name}
}

// take moves the frames that arrived to seen, heartbeat pings left out.
func (w *wsClient) take() {
	for {
		f, ok := w.Frames.TryGet()
		if !ok {
			return
		}
		if !f.IsPing() {
			w.seen = append(w.seen, string(f.Data))
		}
	}
}

// do runs a room command ({"join":...}, {"publish":...}) and waits for its ack.
func (w *wsClient) do(cmd map[string]any) {
	w.t.Helper()
	b, err := json.Marshal(cmd)
	if err != nil {
		w.t.Fatal(err)
	}
	if err := w.Command(w.t, string(b)); err != nil {
		w.t.Fatalf("%s: %s: %v", w.name, b, err)
	}
}

func (w *wsClient) join(rooms ...string) { w.t.Helper(); w.do(map[string]any{"join": rooms}) }

// count is how many data frames equal frame.
func (w *wsClient) count(frame string) int {
	w.take()
	n := 0
	for _, f := range w.seen {
		if f == frame {
			n++
		}
	}
	return n
}

// has reports whether frame arrived.
func (w *wsClient) has(frame string) bool { return w.count(frame) > 0 }

// waitFrame waits until a data frame equal to frame arrived.
func (w *wsClient) waitFrame(frame string) {
	w.t.Helper()
	if w.has(frame) {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), testkit.Timeout)
	defer cancel()
	for {
		f, ok := w.Frames.Get(ctx)
		if !ok {
			if ctx.Err() != nil {
				w.t.Fatalf("%s: timed out waiting for frame %s; frames: %.500s", w.name, frame, strings.Join(w.seen, " "))
			}
			w.t.Fatalf("%s: connection closed while waiting for frame %s: %v", w.name, frame, w.Err())
		}
		if f.IsPing() {
			continue
		}
		w.seen = append(w.seen, string(f.Data))
		if string(f.Data) == frame {
			return
		}
	}
}
