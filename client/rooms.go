package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// Rooms of the standalone server's command protocol (internal/serverapp,
// cmd/primus-server), joined and kept by the client across reconnects:
//
//	{"join":"r","ack":A}                                  -> {"ack":A,"ok":true}
//	{"join":"r","recover":true,"ack":A}                   -> {"ack":A,"ok":true,"offset":N,"epoch":"E"}
//	{"join":"r","since":{"offset":N,"epoch":"E"},"ack":A} -> the writes after N, then
//	                                                         {"ack":A,"ok":true,"recovered":B,"offset":M,"epoch":"E"}
//	{"leave":"r","ack":A}                                 -> {"ack":A,"ok":true}
//
// errors: {"ack":A,"error":"..."}. After a join with recover or since the
// server sends the room's writes as {"room":"r","offset":N,"epoch":"E","data":X}.
// A is "primus-go:<n>": the client consumes the replies to its own
// commands; other acknowledgements reach the application untouched.

// ackPrefix starts the ack values of the commands the client sends itself.
// Replies with an ack value starting with it never reach the application.
const ackPrefix = "primus-go:"

// maxHeld bounds the positioned messages of one room held while its join
// is acknowledged (see handlePositioned); a server that sends more fails the
// connection, which the client replaces (and rejoins from where it was).
const maxHeld = 1024

var (
	// ErrRefused wraps the error a server answered to a Join or Leave
	// ({"ack":..,"error":"..."}), such as a room that keeps no history
	// (Recover) or one the client's token does not grant.
	ErrRefused = errors.New("primus client: refused by the server")
	// ErrTooManyRooms is returned by Join when Options.MaxRooms rooms are
	// joined already, and by Leave when as many leaves wait for the
	// server's answer.
	ErrTooManyRooms = errors.New("primus client: too many rooms")
	// ErrJoinConflict is returned by Join for a room joined already with
	// other options (with and without Recover): Leave it first.
	ErrJoinConflict = errors.New("primus client: room already joined with other options")
	// ErrInvalidReply is reported for an answer to a Join or Leave that
	// is not what the protocol says, such as an offset that is not a
	// non-negative integer.
	ErrInvalidReply = errors.New("primus client: invalid reply from the server")
	// errHeldOverflow fails a connection whose server sent more than
	// maxHeld messages of a room before the acknowledgement of its join.
	errHeldOverflow = errors.New("primus client: too many messages before a join's acknowledgement")
	// errLeft is what a Join waiting for its acknowledgement returns when
	// Leave was called meanwhile.
	errLeft = errors.New("primus client: left before the join was acknowledged")
)

// JoinOption is an option of Join.
type JoinOption func(*joinOptions)

type joinOptions struct {
	recover bool
}

// Recover makes Join ask for positioned delivery of a room that keeps
// history on the server (its -history-size and -history-rooms flags): the
// room's messages arrive with Room, Offset and Epoch set, and after every
// reconnect the client rejoins with the position of the last message it
// delivered, so that the server replays what it missed, in order and once
// each. Options.OnRecover reports the outcome of each such rejoin.
func Recover() JoinOption { return func(o *joinOptions) { o.recover = true } }

// trackedRoom is a room the client keeps joined. Guarded by roomSet.mu,
// except that offset advances on the reader goroutine (the only one that
// delivers) after the lock was released around a delivery.
type trackedRoom struct {
	name    string
	recover bool

	hasPos bool // offset and epoch are known (a recover join was acknowledged)
	offset uint64
	epoch  string

	acked bool          // the first join was acknowledged (Join returned nil)
	done  chan struct{} // closed when the first join is acknowledged or fails
	err   error         // why the first join failed; valid once done is closed

	ackConn *conn     // the connection the join in flight was sent on, or nil
	ackID   string    // that join's ack value
	since   bool      // that join carries the position (a recovery)
	held    []Message // positioned messages received before its acknowledgement
}

// pendingOp is a command the client awaits the acknowledgement of.
type pendingOp struct {
	cn    *conn
	room  *trackedRoom // a join, or nil
	leave chan error   // a leave: receives its outcome (buffered)
}

