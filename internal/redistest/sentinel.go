package redistest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Sentinel timing used by StartSentinelGroup: low so that failover tests
// finish in seconds.
const (
	DownAfter       = 1000 * time.Millisecond
	FailoverTimeout = 3000 * time.Millisecond
)

// SentinelGroup is a monitored master, one replica and three sentinels
// (quorum 2), all on loopback.
type SentinelGroup struct {
	t         testing.TB
	name      string
	servers   []*Server // the two data nodes
	sentinels []*Server
	master    *Server // who the group's last known master is
}

// StartSentinelGroup starts a master, a replica of it and three sentinels
// monitoring it under the name "mymaster", and waits until replication is up
// and every sentinel knows the replica and the two other sentinels (so a
// failover can happen). Everything is killed when the test ends.
func StartSentinelGroup(t testing.TB) *SentinelGroup {
	t.Helper()
	lookBin(t, "redis-sentinel")
	g := &SentinelGroup{t: t, name: "mymaster"}
	master := StartServer(t)
	replica := StartServer(t, WithArgs("--replicaof", "127.0.0.1", strconv.Itoa(master.Port())))
	g.servers = []*Server{master, replica}
	g.master = master
	g.waitFor("replication link up", func() bool {
		v, err := replica.Do("INFO", "replication")
		return err == nil && infoField(v, "master_link_status") == "up"
	})
	for range 3 {
		g.sentinels = append(g.sentinels, g.startSentinel(master.Port()))
	}
	g.waitFor("sentinels to discover the replica and each other", func() bool {
		for _, s := range g.sentinels {
			v, err := s.Do("SENTINEL", "MASTER", g.name)
			if err != nil {
				return false
			}
			m := pairs(v)
			if m["num-slaves"] != "1" || m["num-other-sentinels"] != "2" {
				return false
			}
		}
		return true
	})
	return g
}

func (g *SentinelGroup) startSentinel(masterPort int) *Server {
	g.t.Helper()
	s := &Server{t: g.t, bin: lookBin(g.t, "redis-sentinel"), sentinel: true, dir: g.t.TempDir()}
	s.port = FreePort(g.t)
	s.conf = filepath.Join(s.dir, "sentinel.conf")
	g.t.Cleanup(s.Kill)
	for attempt := 0; ; attempt++ {
		conf := fmt.Sprintf(`port %d
bind 127.0.0.1
daemonize no
dir %s
logfile %s
sentinel resolve-hostnames no
sentinel monitor %s 127.0.0.1 %d 2
sentinel down-after-milliseconds %s %d
sentinel failover-timeout %s %d
sentinel parallel-syncs %s 1
`, s.port, s.dir, filepath.Join(s.dir, "redis.log"),
			g.name, masterPort, g.name, DownAfter.Milliseconds(), g.name, FailoverTimeout.Milliseconds(), g.name)
		if err := os.WriteFile(s.conf, []byte(conf), 0o600); err != nil {
			g.t.Fatalf("redistest: writing sentinel config: %v", err)
		}
		err := s.startOnce()
		if err == nil {
			// Speed up the sentinel's internal clocks (Redis >= 7.0):
			// INFO polling (replica discovery, demotion of a returning
			// old master), hello messages (sentinel discovery) and the
			// election timeout all default to many seconds.
			if _, err = s.Do("SENTINEL", "DEBUG",
				"INFO-PERIOD", "300",
				"PUBLISH-PERIOD", "300",
				"PING-PERIOD", "200",
				"ASK-PERIOD", "200",
				"ELECTION-TIMEOUT", "1000",
				"SLAVE-RECONF-TIMEOUT", "2000",
				"MIN-LINK-RECONNECT-PERIOD", "500"); err != nil {
				g.t.Logf("redistest: SENTINEL DEBUG not supported, failover tests will be slower: %v", err)
			}
			return s
		}
		if attempt == 4 {
			g.t.Fatalf("redistest: starting redis-sentinel on %s: %v\n%s", s.Addr(), err, s.logTail())
		}
		s.port = FreePort(g.t)
	}
}

