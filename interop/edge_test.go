package interop_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/primusgo/primus"
	"github.com/primusgo/primus/internal/nodefixture"
)

// Messages far beyond 64 KiB (WebSocket's 64-bit length form) cross in
// both directions intact.
func TestLargeMessages(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	h := startHub(t, primus.Config{})
	c := startClient(t, h.url, nodefixture.ClientOptions{})
	awaitOpen(t, ctx, c)
	s := h.nextConn(t, ctx)

	big := strings.Repeat("0123456789abcdef\u2028é", 20000) // 380 KB on the wire
	if err := c.Write(map[string]any{"big": big}); err != nil {
		t.Fatal(err)
	}
	expectData(t, ctx, c, map[string]any{"echo": map[string]any{"big": big}})
	if err := s.Write([]any{big, big}); err != nil {
		t.Fatal(err)
	}
	expectData(t, ctx, c, []any{big, big})
}

// Strings that look like protocol messages: from a client, an unknown
// primus:: type is ordinary data (spec §1.3), while "primus::pong::..." is
// taken by the server as a heartbeat answer and "primus::id::" as an id
// request, as in Primus. The server writes no primus:: string as data.
func TestProtocolLookalikes(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	h := startHub(t, primus.Config{})
	c := startClient(t, h.url, nodefixture.ClientOptions{})
	awaitOpen(t, ctx, c)
	s := h.nextConn(t, ctx)

	for _, w := range []string{"primus::foo::bar", "primus::pong::whatever", "primus::", "primus:single"} {
		if err := c.Write(w); err != nil {
			t.Fatal(err)
		}
	}
	expectData(t, ctx, c, map[string]any{"echo": "primus::foo::bar"})
	// The pong was swallowed; "primus::" has no type and is data.
	expectData(t, ctx, c, map[string]any{"echo": "primus::"})
	expectData(t, ctx, c, map[string]any{"echo": "primus:single"})

	// The server never writes a "primus::" string as data (the client
	// would take "primus::server::close" as the end): it is refused.
	if err := s.Write("primus::foo::bar"); !errors.Is(err, primus.ErrReservedData) {
		t.Fatalf("Write of a primus:: string: %v, want ErrReservedData", err)
	}
	if err := s.Write("after"); err != nil {
		t.Fatal(err)
	}
	expectData(t, ctx, c, "after")
}

// client.end(): the server sees the client close, the client ends and
// does not reconnect.
func TestClientEnd(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	h := startHub(t, primus.Config{})
	c := startClient(t, h.url, fastReconnect)
	awaitOpen(t, ctx, c)
	s := h.nextConn(t, ctx)
	if err := c.Send(map[string]any{"op": "end"}); err != nil {
		t.Fatal(err)
	}
	await(t, ctx, c, "end", "reconnect scheduled", "reconnect", "open", "error")
	if g := h.nextGone(t, ctx); g != s || g.CloseReason() != primus.ReasonClientClosed {
		t.Fatalf("disconnected spark %q with %v, want %q with %v", g.ID(), g.CloseReason(), s.ID(), primus.ReasonClientClosed)
	}
	if h.Spark(s.ID()) != nil {
		t.Error("the spark is still registered after its disconnection")
	}
}

// Server.Write reaches every connected client.
func TestServerBroadcast(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	h := startHub(t, primus.Config{})
	var clients []*nodefixture.Client
	for range 3 {
		c := startClient(t, h.url, nodefixture.ClientOptions{})
		awaitOpen(t, ctx, c)
		h.nextConn(t, ctx)
		clients = append(clients, c)
	}
	if err := h.Write(map[string]any{"to": "everyone"}); err != nil {
		t.Fatal(err)
	}
	for _, c := range clients {
		expectData(t, ctx, c, map[string]any{"to": "everyone"})
	}
}
