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
type Message struct {
	Data   json.RawMessage
	Binary []byte
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
