package protocol

import (
	"bytes"
	"encoding/json"
	"math"
	"regexp"
	"slices"
)

// primus-emitter's packet types.
const (
	PacketEvent = 0
	PacketAck   = 1
)

// Packet is a decoded primus-emitter packet: {"type":0,"data":[event, args...],"id":N}
// or {"type":1,"data":[values...],"id":N}.
type Packet struct {
	Ack   bool
	Event string            // for events: the name (only string names are taken)
	Args  []json.RawMessage // event arguments, or the acknowledged values
	ID    json.RawMessage   // a truthy numeric id as JSON.stringify writes it; nil if none
	IDNum float64
}

// DecodePacket takes a packet the way the plugin's ondata does: an object
// whose "data" is an array, whose "id", when truthy, is a number, and whose
// "type" is the number 0 (an event, named by a string first) or 1 (an
// ack). Keys are exact and the last of duplicates wins (JSON.parse's
// rules). It never panics on hostile input.
func DecodePacket(raw []byte) (Packet, bool) {
	var p Packet
	t := bytes.TrimLeft(raw, " \t\r\n")
	if len(t) == 0 || t[0] != '{' {
		return p, false
	}
	var obj map[string]json.RawMessage
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
		p.ID, p.IDNum = enc, f
	}
	var typ float64
	// A number 0 or 1 (the plugin switches with ===: "0" is no type).
	if tv, ok := obj["type"]; !ok || json.Unmarshal(tv, &typ) != nil || (typ != PacketEvent && typ != PacketAck) {
		return p, false
	}
	if typ == PacketAck {
		p.Ack, p.Args = true, data
		return p, true
	}
	if len(data) == 0 || json.Unmarshal(data[0], &p.Event) != nil || bytes.TrimSpace(data[0])[0] != '"' {
		return Packet{}, false
	}
	p.Args = data[1:]
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

// AckKey maps an acknowledgement's id to the key of a pending callback (the
// original looks it up as acks[id], so 1 and 1.0 are the same).
func AckKey(f float64) (uint64, bool) {
	if f < 1 || f > 1<<53 || f != math.Trunc(f) {
		return 0, false
	}
	return uint64(f), true
}

// objectProtoNames are the properties of JavaScript's Object.prototype:
// primus-emitter tests reserved names with `name in reserved.events`, which
// also finds these, so the originals drop events named like them.
var objectProtoNames = []string{"constructor", "__defineGetter__", "__defineSetter__", "hasOwnProperty",
	"__lookupGetter__", "__lookupSetter__", "isPrototypeOf", "propertyIsEnumerable", "toString",
	"valueOf", "__proto__", "toLocaleString"}

var (
	internalEvent  = regexp.MustCompile(`^(incoming|outgoing)::`)
	emitterIgnored = regexp.MustCompile(`^(newListener|removeListener)`)
)

func reservedIn(name string, events []string) bool {
	return internalEvent.MatchString(name) || slices.Contains(events, name) || slices.Contains(objectProtoNames, name)
}

// ReservedSparkEvent reports whether a server-side Primus spark reserves the
// event name (spark.reserved() of Primus 8): "incoming::" and "outgoing::"
// names, readyStateChange, heartbeat, error, data, end, and the names of
// Object.prototype's properties.
func ReservedSparkEvent(name string) bool {
	return reservedIn(name, []string{"readyStateChange", "heartbeat", "error", "data", "end"})
}

// ReservedClientEvent reports whether a Primus client (primus.reserved() in
// the browser) reserves the event name: its own events, "incoming::" and
// "outgoing::" names and the names of Object.prototype's properties.
func ReservedClientEvent(name string) bool {
	return reservedIn(name, []string{"reconnect scheduled", "reconnect timeout", "readyStateChange",
		"reconnect failed", "reconnected", "reconnect", "offline", "timeout", "destroy", "online",
		"error", "close", "open", "data", "end"})
}

// EmitterIgnores reports whether primus-emitter's send ignores the name
// (newListener and removeListener prefixes).
func EmitterIgnores(name string) bool { return emitterIgnored.MatchString(name) }
