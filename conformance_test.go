package primus_test

// RFC 6455 conformance, walking the server case groups of the Autobahn
// testsuite (fuzzingclient), scaled to run in seconds. Every case drives
// the real server over TCP with raw client frames, names the Autobahn
// case(s) it mirrors and the RFC section it checks; a "+" marks a case
// Autobahn does not have.
//
// A Primus server speaks JSON, so Autobahn's "echo" maps to this:
//   - a text message comes back byte for byte (it must be JSON; the echo
//     handler writes the raw JSON back);
//   - a binary message comes back as the text {"binary":"<base64>"};
//   - a text message that is valid UTF-8 but not JSON (an empty one, say)
//     is accepted by the WebSocket layer and dropped with a *ParseError
//     reported to OnError: it is never echoed, and the connection stays up.
//
// Every case ends one of three ways, each ending with the server closing
// TCP within closeBound and sending nothing after its close frame (§5.5.1,
// §7.1.1): the server fails the connection with a given code and the
// client answers the close; or the client closed and the server echoes
// the code; or a marker message comes back next (nothing else was sent)
// and the client closes with 1000.

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/primusgo/primus"
	"github.com/primusgo/primus/internal/testkit"
)

// closeBound is how long the server may take to close TCP after its close
// frame went out; CloseTimeout is far longer, so a server that waits for
// it fails the case.
const closeBound = 3 * time.Second

// noStatus stands for a close frame without a status code (1005 is never
// sent on the wire, §7.4.1).
const noStatus = 1005

// marker is the message that ends every case left open.
const marker = `"marker"`

type sparkError struct {
	spark *primus.Spark
	err   error
}

// confServer is an echo server for the conformance cases: text is written
// back as is, binary as {"binary":"<base64>"}, and {"end":1} ends the spark.
type confServer struct {
	*testServer
	errs *testkit.Queue[sparkError]
}

func startConformance(t *testing.T, maxLength int64, opts ...func(*httptest.Server)) *confServer {
	t.Helper()
	errs := testkit.NewQueue[sparkError]()
	ts := startServer(t, primus.Config{
		PingInterval: -1, // no "primus::ping" frames between the expected ones
		MaxLength:    maxLength,
		CloseTimeout: 10 * time.Second,
		OnConnection: func(s *primus.Spark) {
			s.OnData(func(s *primus.Spark, d primus.Data) {
				switch {
				case d.IsBinary():
					_ = s.Write(map[string][]byte{"binary": d.Bytes()})
				case string(d.JSON()) == `{"end":1}`:
					s.End()
				default:
					_ = s.Write(d.JSON())
				}
			})
			s.OnError(func(s *primus.Spark, err error) { errs.Put(sparkError{s, err}) })
		},
	}, opts...)
	return &confServer{ts, errs}
}

// srvFrame is a frame the server is expected to send.
type srvFrame struct {
	op      byte
	payload string
}

func echoed(p string) srvFrame { return srvFrame{0x1, p} }
func pong(p string) srvFrame   { return srvFrame{0xA, p} }

// binEchoed is the echo of the binary message p.
func binEchoed(p string) srvFrame {
	return srvFrame{0x1, `{"binary":"` + base64.StdEncoding.EncodeToString([]byte(p)) + `"}`}
}

// fr is a masked client frame; b0 is its first byte (FIN, RSV, opcode).
func fr(b0 byte, p string) []byte { return testkit.BuildFrame(b0, []byte(p), true) }

func frames(f ...[]byte) [][]byte { return f }

// closeFr is a client close frame with code and reason.
func closeFr(code uint16, reason string) []byte {
	return fr(0x88, string(binary.BigEndian.AppendUint16(nil, code))+reason)
}

// jsonText is a JSON text of exactly n bytes (n > 0), varied enough that a
// misplaced byte shows.
func jsonText(n int) string {
	if n == 1 {
		return "1"
	}
	b := make([]byte, n)
	b[0], b[n-1] = '"', '"'
	for i := 1; i < n-1; i++ {
		b[i] = 'a' + byte(i%26)
	}
	return string(b)
}

// binPayload is n bytes of every value.
func binPayload(n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i>>8)
	}
	return string(b)
}

// split cuts s into pieces of at most n bytes.
func split(s string, n int) []string {
	var out []string
	for len(s) > n {
		out = append(out, s[:n])
		s = s[n:]
	}
	return append(out, s)
}

// fragmented is a message (op 0x1 text, 0x2 binary) sent as one frame per piece.
func fragmented(op byte, pieces ...string) [][]byte {
	var out [][]byte
	for i, p := range pieces {
		b0 := byte(0)
		if i == 0 {
			b0 = op
		}
		if i == len(pieces)-1 {
			b0 |= 0x80
		}
		out = append(out, fr(b0, p))
	}
	return out
}

// chops cuts b at the offsets at, for writing the pieces one by one.
func chops(b []byte, at ...int) [][]byte {
	var out [][]byte
	last := 0
	for _, i := range at {
		out = append(out, b[last:i])
		last = i
	}
	return append(out, b[last:])
}

// octets is p as one text fragment per byte.
func octets(p string) [][]byte { return fragmented(0x1, split(p, 1)...) }

type confStep struct {
	send [][]byte   // client frames
	want []srvFrame // frames the server sends next, in order
}

type confCase struct {
	name string // Autobahn case number(s) and what it sends
	rfc  string // the RFC 6455 section(s) it checks
	send [][]byte
	want []srvFrame
	more []confStep // later exchanges, each after the previous frames arrived
	// chop: 0 writes each step in one write, -1 frame by frame, n > 0 in
	// writes of n bytes.
	chop int
	// fail: the close code the server must fail the connection with;
	// closed: the code it must echo to the client's close (noStatus: an
	// empty close); neither: the connection stays open.
	fail, closed int
	// dropped: text messages the server must report as not JSON.
	dropped []string
}

func (cs *confServer) run(t *testing.T, cc confCase) {
	t.Helper()
	c := cs.rawDial(t, testkit.RawOptions{})
	s := cs.nextSpark(t)
	steps := append([]confStep{{cc.send, cc.want}}, cc.more...)
	for _, st := range steps {
		if err := c.writeChopped(st.send, cc.chop); err != nil {
			if cc.fail == 0 {
				t.Fatalf("client write: %v", err)
			}
			break // the server failed the connection already
		}
		for _, w := range st.want {
			c.expectFrame(t, w)
		}
	}
	switch {
	case cc.fail != 0:
		c.expectFail(t, cc.fail)
	case cc.closed != 0:
		c.expectCloseCode(t, cc.closed)
		c.expectEOF(t)
	default:
		c.WriteFrame(t, 0x81, []byte(marker), true)
		c.expectFrame(t, echoed(marker))
		cs.checkDropped(t, s, cc.dropped)
		c.closeCleanly(t)
	}
}

