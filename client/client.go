package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"sync"
	"time"

	"github.com/coder/websocket"

	"github.com/primusgo/primus/internal/protocol"
)

// Client is a Primus client: one logical session that survives connection
// losses by reconnecting. Its methods are safe for concurrent use.
//
// A Client runs one connection-management goroutine plus, while connected, a
// reader and a writer goroutine. All of them have exited when Close returns
// or when Done is closed.
type Client struct {
	opts Options // with defaults filled in
	url  string  // the WebSocket endpoint
	log  *slog.Logger

	ctx    context.Context // cancelled by Close and when the client ends
	cancel context.CancelFunc
	msgs   chan Message
	done   chan struct{} // closed once ended and every goroutine has exited
	wake   chan struct{} // tells the writer there is something to send

	mu         sync.Mutex
	cur        *conn         // the open connection, nil while (re)connecting
	opened     chan struct{} // closed when cur is set; replaced when cur is cleared
	inOnOpen   bool          // the OnOpen hook is running: queue is held back
	openWrites fifo          // data written while OnOpen runs
	queue      fifo          // all other data
	seq        uint64        // seq of the last message accepted by Write
	inflight   uint64        // seq of the message being written, 0 if none
	flushers   []flusher
	ended      bool
	endErr     error

	stats stats

	emitter emitter // named events and acks (emitter.go)
	rooms   roomSet // rooms kept across reconnects (rooms.go)
}

type flusher struct {
	seq uint64
	ch  chan struct{}
}

// Dial connects to the Primus server at rawURL and returns once the first
// connection is open, or fails when ctx is done or the connect timeout
// (Options.ConnectTimeout) expires; it does not retry. After that the client
// reconnects on its own, and ctx no longer matters: end the client with
// Close.
//
// rawURL may use http, https, ws or wss. A URL without a path gets the
// pathname (Options.Pathname, default "/primus"); a path under the pathname
// is kept; any other path is an error. The query string is kept and sent on
// every connection (servers see it as spark.query).
//
// opts is taken by value, like the server's Config: Options{} gives every
// default, and Dial keeps its own copy (Header included).
func Dial(ctx context.Context, rawURL string, opts Options) (*Client, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, wrapErr("dial", err)
	}
	u, err := endpoint(rawURL, o.Pathname)
	if err != nil {
		return nil, wrapErr("dial", err)
	}
	c := &Client{
		opts:   o,
		url:    u,
		log:    o.Logger.With("url", redact(u)),
		done:   make(chan struct{}),
		wake:   make(chan struct{}, 1),
		opened: make(chan struct{}),
	}
	if o.Handler == nil {
		c.msgs = make(chan Message, o.MessageBuffer)
	} else {
		c.msgs = make(chan Message)
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())

	dctx := ctx
	if o.ConnectTimeout > 0 {
		var cancel context.CancelFunc
		dctx, cancel = context.WithTimeout(ctx, o.ConnectTimeout)
		defer cancel()
	}
	ws, err := c.dialWS(dctx)
	if err != nil {
		c.cancel()
		return nil, err
	}
	cn := c.activate(ws)
	go c.run(cn)
	return c, nil
}

// Write sends v, encoded as JSON, as one message. It never waits for the
// network: the message joins the outgoing queue, which the writer goroutine
// drains while connected. While the client is reconnecting, messages wait in
// the queue and go out on the next connection (after the OnOpen hook). When
// the queue is full Write returns ErrQueueFull; after the client ended, an
// error matching ErrClosed.
//
// Delivery is at most once, as in the original client: a message the writer
// was sending when the connection failed is lost. Use Flush to wait until
// queued messages have been handed to the connection.
func (c *Client) Write(v any) error {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	// Like JSON.stringify: "<>&" stay as they are.
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return wrapErr("write", err)
	}
	b := bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
	return c.enqueue(protocol.EscapeLineTerminators(b))
}

// WriteRaw sends data, which must be one JSON value, as one message; it
// behaves like Write otherwise. data is copied, so the caller may reuse it.
func (c *Client) WriteRaw(data []byte) error {
	if !json.Valid(data) {
		return wrapErr("write", ErrInvalidJSON)
	}
	return c.enqueue(protocol.EscapeLineTerminators(bytes.Clone(data)))
}

func (c *Client) enqueue(b []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ended || c.ctx.Err() != nil {
		return wrapErr("write", closedErr(c.endErr))
	}
	if c.openWrites.len()+c.queue.len() >= c.opts.QueueSize {
		c.stats.queueFull.Add(1)
		return wrapErr("write", ErrQueueFull)
	}
	c.seq++
	o := outgoing{seq: c.seq, b: b}
	if c.inOnOpen {
		c.openWrites.push(o)
	} else {
		c.queue.push(o)
	}
	c.signal()
	return nil
}