type roomSet struct {
	mu       sync.Mutex
	rooms    map[string]*trackedRoom
	recovers int // rooms with recover
	nextAck  uint64
	pending  map[string]*pendingOp // by ack value; only the current connection's
}

// Join joins room on the server, with the standalone server's command
// protocol ({"join":room,"ack":...}), and waits for the server's
// acknowledgement, ctx's end or the client's end. With Recover the room's
// messages are positioned (see Recover and Message).
//
// The client keeps the room: after every reconnect (a new session on the
// server, without rooms) it joins it again, before any queued message and
// before Options.OnOpen's messages, until Leave. A Join that has not been
// acknowledged when the connection is lost is sent again on the next one.
// When ctx ends first, Join stops keeping the room (and leaves it if the
// join was sent) and returns ctx's error.
//
// Join of a room joined already with the same options waits for its first
// acknowledgement and returns; with other options it returns
// ErrJoinConflict. When the server refuses the join the error matches
// ErrRefused and the room is not kept. At most Options.MaxRooms rooms are
// kept (ErrTooManyRooms). Join must not be called from Options.Handler,
// an On handler or Options.OnRecover: their goroutine reads the
// acknowledgement.
func (c *Client) Join(ctx context.Context, room string, opts ...JoinOption) error {
	var o joinOptions
	for _, f := range opts {
		if f != nil {
			f(&o)
		}
	}
	r := &c.rooms
	r.mu.Lock()
	if err := c.endedErr(); err != nil {
		r.mu.Unlock()
		return wrapErr("join", err)
	}
	st := r.rooms[room]
	if st != nil && st.recover != o.recover {
		r.mu.Unlock()
		return wrapErr("join", fmt.Errorf("%w: %q", ErrJoinConflict, room))
	}
	created := st == nil
	if created {
		if len(r.rooms) >= c.opts.MaxRooms {
			r.mu.Unlock()
			return wrapErr("join", fmt.Errorf("%w: %d rooms joined", ErrTooManyRooms, len(r.rooms)))
		}
		st = &trackedRoom{name: room, recover: o.recover, done: make(chan struct{})}
		if r.rooms == nil {
			r.rooms = make(map[string]*trackedRoom)
		}
		r.rooms[room] = st
		if st.recover {
			r.recovers++
		}
		c.mu.Lock()
		if cn := c.cur; cn != nil && cn.ctx.Err() == nil {
			cn.control = append(cn.control, r.joinFrame(cn, st))
		}
		c.mu.Unlock()
	}
	done := st.done
	r.mu.Unlock()
	c.signal()

	select {
	case <-done:
	case <-ctx.Done():
		if !created || r.abandon(c, st) {
			return wrapErr("join", ctx.Err())
		}
		<-done // acknowledged (or failed) meanwhile: abandon did nothing
	case <-c.ctx.Done():
		return wrapErr("join", c.closedErr())
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return wrapErr("join", st.err)
}

// abandon stops keeping st, whose Join's context ended, unless its join was
// acknowledged meanwhile; it reports whether it did.
func (r *roomSet) abandon(c *Client, st *trackedRoom) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if st.acked || r.rooms[st.name] != st {
		return false
	}
	r.forget(st, context.Canceled)
	if cn := st.ackConn; cn != nil {
		// The join may still take effect: undo it.
		b, _ := json.Marshal(map[string]string{"leave": st.name})
		c.mu.Lock()
		if c.cur == cn && cn.ctx.Err() == nil {
			cn.control = append(cn.control, b)
		}
		c.mu.Unlock()
		c.signal()
	}
	return true
}

// forget stops keeping st; a Join still waiting for it gets err. r.mu is
// held.
func (r *roomSet) forget(st *trackedRoom, err error) {
	delete(r.rooms, st.name)
	if st.recover {
		r.recovers--
	}
	if st.ackID != "" {
		delete(r.pending, st.ackID)
	}
	st.held = nil
	if !st.acked && st.err == nil {
		st.err = err
		close(st.done)
	}
}