// checkDropped checks the ParseErrors of spark s against want. The server
// reports one before it reads the next message, so after the marker's
// echo they are all in.
func (cs *confServer) checkDropped(t *testing.T, s *primus.Spark, want []string) {
	t.Helper()
	var got []string
	for e, ok := cs.errs.TryGet(); ok; e, ok = cs.errs.TryGet() {
		if e.spark != s {
			continue // a spark of an earlier case
		}
		var pe *primus.ParseError
		if !errors.As(e.err, &pe) {
			t.Fatalf("OnError %v, want a *ParseError", e.err)
		}
		got = append(got, string(pe.Data))
	}
	if fmt.Sprintf("%q", got) != fmt.Sprintf("%q", want) {
		t.Fatalf("dropped as not JSON: %q, want %q", got, want)
	}
}

// confConn is a raw connection with the checks of the conformance cases.
type confConn struct{ *testkit.Raw }

// rawDial is the server's, returning a confConn.
func (cs *confServer) rawDial(t testing.TB, o testkit.RawOptions) *confConn {
	t.Helper()
	return &confConn{cs.testServer.rawDial(t, o)}
}

func (c *confConn) writeChopped(fs [][]byte, chop int) error {
	var chunks [][]byte
	switch all := bytes.Join(fs, nil); {
	case chop < 0:
		chunks = fs
	case chop == 0:
		chunks = [][]byte{all}
	default:
		for _, p := range split(string(all), chop) {
			chunks = append(chunks, []byte(p))
		}
	}
	for _, ch := range chunks {
		if _, err := c.Write(ch); err != nil {
			return err
		}
	}
	return nil
}

func short(p string) string {
	if len(p) > 64 {
		return fmt.Sprintf("%q... (%d bytes)", p[:64], len(p))
	}
	return fmt.Sprintf("%q", p)
}

// expectFrame reads the next frame; readFrame itself fails on a masked or
// fragmented server frame (§5.1).
func (c *confConn) expectFrame(t *testing.T, want srvFrame) {
	t.Helper()
	op, p, err := c.ReadFrame()
	if err != nil {
		t.Fatalf("reading for op %#x %s: %v", want.op, short(want.payload), err)
	}
	if op != want.op || string(p) != want.payload {
		t.Fatalf("got op %#x %s, want op %#x %s", op, short(string(p)), want.op, short(want.payload))
	}
}

// expectCloseCode reads the next frame, which must be a close with code
// and a UTF-8 reason (§5.5.1).
func (c *confConn) expectCloseCode(t *testing.T, code int) []byte {
	t.Helper()
	op, p, err := c.ReadFrame()
	if err != nil {
		t.Fatalf("reading for a close %d: %v", code, err)
	}
	if op != 0x8 {
		t.Fatalf("got op %#x %s, want a close %d", op, short(string(p)), code)
	}
	got := noStatus
	switch {
	case len(p) == 1:
		t.Fatalf("close frame with a 1-byte payload")
	case len(p) >= 2:
		got = int(binary.BigEndian.Uint16(p))
	}
	if got != code {
		t.Fatalf("close code %d (%q), want %d", got, p[min(2, len(p)):], code)
	}
	if len(p) > 2 && !utf8.Valid(p[2:]) {
		t.Errorf("close reason %q is not UTF-8", p[2:])
	}
	return p
}

// expectFail: the server fails the connection with code; the client
// answers the close as §5.5.1 asks, and the server closes TCP (§7.1.1).
func (c *confConn) expectFail(t *testing.T, code int) {
	t.Helper()
	p := c.expectCloseCode(t, code)
	_, _ = c.Write(fr(0x88, string(p[:min(2, len(p))]))) // the server may not read it
	c.expectEOF(t)
}

// closeCleanly runs a client-initiated closing handshake.
func (c *confConn) closeCleanly(t *testing.T) {
	t.Helper()
	if _, err := c.Write(closeFr(1000, "bye")); err != nil {
		t.Fatalf("writing close: %v", err)
	}
	c.expectCloseCode(t, 1000)
	c.expectEOF(t)
}

// expectEOF: nothing more comes after the close frame and the server
// closes TCP within closeBound.
func (c *confConn) expectEOF(t *testing.T) {
	t.Helper()
	start := time.Now()
	_ = c.SetReadDeadline(start.Add(closeBound))
	op, p, err := c.ReadFrame()
	switch {
	case err == nil:
		t.Fatalf("frame op %#x %s after the close frame", op, short(string(p)))
	case !errors.Is(err, io.EOF):
		t.Fatalf("the server did not close TCP (after %v): %v", time.Since(start).Round(time.Millisecond), err)
	}
	c.Close()
}

func runCases(t *testing.T, cs *confServer, cases []confCase) {
	t.Helper()
	for _, cc := range cases {
		t.Run(cc.name, func(t *testing.T) {
			if cc.rfc == "" {
				t.Fatal("case without an RFC section")
			}
			cs.run(t, cc)
		})
	}
}

func TestConformance(t *testing.T) {
	t.Run("1 framing", func(t *testing.T) { t.Parallel(); runCases(t, startConformance(t, 0), framingCases()) })
	t.Run("2 pings and pongs", func(t *testing.T) { t.Parallel(); runCases(t, startConformance(t, 0), pingCases()) })
	t.Run("3 reserved bits", func(t *testing.T) { t.Parallel(); runCases(t, startConformance(t, 0), rsvCases()) })
	t.Run("4 opcodes", func(t *testing.T) { t.Parallel(); runCases(t, startConformance(t, 0), opcodeCases()) })
	t.Run("5 fragmentation", func(t *testing.T) { t.Parallel(); runCases(t, startConformance(t, 0), fragmentationCases()) })
	t.Run("6 UTF-8", func(t *testing.T) { t.Parallel(); runCases(t, startConformance(t, 0), utf8Cases()) })
	t.Run("7 close", func(t *testing.T) {
		t.Parallel()
		cs := startConformance(t, 0)
		runCases(t, cs, closeCases())
		t.Run("7.x+ server close: data after it is ignored, nothing follows it", func(t *testing.T) {
			// §5.5.1: after sending a close frame the server sends no more
			// data; what the client still sends is not delivered.
			c := cs.rawDial(t, testkit.RawOptions{})
			c.WriteFrame(t, 0x81, []byte(`{"end":1}`), true)
			c.expectFrame(t, echoed(`"primus::server::close"`))
			c.expectCloseCode(t, noStatus)
			if _, err := c.Write(append(fr(0x81, `"after"`), fr(0x88, "")...)); err != nil {
				t.Fatal(err)
			}
			c.expectEOF(t)
		})
	})
	t.Run("9 limits", func(t *testing.T) { t.Parallel(); runCases(t, startConformance(t, limit), limitCases()) })
	t.Run("TLS", func(t *testing.T) {
		// The same endings over TLS, where the server's half-close is a
		// close_notify alert.
		t.Parallel()
		cs := startConformance(t, limit, func(hs *httptest.Server) { hs.TLS = &tls.Config{} })
		text := jsonText(limit)
		runCases(t, cs, []confCase{
			{name: "9.1.1 text of 64 KiB (the limit)", rfc: "§10.4", send: frames(fr(0x81, text)), want: []srvFrame{echoed(text)}},
			{name: "7.3.3 close 1000", rfc: "§5.5.1", send: frames(closeFr(1000, "")), closed: 1000},
			{name: "5.18 text in 2 fragments both with the text opcode", rfc: "§5.4", send: frames(fr(0x01, `"a`), fr(0x81, `b"`)), fail: 1002},
			{name: "6.3.1 invalid text", rfc: "§8.1", send: frames(fr(0x81, "\"\xed\xa0\x80\"")), fail: 1007},
			{name: "9.x+ text of the limit + 1", rfc: "§7.4.1", send: frames(fr(0x81, jsonText(limit+1))), fail: 1009},
		})
	})
	t.Run("12 13 compression", func(t *testing.T) { t.Parallel(); compressionCases(t, startConformance(t, 0)) })
	t.Run("handshake", func(t *testing.T) { t.Parallel(); handshakeCases(t, startConformance(t, 0)) })
}

