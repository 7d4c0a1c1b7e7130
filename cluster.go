package primus

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// ClusterBroker is a Broker that also carries node messages: the
// membership heartbeats and the requests and answers of the cluster calls
// (Nodes, ClusterClients, RemoteJoin, ...), which make the cluster answer
// as one server. The memory broker and the Redis broker in native mode
// implement it.
//
// Node messages are opaque payloads of at most MaxNodeMessage bytes. They
// are delivered at most once and may be reordered or lost (the server's
// protocol numbers its pages and names the nodes that did not answer).
// Every payload comes from whoever can write to the broker's backend: the
// handler treats it as hostile.
type ClusterBroker interface {
	Broker
	// EnableCluster is called once, before Start, with the server's node
	// id and the handler for node messages: from Start on, payloads sent
	// to nodeID with Send and every Broadcast reach h, until Close. An
	// error wrapping ErrNotSupported (the broker cannot carry node
	// messages in its configuration, as the Redis broker's compat mode)
	// leaves the server without cluster calls, which then fail with
	// ErrNotSupported; any other error fails New.
	EnableCluster(nodeID string, h NodeHandler) error
	// Broadcast sends payload to every node of the cluster (this node
	// may receive it too).
	Broadcast(ctx context.Context, payload []byte) error
	// Send sends payload to the node nodeID; a node that does not exist
	// (any more) is not an error.
	Send(ctx context.Context, nodeID string, payload []byte) error
}

// NodeHandler receives what a ClusterBroker brings in. Its methods return
// quickly and never block: a broker may call them from the goroutine that
// reads its connection.
type NodeHandler interface {
	// HandleNodeMessage receives a payload another node sent (or this
	// node's own broadcast); the handler does not keep payload after it
	// returns.
	HandleNodeMessage(payload []byte)
	// NodeLinkUp reports that node messages now arrive: after Start,
	// once the broker listens, and again after each reconnection (what
	// was sent meanwhile is lost). The server then announces itself.
	NodeLinkUp()
}

var (
	// ErrNotSupported is returned by cluster calls when the broker cannot
	// carry node messages (it is not a ClusterBroker, or, like the Redis
	// broker in compat mode, not in its configuration). Local calls keep
	// working.
	ErrNotSupported = errors.New("primus: the broker does not support cluster calls")
	// ErrPartial is wrapped by *PartialError.
	ErrPartial = errors.New("primus: some nodes did not answer")
)

// PartialError is returned by a cluster call that did not hear from every
// live node: at the context's deadline, after a node it waited for left the
// cluster, or when sending the request failed. The call also returns what
// the nodes that answered said.
type PartialError struct {
	// Missing are the nodes that were live when the call started and did
	// not answer, sorted.
	Missing []string
	// Failed are nodes that answered with an error (overloaded, or an
	// answer too large), with the error.
	Failed map[string]string
	// Err is why the call stopped waiting: the context's error, the
	// broker's error, or nil when the missing nodes left the cluster.
	Err error
}

func (e *PartialError) Error() string {
	var b strings.Builder
	b.WriteString(ErrPartial.Error())
	if len(e.Missing) > 0 {
		fmt.Fprintf(&b, ": missing %s", strings.Join(e.Missing, ", "))
	}
	if len(e.Failed) > 0 {
		names := make([]string, 0, len(e.Failed))
		for n := range e.Failed {
			names = append(names, n)
		}
		slices.Sort(names)
		b.WriteString("; failed")
		for i, n := range names {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, " %s (%s)", n, e.Failed[n])
		}
	}
	if e.Err != nil {
		fmt.Fprintf(&b, " (%v)", e.Err)
	}
	return b.String()
}

// Unwrap returns ErrPartial and Err, so that errors.Is finds either
// (context.DeadlineExceeded, for example).
func (e *PartialError) Unwrap() []error {
	if e.Err == nil {
		return []error{ErrPartial}
	}
	return []error{ErrPartial, e.Err}
}

