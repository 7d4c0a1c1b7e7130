package primus

import (
	"encoding/json"
	"fmt"
)

// Data is one message received from a client: JSON text, or raw bytes for a
// binary frame (the JSON parser passes binary frames through undecoded).
type Data struct {
	raw    []byte
	binary bool
}

// IsBinary reports whether the client sent a binary frame.
func (d Data) IsBinary() bool { return d.binary }

// Bytes returns the message: JSON text, or the binary payload.
func (d Data) Bytes() []byte { return d.raw }

// JSON returns the message as JSON text (nil for binary messages).
func (d Data) JSON() json.RawMessage {
	if d.binary {
		return nil
	}
	return d.raw
}

// Decode unmarshals the JSON message into v.
func (d Data) Decode(v any) error {
	if d.binary {
		return fmt.Errorf("primus: cannot decode a binary message as JSON")
	}
	return json.Unmarshal(d.raw, v)
}

// String returns the JSON text (or a note for binary data).
func (d Data) String() string {
	if d.binary {
		return fmt.Sprintf("<binary %d bytes>", len(d.raw))
	}
	return string(d.raw)
}
