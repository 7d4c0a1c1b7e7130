package primus

import (
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/primusgo/primus/internal/writer"
	"github.com/primusgo/primus/internal/ws"
)

// Server is a Primus server: an http.Handler for the Primus endpoint that
// owns the sparks connected to it and their rooms.
type Server struct {
	cfg    Config
	log    *slog.Logger
	broker Broker
	index  *roomIndex
	stats  counters

	writeStats writer.Stats

	sparkSeed maphash.Seed
	sparks    [32]sparkShard

	pool   *writer.Pool // writes every spark's queue
	limits connLimits
	wg     sync.WaitGroup // reader goroutines
	// registerMu makes registering a spark (wg.Add) and the start of a
	// shutdown mutually exclusive, so Shutdown's wg.Wait sees every spark.
	registerMu sync.Mutex
	closing    atomic.Bool
	stopBeat   chan struct{}
	beatDone   chan struct{}
	msgSeq     atomic.Uint64

	// cluster is the node protocol: membership and cluster calls.
	cluster *clusterState
	// hist is the room history machinery (nil without Config.History).
	hist *historyState
}

type sparkShard struct {
	mu     sync.RWMutex
	sparks map[string]*Spark
}

// New returns a server and starts its broker and heartbeat.
func New(cfg Config) (*Server, error) {
	cfg = cfg.withDefaults()
	if cfg.Broker == nil {
		cfg.Broker = NewMemoryBroker()
	}
	srv := &Server{
		cfg:       cfg,
		log:       cfg.Logger,
		broker:    cfg.Broker,
		index:     newRoomIndex(cfg.Broker),
		sparkSeed: maphash.MakeSeed(),
		stopBeat:  make(chan struct{}),
		beatDone:  make(chan struct{}),
	}
	srv.pool = writer.NewPool(runtime.GOMAXPROCS(0), &srv.writeStats)
	srv.limits.max, srv.limits.perIP = cfg.MaxConnections, cfg.MaxConnectionsPerIP
	for i := range srv.sparks {
		srv.sparks[i].sparks = make(map[string]*Spark)
	}
	if cfg.Wildcards {
		pb, ok := cfg.Broker.(PatternBroker)
		if !ok {
			return nil, fmt.Errorf("primus: wildcard rooms need a PatternBroker; %T is not one", cfg.Broker)
		}
		if err := pb.EnablePatterns(); err != nil {
			return nil, fmt.Errorf("primus: wildcard rooms: %w", err)
		}
		srv.index.wildcards, srv.index.pb = true, pb
	}
	var err error
	if srv.hist, err = newHistoryState(srv); err != nil {
		return nil, err
	}
	if srv.cluster, err = newClusterState(srv); err != nil {
		return nil, err
	}
	if err := srv.broker.Start(BrokerHandlerFunc(srv.deliverRemote)); err != nil {
		return nil, fmt.Errorf("primus: starting broker: %w", err)
	}
	srv.cluster.start()
	go srv.heartbeat()
	return srv, nil
}

// Pathname returns the configured pathname.
func (srv *Server) Pathname() string { return srv.cfg.Pathname }

// NodeID returns the id this server uses in broker messages.
func (srv *Server) NodeID() string { return srv.cfg.NodeID }

// Handles reports whether the request path belongs to Primus (starts with Pathname).
func (srv *Server) Handles(r *http.Request) bool {
	return strings.HasPrefix(r.URL.Path, srv.cfg.Pathname)
}

