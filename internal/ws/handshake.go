// Package ws is the small server side of RFC 6455 that the Primus server
// needs: handshake, frame reading with size limits, and frame building.
//
// It exists, instead of a general WebSocket library, so that the server can
// build a frame once and share it between many connections, write every
// frame queued for a connection with one writev(2), and keep an idle
// connection down to one goroutine and a few hundred bytes.
package ws

import (
	"bufio"
	"crypto/sha1"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"
)

const acceptGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// HandshakeError is a failed upgrade; Status is the HTTP status to answer.
type HandshakeError struct {
	Status int
	Msg    string
}

func (e *HandshakeError) Error() string { return "websocket: " + e.Msg }

// IsUpgrade reports whether r asks for a WebSocket upgrade.
func IsUpgrade(r *http.Request) bool {
	return headerHasToken(r.Header, "Upgrade", "websocket")
}

// CheckHandshake validates r as a WebSocket opening handshake.
func CheckHandshake(r *http.Request) error {
	if r.Method != http.MethodGet {
		return &HandshakeError{http.StatusMethodNotAllowed, "upgrade method must be GET"}
	}
	if !headerHasToken(r.Header, "Connection", "upgrade") || !IsUpgrade(r) {
		return &HandshakeError{http.StatusUpgradeRequired, "missing Connection: Upgrade / Upgrade: websocket"}
	}
	if r.Header.Get("Sec-WebSocket-Version") != "13" {
		return &HandshakeError{http.StatusUpgradeRequired, "unsupported Sec-WebSocket-Version (want 13)"}
	}
	key := r.Header.Get("Sec-WebSocket-Key")
	if b, err := base64.StdEncoding.DecodeString(key); err != nil || len(b) != 16 {
		return &HandshakeError{http.StatusBadRequest, "invalid Sec-WebSocket-Key"}
	}
	return nil
}

// Upgrade completes the handshake checked by CheckHandshake and returns the
// raw connection and any bytes the client already sent after its request.
func Upgrade(w http.ResponseWriter, r *http.Request) (net.Conn, []byte, error) {
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return nil, nil, fmt.Errorf("websocket: hijack: %w", err)
	}
	// Deadlines from the http.Server's ReadTimeout and WriteTimeout were
	// for the request; net/http documents clearing them as our job.
	_ = conn.SetDeadline(time.Time{})
	var early []byte
	if n := brw.Reader.Buffered(); n > 0 {
		early = make([]byte, n)
		if _, err := brw.Reader.Read(early); err != nil {
			conn.Close()
			return nil, nil, fmt.Errorf("websocket: reading buffered bytes: %w", err)
		}
	}
	resp := "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " +
		acceptKey(r.Header.Get("Sec-WebSocket-Key")) + "\r\n\r\n"
	if _, err := conn.Write([]byte(resp)); err != nil {
		conn.Close()
		return nil, nil, fmt.Errorf("websocket: writing handshake: %w", err)
	}
	return conn, early, nil
}

func acceptKey(key string) string {
	h := sha1.Sum([]byte(key + acceptGUID))
	return base64.StdEncoding.EncodeToString(h[:])
}

func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// earlyReader serves bytes read ahead by net/http before the connection.
type earlyReader struct {
	early []byte
	conn  net.Conn
}

func (r *earlyReader) Read(p []byte) (int, error) {
	if len(r.early) > 0 {
		n := copy(p, r.early)
		r.early = r.early[n:]
		return n, nil
	}
	return r.conn.Read(p)
}

// NewReader returns a frame reader for conn; early are the bytes Upgrade returned.
func NewReader(conn net.Conn, early []byte) *Reader {
	var src interface{ Read([]byte) (int, error) } = conn
	if len(early) > 0 {
		src = &earlyReader{early: early, conn: conn}
	}
	return &Reader{br: bufio.NewReaderSize(src, readBufferSize)}
}
