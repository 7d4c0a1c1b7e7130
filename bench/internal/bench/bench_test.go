package bench

import (
	"context"
	"net"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/primusgo/primus"
	"github.com/primusgo/primus/internal/serverapp"
	"github.com/primusgo/primus/redisbroker"
)

func TestPayloadRoundTrip(t *testing.T) {
	for _, size := range []int{0, 48, 100, 512} {
		p := appendPayload(nil, 12345, 987654321012, 7, 1, size)
		if size > 60 && len(p) != size {
			t.Errorf("size %d: got %d bytes: %s", size, len(p), p)
		}
		m, ok := parsePayload(p)
		if !ok || m != (message{seq: 12345, t: 987654321012, room: 7, writer: 1}) {
			t.Errorf("size %d: parsed %+v %v from %s", size, m, ok, p)
		}
	}
	for _, bad := range []string{``, `{"s":}`, `{"ack":1}`, `"primus::ping::1"`, `{"s":1,"t":2,"r":3}`, `{"s":1,"t":x,"r":3,"w":0}`} {
		if _, ok := parsePayload([]byte(bad)); ok {
			t.Errorf("parsed %q", bad)
		}
	}
}

func TestFrames(t *testing.T) {
	mask := [4]byte{1, 2, 3, 4}
	for _, n := range []int{0, 5, 125, 126, 200, 70000} {
		p := []byte(strings.Repeat("a", n))
		f := appendClientFrame(nil, opText, mask, p)
		// Unmask to turn it into a server frame and parse it back.
		h := 2
		switch {
		case n > 0xffff:
			h = 10
		case n > 125:
			h = 4
		}
		srv := append([]byte{f[0], f[1] &^ 0x80}, f[2:h]...)
		body := append([]byte(nil), f[h+4:]...)
		maskBytes(body, mask)
		srv = append(srv, body...)
		op, got, l, err := nextFrame(append(srv, 0x81))
		if err != nil || op != opText || l != len(srv) || string(got) != string(p) {
			t.Fatalf("n=%d: op %d len %d err %v", n, op, l, err)
		}
		if _, _, l, _ := nextFrame(srv[:len(srv)-1]); n > 0 && l != 0 {
			t.Fatalf("n=%d: partial frame parsed", n)
		}
	}
	if got := string(pongFor(nil, []byte(`"primus::ping::1700"`))); got != `"primus::pong::1700"` {
		t.Errorf("pong %s", got)
	}
}

// cluster starts n standalone servers in this process sharing a memory hub.
func cluster(t *testing.T, n int) []Target {
	t.Helper()
	hub := primus.NewMemoryHub()
	var targets []Target
	for range n {
		// Heartbeats every 500 ms: the clients must answer them, even on a
		// busy machine (a spark that misses one is closed at the next).
		app, err := serverapp.New(serverapp.Options{Broker: hub.NewBroker(), PingInterval: 500 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		hs := httptest.NewServer(app)
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = app.Shutdown(ctx)
			hs.Close()
		})
		tg, err := ParseTarget("ws://" + hs.Listener.Addr().String() + "/primus")
		if err != nil {
			t.Fatal(err)
		}
		targets = append(targets, tg)
	}
	return targets
}

func TestRunLoadPaths(t *testing.T) {
	targets := cluster(t, 2)
	for _, tc := range []struct {
		path   string
		layout string
		nodes  []int
		rooms  int
	}{
		{PathWS, "mod", []int{0}, 4},
		{PathHTTP, "mod", []int{0, 1}, 5},
		{PathMembers, "block", []int{0, 1}, 10},
	} {
		t.Run(tc.path, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			res, err := RunLoad(ctx, LoadConfig{
				Name: "test", Stack: "go", Targets: targets,
				Clients: 20, Rooms: tc.rooms, Layout: tc.layout, ClientNodes: tc.nodes,
				Path: tc.path, PublishNode: 1, Size: 80,
				Rate: 2000, Duration: 600 * time.Millisecond, Warm: 200 * time.Millisecond,
				Log: t.Logf,
			})
			if err != nil {
				t.Fatal(err)
			}
			st := res.Steps[0]
			if st.Expected == 0 || st.Lost != 0 || st.Duplicates != 0 || st.Misrouted != 0 || st.Gaps != 0 || st.Received != st.Expected {
				t.Fatalf("want every message once: %+v", st)
			}
			if st.Latency.N != st.Received || st.Latency.P50 <= 0 {
				t.Fatalf("latency %+v", st.Latency)
			}
		})
	}
}

func TestStepUpStopsAtBound(t *testing.T) {
	targets := cluster(t, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := RunLoad(ctx, LoadConfig{
		Name: "step", Stack: "go", Targets: targets,
		Clients: 10, Rooms: 2, Path: PathWS, PublishNode: 1,
		Rate: 500, Duration: 300 * time.Millisecond, Warm: -1,
		Step: &StepConfig{Factor: 2, Bisect: 1, MaxRate: 2000},
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Max == nil || len(res.Steps) < 3 {
		t.Fatalf("steps %d, max %v", len(res.Steps), res.Max)
	}
	if res.Steps[len(res.Steps)-1].TargetRate != 2000 {
		t.Fatalf("last step at %v, want the 2000/s bound", res.Steps[len(res.Steps)-1].TargetRate)
	}
}

func TestIdle(t *testing.T) {
	targets := cluster(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := RunIdle(ctx, IdleConfig{Target: targets[0], Clients: 50, Settle: 1200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if res.Connected != 50 || res.LostConns != 0 || res.Pings == 0 {
		t.Fatalf("%+v", res)
	}
}

func TestEnvelopeMatchesRedisbroker(t *testing.T) {
	data := appendPayload(nil, 3, 42, 7, 0, 100)
	m, err := redisbroker.DecodeEnvelope(appendEnvelope(nil, "b3", "r7", data))
	if err != nil {
		t.Fatal(err)
	}
	if m.ID != "b3" || m.Origin != benchOrigin || len(m.Rooms) != 1 || m.Rooms[0] != "r7" || len(m.Except) != 0 || string(m.Data) != string(data) {
		t.Fatalf("%+v", m)
	}
	if ch := redisbroker.RoomChannel("primus", "r7"); ch != "primus:room:r7" {
		t.Fatalf("room channel %q: the redis-native publisher builds <prefix>:room:<room>", ch)
	}
}

func TestFloorServer(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- serveFloor(ctx, ln) }()
	tg := Target{Addr: ln.Addr().String(), Path: "/"}
	res, err := RunLoad(ctx, LoadConfig{
		Name: "floor", Stack: "floor", Targets: []Target{tg, tg},
		Clients: 20, Rooms: 10, Layout: "block", ClientNodes: []int{0, 1}, Path: PathMembers,
		Rate: 1000, Duration: 300 * time.Millisecond, Warm: -1,
	})
	if err != nil {
		t.Fatal(err)
	}
	if st := res.Steps[0]; st.Lost != 0 || st.Duplicates != 0 || st.Received != st.Expected || st.Expected == 0 {
		t.Fatalf("%+v", st)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
