package client

import (
	"encoding/json"
)

// Message is one message received from the server.
//
// Primus sends every message as one WebSocket text frame holding a JSON
// value; Data holds that JSON text (any JSON value: object, string, number,
// null, ...). A server may also send a binary frame, which Primus passes
// through undecoded; Binary then holds its bytes and Data is nil.
//
// A message of a room joined with Recover is positioned: Room, Offset and
// Epoch say where it stands in the room's history, and Data is the data
// written to the room (the "data" of the server's
// {"room","offset","epoch","data"} frame). Other messages have Room empty.
type Message struct {
	Data   json.RawMessage
	Binary []byte

	// Room is the room of a positioned message, "" for others.
	Room string
	// Offset is the message's offset in the room's history: offsets
	// grow by one per write to the room (a client sees gaps where writes
	// excepted it).
	Offset uint64
	// Epoch names the room's history the offset counts in; it changes
	// when the server lost the history (see Options.OnRecover).
	Epoch string
}

// IsBinary reports whether the message came in a binary frame.
func (m Message) IsBinary() bool { return m.Data == nil && m.Binary != nil }

// Decode unmarshals the JSON data into v (see encoding/json.Unmarshal). It
// returns ErrBinary for a binary message.
func (m Message) Decode(v any) error {
	if m.IsBinary() {
		return ErrBinary
	}
	return json.Unmarshal(m.Data, v)
}
