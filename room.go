package primus

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"unicode/utf8"

	"github.com/primusgo/primus/internal/protocol"
	"github.com/primusgo/primus/internal/ws"
)

// Room targets a write at the members of one or more rooms, on every node
// of the cluster. A Room is a value: Except returns a new one, so a Room
// can be kept and reused (unlike primus-rooms, nothing accumulates).
type Room struct {
	srv    *Server
	rooms  []string
	except []string
}

// Room returns a handle for writing to the given rooms.
func (srv *Server) Room(names ...string) Room {
	return Room{srv: srv, rooms: dedupe(names)}
}

// Room returns a handle for writing to the given rooms from this spark's
// server (like primus-rooms' spark.room). The spark itself is not excluded:
// add Except(s.ID()) for that.
func (s *Spark) Room(names ...string) Room { return s.srv.Room(names...) }

// Except returns a copy of r that skips the sparks with the given ids.
func (r Room) Except(ids ...string) Room {
	r.except = append(slices.Clip(r.except), ids...)
	return r
}

// Write sends v to every member of r's rooms, on every node: a spark in
// several of the rooms receives it once, excepted sparks not at all. Local
// members are served before the broker is asked to publish, so local
// delivery never depends on it; a broker error is returned after that.
func (r Room) Write(v any) error {
	if len(r.rooms) == 0 {
		return ErrNoRooms
	}
	srv := r.srv
	frame, data, err := srv.encodeFrame(v)
	if err != nil {
		return err
	}
	if srv.hist != nil {
		if hist := srv.hist.split(r.rooms); hist != nil {
			return srv.hist.write(r, hist, frame, data) // history.go
		}
	}
	srv.deliverLocal(r.rooms, nil, r.except, frame)
	m := &Message{
		ID:     srv.cfg.NodeID + "-" + strconv.FormatUint(srv.msgSeq.Add(1), 36),
		Origin: srv.cfg.NodeID,
		Rooms:  r.rooms,
		Except: r.except,
		Data:   data,
	}
	ctx, cancel := context.WithTimeout(context.Background(), srv.cfg.PublishTimeout)
	defer cancel()
	if err := srv.broker.Publish(ctx, m); err != nil {
		srv.stats.publishErrors.Add(1)
		return fmt.Errorf("%w: %w", ErrPublish, err)
	}
	srv.stats.published.Add(1)
	return nil
}

// Clients returns the ids of the local members of r's rooms (each once,
// excepted ids left out).
func (r Room) Clients() []string {
	var ids []string
	seen := map[string]bool{}
	for _, room := range r.rooms {
		for _, s := range r.srv.index.snapshot(room) {
			if !seen[s.id] && !slices.Contains(r.except, s.id) {
				seen[s.id] = true
				ids = append(ids, s.id)
			}
		}
	}
	return ids
}

// Clients returns the ids of the local members of room.
func (srv *Server) Clients(room string) []string { return srv.Room(room).Clients() }

