package ws

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"runtime"
	"testing"
	"unicode/utf8"
)

// clientFrame builds a masked client frame; b0 is the first header byte.
func clientFrame(b0 byte, payload []byte) []byte {
	b := []byte{b0}
	switch n := len(payload); {
	case n <= 125:
		b = append(b, 0x80|byte(n))
	case n <= 0xffff:
		b = append(b, 0x80|126, byte(n>>8), byte(n))
	default:
		b = append(b, 0x80|127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	key := [4]byte{0xa1, 0xb2, 0xc3, 0xd4}
	b = append(b, key[:]...)
	for i, c := range payload {
		b = append(b, c^key[i%4])
	}
	return b
}

func reader(b []byte) *Reader {
	return &Reader{br: bufio.NewReaderSize(bytes.NewReader(b), readBufferSize)}
}

func noControl(byte, []byte) {}

func TestReadMessageSizes(t *testing.T) {
	for _, n := range []int{0, 1, 125, 126, 65535, 65536, eagerPayload + 1, 3*eagerPayload + 7, 1 << 20} {
		payload := make([]byte, n)
		for i := range payload {
			payload[i] = byte(i*7 + i>>8)
		}
		r := reader(clientFrame(0x82, payload))
		msg, err := r.ReadMessage(1<<20, noControl)
		if err != nil {
			t.Fatalf("n=%d: %v", n, err)
		}
		if !msg.Binary || !bytes.Equal(msg.Payload, payload) {
			t.Fatalf("n=%d: payload differs (len %d)", n, len(msg.Payload))
		}
	}
}

func TestReadMessageFragmentsAndControl(t *testing.T) {
	var in []byte
	in = append(in, clientFrame(0x01, []byte("hel"))...)
	in = append(in, clientFrame(0x89, []byte("ping!"))...)
	in = append(in, clientFrame(0x00, []byte("lo "))...)
	in = append(in, clientFrame(0x8A, []byte("pong"))...)
	in = append(in, clientFrame(0x80, []byte("world"))...)
	in = append(in, clientFrame(0x88, []byte{0x03, 0xE8, 'o', 'k'})...)
	var controls []string
	r := reader(in)
	msg, err := r.ReadMessage(64, func(op byte, p []byte) { controls = append(controls, string([]byte{'0' + op - 8})+string(p)) })
	if err != nil || msg.Binary || string(msg.Payload) != "hello world" {
		t.Fatalf("got %q %v %v", msg.Payload, msg.Binary, err)
	}
	if len(controls) != 2 || controls[0] != "1ping!" || controls[1] != "2pong" {
		t.Fatalf("controls %q", controls)
	}
	_, err = r.ReadMessage(64, noControl)
	var ce *CloseError
	if !errors.As(err, &ce) || ce.Code != 1000 || ce.Reason != "ok" {
		t.Fatalf("close: %v", err)
	}
}

func TestReadMessageLimit(t *testing.T) {
	// Over the limit in one frame, and over it only together.
	one := clientFrame(0x81, bytes.Repeat([]byte("a"), 65))
	var frag []byte
	frag = append(frag, clientFrame(0x01, bytes.Repeat([]byte("a"), 40))...)
	frag = append(frag, clientFrame(0x80, bytes.Repeat([]byte("a"), 25))...)
	for name, in := range map[string][]byte{"single": one, "fragmented": frag} {
		_, err := reader(in).ReadMessage(64, noControl)
		var pe *ProtocolError
		if !errors.As(err, &pe) || pe.Code != CloseTooBig {
			t.Errorf("%s: %v, want a 1009 protocol error", name, err)
		}
	}
	// Exactly at the limit is fine.
	if _, err := reader(clientFrame(0x81, bytes.Repeat([]byte("a"), 64))).ReadMessage(64, noControl); err != nil {
		t.Errorf("at the limit: %v", err)
	}
}

// A frame that announces a large payload and then stalls must not make
// the reader allocate the announced size up front.
func TestReadMessageDoesNotTrustLength(t *testing.T) {
	const announced = 8 << 20
	in := clientFrame(0x82, make([]byte, 100))
	// Rewrite the length to 8 MiB (the 100 bytes stay, then EOF).
	hdr := []byte{0x82, 0x80 | 127}
	hdr = binary.BigEndian.AppendUint64(hdr, announced)
	in = append(hdr, in[2:]...)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := reader(in).ReadMessage(10<<20, noControl)
	runtime.ReadMemStats(&after)
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("err = %v, want unexpected EOF", err)
	}
	if d := after.TotalAlloc - before.TotalAlloc; d > 1<<20 {
		t.Fatalf("allocated %d bytes for a frame that delivered 100", d)
	}
}

func TestParseCloseCodes(t *testing.T) {
	for code, valid := range map[int]bool{
		999: false, 1000: true, 1001: true, 1003: true, 1004: false, 1005: false, 1006: false,
		1007: true, 1011: true, 1014: true, 1015: false, 2000: false, 2999: false, 3000: true, 4999: true, 5000: false,
	} {
		err := parseClose(binary.BigEndian.AppendUint16(nil, uint16(code)))
		var ce *CloseError
		if got := errors.As(err, &ce); got != valid {
			t.Errorf("close code %d: %v, valid=%v", code, err, valid)
		}
	}
}

func TestCloseFrame(t *testing.T) {
	if got := CloseFrame(0, ""); !bytes.Equal(got, []byte{0x88, 0}) {
		t.Errorf("CloseFrame(0) = %x", got)
	}
	got := CloseFrame(1001, "")
	if !bytes.Equal(got, []byte{0x88, 2, 0x03, 0xE9}) {
		t.Errorf("CloseFrame(1001) = %x", got)
	}
	long := CloseFrame(1002, string(bytes.Repeat([]byte("x"), 200)))
	if len(long) != 2+125 {
		t.Errorf("long close frame is %d bytes, control frames carry at most 125", len(long))
	}
}

func TestAppendFrameHeaders(t *testing.T) {
	for _, n := range []int{0, 125, 126, 65535, 65536} {
		f := AppendFrame(nil, OpText, make([]byte, n))
		if len(f) != HeaderLen(n)+n || f[0] != 0x81 {
			t.Errorf("n=%d: frame len %d, header %x", n, len(f), f[:2])
		}
	}
}

// FuzzReadMessage feeds the frame reader arbitrary client bytes: it must not
// panic, must never return a message over the limit, and must only return
// valid UTF-8 text.
func FuzzReadMessage(f *testing.F) {
	f.Add(clientFrame(0x81, []byte(`"primus::pong::1"`)))
	f.Add(clientFrame(0x82, []byte{0, 1, 2}))
	f.Add(append(clientFrame(0x01, []byte("ab")), clientFrame(0x80, []byte("cd"))...))
	f.Add(append(clientFrame(0x01, []byte("ab")), append(clientFrame(0x89, []byte("p")), clientFrame(0x80, []byte("cd"))...)...))
	f.Add(clientFrame(0x88, []byte{0x03, 0xE8}))
	f.Add(clientFrame(0x81, bytes.Repeat([]byte("x"), 200)))
	f.Add([]byte{0x81, 0x7f, 0xff, 0, 0, 0, 0, 0, 0, 1})
	f.Add([]byte{0x81, 0x05, 'h', 'e', 'l', 'l', 'o'}) // unmasked
	f.Fuzz(func(t *testing.T, in []byte) {
		const limit = 128
		r := reader(in)
		for range 64 {
			msg, err := r.ReadMessage(limit, func(op byte, p []byte) {
				if op != OpPing && op != OpPong || len(p) > 125 {
					t.Fatalf("control op %#x with %d bytes", op, len(p))
				}
			})
			if err != nil {
				var ce *CloseError
				var pe *ProtocolError
				if !errors.As(err, &ce) && !errors.As(err, &pe) && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
					t.Fatalf("unexpected error type %T: %v", err, err)
				}
				return
			}
			if len(msg.Payload) > limit {
				t.Fatalf("message of %d bytes over the limit %d", len(msg.Payload), limit)
			}
			if !msg.Binary && !utf8.Valid(msg.Payload) {
				t.Fatalf("invalid UTF-8 text %q", msg.Payload)
			}
		}
	})
}