// 1.x: data frames with payloads at the boundaries of the 7-bit, 16-bit
// and 64-bit length encodings, echoed intact (§5.2 Payload length, §5.6).
func framingCases() []confCase {
	sizes := []int{0, 125, 126, 127, 128, 65535, 65536}
	var cases []confCase
	for i, n := range sizes {
		name := fmt.Sprintf("1.1.%d text %d bytes", i+1, n)
		if n == 0 {
			// Not JSON: accepted and dropped, not echoed.
			cases = append(cases, confCase{name: name, rfc: "§5.2, §5.6", send: frames(fr(0x81, "")), dropped: []string{""}})
			continue
		}
		p := jsonText(n)
		cases = append(cases, confCase{name: name, rfc: "§5.2, §5.6", send: frames(fr(0x81, p)), want: []srvFrame{echoed(p)}})
	}
	p := jsonText(65536)
	cases = append(cases, confCase{name: "1.1.8 text 65536 bytes written in chops of 997", rfc: "§5.2",
		send: frames(fr(0x81, p)), want: []srvFrame{echoed(p)}, chop: 997})
	for i, n := range sizes {
		p := binPayload(n)
		cases = append(cases, confCase{name: fmt.Sprintf("1.2.%d binary %d bytes", i+1, n), rfc: "§5.2, §5.6",
			send: frames(fr(0x82, p)), want: []srvFrame{binEchoed(p)}})
	}
	p = binPayload(65536)
	cases = append(cases, confCase{name: "1.2.8 binary 65536 bytes written in chops of 997", rfc: "§5.2",
		send: frames(fr(0x82, p)), want: []srvFrame{binEchoed(p)}, chop: 997})
	p = jsonText(200)
	cases = append(cases,
		confCase{name: "1.x+ text 200 bytes written one byte at a time", rfc: "§5.2",
			send: frames(fr(0x81, p)), want: []srvFrame{echoed(p)}, chop: 1},
		confCase{name: "1.x+ unmasked text frame", rfc: "§5.1, §5.3",
			send: frames(testkit.BuildFrame(0x81, []byte(`"x"`), false)), fail: 1002},
	)
	return cases
}

// 2.x: pings are answered by pongs with the same payload, unsolicited
// pongs are ignored, control frames are at most 125 bytes (§5.5).
func pingCases() []confCase {
	bin := "\x00\xff\xfe\xfd\xfc\xfb\x00\xff"
	p125, p126 := strings.Repeat("\xfe", 125), strings.Repeat("\xfe", 126)
	var ten [][]byte
	var tenPongs []srvFrame
	for i := range 10 {
		p := fmt.Sprintf("payload-%d", i)
		ten = append(ten, fr(0x89, p))
		tenPongs = append(tenPongs, pong(p))
	}
	return []confCase{
		{name: "2.1 ping without payload", rfc: "§5.5.2, §5.5.3", send: frames(fr(0x89, "")), want: []srvFrame{pong("")}},
		{name: "2.2 ping with a text payload", rfc: "§5.5.2, §5.5.3", send: frames(fr(0x89, "Hello, world!")), want: []srvFrame{pong("Hello, world!")}},
		{name: "2.3 ping with a binary payload", rfc: "§5.5.2, §5.5.3", send: frames(fr(0x89, bin)), want: []srvFrame{pong(bin)}},
		{name: "2.4 ping with 125 bytes", rfc: "§5.5, §5.5.3", send: frames(fr(0x89, p125)), want: []srvFrame{pong(p125)}},
		{name: "2.5 ping with 126 bytes", rfc: "§5.5", send: frames(fr(0x89, p126)), fail: 1002},
		{name: "2.6 ping with 125 bytes written one byte at a time", rfc: "§5.5.3", send: frames(fr(0x89, p125)), want: []srvFrame{pong(p125)}, chop: 1},
		{name: "2.7 unsolicited pong without payload", rfc: "§5.5.3", send: frames(fr(0x8A, ""))},
		{name: "2.8 unsolicited pong with payload", rfc: "§5.5.3", send: frames(fr(0x8A, "unsolicited pong payload"))},
		{name: "2.9 unsolicited pong, then ping", rfc: "§5.5.3",
			send: frames(fr(0x8A, "unsolicited pong payload"), fr(0x89, "ping payload")), want: []srvFrame{pong("ping payload")}},
		{name: "2.10 10 pings", rfc: "§5.5.2, §5.5.3", send: ten, want: tenPongs},
		{name: "2.11 10 pings written one byte at a time", rfc: "§5.5.2, §5.5.3", send: ten, want: tenPongs, chop: 1},
	}
}

// 3.x: RSV1-3 must be 0 when no extension was negotiated (§5.2).
// Autobahn's RSV value v sets b0 |= v<<4 (4 is RSV1, 1 is RSV3).
func rsvCases() []confCase {
	hello := `"Hello, world!"`
	rsvThenPing := func(v byte) [][]byte {
		return frames(fr(0x81, hello), fr(0x81|v<<4, hello), fr(0x89, ""))
	}
	return []confCase{
		{name: "3.1 text with RSV=1", rfc: "§5.2", send: frames(fr(0x91, hello)), fail: 1002},
		{name: "3.2 text, text with RSV=2, ping", rfc: "§5.2", send: rsvThenPing(2), want: []srvFrame{echoed(hello)}, fail: 1002},
		{name: "3.3 text, text with RSV=3, ping, frame by frame", rfc: "§5.2", send: rsvThenPing(3), want: []srvFrame{echoed(hello)}, fail: 1002, chop: -1},
		{name: "3.4 text, text with RSV=4, ping, octet by octet", rfc: "§5.2", send: rsvThenPing(4), want: []srvFrame{echoed(hello)}, fail: 1002, chop: 1},
		{name: "3.5 binary with RSV=5", rfc: "§5.2", send: frames(fr(0x82|5<<4, "\x00\xff\xfe\xfd")), fail: 1002},
		{name: "3.6 ping with RSV=6", rfc: "§5.2", send: frames(fr(0x89|6<<4, "ping payload")), fail: 1002},
		{name: "3.7 close with RSV=7", rfc: "§5.2", send: frames(fr(0x88|7<<4, "")), fail: 1002},
	}
}

