package ws

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"unicode/utf8"
)

// Opcodes (RFC 6455 §5.2).
const (
	OpContinuation = 0x0
	OpText         = 0x1
	OpBinary       = 0x2
	OpClose        = 0x8
	OpPing         = 0x9
	OpPong         = 0xA
)

// Close codes used by the server (RFC 6455 §7.4.1).
const (
	CloseNormal          = 1000
	CloseGoingAway       = 1001
	CloseProtocolError   = 1002
	CloseNoStatus        = 1005 // never sent: an empty close frame means "no status"
	CloseInvalidData     = 1007
	ClosePolicyViolation = 1008
	CloseTooBig          = 1009
	CloseTryAgainLater   = 1013
)

// readBufferSize is small on purpose: heartbeats and commands fit, larger
// payloads are read straight into their own buffer.
const readBufferSize = 512

// CloseError is a close frame received from the peer, or the close the
// server must send because of what the peer sent (Code 0 = no status).
type CloseError struct {
	Code   int
	Reason string
}

func (e *CloseError) Error() string {
	if e.Code == 0 {
		return "websocket: closed without status"
	}
	return fmt.Sprintf("websocket: close %d %s", e.Code, e.Reason)
}

// ErrTooBig is wrapped by the error ReadMessage returns for a message over the limit.
var ErrTooBig = errors.New("message too big")

// ProtocolError is a frame that breaks RFC 6455; the connection must be
// closed with Code.
type ProtocolError struct {
	Code int
	Msg  string
}

func (e *ProtocolError) Error() string { return "websocket: " + e.Msg }

// Reader reads client frames from one connection.
type Reader struct {
	br  *bufio.Reader
	hdr [8]byte
}

// Message is one data message.
type Message struct {
	Binary  bool
	Payload []byte
}

// Control is called for ping frames (with their payload) while reading.
type Control func(op byte, payload []byte)

// ReadMessage returns the next data message, at most limit bytes long
// (fragments included). Ping and pong frames go to onControl; a close frame
// is returned as *CloseError. Violations return *ProtocolError.
func (r *Reader) ReadMessage(limit int64, onControl Control) (Message, error) {
	var msg Message
	started := false
	for {
		fin, op, payload, err := r.readFrame(limit, int64(len(msg.Payload)))
		if err != nil {
			return Message{}, err
		}
		switch op {
		case OpPing, OpPong:
			onControl(op, payload)
			continue
		case OpClose:
			return Message{}, parseClose(payload)
		case OpText, OpBinary:
			if started {
				return Message{}, &ProtocolError{CloseProtocolError, "new data frame inside a fragmented message"}
			}
			started = true
			msg.Binary = op == OpBinary
			msg.Payload = payload
		case OpContinuation:
			if !started {
				return Message{}, &ProtocolError{CloseProtocolError, "continuation frame without a message"}
			}
			msg.Payload = append(msg.Payload, payload...)
		default:
			return Message{}, &ProtocolError{CloseProtocolError, fmt.Sprintf("unknown opcode %#x", op)}
		}
		if fin {
			if !msg.Binary && !utf8.Valid(msg.Payload) {
				return Message{}, &ProtocolError{CloseInvalidData, "text message is not valid UTF-8"}
			}
			if msg.Payload == nil {
				msg.Payload = []byte{}
			}
			return msg, nil
		}
	}
}

func parseClose(p []byte) error {
	switch {
	case len(p) == 0:
		return &CloseError{}
	case len(p) == 1:
		return &ProtocolError{CloseProtocolError, "close frame with a 1-byte payload"}
	}
	code := int(binary.BigEndian.Uint16(p))
	if !validCloseCode(code) {
		return &ProtocolError{CloseProtocolError, fmt.Sprintf("invalid close code %d", code)}
	}
	if !utf8.Valid(p[2:]) {
		return &ProtocolError{CloseProtocolError, "close reason is not valid UTF-8"}
	}
	return &CloseError{Code: code, Reason: string(p[2:])}
}

// validCloseCode reports whether a peer may send code in a close frame
// (RFC 6455 §7.4; the same rule as the ws package Primus uses): 1004-1006
// and 1015 are reserved, other codes below 3000 are undefined.
func validCloseCode(code int) bool {
	return (code >= 1000 && code <= 1014 && code != 1004 && code != 1005 && code != 1006) ||
		(code >= 3000 && code <= 4999)
}

