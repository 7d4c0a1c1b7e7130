package primus

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"regexp"
	"sync"
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

const (
	packetEvent = 0
	packetAck   = 1
)

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

// emitterState is a spark's part of the emitter: handlers and pending acks.
type emitterState struct {
	mu       sync.Mutex
	handlers map[string][]EventHandler
	nextID   uint64
	acks     map[uint64]AckFunc
}

func (e *emitterState) active() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.handlers) > 0 || len(e.acks) > 0
}

// objectProtoNames are the properties of JavaScript's Object.prototype:
// primus-emitter tests reserved names with `name in reserved.events`, which
// also finds these, so the originals drop events named like them.
var objectProtoNames = []string{"constructor", "__defineGetter__", "__defineSetter__", "hasOwnProperty",
	"__lookupGetter__", "__lookupSetter__", "isPrototypeOf", "propertyIsEnumerable", "toString",
	"valueOf", "__proto__", "toLocaleString"}

var internalEvent = regexp.MustCompile(`^(incoming|outgoing)::`)

func reservedIn(name string, events []string) bool {
	if internalEvent.MatchString(name) {
		return true
	}
	for _, e := range events {
		if name == e {
			return true
		}
	}
	for _, e := range objectProtoNames {
		if name == e {
			return true
		}
	}
	return false
}

// ReservedSparkEvent reports whether a server-side Primus spark reserves the
// event name (spark.reserved() of Primus 8): "incoming::" and "outgoing::"
// names, readyStateChange, heartbeat, error, data, end, and, as the
// original's `in` test finds them, the names of Object.prototype's
// properties (toString, constructor, __proto__, ...). Events with such
// names from clients are dropped: Spark.OnEvent handlers for them never run.
func ReservedSparkEvent(name string) bool {
	return reservedIn(name, []string{"readyStateChange", "heartbeat", "error", "data", "end"})
}

// ReservedClientEvent reports whether a Primus client (primus.reserved() in
// the browser) reserves the event name: the client events (open, data,
// error, close, end, reconnect, "reconnect scheduled", ...), "incoming::"
// and "outgoing::" names and the names of Object.prototype's properties.
// Clients drop events with such names, so Send refuses them. Names starting
// with newListener or removeListener are refused too, as primus-emitter's
// send ignores them.
func ReservedClientEvent(name string) bool {
	return reservedIn(name, []string{"reconnect scheduled", "reconnect timeout", "readyStateChange",
		"reconnect failed", "reconnected", "reconnect", "offline", "timeout", "destroy", "online",
		"error", "close", "open", "data", "end"}) || emitterIgnored.MatchString(name)
}

var emitterIgnored = regexp.MustCompile(`^(newListener|removeListener)`)

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
// last. Pending acknowledgements are forgotten when the spark closes.
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
	p := eventPacket{Type: packetEvent, Data: eventData(event, args)}
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
	return r.Write(eventPacket{Type: packetEvent, Data: eventData(event, args)})
}

// Send sends the event to every local spark (primus-emitter's
// primus.send), like Write; it is not distributed to other nodes.
func (srv *Server) Send(event string, args ...any) error {
	if err := checkEvent(event); err != nil {
		return err
	}
	return srv.Write(eventPacket{Type: packetEvent, Data: eventData(event, args)})
}

// handleEvent runs the emitter on a data message before the data handlers:
// an event packet calls the OnEvent handlers of its name, an
// acknowledgement the AckFunc of its id. Anything else is left alone.
func (s *Spark) handleEvent(d Data) {
	if d.binary || !s.emitter.active() {
		return
	}
	p, ok := decodePacket(d.raw)
	if !ok {
		return
	}
	e := &s.emitter
	switch p.typ {
	case packetEvent:
		if ReservedSparkEvent(p.event) {
			return
		}
		e.mu.Lock()
		handlers := e.handlers[p.event]
		e.mu.Unlock()
		if len(handlers) == 0 {
			return
		}
		var ack func(v ...any) error
		if p.id != nil {
			ack = s.acker(p.id)
		}
		for _, fn := range handlers {
			fn(s, p.args, ack)
		}
	case packetAck:
		id, ok := ackKey(p.idNum)
		if !ok {
			return
		}
		e.mu.Lock()
		fn := e.acks[id]
		delete(e.acks, id)
		e.mu.Unlock()
		if fn != nil {
			fn(p.args)
		}
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
		return s.Write(ackPacket{ID: id, Type: packetAck, Data: v})
	}
}

// packet is a decoded primus-emitter packet.
type packet struct {
	typ   int
	event string // for events: the name (only string names are taken)
	args  []json.RawMessage
	id    json.RawMessage // a truthy numeric id, re-encoded as JavaScript writes it; nil if none
	idNum float64
}

// decodePacket decodes a primus-emitter packet the way the plugin's ondata
// takes one: an object whose "data" is an array, whose "id", when truthy,
// is a number, and whose "type" is the number 0 or 1. It never panics on
// hostile input (the size is bounded by MaxLength before this).
func decodePacket(raw []byte) (packet, bool) {
	var p packet
	t := bytes.TrimLeft(raw, " \t\r\n")
	if len(t) == 0 || t[0] != '{' {
		return p, false
	}
	var obj map[string]json.RawMessage // exact keys, the last of duplicates wins: JSON.parse's rules
	if json.Unmarshal(t, &obj) != nil {
		return p, false
	}
	var data []json.RawMessage
	if d, ok := obj["data"]; !ok || json.Unmarshal(d, &data) != nil || data == nil {
		return p, false
	}
	if rawID, ok := obj["id"]; ok && truthy(rawID) {
		var f float64
		if json.Unmarshal(rawID, &f) != nil { // a truthy id that is not a number
			return p, false
		}
		enc, err := json.Marshal(f) // JSON.stringify's spelling of the number
		if err != nil {
			return p, false
		}
		p.id, p.idNum = enc, f
	}
	var typ float64
	// A number 0 or 1 (the plugin switches with ===: "0" is no type).
	if tv, ok := obj["type"]; !ok || json.Unmarshal(tv, &typ) != nil || (typ != packetEvent && typ != packetAck) {
		return p, false
	}
	p.typ = int(typ)
	if p.typ == packetAck {
		p.args = data
		return p, true
	}
	if len(data) == 0 {
		return p, false
	}
	var name any
	if json.Unmarshal(data[0], &name) != nil {
		return p, false
	}
	s, ok := name.(string)
	if !ok {
		return p, false
	}
	p.event, p.args = s, data[1:]
	return p, true
}

// truthy is JavaScript's truthiness of a JSON value.
func truthy(v json.RawMessage) bool {
	var x any
	if json.Unmarshal(v, &x) != nil {
		return false
	}
	switch x := x.(type) {
	case nil:
		return false
	case bool:
		return x
	case float64:
		return x != 0
	case string:
		return x != ""
	}
	return true
}

// ackKey maps an acknowledgement's id to the key of a pending AckFunc (the
// original looks it up as acks[id], so 1 and 1.0 are the same).
func ackKey(f float64) (uint64, bool) {
	if f < 1 || f > 1<<53 || f != math.Trunc(f) {
		return 0, false
	}
	return uint64(f), true
}