// 4.x: reserved opcodes fail the connection (§5.2, §10.7); frames before
// them are handled, frames after them are not.
func opcodeCases() []confCase {
	hello := `"Hello, world!"`
	var cases []confCase
	for i, tc := range []struct {
		group   int
		op      byte
		payload string
		between bool // text before, ping after
	}{
		{1, 3, "", false}, {1, 4, "reserved opcode payload", false}, {1, 5, "", true}, {1, 6, "reserved opcode payload", true}, {1, 7, "reserved opcode payload", true},
		{2, 11, "", false}, {2, 12, "reserved opcode payload", false}, {2, 13, "", true}, {2, 14, "reserved opcode payload", true}, {2, 15, "reserved opcode payload", true},
	} {
		kind := "non-control"
		if tc.group == 2 {
			kind = "control"
		}
		cc := confCase{name: fmt.Sprintf("4.%d.%d %s opcode %d", tc.group, i%5+1, kind, tc.op), rfc: "§5.2", fail: 1002,
			send: frames(fr(0x80|tc.op, tc.payload))}
		if tc.between {
			cc.name = fmt.Sprintf("4.%d.%d text, %s opcode %d, ping", tc.group, i%5+1, kind, tc.op)
			cc.send = frames(fr(0x81, hello), fr(0x80|tc.op, tc.payload), fr(0x89, ""))
			cc.want = []srvFrame{echoed(hello)}
		}
		cases = append(cases, cc)
	}
	return cases
}

// 5.x: fragmented messages (§5.4): reassembled whole, control frames may
// come between fragments but are never fragmented themselves, and every
// continuation belongs to a started message.
func fragmentationCases() []confCase {
	two := fragmented(0x1, `"fragment1`, `fragment2"`)
	whole := echoed(`"fragment1fragment2"`)
	withPing := frames(two[0], fr(0x89, "pongme!"), two[1])
	orphan := func(b0 byte) [][]byte { // a continuation with nothing to continue, then a message
		return append(frames(fr(b0, "non-continuation payload")), two...)
	}
	five := fragmented(0x1, `"fragment1`, "fragment2", "fragment3", "fragment4", `fragment5"`)
	return []confCase{
		{name: "5.1 ping in 2 fragments", rfc: "§5.4, §5.5", send: frames(fr(0x09, "fragment1"), fr(0x80, "fragment2")), fail: 1002},
		{name: "5.2 pong in 2 fragments", rfc: "§5.4, §5.5", send: frames(fr(0x0A, "fragment1"), fr(0x80, "fragment2")), fail: 1002},
		{name: "5.3 text in 2 fragments", rfc: "§5.4", send: two, want: []srvFrame{whole}},
		{name: "5.4 text in 2 fragments, frame by frame", rfc: "§5.4", send: two, want: []srvFrame{whole}, chop: -1},
		{name: "5.5 text in 2 fragments, octet by octet", rfc: "§5.4", send: two, want: []srvFrame{whole}, chop: 1},
		{name: "5.6 text in 2 fragments with a ping between", rfc: "§5.4, §5.5.3", send: withPing, want: []srvFrame{pong("pongme!"), whole}},
		{name: "5.7 text in 2 fragments with a ping between, frame by frame", rfc: "§5.4, §5.5.3", send: withPing, want: []srvFrame{pong("pongme!"), whole}, chop: -1},
		{name: "5.8 text in 2 fragments with a ping between, octet by octet", rfc: "§5.4, §5.5.3", send: withPing, want: []srvFrame{pong("pongme!"), whole}, chop: 1},
		{name: "5.9 final continuation without a message, then text", rfc: "§5.4", send: orphan(0x80), fail: 1002},
		{name: "5.10 final continuation without a message, frame by frame", rfc: "§5.4", send: orphan(0x80), fail: 1002, chop: -1},
		{name: "5.11 final continuation without a message, octet by octet", rfc: "§5.4", send: orphan(0x80), fail: 1002, chop: 1},
		{name: "5.12 continuation without a message, then text", rfc: "§5.4", send: orphan(0x00), fail: 1002},
		{name: "5.13 continuation without a message, frame by frame", rfc: "§5.4", send: orphan(0x00), fail: 1002, chop: -1},
		{name: "5.14 continuation without a message, octet by octet", rfc: "§5.4", send: orphan(0x00), fail: 1002, chop: 1},
		{name: "5.15 text in 2 fragments, then continuation without a message", rfc: "§5.4",
			send: append(append(frames(), two...), append(frames(fr(0x00, "fragment3")), fragmented(0x1, `"fragment4`, `fragment5"`)...)...),
			want: []srvFrame{whole}, fail: 1002},
		{name: "5.16 twice: continuation without a message, text in 2 fragments", rfc: "§5.4",
			send: append(orphan(0x00), orphan(0x00)...), fail: 1002},
		{name: "5.17 twice: final continuation without a message, text in 2 fragments", rfc: "§5.4",
			send: append(orphan(0x80), orphan(0x80)...), fail: 1002},
		{name: "5.18 text in 2 fragments both with the text opcode", rfc: "§5.4",
			send: frames(fr(0x01, `"fragment1`), fr(0x81, `fragment2"`)), fail: 1002},
		{name: "5.19 text in 5 fragments with pings, the first answered before the message ends", rfc: "§5.4, §5.5.2",
			send: frames(five[0], five[1], fr(0x89, "pongme 1!")), want: []srvFrame{pong("pongme 1!")},
			more: []confStep{{send: frames(five[2], five[3], fr(0x89, "pongme 2!"), five[4]),
				want: []srvFrame{pong("pongme 2!"), echoed(`"fragment1fragment2fragment3fragment4fragment5"`)}}}},
		{name: "5.20 as 5.19, frame by frame", rfc: "§5.4, §5.5.2", chop: -1,
			send: frames(five[0], five[1], fr(0x89, "pongme 1!")), want: []srvFrame{pong("pongme 1!")},
			more: []confStep{{send: frames(five[2], five[3], fr(0x89, "pongme 2!"), five[4]),
				want: []srvFrame{pong("pongme 2!"), echoed(`"fragment1fragment2fragment3fragment4fragment5"`)}}}},
		{name: "5.x+ binary in 3 fragments", rfc: "§5.4",
			send: fragmented(0x2, "\x00\x01", "\xff", "\xfe\x80"), want: []srvFrame{binEchoed("\x00\x01\xff\xfe\x80")}},
		{name: "5.x+ binary in 2 fragments with a ping between", rfc: "§5.4, §5.5.3",
			send: frames(fr(0x02, "\x00\xff"), fr(0x89, "p"), fr(0x80, "\x80")), want: []srvFrame{pong("p"), binEchoed("\x00\xff\x80")}},
		{name: "5.x+ binary inside a fragmented text message", rfc: "§5.4",
			send: frames(fr(0x01, `"a`), fr(0x82, "b")), fail: 1002},
		{name: "5.x+ close between fragments ends the connection, the message is not delivered", rfc: "§5.4, §5.5.1",
			send: frames(fr(0x01, `"a`), closeFr(1000, ""), fr(0x80, `b"`)), closed: 1000},
	}
}

