package redisbroker

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/primusgo/primus"
	"github.com/primusgo/primus/brokertest"
	"github.com/primusgo/primus/internal/redistest"
	"github.com/primusgo/primus/internal/testkit"
)

// historyBroker starts a broker with history enabled; resyncs counts its
// resync calls.
func historyBroker(t testing.TB, cfg Config) (*Broker, *brokertest.Recorder, *atomic.Int64) {
	t.Helper()
	b := newBroker(t, cfg)
	var resyncs atomic.Int64
	if err := b.EnableHistory(func([]string) { resyncs.Add(1) }); err != nil {
		t.Fatal(err)
	}
	rec := brokertest.NewRecorder()
	if err := b.Start(rec); err != nil {
		t.Fatal(err)
	}
	return b, rec, &resyncs
}

func ctx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), testkit.Timeout)
	t.Cleanup(cancel)
	return c
}

var histOpts = primus.HistoryOptions{Size: 100, TTL: time.Minute}

func publishHistory(t testing.TB, b *Broker, room, data string, skip ...string) primus.HistoryPosition {
	t.Helper()
	pos, err := b.PublishHistory(ctx(t), &primus.Message{Rooms: []string{room}, Data: []byte(data), Skip: skip}, histOpts)
	if err != nil {
		t.Fatalf("PublishHistory: %v", err)
	}
	return pos
}

// Writes get consecutive offsets in one epoch, are stored (the stream
// keeps at least Size), reach the hosting nodes with their offset, epoch
// and rooms to skip, also the publishing node itself, and read back in
// order.
func TestHistoryPublishAndRead(t *testing.T) {
	srv := redistest.StartServer(t)
	cfg := testConfig(srv.Addr(), Native, freshChannel())
	a, recA, _ := historyBroker(t, cfg)
	b, recB, _ := historyBroker(t, cfg)
	a.Subscribe("r")
	b.Subscribe("r")
	if _, err := b.Position(ctx(t), "r"); err != nil { // waits for b's subscription
		t.Fatal(err)
	}
	pos0, err := a.Position(ctx(t), "r")
	if err != nil || pos0.Offset != 0 || !validEpoch(pos0.Epoch) {
		t.Fatalf("Position of a new room: %+v, %v", pos0, err)
	}
	for i := 1; i <= 150; i++ {
		pos := publishHistory(t, []*Broker{a, b}[i%2], "r", fmt.Sprint(i), "s")
		if pos != (primus.HistoryPosition{Offset: uint64(i), Epoch: pos0.Epoch}) {
			t.Fatalf("write %d: position %+v (epoch %s)", i, pos, pos0.Epoch)
		}
	}
	for _, rec := range []*brokertest.Recorder{recA, recB} {
		msgs := rec.WaitFor(t, "150 writes", func(m []*brokertest.Received) bool { return len(m) >= 150 })
		for i, m := range msgs {
			if m.Offset != uint64(i+1) || m.Epoch != pos0.Epoch || string(m.Data) != fmt.Sprint(i+1) ||
				len(m.Rooms) != 1 || m.Rooms[0] != "r" || len(m.Skip) != 1 || m.Skip[0] != "s" {
				t.Fatalf("message %d: %+v", i, m)
			}
		}
	}
	msgs, pos, err := b.History(ctx(t), "r", 140, 100)
	if err != nil || pos.Offset != 150 || len(msgs) != 10 {
		t.Fatalf("History since 140: %d messages, %+v, %v", len(msgs), pos, err)
	}
	for i, m := range msgs {
		if m.Offset != uint64(141+i) || string(m.Data) != fmt.Sprint(141+i) || m.Rooms[0] != "r" || m.Skip[0] != "s" || m.Epoch != pos.Epoch {
			t.Fatalf("entry %d: %+v", i, m)
		}
	}
	if msgs, _, _ := b.History(ctx(t), "r", 0, 1000); len(msgs) < 100 || msgs[len(msgs)-1].Offset != 150 {
		t.Fatalf("the stream keeps %d entries, want at least 100", len(msgs))
	}
	if msgs, _, _ := b.History(ctx(t), "r", 10, 5); len(msgs) > 5 {
		t.Fatalf("limit 5 read %d", len(msgs))
	}
	if msgs, _, _ := b.History(ctx(t), "r", ^uint64(0), 5); len(msgs) != 0 {
		t.Fatalf("since the largest offset read %d", len(msgs))
	}
	stream, meta := HistoryKeys(cfg.Channel, "r")
	if v, _ := srv.Do("TYPE", stream); v != "stream" {
		t.Fatalf("%s is a %v", stream, v)
	}
	if v, _ := srv.Do("HGET", meta, "s"); v != "150" {
		t.Fatalf("%s s = %v", meta, v)
	}
	if s := a.Stats(); s.HistoryPublished != 75 || s.HistoryReads == 0 {
		t.Fatalf("stats: %+v", s)
	}
}

