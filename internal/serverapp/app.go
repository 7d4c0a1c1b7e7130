// Package serverapp is the standalone Primus server: the room command
// protocol, the HTTP API, metrics, health and the demo page, around a
// primus.Server. cmd/primus-server is a thin main over Main.
package serverapp

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/primusgo/primus"
	"github.com/primusgo/primus/auth"
	"github.com/primusgo/primus/redisbroker"
)

// Options configures an App; the zero value works (in-memory broker, open
// access: any client may join and publish to any room).
type Options struct {
	Pathname      string
	PingInterval  time.Duration
	MaxLength     int64
	MaxQueueBytes int
	// Wildcards makes rooms with '*' patterns (primus.Config.Wildcards).
	Wildcards bool
	// MaxPublishRooms and MaxExceptIDs bound the lists of one publish
	// (command or HTTP API; default 1000 each, negative: no bound).
	MaxPublishRooms int
	MaxExceptIDs    int
	// Limits of the primus.Config of the same names.
	MaxRoomsPerSpark    int
	MaxRoomNameLength   int
	MaxConnections      int
	MaxConnectionsPerIP int
	TrustForwardedFor   bool
	MessageRate         float64
	MessageBurst        int
	// AllowedOrigins are the browser origins allowed besides the server's
	// own host (primus.AllowOrigins patterns).
	AllowedOrigins []string
	// Verifier, when set, requires a token to connect; its claims grant
	// joins (rooms) and publishes (publish).
	Verifier *auth.Verifier
	// ClientPublishOff refuses the publish command (the HTTP API still publishes).
	ClientPublishOff bool
	// APIKey, when set, is required as "Authorization: Bearer <key>" by the /api endpoints.
	APIKey string
	// MaxAPIRequests bounds the /api requests served at once (default 16):
	// each may hold a body of up to MaxLength. More are answered 503.
	MaxAPIRequests int
	// Broker is the cluster broker; nil is the in-memory broker (one node).
	Broker primus.Broker
	Logger *slog.Logger

	// NodeTTL is primus.Config.NodeTTL (default 5s).
	NodeTTL time.Duration

	// HistorySize > 0 keeps room history (primus.Config.History): the
	// last HistorySize writes of every room, or of the rooms matching one
	// of the HistoryRooms patterns ('*' matches any run of characters),
	// for HistoryTTL (0: primus.DefaultHistoryTTL). See history.go.
	HistorySize  int
	HistoryTTL   time.Duration
	HistoryRooms []string
}

// App is the standalone server's HTTP surface around a primus.Server.
type App struct {
	Primus   *primus.Server
	opts     Options
	log      *slog.Logger
	mux      *http.ServeMux
	metrics  *metrics
	limits   limits        // of the lists in commands and API requests
	api      chan struct{} // a slot per /api request in progress
	origin   func(*http.Request) bool
	apiMu    sync.Mutex
	apiByIP  map[string]int // /api requests in progress per client address
	draining atomic.Bool
}

// New builds the App and starts its primus.Server.
func New(opts Options) (*App, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.MaxAPIRequests <= 0 {
		opts.MaxAPIRequests = 16
	}
	a := &App{opts: opts, log: opts.Logger, mux: http.NewServeMux(), api: make(chan struct{}, opts.MaxAPIRequests),
		limits: limits{
			join:    listBound(opts.MaxRoomsPerSpark),
			publish: listBound(opts.MaxPublishRooms),
			except:  listBound(opts.MaxExceptIDs),
		},
		origin:  primus.AllowOrigins(opts.AllowedOrigins...),
		apiByIP: make(map[string]int)}
	pathname := opts.Pathname
	if pathname == "" {
		pathname = "/primus"
	}
	cfg := primus.Config{
		Pathname:            pathname,
		PingInterval:        opts.PingInterval,
		MaxLength:           opts.MaxLength,
		MaxQueueBytes:       opts.MaxQueueBytes,
		Wildcards:           opts.Wildcards,
		MaxRoomsPerSpark:    opts.MaxRoomsPerSpark,
		MaxRoomNameLength:   opts.MaxRoomNameLength,
		MaxConnections:      opts.MaxConnections,
		MaxConnectionsPerIP: opts.MaxConnectionsPerIP,
		TrustForwardedFor:   opts.TrustForwardedFor,
		MessageRate:         opts.MessageRate,
		MessageBurst:        opts.MessageBurst,
		CheckOrigin:         a.origin,
		Broker:              opts.Broker,
		NodeID:              nodeID(opts.Broker),
		NodeTTL:             opts.NodeTTL,
		History:             historyConfig(opts),
		Logger:              opts.Logger,
		OnConnection: func(s *primus.Spark) {
			s.OnData(a.handleData)
			s.OnError(a.handleError)
		},
	}
	if opts.Verifier != nil {
		cfg.Authenticate = opts.Verifier.Authenticate
	}
	srv, err := primus.New(cfg)
	if err != nil {
		return nil, err
	}
	a.Primus = srv
	a.metrics = newMetrics(a)
	a.registerClusterMetrics()
	a.registerHistoryMetrics()
	a.routes()
	return a, nil
}

// listBound is a list limit from an option: 0 is the default of 1000,
// negative is none.
func listBound(n int) int {
	switch {
	case n == 0:
		return 1000
	case n < 0:
		return 0
	}
	return n
}

// ServeHTTP implements http.Handler.
func (a *App) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if a.Primus.Handles(r) {
		a.Primus.ServeHTTP(w, r)
		return
	}
	a.mux.ServeHTTP(w, r)
}

