package primus_test

import (
	"bytes"
	"errors"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/coder/websocket"

	"github.com/primusgo/primus"
	"github.com/primusgo/primus/internal/protocol"
	"github.com/primusgo/primus/internal/testkit"
)

// echoConfig makes every spark write back what it receives.
func echoConfig() primus.Config {
	return primus.Config{OnConnection: func(s *primus.Spark) {
		s.OnData(func(s *primus.Spark, d primus.Data) {
			if d.IsBinary() {
				_ = s.Write(map[string]any{"binary": string(d.Bytes())})
				return
			}
			_ = s.Write(d.JSON())
		})
	}}
}

var idPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{21}$`)

func TestIDRequest(t *testing.T) {
	ts := startServer(t, primus.Config{})
	c := ts.dial(t, testkit.DialOptions{})
	s := ts.nextSpark(t)
	if !idPattern.MatchString(s.ID()) {
		t.Fatalf("spark id %q does not match %v", s.ID(), idPattern)
	}
	c.Send(t, `"primus::id::"`)
	c.Expect(t, `"primus::id::`+s.ID()+`"`)
	// Any value after "id::" is ignored.
	c.Send(t, `"primus::id::whatever"`)
	c.Expect(t, `"primus::id::`+s.ID()+`"`)
	if got := ts.Spark(s.ID()); got != s {
		t.Fatalf("Server.Spark(%q) = %p, want %p", s.ID(), got, s)
	}
}

func TestIDsAreDistinct(t *testing.T) {
	ts := startServer(t, primus.Config{})
	seen := map[string]bool{}
	for range 20 {
		ts.dial(t, testkit.DialOptions{})
		id := ts.nextSpark(t).ID()
		if !idPattern.MatchString(id) || seen[id] {
			t.Fatalf("bad or repeated id %q", id)
		}
		seen[id] = true
	}
}

func TestIDGenerator(t *testing.T) {
	ts := startServer(t, primus.Config{IDGenerator: func() string { return "custom-id" }})
	c := ts.dial(t, testkit.DialOptions{})
	c.Send(t, `"primus::id::"`)
	c.Expect(t, `"primus::id::custom-id"`)
}

func TestRequestDetails(t *testing.T) {
	ts := startServer(t, primus.Config{})
	ts.dialPath(t, "/primus/some/path?token=abc&x=1&x=2", testkit.DialOptions{
		Header: http.Header{"X-Test": {"yes"}, "X-Forwarded-For": {"203.0.113.9"}},
	})
	s := ts.nextSpark(t)
	if got := s.Query().Get("token"); got != "abc" {
		t.Errorf("query token = %q", got)
	}
	if got := s.Query()["x"]; len(got) != 2 || got[0] != "1" || got[1] != "2" {
		t.Errorf("query x = %q", got)
	}
	if got := s.Headers().Get("X-Test"); got != "yes" {
		t.Errorf("header X-Test = %q", got)
	}
	// X-Forwarded-For is not trusted by default.
	if got := s.RemoteAddr(); got != "127.0.0.1" {
		t.Errorf("RemoteAddr = %q, want 127.0.0.1", got)
	}
}

func TestTrustForwardedFor(t *testing.T) {
	ts := startServer(t, primus.Config{TrustForwardedFor: true})
	// The proxy appended the last entry; the first is the client's own.
	ts.dial(t, testkit.DialOptions{Header: http.Header{"X-Forwarded-For": {"10.0.0.1, 203.0.113.9 "}}})
	if got := ts.nextSpark(t).RemoteAddr(); got != "203.0.113.9" {
		t.Errorf("RemoteAddr = %q, want 203.0.113.9", got)
	}
	ts.dial(t, testkit.DialOptions{Header: http.Header{"X-Forwarded-For": {"10.0.0.1", "198.51.100.7"}}})
	if got := ts.nextSpark(t).RemoteAddr(); got != "198.51.100.7" {
		t.Errorf("RemoteAddr with two headers = %q, want 198.51.100.7", got)
	}
	ts.dial(t, testkit.DialOptions{})
	if got := ts.nextSpark(t).RemoteAddr(); got != "127.0.0.1" {
		t.Errorf("RemoteAddr without header = %q, want 127.0.0.1", got)
	}
}

func TestEcho(t *testing.T) {
	ts := startServer(t, echoConfig())
	c := ts.dial(t, testkit.DialOptions{})
	for _, msg := range []string{`{"hello":"world"}`, `"plain string"`, `[1,2,3]`, `1`, `null`, `"café"`} {
		c.Send(t, msg)
		c.Expect(t, msg)
	}
}

func TestDataDecode(t *testing.T) {
	got := make(chan map[string]int, 1)
	ts := startServer(t, primus.Config{OnConnection: func(s *primus.Spark) {
		s.OnData(func(s *primus.Spark, d primus.Data) {
			var v map[string]int
			if err := d.Decode(&v); err != nil {
				t.Errorf("Decode: %v", err)
			}
			got <- v
		})
	}})
	c := ts.dial(t, testkit.DialOptions{})
	c.Send(t, `{"a":1}`)
	if v := <-got; v["a"] != 1 {
		t.Fatalf("decoded %v", v)
	}
}

func TestWriteTypes(t *testing.T) {
	ts := startServer(t, primus.Config{})
	c := ts.dial(t, testkit.DialOptions{})
	s := ts.nextSpark(t)
	for _, tt := range []struct {
		v    any
		want string
	}{
		{map[string]any{"a": "<b>&"}, `{"a":"<b>&"}`},
		{"plain string", `"plain string"`},
		{[]int{1, 2, 3}, `[1,2,3]`},
		{nil, `null`},
		{1.5, `1.5`},
	} {
		if err := s.Write(tt.v); err != nil {
			t.Fatalf("Write(%v): %v", tt.v, err)
		}
		c.Expect(t, tt.want)
	}
	if err := s.Write(func() {}); err == nil {
		t.Fatal("Write(func) succeeded")
	}
	if err := s.Write(make(chan int)); err == nil {
		t.Fatal("Write(chan) succeeded")
	}
	// Nothing was sent for the failed writes.
	_ = s.Write("marker")
	c.Expect(t, `"marker"`)
}

func TestInvalidJSON(t *testing.T) {
	errs := testkit.NewQueue[error]()
	cfg := echoConfig()
	echo := cfg.OnConnection
	cfg.OnConnection = func(s *primus.Spark) {
		echo(s)
		s.OnError(func(_ *primus.Spark, err error) { errs.Put(err) })
	}
	ts := startServer(t, cfg)
	c := ts.dial(t, testkit.DialOptions{})
	c.Send(t, `{not json`)
	ctx, cancel := waitCtx()
	defer cancel()
	err, ok := errs.Get(ctx)
	if !ok {
		t.Fatal("no OnError for invalid JSON")
	}
	var pe *primus.ParseError
	if !errors.As(err, &pe) {
		t.Fatalf("error %T %v, want *primus.ParseError", err, err)
	}
	if string(pe.Data) != `{not json` {
		t.Errorf("ParseError.Data = %q", pe.Data)
	}
	// The message was dropped and the connection still works.
	c.Send(t, `{"echo":"still alive"}`)
	c.Expect(t, `{"echo":"still alive"}`)
	if n := ts.Stats().ParseErrors; n != 1 {
		t.Errorf("Stats().ParseErrors = %d, want 1", n)
	}
	// An empty text message is not JSON either.
	c.Send(t, ``)
	if err, _ := errs.Get(ctx); !errors.As(err, &pe) {
		t.Fatalf("empty message: error %v", err)
	}
	c.Send(t, `"ok"`)
	c.Expect(t, `"ok"`)
}

// Unknown "primus::" strings from a client are data, as in Primus; but
// the server never writes a "primus::" string as data (the echo is
// refused with ErrReservedData), so that no client can make the server
// send its peers "primus::server::close" and the like.
func TestUnknownProtocolMessageIsData(t *testing.T) {
	type echo struct {
		data string
		err  error
	}
	echoes := testkit.NewQueue[echo]()
	ts := startServer(t, primus.Config{OnConnection: func(s *primus.Spark) {
		s.OnData(func(s *primus.Spark, d primus.Data) {
			echoes.Put(echo{string(d.JSON()), s.Write(d.JSON())})
		})
	}})
	c := ts.dial(t, testkit.DialOptions{})
	ctx, cancel := waitCtx()
	defer cancel()
	for _, msg := range []string{`"primus::foo::bar"`, `"primus::ping::1"`, `"primus::server::close"`, `"primus::"`,
		`"\u0070rimus::server::close"`,
		// Primus reads these types as "pon" and "i" (msg.slice(8, -1)): data.
		`"primus::pong"`, `"primus::id"`} {
		c.Send(t, msg)
		e, ok := echoes.Get(ctx)
		if !ok || e.data != msg || !errors.Is(e.err, primus.ErrReservedData) {
			t.Fatalf("data %s: handler saw %s, echo error %v", msg, e.data, e.err)
		}
	}
	if n := ts.Stats().ReservedRefused; n != 7 {
		t.Errorf("Stats().ReservedRefused = %d, want 7", n)
	}
	// Nothing was echoed: the next frame is the marker.
	c.Send(t, `"marker"`)
	c.Expect(t, `"marker"`)
	// A pong is not data: the next thing echoed is the marker.
	c.Send(t, `"primus::pong::whatever"`)
	c.Send(t, `"marker"`)
	c.Expect(t, `"marker"`)
}

func TestBinaryFrame(t *testing.T) {
	got := make(chan primus.Data, 1)
	ts := startServer(t, primus.Config{OnConnection: func(s *primus.Spark) {
		s.OnData(func(_ *primus.Spark, d primus.Data) { got <- d })
	}})
	c := ts.dial(t, testkit.DialOptions{})
	payload := []byte{0x7b, 0x00, 0xff, 0x10}
	c.Write(t, websocket.MessageBinary, payload)
	d := <-got
	if !d.IsBinary() || !bytes.Equal(d.Bytes(), payload) {
		t.Fatalf("got %v %x, want binary %x", d.IsBinary(), d.Bytes(), payload)
	}
	if d.JSON() != nil || d.String() != "<binary 4 bytes>" {
		t.Errorf("binary data: JSON() = %q, String() = %q", d.JSON(), d.String())
	}
	var v any
	if d.Decode(&v) == nil {
		t.Error("Decode of binary data succeeded")
	}
	c.Send(t, `{"a":1}`)
	if d := <-got; d.IsBinary() || string(d.JSON()) != `{"a":1}` || d.String() != `{"a":1}` {
		t.Fatalf("text data = %v %q", d.IsBinary(), d.Bytes())
	}
}

func TestLineTerminatorsEscaped(t *testing.T) {
	ts := startServer(t, echoConfig())
	c := ts.dial(t, testkit.DialOptions{})
	s := ts.nextSpark(t)
	_ = s.Write(map[string]string{"s": "café \u2028 line\u2029"})
	c.Expect(t, `{"s":"café \u2028 line\u2029"}`)
	// Raw U+2028 coming from a client is escaped on the way back out.
	c.Send(t, "\"a\u2028b\"")
	f := c.NextData(t)
	if string(f.Data) != `"a\u2028b"` {
		t.Fatalf("echo frame = %q, want %q", f.Data, `"a\u2028b"`)
	}
	if bytes.Contains(f.Data, []byte("\u2028")) {
		t.Fatal("raw U+2028 on the wire")
	}
}

func TestSparkValues(t *testing.T) {
	ts := startServer(t, primus.Config{})
	ts.dial(t, testkit.DialOptions{})
	s := ts.nextSpark(t)
	if _, ok := s.Get("k"); ok {
		t.Fatal("Get of an unset key succeeded")
	}
	s.Set("k", 42)
	if v, ok := s.Get("k"); !ok || v != 42 {
		t.Fatalf("Get = %v %v", v, ok)
	}
}

func TestEnd(t *testing.T) {
	ts := startServer(t, primus.Config{})
	c := ts.dial(t, testkit.DialOptions{})
	s := ts.nextSpark(t)
	ends := make(chan primus.CloseReason, 1)
	s.OnEnd(func(_ *primus.Spark, r primus.CloseReason) { ends <- r })
	_ = s.Write("last")
	s.End()
	if err := s.Write("after end"); !errors.Is(err, primus.ErrSparkClosed) {
		t.Errorf("Write after End = %v, want ErrSparkClosed", err)
	}
	c.Expect(t, `"last"`)
	c.Expect(t, `"primus::server::close"`)
	if code := c.WaitClosed(t); code != websocket.StatusNoStatusRcvd {
		t.Fatalf("close status %v, want 1005 (no status)", code)
	}
	if rest := c.Rest(t); len(rest) != 0 {
		t.Fatalf("frames after server::close: %v", rest)
	}
	if got := ts.nextDisconnection(t); got != s {
		t.Fatal("disconnection of another spark")
	}
	if r := <-ends; r != primus.ReasonEnded {
		t.Errorf("OnEnd reason %v, want %v", r, primus.ReasonEnded)
	}
	if r := s.CloseReason(); r != primus.ReasonEnded {
		t.Errorf("CloseReason %v, want %v", r, primus.ReasonEnded)
	}
	s.End() // a second End is harmless
	if ts.Spark(s.ID()) != nil {
		t.Error("closed spark still registered")
	}
	if st := ts.Stats(); st.Connections != 0 || st.ConnectionsTotal != 1 {
		t.Errorf("Stats connections %d total %d", st.Connections, st.ConnectionsTotal)
	}
}

func TestEndReconnect(t *testing.T) {
	ts := startServer(t, primus.Config{})
	c := ts.dial(t, testkit.DialOptions{})
	s := ts.nextSpark(t)
	_ = s.Write("last")
	s.EndReconnect()
	if code := c.WaitClosed(t); code != websocket.StatusNoStatusRcvd {
		t.Fatalf("close status %v, want 1005 (no status)", code)
	}
	rest := c.Rest(t)
	if len(rest) != 1 || string(rest[0].Data) != `"last"` {
		t.Fatalf("frames = %v, want only \"last\" (no server::close)", rest)
	}
	ts.nextDisconnection(t)
	if r := s.CloseReason(); r != primus.ReasonEndedReconnect {
		t.Errorf("CloseReason %v, want %v", r, primus.ReasonEndedReconnect)
	}
}

func TestEndInOnConnection(t *testing.T) {
	ts := startServer(t, primus.Config{OnConnection: func(s *primus.Spark) {
		_ = s.Write("bye")
		s.End()
	}})
	c := ts.dial(t, testkit.DialOptions{})
	c.Expect(t, `"bye"`)
	c.Expect(t, `"primus::server::close"`)
	if code := c.WaitClosed(t); code != websocket.StatusNoStatusRcvd {
		t.Fatalf("close status %v", code)
	}
	ts.nextDisconnection(t)
}

func TestClientClose(t *testing.T) {
	ts := startServer(t, primus.Config{})
	c := ts.dial(t, testkit.DialOptions{})
	s := ts.nextSpark(t)
	if err := c.Conn.Close(websocket.StatusNormalClosure, "bye"); err != nil {
		t.Fatalf("client close handshake: %v", err)
	}
	ts.nextDisconnection(t)
	if r := s.CloseReason(); r != primus.ReasonClientClosed {
		t.Errorf("CloseReason %v, want %v", r, primus.ReasonClientClosed)
	}
	if err := s.Write("x"); !errors.Is(err, primus.ErrSparkClosed) {
		t.Errorf("Write after close = %v", err)
	}
}

func TestClientDrop(t *testing.T) {
	ts := startServer(t, primus.Config{})
	c := ts.dial(t, testkit.DialOptions{})
	s := ts.nextSpark(t)
	c.Close() // no close handshake
	ts.nextDisconnection(t)
	if r := s.CloseReason(); r != primus.ReasonClientClosed {
		t.Errorf("CloseReason %v, want %v", r, primus.ReasonClientClosed)
	}
}

func TestMaxLength(t *testing.T) {
	errs := testkit.NewQueue[error]()
	cfg := echoConfig()
	cfg.MaxLength = 64
	echo := cfg.OnConnection
	cfg.OnConnection = func(s *primus.Spark) {
		echo(s)
		s.OnError(func(_ *primus.Spark, err error) { errs.Put(err) })
	}
	ts := startServer(t, cfg)
	c := ts.dial(t, testkit.DialOptions{})
	s := ts.nextSpark(t)
	exact := `"` + strings.Repeat("a", 62) + `"` // 64 bytes: allowed
	c.Send(t, exact)
	c.Expect(t, exact)
	c.Send(t, `{"echo":"`+strings.Repeat("0123456789", 7)+`"}`)
	if code := c.WaitClosed(t); code != websocket.StatusMessageTooBig {
		t.Fatalf("close status %v, want 1009", code)
	}
	ts.nextDisconnection(t)
	if r := s.CloseReason(); r != primus.ReasonMessageTooLarge {
		t.Errorf("CloseReason %v, want %v", r, primus.ReasonMessageTooLarge)
	}
	if errs.Len() != 1 {
		t.Errorf("%d OnError calls, want 1", errs.Len())
	}
}

func TestMaxLengthFragmented(t *testing.T) {
	ts := startServer(t, primus.Config{MaxLength: 64})
	c := ts.dial(t, testkit.DialOptions{})
	s := ts.nextSpark(t)
	ctx, cancel := waitCtx()
	defer cancel()
	w, err := c.Conn.Writer(ctx, websocket.MessageText)
	if err != nil {
		t.Fatal(err)
	}
	// Each fragment is small; together they are over the limit.
	for range 5 {
		if _, err := w.Write([]byte(strings.Repeat("x", 20))); err != nil {
			break
		}
	}
	_ = w.Close()
	if code := c.WaitClosed(t); code != websocket.StatusMessageTooBig {
		t.Fatalf("close status %v, want 1009", code)
	}
	ts.nextDisconnection(t)
	if r := s.CloseReason(); r != primus.ReasonMessageTooLarge {
		t.Errorf("CloseReason %v", r)
	}
}

func TestFragmentedMessage(t *testing.T) {
	ts := startServer(t, echoConfig())
	c := ts.dial(t, testkit.DialOptions{})
	ctx, cancel := waitCtx()
	defer cancel()
	w, err := c.Conn.Writer(ctx, websocket.MessageText)
	if err != nil {
		t.Fatal(err)
	}
	for _, part := range []string{`{"a":`, `"frag`, `mented"`, `}`} {
		if _, err := w.Write([]byte(part)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	c.Expect(t, `{"a":"fragmented"}`)
}

// Raw frames: what coder/websocket would never send.

func TestRawFragmentsWithPingInBetween(t *testing.T) {
	ts := startServer(t, echoConfig())
	c := ts.rawDial(t, testkit.RawOptions{})
	c.WriteFrame(t, 0x01, []byte(`"he`), true)            // text, not final
	c.WriteFrame(t, 0x89, []byte("p"), true)              // ping inside the message
	c.WriteFrame(t, 0x00, []byte(`ll`), true)             // continuation
	c.WriteFrame(t, 0x80, []byte(`o"`), true)             // final continuation
	c.WriteFrame(t, 0x81, []byte(`"primus::id::"`), true) // an unrelated message
	op, p, err := c.ReadFrame()
	if err != nil || op != 0xA || string(p) != "p" {
		t.Fatalf("got op %#x %q %v, want pong \"p\"", op, p, err)
	}
	op, p, err = c.ReadFrame()
	if err != nil || op != 0x1 || string(p) != `"hello"` {
		t.Fatalf("got op %#x %q %v, want text \"hello\"", op, p, err)
	}
	op, p, err = c.ReadFrame()
	if err != nil || op != 0x1 || !strings.HasPrefix(string(p), `"primus::id::`) {
		t.Fatalf("got op %#x %q %v, want id reply", op, p, err)
	}
}

func TestProtocolErrors(t *testing.T) {
	tests := []struct {
		name   string
		b0     byte
		data   []byte
		masked bool
		want   int
	}{
		{"unmasked", 0x81, []byte(`"x"`), false, 1002},
		{"opcode 3", 0x83, []byte(`"x"`), true, 1002},
		{"opcode 0xB", 0x8B, nil, true, 1002},
		{"rsv1", 0xC1, []byte(`"x"`), true, 1002},
		{"continuation first", 0x80, []byte(`"x"`), true, 1002},
		{"fragmented ping", 0x09, []byte(`x`), true, 1002},
		{"long ping", 0x89, bytes.Repeat([]byte("x"), 126), true, 1002},
		{"close 1 byte", 0x88, []byte{3}, true, 1002},
		{"close code 1005 on the wire", 0x88, []byte{0x03, 0xED}, true, 1002},
		{"close code 999", 0x88, []byte{0x03, 0xE7}, true, 1002},
		{"close code 5000", 0x88, []byte{0x13, 0x88}, true, 1002},
		{"close reason not utf8", 0x88, []byte{0x03, 0xE8, 0xff}, true, 1002},
		{"bad utf8", 0x81, []byte{'"', 0xff, '"'}, true, 1007},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := startServer(t, primus.Config{})
			c := ts.rawDial(t, testkit.RawOptions{})
			s := ts.nextSpark(t)
			c.WriteFrame(t, tt.b0, tt.data, tt.masked)
			if code := c.ReadClose(t); code != tt.want {
				t.Fatalf("close code %d, want %d", code, tt.want)
			}
			c.Close() // the handshake is over; the server lingers until then
			ts.nextDisconnection(t)
			if r := s.CloseReason(); r != primus.ReasonProtocolError {
				t.Errorf("CloseReason %v, want %v", r, primus.ReasonProtocolError)
			}
		})
	}
}

