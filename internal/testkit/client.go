package testkit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// Frame is one message a client received.
type Frame struct {
	Type websocket.MessageType
	Data []byte
}

func (f Frame) String() string {
	if f.Type == websocket.MessageBinary {
		return fmt.Sprintf("binary %x", f.Data)
	}
	return string(f.Data)
}

// IsPing reports whether f is a Primus heartbeat ("primus::ping::<time>").
func (f Frame) IsPing() bool {
	return f.Type == websocket.MessageText && strings.HasPrefix(string(f.Data), `"primus::ping::`)
}

// DialOptions configure a Client.
type DialOptions struct {
	Header     http.Header  // extra handshake headers
	HTTPClient *http.Client // for the handshake (TLS); http.DefaultClient if nil
	AutoPong   bool         // answer "primus::ping::x" with "primus::pong::x"
	NoRead     bool         // never read (a slow consumer)
	ReadLimit  int64        // largest message the client takes (default 1 MiB)
}

// Client is a Primus client on coder/websocket for tests. A goroutine
// reads every frame into Frames, heartbeat pings included, so that a test
// takes them in order with a deadline; Close ends the goroutine.
type Client struct {
	Conn   *websocket.Conn
	Resp   *http.Response // the handshake response
	Frames *Queue[Frame]

	pings atomic.Int32 // "primus::ping::" frames seen
	done  chan struct{}
	err   error // why reading stopped; valid once done is closed

	// Replies the reader hands to a waiting ID or Command instead of
	// queueing them, by ack (idReply for ID).
	mu      sync.Mutex
	replies map[string]chan Frame
}

// idReply keys the pending ID request in Client.replies.
const idReply = "primus::id::"

// ackPrefix starts the acks Command generates, so that the reader tells
// their replies from those of acks a test chose itself.
const ackPrefix = "testkit-"

var ackSeq atomic.Int64

// Dial connects a client to url (http, https, ws or wss); it is closed at
// the end of the test.
func Dial(t testing.TB, url string, o DialOptions) *Client {
	t.Helper()
	c, _, err := TryDial(url, o)
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	t.Cleanup(c.Close)
	return c
}

// TryDial connects a client to url and returns the handshake response,
// also when the upgrade was refused. The caller closes the client.
func TryDial(url string, o DialOptions) (*Client, *http.Response, error) {
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	conn, resp, err := websocket.Dial(ctx, url, &websocket.DialOptions{
		HTTPClient:      o.HTTPClient,
		HTTPHeader:      o.Header,
		CompressionMode: websocket.CompressionDisabled,
	})
	if err != nil {
		return nil, resp, err
	}
	c := &Client{
		Conn: conn, Resp: resp, Frames: NewQueue[Frame](),
		done: make(chan struct{}), replies: map[string]chan Frame{},
	}
	if o.ReadLimit == 0 {
		o.ReadLimit = 1 << 20
	}
	conn.SetReadLimit(o.ReadLimit)
	if o.NoRead {
		c.err = errors.New("not reading")
		c.Frames.Finish()
		close(c.done)
		return c, resp, nil
	}
	go c.readLoop(o.AutoPong)
	return c, resp, nil
}

func (c *Client) readLoop(autoPong bool) {
	defer close(c.done)
	defer c.Frames.Finish()
	for {
		typ, data, err := c.Conn.Read(context.Background())
		if err != nil {
			c.err = err
			return
		}
		f := Frame{typ, data}
		if f.IsPing() {
			c.pings.Add(1)
			if autoPong {
				pong := strings.Replace(string(data), "ping", "pong", 1)
				if err := c.Conn.Write(context.Background(), websocket.MessageText, []byte(pong)); err != nil {
					c.err = err
					return
				}
			}
		}
		if !c.deliverReply(f) {
			c.Frames.Put(f)
		}
	}
}

// deliverReply hands f to the ID or Command waiting for it, if any.
func (c *Client) deliverReply(f Frame) bool {
	if f.Type != websocket.MessageText {
		return false
	}
	var key string
	switch s := string(f.Data); {
	case strings.HasPrefix(s, `"`+idReply):
		key = idReply
	case strings.HasPrefix(s, `{"ack":"`+ackPrefix):
		var r struct {
			Ack string `json:"ack"`
		}
		if json.Unmarshal(f.Data, &r) != nil {
			return false
		}
		key = r.Ack
	default:
		return false
	}
	c.mu.Lock()
	ch, ok := c.replies[key]
	delete(c.replies, key)
	c.mu.Unlock()
	if ok {
		ch <- f // buffered, and the only send
	}
	return ok
}

// Close closes the connection without a handshake and waits for the reader.
func (c *Client) Close() {
	c.Conn.CloseNow()
	<-c.done
}

// Send writes a text message.
func (c *Client) Send(t testing.TB, text string) {
	t.Helper()
	c.Write(t, websocket.MessageText, []byte(text))
}

// Write writes a message of type typ.
func (c *Client) Write(t testing.TB, typ websocket.MessageType, p []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	if err := c.Conn.Write(ctx, typ, p); err != nil {
		t.Fatalf("client write: %v", err)
	}
}