// Leave stops keeping room (see Join) and, while connected, leaves it on
// the server ({"leave":room,"ack":...}) and waits for the acknowledgement,
// ctx's end or the client's end. While disconnected it returns at once:
// the next connection does not join the room. Messages of the room already
// on their way may still arrive after Leave returns, as plain messages
// (Room empty). Leave of a room that Join did not join sends the command
// all the same.
func (c *Client) Leave(ctx context.Context, room string) error {
	r := &c.rooms
	r.mu.Lock()
	if err := c.endedErr(); err != nil {
		r.mu.Unlock()
		return wrapErr("leave", err)
	}
	if st := r.rooms[room]; st != nil {
		r.forget(st, errLeft)
	}
	if len(r.pending) >= 2*c.opts.MaxRooms {
		r.mu.Unlock()
		return wrapErr("leave", fmt.Errorf("%w: %d commands wait for their acknowledgement", ErrTooManyRooms, len(r.pending)))
	}
	c.mu.Lock()
	cn := c.cur
	if cn == nil || cn.ctx.Err() != nil {
		c.mu.Unlock()
		r.mu.Unlock()
		return nil
	}
	id := r.newAck()
	ch := make(chan error, 1)
	if r.pending == nil {
		r.pending = make(map[string]*pendingOp)
	}
	r.pending[id] = &pendingOp{cn: cn, leave: ch}
	b, _ := json.Marshal(struct {
		Leave string `json:"leave"`
		Ack   string `json:"ack"`
	}{room, id})
	cn.control = append(cn.control, b)
	c.mu.Unlock()
	r.mu.Unlock()
	c.signal()

	select {
	case err := <-ch:
		return wrapErr("leave", err)
	case <-cn.ctx.Done():
		// The session is gone, and the room with it; the next one does
		// not join it.
		r.drop(id)
		return nil
	case <-ctx.Done():
		r.drop(id)
		return wrapErr("leave", ctx.Err())
	case <-c.ctx.Done():
		return wrapErr("leave", c.closedErr())
	}
}

func (r *roomSet) drop(id string) {
	r.mu.Lock()
	delete(r.pending, id)
	r.mu.Unlock()
}

// Position returns the position of the last message of room delivered to
// the application (or of the join's acknowledgement, when none was since),
// for a room joined with Recover; ok is false for other rooms and before
// the join's first acknowledgement.
func (c *Client) Position(room string) (offset uint64, epoch string, ok bool) {
	r := &c.rooms
	r.mu.Lock()
	defer r.mu.Unlock()
	st := r.rooms[room]
	if st == nil || !st.hasPos {
		return 0, "", false
	}
	return st.offset, st.epoch, true
}

// newAck returns a fresh ack value. r.mu is held.
func (r *roomSet) newAck() string {
	r.nextAck++
	return ackPrefix + strconv.FormatUint(r.nextAck, 10)
}

// joinFrame records a join of st sent on cn and returns its frame. r.mu
// and c.mu (or exclusive access to cn) are held.
func (r *roomSet) joinFrame(cn *conn, st *trackedRoom) []byte {
	if st.ackID != "" {
		delete(r.pending, st.ackID)
	}
	id := r.newAck()
	st.ackConn, st.ackID, st.since, st.held = cn, id, st.recover && st.hasPos, nil
	if r.pending == nil {
		r.pending = make(map[string]*pendingOp)
	}
	r.pending[id] = &pendingOp{cn: cn, room: st}
	type position struct {
		Offset uint64 `json:"offset"`
		Epoch  string `json:"epoch"`
	}
	f := struct {
		Join    string    `json:"join"`
		Recover bool      `json:"recover,omitempty"`
		Since   *position `json:"since,omitempty"`
		Ack     string    `json:"ack"`
	}{Join: st.name, Ack: id}
	switch {
	case st.since:
		f.Since = &position{st.offset, st.epoch}
	case st.recover:
		f.Recover = true
	}
	b, _ := json.Marshal(f) // strings and integers only: never fails
	return b
}

// rejoin sends the joins of every kept room on cn, a new connection not
// yet started: in the order of the room names, ahead of everything else.
// r.mu is held.
func (r *roomSet) rejoin(cn *conn) {
	clear(r.pending) // acknowledgements of older connections never come
	names := make([]string, 0, len(r.rooms))
	for name := range r.rooms {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		cn.control = append(cn.control, r.joinFrame(cn, r.rooms[name]))
	}
}

