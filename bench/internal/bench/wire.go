package bench

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// The load generator's own WebSocket client: just enough RFC 6455 for the
// servers compared (handshake, masked client frames, unmasked server
// frames, no extensions), built to parse many frames per read without
// allocating. What the frames carry is the dialect's (dialect.go).

// Opcodes used by the client.
const (
	opText  = 0x1
	opClose = 0x8
	opPing  = 0x9
	opPong  = 0xA
)

// handshakeKey is a fixed, valid Sec-WebSocket-Key (16 bytes, base64).
const handshakeKey = "dGhlIHNhbXBsZSBub25jZQ=="

// handshakeRequest is the upgrade request for path (with its query) on host.
func handshakeRequest(host, path string) []byte {
	return []byte("GET " + path + " HTTP/1.1\r\nHost: " + host +
		"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + handshakeKey +
		"\r\nSec-WebSocket-Version: 13\r\n\r\n")
}

// readHandshake reads the server's answer to the upgrade from r and returns
// the bytes read past the end of the headers (early frames).
func readHandshake(r io.Reader) (rest []byte, err error) {
	buf := make([]byte, 0, 1024)
	tmp := make([]byte, 1024)
	for {
		n, err := r.Read(tmp)
		buf = append(buf, tmp[:n]...)
		if i := bytes.Index(buf, []byte("\r\n\r\n")); i >= 0 {
			status := buf[:bytes.IndexByte(buf, '\n')+1]
			if !bytes.HasPrefix(status, []byte("HTTP/1.1 101")) {
				return nil, fmt.Errorf("websocket upgrade refused: %q", bytes.TrimSpace(status))
			}
			return append([]byte(nil), buf[i+4:]...), nil
		}
		if err != nil {
			return nil, fmt.Errorf("websocket upgrade: %w", err)
		}
		if len(buf) > 16<<10 {
			return nil, errors.New("websocket upgrade: response headers too long")
		}
	}
}

// appendClientFrame appends a final, masked client frame with payload p.
func appendClientFrame(dst []byte, op byte, mask [4]byte, p []byte) []byte {
	n := len(p)
	switch {
	case n <= 125:
		dst = append(dst, 0x80|op, 0x80|byte(n))
	case n <= 0xffff:
		dst = append(dst, 0x80|op, 0x80|126, byte(n>>8), byte(n))
	default:
		dst = append(dst, 0x80|op, 0x80|127)
		dst = binary.BigEndian.AppendUint64(dst, uint64(n))
	}
	dst = append(dst, mask[:]...)
	start := len(dst)
	dst = append(dst, p...)
	maskBytes(dst[start:], mask)
	return dst
}

func maskBytes(p []byte, mask [4]byte) {
	m := binary.LittleEndian.Uint32(mask[:])
	m64 := uint64(m) | uint64(m)<<32
	i := 0
	for ; i+8 <= len(p); i += 8 {
		binary.LittleEndian.PutUint64(p[i:], binary.LittleEndian.Uint64(p[i:])^m64)
	}
	for ; i < len(p); i++ {
		p[i] ^= mask[i&3]
	}
}

// errFrame reports a server frame the client does not support.
var errFrame = errors.New("unsupported websocket frame (fragmented, masked or oversized)")

// maxFrame bounds a server frame (the benchmark's messages are small).
const maxFrame = 1 << 20

// nextFrame parses one server frame at the start of b. It returns the
// opcode, the payload (aliasing b) and the frame's total length, or n == 0
// if b does not hold a whole frame yet.
func nextFrame(b []byte) (op byte, payload []byte, n int, err error) {
	if len(b) < 2 {
		return 0, nil, 0, nil
	}
	if b[0]&0x80 == 0 || b[1]&0x80 != 0 {
		return 0, nil, 0, errFrame
	}
	op = b[0] & 0x0f
	h := 2
	l := int(b[1] & 0x7f)
	switch l {
	case 126:
		if len(b) < 4 {
			return 0, nil, 0, nil
		}
		l = int(binary.BigEndian.Uint16(b[2:4]))
		h = 4
	case 127:
		if len(b) < 10 {
			return 0, nil, 0, nil
		}
		u := binary.BigEndian.Uint64(b[2:10])
		if u > maxFrame {
			return 0, nil, 0, errFrame
		}
		l = int(u)
		h = 10
	}
	if len(b) < h+l {
		return 0, nil, 0, nil
	}
	return op, b[h : h+l], h + l, nil
}

// Primus heartbeat texts (JSON strings, as the JSON parser writes them).
var (
	pingPrefix  = []byte(`"primus::ping::`)
	pongPrefix  = []byte(`"primus::pong::`)
	ackPrefix   = []byte(`{"ack":`)
	closeNotice = []byte(`"primus::server::close"`)
	msgPrefix   = []byte(`{"s":`)
)

// pongFor turns the text of a Primus ping into its pong, in dst.
func pongFor(dst, ping []byte) []byte {
	dst = append(dst, pongPrefix...)
	return append(dst, ping[len(pingPrefix):]...)
}
