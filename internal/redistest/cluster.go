package redistest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// DefaultClusterNodeTimeout is the cluster-node-timeout StartCluster uses
// unless told otherwise: short, so that failover tests finish in seconds
// (a replica is promoted about node-timeout + 0.5..1 s after its master
// died).
const DefaultClusterNodeTimeout = 1000 * time.Millisecond

// ClusterConfig shapes a Cluster. Zero fields take the defaults.
type ClusterConfig struct {
	Masters     int           // default 3
	Replicas    int           // per master; default 1 (-1: none)
	NodeTimeout time.Duration // cluster-node-timeout, default DefaultClusterNodeTimeout
	Args        []string      // extra redis-server arguments for every node
}

// Cluster is a Redis Cluster of real redis-server processes on loopback:
// Masters masters with Replicas replicas each, created with
// redis-cli --cluster create. Every node also listens on its port + 10000
// (the cluster bus), so ports are picked below 55536 with that port free
// too. Every process is killed when the test ends, and only those.
type Cluster struct {
	t     testing.TB
	cfg   ClusterConfig
	nodes []*Server

	mu   sync.Mutex
	used map[int]bool // ports handed out (node and bus)
}

// ClusterShard is one shard as the cluster reports it.
type ClusterShard struct {
	Master   *Server
	Replicas []*Server
	Slots    [][2]int // inclusive ranges, ascending
}

// Owns reports whether slot is in one of the shard's ranges.
func (s ClusterShard) Owns(slot int) bool {
	for _, r := range s.Slots {
		if slot >= r[0] && slot <= r[1] {
			return true
		}
	}
	return false
}

