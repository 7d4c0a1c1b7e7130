package bench

import (
	"bytes"
	"fmt"
	"strconv"
)

// A dialect is a server's client protocol as the generator speaks it: the
// commands a client sends (open a session, join a room, publish) and what
// it makes of the server's messages. Everything else is the same for every
// stack: the WebSocket client (wire.go), the epoll loops, the benchmark
// payload inside the data, its timestamps and sequence numbers, and how
// latency, loss and duplicates are counted.
//
// Commands carry an id (the first command of a connection has id 1) for
// dialects that answer commands by id; a dialect that does not need one
// ignores it.
type dialect interface {
	// name is the protocol's name (primus-bench run -protocol).
	name() string
	// path is the request path, with its query, of a node's WebSocket
	// endpoint.
	path() string
	// hello appends the command that opens a session after the upgrade,
	// or returns dst and false when a connection is open at once.
	hello(dst []byte, id uint32) ([]byte, bool)
	// join appends the command that makes the client a member of room and
	// is answered (msgReply or msgRefused) with id.
	join(dst []byte, id uint32, room string) []byte
	// publish appends the command that sends data to the members of room.
	publish(dst []byte, id uint32, room string, data []byte) []byte
	// next splits the first message off a text frame's payload (some
	// protocols send several messages per frame).
	next(p []byte) (msg, rest []byte)
	// classify says what one server message is: for msgData, data is the
	// delivered payload (aliasing msg); for msgReply and msgRefused, id is
	// the command answered.
	classify(msg []byte) (kind msgKind, data []byte, id uint32)
	// pong appends the answer to the heartbeat ping.
	pong(dst, ping []byte) []byte
}

// msgKind is what a server message is to the generator.
type msgKind uint8

const (
	msgOther   msgKind = iota // anything else (counted, ignored)
	msgData                   // a delivery: data is the published payload
	msgPing                   // a heartbeat the client answers with pong
	msgReply                  // a command's success
	msgRefused                // a command's failure
)

// Protocol names.
const (
	ProtoPrimus        = "primus"
	ProtoPrimusRecover = "primus-recover"
	ProtoCentrifuge    = "centrifuge"
)

// dialectFor returns the named dialect ("" is Primus).
func dialectFor(name string) (dialect, error) {
	switch name {
	case "", ProtoPrimus:
		return primusDialect{}, nil
	case ProtoPrimusRecover:
		return primusRecoverDialect{}, nil
	case ProtoCentrifuge:
		return centrifugeDialect{}, nil
	}
	return nil, fmt.Errorf("unknown protocol %q (want %s, %s or %s)", name, ProtoPrimus, ProtoPrimusRecover, ProtoCentrifuge)
}

// primusDialect is the command protocol of the Primus stacks (the Node
// fixture, cmd/primus-server and the floor server): Primus's JSON parser,
// one message per frame, {"join":"r","ack":N} answered with
// {"ack":N,"ok":true}, {"publish":{"room":"r","data":X}} without an
// answer, the delivered data as the whole message, and Primus heartbeats
// "primus::ping::<t>" answered with "primus::pong::<t>".
type primusDialect struct{}

func (primusDialect) name() string { return ProtoPrimus }

func (primusDialect) path() string { return "/primus?_primuscb=bench" }

func (primusDialect) hello(dst []byte, _ uint32) ([]byte, bool) { return dst, false }

func (primusDialect) join(dst []byte, id uint32, room string) []byte {
	dst = append(dst, `{"join":`...)
	dst = strconv.AppendQuote(dst, room)
	dst = append(dst, `,"ack":`...)
	dst = strconv.AppendUint(dst, uint64(id), 10)
	return append(dst, '}')
}

func (primusDialect) publish(dst []byte, _ uint32, room string, data []byte) []byte {
	return appendPublishCommand(dst, room, data)
}

func (primusDialect) next(p []byte) (msg, rest []byte) { return p, nil }

func (primusDialect) classify(msg []byte) (msgKind, []byte, uint32) {
	switch {
	case bytes.HasPrefix(msg, msgPrefix):
		return msgData, msg, 0
	case bytes.HasPrefix(msg, pingPrefix):
		return msgPing, nil, 0
	case bytes.HasPrefix(msg, ackPrefix):
		id, _, ok := parseUint(msg, len(ackPrefix))
		if ok && bytes.Contains(msg, []byte(`"ok":true`)) {
			return msgReply, nil, id
		}
		return msgRefused, nil, id
	}
	return msgOther, nil, 0
}

func (primusDialect) pong(dst, ping []byte) []byte { return pongFor(dst, ping) }

// primusRecoverDialect is the Primus command protocol with positioned
// delivery (room history, docs/history.md): joins ask for it with
// "recover":true, and each delivery arrives as
// {"room":"r","offset":N,"epoch":"E","data":X}, of which the generator
// checks X as it checks plain deliveries.
type primusRecoverDialect struct{ primusDialect }

var (
	positionedPrefix = []byte(`{"room":"`)
	positionedData   = []byte(`,"data":`)
)

func (primusRecoverDialect) name() string { return ProtoPrimusRecover }

