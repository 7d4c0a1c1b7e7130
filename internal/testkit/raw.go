package testkit

import (
	"bufio"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// Raw is a WebSocket connection after a hand-made handshake, for writing
// frames a real client would never send and reading the server's frames
// as they are on the wire.
type Raw struct {
	net.Conn
	Resp *http.Response // the 101 response
	br   *bufio.Reader
}

// RawOptions configure RawDial.
type RawOptions struct {
	Path   string      // request path and query ("/" if empty)
	Header string      // extra header lines, each "Name: value\r\n", sent as written
	Early  []byte      // bytes sent right behind the request, in the same write
	TLS    *tls.Config // dial TLS with this configuration if set
}

// RawDial upgrades a connection to addr ("host:port") and fails the test
// unless the server answers 101. Every read and write must be done within
// Timeout; the connection is closed at the end of the test.
func RawDial(t testing.TB, addr string, o RawOptions) *Raw {
	t.Helper()
	if o.Path == "" {
		o.Path = "/"
	}
	var conn net.Conn
	var err error
	if o.TLS != nil {
		conn, err = tls.Dial("tcp", addr, o.TLS)
	} else {
		conn, err = net.Dial("tcp", addr)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(Timeout))
	var key [16]byte
	_, _ = rand.Read(key[:])
	req := fmt.Sprintf("GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: %s\r\n%s\r\n",
		o.Path, addr, base64.StdEncoding.EncodeToString(key[:]), o.Header)
	if _, err := conn.Write(append([]byte(req), o.Early...)); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("handshake status %d", resp.StatusCode)
	}
	return &Raw{Conn: conn, Resp: resp, br: br}
}

// Read reads what follows the handshake response (bytes the server sent
// right behind it may be buffered already).
func (c *Raw) Read(p []byte) (int, error) { return c.br.Read(p) }

// WriteFrame writes one frame; b0 is the first header byte (FIN, RSV, opcode).
func (c *Raw) WriteFrame(t testing.TB, b0 byte, payload []byte, masked bool) {
	t.Helper()
	if _, err := c.Write(BuildFrame(b0, payload, masked)); err != nil {
		t.Fatalf("raw write: %v", err)
	}
}

// BuildFrame builds a client frame; b0 is the first header byte.
func BuildFrame(b0 byte, payload []byte, masked bool) []byte {
	b := []byte{b0}
	m := byte(0)
	if masked {
		m = 0x80
	}
	switch n := len(payload); {
	case n <= 125:
		b = append(b, m|byte(n))
	case n <= 0xffff:
		b = append(b, m|126, byte(n>>8), byte(n))
	default:
		b = append(b, m|127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	p := append([]byte(nil), payload...)
	if masked {
		key := [4]byte{0x12, 0x34, 0x56, 0x78}
		b = append(b, key[:]...)
		for i := range p {
			p[i] ^= key[i%4]
		}
	}
	return append(b, p...)
}

// ReadFrame reads one server frame (servers never mask or fragment here).
func (c *Raw) ReadFrame() (op byte, payload []byte, err error) {
	var h [2]byte
	if _, err = io.ReadFull(c.br, h[:]); err != nil {
		return
	}
	if h[0]&0x80 == 0 || h[1]&0x80 != 0 {
		return 0, nil, fmt.Errorf("unexpected frame header %x", h)
	}
	op = h[0] & 0x0f
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var l [2]byte
		if _, err = io.ReadFull(c.br, l[:]); err != nil {
			return
		}
		n = uint64(binary.BigEndian.Uint16(l[:]))
	case 127:
		var l [8]byte
		if _, err = io.ReadFull(c.br, l[:]); err != nil {
			return
		}
		n = binary.BigEndian.Uint64(l[:])
	}
	payload = make([]byte, n)
	_, err = io.ReadFull(c.br, payload)
	return
}

// ReadClose reads frames until a close frame and returns its status code
// (1005 for an empty one).
func (c *Raw) ReadClose(t testing.TB) int {
	t.Helper()
	for {
		op, p, err := c.ReadFrame()
		if err != nil {
			t.Fatalf("reading for a close frame: %v", err)
		}
		if op != 0x8 {
			continue
		}
		if len(p) == 0 {
			return 1005
		}
		return int(binary.BigEndian.Uint16(p))
	}
}
