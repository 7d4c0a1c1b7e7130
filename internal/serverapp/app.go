// Package serverapp is the standalone Primus server: the room command
// protocol, the HTTP API, metrics, health and the demo page, around a
// primus.Server. cmd/primus-server is a thin main over Main.
package serverapp

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/primusgo/primus"
	"github.com/primusgo/primus/redisbroker"
)

// Options configures an App; the zero value works (in-memory broker).
type Options struct {
	Pathname      string
	PingInterval  time.Duration
	MaxLength     int64
	MaxQueueBytes int
	// APIKey, when set, is required as "Authorization: Bearer <key>" by the /api endpoints.
	APIKey string
	// Broker is the cluster broker; nil is the in-memory broker (one node).
	Broker primus.Broker
	Logger *slog.Logger
}

// App is the standalone server's HTTP surface around a primus.Server.
type App struct {
	Primus   *primus.Server
	opts     Options
	log      *slog.Logger
	mux      *http.ServeMux
	metrics  *metrics
	draining atomic.Bool
}

// New builds the App and starts its primus.Server.
func New(opts Options) (*App, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	a := &App{opts: opts, log: opts.Logger, mux: http.NewServeMux()}
	pathname := opts.Pathname
	if pathname == "" {
		pathname = "/primus"
	}
	srv, err := primus.New(primus.Config{
		Pathname:      pathname,
		PingInterval:  opts.PingInterval,
		MaxLength:     opts.MaxLength,
		MaxQueueBytes: opts.MaxQueueBytes,
		Broker:        opts.Broker,
		NodeID:        nodeID(opts.Broker),
		Logger:        opts.Logger,
		OnConnection: func(s *primus.Spark) {
			s.OnData(a.handleData)
		},
	})
	if err != nil {
		return nil, err
	}
	a.Primus = srv
	a.metrics = newMetrics(a)
	a.routes()
	return a, nil
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
	a.mux.HandleFunc("POST /api/publish", a.requireKey(a.handlePublish))
	a.mux.HandleFunc("GET /api/rooms", a.requireKey(a.handleRooms))
	a.mux.HandleFunc("GET /healthz", a.handleHealth)
	a.mux.Handle("GET /metrics", a.metrics.handler())
	a.mux.HandleFunc("GET /{$}", a.handleDemo)
}

// Shutdown drains the server: health turns 503, sparks are closed
// reconnect-style, and the broker is closed.
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

func (a *App) requireKey(next http.HandlerFunc) http.HandlerFunc {
	if a.opts.APIKey == "" {
		return next
	}
	want := []byte("Bearer " + a.opts.APIKey)
	return func(w http.ResponseWriter, r *http.Request) {
		got := []byte(r.Header.Get("Authorization"))
		if subtle.ConstantTimeCompare(got, want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="primus"`)
			writeError(w, http.StatusUnauthorized, "missing or wrong API key (Authorization: Bearer <key>)")
			return
		}
		next(w, r)
	}
}

type publishRequest struct {
	Room   string          `json:"room"`
	Rooms  []string        `json:"rooms"`
	Except []string        `json:"except"`
	Data   json.RawMessage `json:"data"`
}

func (a *App) handlePublish(w http.ResponseWriter, r *http.Request) {
	limit := a.opts.MaxLength
	if limit <= 0 {
		limit = 10 << 20
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeError(w, http.StatusRequestEntityTooLarge, "body larger than the maximum message length")
			return
		}
		writeError(w, http.StatusBadRequest, "reading body: "+err.Error())
		return
	}
	var req publishRequest
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "invalid JSON body: "+err.Error())
		return
	}
	err = a.publish(req.Room, req.Rooms, req.Except, req.Data)
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

func (a *App) handleHealth(w http.ResponseWriter, _ *http.Request) {
	st := a.Primus.Stats()
	body := map[string]any{"status": "ok", "connections": st.Connections, "rooms": st.Rooms}
	status := http.StatusOK
	if rb, ok := a.opts.Broker.(*redisbroker.Broker); ok {
		if !rb.Stats().Connected {
			// Still serving local sparks: report it, but stay in rotation.
			body["broker"] = "redis unreachable; serving local sparks only"
			body["status"] = "degraded"
		}
	}
	if a.draining.Load() {
		body["status"] = "draining"
		status = http.StatusServiceUnavailable
	}
	writeJSON(w, status, body)
}