// Frame lengths (RFC 6455 §5.2): the top bit of a 64-bit length must be 0
// and every length must be in its shortest form; both are protocol
// errors (1002), never "too big" (1009) or accepted.
func TestFrameLengthEncoding(t *testing.T) {
	mask := []byte{1, 2, 3, 4}
	hello := []byte{'"' ^ 1, 'h' ^ 2, 'i' ^ 3, '"' ^ 4}
	for name, raw := range map[string][]byte{
		"64-bit top bit set":  append([]byte{0x81, 0x80 | 127, 0x80, 0, 0, 0, 0, 0, 0, 4}, mask...),
		"64-bit form of 4":    append(append([]byte{0x81, 0x80 | 127, 0, 0, 0, 0, 0, 0, 0, 4}, mask...), hello...),
		"16-bit form of 4":    append(append([]byte{0x81, 0x80 | 126, 0, 4}, mask...), hello...),
		"16-bit form of 125":  append([]byte{0x81, 0x80 | 126, 0, 125}, mask...),
		"64-bit form of 1000": append([]byte{0x82, 0x80 | 127, 0, 0, 0, 0, 0, 0, 0x03, 0xE8}, mask...),
	} {
		t.Run(name, func(t *testing.T) {
			ts := startServer(t, primus.Config{})
			c := ts.rawDial(t, testkit.RawOptions{})
			s := ts.nextSpark(t)
			if _, err := c.Write(raw); err != nil {
				t.Fatal(err)
			}
			if code := c.ReadClose(t); code != 1002 {
				t.Fatalf("close code %d, want 1002", code)
			}
			c.Close()
			ts.nextDisconnection(t)
			if r := s.CloseReason(); r != primus.ReasonProtocolError {
				t.Errorf("CloseReason %v, want %v", r, primus.ReasonProtocolError)
			}
		})
	}
}