func (primusRecoverDialect) join(dst []byte, id uint32, room string) []byte {
	dst = append(dst, `{"join":`...)
	dst = strconv.AppendQuote(dst, room)
	dst = append(dst, `,"recover":true,"ack":`...)
	dst = strconv.AppendUint(dst, uint64(id), 10)
	return append(dst, '}')
}

func (d primusRecoverDialect) classify(msg []byte) (msgKind, []byte, uint32) {
	if !bytes.HasPrefix(msg, positionedPrefix) {
		return d.primusDialect.classify(msg)
	}
	// The benchmark's room names need no escaping, and "data" is the
	// last member.
	i := bytes.Index(msg, positionedData)
	if i < 0 || msg[len(msg)-1] != '}' {
		return msgOther, nil, 0
	}
	return msgData, msg[i+len(positionedData) : len(msg)-1], 0
}

// appendPublishCommand appends the Primus stacks' publish command.
func appendPublishCommand(dst []byte, room string, data []byte) []byte {
	dst = append(dst, `{"publish":{"room":"`...)
	dst = append(dst, room...)
	dst = append(dst, `","data":`...)
	dst = append(dst, data...)
	return append(dst, "}}"...)
}

// centrifugeDialect is Centrifuge's client protocol v2 with JSON encoding
// (github.com/centrifugal/protocol, as centrifuge v0.40.1 speaks it): a
// session opens with {"id":1,"connect":{}} (answered {"id":1,"connect":
// {...}}); a room is the channel of the same name, joined with
// {"id":N,"subscribe":{"channel":"r"}} (answered {"id":N,"subscribe":{}},
// or {"id":N,"error":{...}}); a publish is {"id":N,"publish":{"channel":
// "r","data":X}} (a command without an id is taken for a pong, so every
// publish has one and is answered {"id":N,"publish":{}}); a publication
// arrives as {"push":{"channel":"r","pub":{"data":X}}}; the server pings
// with an empty message {} and the client answers {}. The server may put
// several messages in one frame, separated by newlines.
type centrifugeDialect struct{}

var (
	cfPushPrefix = []byte(`{"push":{"channel":"`)
	cfPubData    = []byte(`,"pub":{"data":`)
	cfIDPrefix   = []byte(`{"id":`)
	cfError      = []byte(`,"error":`)
	cfPing       = []byte(`{}`)
)

func (centrifugeDialect) name() string { return ProtoCentrifuge }

func (centrifugeDialect) path() string { return "/connection/websocket" }

func appendCentrifugeID(dst []byte, id uint32) []byte {
	dst = append(dst, cfIDPrefix...)
	return strconv.AppendUint(dst, uint64(id), 10)
}

func (centrifugeDialect) hello(dst []byte, id uint32) ([]byte, bool) {
	dst = appendCentrifugeID(dst, id)
	return append(dst, `,"connect":{}}`...), true
}

func (centrifugeDialect) join(dst []byte, id uint32, room string) []byte {
	dst = appendCentrifugeID(dst, id)
	dst = append(dst, `,"subscribe":{"channel":`...)
	dst = strconv.AppendQuote(dst, room)
	return append(dst, "}}"...)
}

func (centrifugeDialect) publish(dst []byte, id uint32, room string, data []byte) []byte {
	dst = appendCentrifugeID(dst, id)
	dst = append(dst, `,"publish":{"channel":"`...)
	dst = append(dst, room...)
	dst = append(dst, `","data":`...)
	dst = append(dst, data...)
	return append(dst, "}}"...)
}

func (centrifugeDialect) next(p []byte) (msg, rest []byte) {
	if i := bytes.IndexByte(p, '\n'); i >= 0 {
		return p[:i], p[i+1:]
	}
	return p, nil
}

func (centrifugeDialect) classify(msg []byte) (msgKind, []byte, uint32) {
	switch {
	case bytes.HasPrefix(msg, cfPushPrefix):
		// The benchmark's channel names need no escaping.
		rest := msg[len(cfPushPrefix):]
		q := bytes.IndexByte(rest, '"')
		if q < 0 || !bytes.HasPrefix(rest[q+1:], cfPubData) {
			return msgOther, nil, 0 // join, leave, unsubscribe, disconnect...
		}
		return msgData, rest[q+1+len(cfPubData):], 0
	case bytes.Equal(msg, cfPing):
		return msgPing, nil, 0
	case bytes.HasPrefix(msg, cfIDPrefix):
		id, i, ok := parseUint(msg, len(cfIDPrefix))
		if !ok {
			return msgOther, nil, 0
		}
		if bytes.HasPrefix(msg[i:], cfError) {
			return msgRefused, nil, id
		}
		return msgReply, nil, id
	}
	return msgOther, nil, 0
}

func (centrifugeDialect) pong(dst, _ []byte) []byte { return append(dst, cfPing...) }

// parseUint parses the decimal number at p[i:] (up to 10 digits).
func parseUint(p []byte, i int) (v uint32, next int, ok bool) {
	start := i
	var n uint64
	for i < len(p) && p[i] >= '0' && p[i] <= '9' && i-start < 10 {
		n = n*10 + uint64(p[i]-'0')
		i++
	}
	if i == start || n > 1<<32-1 {
		return 0, i, false
	}
	return uint32(n), i, true
}