// NodeInfo describes a live node of the cluster, as of its last heartbeat.
type NodeInfo struct {
	// ID is the node's id (Config.NodeID).
	ID string
	// Sparks and Rooms are its open sparks and the rooms with members there.
	Sparks, Rooms int
	// StartedAt is when it started, by its own clock.
	StartedAt time.Time
	// LastSeen is when this node last heard its heartbeat (now for Self).
	LastSeen time.Time
	// Self marks the node answering.
	Self bool
}

// ClusterSpark is a spark somewhere in the cluster: its id and the node
// that holds it.
type ClusterSpark struct {
	ID   string
	Node string
}

// NodeResult is what a remote operation did on one node.
type NodeResult struct {
	Node string
	// Sparks is how many open sparks the operation selected there.
	Sparks int
	// Changed counts the rooms joined or left (one per OnJoin or OnLeave
	// event), or the sparks ended.
	Changed int
	// Failed counts the selected sparks the operation failed for: a join
	// over Config.MaxRoomsPerSpark, or a spark that was closing.
	Failed int
}

// RemoteResult is what a remote operation did, per node that answered.
type RemoteResult struct {
	// Nodes are the nodes that answered, sorted by id.
	Nodes []NodeResult
}

// Sparks is the number of selected sparks over all nodes.
func (r RemoteResult) Sparks() int { return r.sum(func(n NodeResult) int { return n.Sparks }) }

// Changed is the number of changes over all nodes.
func (r RemoteResult) Changed() int { return r.sum(func(n NodeResult) int { return n.Changed }) }

// Failed is the number of failures over all nodes.
func (r RemoteResult) Failed() int { return r.sum(func(n NodeResult) int { return n.Failed }) }

func (r RemoteResult) sum(f func(NodeResult) int) int {
	t := 0
	for _, n := range r.Nodes {
		t += f(n)
	}
	return t
}

// ClusterStats are a server's counters of the node protocol.
type ClusterStats struct {
	// Enabled: the broker carries node messages.
	Enabled bool
	// Nodes is the number of live nodes, this one included.
	Nodes int
	// Calls counts the cluster calls made here; PartialCalls those that
	// returned a *PartialError.
	Calls, PartialCalls uint64
	// Served counts requests of other nodes served here; Refused those
	// dropped, unanswered: past their deadline, or over the bound of
	// requests in progress (4 served at a time, 256 waiting).
	Served, Refused uint64
	// Malformed counts node messages that were not valid; Unmatched the
	// answers for no call in progress (late ones, after the deadline).
	Malformed, Unmatched uint64
}

// Nodes returns the live nodes of the cluster, this one included, sorted
// by id: those whose heartbeat arrived within Config.NodeTTL. Right after
// the server started (or its broker reconnected) it waits, within ctx, for
// the other nodes to answer its announcement.
func (srv *Server) Nodes(ctx context.Context) ([]NodeInfo, error) {
	c := srv.cluster
	if err := c.usable(); err != nil {
		return nil, err
	}
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	if err := c.awaitWarm(ctx); err != nil {
		return nil, err
	}
	return c.nodeList(), nil
}

// ClusterStats returns the server's node-protocol counters.
func (srv *Server) ClusterStats() ClusterStats { return srv.cluster.statsSnapshot() }

// ClusterClients returns the sparks that are members of any of rooms on
// every live node, each once with the node that holds it, sorted by id;
// with no rooms, every spark of the cluster.
func (srv *Server) ClusterClients(ctx context.Context, rooms ...string) ([]ClusterSpark, error) {
	return Room{srv: srv, rooms: dedupe(rooms)}.ClusterClients(ctx)
}

// ClusterClients is Clients over the whole cluster: r's members on every
// live node (excepted ids left out), each once with its node, sorted by
// id. A Room without rooms lists every spark of the cluster.
func (r Room) ClusterClients(ctx context.Context) ([]ClusterSpark, error) {
	if err := r.checkLists(); err != nil {
		return nil, err
	}
	ans, err := r.srv.cluster.call(ctx, &nodeMessage{Op: opClients, In: r.rooms, Except: r.except})
	if ans == nil {
		return nil, err
	}
	return ans.clients(), err
}