func TestRawDataInsideFragmentedMessage(t *testing.T) {
	ts := startServer(t, primus.Config{})
	c := ts.rawDial(t, testkit.RawOptions{})
	c.WriteFrame(t, 0x01, []byte(`"a`), true)
	c.WriteFrame(t, 0x81, []byte(`"b"`), true) // a new message before the first ended
	if code := c.ReadClose(t); code != 1002 {
		t.Fatalf("close code %d, want 1002", code)
	}
}

func TestRawClientCloseEchoed(t *testing.T) {
	for _, tt := range []struct {
		payload []byte
		want    int
	}{
		{[]byte{0x03, 0xE8, 'b', 'y', 'e'}, 1000},
		{[]byte{0x0B, 0xB8}, 3000},
		{[]byte{0x13, 0x87}, 4999},
		{nil, 1005}, // an empty close is echoed empty
	} {
		ts := startServer(t, primus.Config{})
		c := ts.rawDial(t, testkit.RawOptions{})
		s := ts.nextSpark(t)
		c.WriteFrame(t, 0x88, tt.payload, true)
		if code := c.ReadClose(t); code != tt.want {
			t.Fatalf("echoed close code %d, want %d", code, tt.want)
		}
		ts.nextDisconnection(t)
		if r := s.CloseReason(); r != primus.ReasonClientClosed {
			t.Errorf("CloseReason %v", r)
		}
	}
}