func (a *App) routes() {
	a.mux.HandleFunc("POST /api/publish", a.apiRoute(a.handlePublish))
	a.mux.HandleFunc("GET /api/rooms", a.apiRoute(a.handleClusterRooms))
	a.clusterRoutes()
	a.mux.HandleFunc("GET /healthz", a.handleHealth)
	a.mux.HandleFunc("GET /readyz", a.handleReady)
	a.mux.Handle("GET /metrics", a.metrics.handler())
	a.mux.HandleFunc("GET /{$}", a.handleDemo)
}

// Shutdown closes the server at once: /readyz turns 503, sparks are
// closed reconnect-style, and the broker is closed.
func (a *App) Shutdown(ctx context.Context) error {
	a.draining.Store(true)
	return a.Primus.Shutdown(ctx)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}

// apiRoute guards an /api handler: browser origins as for WebSockets
// (a page elsewhere must not publish through a visitor's browser), the
// API key when set, and bounds on the requests in progress, in all and per
// client address (each may hold a body of up to MaxLength for the read
// timeout: one client must not take every slot).
func (a *App) apiRoute(next http.HandlerFunc) http.HandlerFunc {
	want := []byte("Bearer " + a.opts.APIKey)
	perIP := max(1, cap(a.api)/4)
	return func(w http.ResponseWriter, r *http.Request) {
		if !a.origin(r) {
			writeError(w, http.StatusForbidden, "origin not allowed")
			return
		}
		if a.opts.APIKey != "" && subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="primus"`)
			writeError(w, http.StatusUnauthorized, "missing or wrong API key (Authorization: Bearer <key>)")
			return
		}
		ip := a.Primus.ClientAddr(r)
		a.apiMu.Lock()
		busy := a.apiByIP[ip] >= perIP
		if !busy {
			select {
			case a.api <- struct{}{}:
				a.apiByIP[ip]++
			default:
				busy = true
			}
		}
		a.apiMu.Unlock()
		if busy {
			a.metrics.apiBusy.Inc()
			w.Header().Set("Retry-After", "1")
			writeError(w, http.StatusServiceUnavailable, "too many API requests in progress; retry")
			return
		}
		defer func() {
			a.apiMu.Lock()
			if a.apiByIP[ip]--; a.apiByIP[ip] == 0 {
				delete(a.apiByIP, ip)
			}
			<-a.api
			a.apiMu.Unlock()
		}()
		next(w, r)
	}
}

func (a *App) handlePublish(w http.ResponseWriter, r *http.Request) {
	limit := a.opts.MaxLength
	if limit <= 0 {
		limit = 10 << 20
	}
	// Decoded as it arrives, within the limits; a value followed by
	// anything but white space is refused, not half read.
	req, err := parsePublishBody(http.MaxBytesReader(w, r.Body, limit), a.limits)
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		writeError(w, http.StatusRequestEntityTooLarge, "body larger than the maximum message length")
		return
	case err != nil:
		writeError(w, http.StatusBadRequest, "invalid JSON body: "+err.Error())
		return
	}
	err = a.publish(req.rooms(), req.Except, req.Data)
	switch {
	case err == nil:
		writeJSON(w, http.StatusOK, map[string]bool{"ok": true})
	case errors.Is(err, primus.ErrPublish):
		a.metrics.commandErrors.Inc()
		writeError(w, http.StatusBadGateway, err.Error())
	default:
		a.metrics.commandErrors.Inc()
		writeError(w, http.StatusBadRequest, err.Error())
	}
}

func (a *App) handleRooms(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"node": a.Primus.NodeID(), "rooms": a.Primus.RoomSizes()})
}

// handleHealth is liveness: 200 while the process serves, whatever the
// broker or a drain say (they are reported in the body).
func (a *App) handleHealth(w http.ResponseWriter, _ *http.Request) {
	st := a.Primus.Stats()
	body := map[string]any{"status": "ok", "connections": st.Connections, "rooms": st.Rooms}
	if !a.brokerConnected() {
		// Still serving local sparks: report it, but stay alive.
		body["broker"] = "redis unreachable; serving local sparks only"
		body["status"] = "degraded"
	}
	if down := a.shardsDown(); len(down) > 0 {
		// Redis Cluster: the rooms of these shards miss the other
		// nodes' writes until they are back; the others are served.
		body["shards_down"] = down
		body["status"] = "degraded"
		if _, ok := body["broker"]; !ok {
			body["broker"] = "some redis cluster shards unreachable; their rooms get local writes only"
		}
	}
	if a.draining.Load() {
		body["status"] = "draining"
	}
	writeJSON(w, http.StatusOK, body)
}

// handleReady is readiness: 503 while the node should get no new clients
// (draining, or its broker is not connected, so its sparks would miss the
// other nodes' writes). On a Redis Cluster the node stays ready while at
// least one shard delivers: a shard that is down is down for every node,
// so moving clients to another node would not help them, while failing
// every node's readiness would take the whole service out.
func (a *App) handleReady(w http.ResponseWriter, _ *http.Request) {
	switch {
	case a.draining.Load():
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "draining"})
	case !a.brokerConnected():
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "broker not connected"})
	default:
		writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	}
}

// shardsDown lists the Redis Cluster shards (master addresses) whose rooms
// are not subscribed (nil in other modes).
func (a *App) shardsDown() []string {
	if rb, ok := a.opts.Broker.(*redisbroker.Broker); ok {
		return rb.Stats().ShardsDown()
	}
	return nil
}

func (a *App) brokerConnected() bool {
	if rb, ok := a.opts.Broker.(*redisbroker.Broker); ok {
		return rb.Stats().Connected
	}
	return true
}
