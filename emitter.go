package primus

import (
	"encoding/json"
	"errors"
	"fmt"
	"sync"

	"github.com/primusgo/primus/internal/protocol"
)

// Events in the format of primus-emitter 3.1.1, the plugin that Primus
// applications use for named events ("spark.send('news', data)" on the
// server, "primus.on('news', fn)" in the browser) and acknowledgements.
//
// The packets are ordinary data messages, JSON objects:
//
//	{"type":0,"data":["news",arg1,arg2]}           an event
//	{"type":0,"data":["news",arg1],"id":7}         an event that asks for an acknowledgement
//	{"id":7,"type":1,"data":[reply1,reply2]}       the acknowledgement of event 7
//
// Each side numbers the events it sends from 1, per connection. The
// browser client served at <pathname>/primus.js and the Go client
// (package client) speak it too.

// ErrReservedEvent is returned by Send for an event name that the receiving
// Primus client reserves for itself ("open", "data", "end", "incoming::..."
// and the others of ReservedClientEvent): the client would drop the event.
var ErrReservedEvent = errors.New("primus: reserved event name")

// ErrAckSent is returned by an acknowledgement function called a second
// time; only the first call sends (primus-emitter ignores the others).
var ErrAckSent = errors.New("primus: acknowledgement already sent")

// EventHandler handles a named event that a client sent (see Spark.OnEvent).
// args are the event's arguments as JSON texts. ack is nil when the client
// asked for no acknowledgement; otherwise its first call sends its values
// (JSON-encoded) to the client's callback.
type EventHandler func(s *Spark, args []json.RawMessage, ack func(v ...any) error)

// AckFunc receives the arguments of the acknowledgement of an event sent
// with Spark.Send. It runs on the spark's reader goroutine.
type AckFunc func(args []json.RawMessage)

// eventPacket is primus-emitter's event packet; the fields are in the order
// JSON.stringify writes them, so the bytes are the Node plugin's.
type eventPacket struct {
	Type int    `json:"type"`
	Data []any  `json:"data"`
	ID   uint64 `json:"id,omitempty"`
}

// ackPacket is primus-emitter's acknowledgement, fields in its order.
type ackPacket struct {
	ID   json.RawMessage `json:"id"`
	Type int             `json:"type"`
	Data []any           `json:"data"`
}

// maxPendingAcks bounds the acknowledgements a spark waits for: a client
// that never answers would otherwise grow them for the connection's life.
// Beyond it the oldest is forgotten (its AckFunc never runs).
const maxPendingAcks = 1024

// emitterState is a spark's part of the emitter: handlers and pending acks.
type emitterState struct {
	mu       sync.Mutex
	handlers map[string][]EventHandler
	nextID   uint64
	acks     map[uint64]AckFunc
	oldest   uint64 // no pending ack has a smaller id
}

func (e *emitterState) active() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.handlers) > 0 || len(e.acks) > 0
}

// ReservedSparkEvent reports whether a server-side Primus spark reserves the
// event name (spark.reserved() of Primus 8): "incoming::" and "outgoing::"
// names, readyStateChange, heartbeat, error, data, end, and, as the
// original's `in` test finds them, the names of Object.prototype's
// properties (toString, constructor, __proto__, ...). Events with such
// names from clients are dropped: Spark.OnEvent handlers for them never run.
func ReservedSparkEvent(name string) bool { return protocol.ReservedSparkEvent(name) }

// ReservedClientEvent reports whether a Primus client (primus.reserved() in
// the browser) reserves the event name: the client events (open, data,
// error, close, end, reconnect, "reconnect scheduled", ...), "incoming::"
// and "outgoing::" names and the names of Object.prototype's properties.
// Clients drop events with such names, so Send refuses them. Names starting
// with newListener or removeListener are refused too, as primus-emitter's
// send ignores them.
func ReservedClientEvent(name string) bool {
	return protocol.ReservedClientEvent(name) || protocol.EmitterIgnores(name)
}

func checkEvent(event string) error {
	if ReservedClientEvent(event) {
		return fmt.Errorf("%w %q", ErrReservedEvent, event)
	}
	return nil
}

func eventData(event string, args []any) []any {
	return append([]any{event}, args...)
}

// OnEvent adds a handler for the client's events named name (sent with
// primus.send(name, ...) in the browser, client.Send in Go), in
// primus-emitter's format. Handlers run on the spark's reader goroutine, in
// the order added, before the OnData handlers, which see the event packet
// as data too (as in Primus, where the plugin listens to "data"). Events
// with a name that ReservedSparkEvent reports are dropped, as the original
// does, so a handler for such a name never runs. Events whose name is not a
// JSON string, and malformed packets, are ignored.
func (s *Spark) OnEvent(name string, fn func(s *Spark, args []json.RawMessage, ack func(v ...any) error)) {
	e := &s.emitter
	e.mu.Lock()
	if e.handlers == nil {
		e.handlers = make(map[string][]EventHandler)
	}
	e.handlers[name] = append(e.handlers[name], fn)
	e.mu.Unlock()
}