// utf8Seq is a test sequence of Autobahn's 6.5-6.23 (from Markus Kuhn's
// UTF-8 decoder test), with whether it is valid UTF-8.
type utf8Seq struct {
	valid bool
	seq   string
}

func utf8Groups() [][]utf8Seq {
	kosme := "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5"
	var prefixes []utf8Seq
	for n := 1; n <= len(kosme); n++ {
		prefixes = append(prefixes, utf8Seq{n == 2 || n == 5 || n == 7 || n == 9 || n == 11, kosme[:n]})
	}
	var continuations, lonely []utf8Seq
	for _, s := range []string{"\x80", "\xbf", "\x80\xbf", "\x80\xbf\x80", "\x80\xbf\x80\xbf", "\x80\xbf\x80\xbf\x80", "\x80\xbf\x80\xbf\x80\xbf"} {
		continuations = append(continuations, utf8Seq{false, s})
	}
	var all []byte
	for b := 0x80; b < 0xbf; b++ {
		all = append(all, byte(b))
	}
	continuations = append(continuations, utf8Seq{false, string(all)})
	for _, r := range [][2]int{{0xc0, 0xdf}, {0xe0, 0xef}, {0xf0, 0xf7}, {0xf8, 0xfb}, {0xfc, 0xfd}} {
		var s []byte
		for b := r[0]; b < r[1]; b++ {
			s = append(s, byte(b), ' ')
		}
		lonely = append(lonely, utf8Seq{false, string(s)})
	}
	missing := []string{"\xc0", "\xe0\x80", "\xf0\x80\x80", "\xf8\x80\x80\x80", "\xfc\x80\x80\x80\x80",
		"\xdf", "\xef\xbf", "\xf7\xbf\xbf", "\xfb\xbf\xbf\xbf", "\xfd\xbf\xbf\xbf\xbf"}
	var missingSeqs []utf8Seq
	for _, s := range missing {
		missingSeqs = append(missingSeqs, utf8Seq{false, s})
	}
	nonchars := []utf8Seq{{true, "\xef\xbf\xbe"}, {true, "\xef\xbf\xbf"}}
	for _, z1 := range []byte{0xf0, 0xf1, 0xf2, 0xf3, 0xf4} {
		for _, z2 := range []byte{0x8f, 0x9f, 0xaf, 0xbf} {
			if z1 == 0xf4 && z2 != 0x8f || z1 == 0xf0 && z2 == 0x8f { // over U+10FFFF; overlong
				continue
			}
			for _, z3 := range []byte{0xbe, 0xbf} {
				nonchars = append(nonchars, utf8Seq{true, string([]byte{z1, z2, 0xbf, z3})})
			}
		}
	}
	return [][]utf8Seq{
		// 6.5 valid sequences
		{{true, "hello\x24world"}, {true, "hello\xc2\xa2world"}, {true, "hello\xe2\x82\xacworld"}, {true, "hello\xf0\xa4\xad\xa2world"}, {true, kosme}},
		prefixes, // 6.6 every prefix of a valid string: cut code points are invalid
		// 6.7 first sequence of each length
		{{true, "\x00"}, {true, "\xc2\x80"}, {true, "\xe0\xa0\x80"}, {true, "\xf0\x90\x80\x80"}},
		// 6.8 first 5- and 6-byte sequences (over U+10FFFF)
		{{false, "\xf8\x88\x80\x80\x80"}, {false, "\xfc\x84\x80\x80\x80\x80"}},
		// 6.9 last sequence of each length
		{{true, "\x7f"}, {true, "\xdf\xbf"}, {true, "\xef\xbf\xbf"}, {true, "\xf4\x8f\xbf\xbf"}},
		// 6.10 last 4-, 5- and 6-byte sequences (over U+10FFFF)
		{{false, "\xf7\xbf\xbf\xbf"}, {false, "\xfb\xbf\xbf\xbf\xbf"}, {false, "\xfd\xbf\xbf\xbf\xbf\xbf"}},
		// 6.11 boundaries: U+D7FF, U+E000, U+FFFD, U+10FFFF, U+110000
		{{true, "\xed\x9f\xbf"}, {true, "\xee\x80\x80"}, {true, "\xef\xbf\xbd"}, {true, "\xf4\x8f\xbf\xbf"}, {false, "\xf4\x90\x80\x80"}},
		continuations, // 6.12 unexpected continuation bytes
		lonely,        // 6.13 lonely start bytes
		missingSeqs,   // 6.14 last continuation byte missing (truncated)
		// 6.15 those concatenated
		{{false, strings.Join(missing, "")}},
		// 6.16 impossible bytes
		{{false, "\xfe"}, {false, "\xff"}, {false, "\xfe\xfe\xff\xff"}},
		// 6.17 overlong ASCII '/'
		{{false, "\xc0\xaf"}, {false, "\xe0\x80\xaf"}, {false, "\xf0\x80\x80\xaf"}, {false, "\xf8\x80\x80\x80\xaf"}, {false, "\xfc\x80\x80\x80\x80\xaf"}},
		// 6.18 maximum overlong sequences
		{{false, "\xc1\xbf"}, {false, "\xe0\x9f\xbf"}, {false, "\xf0\x8f\xbf\xbf"}, {false, "\xf8\x87\xbf\xbf\xbf"}, {false, "\xfc\x83\xbf\xbf\xbf\xbf"}},
		// 6.19 overlong NUL
		{{false, "\xc0\x80"}, {false, "\xe0\x80\x80"}, {false, "\xf0\x80\x80\x80"}, {false, "\xf8\x80\x80\x80\x80"}, {false, "\xfc\x80\x80\x80\x80\x80"}},
		// 6.20 single UTF-16 surrogates U+D800-DFFF
		{{false, "\xed\xa0\x80"}, {false, "\xed\xad\xbf"}, {false, "\xed\xae\x80"}, {false, "\xed\xaf\xbf"}, {false, "\xed\xb0\x80"}, {false, "\xed\xbe\x80"}, {false, "\xed\xbf\xbf"}},
		// 6.21 paired UTF-16 surrogates
		{{false, "\xed\xa0\x80\xed\xb0\x80"}, {false, "\xed\xa0\x80\xed\xbf\xbf"}, {false, "\xed\xad\xbf\xed\xb0\x80"}, {false, "\xed\xad\xbf\xed\xbf\xbf"},
			{false, "\xed\xae\x80\xed\xb0\x80"}, {false, "\xed\xae\x80\xed\xbf\xbf"}, {false, "\xed\xaf\xbf\xed\xb0\x80"}, {false, "\xed\xaf\xbf\xed\xbf\xbf"}},
		nonchars, // 6.22 noncharacters: valid UTF-8
		// 6.23 specials U+FFF9-FFFF
		{{true, "\xef\xbf\xb9"}, {true, "\xef\xbf\xba"}, {true, "\xef\xbf\xbb"}, {true, "\xef\xbf\xbc"}, {true, "\xef\xbf\xbd"}, {true, "\xef\xbf\xbe"}, {true, "\xef\xbf\xbf"}},
	}
}