// The stream expires TTL after the last write, the offset and epoch live
// on: a reader learns that writes were lost. Without the meta (Redis
// restarted without persistence) a new epoch starts at 1.
func TestHistoryExpiry(t *testing.T) {
	srv := redistest.StartServer(t)
	cfg := testConfig(srv.Addr(), Native, freshChannel())
	a, _, _ := historyBroker(t, cfg)
	opts := primus.HistoryOptions{Size: 10, TTL: 100 * time.Millisecond}
	var first primus.HistoryPosition
	for i := range 3 {
		pos, err := a.PublishHistory(ctx(t), &primus.Message{Rooms: []string{"r"}, Data: []byte(fmt.Sprint(i))}, opts)
		if err != nil {
			t.Fatal(err)
		}
		first = pos
	}
	stream, meta := HistoryKeys(cfg.Channel, "r")
	testkit.WaitFor(t, "the stream to expire", func() bool { v, _ := srv.Do("EXISTS", stream); return v == int64(0) })
	msgs, pos, err := a.History(ctx(t), "r", 0, 10)
	if err != nil || len(msgs) != 0 || pos != first {
		t.Fatalf("after expiry: %d messages, %+v (want %+v), %v", len(msgs), pos, first, err)
	}
	if ttl, _ := srv.Do("PTTL", meta); ttl.(int64) < int64(time.Hour/time.Millisecond) {
		t.Fatalf("meta TTL %v ms", ttl)
	}
	if _, err := srv.Do("DEL", meta); err != nil {
		t.Fatal(err)
	}
	pos, err = a.PublishHistory(ctx(t), &primus.Message{Rooms: []string{"r"}, Data: []byte(`"new"`)}, opts)
	if err != nil || pos.Offset != 1 || pos.Epoch == first.Epoch {
		t.Fatalf("after losing the meta: %+v, %v", pos, err)
	}
}

// What others write under the history keys never crashes a node nor
// stops writes: foreign entries are left out of reads (and counted), a
// corrupt meta starts a new epoch, a key of another type is replaced.
func TestHistoryHostileData(t *testing.T) {
	srv := redistest.StartServer(t)
	cfg := testConfig(srv.Addr(), Native, freshChannel())
	a, _, _ := historyBroker(t, cfg)
	stream, meta := HistoryKeys(cfg.Channel, "r")
	pos := publishHistory(t, a, "r", "1")
	good := func(o uint64, data string) string {
		return string(AppendEnvelope(nil, &primus.Message{Rooms: []string{"r"}, Data: []byte(data), Offset: o, Epoch: pos.Epoch}))
	}
	for _, cmd := range [][]string{
		{"HSET", meta, "s", "6"},
		{"XADD", stream, "2-0", "p", "garbage"},                                  // not an envelope
		{"XADD", stream, "3-0", "x", good(3, "3")},                               // another field
		{"XADD", stream, "4-0", "p", good(5, "4")},                               // another offset
		{"XADD", stream, "4-1", "p", good(4, "4")},                               // another ID form
		{"XADD", stream, "5-0", "p", good(5, "5"), "q", "1"},                     // two fields
		{"XADD", stream, "6-0", "p", strings.Replace(good(6, "6"), `r`, `z`, 1)}, // another room
	} {
		if _, err := srv.Do(cmd...); err != nil {
			t.Fatalf("%v: %v", cmd, err)
		}
	}
	msgs, p, err := a.History(ctx(t), "r", 0, 100)
	if err != nil || p.Offset != 6 || len(msgs) != 1 || msgs[0].Offset != 1 {
		t.Fatalf("History over foreign entries: %d messages, %+v, %v", len(msgs), p, err)
	}
	if s := a.Stats(); s.HistoryMalformed != 6 {
		t.Fatalf("malformed = %d, want 6", s.HistoryMalformed)
	}
	// A higher ID in the stream (as if the offset went back): the write
	// replaces the stream, in a new epoch.
	if _, err := srv.Do("XADD", stream, "1000-0", "p", "x"); err != nil {
		t.Fatal(err)
	}
	if p := publishHistory(t, a, "r", "7"); p.Offset != 1 || p.Epoch == pos.Epoch {
		t.Fatalf("write over a higher ID: %+v", p)
	}
	if msgs, _, _ := a.History(ctx(t), "r", 0, 100); len(msgs) != 1 || msgs[0].Offset != 1 || string(msgs[0].Data) != "7" {
		t.Fatalf("after replacing the stream: %+v", msgs)
	}
	for _, corrupt := range [][]string{
		{"HSET", meta, "s", "NaN"},
		{"HSET", meta, "e", strings.Repeat("e", 65)},
		{"HSET", meta, "e", "bad epoch"},
		{"SET", meta, "not a hash"},
		{"SET", stream, "not a stream"},
	} {
		if _, err := srv.Do(corrupt...); err != nil {
			t.Fatal(err)
		}
		p, err := a.Position(ctx(t), "r")
		if err != nil || !validEpoch(p.Epoch) {
			t.Fatalf("Position after %v: %+v, %v", corrupt, p, err)
		}
		if _, _, err := a.History(ctx(t), "r", 0, 10); err != nil {
			t.Fatalf("History after %v: %v", corrupt, err)
		}
		w := publishHistory(t, a, "r", "8")
		if w.Offset == 0 || !validEpoch(w.Epoch) {
			t.Fatalf("write after %v: %+v", corrupt, w)
		}
	}
}