func TestEarlyFrameAfterHandshake(t *testing.T) {
	// A client may send its first frame right behind the request; the
	// server must not lose the bytes net/http read ahead.
	ts := startServer(t, echoConfig())
	early := append(testkit.BuildFrame(0x81, []byte(`"first"`), true), testkit.BuildFrame(0x81, []byte(`"second"`), true)...)
	c := ts.rawDial(t, testkit.RawOptions{Early: early})
	for _, want := range []string{`"first"`, `"second"`} {
		op, p, err := c.ReadFrame()
		if err != nil || op != 1 || string(p) != want {
			t.Fatalf("got %#x %q %v, want %s", op, p, err, want)
		}
	}
}

// After End the application hears no more data from the spark, as in
// Primus (spark.end() removes its listeners), even though the client's
// frames keep arriving until it answers the close.
func TestNoDataAfterEnd(t *testing.T) {
	got := testkit.NewQueue[string]()
	ts := startServer(t, primus.Config{OnConnection: func(s *primus.Spark) {
		s.OnData(func(s *primus.Spark, d primus.Data) {
			got.Put(d.String())
			s.End()
		})
	}})
	c := ts.rawDial(t, testkit.RawOptions{})
	var burst []byte
	for _, m := range []string{`1`, `2`, `3`} {
		burst = append(burst, testkit.BuildFrame(0x81, []byte(m), true)...)
	}
	if _, err := c.Write(burst); err != nil {
		t.Fatal(err)
	}
	// Read up to the server's close frame, then answer it.
	if code := c.ReadClose(t); code != 1005 {
		t.Fatalf("close code %d", code)
	}
	c.WriteFrame(t, 0x88, nil, true)
	ts.nextDisconnection(t)
	if n := got.Len(); n != 1 {
		var all []string
		for v, ok := got.TryGet(); ok; v, ok = got.TryGet() {
			all = append(all, v)
		}
		t.Fatalf("OnData ran for %v, want only the first message", all)
	}
}

