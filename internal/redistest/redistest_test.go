package redistest

import (
	"context"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestServerLifecycle(t *testing.T) {
	s := StartServer(t)
	if s.Port() == 6379 {
		t.Fatal("used 6379")
	}
	if !strings.HasPrefix(s.URL(), "redis://127.0.0.1:") {
		t.Fatalf("URL = %s", s.URL())
	}
	c := s.Client()
	if v, err := c.Do("SET", "k", "v"); err != nil || v != "OK" {
		t.Fatalf("SET: %v %v", v, err)
	}
	if v, err := c.Do("GET", "k"); err != nil || v != "v" {
		t.Fatalf("GET: %v %v", v, err)
	}
	if _, err := c.Do("NOSUCHCOMMAND"); err == nil {
		t.Fatal("want an error reply")
	}
	if n := s.Publish("ch", "x"); n != 0 {
		t.Fatalf("PUBLISH receivers = %d", n)
	}

	port := s.Port()
	s.Restart()
	if s.Port() != port || !s.Running() {
		t.Fatalf("restart moved to %d (running %v)", s.Port(), s.Running())
	}
	// --save '': nothing persisted across the restart.
	if v, err := s.Do("GET", "k"); err != nil || v != nil {
		t.Fatalf("GET after restart: %v %v", v, err)
	}
	s.Kill()
	if s.Running() {
		t.Fatal("still running after Kill")
	}
	if _, err := s.Do("PING"); err == nil {
		t.Fatal("PING succeeded after Kill")
	}
	s.Kill() // idempotent
	s.Start()
	if _, err := s.Do("PING"); err != nil {
		t.Fatalf("PING after Start: %v", err)
	}
	s.Stop()
}

func TestNewServerStartsLater(t *testing.T) {
	s := NewServer(t)
	if _, err := s.Do("PING"); err == nil {
		t.Fatal("PING succeeded before Start")
	}
	s.Start()
	if _, err := s.Do("PING"); err != nil {
		t.Fatal(err)
	}
}

func TestPassword(t *testing.T) {
	s := StartServer(t, WithPassword("sekret"))
	if _, err := s.Do("PING"); err != nil {
		t.Fatal(err)
	}
	c, err := Dial(s.Addr(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Do("PING"); err == nil || !strings.Contains(err.Error(), "NOAUTH") {
		t.Fatalf("unauthenticated PING: %v", err)
	}
	if !strings.Contains(s.URL(), ":sekret@") {
		t.Fatalf("URL = %s", s.URL())
	}
}

func TestProxyBlackhole(t *testing.T) {
	s := StartServer(t)
	p := StartProxy(t, s.Addr())
	c1, err := Dial(p.Addr(), 500*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer c1.Close()
	if v, err := c1.Do("PING"); err != nil || v != "PONG" {
		t.Fatalf("PING through proxy: %v %v", v, err)
	}
	p.Blackhole()
	if _, err := c1.Do("PING"); err == nil {
		t.Fatal("PING through a black-holed connection answered")
	}
	c2, err := Dial(p.Addr(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if v, err := c2.Do("PING"); err != nil || v != "PONG" {
		t.Fatalf("PING on a new connection: %v %v", v, err)
	}
}

func TestSentinelGroupFailover(t *testing.T) {
	t0 := time.Now()
	g := StartSentinelGroup(t)
	t.Logf("group up after %v", time.Since(t0))
	if len(g.SentinelAddrs()) != 3 || g.MasterName() != "mymaster" {
		t.Fatalf("group: %v %s", g.SentinelAddrs(), g.MasterName())
	}
	addr, err := g.SentinelMasterAddr()
	if err != nil || addr != g.Master().Addr() {
		t.Fatalf("sentinel master = %s, %v; want %s", addr, err, g.Master().Addr())
	}
	old := g.Master()
	g.Failover()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	start := time.Now()
	nm, err := g.WaitForPromotion(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("manual failover promoted %s after %v", nm.Addr(), time.Since(start))
	if nm == old {
		t.Fatal("promotion returned the old master")
	}
	if err := g.WaitForSentinels(ctx, nm.Addr()); err != nil {
		t.Fatalf("sentinels did not agree on %s: %v", nm.Addr(), err)
	}
	// The old master stays up and is demoted to a replica.
	if err := g.WaitForRole(ctx, old, "slave"); err != nil {
		t.Fatal(err)
	}
	t.Logf("old master demoted and in sync after %v", time.Since(start))

	g.KillMaster()
	start = time.Now()
	nm2, err := g.WaitForPromotion(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("kill failover promoted %s after %v", nm2.Addr(), time.Since(start))
	if nm2 != old {
		t.Fatal("expected the old master to be promoted back")
	}
}

func TestTLS(t *testing.T) {
	s := StartServer(t, WithTLS())
	if !strings.HasPrefix(s.URL(), "rediss://127.0.0.1:") || s.TLSConfig() == nil {
		t.Fatalf("URL %s, TLS config %v", s.URL(), s.TLSConfig())
	}
	if v, err := s.Do("PING"); err != nil || v != "PONG" {
		t.Fatalf("PING over TLS: %v %v", v, err)
	}
	c, err := Dial(s.Addr(), 300*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Do("PING"); err == nil {
		t.Fatal("plain-text PING answered on the TLS port")
	}
}

func TestKeySlot(t *testing.T) {
	// Values from the Redis Cluster specification and redis-cli
	// (CLUSTER KEYSLOT).
	for key, want := range map[string]int{"foo": 12182, "bar": 5061, "123456789": 12739, "{user1000}.following": 3443, "foo{}{bar}": 8363, "foo{{bar}}zap": 4015} {
		if got := KeySlot(key); got != want {
			t.Errorf("KeySlot(%q) = %d, want %d", key, got, want)
		}
	}
}

func TestCluster(t *testing.T) {
	c := StartCluster(t, ClusterConfig{})
	if len(c.Nodes()) != 6 {
		t.Fatalf("%d nodes", len(c.Nodes()))
	}
	for _, s := range c.Nodes() {
		if s.Port() >= 55536 || s.Port() == 6379 {
			t.Fatalf("port %d", s.Port())
		}
	}
	shards := c.Shards()
	if len(shards) != 3 {
		t.Fatalf("%d shards: %+v", len(shards), shards)
	}
	for _, sh := range shards {
		if len(sh.Replicas) != 1 {
			t.Fatalf("shard %v: %d replicas", sh.Slots, len(sh.Replicas))
		}
	}
	// A key's slot, as computed here, is the one Redis computes.
	for _, key := range []string{"foo", "room:{7}:x", "bar"} {
		v, err := shards[0].Master.Do("CLUSTER", "KEYSLOT", key)
		if err != nil || v != int64(KeySlot(key)) {
			t.Fatalf("CLUSTER KEYSLOT %s = %v %v, KeySlot %d", key, v, err, KeySlot(key))
		}
	}
	// SPUBLISH is answered by the owner, MOVED elsewhere.
	slot := KeySlot("ch")
	owner := c.ShardOf(slot)
	if _, err := owner.Master.Do("SPUBLISH", "ch", "x"); err != nil {
		t.Fatalf("SPUBLISH on the owner: %v", err)
	}
	other := shards[0]
	if other.Master == owner.Master {
		other = shards[1]
	}
	if _, err := other.Master.Do("SPUBLISH", "ch", "x"); err == nil || !strings.HasPrefix(err.Error(), "MOVED") {
		t.Fatalf("SPUBLISH on another master: %v", err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// Reshard: redis-cli moves the source's lowest slots.
	first := shards[0].Slots[0][0]
	if err := c.Reshard(ctx, shards[0].Master, shards[1].Master, 10); err != nil {
		t.Fatal(err)
	}
	if got := c.ShardOf(first).Master; got != shards[1].Master {
		t.Fatalf("slot %d owned by %s after resharding, want %s", first, got.Addr(), shards[1].Master.Addr())
	}

	// Kill a master: its replica takes over.
	old := shards[2].Master
	old.Kill()
	start := time.Now()
	nm, err := c.WaitForNewMaster(ctx, old, shards[2].Slots[0][0])
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("replica %s promoted %v after the master was killed (node timeout %v)", nm.Addr(), time.Since(start).Round(time.Millisecond), c.NodeTimeout())
	if nm != shards[2].Replicas[0] {
		t.Fatalf("promoted %s, want the replica %s", nm.Addr(), shards[2].Replicas[0].Addr())
	}
	// It comes back as a replica of the new master.
	old.Start()
	if err := c.WaitHealthy(ctx); err != nil {
		t.Fatal(err)
	}
	c.Stop()
	for _, s := range c.Nodes() {
		if s.Running() {
			t.Fatalf("%s still running after Stop", s.Addr())
		}
	}
}
