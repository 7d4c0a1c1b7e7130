package primus_test

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"sync"
	"testing"

	"github.com/primusgo/primus"
)

// recordingBroker records what the server asks of its broker.
type recordingBroker struct {
	mu         sync.Mutex
	calls      []string
	published  []*primus.Message
	handler    primus.BrokerHandler
	startErr   error
	publishErr error
}

func (b *recordingBroker) record(c string) {
	b.mu.Lock()
	b.calls = append(b.calls, c)
	b.mu.Unlock()
}

func (b *recordingBroker) Start(h primus.BrokerHandler) error {
	b.record("start")
	b.handler = h
	return b.startErr
}

func (b *recordingBroker) Publish(_ context.Context, m *primus.Message) error {
	b.mu.Lock()
	b.published = append(b.published, m)
	b.mu.Unlock()
	return b.publishErr
}

func (b *recordingBroker) Subscribe(room string)   { b.record("sub " + room) }
func (b *recordingBroker) Unsubscribe(room string) { b.record("unsub " + room) }
func (b *recordingBroker) Close() error            { b.record("close"); return nil }

func (b *recordingBroker) history() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.calls)
}

func TestBrokerSubscriptions(t *testing.T) {
	b := &recordingBroker{}
	ts := startServer(t, primus.Config{Broker: b})
	cs, ss := connectN(t, ts, 2)
	_ = ss[0].Join("a", "b")
	_ = ss[1].Join("a")
	ss[0].Leave("a") // "a" still has a member
	ss[1].Leave("a") // now it has none
	_ = ss[0].Join("a")
	cs[0].Close() // leaves "a" and "b"
	ts.nextDisconnection(t)
	got := b.history()
	want := []string{"start", "sub a", "sub b", "unsub a", "sub a"}
	if !slices.Equal(got[:5], want) {
		t.Fatalf("broker calls %v, want %v then the disconnection's", got, want)
	}
	rest := slices.Sorted(slices.Values(got[5:]))
	if !slices.Equal(rest, []string{"unsub a", "unsub b"}) {
		t.Fatalf("calls after the disconnection %v", got[5:])
	}
	if err := ts.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	if h := b.history(); h[len(h)-1] != "close" {
		t.Fatalf("Shutdown did not close the broker: %v", h)
	}
}

func TestBrokerPublishedMessage(t *testing.T) {
	b := &recordingBroker{}
	ts := startServer(t, primus.Config{Broker: b, NodeID: "me"})
	_ = ts.Room("x", "y", "x").Except("id1").Write(map[string]string{"s": "a\u2028b"})
	_ = ts.Room("x").Write(1)
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.published) != 2 {
		t.Fatalf("%d messages published, want 2", len(b.published))
	}
	m := b.published[0]
	if m.Origin != "me" || !slices.Equal(m.Rooms, []string{"x", "y"}) || !slices.Equal(m.Except, []string{"id1"}) ||
		m.ID == "" || m.ID == b.published[1].ID {
		t.Fatalf("message %+v", m)
	}
	var data map[string]string
	if err := json.Unmarshal(m.Data, &data); err != nil || data["s"] != "a\u2028b" {
		t.Fatalf("Data %s (%v)", m.Data, err)
	}
	if n := ts.Stats().Published; n != 2 {
		t.Fatalf("Published = %d", n)
	}
}

func TestBrokerPublishError(t *testing.T) {
	b := &recordingBroker{publishErr: errors.New("backend down")}
	ts := startServer(t, primus.Config{Broker: b})
	cs, ss := connectN(t, ts, 1)
	_ = ss[0].Join("r")
	err := ts.Room("r").Write("local anyway")
	if !errors.Is(err, primus.ErrPublish) || !errors.Is(err, b.publishErr) {
		t.Fatalf("Write = %v, want ErrPublish wrapping the broker's error", err)
	}
	cs[0].Expect(t, `"local anyway"`)
	if st := ts.Stats(); st.PublishErrors != 1 || st.Published != 0 {
		t.Fatalf("PublishErrors %d, Published %d", st.PublishErrors, st.Published)
	}
}

func TestBrokerStartError(t *testing.T) {
	b := &recordingBroker{startErr: errors.New("no")}
	srv, err := primus.New(primus.Config{Broker: b})
	if err == nil || !errors.Is(err, b.startErr) || srv != nil {
		t.Fatalf("New = %v, %v; want the broker's error", srv, err)
	}
}

// Messages from other nodes: external publishers (no origin, no id) are
// delivered; a node's own messages and messages for rooms without local
// members are not.
func TestBrokerIncoming(t *testing.T) {
	b := &recordingBroker{}
	ts := startServer(t, primus.Config{Broker: b, NodeID: "me"})
	cs, ss := connectN(t, ts, 2)
	_ = ss[0].Join("r")
	_ = ss[1].Join("r", "s")
	h := b.handler
	h.HandleMessage(&primus.Message{Rooms: []string{"r"}, Data: []byte(`{"external":true}`)}, nil)
	h.HandleMessage(&primus.Message{Origin: "me", Rooms: []string{"r"}, Data: []byte(`"own"`)}, nil)
	h.HandleMessage(&primus.Message{Rooms: []string{"nobody"}, Data: []byte(`"nobody"`)}, nil)
	h.HandleMessage(&primus.Message{Rooms: nil, Data: []byte(`"no rooms"`)}, nil)
	h.HandleMessage(&primus.Message{Rooms: []string{"r", "s"}, Data: []byte(`"skip s"`)}, []string{"s"})
	h.HandleMessage(&primus.Message{Rooms: []string{"r", "s"}, Except: []string{ss[0].ID()}, Data: []byte("\"raw \u2029\"")}, nil)
	_ = ts.Write("marker")
	cs[0].Expect(t, `{"external":true}`)
	cs[0].Expect(t, `"skip s"`)
	cs[0].Expect(t, `"marker"`)
	cs[1].Expect(t, `{"external":true}`)
	cs[1].Expect(t, `"raw \u2029"`)
	cs[1].Expect(t, `"marker"`)
	if n := ts.Stats().RemoteMessages; n != 4 {
		t.Errorf("RemoteMessages = %d, want 4", n)
	}
}