// Send sends the event to this client in primus-emitter's format (the
// browser client emits it as primus.on(event, ...)). The arguments are
// JSON-encoded; when the last one is an AckFunc (or a
// func([]json.RawMessage)) it is not sent but called with the client's
// acknowledgement, if one comes, as primus-emitter does with a callback
// last. Pending acknowledgements are forgotten when the spark closes, and
// the oldest beyond 1024 waiting (the client does not answer them).
//
// It returns ErrReservedEvent for a name that clients reserve, and the
// errors of Write.
func (s *Spark) Send(event string, args ...any) error {
	if err := checkEvent(event); err != nil {
		return err
	}
	var ack AckFunc
	if n := len(args); n > 0 {
		switch fn := args[n-1].(type) {
		case AckFunc:
			ack = fn
		case func([]json.RawMessage):
			ack = fn
		}
		if ack != nil {
			args = args[:n-1]
		}
	}
	p := eventPacket{Type: protocol.PacketEvent, Data: eventData(event, args)}
	if ack == nil {
		return s.Write(p)
	}
	b, err := s.srv.encode(p) // before an id is taken: an unencodable event takes none
	if err != nil {
		return err
	}
	e := &s.emitter
	e.mu.Lock()
	e.nextID++
	id := e.nextID
	if e.acks == nil {
		e.acks = make(map[uint64]AckFunc)
	}
	for len(e.acks) >= maxPendingAcks { // ids only grow: amortised O(1)
		_, ok := e.acks[e.oldest]
		delete(e.acks, e.oldest)
		e.oldest++
		if ok {
			break
		}
	}
	e.acks[id] = ack
	e.mu.Unlock()
	// The packet is encoded again with its id; the arguments encoded once
	// already, so this cannot fail differently.
	p.ID = id
	if b, err = s.srv.encode(p); err == nil {
		err = s.writeText(b)
	}
	if err != nil {
		e.mu.Lock()
		delete(e.acks, id)
		e.mu.Unlock()
	}
	return err
}

// Send sends the event to every member of r's rooms, on every node, in
// primus-emitter's format: it is a room Write of the event packet, so it
// crosses nodes through any broker, and in the Redis broker's compat mode
// the payload is what a Node node writing the same packet to a
// primus-redis-rooms room publishes. Room events take no acknowledgement.
func (r Room) Send(event string, args ...any) error {
	if err := checkEvent(event); err != nil {
		return err
	}
	return r.Write(eventPacket{Type: protocol.PacketEvent, Data: eventData(event, args)})
}

// Send sends the event to every local spark (primus-emitter's
// primus.send), like Write; it is not distributed to other nodes.
func (srv *Server) Send(event string, args ...any) error {
	if err := checkEvent(event); err != nil {
		return err
	}
	return srv.Write(eventPacket{Type: protocol.PacketEvent, Data: eventData(event, args)})
}

// handleEvent runs the emitter on a data message before the data handlers:
// an event packet calls the OnEvent handlers of its name, an
// acknowledgement the AckFunc of its id. Anything else is left alone.
func (s *Spark) handleEvent(d Data) {
	if d.binary || !s.emitter.active() {
		return
	}
	p, ok := protocol.DecodePacket(d.raw)
	if !ok {
		return
	}
	e := &s.emitter
	if p.Ack {
		id, ok := protocol.AckKey(p.IDNum)
		if !ok {
			return
		}
		e.mu.Lock()
		fn := e.acks[id]
		delete(e.acks, id)
		e.mu.Unlock()
		if fn != nil {
			fn(p.Args)
		}
		return
	}
	if ReservedSparkEvent(p.Event) {
		return
	}
	e.mu.Lock()
	handlers := e.handlers[p.Event]
	e.mu.Unlock()
	if len(handlers) == 0 {
		return
	}
	var ack func(v ...any) error
	if p.ID != nil {
		ack = s.acker(p.ID)
	}
	for _, fn := range handlers {
		fn(s, p.Args, ack)
	}
}

// acker returns the acknowledgement function of an event with the given id.
func (s *Spark) acker(id json.RawMessage) func(v ...any) error {
	var (
		mu   sync.Mutex
		sent bool
	)
	return func(v ...any) error {
		mu.Lock()
		defer mu.Unlock()
		if sent {
			return ErrAckSent
		}
		sent = true
		if v == nil {
			v = []any{}
		}
		return s.Write(ackPacket{ID: id, Type: protocol.PacketAck, Data: v})
	}
}