// Compat mode refuses history, and so a server with history on a compat
// broker fails New with a clear error.
func TestHistoryCompatRefused(t *testing.T) {
	b := newBroker(t, testConfig("127.0.0.1:1", Compat, freshChannel()))
	if err := b.EnableHistory(func([]string) {}); !errors.Is(err, ErrHistoryCompat) {
		t.Fatalf("EnableHistory in compat mode: %v", err)
	}
	_, err := primus.New(primus.Config{Broker: b, History: func(string) primus.HistoryOptions { return histOpts }})
	if err == nil || !strings.Contains(err.Error(), "compat mode cannot keep room history") {
		t.Fatalf("primus.New: %v", err)
	}
}

// A reconnection of the Pub/Sub connection asks the server to resync
// every room; History waits until the room is subscribed again.
func TestHistoryResyncAfterReconnect(t *testing.T) {
	srv := redistest.StartServer(t)
	cfg := testConfig(srv.Addr(), Native, freshChannel())
	a, recA, resyncs := historyBroker(t, cfg)
	b, _, _ := historyBroker(t, cfg)
	a.Subscribe("r")
	brokertest.AwaitSubscribed(t, b, recA, "r")
	if _, err := srv.Do("CLIENT", "KILL", "TYPE", "pubsub"); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, "a resync", func() bool { return resyncs.Load() > 0 })
	// The resync comes once the rooms are live again: a write now arrives.
	publishHistory(t, b, "r", `"after"`)
	recA.WaitFor(t, "the write after the resync", func(m []*brokertest.Received) bool {
		return len(m) > 0 && string(m[len(m)-1].Data) == `"after"` && m[len(m)-1].Offset > 0
	})
}

// On a Redis Cluster the stream and meta keys share the slot of the
// room's channel, and the script publishes with SPUBLISH.
func TestHistoryCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Redis Cluster")
	}
	c := redistest.StartCluster(t, redistest.ClusterConfig{Masters: 3})
	cfg := Config{ClusterAddrs: c.Addrs(), Channel: freshChannel(), ClusterPartitions: 8,
		DialTimeout: time.Second, CommandTimeout: time.Second, UnsubscribeDelay: 200 * time.Millisecond, MaxBackoff: 500 * time.Millisecond}
	a, recA, _ := historyBroker(t, cfg)
	b, _, _ := historyBroker(t, cfg)
	for _, room := range []string{"r", "s", "t{x}", "u"} {
		stream, meta := ClusterHistoryKeys(cfg.Channel, 8, room)
		ch := ClusterRoomChannel(cfg.Channel, 8, room)
		if s := redistest.KeySlot(ch); redistest.KeySlot(stream) != s || redistest.KeySlot(meta) != s {
			t.Fatalf("room %q: slots %d %d %d", room, s, redistest.KeySlot(stream), redistest.KeySlot(meta))
		}
		if k, m := b.historyKeys(room); k != stream || m != meta {
			t.Fatalf("historyKeys(%q) = %s %s", room, k, m)
		}
		a.Subscribe(room)
		testkit.WaitFor(t, "the subscription", func() bool {
			_, err := a.Position(ctx(t), room)
			return err == nil
		})
		for i := 1; i <= 3; i++ {
			if p := publishHistory(t, b, room, fmt.Sprint(i)); p.Offset != uint64(i) {
				t.Fatalf("room %q write %d: %+v", room, i, p)
			}
		}
		recA.WaitFor(t, "the writes of "+room, func(m []*brokertest.Received) bool {
			n := 0
			for _, x := range m {
				if x.Rooms[0] == room && x.Offset > 0 {
					n++
				}
			}
			return n == 3
		})
		if msgs, pos, err := a.History(ctx(t), room, 1, 10); err != nil || len(msgs) != 2 || pos.Offset != 3 {
			t.Fatalf("room %q: History %d, %+v, %v", room, len(msgs), pos, err)
		}
	}
}

// A room left and joined again within UnsubscribeDelay is still subscribed
// (lazily unsubscribed): reads of its history must not wait for a
// subscription confirmation that never comes again. (Found by the Go
// client's recovery proof: a client that reconnects within the delay
// rejoins a room its last spark just left.)
func TestHistoryRejoinWithinUnsubscribeDelay(t *testing.T) {
	srv := redistest.StartServer(t)
	cfg := testConfig(srv.Addr(), Native, freshChannel())
	cfg.UnsubscribeDelay = time.Minute
	a, _, _ := historyBroker(t, cfg)
	a.Subscribe("r")
	if _, err := a.Position(ctx(t), "r"); err != nil {
		t.Fatal(err)
	}
	a.Unsubscribe("r")
	a.Subscribe("r")
	short, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if _, err := a.Position(short, "r"); err != nil {
		t.Fatalf("Position after leaving and joining again: %v", err)
	}
}
