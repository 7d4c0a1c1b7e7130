package redisbroker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/primusgo/primus"
	"github.com/primusgo/primus/brokertest"
	"github.com/primusgo/primus/internal/redistest"
	"github.com/primusgo/primus/internal/testkit"
)

// waitStats polls b's stats until cond holds (at most testkit.Timeout)
// and returns them; a timeout shows the last stats.
func waitStats(t testing.TB, b *Broker, what string, cond func(Stats) bool) Stats {
	t.Helper()
	var s Stats
	if !testkit.Eventually(testkit.Timeout, func() bool { s = b.Stats(); return cond(s) }) {
		t.Fatalf("timed out waiting for %s; stats %+v", what, s)
	}
	return s
}

var markerSeq atomic.Int64

// awaitDelivery publishes fresh markers from pub to room every 20 ms,
// tolerating publish errors (Redis may be down), until rec receives one. It
// returns how long that took.
func awaitDelivery(t testing.TB, pub *Broker, rec *brokertest.Recorder, room string, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	var sent []string
	for time.Since(start) < limit {
		data := fmt.Sprintf(`{"marker":%d}`, markerSeq.Add(1))
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		if pub.Publish(ctx, &primus.Message{Rooms: []string{room}, Data: []byte(data)}) == nil {
			sent = append(sent, data)
		}
		cancel()
		arrived := testkit.Eventually(20*time.Millisecond, func() bool {
			return slices.ContainsFunc(rec.Messages(), func(m *brokertest.Received) bool {
				return slices.Contains(sent, string(m.Data))
			})
		})
		if arrived {
			return time.Since(start)
		}
	}
	t.Fatalf("no delivery on room %q within %v (publisher %+v)", room, limit, pub.Stats())
	return 0
}

func TestRedisDownAtStart(t *testing.T) {
	srv := redistest.NewServer(t) // port reserved, not started
	cfg := testConfig(srv.Addr(), Native, freshChannel())
	cfg.MaxBackoff = 0 // the default, which the 2 s promise is about
	a, recA := startBroker(t, cfg)
	a.Subscribe("r")

	err := a.Publish(context.Background(), &primus.Message{Rooms: []string{"r"}, Data: []byte(`1`)})
	if !errors.Is(err, ErrNotConnected) {
		t.Fatalf("Publish with Redis down = %v, want ErrNotConnected", err)
	}
	if s := a.Stats(); s.PublishErrors != 1 || s.Connected {
		t.Fatalf("stats with Redis down: %+v", s)
	}

	srv.Start()
	up := time.Now()
	b, _ := startBroker(t, cfg)
	took := awaitDelivery(t, b, recA, "r", 5*time.Second)
	t.Logf("delivery %v after Redis came up (broker started while it was down)", time.Since(up).Round(time.Millisecond))
	if took > 2*time.Second {
		t.Errorf("joined the cluster %v after Redis came up, want < 2s", took)
	}
	if s := a.Stats(); !s.Connected || s.ConnectErrors == 0 {
		t.Errorf("stats after joining: %+v", s)
	}
}

func TestCloseWhileRedisDown(t *testing.T) {
	srv := redistest.NewServer(t)
	b, _ := startBroker(t, testConfig(srv.Addr(), Native, freshChannel()))
	b.Subscribe("r")
	waitStats(t, b, "a failed attempt", func(s Stats) bool { return s.ConnectErrors > 0 })
	start := time.Now()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Close took %v", d)
	}
	if err := b.Publish(context.Background(), &primus.Message{Rooms: []string{"r"}, Data: []byte(`1`)}); !errors.Is(err, primus.ErrBrokerClosed) {
		t.Errorf("Publish after Close = %v", err)
	}
}