// Rooms returns the rooms that have local members, sorted.
func (srv *Server) Rooms() []string {
	sizes := srv.index.rooms()
	names := make([]string, 0, len(sizes))
	for name := range sizes {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// RoomSizes returns every room with local members and its member count.
func (srv *Server) RoomSizes() map[string]int { return srv.index.rooms() }

// IsRoomEmpty reports whether room has no local members.
func (srv *Server) IsRoomEmpty(room string) bool { return srv.index.size(room) == 0 }

// Empty removes every local member from the given rooms.
func (srv *Server) Empty(rooms ...string) {
	for _, room := range rooms {
		for _, s := range srv.index.snapshot(room) {
			s.Leave(room)
		}
	}
}

func textFrame(text []byte) []byte {
	return ws.AppendFrame(make([]byte, 0, ws.HeaderLen(len(text))+len(text)), ws.OpText, text)
}

func (srv *Server) encodeFrame(v any) (frame, data []byte, err error) {
	data, err = srv.encode(v)
	if err != nil {
		return nil, nil, err
	}
	return textFrame(data), data, nil
}

// encode is the one encoder of application writes: a value that clients
// would take as a protocol message is refused.
func (srv *Server) encode(v any) ([]byte, error) {
	data, err := protocol.Encode(v)
	if err != nil {
		return nil, err
	}
	if protocol.IsControl(data) {
		srv.stats.reservedRefused.Add(1)
		return nil, ErrReservedData
	}
	return data, nil
}

// ValidateRoom reports why a room name is refused, or nil: a name must not
// be empty, must be valid UTF-8 and at most Config.MaxRoomNameLength bytes
// long. Join applies it; use it for names that clients send.
func (srv *Server) ValidateRoom(room string) error {
	switch {
	case room == "":
		return invalidRoom("empty name")
	case srv.cfg.MaxRoomNameLength > 0 && len(room) > srv.cfg.MaxRoomNameLength:
		return invalidRoom("%d bytes, over the limit of %d", len(room), srv.cfg.MaxRoomNameLength)
	case !utf8.ValidString(room):
		return invalidRoom("not valid UTF-8")
	}
	return nil
}

// deliverRemote is the broker handler: messages from other nodes.
func (srv *Server) deliverRemote(m *Message, skip []string) {
	if m.Offset > 0 && len(m.Rooms) == 1 && srv.hist != nil {
		// A history write, this node's own included: in offset order,
		// each offset once (history.go).
		if m.Origin != srv.cfg.NodeID {
			srv.stats.remoteMessages.Add(1)
		}
		srv.hist.offer(m, skip, nil, true)
		return
	}
	if m.Origin == srv.cfg.NodeID || len(m.Rooms) == 0 {
		return
	}
	srv.stats.remoteMessages.Add(1)
	if protocol.IsControl(m.Data) {
		// Another node (or an external publisher) relayed what a client
		// would take as a protocol message.
		srv.stats.reservedRefused.Add(1)
		return
	}
	srv.deliverLocal(m.Rooms, skip, m.Except, textFrame(protocol.EscapeLineTerminators(m.Data)))
}

// smallRoom is the most members a room may have for its writes to be
// written by the writing goroutine itself (see deliverLocal).
const smallRoom = 4

// deliverLocal queues frame, built once, for every local member of rooms
// that is in no skip room and not excepted, each spark once.
func (srv *Server) deliverLocal(rooms, skip, except []string, frame []byte) int {
	return srv.deliverLocalExcluding(rooms, skip, except, frame, nil)
}

// deliverLocalExcluding is deliverLocal that also leaves out the sparks
// for which also (if not nil) returns true; also runs under index locks.
func (srv *Server) deliverLocalExcluding(rooms, skip, except []string, frame []byte, also func(*Spark) bool) int {
	excluded := exceptFunc(except)
	n := 0
	// Members of joined patterns that match a room are its members too.
	rooms, skip = srv.index.patterns.expand(rooms), srv.index.patterns.expand(skip)
	if len(rooms) == 1 && len(skip) == 0 {
		// A small room (a chat between a few): its members are written at
		// once on this goroutine when their writers are idle, outside the
		// index lock, which saves waking a flusher per message.
		var buf [smallRoom]*Spark
		if members, ok := srv.index.few(rooms[0], buf[:]); ok {
			for _, s := range members {
				if !excluded(s.id) && (also == nil || !also(s)) && s.out.PushNow(frame) {
					n++
				}
			}
			srv.stats.deliveries.Add(uint64(n))
			return n
		}
		// The hot path of a larger room: no copying, no allocation per
		// member; the flushers write the members in parallel.
		srv.index.each(rooms[0], func(s *Spark) {
			if !excluded(s.id) && (also == nil || !also(s)) && s.out.Push(frame) {
				n++
			}
		})
		srv.stats.deliveries.Add(uint64(n))
		return n
	}
	// Several rooms: members are copied out of the index so that no two
	// index locks are ever held together. The lists come from other nodes
	// too: each room counts once, however often it is named.
	rooms, skip = dedupe(rooms), dedupe(skip)
	done := make(map[*Spark]struct{})
	for _, room := range skip {
		for _, s := range srv.index.snapshot(room) {
			done[s] = struct{}{}
		}
	}
	for _, room := range rooms {
		for _, s := range srv.index.snapshot(room) {
			if _, ok := done[s]; ok || excluded(s.id) || (also != nil && also(s)) {
				continue
			}
			done[s] = struct{}{}
			if s.out.Push(frame) {
				n++
			}
		}
	}
	srv.stats.deliveries.Add(uint64(n))
	return n
}

func exceptFunc(except []string) func(string) bool {
	switch {
	case len(except) == 0:
		return func(string) bool { return false }
	case len(except) <= 8:
		return func(id string) bool { return slices.Contains(except, id) }
	}
	set := make(map[string]struct{}, len(except))
	for _, id := range except {
		set[id] = struct{}{}
	}
	return func(id string) bool { _, ok := set[id]; return ok }
}

// dedupe returns names without duplicates and empty names, in order; a
// long list is checked with a set, so that hostile lists cost linear time.
func dedupe(names []string) []string {
	out := make([]string, 0, len(names))
	if len(names) <= 16 {
		for _, n := range names {
			if n != "" && !slices.Contains(out, n) {
				out = append(out, n)
			}
		}
		return out
	}
	seen := make(map[string]struct{}, len(names))
	for _, n := range names {
		if _, dup := seen[n]; n != "" && !dup {
			seen[n] = struct{}{}
			out = append(out, n)
		}
	}
	return out
}