// reply is the decoded frame of an acknowledgement or a positioned
// message; every field is checked by whoever uses it.
type reply map[string]json.RawMessage

// handleRooms consumes the replies to the client's own commands and the
// positioned messages of rooms joined with Recover. handled reports that
// it consumed b; ok is false when the reader must stop (see deliver).
func (cn *conn) handleRooms(b []byte) (handled, ok bool) {
	c := cn.c
	r := &c.rooms
	r.mu.Lock()
	active := len(r.pending) > 0 || r.recovers > 0
	r.mu.Unlock()
	if !active {
		return false, true
	}
	if t := bytes.TrimLeft(b, " \t\r\n"); len(t) == 0 || t[0] != '{' {
		return false, true
	}
	var f reply
	if json.Unmarshal(b, &f) != nil {
		return false, true
	}
	if a, isAck := f["ack"]; isAck {
		id, isString := jsonString(a)
		if !isString || !strings.HasPrefix(id, ackPrefix) {
			return false, true // the application's
		}
		c.stats.received.Add(1)
		return true, cn.handleAck(id, f)
	}
	if len(f) != 4 || f["data"] == nil {
		return false, true
	}
	room, ok1 := jsonString(f["room"])
	epoch, ok2 := jsonString(f["epoch"])
	if !ok1 || !ok2 {
		return false, true
	}
	offset, err := strconv.ParseUint(string(f["offset"]), 10, 64)
	if err != nil {
		return false, true
	}
	return cn.handlePositioned(Message{Data: f["data"], Room: room, Offset: offset, Epoch: epoch})
}

// handlePositioned delivers a positioned message of a room joined with
// Recover once: it drops the ones at or before the position delivered
// last. A message of another epoch while the room's join waits for its
// acknowledgement is held until then (the acknowledgement says whether
// the epoch changed); one of another epoch otherwise means the server's
// history started afresh: the application is told with OnRecover(room,
// false) before it.
func (cn *conn) handlePositioned(m Message) (handled, ok bool) {
	c := cn.c
	r := &c.rooms
	r.mu.Lock()
	st := r.rooms[m.Room]
	if st == nil || !st.recover {
		r.mu.Unlock()
		return false, true
	}
	if st.hasPos && m.Epoch == st.epoch {
		if m.Offset <= st.offset {
			r.mu.Unlock()
			c.stats.duplicates.Add(1)
			return true, true
		}
		r.mu.Unlock()
		return true, cn.deliverPositioned(st, m)
	}
	if st.ackConn == cn {
		if len(st.held) >= maxHeld {
			r.mu.Unlock()
			cn.fail(errHeldOverflow)
			return true, false
		}
		st.held = append(st.held, m)
		r.mu.Unlock()
		return true, true
	}
	// A new epoch in the middle of the stream.
	st.hasPos, st.epoch, st.offset = true, m.Epoch, 0
	r.mu.Unlock()
	if f := c.opts.OnRecover; f != nil {
		f(m.Room, false)
	}
	return true, cn.deliverPositioned(st, m)
}

// deliverPositioned delivers m and then records its offset as st's
// position, unless the message was lost (then the next rejoin asks for it
// again).
func (cn *conn) deliverPositioned(st *trackedRoom, m Message) bool {
	if !cn.deliver(m) {
		return false
	}
	r := &cn.c.rooms
	r.mu.Lock()
	if st.epoch == m.Epoch && m.Offset > st.offset {
		st.offset = m.Offset
	}
	r.mu.Unlock()
	return true
}

// replyErr is the error an acknowledgement reports, nil for "ok":true.
func replyErr(f reply) error {
	if e, has := f["error"]; has {
		msg, isString := jsonString(e)
		if !isString {
			msg = string(e)
		}
		return fmt.Errorf("%w: %.256s", ErrRefused, msg)
	}
	if ok, isBool := jsonBool(f["ok"]); !isBool || !ok {
		return fmt.Errorf("%w: an acknowledgement without \"ok\":true", ErrInvalidReply)
	}
	return nil
}

