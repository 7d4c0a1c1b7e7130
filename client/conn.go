package client

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/coder/websocket"

	"github.com/primusgo/primus/internal/protocol"
)

// conn is one WebSocket connection of a Client, with its reader and writer
// goroutines and heartbeat timer. A Client has at most one at a time.
type conn struct {
	c      *Client
	ws     *websocket.Conn
	ctx    context.Context // cancelled when the connection ends
	cancel context.CancelFunc
	wg     sync.WaitGroup // reader and writer

	failOnce sync.Once
	err      error // why the connection ended; written once in failOnce

	// serverClose is set by the reader when the server announced
	// "primus::server::close"; only the reader touches it.
	serverClose bool
	heartbeat   *time.Timer // nil when the ping timeout is disabled

	// Guarded by c.mu.
	control [][]byte // control frames (pong, id request), sent first
	id      string
	idKnown bool
	idWait  chan struct{} // closed when the id arrives
}

func newConn(c *Client, ws *websocket.Conn) *conn {
	cn := &conn{c: c, ws: ws}
	cn.ctx, cn.cancel = context.WithCancel(c.ctx)
	return cn
}

func (cn *conn) start() {
	if d := cn.c.opts.PingTimeout; d > 0 {
		// The heartbeat deadline: if the server's pings stop (dead server,
		// half-open TCP, or a reader stalled by the application), give up
		// on the connection.
		cn.heartbeat = time.AfterFunc(d, func() { cn.fail(ErrPingTimeout) })
	}
	cn.wg.Add(2)
	go cn.readLoop()
	go cn.writeLoop()
}

// fail ends the connection abruptly with err as the reason; the first reason
// wins.
func (cn *conn) fail(err error) {
	cn.failOnce.Do(func() {
		cn.err = err
		cn.detach()
		cn.ws.CloseNow()
	})
}

// shutdown ends the connection with a normal close handshake (Close).
func (cn *conn) shutdown() {
	cn.failOnce.Do(func() {
		cn.err = ErrClosed
		cn.detach()
		cn.ws.Close(websocket.StatusNormalClosure, "")
	})
}

// detach makes cn no longer current and cancels its context, in that order,
// so that whoever sees cn.ctx done also sees c.cur updated.
func (cn *conn) detach() {
	c := cn.c
	c.mu.Lock()
	if c.cur == cn {
		c.cur = nil
		c.opened = make(chan struct{})
	}
	cn.control = nil
	c.mu.Unlock()
	cn.cancel()
}

// wait waits for the reader and writer to exit and stops the heartbeat.
func (cn *conn) wait() {
	cn.wg.Wait()
	if cn.heartbeat != nil {
		cn.heartbeat.Stop()
	}
}

// reason returns why the connection ended. Only valid once it has.
func (cn *conn) reason() error {
	// Synchronises with the goroutine that won failOnce (for example the
	// heartbeat timer's), so err is safe to read.
	cn.failOnce.Do(func() {})
	return cn.err
}

func (cn *conn) readLoop() {
	defer cn.wg.Done()
	for {
		// No context: cancelling a read context makes websocket close the
		// connection abruptly, and ending is fail's and shutdown's job.
		typ, b, err := cn.ws.Read(context.Background())
		if err != nil {
			if cn.serverClose {
				err = ErrServerEnded
			} else {
				err = wrapErr("read", err)
			}
			cn.fail(err)
			return
		}
		if !cn.handle(typ, b) {
			return
		}
	}
}

// handle processes one received frame. It returns false when the reader must
// stop (the connection ended while a message waited for the application).
func (cn *conn) handle(typ websocket.MessageType, b []byte) bool {
	c := cn.c
	if typ == websocket.MessageBinary {
		if b == nil {
			b = []byte{}
		}
		return cn.deliver(Message{Binary: b})
	}
	kind, value, err := protocol.ClassifyFromServer(b)
	if err != nil {
		c.stats.invalidFrames.Add(1)
		err := fmt.Errorf("%w from the server (frame dropped): %.64q", ErrInvalidJSON, b)
		c.log.Warn("primus client: dropped a frame that is not valid JSON", "len", len(b))
		if f := c.opts.OnError; f != nil {
			f(err)
		}
		return true
	}
	switch kind {
	case protocol.KindPing:
		if cn.heartbeat != nil {
			cn.heartbeat.Reset(c.opts.PingTimeout)
		}
		cn.send(protocol.Pong(value))
		if f := c.opts.onPing; f != nil {
			f()
		}
	case protocol.KindID:
		cn.setID(value)
	case protocol.KindServerClose:
		cn.serverClose = true
	case protocol.KindIgnored:
	default:
		if handled, ok := cn.handleRooms(b); handled { // rooms.go
			return ok
		}
		if c.handleEvent(b) { // an event with a handler, or an awaited ack
			c.stats.received.Add(1)
			return true
		}
		return cn.deliver(Message{Data: b})
	}
	return true
}

// setID records the id the server sent, if ID asked for one: like the
// original, which listens for the reply only while a request is pending,
// an unasked "primus::id::" is swallowed.
func (cn *conn) setID(id string) {
	c := cn.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if cn.idWait == nil {
		return
	}
	cn.id, cn.idKnown = id, true
	close(cn.idWait)
	cn.idWait = nil
}

// deliver hands a message to the application: the handler, or the Messages
// channel with backpressure.
func (cn *conn) deliver(m Message) bool {
	c := cn.c
	c.stats.received.Add(1)
	if h := c.opts.Handler; h != nil {
		h(m)
		return true
	}
	select {
	case c.msgs <- m:
		return true
	case <-cn.ctx.Done():
		c.stats.lost.Add(1)
		c.log.Warn("primus client: connection ended while a message waited for the application; message lost")
		return false
	}
}

// send queues a control frame ahead of all data.
func (cn *conn) send(b []byte) {
	c := cn.c
	c.mu.Lock()
	if cn.ctx.Err() == nil {
		cn.control = append(cn.control, b)
	}
	c.mu.Unlock()
	c.signal()
}

func (cn *conn) writeLoop() {
	defer cn.wg.Done()
	c := cn.c
	for {
		b, seq, ok := c.nextFrame(cn)
		if !ok {
			select {
			case <-cn.ctx.Done():
				return
			case <-c.wake:
			}
			continue
		}
		// No context, as for reads: websocket closes the connection
		// abruptly when a write's context is cancelled, even one racing
		// with a write that already went out, which would turn Close
		// into a reset. A stuck write is released by fail or shutdown
		// closing the connection (the ping timeout bounds it).
		err := cn.ws.Write(context.Background(), websocket.MessageText, b)
		c.markWritten(seq)
		if err != nil {
			if seq != 0 {
				c.stats.lost.Add(1)
			}
			cn.fail(wrapErr("write", err))
			return
		}
		if seq != 0 {
			c.stats.sent.Add(1)
		}
	}
}