func TestRedisRestart(t *testing.T) {
	for _, mode := range []Mode{Native, Compat} {
		for _, how := range []string{"stop", "kill"} {
			t.Run(mode.String()+"/"+how, func(t *testing.T) {
				srv := redistest.StartServer(t)
				cfg := testConfig(srv.Addr(), mode, freshChannel())
				cfg.MaxBackoff = 0
				a, recA := startBroker(t, cfg)
				b, recB := startBroker(t, cfg)
				a.Subscribe("r")
				b.Subscribe("r")
				brokertest.AwaitSubscribed(t, b, recA, "r")
				brokertest.AwaitSubscribed(t, a, recB, "r")

				if how == "stop" {
					srv.Stop()
				} else {
					srv.Kill()
				}
				// Publishing fails (and is counted) while Redis is down.
				before := b.Stats().PublishErrors
				var err error
				for range 100 {
					if err = b.Publish(context.Background(), &primus.Message{Rooms: []string{"r"}, Data: []byte(`"down"`)}); err != nil {
						break
					}
					time.Sleep(10 * time.Millisecond)
				}
				if err == nil {
					t.Fatal("Publish kept succeeding with Redis down")
				}
				if b.Stats().PublishErrors <= before {
					t.Error("failed publish not counted")
				}
				waitStats(t, a, "the loss to be noticed", func(s Stats) bool { return !s.Connected })

				srv.Start()
				took := awaitDelivery(t, b, recA, "r", 5*time.Second)
				t.Logf("%s: delivery resumed %v after Redis was back; a: %+v", how, took.Round(time.Millisecond), a.Stats())
				if took > 2*time.Second {
					t.Errorf("delivery resumed %v after Redis was back, want < 2s", took)
				}
				awaitDelivery(t, a, recB, "r", 5*time.Second)
				s := a.Stats()
				if s.Reconnects == 0 || s.ConnectionLosses == 0 {
					t.Errorf("reconnect not counted: %+v", s)
				}
				for _, m := range recA.Messages() {
					if string(m.Data) == `"down"` {
						t.Error("a publish that failed was delivered")
					}
				}
			})
		}
	}
}

func TestResubscribeManyRooms(t *testing.T) {
	srv := redistest.StartServer(t)
	cfg := testConfig(srv.Addr(), Native, freshChannel())
	a, recA := startBroker(t, cfg)
	b, _ := startBroker(t, cfg)
	const rooms = 10000
	for i := range rooms {
		a.Subscribe(fmt.Sprintf("room-%d", i))
	}
	waitStats(t, a, "all rooms subscribed", func(s Stats) bool { return s.SubscribedRooms == rooms })
	brokertest.AwaitSubscribed(t, b, recA, fmt.Sprintf("room-%d", rooms-1))
	if n := numsub(t, srv, RoomChannel(cfg.Channel, "room-0")); n != 1 {
		t.Fatalf("NUMSUB room-0 = %d", n)
	}

	srv.Kill()
	waitStats(t, a, "the loss", func(s Stats) bool { return !s.Connected })
	srv.Start()
	s := waitStats(t, a, "resubscription", func(s Stats) bool { return s.Connected && s.SubscribedRooms == rooms })
	t.Logf("resubscribed %d rooms in %v", s.LastResubscribeRooms, s.LastResubscribe)
	if s.LastResubscribeRooms != rooms {
		t.Errorf("LastResubscribeRooms = %d", s.LastResubscribeRooms)
	}
	if s.LastResubscribe > time.Second {
		t.Errorf("resubscribing %d rooms took %v", rooms, s.LastResubscribe)
	}
	awaitDelivery(t, b, recA, "room-4242", 5*time.Second)
}

func numsub(t testing.TB, srv *redistest.Server, channel string) int64 {
	t.Helper()
	v, err := srv.Do("PUBSUB", "NUMSUB", channel)
	if err != nil {
		t.Fatal(err)
	}
	arr, _ := v.([]any)
	if len(arr) != 2 {
		t.Fatalf("PUBSUB NUMSUB: %v", v)
	}
	n, _ := arr[1].(int64)
	return n
}

func waitNumsub(t testing.TB, srv *redistest.Server, channel string, want int64) {
	t.Helper()
	testkit.WaitFor(t, fmt.Sprintf("NUMSUB %s to become %d", channel, want), func() bool {
		return numsub(t, srv, channel) == want
	})
}