// signal wakes the writer without blocking.
func (c *Client) signal() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// nextFrame hands the writer its next frame for cn: control messages first,
// then messages written during OnOpen, then the queue (held while OnOpen
// runs). seq is 0 for control messages.
func (c *Client) nextFrame(cn *conn) (b []byte, seq uint64, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cn.ctx.Err() != nil {
		return nil, 0, false
	}
	if len(cn.control) > 0 {
		b = cn.control[0]
		cn.control[0] = nil
		cn.control = cn.control[1:]
		return b, 0, true
	}
	o, ok := c.openWrites.pop()
	if !ok && !c.inOnOpen {
		o, ok = c.queue.pop()
	}
	if !ok {
		return nil, 0, false
	}
	c.inflight = o.seq
	return o.b, o.seq, true
}

// markWritten records that the writer is done with message seq (written or
// lost with its connection) and releases the Flush calls waiting for it.
func (c *Client) markWritten(seq uint64) {
	if seq == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.inflight = 0
	if len(c.flushers) == 0 {
		return
	}
	low := c.lowestPending()
	kept := c.flushers[:0]
	for _, f := range c.flushers {
		if low == 0 || low > f.seq {
			close(f.ch)
		} else {
			kept = append(kept, f)
		}
	}
	clear(c.flushers[len(kept):])
	c.flushers = kept
}

// lowestPending returns the smallest seq not yet handled by the writer, 0 if
// nothing is pending. c.mu must be held.
func (c *Client) lowestPending() uint64 {
	low := c.inflight
	for _, q := range []*fifo{&c.openWrites, &c.queue} {
		if o, ok := q.front(); ok && (low == 0 || o.seq < low) {
			low = o.seq
		}
	}
	return low
}

// Flush waits until every message accepted by Write before the call has been
// handed to a connection (or was lost with one, see Write). Call it before
// Close when the last messages matter: Close discards the queue.
func (c *Client) Flush(ctx context.Context) error {
	c.mu.Lock()
	if c.ended {
		c.mu.Unlock()
		return wrapErr("flush", closedErr(c.endErr))
	}
	if low := c.lowestPending(); low == 0 || low > c.seq {
		c.mu.Unlock()
		return nil
	}
	f := flusher{seq: c.seq, ch: make(chan struct{})}
	c.flushers = append(c.flushers, f)
	c.mu.Unlock()
	select {
	case <-f.ch:
		return nil
	case <-c.ctx.Done():
		return wrapErr("flush", c.closedErr())
	case <-ctx.Done():
		return wrapErr("flush", ctx.Err())
	}
}

// Messages returns the channel of received messages. It is closed when the
// client has ended; messages still buffered in it can be read after that.
//
// The channel applies backpressure: when it is full, the reader stops
// reading from the connection until the application catches up. Nothing is
// dropped while the connection lives, but a reader stalled for longer than
// the ping timeout also misses the heartbeats, so the connection is
// abandoned (the message that could not be delivered is lost with it) and
// the client reconnects. Read the channel promptly, or use Options.Handler.
//
// With a Handler no messages are sent to the channel; it is only closed at
// the end.
func (c *Client) Messages() <-chan Message { return c.msgs }

// ID returns the server's id for the current connection (the spark id),
// asking the server with "primus::id::" the first time. A reconnect is a new
// session with a new id. While the client is reconnecting, ID waits for the
// next connection; if the connection is lost before the answer, ID asks
// again on the next one.
func (c *Client) ID(ctx context.Context) (string, error) {
	for {
		c.mu.Lock()
		if c.ended {
			c.mu.Unlock()
			return "", wrapErr("id", closedErr(c.endErr))
		}
		cn := c.cur
		if cn == nil {
			opened := c.opened
			c.mu.Unlock()
			select {
			case <-opened:
				continue
			case <-c.ctx.Done():
				return "", wrapErr("id", c.closedErr())
			case <-ctx.Done():
				return "", wrapErr("id", ctx.Err())
			}
		}
		if cn.idKnown {
			id := cn.id
			c.mu.Unlock()
			return id, nil
		}
		if cn.idWait == nil {
			cn.idWait = make(chan struct{})
			cn.control = append(cn.control, protocol.IDRequest)
			c.signal()
		}
		wait := cn.idWait
		c.mu.Unlock()
		select {
		case <-wait:
		case <-cn.ctx.Done():
			// Lost (cn is no longer current: fail clears it before
			// cancelling); ask again on the next connection.
			if c.ctx.Err() != nil {
				return "", wrapErr("id", c.closedErr())
			}
		case <-ctx.Done():
			return "", wrapErr("id", ctx.Err())
		}
	}
}

// Connected reports whether a connection is open right now.
func (c *Client) Connected() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cur != nil
}

// Close ends the client without reconnecting: it closes the connection with
// a normal close frame, discards queued messages (see Flush), closes the
// Messages channel and waits until every goroutine of the client has exited.
// It is idempotent and returns nil; why a client ended on its own is
// reported by Err.
//
// Close must not be called from a hook or handler: they run on the
// goroutines Close waits for. Call go c.Close() there.
func (c *Client) Close() error {
	c.cancel()
	<-c.done
	return nil
}

// Done is closed when the client has ended (Close, the server ended the
// session, or reconnecting failed) and all its goroutines have exited.
func (c *Client) Done() <-chan struct{} { return c.done }

// Err returns why the client ended: ErrClosed after Close, ErrServerEnded,
// or an error matching ErrReconnectFailed or ErrConnectionLost. It returns
// nil while the client is running.
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.endErr
}

