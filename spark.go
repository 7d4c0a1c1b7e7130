package primus

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/primusgo/primus/internal/protocol"
	"github.com/primusgo/primus/internal/writer"
	"github.com/primusgo/primus/internal/ws"
)

// Spark is one client connection, in Primus's words.
//
// All methods are safe for concurrent use. OnData, OnEnd and OnError add a
// handler, as Primus's spark.on does: every handler added runs, in the
// order added (there is no removal). Add them in Config.OnConnection,
// which runs before the spark reads its first message.
type Spark struct {
	srv        *Server
	id         string
	query      url.Values
	header     http.Header
	remoteAddr string
	conn       net.Conn
	reader     *ws.Reader
	identity   *Identity   // from Config.Authenticate; immutable
	expiry     *time.Timer // ends the spark when identity expires
	limit      *rateLimit  // Config.MessageRate; only the reader uses it

	// alive is set by a pong or WebSocket ping and cleared by each heartbeat tick.
	alive atomic.Bool

	// mu guards the fields below it; it is taken before a room index shard lock.
	mu      sync.Mutex
	state   sparkState
	reason  CloseReason
	rooms   map[string]struct{}
	values  map[any]any
	onData  []func(*Spark, Data)
	onEnd   []func(*Spark, CloseReason)
	onError []func(*Spark, error)
	// over is set, and overCh (made by finished) closed, once finish ran
	// every handler.
	over   bool
	overCh chan struct{}

	emitter emitterState // primus-emitter events and acks (emitter.go)

	out writer.Writer

	hist sparkHistory // history reads (history.go)
}

type sparkState uint8

const (
	stateOpen sparkState = iota
	stateClosing
	stateClosed
)

// ID returns the spark's id (21 characters of A-Za-z0-9_- unless Config.IDGenerator says otherwise).
func (s *Spark) ID() string { return s.id }

// Query returns the query string of the upgrade request.
func (s *Spark) Query() url.Values { return s.query }

// Headers returns the headers of the upgrade request.
func (s *Spark) Headers() http.Header { return s.header }

// RemoteAddr returns the client's address as seen by the server (see Config.TrustForwardedFor).
func (s *Spark) RemoteAddr() string { return s.remoteAddr }

// OnData adds a handler for the spark's messages. Handlers run on the
// spark's reader goroutine, so messages of one spark are handled in order;
// a slow handler delays only this spark.
func (s *Spark) OnData(fn func(*Spark, Data)) {
	s.mu.Lock()
	s.onData = append(s.onData, fn)
	s.mu.Unlock()
}

// OnEnd adds a handler that runs once when the spark has closed, after it
// left all its rooms.
func (s *Spark) OnEnd(fn func(*Spark, CloseReason)) {
	s.mu.Lock()
	s.onEnd = append(s.onEnd, fn)
	s.mu.Unlock()
}

// OnError adds a handler for errors of this spark that do not close it
// (a message that is not valid JSON is a *ParseError, one over the rate
// limit a *RateLimitError).
func (s *Spark) OnError(fn func(*Spark, error)) {
	s.mu.Lock()
	s.onError = append(s.onError, fn)
	s.mu.Unlock()
}

// Set stores a per-spark value.
func (s *Spark) Set(key, value any) {
	s.mu.Lock()
	if s.values == nil {
		s.values = make(map[any]any)
	}
	s.values[key] = value
	s.mu.Unlock()
}

// Get returns a per-spark value stored with Set.
func (s *Spark) Get(key any) (any, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.values[key]
	return v, ok
}

// CloseReason returns why the spark closed, or ReasonNone while it is open.
func (s *Spark) CloseReason() CloseReason {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reason
}

// Write sends v, JSON-encoded, to this client. It returns ErrSparkClosed if
// the spark is closing, ErrReservedData for a string that starts with
// "primus::" and an encoding error if v cannot be encoded.
func (s *Spark) Write(v any) error {
	b, err := s.srv.encode(v)
	if err != nil {
		return err
	}
	return s.writeText(b)
}