// 6.x: text must be valid UTF-8, checked on the whole message, whatever
// its fragmentation; invalid text fails the connection with 1007 (§8.1,
// §5.6). The check is made when the message is complete (Autobahn's
// NON-STRICT for 6.4, as in Primus's ws): the last fragment is sent.
func utf8Cases() []confCase {
	const rfc = "§5.6, §8.1"
	hello := `"Hello-µ@ßöäüàá-UTF-8!!"`
	kosme := "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5"
	bad := `"` + kosme + "\xed\xa0\x80edited" + `"`
	p1, p2, p3 := `"`+kosme, "\xf4\x90\x80\x80", `edited"`
	cases := []confCase{
		{name: "6.1.1 text of 0 bytes", rfc: rfc, send: frames(fr(0x81, "")), dropped: []string{""}},
		{name: "6.1.2 text in 3 fragments of 0 bytes", rfc: rfc + ", §5.4", send: fragmented(0x1, "", "", ""), dropped: []string{""}},
		{name: "6.1.3 text in 3 fragments, the first and last of 0 bytes", rfc: rfc + ", §5.4",
			send: fragmented(0x1, "", `"middle frame payload"`, ""), want: []srvFrame{echoed(`"middle frame payload"`)}},
		{name: "6.2.1 valid multi-byte text", rfc: rfc, send: frames(fr(0x81, hello)), want: []srvFrame{echoed(hello)}},
		{name: "6.2.2 valid text fragmented on code points", rfc: rfc + ", §5.4",
			send: fragmented(0x1, `"Hello-µ@ßöä`, `üàá-UTF-8!!"`), want: []srvFrame{echoed(hello)}},
		{name: "6.2.3 valid text, one byte per fragment", rfc: rfc + ", §5.4", send: octets(hello), want: []srvFrame{echoed(hello)}},
		{name: "6.2.4 κόσμε, one byte per fragment", rfc: rfc + ", §5.4", send: octets(`"` + kosme + `"`), want: []srvFrame{echoed(`"` + kosme + `"`)}},
		{name: "6.2.x+ 4-byte code point split across 3 fragments", rfc: rfc + ", §5.4",
			send: fragmented(0x1, "\"hello\xf0\xa4", "\xad", "\xa2world\""), want: []srvFrame{echoed("\"hello\xf0\xa4\xad\xa2world\"")}},
		{name: "6.2.x+ U+10FFFF split across fragments", rfc: rfc + ", §5.4",
			send: fragmented(0x1, "\"\xf4", "\x8f\xbf\xbf\""), want: []srvFrame{echoed("\"\xf4\x8f\xbf\xbf\"")}},
		{name: "6.3.1 invalid text (a surrogate)", rfc: rfc, send: frames(fr(0x81, bad)), fail: 1007},
		{name: "6.3.2 invalid text, one byte per fragment", rfc: rfc + ", §5.4", send: octets(bad), fail: 1007},
		{name: "6.4.1 3 fragments, the 2nd makes it invalid (U+110000)", rfc: rfc + ", §5.4", send: fragmented(0x1, p1, p2, p3), fail: 1007},
		{name: "6.4.2 3 fragments, the 2nd is the invalid byte", rfc: rfc + ", §5.4",
			send: fragmented(0x1, p1+p2[:1], p2[1:2], p2[2:]+p3), fail: 1007},
		{name: "6.4.3 one frame written in 3 chops, the 2nd invalid", rfc: rfc, send: chops(fr(0x81, p1+p2+p3), 6+len(p1), 6+len(p1+p2)), chop: -1, fail: 1007},
		{name: "6.4.4 one frame written in 3 chops, the 2nd the invalid byte", rfc: rfc, send: chops(fr(0x81, p1+p2+p3), 6+len(p1)+1, 6+len(p1)+2), chop: -1, fail: 1007},
		{name: "6.4.x+ text invalid only in its last fragment (truncated sequence)", rfc: rfc + ", §5.4",
			send: fragmented(0x1, `"abc`, "\xf0\x9f\x98"), fail: 1007},
		{name: "6.x+ message ending inside a code point: truncated", rfc: rfc, send: frames(fr(0x81, "\"a\"\xe2\x82")), fail: 1007},
	}
	for i, group := range utf8Groups() {
		for j, s := range group {
			cc := confCase{name: fmt.Sprintf("6.%d.%d invalid % x", i+5, j+1, s.seq), rfc: rfc, send: frames(fr(0x81, `"`+s.seq+`"`)), fail: 1007}
			if s.valid {
				cc = confCase{name: fmt.Sprintf("6.%d.%d valid % x", i+5, j+1, s.seq), rfc: rfc, send: cc.send, want: []srvFrame{echoed(`"` + s.seq + `"`)}}
				if strings.ContainsFunc(s.seq, func(r rune) bool { return r < 0x20 }) {
					// Valid UTF-8 but not JSON (a raw control character in a string).
					cc.want, cc.dropped = nil, []string{`"` + s.seq + `"`}
				}
			}
			if len(cc.name) > 60 {
				cc.name = cc.name[:60] + "..."
			}
			cases = append(cases, cc)
		}
	}
	return cases
}