// StartCluster starts the nodes, creates the cluster with redis-cli
// --cluster create ... --cluster-replicas N --cluster-yes and waits until
// every node reports cluster_state:ok, every node agrees on the slot map
// and every replica is in sync.
func StartCluster(t testing.TB, cfg ClusterConfig) *Cluster {
	t.Helper()
	cli := lookBin(t, "redis-cli")
	if cfg.Masters <= 0 {
		cfg.Masters = 3
	}
	switch {
	case cfg.Replicas == 0:
		cfg.Replicas = 1
	case cfg.Replicas < 0:
		cfg.Replicas = 0
	}
	if cfg.NodeTimeout <= 0 {
		cfg.NodeTimeout = DefaultClusterNodeTimeout
	}
	c := &Cluster{t: t, cfg: cfg, used: map[int]bool{}}
	args := []string{
		"--cluster-enabled", "yes",
		"--cluster-config-file", "nodes.conf",
		"--cluster-node-timeout", strconv.FormatInt(cfg.NodeTimeout.Milliseconds(), 10),
		// A replica may always take over, however long it was cut off:
		// the tests kill masters, they do not test data freshness.
		"--cluster-replica-validity-factor", "0",
		// CLUSTER SLOTS lists a replica only once its replication offset
		// is not 0, which an idle master moves with its pings to the
		// replicas: every 10 s by default.
		"--repl-ping-replica-period", "1",
	}
	args = append(args, cfg.Args...)
	start := time.Now()
	n := cfg.Masters * (1 + cfg.Replicas)
	addrs := make([]string, 0, n)
	for range n {
		s := NewServer(t, WithArgs(args...), withPortFn(c.freeClusterPort))
		s.Start()
		c.nodes = append(c.nodes, s)
		addrs = append(addrs, s.Addr())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmdArgs := append([]string{"--cluster", "create"}, addrs...)
	cmdArgs = append(cmdArgs, "--cluster-replicas", strconv.Itoa(cfg.Replicas), "--cluster-yes")
	if out, err := exec.CommandContext(ctx, cli, cmdArgs...).CombinedOutput(); err != nil {
		t.Fatalf("redistest: redis-cli --cluster create: %v\n%s", err, out)
	}
	if err := c.WaitHealthy(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("redistest: cluster of %d masters + %d replicas up in %v on %s", cfg.Masters, cfg.Masters*cfg.Replicas, time.Since(start).Round(time.Millisecond), strings.Join(addrs, ","))
	return c
}

func withPortFn(fn func(testing.TB) int) Option { return func(s *Server) { s.portFn = fn } }

// freeClusterPort returns a loopback port below 55536 that is free, and
// whose bus port (+10000) is free too, and that this cluster has not
// handed out yet.
func (c *Cluster) freeClusterPort(t testing.TB) int {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	for range 1000 {
		port := 20000 + rand.IntN(35000) // 20000..54999: bus port <= 64999
		if c.used[port] || c.used[port+10000] || port == 6379 || port+10000 == 6379 {
			continue
		}
		if !portFree(port) || !portFree(port+10000) {
			continue
		}
		c.used[port], c.used[port+10000] = true, true
		return port
	}
	t.Fatal("redistest: no free cluster port pair")
	return 0
}

func portFree(port int) bool {
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return false
	}
	_ = l.Close()
	return true
}

// NodeTimeout is the cluster-node-timeout of the nodes.
func (c *Cluster) NodeTimeout() time.Duration { return c.cfg.NodeTimeout }

// Nodes are every node, in creation order (redis-cli makes the first
// Masters of them masters).
func (c *Cluster) Nodes() []*Server { return slices.Clone(c.nodes) }

// Addrs are the host:port addresses of every node (seed addresses for a
// client).
func (c *Cluster) Addrs() []string {
	out := make([]string, len(c.nodes))
	for i, s := range c.nodes {
		out[i] = s.Addr()
	}
	return out
}

func (c *Cluster) byAddr(addr string) *Server {
	for _, s := range c.nodes {
		if s.Addr() == addr {
			return s
		}
	}
	return nil
}

// NodeID is the node's cluster id (CLUSTER MYID).
func (c *Cluster) NodeID(s *Server) string {
	c.t.Helper()
	v, err := s.Do("CLUSTER", "MYID")
	if err != nil {
		c.t.Fatalf("redistest: CLUSTER MYID on %s: %v", s.Addr(), err)
	}
	id, _ := v.(string)
	return id
}

// Shards returns the shards as the first running node that answers sees
// them, ordered by their first slot. It fails the test if none answers.
func (c *Cluster) Shards() []ClusterShard {
	c.t.Helper()
	shards, err := c.shards()
	if err != nil {
		c.t.Fatal(err)
	}
	return shards
}

func (c *Cluster) shards() ([]ClusterShard, error) {
	var lastErr error = fmt.Errorf("redistest: no cluster node running")
	for _, s := range c.nodes {
		if !s.Running() {
			continue
		}
		shards, err := c.shardsFrom(s)
		if err == nil {
			return shards, nil
		}
		lastErr = err
	}
	return nil, lastErr
}

// shardsFrom parses CLUSTER SLOTS as s sees it.
func (c *Cluster) shardsFrom(s *Server) ([]ClusterShard, error) {
	v, err := s.Do("CLUSTER", "SLOTS")
	if err != nil {
		return nil, fmt.Errorf("redistest: CLUSTER SLOTS on %s: %w", s.Addr(), err)
	}
	ranges, _ := v.([]any)
	byMaster := map[string]*ClusterShard{}
	var order []string
	for _, r := range ranges {
		e, _ := r.([]any)
		if len(e) < 3 {
			return nil, fmt.Errorf("redistest: CLUSTER SLOTS entry %v", r)
		}
		lo, _ := e[0].(int64)
		hi, _ := e[1].(int64)
		var members []*Server
		for _, n := range e[2:] {
			nd, _ := n.([]any)
			if len(nd) < 2 {
				continue
			}
			host, _ := nd[0].(string)
			port, _ := nd[1].(int64)
			if host == "" {
				host = "127.0.0.1"
			}
			if m := c.byAddr(net.JoinHostPort(host, strconv.FormatInt(port, 10))); m != nil {
				members = append(members, m)
			}
		}
		if len(members) == 0 {
			continue
		}
		key := members[0].Addr()
		sh := byMaster[key]
		if sh == nil {
			sh = &ClusterShard{Master: members[0], Replicas: members[1:]}
			byMaster[key] = sh
			order = append(order, key)
		}
		sh.Slots = append(sh.Slots, [2]int{int(lo), int(hi)})
	}
	out := make([]ClusterShard, 0, len(order))
	for _, k := range order {
		sh := byMaster[k]
		slices.SortFunc(sh.Slots, func(a, b [2]int) int { return a[0] - b[0] })
		out = append(out, *sh)
	}
	slices.SortFunc(out, func(a, b ClusterShard) int { return a.Slots[0][0] - b.Slots[0][0] })
	return out, nil
}

// ShardOf returns the shard that owns slot.
func (c *Cluster) ShardOf(slot int) ClusterShard {
	c.t.Helper()
	for _, sh := range c.Shards() {
		if sh.Owns(slot) {
			return sh
		}
	}
	c.t.Fatalf("redistest: no shard owns slot %d", slot)
	return ClusterShard{}
}

// slotMap is a node's view reduced to comparable text: "lo-hi@master" per
// range plus the replicas count.
func (c *Cluster) slotMap(s *Server) (string, error) {
	shards, err := c.shardsFrom(s)
	if err != nil {
		return "", err
	}
	var parts []string
	for _, sh := range shards {
		for _, r := range sh.Slots {
			parts = append(parts, fmt.Sprintf("%d-%d@%s/%d", r[0], r[1], sh.Master.Addr(), len(sh.Replicas)))
		}
	}
	return strings.Join(parts, " "), nil
}

// WaitHealthy waits until every running node reports cluster_state:ok,
// all running nodes report the same slot map covering every slot, and
// every running replica's link to its master is up.
func (c *Cluster) WaitHealthy(ctx context.Context) error {
	var why string
	for {
		why = c.unhealthy()
		if why == "" {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("redistest: cluster not healthy: %s", why)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (c *Cluster) unhealthy() string {
	var first string
	running := 0
	for _, s := range c.nodes {
		if s.Running() {
			running++
		}
	}
	for _, s := range c.nodes {
		if !s.Running() {
			continue
		}
		info, err := s.Do("CLUSTER", "INFO")
		if err != nil {
			return err.Error()
		}
		if infoField(info, "cluster_state") != "ok" || infoField(info, "cluster_slots_ok") != "16384" {
			return s.Addr() + ": " + strings.Join(strings.Fields(fmt.Sprint(info))[:3], " ")
		}
		shards, err := c.shardsFrom(s)
		if err != nil {
			return err.Error()
		}
		listed := 0
		for _, sh := range shards {
			listed += 1 + len(sh.Replicas)
		}
		if listed != running {
			return fmt.Sprintf("%s lists %d of the %d running nodes", s.Addr(), listed, running)
		}
		m, err := c.slotMap(s)
		if err != nil {
			return err.Error()
		}
		switch {
		case first == "":
			first = m
		case m != first:
			return fmt.Sprintf("%s sees %s, another node %s", s.Addr(), m, first)
		}
		repl, err := s.Do("INFO", "replication")
		if err != nil {
			return err.Error()
		}
		if infoField(repl, "role") == "slave" && infoField(repl, "master_link_status") != "up" {
			return s.Addr() + ": replication link down"
		}
	}
	return ""
}

// WaitForNewMaster waits until every running node names a master other
// than old for slot, and that master answers ROLE master. It returns the
// new master. Call it after killing old.
func (c *Cluster) WaitForNewMaster(ctx context.Context, old *Server, slot int) (*Server, error) {
	for {
		if m := c.agreedMaster(slot); m != nil && m != old {
			if v, err := m.Do("ROLE"); err == nil {
				if arr, _ := v.([]any); len(arr) > 0 && arr[0] == "master" {
					return m, nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("redistest: no new master for slot %d: %w", slot, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// agreedMaster is the master of slot if every running node names the same
// one, else nil.
func (c *Cluster) agreedMaster(slot int) *Server {
	var m *Server
	for _, s := range c.nodes {
		if !s.Running() {
			continue
		}
		shards, err := c.shardsFrom(s)
		if err != nil {
			return nil
		}
		var owner *Server
		for _, sh := range shards {
			if sh.Owns(slot) {
				owner = sh.Master
			}
		}
		if owner == nil || (m != nil && owner != m) {
			return nil
		}
		m = owner
	}
	return m
}

// Reshard moves n slots from one master to another with
// redis-cli --cluster reshard --cluster-from <id> --cluster-to <id>
// --cluster-slots n --cluster-yes (redis-cli moves the source's lowest
// slots first) and waits until every node agrees.
func (c *Cluster) Reshard(ctx context.Context, from, to *Server, n int) error {
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		return err
	}
	out, err := exec.CommandContext(ctx, cli, "--cluster", "reshard", from.Addr(),
		"--cluster-from", c.NodeID(from), "--cluster-to", c.NodeID(to),
		"--cluster-slots", strconv.Itoa(n), "--cluster-yes").CombinedOutput()
	if err != nil {
		return fmt.Errorf("redistest: redis-cli --cluster reshard: %w\n%s", err, out)
	}
	return c.WaitHealthy(ctx)
}

// KeySlot is the cluster slot of key (CRC16/XMODEM of the key, or of its
// hash tag: the part between the first "{" and the next "}" when that is
// not empty), as Redis computes it.
func KeySlot(key string) int {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			key = key[i+1 : i+1+j]
		}
	}
	var crc uint16
	for k := 0; k < len(key); k++ {
		crc ^= uint16(key[k]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return int(crc) & 16383
}

// Stop kills every node of the cluster (it is done anyway when the test
// ends).
func (c *Cluster) Stop() {
	for _, s := range c.nodes {
		s.Kill()
	}
}
