package serverapp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/go-json-experiment/json/jsontext"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/primusgo/primus"
)

// The cluster as one server over HTTP (behind the API key like every
// /api route): the membership, cluster-wide room queries, and remote
// join/leave/disconnect of sparks connected to any node. Every call waits
// for each live node (at most ?timeout=, default 5s, at most 30s) and
// answers 200 when all answered, 207 with the answers of those that did
// and the names of the others, 504 when none did in time.

const (
	// maxAPIIDs bounds the spark ids of one /api/join, /api/leave or
	// /api/disconnect.
	maxAPIIDs = 10000
	// maxAPITimeout bounds ?timeout= (below the HTTP write timeout's
	// default of 30s, so the answer gets out).
	maxAPITimeout = 25 * time.Second
)

func (a *App) clusterRoutes() {
	a.mux.HandleFunc("GET /api/nodes", a.apiRoute(a.handleNodes))
	a.mux.HandleFunc("GET /api/rooms/{room...}", a.apiRoute(a.handleRoomMembers))
	a.mux.HandleFunc("POST /api/join", a.apiRoute(a.handleRemote(opJoin)))
	a.mux.HandleFunc("POST /api/leave", a.apiRoute(a.handleRemote(opLeave)))
	a.mux.HandleFunc("POST /api/disconnect", a.apiRoute(a.handleRemote(opDisconnect)))
}

// apiContext bounds a cluster call by ?timeout= (a Go duration).
func apiContext(r *http.Request) (context.Context, context.CancelFunc, error) {
	d := 5 * time.Second
	if s := r.URL.Query().Get("timeout"); s != "" {
		v, err := time.ParseDuration(s)
		if err != nil || v <= 0 {
			return nil, nil, fmt.Errorf("timeout: want a positive duration such as 2s, got %q", s)
		}
		d = min(v, maxAPITimeout)
	}
	ctx, cancel := context.WithTimeout(r.Context(), d)
	return ctx, cancel, nil
}

// clusterStatus maps a cluster call's error to the HTTP status and the
// body fields naming the nodes that did not answer; answered is how many
// did (-1: unknown). ok is false when err is not a partial answer, which
// has then been written.
func (a *App) clusterStatus(w http.ResponseWriter, err error, answered int, body map[string]any) (int, bool) {
	body["missing"] = []string{}
	var pe *primus.PartialError
	switch {
	case err == nil:
		return http.StatusOK, true
	case errors.As(err, &pe):
		body["missing"] = pe.Missing
		if len(pe.Failed) > 0 {
			body["failed_nodes"] = pe.Failed
		}
		if pe.Err != nil {
			body["error"] = pe.Err.Error()
		}
		if answered == 0 {
			return http.StatusGatewayTimeout, true
		}
		return http.StatusMultiStatus, true
	}
	a.metrics.commandErrors.Inc()
	switch {
	case errors.Is(err, primus.ErrNotSupported):
		writeError(w, http.StatusNotImplemented, err.Error()+" (compat mode); ?local=1 answers for this node")
	case errors.Is(err, context.DeadlineExceeded):
		writeError(w, http.StatusGatewayTimeout, err.Error())
	case errors.Is(err, primus.ErrServerClosed):
		writeError(w, http.StatusServiceUnavailable, err.Error())
	case errors.Is(err, primus.ErrInvalidRoom), errors.Is(err, primus.ErrTooManyRooms), errors.Is(err, primus.ErrTooManyIDs), errors.Is(err, primus.ErrNoRooms):
		writeError(w, http.StatusBadRequest, err.Error())
	default:
		writeError(w, http.StatusBadGateway, err.Error())
	}
	return 0, false
}

type nodeJSON struct {
	ID        string    `json:"id"`
	Sparks    int       `json:"sparks"`
	Rooms     int       `json:"rooms"`
	StartedAt time.Time `json:"started_at"`
	LastSeen  time.Time `json:"last_seen"`
	Self      bool      `json:"self,omitempty"`
}

