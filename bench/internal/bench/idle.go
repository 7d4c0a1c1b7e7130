package bench

import (
	"context"
	"fmt"
	"time"
)

// IdleConfig is an idle-connection run: Clients connections to one node
// that open a session (if the protocol has one), join no room and only
// answer heartbeats.
type IdleConfig struct {
	Name     string
	Stack    string
	Protocol string // the server's client protocol (ProtoPrimus, the default, or ProtoCentrifuge)
	Target   Target
	Clients  int
	// Pid is the server process whose memory is measured (0: none).
	Pid int
	// Settle is how long the connections stay idle before the measurement.
	Settle   time.Duration
	Parallel int
	Log      func(format string, args ...any)
}

// IdleResult is the server's memory before and after the connections.
type IdleResult struct {
	Scenario    string  `json:"scenario"`
	Stack       string  `json:"stack"`
	Clients     int     `json:"clients"`
	Connected   int     `json:"connected"`
	ConnectS    float64 `json:"connect_s"`
	BaseRSSKB   int64   `json:"base_rss_kb"`
	RSSKB       int64   `json:"rss_kb"`
	PeakKB      int64   `json:"peak_rss_kb"`
	PerConnB    float64 `json:"rss_bytes_per_conn"`
	PeakPerConn float64 `json:"peak_rss_bytes_per_conn"`
	CPU         float64 `json:"server_cpu_s"`
	LostConns   int64   `json:"lost_connections"`
	Pings       int64   `json:"pings"`
}

// RunIdle opens the connections, waits Settle, and measures the server's
// resident memory per connection: (RSS after - RSS before) / connections.
func RunIdle(ctx context.Context, cfg IdleConfig) (*IdleResult, error) {
	if cfg.Log == nil {
		cfg.Log = func(string, ...any) {}
	}
	if cfg.Settle <= 0 {
		cfg.Settle = 5 * time.Second
	}
	res := &IdleResult{Scenario: cfg.Name, Stack: cfg.Stack, Clients: cfg.Clients}
	res.BaseRSSKB, _ = ProcMem(cfg.Pid)
	cpu0 := ProcCPU(cfg.Pid)
	pool, err := NewPool(PoolConfig{Targets: []Target{cfg.Target}, Protocol: cfg.Protocol})
	if err != nil {
		return nil, err
	}
	defer pool.Close()
	specs := make([]ClientSpec, cfg.Clients)
	for i := range specs {
		specs[i] = ClientSpec{Room: -1}
	}
	start := time.Now()
	if err := pool.Dial(ctx, specs, cfg.Parallel); err != nil {
		return nil, fmt.Errorf("connecting %d idle clients: %w", cfg.Clients, err)
	}
	res.ConnectS = time.Since(start).Seconds()
	res.Connected = pool.Len()
	cfg.Log("%s/%s: %d idle clients connected in %.1fs", cfg.Stack, cfg.Name, res.Connected, res.ConnectS)
	select {
	case <-time.After(cfg.Settle):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	res.RSSKB, res.PeakKB = ProcMem(cfg.Pid)
	res.CPU = ProcCPU(cfg.Pid) - cpu0
	res.LostConns = pool.Lost()
	res.Pings = pool.Swap().pings
	if res.Connected > 0 && cfg.Pid > 0 {
		res.PerConnB = float64(res.RSSKB-res.BaseRSSKB) * 1024 / float64(res.Connected)
		res.PeakPerConn = float64(res.PeakKB-res.BaseRSSKB) * 1024 / float64(res.Connected)
	}
	cfg.Log("%s/%s: RSS %d -> %d KiB (peak %d): %.0f bytes per connection", cfg.Stack, cfg.Name,
		res.BaseRSSKB, res.RSSKB, res.PeakKB, res.PerConnB)
	return res, nil
}