// Next waits for the next frame, pings included.
func (c *Client) Next(t testing.TB) Frame {
	t.Helper()
	return c.next(t, Timeout)
}

func (c *Client) next(t testing.TB, d time.Duration) Frame {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	f, ok := c.Frames.Get(ctx)
	if !ok {
		if ctx.Err() != nil {
			t.Fatal("timed out waiting for a frame")
		}
		t.Fatalf("connection closed while waiting for a frame: %v", c.err)
	}
	return f
}

// NextData waits for the next frame that is not a heartbeat ping.
func (c *Client) NextData(t testing.TB) Frame {
	t.Helper()
	return c.NextDataWithin(t, Timeout)
}

// NextDataWithin is NextData waiting up to d for each frame, for messages
// that take long to arrive (megabytes under the race detector).
func (c *Client) NextDataWithin(t testing.TB, d time.Duration) Frame {
	t.Helper()
	for {
		if f := c.next(t, d); !f.IsPing() {
			return f
		}
	}
}

// Expect waits for the next non-ping frame and checks that it is the text want.
func (c *Client) Expect(t testing.TB, want string) {
	t.Helper()
	f := c.NextData(t)
	if f.Type != websocket.MessageText || string(f.Data) != want {
		t.Fatalf("got frame %s, want text %s", f, want)
	}
}

// WaitClosed waits until the connection is closed and returns the close
// status the client saw (-1 if it was not a close frame).
func (c *Client) WaitClosed(t testing.TB) websocket.StatusCode {
	t.Helper()
	select {
	case <-c.done:
	case <-time.After(Timeout):
		t.Fatal("timed out waiting for the connection to close")
	}
	return websocket.CloseStatus(c.err)
}

// Rest waits until the connection is closed and returns the frames that
// were not taken yet.
func (c *Client) Rest(t testing.TB) []Frame {
	t.Helper()
	c.WaitClosed(t)
	var out []Frame
	for {
		f, ok := c.Frames.TryGet()
		if !ok {
			return out
		}
		out = append(out, f)
	}
}

// IsOpen reports whether the client is still reading.
func (c *Client) IsOpen() bool {
	select {
	case <-c.done:
		return false
	default:
		return true
	}
}

// Err is why reading stopped (nil while the client reads).
func (c *Client) Err() error {
	select {
	case <-c.done:
		return c.err
	default:
		return nil
	}
}

// Pings is how many heartbeat pings the client received.
func (c *Client) Pings() int { return int(c.pings.Load()) }

// ID asks the server for the spark id ("primus::id::"). The reply does not
// go to Frames; other frames arriving meanwhile stay there for Next.
func (c *Client) ID(t testing.TB) string {
	t.Helper()
	f := c.request(t, idReply, "the spark id", `"primus::id::"`)
	var s string
	if err := json.Unmarshal(f.Data, &s); err != nil {
		t.Fatalf("id reply = %s", f)
	}
	return strings.TrimPrefix(s, idReply)
}

// Command runs one of the standalone server's commands (a JSON object such
// as {"join":"r"}) with an ack of its own, waits for that ack's reply and
// returns the error the server reported, nil for ok. The reply does not go
// to Frames; other frames arriving meanwhile stay there for Next.
func (c *Client) Command(t testing.TB, cmd string) error {
	t.Helper()
	var fields map[string]json.RawMessage
	if err := json.Unmarshal([]byte(cmd), &fields); err != nil {
		t.Fatalf("command %s: %v", cmd, err)
	}
	ack := ackPrefix + strconv.FormatInt(ackSeq.Add(1), 10)
	fields["ack"] = json.RawMessage(strconv.Quote(ack))
	msg, err := json.Marshal(fields)
	if err != nil {
		t.Fatalf("command %s: %v", cmd, err)
	}
	f := c.request(t, ack, "the reply to "+cmd, string(msg))
	var r struct {
		OK    bool   `json:"ok"`
		Error string `json:"error"`
	}
	if err := json.Unmarshal(f.Data, &r); err != nil {
		t.Fatalf("reply to %s: %s: %v", cmd, f, err)
	}
	if r.OK {
		return nil
	}
	if r.Error == "" {
		return fmt.Errorf("reply %s", f)
	}
	return errors.New(r.Error)
}

// request sends msg and waits for the reply the reader files under key.
func (c *Client) request(t testing.TB, key, what, msg string) Frame {
	t.Helper()
	ch := make(chan Frame, 1)
	c.mu.Lock()
	c.replies[key] = ch
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.replies, key)
		c.mu.Unlock()
	}()
	c.Send(t, msg)
	timeout := time.NewTimer(Timeout)
	defer timeout.Stop()
	select {
	case f := <-ch:
		return f
	case <-c.done:
		select {
		case f := <-ch: // the reply came just before the end
			return f
		default:
		}
		t.Fatalf("connection closed while waiting for %s: %v", what, c.err)
	case <-timeout.C:
		t.Fatalf("timed out waiting for %s", what)
	}
	return Frame{}
}