func TestAcceptKey(t *testing.T) {
	// RFC 6455 §1.3.
	if got := acceptKey("dGhlIHNhbXBsZSBub25jZQ=="); got != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" {
		t.Fatalf("acceptKey = %q", got)
	}
}

func TestErrorsText(t *testing.T) {
	for _, tt := range []struct {
		err  error
		want string
	}{
		{&CloseError{}, "websocket: closed without status"},
		{&CloseError{Code: 1000, Reason: "bye"}, "websocket: close 1000 bye"},
		{&ProtocolError{CloseProtocolError, "x"}, "websocket: x"},
		{&HandshakeError{400, "y"}, "websocket: y"},
	} {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("%#v.Error() = %q, want %q", tt.err, got, tt.want)
		}
	}
}

// RFC 6455 §5.2: a 64-bit length has its most significant bit 0, and every
// length is in its shortest form. Both violations are protocol errors
// (1002), not oversized messages (1009), whatever the limit.
func TestReadMessageLengthEncoding(t *testing.T) {
	header := func(ext ...byte) []byte {
		return append([]byte{0x81, 0x80 | ext[0]}, ext[1:]...)
	}
	mask := []byte{1, 2, 3, 4}
	for _, tt := range []struct {
		name string
		in   []byte
	}{
		{"64-bit top bit set", append(header(127, 0x80, 0, 0, 0, 0, 0, 0, 5), mask...)},
		{"64-bit all ones", append(header(127, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff), mask...)},
		{"64-bit form of 5", append(append(header(127, 0, 0, 0, 0, 0, 0, 0, 5), mask...), "hello"...)},
		{"64-bit form of 65535", append(header(127, 0, 0, 0, 0, 0, 0, 0xff, 0xff), mask...)},
		{"16-bit form of 5", append(append(header(126, 0, 5), mask...), "hello"...)},
		{"16-bit form of 125", append(header(126, 0, 125), mask...)},
	} {
		_, err := reader(tt.in).ReadMessage(1<<40, noControl)
		var pe *ProtocolError
		if !errors.As(err, &pe) || pe.Code != CloseProtocolError {
			t.Errorf("%s: %v, want a 1002 protocol error", tt.name, err)
		}
	}
	// The shortest forms at their boundaries are accepted.
	for _, n := range []int{125, 126, 65535, 65536} {
		if _, err := reader(clientFrame(0x82, make([]byte, n))).ReadMessage(1<<20, noControl); err != nil {
			t.Errorf("%d bytes: %v", n, err)
		}
	}
}