// 7.x: the closing handshake (§5.5.1, §7.4).
func closeCases() []confCase {
	hello := `"Hello World!"`
	cases := []confCase{
		{name: "7.1.1 text, then close", rfc: "§5.5.1", send: frames(fr(0x81, hello), closeFr(1000, "")), want: []srvFrame{echoed(hello)}, closed: 1000},
		{name: "7.1.2 close twice", rfc: "§5.5.1", send: frames(closeFr(1000, ""), closeFr(1000, "")), closed: 1000},
		{name: "7.1.3 close, then ping: no pong", rfc: "§5.5.1", send: frames(closeFr(1000, ""), fr(0x89, "ping")), closed: 1000},
		{name: "7.1.4 close, then text: not echoed", rfc: "§5.5.1", send: frames(closeFr(1000, ""), fr(0x81, hello)), closed: 1000},
		{name: "7.1.5 text fragment, close, continuation: not echoed", rfc: "§5.5.1, §5.4",
			send: frames(fr(0x01, `"fragment1`), closeFr(1000, ""), fr(0x80, `fragment2"`)), closed: 1000},
		{name: "7.1.6 (scaled) 64 KiB text, close, ping", rfc: "§5.5.1",
			send: frames(fr(0x81, jsonText(65536)), closeFr(1000, ""), fr(0x89, "ping")), want: []srvFrame{echoed(jsonText(65536))}, closed: 1000},
		{name: "7.3.1 close without payload: echoed without status", rfc: "§5.5.1", send: frames(fr(0x88, "")), closed: noStatus},
		{name: "7.3.2 close with a 1-byte payload", rfc: "§5.5.1", send: frames(fr(0x88, "0")), fail: 1002},
		{name: "7.3.3 close 1000 without reason", rfc: "§5.5.1", send: frames(closeFr(1000, "")), closed: 1000},
		{name: "7.3.4 close 1000 with a reason", rfc: "§5.5.1", send: frames(closeFr(1000, "Hello World!")), closed: 1000},
		{name: "7.3.5 close 1000 with a 123-byte reason", rfc: "§5.5, §5.5.1", send: frames(closeFr(1000, strings.Repeat("*", 123))), closed: 1000},
		{name: "7.3.6 close 1000 with a 124-byte reason (126-byte control frame)", rfc: "§5.5", send: frames(closeFr(1000, strings.Repeat("*", 124))), fail: 1002},
		{name: "7.5.1 close reason not UTF-8", rfc: "§5.5.1, §8.1",
			send: frames(closeFr(1000, "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited")), fail: 1002},
	}
	for i, code := range []uint16{1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999} {
		cases = append(cases, confCase{name: fmt.Sprintf("7.7.%d close %d echoed", i+1, code), rfc: "§7.4.1, §7.4.2", send: frames(closeFr(code, "")), closed: int(code)})
	}
	// Registered with IANA after RFC 6455 (Autobahn dropped them from 7.9).
	for _, code := range []uint16{1012, 1013, 1014} {
		cases = append(cases, confCase{name: fmt.Sprintf("7.7.x+ close %d echoed", code), rfc: "§7.4.2, §11.7", send: frames(closeFr(code, "")), closed: int(code)})
	}
	for i, code := range []uint16{0, 999, 1004, 1005, 1006, 1016, 1100, 2000, 2999} {
		cases = append(cases, confCase{name: fmt.Sprintf("7.9.%d invalid close code %d", i+1, code), rfc: "§7.4.1, §7.4.2", send: frames(closeFr(code, "")), fail: 1002})
	}
	cases = append(cases,
		confCase{name: "7.9.x+ invalid close code 1015", rfc: "§7.4.1", send: frames(closeFr(1015, "")), fail: 1002},
		confCase{name: "7.13.1 close code 5000", rfc: "§7.4.2", send: frames(closeFr(5000, "")), fail: 1002},
		confCase{name: "7.13.2 close code 65535", rfc: "§7.4.2", send: frames(closeFr(65535, "")), fail: 1002},
	)
	return cases
}

// limit is MaxLength for the 9.x cases: Autobahn's sizes scaled down.
const limit = 64 << 10

// 9.x (scaled): messages up to MaxLength in every shape are echoed, one
// byte more fails with 1009 (§7.4.1, §10.4); 10.1.1: auto-fragmentation.
func limitCases() []confCase {
	text, bin := jsonText(limit), binPayload(limit)
	var cases []confCase
	cases = append(cases,
		confCase{name: "9.1.1 text of 64 KiB (the limit)", rfc: "§10.4", send: frames(fr(0x81, text)), want: []srvFrame{echoed(text)}},
		confCase{name: "9.2.1 binary of 64 KiB (the limit)", rfc: "§10.4", send: frames(fr(0x82, bin)), want: []srvFrame{binEchoed(bin)}},
		confCase{name: "9.x+ text of the limit + 1", rfc: "§7.4.1, §10.4", send: frames(fr(0x81, jsonText(limit+1))), fail: 1009},
		confCase{name: "9.x+ binary of the limit + 1", rfc: "§7.4.1, §10.4", send: frames(fr(0x82, binPayload(limit+1))), fail: 1009},
		confCase{name: "9.x+ only the header of a 1 TiB frame", rfc: "§7.4.1, §10.4",
			send: frames(append([]byte{0x82, 0x80 | 127}, binary.BigEndian.AppendUint64(nil, 1<<40)...)), fail: 1009},
	)
	for i, size := range []int{64, 256, 1 << 10, 4 << 10, 16 << 10, 64 << 10} {
		cases = append(cases,
			confCase{name: fmt.Sprintf("9.3.%d text of 64 KiB in fragments of %d", i+1, size), rfc: "§5.4, §10.4",
				send: fragmented(0x1, split(text, size)...), want: []srvFrame{echoed(text)}},
			confCase{name: fmt.Sprintf("9.4.%d binary of 64 KiB in fragments of %d", i+1, size), rfc: "§5.4, §10.4",
				send: fragmented(0x2, split(bin, size)...), want: []srvFrame{binEchoed(bin)}},
		)
	}
	for i, chop := range []int{64, 128, 256, 512, 1024, 2048} {
		cases = append(cases,
			confCase{name: fmt.Sprintf("9.5.%d text of 64 KiB written in chops of %d", i+1, chop), rfc: "§5.2",
				send: frames(fr(0x81, text)), want: []srvFrame{echoed(text)}, chop: chop},
			confCase{name: fmt.Sprintf("9.6.%d binary of 64 KiB written in chops of %d", i+1, chop), rfc: "§5.2",
				send: frames(fr(0x82, bin)), want: []srvFrame{binEchoed(bin)}, chop: chop},
		)
	}
	var texts, bins [][]byte
	var textEchoes, binEchoes []srvFrame
	for i := range 1000 {
		p := fmt.Sprintf(`"message %04d"`, i)
		texts, textEchoes = append(texts, fr(0x81, p)), append(textEchoes, echoed(p))
		b := fmt.Sprintf("\x00\xff%04d", i)
		bins, binEchoes = append(bins, fr(0x82, b)), append(binEchoes, binEchoed(b))
	}
	cases = append(cases,
		confCase{name: "9.7.x (scaled) 1000 text messages in one write, echoed in order", rfc: "§5.6", send: texts, want: textEchoes},
		confCase{name: "9.8.x (scaled) 1000 binary messages in one write, echoed in order", rfc: "§5.6", send: bins, want: binEchoes},
		confCase{name: "9.x+ fragments over the limit together", rfc: "§5.4, §7.4.1, §10.4",
			send: fragmented(0x1, `"`+strings.Repeat("a", 40000), strings.Repeat("b", 30000)+`"`), fail: 1009},
		confCase{name: "9.x+ a ping between fragments does not count to the limit", rfc: "§5.4, §5.5",
			send: append(frames(fr(0x01, text[:limit/2]), fr(0x89, strings.Repeat("p", 125))), fr(0x80, text[limit/2:])),
			want: []srvFrame{pong(strings.Repeat("p", 125)), echoed(text)}},
		confCase{name: "9.x+ 16-bit length of 125 (not the shortest form)", rfc: "§5.2",
			send: frames(append([]byte{0x81, 0x80 | 126, 0, 125, 0, 0, 0, 0}, jsonText(125)...)), fail: 1002},
		confCase{name: "9.x+ 64-bit length of 65535 (not the shortest form)", rfc: "§5.2",
			send: frames(append(append([]byte{0x82, 0x80 | 127, 0, 0, 0, 0, 0, 0, 0xff, 0xff}, 0, 0, 0, 0), make([]byte, 65535)...)), fail: 1002},
		confCase{name: "9.x+ 64-bit length of 0 (not the shortest form)", rfc: "§5.2",
			send: frames([]byte{0x82, 0x80 | 127, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}), fail: 1002},
		confCase{name: "9.x+ 64-bit length with the top bit set", rfc: "§5.2",
			send: frames([]byte{0x82, 0x80 | 127, 0x80, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 0}), fail: 1002},
		confCase{name: "10.1.1 text of 64 KiB in frames of 1300", rfc: "§5.4",
			send: fragmented(0x1, split(text, 1300)...), want: []srvFrame{echoed(text)}},
	)
	return cases
}

