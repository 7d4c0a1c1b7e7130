package client

import (
	"encoding/json"
	"errors"
	"fmt"
	"sync"

	"github.com/primusgo/primus/internal/protocol"
)

// Named events in the format of primus-emitter 3.1.1 (the server's
// spark.send('news', ...) and primus.room(r).send(...), this module's
// Spark.Send and Room.Send): {"type":0,"data":["news",args...]} for an
// event, with "id":n when the sender wants an acknowledgement, answered by
// {"id":n,"type":1,"data":[reply...]}.

// ErrReservedEvent is returned by Send for an event name that Primus
// reserves: names starting with "incoming::" or "outgoing::", the server
// spark's own events (data, end, error, heartbeat, readyStateChange) and
// the names of JavaScript's Object.prototype properties (toString, ...),
// which a Primus server with primus-emitter drops; and names starting with
// newListener or removeListener, which primus-emitter does not send.
var ErrReservedEvent = errors.New("primus client: reserved event name")

// ErrAckSent is returned by an acknowledgement function called again: only
// the first call sends.
var ErrAckSent = errors.New("primus client: acknowledgement already sent")

// AckFunc receives the arguments of the server's acknowledgement of an
// event sent with Send.
type AckFunc func(args []json.RawMessage)

// EventHandler handles an event from the server (see On).
type EventHandler func(args []json.RawMessage, ack func(v ...any) error)

// maxPendingAcks bounds the acknowledgements the client waits for: a
// server that never answers (or the spark of a lost connection) would
// otherwise grow them for the client's life. Beyond it the oldest is
// forgotten (its AckFunc never runs).
const maxPendingAcks = 1024

type emitter struct {
	mu       sync.Mutex
	handlers map[string][]EventHandler
	nextID   uint64 // ids of events sent, from 1, for the client's life (as the browser client's)
	acks     map[uint64]AckFunc
	oldest   uint64 // no pending ack has a smaller id
}

// On adds a handler for the server's events named event. Handlers run on
// the connection's reader goroutine, in the order added, with the same
// rules as Options.Handler (they must not block for long or call Close). An
// event that has a handler is consumed: it does not reach Messages or
// Options.Handler; events without one arrive there as ordinary messages.
// ack is nil when the server asked for no acknowledgement; its first call
// sends its values (JSON-encoded) to the server's callback. Events named
// like the browser client's own events (open, data, end, reconnect, ...,
// "incoming::" names) are dropped by the browser client and never reach
// handlers here either.
func (c *Client) On(event string, fn func(args []json.RawMessage, ack func(v ...any) error)) {
	e := &c.emitter
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.handlers == nil {
		e.handlers = make(map[string][]EventHandler)
	}
	e.handlers[event] = append(e.handlers[event], fn)
}

// Send sends the event to the server (spark.on(event, ...) there), its
// arguments JSON-encoded, queued like Write. When the last argument is an
// AckFunc (or a func([]json.RawMessage)) it is not sent but called with the
// server's acknowledgement, if one comes, on the reader goroutine; pending
// acknowledgements are kept until answered or the client ends (a server
// that lost the connection in between never answers), at most 1024: beyond
// that the oldest is forgotten.
func (c *Client) Send(event string, args ...any) error {
	if protocol.ReservedSparkEvent(event) || protocol.EmitterIgnores(event) {
		return wrapErr("send", fmt.Errorf("%w %q", ErrReservedEvent, event))
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
	p := struct {
		Type int    `json:"type"`
		Data []any  `json:"data"`
		ID   uint64 `json:"id,omitempty"`
	}{Data: append([]any{event}, args...)}
	if ack == nil {
		return c.Write(p)
	}
	if _, err := json.Marshal(p.Data); err != nil { // before an id is taken
		return wrapErr("send", err)
	}
	e := &c.emitter
	e.mu.Lock()
	e.nextID++
	p.ID = e.nextID
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
	e.acks[p.ID] = ack
	e.mu.Unlock()
	err := c.Write(p)
	if err != nil {
		e.mu.Lock()
		delete(e.acks, p.ID)
		e.mu.Unlock()
	}
	return err
}

// handleEvent runs the handlers of an event packet or the AckFunc of an
// acknowledgement, and reports whether it consumed the message.
func (c *Client) handleEvent(b []byte) bool {
	e := &c.emitter
	e.mu.Lock()
	active := len(e.handlers) > 0 || len(e.acks) > 0
	e.mu.Unlock()
	if !active {
		return false
	}
	p, ok := protocol.DecodePacket(b)
	if !ok {
		return false
	}
	if p.Ack {
		id, ok := protocol.AckKey(p.IDNum)
		if !ok {
			return false
		}
		e.mu.Lock()
		fn := e.acks[id]
		delete(e.acks, id)
		e.mu.Unlock()
		if fn == nil {
			return false
		}
		fn(p.Args)
		return true
	}
	if protocol.ReservedClientEvent(p.Event) {
		return false
	}
	e.mu.Lock()
	handlers := e.handlers[p.Event]
	e.mu.Unlock()
	if len(handlers) == 0 {
		return false
	}
	var ack func(v ...any) error
	if p.ID != nil {
		ack = c.acker(p.ID)
	}
	for _, fn := range handlers {
		fn(p.Args, ack)
	}
	return true
}

func (c *Client) acker(id json.RawMessage) func(v ...any) error {
	var (
		mu   sync.Mutex
		sent bool
	)
	return func(v ...any) error {
		mu.Lock()
		defer mu.Unlock()
		if sent {
			return wrapErr("ack", ErrAckSent)
		}
		sent = true
		if v == nil {
			v = []any{}
		}
		return c.Write(struct {
			ID   json.RawMessage `json:"id"`
			Type int             `json:"type"`
			Data []any           `json:"data"`
		}{id, protocol.PacketAck, v})
	}
}
