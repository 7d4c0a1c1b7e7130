package redisbroker

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/redis/rueidis"

	"github.com/primusgo/primus"
	"github.com/primusgo/primus/brokertest"
	"github.com/primusgo/primus/internal/redistest"
)

var benchData = []byte(`{"user":"alice","text":"hello, world","ts":1732550000000}`)

func benchPublish(b *testing.B, mode Mode, rooms []string, parallel bool) {
	srv := redistest.StartServer(b)
	br, _ := startBroker(b, testConfig(srv.Addr(), mode, freshChannel()))
	m := &primus.Message{ID: "bench", Rooms: rooms, Data: benchData}
	ctx := context.Background()
	if err := br.Publish(ctx, m); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	if parallel {
		b.SetParallelism(8) // enough publishes in flight for rueidis to pipeline
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := br.Publish(ctx, m); err != nil {
					b.Error(err)
					return
				}
			}
		})
		return
	}
	for b.Loop() {
		if err := br.Publish(ctx, m); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkPublish(b *testing.B) {
	one, three := []string{"chat:lobby"}, []string{"chat:lobby", "chat:eu", "chat:fr"}
	b.Run("native/1room", func(b *testing.B) { benchPublish(b, Native, one, false) })
	b.Run("native/3rooms", func(b *testing.B) { benchPublish(b, Native, three, false) })
	b.Run("compat/1room", func(b *testing.B) { benchPublish(b, Compat, one, false) })
	b.Run("native/10000rooms", func(b *testing.B) { benchPublish(b, Native, roomNames(10000), false) })
	b.Run("native/1room/parallel", func(b *testing.B) { benchPublish(b, Native, one, true) })
	b.Run("compat/1room/parallel", func(b *testing.B) { benchPublish(b, Compat, one, true) })
}

// countingHandler counts deliveries and signals when it reaches want.
type countingHandler struct {
	n    atomic.Int64
	want atomic.Int64
	done chan struct{}
}

func (h *countingHandler) HandleMessage(*primus.Message, []string) {
	if h.n.Add(1) == h.want.Load() {
		close(h.done)
	}
}

// BenchmarkEndToEnd measures node-to-node throughput: concurrent publishes
// on one node until the other node received them all.
func BenchmarkEndToEnd(b *testing.B) {
	for _, mode := range []Mode{Native, Compat} {
		b.Run(mode.String(), func(b *testing.B) {
			srv := redistest.StartServer(b)
			cfg := testConfig(srv.Addr(), mode, freshChannel())
			cfg.QueueSize = 1 << 16
			pub, _ := startBroker(b, cfg)
			sub := newBroker(b, cfg)
			h := &countingHandler{done: make(chan struct{})}
			h.want.Store(-1)
			rec := brokertest.NewRecorder()
			if err := sub.Start(primus.BrokerHandlerFunc(func(m *primus.Message, skip []string) {
				if h.want.Load() < 0 {
					rec.HandleMessage(m, skip)
					return
				}
				h.HandleMessage(m, skip)
			})); err != nil {
				b.Fatal(err)
			}
			rooms := make([]string, 16)
			for i := range rooms {
				rooms[i] = fmt.Sprintf("room-%d", i)
				sub.Subscribe(rooms[i])
				brokertest.AwaitSubscribed(b, pub, rec, rooms[i])
			}
			h.want.Store(int64(b.N))
			b.ReportAllocs()
			b.ResetTimer()
			var i atomic.Int64
			b.SetParallelism(8)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					r := rooms[i.Add(1)%int64(len(rooms))]
					if err := pub.Publish(context.Background(), &primus.Message{Rooms: []string{r}, Data: benchData}); err != nil {
						b.Error(err)
						return
					}
				}
			})
			<-h.done
			b.StopTimer()
			if d := sub.Stats().Dropped; d > 0 {
				b.Fatalf("dropped %d", d)
			}
		})
	}
}

// BenchmarkMultiRoomReceive measures a node receiving a 150 KB write to
// the 10 000 rooms it hosts on the multi-room channel: the hook, the
// barrier across the workers, decoding and the hosted-room filter, up to
// the handler call.
func BenchmarkMultiRoomReceive(b *testing.B) {
	srv := redistest.StartServer(b)
	cfg := testConfig(srv.Addr(), Native, freshChannel())
	br := newBroker(b, cfg)
	delivered := make(chan int, 1)
	if err := br.Start(primus.BrokerHandlerFunc(func(m *primus.Message, skip []string) { delivered <- len(m.Rooms) })); err != nil {
		b.Fatal(err)
	}
	rooms := roomNames(10000)
	for _, r := range rooms {
		br.Subscribe(r)
	}
	data := []byte(`{"blob":"` + strings.Repeat("x", 150_000) + `"}`)
	msg := rueidis.PubSubMessage{
		Channel: MultiRoomChannel(cfg.Channel),
		Message: string(AppendEnvelope(nil, &primus.Message{ID: "m", Origin: "other", Rooms: rooms, Data: data})),
	}
	b.SetBytes(int64(len(msg.Message)))
	b.ReportAllocs()
	for b.Loop() {
		br.onMessage(msg)
		if n := <-delivered; n != len(rooms) {
			b.Fatalf("delivered to %d rooms", n)
		}
	}
}