func (g *SentinelGroup) waitFor(what string, cond func() bool) {
	g.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			g.t.Fatalf("redistest: timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// MasterName is the name the sentinels monitor the master under.
func (g *SentinelGroup) MasterName() string { return g.name }

// SentinelAddrs are the sentinels' host:port addresses.
func (g *SentinelGroup) SentinelAddrs() []string {
	addrs := make([]string, len(g.sentinels))
	for i, s := range g.sentinels {
		addrs[i] = s.Addr()
	}
	return addrs
}

// Sentinels are the sentinel processes.
func (g *SentinelGroup) Sentinels() []*Server { return g.sentinels }

// Master is the data node the group last knew as master (initially the
// first one; updated by WaitForPromotion).
func (g *SentinelGroup) Master() *Server { return g.master }

// Servers are the two data nodes (initial master first).
func (g *SentinelGroup) Servers() []*Server { return g.servers }

// SentinelMasterAddr asks the sentinels (first that answers) for the
// current master address.
func (g *SentinelGroup) SentinelMasterAddr() (string, error) {
	var lastErr error
	for _, s := range g.sentinels {
		v, err := s.Do("SENTINEL", "GET-MASTER-ADDR-BY-NAME", g.name)
		if err != nil {
			lastErr = err
			continue
		}
		arr, _ := v.([]any)
		if len(arr) != 2 {
			lastErr = fmt.Errorf("unexpected reply %v", v)
			continue
		}
		host, _ := arr[0].(string)
		port, _ := arr[1].(string)
		return host + ":" + port, nil
	}
	return "", lastErr
}

// KillMaster SIGKILLs the current master.
func (g *SentinelGroup) KillMaster() { g.master.Kill() }

// Failover asks a sentinel for a manual failover (SENTINEL FAILOVER): the
// replica is promoted and the old master, still running, is demoted to a
// replica. It retries while the sentinel refuses (e.g. NOGOODSLAVE right
// after start-up).
func (g *SentinelGroup) Failover() {
	g.t.Helper()
	var lastErr error
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		for _, s := range g.sentinels {
			if !s.Running() {
				continue
			}
			if _, lastErr = s.Do("SENTINEL", "FAILOVER", g.name); lastErr == nil {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	g.t.Fatalf("redistest: SENTINEL FAILOVER kept failing: %v", lastErr)
}

// WaitForPromotion waits until the data node that is not the last known
// master reports role:master, makes it the known master, and returns it. Its
// return is the moment of promotion as precisely as polling every 10 ms
// allows. Call it after KillMaster or Failover, when the other node was a
// replica (after a manual failover, WaitForRole(old master, "slave") before
// the next one: the demotion of the old master lags the promotion).
func (g *SentinelGroup) WaitForPromotion(ctx context.Context) (*Server, error) {
	var other *Server
	for _, s := range g.servers {
		if s != g.master {
			other = s
		}
	}
	for {
		if v, err := other.Do("ROLE"); err == nil {
			if arr, _ := v.([]any); len(arr) > 0 && arr[0] == "master" {
				g.master = other
				return other, nil
			}
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("redistest: no promotion of %s: %w", other.Addr(), ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// WaitForRole waits until s reports role ("master" or "slave"); for a
// replica it also waits until its replication link is up.
func (g *SentinelGroup) WaitForRole(ctx context.Context, s *Server, role string) error {
	for {
		if v, err := s.Do("ROLE"); err == nil {
			if arr, _ := v.([]any); len(arr) > 0 && arr[0] == role {
				if role != "slave" {
					return nil
				}
				if info, err := s.Do("INFO", "replication"); err == nil && infoField(info, "master_link_status") == "up" {
					return nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("redistest: %s never became %s: %w", s.Addr(), role, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// WaitForSentinels waits until every running sentinel names addr as the
// master.
func (g *SentinelGroup) WaitForSentinels(ctx context.Context, addr string) error {
	for {
		ok := true
		for _, s := range g.sentinels {
			if !s.Running() {
				continue
			}
			v, err := s.Do("SENTINEL", "GET-MASTER-ADDR-BY-NAME", g.name)
			arr, _ := v.([]any)
			if err != nil || len(arr) != 2 || strings.Join([]string{fmt.Sprint(arr[0]), fmt.Sprint(arr[1])}, ":") != addr {
				ok = false
			}
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}
