package bench

import (
	"context"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/primusgo/primus/internal/redistest"
)

// startCentrifuge builds the Centrifuge peer (bench/centrifuge) and runs
// one node of it on a free loopback port with its own Redis; it returns
// the node's endpoint and the Redis address.
func startCentrifuge(t *testing.T) (Target, string) {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "centrifuge-server")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := buildCentrifuge(ctx, filepath.Join("..", "..", "centrifuge"), bin); err != nil {
		t.Fatal(err)
	}
	redis := redistest.StartServer(t)
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	s, err := startServer("centrifuge", dir, filepath.Join(dir, "node.log"), nil, nil, bin,
		"-addr", addr, "-redis", redis.Addr(), "-channel", centrifugePrefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.stop)
	if err := waitFor(ctx, s, 15*time.Second, func() error { return centrifugeHealthy(addr) }); err != nil {
		t.Fatal(err)
	}
	return Target{Addr: addr, Path: centrifugeDialect{}.path()}, redis.Addr()
}

// The generator's clients subscribe on a real Centrifuge node and receive
// every message once on each publish path: a publisher connection, the
// members themselves, and straight into the Redis broker's channels.
func TestCentrifugeEndToEnd(t *testing.T) {
	tg, redis := startCentrifuge(t)
	for _, path := range []string{PathWS, PathMembers, PathRedisCentrifuge} {
		t.Run(path, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			res, err := RunLoad(ctx, LoadConfig{
				Name: "test", Stack: "centrifuge", Protocol: ProtoCentrifuge, Targets: []Target{tg, tg},
				Clients: 20, Rooms: 4, Layout: "block", ClientNodes: []int{0, 1},
				Path: path, PublishNode: 1, RedisAddr: redis, Channel: centrifugePrefix, Size: 100,
				Rate: 1000, Duration: 500 * time.Millisecond, Warm: 200 * time.Millisecond,
				Log: t.Logf,
			})
			if err != nil {
				t.Fatal(err)
			}
			st := res.Steps[0]
			if st.Expected == 0 || st.Lost != 0 || st.Duplicates != 0 || st.Misrouted != 0 || st.Gaps != 0 ||
				st.Refused != 0 || st.LostConns != 0 || st.Received != st.Expected || !st.Pass {
				t.Fatalf("want every message once: %+v", st)
			}
			if st.Latency.N != st.Received || st.Latency.P50 <= 0 {
				t.Fatalf("latency %+v", st.Latency)
			}
		})
	}
	t.Run("http", func(t *testing.T) {
		_, err := RunLoad(context.Background(), LoadConfig{Protocol: ProtoCentrifuge, Targets: []Target{tg},
			Clients: 1, Rooms: 1, Path: PathHTTP, Rate: 10, Warm: -1})
		if err == nil {
			t.Fatal("the http path has no Centrifuge counterpart")
		}
	})
	t.Run("idle", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		res, err := RunIdle(ctx, IdleConfig{Protocol: ProtoCentrifuge, Target: tg, Clients: 30, Settle: 300 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		if res.Connected != 30 || res.LostConns != 0 {
			t.Fatalf("%+v", res)
		}
	})
}