func (s *Spark) writeText(text []byte) error {
	if !s.out.PushNow(textFrame(text)) {
		return ErrSparkClosed
	}
	return nil
}

// End closes the spark intentionally: the client receives
// "primus::server::close" and does not reconnect.
func (s *Spark) End() { s.end(ReasonEnded) }

// EndReconnect closes the spark so that the client reconnects.
func (s *Spark) EndReconnect() { s.end(ReasonEndedReconnect) }

// end starts the closing handshake. Intentional ends announce themselves
// with "primus::server::close"; the others just close.
func (s *Spark) end(reason CloseReason) {
	s.mu.Lock()
	if s.state != stateOpen {
		s.mu.Unlock()
		return
	}
	s.state = stateClosing
	s.reason = reason
	s.mu.Unlock()
	code, text, final := reason.closeStatus()
	if final {
		s.out.Push(textFrame(protocol.ServerClose))
	}
	s.out.PushFinal(ws.CloseFrame(code, text))
	// The reader returns when the client answers the close frame or when
	// this deadline passes, and tears the spark down.
	_ = s.conn.SetReadDeadline(time.Now().Add(s.srv.cfg.CloseTimeout))
}

// Join adds the spark to rooms, all of them or none: it fails with
// ErrInvalidRoom for a name ValidateRoom refuses, with ErrTooManyRooms if
// the spark would be in more than Config.MaxRoomsPerSpark rooms, and with
// ErrSparkClosed once the spark is closing, so closed sparks never linger
// in rooms.
func (s *Spark) Join(rooms ...string) error {
	for _, r := range rooms {
		if err := s.srv.ValidateRoom(r); err != nil {
			return err
		}
	}
	if len(rooms) > 1 {
		rooms = dedupe(rooms)
	}
	var joined []string
	s.mu.Lock()
	if s.state != stateOpen {
		s.mu.Unlock()
		return ErrSparkClosed
	}
	if err := s.srv.checkPatterns(rooms); err != nil {
		s.mu.Unlock()
		return err
	}
	if limit := s.srv.cfg.MaxRoomsPerSpark; limit > 0 && len(s.rooms)+len(rooms) > limit {
		n := len(s.rooms)
		for _, r := range rooms {
			if _, ok := s.rooms[r]; !ok {
				n++
			}
		}
		if n > limit {
			s.mu.Unlock()
			return fmt.Errorf("%w (at most %d)", ErrTooManyRooms, limit)
		}
	}
	for _, r := range rooms {
		if _, ok := s.rooms[r]; ok {
			continue
		}
		if s.rooms == nil {
			s.rooms = make(map[string]struct{})
		}
		s.rooms[r] = struct{}{}
		s.srv.index.add(r, s)
		joined = append(joined, r)
	}
	s.mu.Unlock()
	s.srv.historyJoined(joined)
	if fn := s.srv.cfg.OnJoin; fn != nil {
		for _, r := range joined {
			fn(s, r)
		}
	}
	return nil
}

// Leave removes the spark from rooms; rooms it is not in are ignored.
func (s *Spark) Leave(rooms ...string) {
	var left []string
	s.mu.Lock()
	for _, r := range rooms {
		if _, ok := s.rooms[r]; !ok {
			continue
		}
		delete(s.rooms, r)
		s.srv.index.remove(r, s)
		left = append(left, r)
	}
	s.mu.Unlock()
	s.emitLeave(left)
}

// LeaveAll removes the spark from every room it is in.
func (s *Spark) LeaveAll() {
	s.mu.Lock()
	left := s.takeRoomsLocked()
	s.mu.Unlock()
	s.emitLeave(left)
}

func (s *Spark) takeRoomsLocked() []string {
	left := make([]string, 0, len(s.rooms))
	for r := range s.rooms {
		s.srv.index.remove(r, s)
		left = append(left, r)
	}
	s.rooms = nil
	slices.Sort(left)
	return left
}