func (a *App) handleNodes(w http.ResponseWriter, r *http.Request) {
	ctx, cancel, err := apiContext(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	defer cancel()
	nodes, err := a.Primus.Nodes(ctx)
	if err != nil {
		a.clusterStatus(w, err, 0, map[string]any{})
		return
	}
	list := make([]nodeJSON, len(nodes))
	for i, n := range nodes {
		list[i] = nodeJSON{ID: n.ID, Sparks: n.Sparks, Rooms: n.Rooms, StartedAt: n.StartedAt.UTC(), LastSeen: n.LastSeen.UTC(), Self: n.Self}
	}
	writeJSON(w, http.StatusOK, map[string]any{"node": a.Primus.NodeID(), "nodes": list})
}

// handleClusterRooms is GET /api/rooms: every room of the cluster with its
// member count over all nodes; ?local=1 is this node's rooms alone, as
// the API answered before the cluster calls (and as it still does when the
// broker cannot carry them, with "scope":"node").
func (a *App) handleClusterRooms(w http.ResponseWriter, r *http.Request) {
	if r.URL.Query().Get("local") == "1" {
		a.handleRooms(w, r)
		return
	}
	ctx, cancel, err := apiContext(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	defer cancel()
	sizes, err := a.Primus.ClusterRoomSizes(ctx)
	if errors.Is(err, primus.ErrNotSupported) {
		writeJSON(w, http.StatusOK, map[string]any{"node": a.Primus.NodeID(), "rooms": a.Primus.RoomSizes(), "scope": "node"})
		return
	}
	body := map[string]any{"node": a.Primus.NodeID(), "scope": "cluster"}
	status, ok := a.clusterStatus(w, err, -1, body)
	if !ok {
		return
	}
	body["rooms"] = sizes
	writeJSON(w, status, body)
}

type memberJSON struct {
	ID   string `json:"id"`
	Node string `json:"node"`
}

func (a *App) handleRoomMembers(w http.ResponseWriter, r *http.Request) {
	room := r.PathValue("room")
	if err := a.Primus.ValidateRoom(room); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	ctx, cancel, err := apiContext(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	defer cancel()
	members, err := a.Primus.ClusterClients(ctx, room)
	body := map[string]any{"room": room}
	status, ok := a.clusterStatus(w, err, -1, body)
	if !ok {
		return
	}
	list := make([]memberJSON, len(members))
	for i, m := range members {
		list[i] = memberJSON{ID: m.ID, Node: m.Node}
	}
	body["members"], body["count"] = list, len(list)
	writeJSON(w, status, body)
}

type remoteOp int

const (
	opJoin remoteOp = iota
	opLeave
	opDisconnect
)

// remoteBody is the body of /api/join, /api/leave and /api/disconnect.
type remoteBody struct {
	IDs       []string
	Rooms     []string
	Room      string
	Reconnect bool
}

type nodeResultJSON struct {
	Node    string `json:"node"`
	Sparks  int    `json:"sparks"`
	Changed int    `json:"changed"`
	Failed  int    `json:"failed"`
}

func (a *App) handleRemote(op remoteOp) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		limit := a.opts.MaxLength
		if limit <= 0 {
			limit = 10 << 20
		}
		body, err := parseRemoteBody(http.MaxBytesReader(w, r.Body, limit), op, a.limits)
		var mbe *http.MaxBytesError
		switch {
		case errors.As(err, &mbe):
			writeError(w, http.StatusRequestEntityTooLarge, "body larger than the maximum message length")
			return
		case err != nil:
			writeError(w, http.StatusBadRequest, "invalid JSON body: "+err.Error())
			return
		}
		for _, room := range append(body.Rooms, body.Room) {
			if err := a.Primus.ValidateRoom(room); room != "" && err != nil {
				writeError(w, http.StatusBadRequest, err.Error())
				return
			}
		}
		ctx, cancel, err := apiContext(r)
		if err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		defer cancel()
		var res primus.RemoteResult
		switch op {
		case opJoin:
			res, err = a.Primus.RemoteJoin(ctx, body.IDs, body.Rooms)
		case opLeave:
			res, err = a.Primus.RemoteLeave(ctx, body.IDs, body.Rooms)
		case opDisconnect:
			if body.Room != "" {
				res, err = a.Primus.Room(body.Room).DisconnectAll(ctx, body.Reconnect)
			} else {
				res, err = a.Primus.RemoteDisconnect(ctx, body.IDs, body.Reconnect)
			}
		}
		out := map[string]any{}
		status, ok := a.clusterStatus(w, err, len(res.Nodes), out)
		if !ok {
			return
		}
		nodes := make([]nodeResultJSON, len(res.Nodes))
		for i, n := range res.Nodes {
			nodes[i] = nodeResultJSON{Node: n.Node, Sparks: n.Sparks, Changed: n.Changed, Failed: n.Failed}
		}
		out["nodes"], out["sparks"], out["changed"], out["failed"] = nodes, res.Sparks(), res.Changed(), res.Failed()
		writeJSON(w, status, out)
	}
}

// parseRemoteBody decodes a remote-operation body as it arrives, within
// the bounds: {"ids":[...],"rooms":[...]} for join and leave; {"ids":[...]}
// or {"room":"r"}, with an optional "reconnect":true, for disconnect.
func parseRemoteBody(r io.Reader, op remoteOp, lim limits) (*remoteBody, error) {
	dec := jsontext.NewDecoder(r)
	if tok, err := dec.ReadToken(); err != nil {
		return nil, err
	} else if tok.Kind() != '{' {
		return nil, errors.New("the body must be a JSON object")
	}
	var b remoteBody
	var hasIDs bool
	for dec.PeekKind() != '}' {
		name, err := dec.ReadToken()
		if err != nil {
			return nil, err
		}
		switch field := name.String(); {
		case field == "ids":
			b.IDs, err = readStrings(dec, "ids", maxAPIIDs)
			hasIDs = true
		case field == "rooms" && op != opDisconnect:
			b.Rooms, err = readStrings(dec, "rooms", lim.join)
		case field == "room" && op == opDisconnect:
			var t jsontext.Token
			if t, err = dec.ReadToken(); err == nil && t.Kind() != '"' {
				err = errors.New("room must be a string")
			} else if err == nil {
				b.Room = t.String()
			}
		case field == "reconnect" && op == opDisconnect:
			b.Reconnect, err = readBool(dec, "reconnect")
		default:
			return nil, fmt.Errorf("unknown field %s", field)
		}
		if err != nil {
			return nil, err
		}
	}
	if _, err := dec.ReadToken(); err != nil { // '}'
		return nil, err
	}
	if _, err := dec.ReadToken(); !errors.Is(err, io.EOF) {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, err
		}
		return nil, errors.New("trailing data after the JSON value")
	}
	switch {
	case op == opDisconnect && hasIDs == (b.Room != ""):
		return nil, errors.New(`give "ids" or "room", one of them`)
	case op != opDisconnect && (!hasIDs || len(b.Rooms) == 0):
		return nil, errors.New(`"ids" and "rooms" are required`)
	}
	return &b, nil
}