func TestErrorAndReasonText(t *testing.T) {
	pe := &primus.ParseError{Data: []byte("{"), Err: protocol.ErrInvalidJSON}
	if !errors.Is(pe, protocol.ErrInvalidJSON) || pe.Error() != "primus: invalid JSON" {
		t.Errorf("ParseError: %q, Is=%v", pe.Error(), errors.Is(pe, protocol.ErrInvalidJSON))
	}
	for r, want := range map[primus.CloseReason]string{
		primus.ReasonNone:             "open",
		primus.ReasonHeartbeatTimeout: "heartbeat timeout",
		primus.ReasonSlowConsumer:     "slow consumer",
		primus.ReasonShutdown:         "server shutdown",
		primus.CloseReason(99):        "unknown",
		primus.CloseReason(-1):        "unknown",
	} {
		if got := r.String(); got != want {
			t.Errorf("CloseReason(%d).String() = %q, want %q", int(r), got, want)
		}
	}
	var d primus.Data
	if d.String() != "" || d.IsBinary() {
		t.Errorf("zero Data = %q", d.String())
	}
}

// OnData, OnError and OnEnd add handlers (as spark.on does): each runs, in
// the order added.
func TestHandlersAdd(t *testing.T) {
	calls := testkit.NewQueue[string]()
	ts := startServer(t, primus.Config{OnConnection: func(s *primus.Spark) {
		for _, name := range []string{"first", "second"} {
			s.OnData(func(_ *primus.Spark, d primus.Data) { calls.Put(name + " data " + string(d.JSON())) })
			s.OnError(func(*primus.Spark, error) { calls.Put(name + " error") })
			s.OnEnd(func(*primus.Spark, primus.CloseReason) { calls.Put(name + " end") })
		}
	}})
	c := ts.dial(t, testkit.DialOptions{})
	ts.nextSpark(t)
	c.Send(t, `1`)
	c.Send(t, `not json`)
	c.Close()
	ctx, cancel := waitCtx()
	defer cancel()
	for _, want := range []string{"first data 1", "second data 1", "first error", "second error", "first end", "second end"} {
		if got, _ := calls.Get(ctx); got != want {
			t.Fatalf("got %q, want %q", got, want)
		}
	}
}
