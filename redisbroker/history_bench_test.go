package redisbroker

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/primusgo/primus"
	"github.com/primusgo/primus/internal/redistest"
)

// BenchmarkHistoryRedisMemory measures what room history costs in Redis:
// count writes of a payload of size bytes (a JSON string) through
// PublishHistory to one room whose history keeps count of them, then the
// MEMORY USAGE (SAMPLES 0: every entry counted) of the room's stream and
// meta keys, and the growth of INFO memory used_memory. The measurement is
// deterministic: run it with -benchtime 1x (each iteration writes a fresh
// room and deletes it afterwards; the figures are per iteration).
//
// Reported: B/1000msgs (stream + meta per 1000 writes), B/msg, the
// overhead per write beyond the payload (envelope and stream structure)
// and beyond the stored envelope (stream structure alone), the envelope
// size, used_memory growth per 1000 writes, and the publish rate.
func BenchmarkHistoryRedisMemory(b *testing.B) {
	for _, tc := range []struct{ count, size int }{
		{1000, 100}, {1000, 1024}, {10_000, 100}, {10_000, 1024},
	} {
		b.Run(fmt.Sprintf("msgs=%d/payload=%dB", tc.count, tc.size), func(b *testing.B) {
			benchHistoryMemory(b, tc.count, tc.size)
		})
	}
}

func benchHistoryMemory(b *testing.B, count, size int) {
	srv := redistest.StartServer(b)
	cfg := testConfig(srv.Addr(), Native, freshChannel())
	cfg.CommandTimeout = 5 * time.Second
	br, _, _ := historyBroker(b, cfg)
	opts := primus.HistoryOptions{Size: count, TTL: time.Hour}
	// A JSON string of exactly size bytes, as a client's write would be.
	data := []byte(`"` + strings.Repeat("x", size-2) + `"`)
	ctx := context.Background()

	// Warm up: the scripts loaded, the client's buffers grown.
	if _, err := br.PublishHistory(ctx, &primus.Message{Rooms: []string{"warmup"}, Data: data}, opts); err != nil {
		b.Fatal(err)
	}
	ws, wm := HistoryKeys(cfg.Channel, "warmup")
	if _, err := srv.Do("DEL", ws, wm); err != nil {
		b.Fatal(err)
	}
	var streamB, metaB, usedB, envB, rate float64
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		room := "mem" + strconv.Itoa(i)
		stream, meta := HistoryKeys(cfg.Channel, room)
		// The room's first read creates its meta (and the script is loaded),
		// so that used_memory grows by the room's history alone.
		if _, err := br.Position(ctx, room); err != nil {
			b.Fatal(err)
		}
		before := usedMemory(b, srv)
		start := time.Now()
		for j := 0; j < count; j++ {
			if _, err := br.PublishHistory(ctx, &primus.Message{Rooms: []string{room}, Data: data}, opts); err != nil {
				b.Fatal(err)
			}
		}
		rate += float64(count) / time.Since(start).Seconds()
		b.StopTimer()
		after := usedMemory(b, srv)
		if n, err := srv.Do("XLEN", stream); err != nil || n.(int64) < int64(count) {
			b.Fatalf("XLEN %s = %v, %v; want at least %d", stream, n, err, count)
		}
		streamB += float64(memoryUsage(b, srv, stream))
		metaB += float64(memoryUsage(b, srv, meta))
		usedB += float64(after - before)
		envB += float64(storedEnvelopeSize(b, srv, stream))
		if _, err := srv.Do("DEL", stream, meta); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	n := float64(b.N)
	streamB, metaB, usedB, envB, rate = streamB/n, metaB/n, usedB/n, envB/n, rate/n
	perMsg := (streamB + metaB) / float64(count)
	b.ReportMetric(perMsg*1000, "B/1000msgs")
	b.ReportMetric(perMsg, "B/msg")
	b.ReportMetric(perMsg-float64(size), "overhead-B/msg")
	b.ReportMetric(perMsg-envB, "stream-overhead-B/msg")
	b.ReportMetric(envB, "envelope-B/msg")
	b.ReportMetric(usedB*1000/float64(count), "used_memory-B/1000msgs")
	b.ReportMetric(metaB, "meta-B")
	b.ReportMetric(rate, "publishes/s")
}

// memoryUsage is MEMORY USAGE key SAMPLES 0.
func memoryUsage(b *testing.B, srv *redistest.Server, key string) int64 {
	b.Helper()
	v, err := srv.Do("MEMORY", "USAGE", key, "SAMPLES", "0")
	n, ok := v.(int64)
	if err != nil || !ok {
		b.Fatalf("MEMORY USAGE %s: %v, %v", key, v, err)
	}
	return n
}

// usedMemory is INFO memory used_memory.
func usedMemory(b *testing.B, srv *redistest.Server) int64 {
	b.Helper()
	v, err := srv.Do("INFO", "memory")
	if err != nil {
		b.Fatal(err)
	}
	s, _ := v.(string)
	for line := range strings.SplitSeq(s, "\n") {
		if rest, ok := strings.CutPrefix(line, "used_memory:"); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(rest), 10, 64)
			if err != nil {
				b.Fatal(err)
			}
			return n
		}
	}
	b.Fatalf("no used_memory in INFO memory: %.200q", s)
	return 0
}

// storedEnvelopeSize is the size of the stored envelope (field "p") of the
// stream's last entry.
func storedEnvelopeSize(b *testing.B, srv *redistest.Server, stream string) int {
	b.Helper()
	v, err := srv.Do("XREVRANGE", stream, "+", "-", "COUNT", "1")
	if err != nil {
		b.Fatal(err)
	}
	// [[id, [field, value]]]
	if e, ok := v.([]any); ok && len(e) == 1 {
		if kv, ok := e[0].([]any); ok && len(kv) == 2 {
			if fv, ok := kv[1].([]any); ok && len(fv) == 2 {
				if p, ok := fv[1].(string); ok {
					return len(p)
				}
			}
		}
	}
	b.Fatalf("XREVRANGE %s: %v", stream, v)
	return 0
}