func (s *Spark) emitLeave(rooms []string) {
	s.srv.historyLeft(s, rooms)
	if fn := s.srv.cfg.OnLeave; fn != nil {
		for _, r := range rooms {
			fn(s, r)
		}
	}
}

// Rooms returns the rooms the spark is in, sorted.
func (s *Spark) Rooms() []string {
	s.mu.Lock()
	rooms := make([]string, 0, len(s.rooms))
	for r := range s.rooms {
		rooms = append(rooms, r)
	}
	s.mu.Unlock()
	slices.Sort(rooms)
	return rooms
}

// readLoop runs for the life of the connection and tears the spark down.
func (s *Spark) readLoop() {
	reason := s.serve()
	s.finish(reason)
}

func (s *Spark) serve() CloseReason {
	onControl := func(op byte, payload []byte) {
		if op == ws.OpPing {
			// A WebSocket ping counts as a heartbeat, as in Primus.
			s.alive.Store(true)
			if s.allow(Data{}) {
				s.out.Push(ws.AppendFrame(nil, ws.OpPong, payload))
			}
		}
	}
	for {
		msg, err := s.reader.ReadMessage(s.srv.cfg.MaxLength, onControl)
		if err != nil {
			return s.readError(err)
		}
		s.srv.stats.messagesIn.Add(1)
		if !s.allow(Data{raw: msg.Payload, binary: msg.Binary}) {
			continue
		}
		if msg.Binary {
			s.dispatch(Data{raw: msg.Payload, binary: true})
			continue
		}
		kind, err := protocol.Classify(msg.Payload)
		switch {
		case err != nil:
			s.srv.stats.parseErrors.Add(1)
			s.reportError(&ParseError{Data: msg.Payload, Err: err})
		case kind == protocol.KindPong:
			s.alive.Store(true)
		case kind == protocol.KindID:
			_ = s.writeText(protocol.IDReply(s.id))
		default:
			s.dispatch(Data{raw: msg.Payload})
		}
	}
}

// allow applies Config.MessageRate to a message (a ping has no Data): a
// refused data message goes to the error handler as a *RateLimitError; a
// spark that keeps flooding is ended.
func (s *Spark) allow(d Data) bool {
	if s.limit == nil {
		return true
	}
	ok, flood := s.limit.take(time.Now())
	if ok {
		return true
	}
	s.srv.stats.rateLimited.Add(1)
	if flood {
		if s.isOpen() {
			s.srv.stats.rateLimitEnds.Add(1)
			s.end(ReasonRateLimited)
		}
		return false
	}
	if d.raw != nil {
		s.reportError(&RateLimitError{Data: d})
	}
	return false
}

func (s *Spark) isOpen() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state == stateOpen
}

// expire ends the spark when its Identity expires (a timer's goroutine).
func (s *Spark) expire() {
	if s.isOpen() {
		s.srv.stats.tokenExpiries.Add(1)
		s.end(ReasonTokenExpired)
	}
}

// readError maps a read failure to a close reason, answering the client
// where the protocol asks for it.
func (s *Spark) readError(err error) CloseReason {
	var ce *ws.CloseError
	var pe *ws.ProtocolError
	switch {
	case errors.As(err, &ce):
		// Echo the client's close (or complete ours) before closing.
		code := ce.Code
		if code == ws.CloseNoStatus {
			code = 0
		}
		s.out.PushFinal(ws.CloseFrame(code, ""))
		s.out.Drain(s.srv.cfg.CloseTimeout)
		return ReasonClientClosed
	case errors.As(err, &pe):
		s.out.PushFinal(ws.CloseFrame(pe.Code, pe.Msg))
		s.lingerAfterClose(s.out.Drain(s.srv.cfg.CloseTimeout))
		s.reportError(err)
		if pe.Code == ws.CloseTooBig {
			return ReasonMessageTooLarge
		}
		return ReasonProtocolError
	}
	return ReasonClientClosed
}