// 12.x and 13.x test permessage-deflate, which this server does not
// offer: an offer is declined (§9.1), and a frame with RSV1 set (a
// compressed message) then fails the connection (§5.2).
func compressionCases(t *testing.T, cs *confServer) {
	for _, offer := range []string{
		"permessage-deflate",
		"permessage-deflate; client_max_window_bits",
		"permessage-deflate; server_no_context_takeover; client_no_context_takeover, permessage-deflate",
		"x-webkit-deflate-frame",
	} {
		t.Run("12.x 13.x offer "+offer, func(t *testing.T) {
			c := cs.rawDial(t, testkit.RawOptions{Header: "Sec-WebSocket-Extensions: " + offer + "\r\n"})
			if ext, ok := c.Resp.Header["Sec-Websocket-Extensions"]; ok {
				t.Fatalf("Sec-WebSocket-Extensions %q in the response, none was agreed", ext)
			}
			// "Hello" deflated, as a compressed message would be sent.
			c.WriteFrame(t, 0xC1, []byte{0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00}, true)
			c.expectFail(t, 1002)
		})
	}
}

// rawRequest sends req on a new connection and reads the response.
func rawRequest(t *testing.T, ts *testServer, req string) *http.Response {
	t.Helper()
	conn, err := net.Dial("tcp", ts.hs.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(testkit.Timeout))
	if _, err := io.WriteString(conn, req); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("reading the response: %v", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		_, _ = io.Copy(io.Discard, resp.Body)
	}
	resp.Body.Close()
	return resp
}

// The opening handshake (§4.2.1 what the server reads, §4.2.2 what it answers).
func handshakeCases(t *testing.T, cs *confServer) {
	// The key and accept value of RFC 6455 §1.3.
	const key, accept = "dGhlIHNhbXBsZSBub25jZQ==", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
	host := "Host: " + cs.hs.Listener.Addr().String() + "\r\n"
	request := func(method, lines string) string {
		return method + " /primus HTTP/1.1\r\n" + lines + "\r\n"
	}
	valid := host + "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + key + "\r\n"
	for _, tc := range []struct {
		name, rfc, req string
		status         int
	}{
		{"valid: 101 with the accept value of §1.3", "§4.2.2", request("GET", valid), 101},
		{"Upgrade and Connection are case-insensitive tokens in lists", "§4.2.1",
			request("GET", host+"Upgrade: WebSocket\r\nConnection: keep-alive, UPGRADE\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: "+key+"\r\n"), 101},
		{"a subprotocol is offered: none is selected", "§4.2.2",
			request("GET", valid+"Sec-WebSocket-Protocol: chat, superchat\r\n"), 101},
		{"Sec-WebSocket-Version 8: 426 with the version supported", "§4.2.2, §4.4",
			request("GET", strings.Replace(valid, "Version: 13", "Version: 8", 1)), 426},
		{"no Sec-WebSocket-Version: 426", "§4.2.1, §4.4",
			request("GET", strings.Replace(valid, "Sec-WebSocket-Version: 13\r\n", "", 1)), 426},
		{"no Sec-WebSocket-Key: 400", "§4.2.1",
			request("GET", strings.Replace(valid, "Sec-WebSocket-Key: "+key+"\r\n", "", 1)), 400},
		{"a key of 5 bytes: 400", "§4.2.1", request("GET", strings.Replace(valid, key, "aGVsbG8=", 1)), 400},
		{"a key of 17 bytes: 400", "§4.2.1", request("GET", strings.Replace(valid, key, "AAAAAAAAAAAAAAAAAAAAAAA=", 1)), 400},
		{"a key that is not base64: 400", "§4.2.1", request("GET", strings.Replace(valid, key, "!!!!not*base64!!!!!!!!==", 1)), 400},
		{"POST: 405", "§4.2.1", request("POST", valid), 405},
		{"no Host: 400", "§4.2.1", request("GET", strings.Replace(valid, host, "", 1)), 400},
		{"Connection without the upgrade token: 426, as for plain requests", "§4.2.1",
			request("GET", strings.Replace(valid, "Connection: Upgrade", "Connection: keep-alive", 1)), 426},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := rawRequest(t, cs.testServer, tc.req)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d (%s)", resp.StatusCode, tc.status, tc.rfc)
			}
			if tc.status == 101 {
				cs.nextSpark(t)
			}
			h := resp.Header
			if tc.status != 101 {
				if h.Get("Sec-WebSocket-Accept") != "" {
					t.Errorf("Sec-WebSocket-Accept in a %d response", resp.StatusCode)
				}
				if tc.status == 426 && h.Get("Sec-WebSocket-Version") != "13" {
					t.Errorf("Sec-WebSocket-Version %q, want 13", h.Get("Sec-WebSocket-Version"))
				}
				return
			}
			if !strings.EqualFold(h.Get("Upgrade"), "websocket") || !strings.EqualFold(h.Get("Connection"), "upgrade") {
				t.Errorf("Upgrade %q, Connection %q", h.Get("Upgrade"), h.Get("Connection"))
			}
			if got := h.Get("Sec-WebSocket-Accept"); got != accept {
				t.Errorf("Sec-WebSocket-Accept %q, want %q", got, accept)
			}
			for _, k := range []string{"Sec-WebSocket-Protocol", "Sec-WebSocket-Extensions"} {
				if v, ok := h[http.CanonicalHeaderKey(k)]; ok {
					t.Errorf("%s %q, none was agreed", k, v)
				}
			}
		})
	}
	if n, want := cs.Stats().ConnectionsTotal, uint64(3); n != want {
		t.Errorf("ConnectionsTotal %d, want %d (only the 101s)", n, want)
	}
}
