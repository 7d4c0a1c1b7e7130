package bench

import (
	"encoding/binary"
	"encoding/json"
	"net"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

func TestPrimusDialect(t *testing.T) {
	d := primusDialect{}
	if cmd, ok := d.hello([]byte("x"), 1); ok || string(cmd) != "x" {
		t.Errorf("hello %q %v: Primus connections are open at once", cmd, ok)
	}
	if got := string(d.join(nil, 1, "r3")); got != `{"join":"r3","ack":1}` {
		t.Errorf("join %s", got)
	}
	data := appendPayload(nil, 5, 77, 3, 1, 100)
	if got, want := string(d.publish(nil, 9, "r3", data)), `{"publish":{"room":"r3","data":`+string(data)+`}}`; got != want {
		t.Errorf("publish %s", got)
	}
	for _, tc := range []struct {
		msg  string
		kind msgKind
		data string
		id   uint32
	}{
		{string(data), msgData, string(data), 0},
		{`"primus::ping::1700"`, msgPing, "", 0},
		{`{"ack":1,"ok":true}`, msgReply, "", 1},
		{`{"ack":12,"error":"no such room"}`, msgRefused, "", 12},
		{`"primus::server::close"`, msgOther, "", 0},
		{`{"other":1}`, msgOther, "", 0},
	} {
		kind, got, id := d.classify([]byte(tc.msg))
		if kind != tc.kind || string(got) != tc.data || id != tc.id {
			t.Errorf("classify %s: %d %q %d, want %d %q %d", tc.msg, kind, got, id, tc.kind, tc.data, tc.id)
		}
	}
	if msg, rest := d.next([]byte("a\nb")); string(msg) != "a\nb" || rest != nil {
		t.Errorf("next: one message per frame, got %q %q", msg, rest)
	}
	if got := string(d.pong(nil, []byte(`"primus::ping::1700"`))); got != `"primus::pong::1700"` {
		t.Errorf("pong %s", got)
	}
}

func TestCentrifugeDialect(t *testing.T) {
	d := centrifugeDialect{}
	cmd, ok := d.hello(nil, 1)
	if !ok || string(cmd) != `{"id":1,"connect":{}}` {
		t.Errorf("hello %s %v", cmd, ok)
	}
	if got := string(d.join(nil, 2, "r3")); got != `{"id":2,"subscribe":{"channel":"r3"}}` {
		t.Errorf("join %s", got)
	}
	data := appendPayload(nil, 5, 77, 3, 1, 100)
	pub := d.publish(nil, 3, "r3", data)
	if want := `{"id":3,"publish":{"channel":"r3","data":` + string(data) + `}}`; string(pub) != want {
		t.Errorf("publish %s", pub)
	}
	var cmdJSON struct {
		ID      int `json:"id"`
		Publish struct {
			Channel string          `json:"channel"`
			Data    json.RawMessage `json:"data"`
		} `json:"publish"`
	}
	if err := json.Unmarshal(pub, &cmdJSON); err != nil || cmdJSON.ID != 3 || cmdJSON.Publish.Channel != "r3" || string(cmdJSON.Publish.Data) != string(data) {
		t.Errorf("publish command decodes to %+v, %v", cmdJSON, err)
	}

	push := `{"push":{"channel":"r3","pub":{"data":` + string(data) + `}}}`
	for _, tc := range []struct {
		msg  string
		kind msgKind
		id   uint32
	}{
		{push, msgData, 0},
		// Fields after the data (history offsets, publisher info) do not matter.
		{`{"push":{"channel":"r3","pub":{"data":` + string(data) + `,"offset":7}}}`, msgData, 0},
		{`{}`, msgPing, 0},
		{`{"id":1,"connect":{"client":"5bc6d6a4-2f4f-4a5e-9c55-6a1d2e4b7a11","version":"","ping":25,"pong":true}}`, msgReply, 1},
		{`{"id":2,"subscribe":{}}`, msgReply, 2},
		{`{"id":4294967295,"publish":{}}`, msgReply, 4294967295},
		{`{"id":2,"error":{"code":103,"message":"permission denied"}}`, msgRefused, 2},
		{`{"push":{"channel":"r3","join":{"info":{"client":"c","user":""}}}}`, msgOther, 0},
		{`{"push":{"disconnect":{"code":3001,"reason":"shutdown"}}}`, msgOther, 0},
		{`{"id":x}`, msgOther, 0},
		{`{"id":99999999999,"publish":{}}`, msgOther, 0},
		{``, msgOther, 0},
	} {
		kind, got, id := d.classify([]byte(tc.msg))
		if kind != tc.kind || id != tc.id {
			t.Errorf("classify %s: %d %d, want %d %d", tc.msg, kind, id, tc.kind, tc.id)
		}
		if kind == msgData {
			// The payload is the same bytes as on the Primus stacks, and
			// parses the same.
			if m, ok := parsePayload(got); !ok || m != (message{seq: 5, t: 77, room: 3, writer: 1}) {
				t.Errorf("payload of %s: %+v %v", tc.msg, m, ok)
			}
		}
	}
	if got := string(d.pong(nil, []byte(`{}`))); got != `{}` {
		t.Errorf("pong %s", got)
	}

	// Several messages per frame, separated by newlines.
	frame := []byte(push + "\n{}\n" + `{"id":7,"publish":{}}`)
	var kinds []msgKind
	for msg, more := d.next(frame); ; msg, more = d.next(more) {
		k, _, _ := d.classify(msg)
		kinds = append(kinds, k)
		if len(more) == 0 {
			break
		}
	}
	if len(kinds) != 3 || kinds[0] != msgData || kinds[1] != msgPing || kinds[2] != msgReply {
		t.Errorf("frame split into %v", kinds)
	}
}

func TestPrimusRecoverDialect(t *testing.T) {
	d := primusRecoverDialect{}
	if got := string(d.join(nil, 7, "r3")); got != `{"join":"r3","recover":true,"ack":7}` {
		t.Errorf("join %s", got)
	}
	data := appendPayload(nil, 5, 77, 3, 1, 100)
	for _, tc := range []struct {
		msg  string
		kind msgKind
		data string
		id   uint32
	}{
		{`{"room":"r3","offset":12,"epoch":"Ab_9","data":` + string(data) + `}`, msgData, string(data), 0},
		{`{"room":"r3","offset":12,"epoch":"Ab_9"}`, msgOther, "", 0},
		{`{"room":"r3","offset":12,"epoch":"Ab_9","data":1`, msgOther, "", 0},
		{string(data), msgData, string(data), 0},
		{`{"ack":7,"ok":true,"offset":0,"epoch":"Ab_9"}`, msgReply, "", 7},
		{`"primus::ping::1700"`, msgPing, "", 0},
	} {
		kind, got, id := d.classify([]byte(tc.msg))
		if kind != tc.kind || string(got) != tc.data || id != tc.id {
			t.Errorf("classify %s: %d %q %d, want %d %q %d", tc.msg, kind, got, id, tc.kind, tc.data, tc.id)
		}
	}
}

func TestDialectFor(t *testing.T) {
	for name, want := range map[string]string{"": ProtoPrimus, "primus": ProtoPrimus, "primus-recover": ProtoPrimusRecover, "centrifuge": ProtoCentrifuge} {
		if d, err := dialectFor(name); err != nil || d.name() != want {
			t.Errorf("%q: %v %v", name, d, err)
		}
	}
	if _, err := dialectFor("socket.io"); err == nil {
		t.Error("unknown protocol accepted")
	}
	tg, err := parseTarget("ws://127.0.0.1:8000", centrifugeDialect{})
	if err != nil || tg.Path != "/connection/websocket" {
		t.Errorf("%+v %v", tg, err)
	}
	if tg, err := ParseTarget("ws://127.0.0.1:8000"); err != nil || tg.Path != "/primus?_primuscb=bench" {
		t.Errorf("%+v %v", tg, err)
	}
	if tg, err := ParseTarget("ws://127.0.0.1:8000/p?x=1"); err != nil || tg.Path != "/p?x=1" {
		t.Errorf("%+v %v", tg, err)
	}
}

// serverFrame is an unmasked text frame (what a server sends).
func serverFrame(p string) []byte { return appendServerFrame(nil, []byte(p)) }

// readClientFrame reads one masked client frame and returns its payload.
func readClientFrame(t *testing.T, c net.Conn) string {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	h := make([]byte, 2)
	if _, err := c.Read(h[:2]); err != nil {
		t.Fatal(err)
	}
	n := int(h[1] & 0x7f)
	if n > 125 {
		t.Fatalf("long frame in test")
	}
	buf := make([]byte, 4+n)
	for got := 0; got < len(buf); {
		m, err := c.Read(buf[got:])
		if err != nil {
			t.Fatal(err)
		}
		got += m
	}
	var mask [4]byte
	copy(mask[:], buf[:4])
	p := buf[4:]
	maskBytes(p, mask)
	return string(p)
}

// The session opens with the connect command; a server ping that comes
// in the same frame as the reply is answered, and what follows the reply's
// frame is handed on.
func TestCentrifugeOpenSession(t *testing.T) {
	cli, srv := net.Pipe()
	defer cli.Close()
	defer srv.Close()
	var ids atomic.Uint32
	type result struct {
		rest []byte
		err  error
	}
	done := make(chan result, 1)
	go func() {
		rest, err := openSession(cli, centrifugeDialect{}, [4]byte{1, 2, 3, 4}, &ids, nil)
		done <- result{rest, err}
	}()
	if got := readClientFrame(t, srv); got != `{"id":1,"connect":{}}` {
		t.Fatalf("first command %s", got)
	}
	after := serverFrame(`{"push":{"channel":"r1","pub":{"data":{"s":0}}}}`)
	go func() {
		_, _ = srv.Write(append(serverFrame(`{}`+"\n"+`{"id":1,"connect":{"client":"c","ping":25,"pong":true}}`), after...))
	}()
	if got := readClientFrame(t, srv); got != `{}` {
		t.Fatalf("pong %s", got)
	}
	r := <-done
	if r.err != nil || ids.Load() != 1 {
		t.Fatalf("%v, ids %d", r.err, ids.Load())
	}
	if string(r.rest) != string(after) {
		// net.Pipe delivers the whole write at once: the frame after the
		// reply was read with it.
		t.Fatalf("rest %q", r.rest)
	}

	// A refused subscription fails the dial with the server's error.
	if _, err := awaitReply(cli, centrifugeDialect{}, [4]byte{}, 2, serverFrame(`{"id":2,"error":{"code":103,"message":"permission denied"}}`)); err == nil {
		t.Fatal("refusal accepted")
	}
}

func TestCentrifugeRedisFormat(t *testing.T) {
	if got := string(appendCentrifugeChannel(nil, "centrifuge", "r7")); got != "centrifuge.client.r7" {
		t.Errorf("channel %s", got)
	}
	data := []byte(`{"s":1}`)
	got := appendCentrifugePublication(nil, data, 1700000000000)
	// Field 4 (data, length-delimited), then field 9 (time, varint).
	want := append([]byte{0x22, byte(len(data))}, data...)
	want = binary.AppendUvarint(append(want, 0x48), 1700000000000)
	if string(got) != string(want) {
		t.Errorf("publication % x, want % x", got, want)
	}
	big := make([]byte, 300)
	if p := appendCentrifugePublication(nil, big, 0); len(p) != 1+2+300 || p[1] != 0xac || p[2] != 0x02 {
		t.Errorf("300-byte data: length varint % x", p[:3])
	}
}

// A loop answers Centrifuge's ping ({}) with {} on the connection, and
// times a publication push like any delivery.
func TestCentrifugeLoopMessages(t *testing.T) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fds[0])
	defer syscall.Close(fds[1])
	l := &loop{p: &Pool{d: centrifugeDialect{}}}
	c := &conn{fd: fds[0], room: 3, mask: [4]byte{9, 8, 7, 6}}
	st := newRecvStats()
	l.message(c, []byte(`{}`), 0, st)
	buf := make([]byte, 64)
	n, err := syscall.Read(fds[1], buf)
	if err != nil {
		t.Fatal(err)
	}
	if want := appendClientFrame(nil, opText, c.mask, []byte(`{}`)); string(buf[:n]) != string(want) {
		t.Fatalf("pong frame % x, want % x", buf[:n], want)
	}
	data := appendPayload(nil, 1, 1_000_000, 3, 0, 100)
	l.message(c, []byte(`{"push":{"channel":"r3","pub":{"data":`+string(data)+`}}}`), 3_000_000, st)
	l.message(c, []byte(`{"id":5,"publish":{}}`), 0, st)
	l.message(c, []byte(`{"id":6,"error":{"code":100,"message":"internal server error"}}`), 0, st)
	if st.pings != 1 || st.received != 1 || st.acks != 2 || st.refused != 1 || st.misrouted != 0 ||
		st.hist.TotalCount() != 1 || st.hist.Max() < 1999 || st.hist.Max() > 2001 {
		t.Fatalf("%+v, latency max %d µs", *st, st.hist.Max())
	}
}