// lingerAfterClose ends a failed connection. Once the close frame is out
// (sent), it shuts the write side, so that the client sees the server
// close TCP at once (RFC 6455 §7.1.1, §7.1.7); then it reads and drops
// what the client still sends (the rest of an oversized message, its
// answering close) until it closes or CloseTimeout passes: closing a
// socket with unread bytes sends a TCP reset, which can destroy the close
// frame before the client reads it.
func (s *Spark) lingerAfterClose(sent bool) {
	if cw, ok := s.conn.(interface{ CloseWrite() error }); ok && sent {
		_ = cw.CloseWrite()
	}
	_ = s.conn.SetReadDeadline(time.Now().Add(s.srv.cfg.CloseTimeout))
	_, _ = io.Copy(io.Discard, io.LimitReader(s.conn, s.srv.cfg.MaxLength))
}

// dispatch hands d to the data handler while the spark is open; data that
// arrives after End (before the client answered the close) is dropped, as
// Primus's spark.end() stops emitting data.
func (s *Spark) dispatch(d Data) {
	s.mu.Lock()
	handlers := s.onData // appends never touch the elements seen here
	open := s.state == stateOpen
	s.mu.Unlock()
	if open {
		s.handleEvent(d) // primus-emitter packets (emitter.go), before the data handlers as in Primus
		for _, fn := range handlers {
			fn(s, d)
		}
	}
}

func (s *Spark) reportError(err error) {
	s.mu.Lock()
	handlers := s.onError
	s.mu.Unlock()
	for _, fn := range handlers {
		fn(s, err)
	}
	s.srv.log.Debug("primus: spark error", "spark", s.id, "err", err)
}

// writeFailureReasons maps the write path's failures to close reasons.
var writeFailureReasons = [...]CloseReason{
	writer.None:         ReasonNone,
	writer.SlowConsumer: ReasonSlowConsumer,
	writer.WriteError:   ReasonWriteError,
}

// writeFailed is the writer's OnFail: a connection that can take nothing
// more is cut; a slow consumer, whose close frame waits behind what is
// being written, gets WriteTimeout to take it and CloseTimeout to answer
// (the reader then ends the spark). It may run under room index locks: it
// never blocks.
func (s *Spark) writeFailed(_ writer.Failure, cut bool) {
	if cut {
		s.abort()
		return
	}
	_ = s.conn.SetReadDeadline(time.Now().Add(s.srv.cfg.WriteTimeout + s.srv.cfg.CloseTimeout))
}

// abort closes the connection at once. A wrapped connection (TLS) is cut
// below its wrapper: its own Close may first try to write a goodbye
// (close_notify, with a 5 s deadline) to a client that is not reading,
// and abort runs where blocking would stall others (under room index
// locks, or when Shutdown gives up). The reader then ends the spark.
func (s *Spark) abort() {
	c := s.conn
	if w, ok := c.(interface{ NetConn() net.Conn }); ok {
		c = w.NetConn()
	}
	_ = c.Close()
}

// finish runs once, on the reader goroutine, when the connection is over.
func (s *Spark) finish(reason CloseReason) {
	s.conn.Close()
	failure := s.out.Discard()
	if s.expiry != nil {
		s.expiry.Stop()
	}
	s.srv.releaseLimit(s.remoteAddr)

	s.mu.Lock()
	s.state = stateClosed
	if s.reason == ReasonNone {
		// A write failure (slow consumer, write error) explains the read
		// error it caused by closing the connection.
		s.reason = writeFailureReasons[failure]
	}
	if s.reason == ReasonNone {
		s.reason = reason
	}
	reason = s.reason
	left := s.takeRoomsLocked()
	onEnd := s.onEnd
	s.mu.Unlock()

	s.srv.removeSpark(s)
	s.emitLeave(left)
	for _, fn := range onEnd {
		fn(s, reason)
	}
	if fn := s.srv.cfg.OnDisconnection; fn != nil {
		fn(s)
	}
	s.srv.log.Debug("primus: spark closed", "spark", s.id, "reason", reason)
	s.mu.Lock()
	s.over = true
	if s.overCh != nil {
		close(s.overCh)
	}
	s.mu.Unlock()
	s.srv.wg.Done()
}