// ClusterRoomSizes returns every room with members anywhere in the cluster
// and its member count over all live nodes.
func (srv *Server) ClusterRoomSizes(ctx context.Context) (map[string]int, error) {
	ans, err := srv.cluster.call(ctx, &nodeMessage{Op: opSizes})
	if ans == nil {
		return nil, err
	}
	return ans.sizes(), err
}

// ClusterIsRoomEmpty reports whether room has no members on any live node.
// It returns false as soon as one node reports members; true needs every
// node's answer (with a *PartialError otherwise, and true as the partial
// answer).
func (srv *Server) ClusterIsRoomEmpty(ctx context.Context, room string) (bool, error) {
	if room == "" {
		return false, ErrNoRooms
	}
	ans, err := srv.cluster.call(ctx, &nodeMessage{Op: opCount, In: []string{room}})
	if ans == nil {
		return false, err
	}
	if ans.members > 0 {
		return false, nil
	}
	return true, err
}

// RemoteJoin makes the sparks with the given ids, wherever they are
// connected, join rooms (as Spark.Join: all of the rooms or none, per
// spark). It returns once every live node applied it, with what happened
// per node; OnJoin runs on the node of each spark.
func (srv *Server) RemoteJoin(ctx context.Context, sparkIDs, rooms []string) (RemoteResult, error) {
	for _, r := range rooms {
		if err := srv.ValidateRoom(r); err != nil {
			return RemoteResult{}, err
		}
	}
	return srv.remoteByIDs(ctx, &nodeMessage{Op: opJoin, Target: dedupe(rooms)}, sparkIDs)
}

// RemoteLeave makes the sparks with the given ids, wherever they are
// connected, leave rooms; see RemoteJoin.
func (srv *Server) RemoteLeave(ctx context.Context, sparkIDs, rooms []string) (RemoteResult, error) {
	return srv.remoteByIDs(ctx, &nodeMessage{Op: opLeave, Target: dedupe(rooms)}, sparkIDs)
}

// RemoteDisconnect ends the sparks with the given ids wherever they are
// connected (as Spark.End, or Spark.EndReconnect with reconnect). Each node
// answers after its sparks closed (OnDisconnection ran) or, for a client
// that does not answer its close, shortly before ctx's deadline.
func (srv *Server) RemoteDisconnect(ctx context.Context, sparkIDs []string, reconnect bool) (RemoteResult, error) {
	return srv.remoteByIDs(ctx, &nodeMessage{Op: opDisconnect, Reconnect: reconnect}, sparkIDs)
}

// JoinAll makes every member of r's rooms (excepted ids left out), on every
// live node, join rooms; see RemoteJoin.
func (r Room) JoinAll(ctx context.Context, rooms ...string) (RemoteResult, error) {
	for _, room := range rooms {
		if err := r.srv.ValidateRoom(room); err != nil {
			return RemoteResult{}, err
		}
	}
	return r.remote(ctx, &nodeMessage{Op: opJoin, Target: dedupe(rooms)})
}

// LeaveAll makes every member of r's rooms (excepted ids left out), on
// every live node, leave r's rooms.
func (r Room) LeaveAll(ctx context.Context) (RemoteResult, error) {
	return r.remote(ctx, &nodeMessage{Op: opLeave, Target: r.rooms})
}

// DisconnectAll ends every member of r's rooms (excepted ids left out), on
// every live node; see RemoteDisconnect.
func (r Room) DisconnectAll(ctx context.Context, reconnect bool) (RemoteResult, error) {
	return r.remote(ctx, &nodeMessage{Op: opDisconnect, Reconnect: reconnect})
}

// maxRemoteIDs bounds the ids of one RemoteJoin, RemoteLeave or
// RemoteDisconnect; they travel maxWireIDs per request.
const maxRemoteIDs = 100 * maxWireIDs

// ErrTooManyIDs is returned by a remote operation given more than 100 000
// spark ids, or a Room with more than 10 000 excepted ids.
var ErrTooManyIDs = errors.New("primus: too many spark ids for one cluster call")

func (r Room) checkLists() error {
	if len(r.rooms) > maxWireRooms {
		return fmt.Errorf("%w (%d rooms; a cluster call takes at most %d)", ErrTooManyRooms, len(r.rooms), maxWireRooms)
	}
	if len(r.except) > maxWireExcept {
		return fmt.Errorf("%w (%d excepted; at most %d)", ErrTooManyIDs, len(r.except), maxWireExcept)
	}
	return nil
}