// Middleware routes requests under Pathname to the server and all others to next.
func (srv *Server) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if srv.Handles(r) {
			srv.ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// ServeHTTP serves the Primus endpoint: WebSocket upgrades on every path
// under Pathname, <Pathname>/spec, <Pathname>/primus.js, and 426 for other
// plain requests, as Primus does.
func (srv *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !srv.Handles(r) {
		http.NotFound(w, r)
		return
	}
	if ws.IsUpgrade(r) {
		srv.upgrade(w, r)
		return
	}
	srv.serveHTTPSurface(w, r)
}

func (srv *Server) upgrade(w http.ResponseWriter, r *http.Request) {
	if srv.closing.Load() {
		http.Error(w, "server is shutting down", http.StatusServiceUnavailable)
		return
	}
	if err := ws.CheckHandshake(r); err != nil {
		status, msg := http.StatusBadRequest, err.Error()
		var he *ws.HandshakeError
		if errors.As(err, &he) {
			status, msg = he.Status, he.Msg
		}
		w.Header().Set("Sec-WebSocket-Version", "13")
		http.Error(w, msg, status)
		return
	}
	if srv.cfg.CheckOrigin != nil && !srv.cfg.CheckOrigin(r) {
		srv.stats.rejectedOrigin.Add(1)
		srv.log.Debug("primus: origin refused", "origin", r.Header.Get("Origin"), "host", r.Host)
		http.Error(w, "origin not allowed", http.StatusForbidden)
		return
	}
	if srv.cfg.Authorize != nil {
		if err := srv.cfg.Authorize(r); err != nil {
			srv.stats.rejectedAuth.Add(1)
			writeAuthError(w, err)
			return
		}
	}
	var identity *Identity
	if srv.cfg.Authenticate != nil {
		id, err := srv.cfg.Authenticate(r)
		if err == nil && id != nil && !id.Expires.IsZero() && !time.Now().Before(id.Expires) {
			err = &AuthError{Message: "token expired", Authenticate: `Bearer realm="primus", error="invalid_token", error_description="token expired"`}
		}
		if err != nil {
			srv.stats.rejectedAuth.Add(1)
			writeAuthError(w, err)
			return
		}
		identity = id
	}
	remoteAddr := srv.remoteAddr(r)
	if srv.limits.enabled() {
		if err := srv.limits.acquire(remoteAddr); err != nil {
			if errors.Is(err, errIPFull) {
				srv.stats.rejectedIPFull.Add(1)
			} else {
				srv.stats.rejectedFull.Add(1)
			}
			writeAuthError(w, err)
			return
		}
	}
	conn, early, err := ws.Upgrade(w, r)
	if err != nil {
		srv.releaseLimit(remoteAddr)
		srv.log.Debug("primus: upgrade failed", "err", err)
		return
	}
	s := &Spark{
		srv:        srv,
		id:         srv.cfg.IDGenerator(),
		query:      r.URL.Query(),
		header:     r.Header,
		remoteAddr: remoteAddr,
		identity:   identity,
		conn:       conn,
		reader:     ws.NewReader(conn, early),
	}
	s.out.Init(srv.pool, srv.writerConfig(s, conn, writer.RawConnOf(conn)))
	if srv.cfg.MessageRate > 0 {
		s.limit = newRateLimit(srv.cfg.MessageRate, srv.cfg.MessageBurst)
	}
	s.alive.Store(true)
	srv.registerMu.Lock()
	if srv.closing.Load() {
		srv.registerMu.Unlock()
		srv.releaseLimit(remoteAddr)
		// Shutdown began during the handshake.
		_, _ = conn.Write(ws.CloseFrame(ws.CloseGoingAway, ""))
		conn.Close()
		return
	}
	srv.wg.Add(1)
	srv.addSpark(s)
	srv.registerMu.Unlock()
	srv.stats.connectionsTotal.Add(1)
	if identity != nil && !identity.Expires.IsZero() {
		s.expiry = time.AfterFunc(time.Until(identity.Expires), s.expire)
	}
	if fn := srv.cfg.OnConnection; fn != nil {
		fn(s)
	}
	// A fresh goroutine with a small stack reads the connection; the HTTP
	// server's goroutine, with its deep stack, returns now.
	go s.readLoop()
}

// slowConsumerClose is the close frame a slow consumer gets if its socket
// takes it.
var slowConsumerClose = func() []byte {
	code, text, _ := ReasonSlowConsumer.closeStatus()
	return ws.CloseFrame(code, text)
}()

func (srv *Server) writerConfig(s *Spark, conn net.Conn, raw syscall.RawConn) writer.Config {
	return writer.Config{
		Conn:         conn,
		Raw:          raw,
		MaxBacklog:   srv.cfg.MaxQueueBytes,
		WriteTimeout: srv.cfg.WriteTimeout,
		Goodbye:      slowConsumerClose,
		OnFail:       s.writeFailed,
	}
}

func (srv *Server) releaseLimit(remoteAddr string) {
	if srv.limits.enabled() {
		srv.limits.release(remoteAddr)
	}
}

// ClientAddr is the address of the client of r as a spark's RemoteAddr
// would be (see Config.TrustForwardedFor), for limits of the application's
// own routes.
func (srv *Server) ClientAddr(r *http.Request) string { return srv.remoteAddr(r) }

func (srv *Server) remoteAddr(r *http.Request) string {
	if srv.cfg.TrustForwardedFor {
		// The last entry: the proxy in front appended it. Earlier entries
		// are whatever the client sent.
		if v := r.Header.Values("X-Forwarded-For"); len(v) > 0 {
			last := v[len(v)-1]
			if i := strings.LastIndexByte(last, ','); i >= 0 {
				last = last[i+1:]
			}
			if last = strings.TrimSpace(last); last != "" {
				return last
			}
		}
	}
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		return host
	}
	return r.RemoteAddr
}

func (srv *Server) sparkShard(id string) *sparkShard {
	return &srv.sparks[maphash.String(srv.sparkSeed, id)%uint64(len(srv.sparks))]
}

func (srv *Server) addSpark(s *Spark) {
	sh := srv.sparkShard(s.id)
	sh.mu.Lock()
	sh.sparks[s.id] = s
	sh.mu.Unlock()
	srv.stats.connections.Add(1)
}

func (srv *Server) removeSpark(s *Spark) {
	sh := srv.sparkShard(s.id)
	sh.mu.Lock()
	if sh.sparks[s.id] == s {
		delete(sh.sparks, s.id)
	}
	sh.mu.Unlock()
	srv.stats.connections.Add(-1)
}

// Spark returns the local spark with the given id, or nil.
func (srv *Server) Spark(id string) *Spark {
	sh := srv.sparkShard(id)
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	return sh.sparks[id]
}

// forEachSpark calls fn for every local spark, one registry shard at a time.
func (srv *Server) forEachSpark(fn func(*Spark)) {
	for i := range srv.sparks {
		sh := &srv.sparks[i]
		sh.mu.RLock()
		list := make([]*Spark, 0, len(sh.sparks))
		for _, s := range sh.sparks {
			list = append(list, s)
		}
		sh.mu.RUnlock()
		for _, s := range list {
			fn(s)
		}
	}
}

// Write sends v to every local spark (Primus's primus.write; not
// distributed to other nodes).
func (srv *Server) Write(v any) error {
	frame, _, err := srv.encodeFrame(v)
	if err != nil {
		return err
	}
	srv.forEachSpark(func(s *Spark) { s.out.Push(frame) })
	return nil
}
