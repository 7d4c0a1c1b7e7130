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