// Wait blocks until the client has ended and returns Err, or returns ctx's
// error.
func (c *Client) Wait(ctx context.Context) error {
	select {
	case <-c.done:
		return c.Err()
	case <-ctx.Done():
		return wrapErr("wait", ctx.Err())
	}
}

// closedErr is the error for an operation interrupted by the end of the
// client, which may still be finishing.
func (c *Client) closedErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return closedErr(c.endErr)
}

// dialWS performs one WebSocket handshake.
func (c *Client) dialWS(ctx context.Context) (*websocket.Conn, error) {
	ws, _, err := websocket.Dial(ctx, c.url, &websocket.DialOptions{
		HTTPClient: c.opts.HTTPClient,
		HTTPHeader: c.opts.Header,
	})
	if err != nil {
		return nil, wrapErr("dial "+redact(c.url), err)
	}
	ws.SetReadLimit(c.opts.ReadLimit)
	return ws, nil
}

// activate makes ws the current connection and starts its goroutines. The
// OnOpen hook, if any, must be run next (runOnOpen): until then the queue is
// held back.
func (c *Client) activate(ws *websocket.Conn) *conn {
	cn := newConn(c, ws)
	c.stats.connects.Add(1)
	// The rooms are joined again first, and a Join racing with this sees
	// either the room in the list or cn current.
	c.rooms.mu.Lock()
	c.rooms.rejoin(cn)
	c.mu.Lock()
	c.cur = cn
	c.inOnOpen = c.opts.OnOpen != nil
	close(c.opened)
	c.mu.Unlock()
	c.rooms.mu.Unlock()
	cn.start()
	c.log.Debug("primus client: connected")
	return cn
}

func (c *Client) runOnOpen() {
	if c.opts.OnOpen == nil {
		return
	}
	c.opts.OnOpen(c)
	c.mu.Lock()
	c.inOnOpen = false
	c.mu.Unlock()
	c.signal()
}

// run is the connection-management goroutine: it waits for the current
// connection to end, then reconnects or ends the client.
func (c *Client) run(cn *conn) {
	defer close(c.done)
	var reason error
	for {
		c.runOnOpen()
		reason = c.waitEnd(cn)
		c.log.Debug("primus client: connection closed", "reason", reason)
		if f := c.opts.OnClose; f != nil {
			f(reason)
		}
		switch {
		case c.ctx.Err() != nil:
			reason = ErrClosed
		case errors.Is(reason, ErrServerEnded):
		case c.opts.DisableReconnect:
			reason = fmt.Errorf("%w: %w", ErrConnectionLost, reason)
		default:
			cn, reason = c.reconnect(reason)
			if cn != nil {
				continue
			}
		}
		break
	}
	c.finish(reason)
}

// waitEnd waits until cn has ended (or the client is closed, then it closes
// cn gracefully) and returns why it ended.
func (c *Client) waitEnd(cn *conn) error {
	<-cn.ctx.Done() // cn.ctx is a child of c.ctx: Close ends it too
	if c.ctx.Err() != nil {
		cn.shutdown()
	}
	cn.wait()
	return cn.reason()
}

// reconnect dials with backoff until a connection opens (returned, already
// active) or the policy gives up (nil and the end reason).
func (c *Client) reconnect(cause error) (*conn, error) {
	p := c.opts.Reconnect
	last := cause
	for attempt := 1; ; attempt++ {
		if p.Retries >= 0 && attempt > p.Retries {
			return nil, fmt.Errorf("%w after %d attempts: %w", ErrReconnectFailed, attempt-1, last)
		}
		d := p.delay(attempt, rand.Float64())
		c.log.Debug("primus client: reconnect scheduled", "attempt", attempt, "delay", d)
		if f := c.opts.OnReconnect; f != nil {
			f(ReconnectEvent{Attempt: attempt, Delay: d, Err: last})
		}
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-c.ctx.Done():
			t.Stop()
			return nil, ErrClosed
		}
		ctx, cancel := context.WithTimeout(c.ctx, p.Timeout)
		ws, err := c.dialWS(ctx)
		cancel()
		if c.ctx.Err() != nil {
			if ws != nil {
				ws.CloseNow()
			}
			return nil, ErrClosed
		}
		if err == nil {
			c.log.Debug("primus client: reconnected", "attempt", attempt)
			return c.activate(ws), nil
		}
		last = err
	}
}

// finish records the end of the client and releases everything waiting.
func (c *Client) finish(reason error) {
	c.cancel()
	c.mu.Lock()
	c.ended = true
	c.endErr = reason
	c.cur = nil
	c.stats.discarded.Add(uint64(c.openWrites.len() + c.queue.len()))
	c.openWrites, c.queue = fifo{}, fifo{}
	c.mu.Unlock()
	close(c.msgs)
	c.log.Debug("primus client: ended", "reason", reason)
}

// redact drops the query string (it often carries tokens) from a URL for
// logs and errors.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "<invalid URL>"
	}
	if u.RawQuery != "" {
		u.RawQuery = "..."
	}
	u.User = nil
	return u.String()
}