func (r *Reader) readFrame(limit, have int64) (fin bool, op byte, payload []byte, err error) {
	h := r.hdr[:2]
	if _, err = io.ReadFull(r.br, h); err != nil {
		return
	}
	fin = h[0]&0x80 != 0
	if h[0]&0x70 != 0 {
		err = &ProtocolError{CloseProtocolError, "reserved bits set (no extension was negotiated)"}
		return
	}
	op = h[0] & 0x0f
	if h[1]&0x80 == 0 {
		err = &ProtocolError{CloseProtocolError, "client frame is not masked"}
		return
	}
	n := int64(h[1] & 0x7f)
	control := op >= OpClose
	if control && (!fin || n > 125) {
		err = &ProtocolError{CloseProtocolError, "invalid control frame"}
		return
	}
	switch n {
	case 126:
		if _, err = io.ReadFull(r.br, r.hdr[:2]); err != nil {
			return
		}
		n = int64(binary.BigEndian.Uint16(r.hdr[:2]))
		if n < 126 {
			err = &ProtocolError{CloseProtocolError, "frame length not in its shortest form"}
			return
		}
	case 127:
		if _, err = io.ReadFull(r.br, r.hdr[:8]); err != nil {
			return
		}
		u := binary.BigEndian.Uint64(r.hdr[:8])
		if u>>63 != 0 {
			// RFC 6455 §5.2: the most significant bit MUST be 0.
			err = &ProtocolError{CloseProtocolError, "64-bit frame length with the top bit set"}
			return
		}
		if u <= 0xffff {
			err = &ProtocolError{CloseProtocolError, "frame length not in its shortest form"}
			return
		}
		n = int64(u)
	}
	if !control && have+n > limit {
		err = &ProtocolError{CloseTooBig, fmt.Sprintf("%v: %d bytes > limit %d", ErrTooBig, have+n, limit)}
		return
	}
	var mask [4]byte
	if _, err = io.ReadFull(r.br, mask[:]); err != nil {
		return
	}
	if payload, err = readPayload(r.br, n); err != nil {
		return
	}
	unmask(payload, mask)
	return
}

// eagerPayload is the largest payload allocated before its bytes arrive.
// Larger ones grow (at most doubling) as they come in, so that a frame
// header alone cannot make the server commit up to the read limit.
const eagerPayload = 64 << 10

func readPayload(r io.Reader, n int64) ([]byte, error) {
	if n <= eagerPayload {
		p := make([]byte, n)
		_, err := io.ReadFull(r, p)
		return p, err
	}
	p := make([]byte, 0, eagerPayload)
	for int64(len(p)) < n {
		if len(p) == cap(p) {
			p = slices.Grow(p, int(min(n-int64(len(p)), int64(len(p)))))
		}
		k, err := io.ReadFull(r, p[len(p):min(int64(cap(p)), n)])
		p = p[:len(p)+k]
		if err != nil {
			return nil, err
		}
	}
	return p, nil
}

func unmask(p []byte, mask [4]byte) {
	m := binary.LittleEndian.Uint32(mask[:])
	m64 := uint64(m) | uint64(m)<<32
	i := 0
	for ; i+8 <= len(p); i += 8 {
		v := binary.LittleEndian.Uint64(p[i:])
		binary.LittleEndian.PutUint64(p[i:], v^m64)
	}
	for ; i < len(p); i++ {
		p[i] ^= mask[i&3]
	}
}

// AppendFrame appends a final, unmasked server frame.
func AppendFrame(dst []byte, op byte, payload []byte) []byte {
	dst = AppendHeader(dst, op, len(payload))
	return append(dst, payload...)
}

// AppendHeader appends the header of a final, unmasked frame of n bytes.
func AppendHeader(dst []byte, op byte, n int) []byte {
	b0 := 0x80 | op
	switch {
	case n <= 125:
		return append(dst, b0, byte(n))
	case n <= 0xffff:
		return append(dst, b0, 126, byte(n>>8), byte(n))
	default:
		dst = append(dst, b0, 127)
		return binary.BigEndian.AppendUint64(dst, uint64(n))
	}
}

// HeaderLen is the length of the header AppendHeader writes for n bytes.
func HeaderLen(n int) int {
	switch {
	case n <= 125:
		return 2
	case n <= 0xffff:
		return 4
	default:
		return 10
	}
}

// CloseFrame builds a close frame; code 0 sends none (the peer sees 1005).
func CloseFrame(code int, reason string) []byte {
	if code == 0 {
		return []byte{0x80 | OpClose, 0}
	}
	if len(reason) > 123 {
		reason = reason[:123]
	}
	p := binary.BigEndian.AppendUint16(nil, uint16(code))
	return AppendFrame(nil, OpClose, append(p, reason...))
}
