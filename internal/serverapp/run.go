package serverapp

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"time"

	"github.com/primusgo/primus/auth"
)

// Main runs the standalone server until ctx is cancelled (the first
// SIGINT/SIGTERM in cmd/primus-server), then shuts down as a lame duck:
// /readyz fails at once, clients are served for -lame-duck-delay, closed
// in batches over -lame-duck-duration, and the rest get -shutdown-timeout.
// ready, if not nil, receives the listening address. -h and -version
// print to stdout and stderr and return nil.
func Main(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer, ready func(addr net.Addr)) error {
	cfg, err := ParseFlags(args, getenv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	if cfg.Version {
		fmt.Fprintln(stdout, "primus-server", buildVersion().String())
		return nil
	}
	log := newLogger(cfg, stderr)

	opts, err := appOptions(cfg, log)
	if err != nil {
		return err
	}
	app, err := New(opts)
	if err != nil {
		return err
	}
	if opts.Verifier == nil {
		what := "join any room and publish to it"
		if opts.ClientPublishOff {
			what = "join any room"
		}
		log.Warn("running open: no -jwt-hmac-secret or -jwt-public-key, so any client may " + what)
	}
	if cfg.PprofAddr != "" {
		stop, err := servePprof(cfg.PprofAddr, log)
		if err != nil {
			_ = app.Shutdown(context.Background())
			return err
		}
		defer stop()
	}
	httpSrv, err := newHTTPServer(cfg, app)
	if err != nil {
		_ = app.Shutdown(context.Background())
		return err
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		_ = app.Shutdown(context.Background())
		return err
	}
	served := make(chan error, 1)
	go func() {
		if httpSrv.TLSConfig != nil {
			served <- httpSrv.ServeTLS(ln, "", "")
		} else {
			served <- httpSrv.Serve(ln)
		}
	}()
	log.Info("primus-server listening", "addr", ln.Addr().String(), "tls", httpSrv.TLSConfig != nil,
		"pathname", app.Primus.Pathname(), "broker", brokerName(cfg.Redis), "node", app.Primus.NodeID(),
		"version", buildVersion().String())
	if ready != nil {
		ready(ln.Addr())
	}

	select {
	case err := <-served:
		_ = app.Shutdown(context.Background())
		return err
	case <-ctx.Done():
	}
	perr := lameDuck(app, cfg, log)
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	herr := httpSrv.Shutdown(sctx)
	<-served
	if err := errors.Join(perr, herr); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	log.Info("primus-server stopped")
	return nil
}

// lameDuck takes the node out of rotation (/readyz fails), keeps serving
// for the delay, then closes its sparks spread over the duration and shuts
// the primus server down.
func lameDuck(app *App, cfg Flags, log *slog.Logger) error {
	app.draining.Store(true)
	ld := cfg.LameDuck
	log.Info("primus-server draining", "delay", ld.Delay, "spread", ld.Duration, "connections", app.Primus.Stats().Connections)
	time.Sleep(ld.Delay) // serving as usual while the balancer notices /readyz
	ctx, cancel := context.WithTimeout(context.Background(), ld.Duration+cfg.ShutdownTimeout)
	defer cancel()
	return app.Primus.Drain(ctx, ld.Duration)
}

func newLogger(cfg Flags, w io.Writer) *slog.Logger {
	level, _ := parseLevel(cfg.LogLevel)
	ho := &slog.HandlerOptions{Level: level}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, ho))
	}
	return slog.New(slog.NewTextHandler(w, ho))
}

// appOptions turns the flags into the App's options, loading keys.
func appOptions(cfg Flags, log *slog.Logger) (Options, error) {
	broker, err := newBroker(cfg.Redis, log)
	if err != nil {
		return Options{}, err
	}
	sec := cfg.Security
	opts := Options{
		Pathname:            cfg.Pathname,
		PingInterval:        cfg.PingInterval,
		MaxLength:           cfg.MaxLength,
		MaxQueueBytes:       cfg.MaxQueueBytes,
		MaxRoomsPerSpark:    cfg.MaxRoomsPerSpark,
		MaxRoomNameLength:   cfg.MaxRoomNameLength,
		Wildcards:           cfg.Wildcards,
		MaxPublishRooms:     cfg.MaxPublishRooms,
		MaxExceptIDs:        cfg.MaxExceptIDs,
		MaxConnections:      sec.MaxConns,
		MaxConnectionsPerIP: sec.MaxConnsPerIP,
		TrustForwardedFor:   sec.TrustForwardedFor,
		MessageRate:         sec.MaxMessagesPerSecond,
		MessageBurst:        sec.MessageBurst,
		AllowedOrigins:      sec.AllowedOrigins,
		ClientPublishOff:    !sec.ClientPublish,
		MaxAPIRequests:      cfg.HTTP.MaxAPIRequests,
		APIKey:              cfg.APIKey,
		NodeTTL:             cfg.NodeTTL,
		HistorySize:         cfg.History.Size,
		HistoryTTL:          cfg.History.TTL,
		HistoryRooms:        cfg.History.Rooms,
		Broker:              broker,
		Logger:              log,
	}
	switch {
	case sec.JWTHMACSecret != "":
		opts.Verifier, err = auth.New(auth.Config{HMACSecret: []byte(sec.JWTHMACSecret)})
	case sec.JWTPublicKey != "":
		var pem []byte
		if pem, err = os.ReadFile(sec.JWTPublicKey); err != nil {
			return Options{}, fmt.Errorf("-jwt-public-key: %w", err)
		}
		key, kerr := auth.ParsePublicKeyPEM(pem)
		if kerr != nil {
			return Options{}, fmt.Errorf("-jwt-public-key %s: %w", sec.JWTPublicKey, kerr)
		}
		opts.Verifier, err = auth.New(auth.Config{PublicKey: key})
	}
	if err != nil {
		return Options{}, fmt.Errorf("JWT verifier: %w", err)
	}
	return opts, nil
}

// newHTTPServer bounds what plain HTTP clients may hold (WebSocket
// connections clear these deadlines once upgraded) and loads the TLS
// certificate. It serves HTTP/1.1 only: WebSocket upgrades need it.
func newHTTPServer(cfg Flags, h http.Handler) (*http.Server, error) {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: min(10*time.Second, cfg.HTTP.ReadTimeout),
		ReadTimeout:       cfg.HTTP.ReadTimeout,
		WriteTimeout:      cfg.HTTP.WriteTimeout,
		IdleTimeout:       cfg.HTTP.IdleTimeout,
		MaxHeaderBytes:    32 << 10, // a spark keeps its upgrade headers
		Protocols:         new(http.Protocols),
	}
	srv.Protocols.SetHTTP1(true)
	if cfg.Security.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(cfg.Security.TLSCert, cfg.Security.TLSKey)
		if err != nil {
			return nil, fmt.Errorf("-tls-cert/-tls-key: %w", err)
		}
		srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	return srv, nil
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

func brokerName(r RedisFlags) string {
	switch {
	case r.ClusterAddrs != "":
		return "redis-cluster/" + r.Mode
	case r.SentinelAddrs != "":
		return "redis-sentinel/" + r.Mode
	case r.URL != "":
		return "redis/" + r.Mode
	}
	return "memory"
}
