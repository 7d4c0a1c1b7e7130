package serverapp

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"strconv"
	"strings"
	"time"
)

// Config is the standalone server's configuration: every flag has an
// environment variable (PRIMUS_ plus the flag name in upper case with
// underscores); flags win over the environment.
type Config struct {
	Addr            string
	Pathname        string
	PingInterval    time.Duration
	MaxLength       int64
	MaxQueueBytes   int
	APIKey          string
	ShutdownTimeout time.Duration
	LogLevel        string
	PprofAddr       string // when set, net/http/pprof is served there

	Redis RedisConfig
}

// RedisConfig selects the Redis broker; all empty means the in-memory broker.
type RedisConfig struct {
	URL              string // redis:// or rediss:// URL, or host:port
	SentinelAddrs    string // comma-separated host:port list
	SentinelMaster   string
	SentinelUsername string
	SentinelPassword string
	Mode             string // native (default) or compat
	Channel          string // channel prefix, default "primus"
}

// Enabled reports whether a Redis broker is configured.
func (r RedisConfig) Enabled() bool { return r.URL != "" || r.SentinelAddrs != "" }

// ParseConfig reads flags from args and defaults from getenv.
func ParseConfig(args []string, getenv func(string) string, stderr io.Writer) (Config, error) {
	var c Config
	fs := flag.NewFlagSet("primus-server", flag.ContinueOnError)
	fs.SetOutput(stderr)
	env := func(name string) string {
		return getenv("PRIMUS_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_")))
	}
	str := func(p *string, name, def, usage string) {
		if v := env(name); v != "" {
			def = v
		}
		fs.StringVar(p, name, def, usage+" (env PRIMUS_"+strings.ToUpper(strings.ReplaceAll(name, "-", "_"))+")")
	}
	var pingInterval, maxLength, maxQueue, shutdown string
	str(&c.Addr, "addr", ":8080", "listen address")
	str(&c.Pathname, "pathname", "/primus", "Primus endpoint path")
	str(&pingInterval, "ping-interval", "30s", "heartbeat interval (0 or negative disables)")
	str(&maxLength, "max-length", "10485760", "largest incoming message in bytes")
	str(&maxQueue, "max-queue-bytes", "4194304", "per-spark send queue bound in bytes; a spark over it is ended as a slow consumer")
	str(&c.APIKey, "api-key", "", "when set, /api/* requires Authorization: Bearer <key>")
	str(&shutdown, "shutdown-timeout", "10s", "graceful shutdown deadline on SIGINT/SIGTERM")
	str(&c.LogLevel, "log-level", "info", "debug, info, warn or error")
	str(&c.PprofAddr, "pprof-addr", "", "when set, serve Go's profiler (net/http/pprof, /debug/pprof/) on this separate address, e.g. 127.0.0.1:6060; keep it private")
	str(&c.Redis.URL, "redis-url", "", "Redis URL (redis://[user:pass@]host:port/db or rediss://...) or host:port; enables the Redis broker")
	str(&c.Redis.SentinelAddrs, "sentinel-addrs", "", "comma-separated Sentinel addresses; enables the Redis broker through Sentinel")
	str(&c.Redis.SentinelMaster, "sentinel-master", "mymaster", "Sentinel master name")
	str(&c.Redis.SentinelUsername, "sentinel-username", "", "Sentinel ACL user")
	str(&c.Redis.SentinelPassword, "sentinel-password", "", "Sentinel password")
	str(&c.Redis.Mode, "redis-mode", "native", "native (per-room channels) or compat (primus-redis-rooms 0.3 wire format)")
	str(&c.Redis.Channel, "channel", "primus", "Redis channel prefix")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	var err error
	if c.PingInterval, err = time.ParseDuration(pingInterval); err != nil {
		return c, fmt.Errorf("-ping-interval: %w", err)
	}
	if c.PingInterval <= 0 {
		c.PingInterval = -1
	}
	if c.MaxLength, err = strconv.ParseInt(maxLength, 10, 64); err != nil || c.MaxLength <= 0 {
		return c, fmt.Errorf("-max-length: want a positive number of bytes, got %q", maxLength)
	}
	if c.MaxQueueBytes, err = strconv.Atoi(maxQueue); err != nil || c.MaxQueueBytes <= 0 {
		return c, fmt.Errorf("-max-queue-bytes: want a positive number of bytes, got %q", maxQueue)
	}
	if c.ShutdownTimeout, err = time.ParseDuration(shutdown); err != nil {
		return c, fmt.Errorf("-shutdown-timeout: %w", err)
	}
	if _, err := parseLevel(c.LogLevel); err != nil {
		return c, err
	}
	if c.Redis.Mode != "native" && c.Redis.Mode != "compat" {
		return c, fmt.Errorf("-redis-mode: want native or compat, got %q", c.Redis.Mode)
	}
	return c, nil
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return l, fmt.Errorf("-log-level: %w", err)
	}
	return l, nil
}

// Main runs the standalone server until ctx is cancelled (SIGINT/SIGTERM
// in cmd/primus-server), then shuts down gracefully within the deadline.
// ready, if not nil, receives the listening address.
func Main(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer, ready func(addr net.Addr)) error {
	cfg, err := ParseConfig(args, getenv, stderr)
	if err != nil {
		return err
	}
	level, _ := parseLevel(cfg.LogLevel)
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	broker, err := newBroker(cfg.Redis, log)
	if err != nil {
		return err
	}
	app, err := New(Options{
		Pathname:      cfg.Pathname,
		PingInterval:  cfg.PingInterval,
		MaxLength:     cfg.MaxLength,
		MaxQueueBytes: cfg.MaxQueueBytes,
		APIKey:        cfg.APIKey,
		Broker:        broker,
		Logger:        log,
	})
	if err != nil {
		return err
	}
	if cfg.PprofAddr != "" {
		stop, err := servePprof(cfg.PprofAddr, log)
		if err != nil {
			_ = app.Shutdown(context.Background())
			return err
		}
		defer stop()
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		_ = app.Shutdown(context.Background())
		return err
	}
	httpSrv := &http.Server{Handler: app, ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- httpSrv.Serve(ln) }()
	log.Info("primus-server listening", "addr", ln.Addr().String(), "pathname", app.Primus.Pathname(),
		"broker", brokerName(cfg.Redis), "node", app.Primus.NodeID())
	if ready != nil {
		ready(ln.Addr())
	}

	select {
	case err := <-served:
		_ = app.Shutdown(context.Background())
		return err
	case <-ctx.Done():
	}
	log.Info("primus-server shutting down", "deadline", cfg.ShutdownTimeout)
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	herr := httpSrv.Shutdown(sctx)
	perr := app.Shutdown(sctx)
	<-served
	if err := errors.Join(herr, perr); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	log.Info("primus-server stopped")
	return nil
}

// servePprof serves the profiler on its own listener, away from the public
// address; stop closes it and waits for it.
func servePprof(addr string, log *slog.Logger) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("-pprof-addr: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	log.Info("pprof listening", "addr", ln.Addr().String())
	return func() {
		_ = srv.Close()
		<-done
	}, nil
}

func brokerName(r RedisConfig) string {
	switch {
	case r.SentinelAddrs != "":
		return "redis-sentinel/" + r.Mode
	case r.URL != "":
		return "redis/" + r.Mode
	}
	return "memory"
}