// positionOf reads the offset, epoch and (for a join with since)
// recovered of a join's acknowledgement.
func positionOf(f reply, since bool) (offset uint64, epoch string, recovered bool, err error) {
	offset, perr := strconv.ParseUint(string(f["offset"]), 10, 64)
	epoch, isString := jsonString(f["epoch"])
	if perr != nil || !isString {
		return 0, "", false, fmt.Errorf("%w: a join's acknowledgement without a valid offset and epoch", ErrInvalidReply)
	}
	isBool := true
	if since {
		recovered, isBool = jsonBool(f["recovered"])
	}
	if !isBool {
		return 0, "", false, fmt.Errorf("%w: a recovery's acknowledgement without a valid \"recovered\"", ErrInvalidReply)
	}
	return offset, epoch, recovered, nil
}

// handleAck processes the acknowledgement of the command with ack value
// id. It returns false when the reader must stop.
func (cn *conn) handleAck(id string, f reply) bool {
	c := cn.c
	r := &c.rooms
	r.mu.Lock()
	op := r.pending[id]
	if op == nil || op.cn != cn {
		r.mu.Unlock() // late (abandoned) or forged
		return true
	}
	delete(r.pending, id)
	if op.leave != nil {
		r.mu.Unlock()
		op.leave <- replyErr(f)
		return true
	}
	st := op.room
	if r.rooms[st.name] != st || st.ackID != id {
		r.mu.Unlock() // left meanwhile
		return true
	}
	since, held := st.since, st.held
	st.ackConn, st.ackID, st.since, st.held = nil, "", false, nil
	err := replyErr(f)
	var (
		offset    uint64
		epoch     string
		recovered bool
	)
	if err == nil && st.recover {
		offset, epoch, recovered, err = positionOf(f, since)
	}
	if err != nil {
		err = fmt.Errorf("join %q: %w", st.name, err)
		if !st.acked {
			r.forget(st, err)
			r.mu.Unlock()
			return true
		}
		// A rejoin failed: the room stays kept (the next connection tries
		// again) at its position.
		r.mu.Unlock()
		c.stats.duplicates.Add(uint64(len(held)))
		cn.report(err)
		return true
	}
	if !st.acked {
		st.acked = true
		close(st.done)
	}
	if !st.recover {
		r.mu.Unlock()
		return true
	}
	if since && st.hasPos && st.epoch == epoch {
		// Recovered: the offset may be past the last message replayed
		// (writes that excepted this client count too). Not recovered
		// in the same epoch: live writes that raced the acknowledgement
		// may have been delivered already; they are not repeated.
		st.offset = max(st.offset, offset)
	} else {
		st.hasPos, st.offset, st.epoch = true, offset, epoch
	}
	r.mu.Unlock()
	if f := c.opts.OnRecover; f != nil && since {
		f(st.name, recovered)
	}
	for _, m := range held {
		r.mu.Lock()
		keep := r.rooms[st.name] == st && m.Epoch == st.epoch && m.Offset > st.offset
		r.mu.Unlock()
		if !keep {
			c.stats.duplicates.Add(1)
			continue
		}
		if !cn.deliverPositioned(st, m) {
			return false
		}
	}
	return true
}

// report hands a problem that does not end the connection to OnError.
func (cn *conn) report(err error) {
	c := cn.c
	c.log.Warn("primus client: "+err.Error(), "error", err)
	if f := c.opts.OnError; f != nil {
		f(wrapErr("rooms", err))
	}
}

// endedErr is the error for an operation on a client that has ended, or
// nil. c.mu must not be held.
func (c *Client) endedErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ended || c.ctx.Err() != nil {
		return closedErr(c.endErr)
	}
	return nil
}

// jsonString decodes a JSON string (and nothing else: null is not one).
func jsonString(raw json.RawMessage) (string, bool) {
	var s string
	if len(raw) == 0 || raw[0] != '"' || json.Unmarshal(raw, &s) != nil {
		return "", false
	}
	return s, true
}

// jsonBool decodes true or false (and nothing else: null is not one).
func jsonBool(raw json.RawMessage) (v, ok bool) {
	switch string(raw) {
	case "true":
		return true, true
	case "false":
		return false, true
	}
	return false, false
}