func TestLazyUnsubscribe(t *testing.T) {
	srv := redistest.StartServer(t)
	cfg := testConfig(srv.Addr(), Native, freshChannel())
	cfg.UnsubscribeDelay = 300 * time.Millisecond // on a's fake clock
	a, recA, clock := startBrokerWithClock(t, cfg)
	b, _ := startBroker(t, cfg)
	ch := RoomChannel(cfg.Channel, "r")

	a.Subscribe("r")
	brokertest.AwaitSubscribed(t, b, recA, "r")
	a.Unsubscribe("r")
	// Still subscribed during the delay, but messages are no longer delivered.
	before := len(recA.Messages())
	if err := b.Publish(context.Background(), &primus.Message{Rooms: []string{"r"}, Data: []byte(`"while leaving"`)}); err != nil {
		t.Fatal(err)
	}
	waitStats(t, a, "the message to be ignored", func(s Stats) bool { return s.Ignored == 1 })
	if len(recA.Messages()) != before {
		t.Fatal("delivered a message for a room the node left")
	}
	clock.Advance(t, cfg.UnsubscribeDelay-time.Millisecond)
	if n := numsub(t, srv, ch); n != 1 {
		t.Fatalf("unsubscribed before the delay (NUMSUB %d)", n)
	}
	clock.Advance(t, time.Millisecond)
	waitNumsub(t, srv, ch, 0)
	waitStats(t, a, "the gauges", func(s Stats) bool { return s.Rooms == 0 && s.SubscribedRooms == 0 })

	// Churn: leaving and rejoining within the delay never unsubscribes.
	a.Subscribe("r")
	brokertest.AwaitSubscribed(t, b, recA, "r")
	for range 20 {
		a.Unsubscribe("r")
		a.Subscribe("r")
	}
	clock.Advance(t, 2*cfg.UnsubscribeDelay)
	if n := numsub(t, srv, ch); n != 1 {
		t.Fatalf("NUMSUB after churn = %d", n)
	}
	awaitDelivery(t, b, recA, "r", 2*time.Second)
}

// The idle probe goes out after ProbeInterval without a message, not
// before, and never while messages flow.
func TestProbeTiming(t *testing.T) {
	srv := redistest.StartServer(t)
	cfg := testConfig(srv.Addr(), Native, freshChannel())
	cfg.ProbeInterval = 5 * time.Second // on a's fake clock
	a, recA, clock := startBrokerWithClock(t, cfg)
	b, _ := startBroker(t, cfg)
	a.Subscribe("r")
	brokertest.AwaitSubscribed(t, b, recA, "r")
	base := a.Stats().ProbesSent

	clock.Advance(t, cfg.ProbeInterval-time.Millisecond)
	if n := a.Stats().ProbesSent - base; n != 0 {
		t.Fatalf("%d probes before the interval", n)
	}
	// A message resets the idle time: no probe an interval after the start.
	awaitDelivery(t, b, recA, "r", 2*time.Second)
	clock.Advance(t, time.Millisecond)
	if n := a.Stats().ProbesSent - base; n != 0 {
		t.Fatalf("%d probes although a message just came", n)
	}
	clock.Advance(t, cfg.ProbeInterval)
	if n := a.Stats().ProbesSent - base; n != 1 {
		t.Fatalf("%d probes after an idle interval, want 1", n)
	}
	waitStats(t, a, "the probe to come back", func(s Stats) bool { return a.probeAcked.Load() == a.probeSeq.Load() })
	clock.Advance(t, cfg.ProbeTimeout+time.Millisecond)
	if s := a.Stats(); s.ProbeFailures != 0 || s.ConnectionLosses != 0 {
		t.Fatalf("a probe that came back failed: %+v", s)
	}
}

func TestSilentSubscriptionProbe(t *testing.T) {
	srv := redistest.StartServer(t)
	proxy := redistest.StartProxy(t, srv.Addr())
	ch := freshChannel()
	cfgA := testConfig(proxy.Addr(), Native, ch)
	cfgA.ProbeInterval = 300 * time.Millisecond
	cfgA.ProbeTimeout = 300 * time.Millisecond
	cfgA.Logger = testLogger(t)
	a, recA := startBroker(t, cfgA)
	b, _ := startBroker(t, testConfig(srv.Addr(), Native, ch))
	a.Subscribe("r")
	brokertest.AwaitSubscribed(t, b, recA, "r")
	waitStats(t, a, "an idle probe to succeed", func(s Stats) bool { return s.ProbesSent > 0 })

	proxy.Blackhole() // a's connections stay up but carry nothing
	took := awaitDelivery(t, b, recA, "r", 10*time.Second)
	s := a.Stats()
	t.Logf("silent subscription repaired, delivery after %v; stats %+v", took.Round(time.Millisecond), s)
	if s.ProbeFailures == 0 {
		t.Error("repaired without a probe failure")
	}
	if took > 2*time.Second {
		t.Errorf("repair took %v", took)
	}
}

// blockingHandler blocks every delivery until released.
type blockingHandler struct {
	*brokertest.Recorder
	entered chan struct{}
	release chan struct{}
	once    sync.Once
}