func (r Room) remote(ctx context.Context, m *nodeMessage) (RemoteResult, error) {
	if len(r.rooms) == 0 {
		return RemoteResult{}, ErrNoRooms
	}
	if err := r.checkLists(); err != nil {
		return RemoteResult{}, err
	}
	if (m.Op == opJoin || m.Op == opLeave) && len(m.Target) == 0 {
		return RemoteResult{}, ErrNoRooms
	}
	if len(m.Target) > maxWireRooms {
		return RemoteResult{}, fmt.Errorf("%w (at most %d in a cluster call)", ErrTooManyRooms, maxWireRooms)
	}
	m.In, m.Except = r.rooms, r.except
	ans, err := r.srv.cluster.call(ctx, m)
	if ans == nil {
		return RemoteResult{}, err
	}
	return ans.result(), err
}

// remoteByIDs sends an operation on spark ids, maxWireIDs per request, all
// requests at once, and merges the answers.
func (srv *Server) remoteByIDs(ctx context.Context, m *nodeMessage, ids []string) (RemoteResult, error) {
	ids = dedupe(ids)
	if len(ids) == 0 {
		return RemoteResult{}, nil
	}
	if len(ids) > maxRemoteIDs {
		return RemoteResult{}, fmt.Errorf("%w (%d; at most %d)", ErrTooManyIDs, len(ids), maxRemoteIDs)
	}
	if slices.ContainsFunc(ids, func(id string) bool { return len(id) > maxWireID }) {
		return RemoteResult{}, fmt.Errorf("%w: a spark id longer than %d bytes", ErrTooManyIDs, maxWireID)
	}
	if (m.Op == opJoin || m.Op == opLeave) && len(m.Target) == 0 {
		return RemoteResult{}, ErrNoRooms
	}
	if len(m.Target) > maxWireRooms {
		return RemoteResult{}, fmt.Errorf("%w (at most %d in a cluster call)", ErrTooManyRooms, maxWireRooms)
	}
	var parts []*nodeMessage
	for chunk := range slices.Chunk(ids, maxWireIDs) {
		p := *m
		p.IDs = chunk
		parts = append(parts, &p)
	}
	if len(parts) == 1 {
		ans, err := srv.cluster.call(ctx, parts[0])
		if ans == nil {
			return RemoteResult{}, err
		}
		return ans.result(), err
	}
	type out struct {
		ans *answer
		err error
	}
	outs := make([]out, len(parts))
	done := make(chan struct{})
	for i, p := range parts {
		go func() {
			a, err := srv.cluster.call(ctx, p)
			outs[i] = out{a, err}
			done <- struct{}{}
		}()
	}
	for range parts {
		<-done
	}
	var merged *answer
	var perr *PartialError
	var firstErr error
	for _, o := range outs {
		if o.ans != nil {
			if merged == nil {
				merged = o.ans
			} else {
				merged.merge(o.ans)
			}
		}
		var pe *PartialError
		switch {
		case o.err == nil:
		case errors.As(o.err, &pe):
			if perr == nil {
				perr = &PartialError{Err: pe.Err}
			}
			perr.add(pe)
		case firstErr == nil:
			firstErr = o.err
		}
	}
	if firstErr != nil {
		return RemoteResult{}, firstErr
	}
	var res RemoteResult
	if merged != nil {
		res = merged.result()
	}
	if perr != nil {
		// A node that answered some parts but not others is missing:
		// not every selected spark was handled there.
		return res, perr
	}
	return res, nil
}

// add merges another part's missing and failed nodes into e.
func (e *PartialError) add(o *PartialError) {
	for _, n := range o.Missing {
		if !slices.Contains(e.Missing, n) {
			e.Missing = append(e.Missing, n)
		}
	}
	slices.Sort(e.Missing)
	for n, msg := range o.Failed {
		if e.Failed == nil {
			e.Failed = make(map[string]string)
		}
		e.Failed[n] = msg
	}
	if e.Err == nil {
		e.Err = o.Err
	}
}