// registerClusterMetrics exports the node protocol's counters.
func (a *App) registerClusterMetrics() {
	stat := func(f func(primus.ClusterStats) float64) func() float64 {
		return func() float64 { return f(a.Primus.ClusterStats()) }
	}
	reg := a.metrics.reg
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "primus_cluster_nodes", Help: "Live nodes of the cluster, this one included (0: the broker carries no cluster calls)."},
		stat(func(s primus.ClusterStats) float64 { return float64(s.Nodes) })))
	for _, c := range []struct {
		name, help string
		f          func(primus.ClusterStats) uint64
	}{
		{"primus_cluster_calls_total", "Cluster calls made by this node (API and library).", func(s primus.ClusterStats) uint64 { return s.Calls }},
		{"primus_cluster_partial_calls_total", "Cluster calls that returned without the answer of every live node.", func(s primus.ClusterStats) uint64 { return s.PartialCalls }},
		{"primus_cluster_requests_served_total", "Requests of other nodes served.", func(s primus.ClusterStats) uint64 { return s.Served }},
		{"primus_cluster_requests_refused_total", "Requests of other nodes dropped: past their deadline or too many in progress.", func(s primus.ClusterStats) uint64 { return s.Refused }},
		{"primus_cluster_malformed_messages_total", "Node messages that were not valid.", func(s primus.ClusterStats) uint64 { return s.Malformed }},
		{"primus_cluster_unmatched_answers_total", "Answers for no call in progress (late, or forged).", func(s primus.ClusterStats) uint64 { return s.Unmatched }},
	} {
		f := c.f
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: c.name, Help: c.help}, stat(func(s primus.ClusterStats) float64 { return float64(f(s)) })))
	}
}
