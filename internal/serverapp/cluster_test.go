package serverapp

import (
	"bytes"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/primusgo/primus/internal/redistest"
)

func TestRedisLocationFlags(t *testing.T) {
	var stderr bytes.Buffer
	env := map[string]string{"PRIMUS_REDIS_CLUSTER_ADDRS": "127.0.0.1:7000,127.0.0.1:7001"}
	c, err := ParseFlags(nil, func(k string) string { return env[k] }, &stderr)
	if err != nil || c.Redis.ClusterAddrs != "127.0.0.1:7000,127.0.0.1:7001" || !c.Redis.Enabled() {
		t.Fatalf("from the environment: %+v %v", c.Redis, err)
	}
	if got := brokerName(c.Redis); got != "redis-cluster/native" {
		t.Errorf("brokerName = %s", got)
	}
	for _, args := range [][]string{
		{"-redis-url", "redis://127.0.0.1:7000", "-redis-cluster-addrs", "127.0.0.1:7000"},
		{"-sentinel-addrs", "127.0.0.1:26379", "-redis-cluster-addrs", "127.0.0.1:7000"},
		{"-redis-url", "127.0.0.1:7000", "-sentinel-addrs", "127.0.0.1:26379"},
	} {
		_, err := ParseFlags(args, func(string) string { return "" }, &stderr)
		if err == nil || !strings.Contains(err.Error(), "give one of them") {
			t.Errorf("ParseFlags(%v) = %v, want a one-of error", args, err)
		}
	}
	_, err = ParseFlags([]string{"-redis-cluster-addrs", "127.0.0.1:7000", "-redis-mode", "compat"}, func(string) string { return "" }, &stderr)
	if err == nil || !strings.Contains(err.Error(), "primus-redis-rooms") {
		t.Errorf("cluster + compat: %v", err)
	}
}

// The standalone server on a Redis Cluster: /healthz names a shard that is
// down (liveness and readiness stay 200 while other shards deliver), and
// /metrics has the per-shard metrics.
func TestClusterHealthAndMetrics(t *testing.T) {
	t.Cleanup(awaitRueidisCloses) // runs last
	c := redistest.StartCluster(t, redistest.ClusterConfig{})
	m := startMain(t, "-redis-cluster-addrs", strings.Join(c.Addrs(), ","))
	base := "http://" + m.addr
	waitUntil(t, "every shard up", func() bool {
		_, body := get(t, base+"/metrics", "")
		return strings.Count(body, "primus_redis_shard_up{") == 3 && !strings.Contains(body, "} 0\nprimus_redis_shard_up") &&
			strings.Contains(body, "primus_redis_shards 3\n") && strings.Count(body, "} 1\n") >= 3 && strings.Contains(body, "primus_redis_connected 1\n")
	})
	_, body := get(t, base+"/metrics", "")
	for _, want := range []string{"primus_redis_shard_partitions{shard=", "primus_redis_shard_resubscribes_total{shard=", "primus_redis_shard_moved_slots_total{shard="} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if code, body := get(t, base+"/healthz", ""); code != 200 || !strings.Contains(body, `"status":"ok"`) {
		t.Fatalf("healthz: %d %s", code, body)
	}

	victim := c.Shards()[0]
	victim.Master.Kill()
	for _, s := range victim.Replicas {
		s.Kill()
	}
	waitUntil(t, "the shard reported down", func() bool {
		_, body := get(t, base+"/healthz", "")
		return strings.Contains(body, `"shards_down":["`+victim.Master.Addr()+`"]`)
	})
	code, body := get(t, base+"/healthz", "")
	if code != 200 || !strings.Contains(body, `"status":"degraded"`) {
		t.Errorf("healthz with a shard down: %d %s", code, body)
	}
	if code, body := get(t, base+"/readyz", ""); code != 200 {
		t.Errorf("readyz with one shard of three down: %d %s", code, body)
	}
	if _, body := get(t, base+"/metrics", ""); !strings.Contains(body, `primus_redis_shard_up{shard="`+victim.Master.Addr()+`"} 0`) {
		t.Errorf("metrics do not show the shard down")
	}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// awaitRueidisCloses waits (at most 7 s) for the goroutines rueidis's
// cluster client starts to close connections a slot-map refresh made
// redundant 5 s later, even after Close, so that the leak check at the
// end of the tests does not take them for ours.
func awaitRueidisCloses() {
	buf := make([]byte, 1<<20)
	deadline := time.Now().Add(7 * time.Second)
	for time.Now().Before(deadline) {
		n := runtime.Stack(buf, true)
		if !bytes.Contains(buf[:n], []byte("rueidis.(*clusterClient)._refresh.func2")) {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}