func (h *blockingHandler) HandleMessage(m *primus.Message, skip []string) {
	h.once.Do(func() { close(h.entered) })
	<-h.release
	h.Recorder.HandleMessage(m, skip)
}

func TestSlowHandlerDropsInsteadOfBlocking(t *testing.T) {
	srv := redistest.StartServer(t)
	cfg := testConfig(srv.Addr(), Native, freshChannel())
	cfgA := cfg
	cfgA.Workers, cfgA.QueueSize = 1, 4
	cfgA.ProbeInterval = 200 * time.Millisecond
	a := newBroker(t, cfgA)
	h := &blockingHandler{Recorder: brokertest.NewRecorder(), entered: make(chan struct{}), release: make(chan struct{})}
	if err := a.Start(h); err != nil {
		t.Fatal(err)
	}
	b, _ := startBroker(t, cfg)
	a.Subscribe("r")
	waitNumsub(t, srv, RoomChannel(cfg.Channel, "r"), 1)

	for i := range 50 {
		if err := b.Publish(context.Background(), &primus.Message{Rooms: []string{"r"}, Data: fmt.Appendf(nil, "%d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	<-h.entered
	s := waitStats(t, a, "drops", func(s Stats) bool { return s.Dropped+uint64(s.QueueDepth) >= 45 })
	// The connection itself kept reading: idle probes still come back while
	// the only worker is stuck.
	probes := s.ProbesSent
	waitStats(t, a, "probes while the worker is blocked", func(s Stats) bool { return s.ProbesSent >= probes+2 })
	if s := a.Stats(); s.ProbeFailures != 0 || !s.Connected {
		t.Fatalf("connection suffered from a blocked handler: %+v", s)
	}
	close(h.release)
	msgs := h.WaitFor(t, "queued messages", func(m []*brokertest.Received) bool { return len(m) >= 50-int(a.Stats().Dropped) })
	last := -1
	for _, m := range msgs {
		var n int
		fmt.Sscan(string(m.Data), &n)
		if n <= last {
			t.Fatalf("out of order: %d after %d", n, last)
		}
		last = n
	}
	t.Logf("delivered %d, dropped %d", len(msgs), a.Stats().Dropped)
	awaitDelivery(t, b, h.Recorder, "r", 2*time.Second)
}

func TestMalformedPayloads(t *testing.T) {
	srv := redistest.StartServer(t)
	huge := strings.Repeat("x", 70<<10)

	t.Run("native", func(t *testing.T) {
		cfg := testConfig(srv.Addr(), Native, freshChannel())
		cfg.MaxPayload = 64 << 10
		a, rec := startBroker(t, cfg)
		a.Subscribe("r")
		ch := RoomChannel(cfg.Channel, "r")
		waitNumsub(t, srv, ch, 1)
		env := func(m *primus.Message) string { return string(AppendEnvelope(nil, m)) }
		bad := []string{
			"null",
			"not json",
			`{"room":"r","data":1}`,
			"",
			"\x02" + env(&primus.Message{Rooms: []string{"r"}, Data: []byte(`1`)})[1:],
			"\x01",
			env(&primus.Message{Rooms: []string{"r"}, Data: []byte(`{bad json`)}),
			env(&primus.Message{Rooms: []string{"other"}, Data: []byte(`1`)}),
			"\x01\x00\x00\xff\xff\xff\xff\x0f1",
		}
		for _, p := range bad {
			srv.Publish(ch, p)
		}
		srv.Publish(ch, "\x01\x00\x00\x00\x00"+`"`+huge+`"`)
		// Published by "another language": no id, no origin, rooms
		// omitted (= the channel's room).
		srv.Publish(ch, "\x01\x00\x00\x00\x00"+`{"ext":true}`)
		srv.Publish(ch, env(&primus.Message{ID: "x", Origin: "other-node", Rooms: []string{"r"}, Data: []byte(`"marker"`)}))
		msgs := rec.WaitFor(t, "the marker", func(m []*brokertest.Received) bool { return len(m) >= 2 })
		if len(msgs) != 2 || string(msgs[0].Data) != `{"ext":true}` || string(msgs[1].Data) != `"marker"` {
			t.Fatalf("received %d messages, first %s", len(msgs), msgs[0].Data)
		}
		if !slicesEqual(msgs[0].Rooms, []string{"r"}) || msgs[1].Origin != "other-node" {
			t.Errorf("messages: %+v %+v", msgs[0], msgs[1])
		}
		s := a.Stats()
		if s.DecodeErrors != uint64(len(bad)) || s.Oversized != 1 || s.Received != 2 {
			t.Errorf("stats: decode errors %d (want %d), oversized %d, received %d", s.DecodeErrors, len(bad), s.Oversized, s.Received)
		}
	})

	t.Run("compat", func(t *testing.T) {
		cfg := testConfig(srv.Addr(), Compat, freshChannel())
		cfg.MaxPayload = 64 << 10
		a, rec := startBroker(t, cfg)
		a.Subscribe("foo")
		ch := cfg.Channel + ".external"
		waitStats(t, a, "connected", func(s Stats) bool { return s.Connected })
		bad := []string{"null", "not-json", `[1]`, `"s"`, `42`, `{"room":5,"data":1}`, `{"data":1}`, `{"room":null,"data":1}`, `{"room":"foo","data":[1`, "", "\x01\x00\x00\x00\x001"}
		for _, p := range bad {
			srv.Publish(ch, p)
		}
		srv.Publish(ch, `{"room":"foo"}`)                         // no data: delivers nothing (as the original)
		srv.Publish(ch, `{"room":"elsewhere","data":1}`)          // room not hosted here
		srv.Publish(ch, `{"room":"foo","data":"`+huge+`"}`)       // over MaxPayload
		srv.Publish(cfg.Channel, `{"room":"foo","data":"nodot"}`) // not under the pattern
		srv.Publish(ch, `{"room":"foo","data":null}`)
		srv.Publish(cfg.Channel+".a.b.c", `{"room":"foo","data":{"nested":[1,{"x":true}]}}`)
		srv.Publish(ch, `{"room":"foo","data":"marker"}`)
		msgs := rec.WaitFor(t, "the three deliverable messages", func(m []*brokertest.Received) bool { return len(m) >= 3 })
		var got []string
		for _, m := range msgs {
			got = append(got, string(m.Data))
		}
		// The nested one came on another channel: another worker, so it
		// may arrive before or after the others.
		want := map[string]bool{`null`: true, `{"nested":[1,{"x":true}]}`: true, `"marker"`: true}
		if len(got) != 3 || !want[got[0]] || !want[got[1]] || !want[got[2]] || got[0] == got[1] || got[1] == got[2] || got[0] == got[2] {
			t.Fatalf("received %q", got)
		}
		if msgs[0].Origin == "" || !slicesEqual(msgs[0].Rooms, []string{"foo"}) {
			t.Errorf("message: %+v", msgs[0])
		}
		s := a.Stats()
		if s.DecodeErrors != uint64(len(bad)) || s.Oversized != 1 || s.Ignored != 2 || s.Received != 3 {
			t.Errorf("stats: decode errors %d (want %d), oversized %d, ignored %d, received %d", s.DecodeErrors, len(bad), s.Oversized, s.Ignored, s.Received)
		}
	})
}

// testLogger logs to the test log.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func slicesEqual(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// A publisher on Redis cannot answer a node's probes for it: an ack for a
// probe the node never sent, or without its secret, is ignored, so a
// silent subscription is still found.
func TestProbeCannotBeForged(t *testing.T) {
	srv := redistest.StartServer(t)
	cfg := testConfig(srv.Addr(), Native, freshChannel())
	a, recA := startBroker(t, cfg)
	b, _ := startBroker(t, cfg)
	a.Subscribe("r")
	brokertest.AwaitSubscribed(t, b, recA, "r")
	ch := NodeChannel(cfg.Channel, a.NodeID())
	srv.Publish(ch, "primus-probe:18446744073709551615")
	srv.Publish(ch, a.probePrefix+"18446744073709551615") // the secret, but a probe never sent
	// Messages of one connection are handled in order: once this one is
	// delivered, the forged acks were seen.
	if err := b.Publish(context.Background(), &primus.Message{Rooms: []string{"r"}, Data: []byte(`"after"`)}); err != nil {
		t.Fatal(err)
	}
	recA.WaitFor(t, "the message after the forged acks", func(m []*brokertest.Received) bool {
		return len(m) > 0 && string(m[len(m)-1].Data) == `"after"`
	})
	if n := a.probeAcked.Load(); n > a.probeSeq.Load() {
		t.Fatalf("probeAcked = %d, but only %d probes were sent", n, a.probeSeq.Load())
	}
}
