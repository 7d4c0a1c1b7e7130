package clustertest

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/primusgo/primus/internal/redistest"
	"github.com/primusgo/primus/internal/testkit"
)

// BenchmarkClusterOpsProcesses measures cluster calls across three
// primus-server processes on one Redis, through the HTTP API of the first:
//
//   - ClusterClients10k: GET /api/rooms/big, a room of 10 000 members
//     spread evenly over the three processes (each process answers with
//     its members in pages; the caller merges and encodes all 10 000);
//   - RemoteJoin: POST /api/join of one spark connected to the third
//     process (and a /api/leave, not timed, to undo it).
//
// Each reports the median and the 99th percentile of its calls (p50-ms,
// p99-ms); run enough of them for a p99:
//
//	go test -run '^$' -bench ClusterOpsProcesses -benchtime 500x ./redisbroker/clustertest/
func BenchmarkClusterOpsProcesses(b *testing.B) {
	srv := redistest.StartServer(b)
	ch := freshChannel()
	nodes := make([]node, 3)
	for i := range nodes {
		// No heartbeats to clients: the raw members below never answer one.
		nodes[i] = startProcess(b, fmt.Sprintf("proc%d", i+1), "-redis-url", srv.URL(), "-channel", ch, "-ping-interval", "0", "-log-level", "info").node
	}
	nodeIDs(b, nodes, 3)

	const members = 10_000
	join := testkit.BuildFrame(0x81, []byte(`{"join":"big"}`), true)
	for i := range members {
		n := nodes[i%3]
		raw := testkit.RawDial(b, strings.TrimPrefix(n.url, "http://"), testkit.RawOptions{Path: "/primus"})
		if _, err := raw.Write(join); err != nil {
			b.Fatal(err)
		}
	}
	testkit.WaitFor(b, "10 000 members", func() bool {
		code, body := nodes[0].call(b, "GET", "/api/rooms", "")
		return code == 200 && strings.Contains(body, fmt.Sprintf(`"big":%d`, members))
	})

	b.Run("ClusterClients10k", func(b *testing.B) {
		lat := make([]time.Duration, 0, b.N)
		for b.Loop() {
			start := time.Now()
			code, body := nodes[0].call(b, "GET", "/api/rooms/big", "")
			lat = append(lat, time.Since(start))
			if code != 200 || !strings.Contains(body, fmt.Sprintf(`"count":%d`, members)) {
				b.Fatalf("%d %.200s", code, body)
			}
		}
		reportPercentiles(b, lat)
	})

	c := dial(b, "target", nodes[2].url)
	id := c.ID(b)
	b.Run("RemoteJoin", func(b *testing.B) {
		lat := make([]time.Duration, 0, b.N)
		joinBody := `{"ids":["` + id + `"],"rooms":["bench"]}`
		for b.Loop() {
			start := time.Now()
			code, body := nodes[0].call(b, "POST", "/api/join", joinBody)
			lat = append(lat, time.Since(start))
			if code != 200 || !strings.Contains(body, `"changed":1`) {
				b.Fatalf("%d %s", code, body)
			}
			b.StopTimer()
			if code, body := nodes[0].call(b, "POST", "/api/leave", joinBody); code != 200 {
				b.Fatalf("leave: %d %s", code, body)
			}
			b.StartTimer()
		}
		reportPercentiles(b, lat)
	})
}

func reportPercentiles(b *testing.B, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	at := func(p float64) float64 {
		return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))].Microseconds()) / 1000
	}
	b.ReportMetric(at(0.50), "p50-ms")
	b.ReportMetric(at(0.99), "p99-ms")
}
