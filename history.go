package primus

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/primusgo/primus/internal/protocol"
)

// HistoryOptions says how much of a room's writes to keep (Config.History).
type HistoryOptions struct {
	// Size is how many of the room's last writes are kept, at least (0: no
	// history for the room; at most MaxHistorySize).
	Size int
	// TTL is how long the history is kept after the room's last write
	// (0: DefaultHistoryTTL).
	TTL time.Duration
}

const (
	// DefaultHistoryTTL is the TTL of a HistoryOptions without one.
	DefaultHistoryTTL = 5 * time.Minute
	// MaxHistorySize bounds HistoryOptions.Size (larger sizes are cut to it).
	MaxHistorySize = 100_000
	// MaxEpochLength bounds an epoch in bytes; a longer one (a since sent
	// by a client, or read from a broker's backend) is refused.
	MaxEpochLength = 64
)

// HistoryPosition is a place in a room's history: the offset of a write
// (the n-th write since the history began) and the epoch, which changes
// whenever the room's history was lost (a new epoch starts at offset 1).
type HistoryPosition struct {
	Offset uint64 `json:"offset"`
	Epoch  string `json:"epoch"`
}

// HistoryBroker is a Broker that keeps room history (Config.History): every
// write to a history room is stored, with the next offset of the room,
// atomically with its publication, so that no node ever sees a write
// without its history entry or the other way round. The memory broker and
// the Redis broker in native mode implement it.
//
// Unlike other writes, the broker may hand history writes (Message.Offset
// > 0) to the handler also when they come from this node: the server
// delivers each offset once.
type HistoryBroker interface {
	Broker
	// EnableHistory is called once, before Start, by a server with
	// Config.History; an error (the broker cannot keep history in its
	// configuration, as the Redis broker's compat mode) fails New. From
	// Start on, the broker calls resync with the rooms whose subscription
	// was interrupted (nil: all of them), once they are subscribed again,
	// or whose messages it had to drop: the server then reads what it
	// missed from the history. resync must not block.
	EnableHistory(resync func(rooms []string)) error
	// PublishHistory is Publish for a write to one room (m.Rooms[0]) that
	// keeps history with opts: it stores m under the room's next offset
	// and publishes it with that offset and the room's epoch, and returns
	// them.
	PublishHistory(ctx context.Context, m *Message, opts HistoryOptions) (HistoryPosition, error)
	// History returns the room's stored writes with offsets above since,
	// in offset order, at most limit of them, and the room's current
	// position (its last offset and epoch; reading the position of a room
	// without history starts an epoch at offset 0). The messages carry
	// Offset and Epoch; entries that cannot be decoded are left out (a
	// reader sees a gap). When this node hosts room, History first waits
	// until its subscription to room is live (or ctx ends), so that every
	// write after the returned position reaches the handler.
	History(ctx context.Context, room string, since uint64, limit int) ([]*Message, HistoryPosition, error)
	// Position is History without messages.
	Position(ctx context.Context, room string) (HistoryPosition, error)
}

var (
	// ErrNoHistory is returned by JoinRecover for a room that keeps no
	// history (Config.History) and by a server whose broker cannot keep it.
	ErrNoHistory = errors.New("primus: the room keeps no history")
	// ErrHistoryPublish wraps the broker's error when a write to a history
	// room could not be stored and published. Its local members did not
	// receive it either, unless it reached the broker after all (they then
	// receive it from there, in order).
	ErrHistoryPublish = errors.New("primus: storing and publishing a write to a history room failed")
	// ErrTooManyHistoryRooms is returned by a write that names more history
	// rooms than Config.MaxHistoryRoomsPerWrite; nothing was written.
	ErrTooManyHistoryRooms = errors.New("primus: a write names too many history rooms")
	// ErrHistoryRateLimited is returned by JoinRecover with a since position
	// when the spark read history more often than Config.HistoryReadRate
	// allows.
	ErrHistoryRateLimited = errors.New("primus: history read rate exceeded")
)

// Recovery is what JoinRecover did.
type Recovery struct {
	// Position is where the spark's positioned stream of the room starts:
	// it receives every write after it. With a since position and
	// Recovered, the writes between since and Position were replayed to it
	// first.
	Position HistoryPosition
	// Recovered reports, for a join with a since position, that every
	// write after since was replayed (false: the epoch changed or the
	// history no longer reaches back that far, and the application must
	// reload the room's state; nothing was replayed).
	Recovered bool
}

// Tuning of the node's history machinery.
const (
	// gapWait is how long a write whose predecessor has not arrived waits
	// before the node reads the missing ones from the history (writes of
	// this node and of others may arrive in either order).
	gapWait = 100 * time.Millisecond
	// maxPending bounds the writes a room holds while it waits for a
	// missing one; beyond it the newest are dropped (the history has them).
	maxPending = 4096
	// fillPage is how many entries one resync read asks for.
	fillPage = 1000
	// fillTimeout bounds one resync read.
	fillTimeout = 5 * time.Second
	// maxCatchUp bounds the live writes buffered for one spark while its
	// replay is read; a spark that overflows it is not recovered.
	maxCatchUp = 10_000
	// maxReplayReads bounds the replay reads in flight on a node, and so
	// does maxFillReads the sequencers' reads (after a broker reconnection
	// every room of the node reads at once).
	maxReplayReads = 64
	maxFillReads   = 64
	// replayTimeout bounds a batched replay read (each join also has its
	// own context).
	replayTimeout = 10 * time.Second
)

// historyState is a server's history machinery: a sequencer per history
// room with local members, which delivers the room's writes, from this
// node and from others, in offset order, once each.
type historyState struct {
	srv  *Server
	hb   HistoryBroker
	opts func(string) HistoryOptions

	mu     sync.Mutex
	rooms  map[string]*roomSeq
	closed bool

	ctx    context.Context // cancelled by close
	cancel context.CancelFunc
	wg     sync.WaitGroup // fill goroutines
	reads  chan struct{}  // replay reads in flight
	fills  chan struct{}  // sequencer reads in flight

	gaps, resyncs, recovered, notRecovered atomic.Uint64
}

func newHistoryState(srv *Server) (*historyState, error) {
	if srv.cfg.History == nil {
		return nil, nil
	}
	hb, ok := srv.broker.(HistoryBroker)
	if !ok {
		return nil, fmt.Errorf("primus: room history needs a HistoryBroker; %T is not one", srv.broker)
	}
	h := &historyState{
		srv:   srv,
		hb:    hb,
		opts:  srv.cfg.History,
		rooms: make(map[string]*roomSeq),
		reads: make(chan struct{}, maxReplayReads),
		fills: make(chan struct{}, maxFillReads),
	}
	h.ctx, h.cancel = context.WithCancel(context.Background())
	if err := hb.EnableHistory(h.resync); err != nil {
		h.cancel()
		return nil, fmt.Errorf("primus: room history: %w", err)
	}
	return h, nil
}

// options returns room's history options with the bounds applied (Size 0:
// no history).
func (h *historyState) options(room string) HistoryOptions {
	o := h.opts(room)
	if o.Size <= 0 {
		return HistoryOptions{}
	}
	o.Size = min(o.Size, MaxHistorySize)
	if o.TTL <= 0 {
		o.TTL = DefaultHistoryTTL
	}
	return o
}

func (h *historyState) close() {
	if h == nil {
		return
	}
	h.mu.Lock()
	h.closed = true
	rooms := h.rooms
	h.rooms = map[string]*roomSeq{}
	h.mu.Unlock()
	h.cancel()
	for _, q := range rooms {
		q.mu.Lock()
		q.kill()
		q.mu.Unlock()
	}
	h.wg.Wait()
}

// lookup returns room's sequencer, or nil.
func (h *historyState) lookup(room string) *roomSeq {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.rooms[room]
}

// seqFor returns room's sequencer, making it (and starting its
// initialisation) if there is none; nil once the server is closing.
func (h *historyState) seqFor(room string) *roomSeq {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil
	}
	q := h.rooms[room]
	if q == nil {
		q = &roomSeq{
			h:          h,
			room:       room,
			ready:      make(chan struct{}),
			gone:       make(chan struct{}),
			positioned: make(map[*Spark]*sparkPos),
			catchup:    make(map[*Spark]*catchBuf),
			fetching:   true,
		}
		h.rooms[room] = q
		h.wg.Add(1)
		go q.fill()
	}
	return q
}

// resync is the broker's call: the rooms' subscriptions were interrupted
// (nil: every room's). Each reads what it missed from the history.
func (h *historyState) resync(rooms []string) {
	var list []*roomSeq
	h.mu.Lock()
	if rooms == nil {
		list = make([]*roomSeq, 0, len(h.rooms))
		for _, q := range h.rooms {
			list = append(list, q)
		}
	} else {
		for _, r := range rooms {
			if q := h.rooms[r]; q != nil {
				list = append(list, q)
			}
		}
	}
	h.mu.Unlock()
	for _, q := range list {
		q.mu.Lock()
		q.scheduleLocked()
		q.mu.Unlock()
	}
}

// historyJoined is Spark.Join's hook: a history room with local members
// has a sequencer from its first join on.
func (srv *Server) historyJoined(rooms []string) {
	h := srv.hist
	if h == nil {
		return
	}
	for _, r := range rooms {
		if h.lookup(r) == nil && h.options(r).Size > 0 && !(srv.index.wildcards && IsPattern(r)) {
			if q := h.seqFor(r); q != nil {
				// A leave since the join found no sequencer to end.
				q.mu.Lock()
				q.killIfEmpty()
				q.mu.Unlock()
			}
		}
	}
}

// historyLeft is the leave hook (Leave, LeaveAll, the end of a spark): the
// spark's positions go, and so does the sequencer of a room left empty.
func (srv *Server) historyLeft(s *Spark, rooms []string) {
	h := srv.hist
	if h == nil {
		return
	}
	for _, r := range rooms {
		q := h.lookup(r)
		if q == nil {
			continue
		}
		q.mu.Lock()
		delete(q.positioned, s)
		delete(q.catchup, s)
		q.killIfEmpty()
		q.mu.Unlock()
	}
}

// historyRoom is a room of a write that keeps history.
type historyRoom struct {
	name string
	opts HistoryOptions
}

// split returns the history rooms among rooms, or nil.
func (h *historyState) split(rooms []string) []historyRoom {
	var out []historyRoom
	for _, r := range rooms {
		if o := h.options(r); o.Size > 0 {
			out = append(out, historyRoom{r, o})
		}
	}
	return out
}

// write is Room.Write for a write that names history rooms: the other
// rooms get one write as usual (skipping the members of the history
// rooms), each history room a write of its own with its offset.
func (h *historyState) write(r Room, hist []historyRoom, frame, data []byte) error {
	srv := h.srv
	if max := srv.cfg.MaxHistoryRoomsPerWrite; max > 0 && len(hist) > max {
		return fmt.Errorf("%w (%d; at most %d)", ErrTooManyHistoryRooms, len(hist), max)
	}
	names := make([]string, len(hist))
	for i, x := range hist {
		names[i] = x.name
	}
	var plain []string
	if len(hist) < len(r.rooms) {
		plain = make([]string, 0, len(r.rooms)-len(hist))
		for _, room := range r.rooms {
			if !slices.Contains(names, room) {
				plain = append(plain, room)
			}
		}
	}
	id := srv.cfg.NodeID + "-" + strconv.FormatUint(srv.msgSeq.Add(1), 36)
	ctx, cancel := context.WithTimeout(context.Background(), srv.cfg.PublishTimeout)
	defer cancel()
	var errs []error
	if len(plain) > 0 {
		srv.deliverLocal(plain, names, r.except, frame)
		m := &Message{ID: id, Origin: srv.cfg.NodeID, Rooms: plain, Skip: names, Except: r.except, Data: data}
		if err := srv.broker.Publish(ctx, m); err != nil {
			errs = append(errs, fmt.Errorf("%w: %w", ErrPublish, err))
		}
	}
	for k, x := range hist {
		m := &Message{ID: id, Origin: srv.cfg.NodeID, Rooms: []string{x.name}, Skip: names[:k:k], Except: r.except, Data: data}
		pos, err := h.hb.PublishHistory(ctx, m, x.opts)
		if err != nil {
			errs = append(errs, fmt.Errorf("%w: room %q: %w", ErrHistoryPublish, x.name, err))
			continue
		}
		m.Offset, m.Epoch = pos.Offset, pos.Epoch
		h.offer(m, m.Skip, frame, false)
	}
	if len(errs) > 0 {
		srv.stats.publishErrors.Add(1)
		return errors.Join(errs...)
	}
	srv.stats.published.Add(1)
	return nil
}

// offer hands a history write of m.Rooms[0] to its sequencer: this node's
// own (frame is its plain frame, m is not shared) or a broker's (copied
// if kept).
func (h *historyState) offer(m *Message, skip []string, frame []byte, remote bool) {
	room := m.Rooms[0]
	q := h.lookup(room)
	if q == nil {
		if h.srv.index.size(room) == 0 {
			// No member of the room itself: members of matching patterns
			// get it, unsequenced.
			if frame == nil {
				frame = textFrame(protocol.EscapeLineTerminators(m.Data))
			}
			h.srv.deliverLocal([]string{room}, skip, m.Except, frame)
			return
		}
		if q = h.seqFor(room); q == nil {
			return
		}
	}
	x := &histMsg{m: m, skip: skip, plain: frame, shared: remote}
	q.mu.Lock()
	q.offerLocked(x, false)
	q.mu.Unlock()
}

// histMsg is a write in a sequencer.
type histMsg struct {
	m       *Message
	skip    []string
	plain   []byte // the plain frame, built when first needed
	shared  bool   // m belongs to the broker: copy it before keeping it
	arrival uint64 // when it was held (roomSeq.arrivals)
}

// keep makes x safe to hold after the handler returned.
func (x *histMsg) keep() {
	if !x.shared {
		return
	}
	m := *x.m
	m.Data = slices.Clone(m.Data)
	x.m, x.shared = &m, false
}

// sparkPos is a positioned spark's place in a room: the last offset it was
// sent.
type sparkPos struct {
	epoch string
	pos   uint64
}

// catchBuf holds the writes delivered while a spark's replay is read.
type catchBuf struct {
	msgs     []*Message
	bytes    int  // of msgs' data
	overflow bool // more than maxCatchUp writes or than a replay may hold
}

// roomSeq is the sequencer of a history room with local members: it
// delivers the room's writes in offset order, each once, holding early
// ones until the missing ones arrive or are read from the history.
type roomSeq struct {
	h    *historyState
	room string

	mu       sync.Mutex
	dead     bool          // the room lost its last member (or the server closes)
	inited   bool          // epoch and next are known
	ready    chan struct{} // closed when inited
	gone     chan struct{} // closed when dead
	epoch    string
	next     uint64     // the offset to deliver next
	pending  []*histMsg // early writes, by offset
	old      []string   // recent former epochs: late writes of them are dropped
	gapTimer *time.Timer
	fetching bool   // a fill goroutine runs
	again    bool   // it must read once more
	arrivals uint64 // writes held so far: a read learns which were held before it

	positioned map[*Spark]*sparkPos
	catchup    map[*Spark]*catchBuf

	// Replay reads are batched: the joins with since that arrive while a
	// read is in flight share the next one (replayLoop).
	nextReplay *replayBatch
	replaying  bool // a replayLoop goroutine runs
}

// replayBatch is one history read shared by the joins with since that
// waited for it: it reads from the lowest of their positions, and each
// takes the part after its own.
type replayBatch struct {
	since    uint64 // the lowest since of the joins in the batch
	done     chan struct{}
	msgs     []*Message
	frames   [][]byte // msgs' positioned frames, the same for every spark
	pos      HistoryPosition
	complete bool // msgs are every write after since up to pos
	err      error
}

func (q *roomSeq) kill() {
	if q.dead {
		return
	}
	q.dead = true
	close(q.gone)
	if q.gapTimer != nil {
		q.gapTimer.Stop()
		q.gapTimer = nil
	}
	q.pending = nil
	clear(q.positioned)
	clear(q.catchup)
}

// errSeqDead is waitReady's error for a sequencer that died first (its
// room lost its last member): the caller tries a new one.
var errSeqDead = errors.New("primus: room sequencer ended")

// waitReady waits until the sequencer knows the room's position.
func (q *roomSeq) waitReady(ctx context.Context) error {
	select {
	case <-q.ready:
		return nil
	case <-q.gone:
		return errSeqDead
	case <-ctx.Done():
		return ctx.Err()
	case <-q.h.ctx.Done():
		return ErrServerClosed
	}
}

// scheduleLocked makes the fill goroutine read the history (again).
func (q *roomSeq) scheduleLocked() {
	if q.dead {
		return
	}
	if q.fetching {
		q.again = true
		return
	}
	h := q.h
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return
	}
	q.fetching = true
	h.wg.Add(1)
	go q.fill()
}

// offerLocked takes one write. A write from the history (fromHistory)
// never waits: offsets it skips are lost.
func (q *roomSeq) offerLocked(x *histMsg, fromHistory bool) {
	if q.dead {
		return
	}
	m := x.m
	if !q.inited {
		q.addPending(x)
		return
	}
	if m.Epoch != q.epoch {
		if fromHistory || slices.Contains(q.old, m.Epoch) {
			return // a late write of a former epoch
		}
		// The room's history was lost and started afresh, or the write
		// is forged (anyone who can publish on the broker): the
		// history's position says which.
		q.addPending(x)
		q.armGap()
		return
	}
	switch {
	case m.Offset < q.next:
		return // delivered already
	case m.Offset > q.next:
		q.addPending(x)
		if !fromHistory {
			q.armGap()
		}
		return
	}
	q.deliver(x)
	q.next++
	q.drainPending()
}

// newEpoch switches to epoch, the position a history read found: the
// room's history was lost (the broker's backend restarted without
// persistence, or the room's metadata expired).
func (q *roomSeq) newEpoch(epoch string) {
	q.old = slices.DeleteFunc(q.old, func(e string) bool { return e == epoch })
	q.h.gaps.Add(1)
	q.h.srv.log.Info("primus: room history lost (new epoch)", "room", q.room, "from", q.epoch, "to", epoch)
	if len(q.old) == 4 {
		q.old = q.old[1:]
	}
	q.old = append(q.old, q.epoch)
	q.epoch, q.next = epoch, 1
	q.pending = slices.DeleteFunc(q.pending, func(x *histMsg) bool { return x.m.Epoch != epoch })
}

func (q *roomSeq) addPending(x *histMsg) {
	i, found := slices.BinarySearchFunc(q.pending, x.m.Offset, func(p *histMsg, o uint64) int {
		switch {
		case p.m.Offset < o:
			return -1
		case p.m.Offset > o:
			return 1
		}
		return 0
	})
	if found {
		return
	}
	if len(q.pending) >= maxPending {
		if i == len(q.pending) {
			return // the newest: the history has it
		}
		q.pending = q.pending[:len(q.pending)-1]
	}
	x.keep()
	x.arrival = q.arrivals
	q.arrivals++
	q.pending = slices.Insert(q.pending, i, x)
}

// drainPending delivers the held writes that are next in line.
func (q *roomSeq) drainPending() {
	n := 0
	for n < len(q.pending) && q.pending[n].m.Offset <= q.next {
		if x := q.pending[n]; x.m.Offset == q.next && x.m.Epoch == q.epoch {
			q.deliver(x)
			q.next++
		}
		n++
	}
	if n > 0 {
		clear(q.pending[:n])
		q.pending = q.pending[n:]
	}
	if len(q.pending) == 0 {
		q.pending = nil
	}
}

// skipTo gives up on the offsets below o: the history does not have them.
func (q *roomSeq) skipTo(o uint64) {
	if o > q.next {
		q.h.gaps.Add(1)
		q.h.srv.log.Warn("primus: room history gap: writes lost for this node's members", "room", q.room, "epoch", q.epoch, "from", q.next, "to", o-1)
		q.next = o
	}
	q.drainPending()
}

// armGap starts the wait for a missing write.
func (q *roomSeq) armGap() {
	if q.gapTimer != nil {
		return
	}
	q.gapTimer = time.AfterFunc(gapWait, func() {
		q.mu.Lock()
		defer q.mu.Unlock()
		q.gapTimer = nil
		if len(q.pending) > 0 { // missing writes before them, or writes of another epoch
			q.scheduleLocked()
		}
	})
}

// fill is the sequencer's reader: it learns the room's position first,
// then reads what the node missed whenever it is asked to, until nothing
// is left to read.
func (q *roomSeq) fill() {
	h := q.h
	defer h.wg.Done()
	delay := 50 * time.Millisecond
	for {
		q.mu.Lock()
		if q.dead {
			q.fetching = false
			q.mu.Unlock()
			return
		}
		q.again = false
		inited, since, mark := q.inited, q.next-1, q.arrivals
		q.mu.Unlock()

		select {
		case h.fills <- struct{}{}:
		case <-h.ctx.Done():
			q.mu.Lock()
			q.fetching = false
			q.mu.Unlock()
			return
		}
		ctx, cancel := context.WithTimeout(h.ctx, fillTimeout)
		var err error
		if !inited {
			var pos HistoryPosition
			if pos, err = h.hb.Position(ctx, q.room); err == nil {
				q.mu.Lock()
				q.init(pos)
				q.mu.Unlock()
			}
		} else {
			h.resyncs.Add(1)
			var msgs []*Message
			var pos HistoryPosition
			if msgs, pos, err = h.hb.History(ctx, q.room, since, fillPage); err == nil {
				q.mu.Lock()
				q.apply(since, mark, msgs, pos)
				q.mu.Unlock()
			}
		}
		cancel()
		<-h.fills
		if err != nil {
			h.srv.log.Debug("primus: reading room history failed", "room", q.room, "err", err)
			t := time.NewTimer(delay)
			select {
			case <-h.ctx.Done():
				t.Stop()
			case <-t.C:
			}
			delay = min(2*delay, 2*time.Second)
			q.mu.Lock()
			q.again = true
			q.mu.Unlock()
		} else {
			delay = 50 * time.Millisecond
		}
		q.mu.Lock()
		if !q.again || q.dead {
			q.fetching = false
			q.mu.Unlock()
			return
		}
		q.mu.Unlock()
	}
}

// init sets the room's position, read once the node's subscription was
// live. Writes that arrived before are after it, or came through the live
// subscription: they are delivered too.
func (q *roomSeq) init(pos HistoryPosition) {
	if q.inited || q.dead {
		return
	}
	q.inited, q.epoch, q.next = true, pos.Epoch, pos.Offset+1
	held := q.pending
	q.pending = nil
	for _, x := range held {
		if x.m.Epoch == pos.Epoch && x.m.Offset < q.next {
			q.next = x.m.Offset
			break
		}
	}
	for _, x := range held {
		q.offerLocked(x, false)
	}
	close(q.ready)
}

// apply takes a resync read: the writes after since and the room's
// position. Offsets up to the position that are neither read nor held
// are lost (counted as a gap). Writes held before the read (arrival below
// mark) were in the history when it was read: those beyond the position
// or of another epoch are not the room's (forged, or lost by the broker's
// backend) and are dropped.
func (q *roomSeq) apply(since, mark uint64, msgs []*Message, pos HistoryPosition) {
	if q.dead {
		return
	}
	if pos.Epoch != q.epoch {
		q.newEpoch(pos.Epoch)
		if since != 0 {
			// Read after an offset of the former epoch: read the new
			// one from its start.
			q.again = true
			return
		}
	}
	q.pending = slices.DeleteFunc(q.pending, func(x *histMsg) bool {
		return x.arrival < mark && (x.m.Epoch != pos.Epoch || x.m.Offset > pos.Offset)
	})
	top := pos.Offset
	for _, m := range msgs {
		if m.Epoch == q.epoch {
			q.offerLocked(&histMsg{m: m, skip: m.Skip, shared: true}, true)
		}
	}
	if len(msgs) == fillPage {
		// More to read.
		top = min(top, msgs[len(msgs)-1].Offset)
		q.again = true
	}
	for q.next <= top {
		if len(q.pending) == 0 || q.pending[0].m.Offset > top {
			q.skipTo(top + 1)
			break
		}
		q.skipTo(q.pending[0].m.Offset)
	}
	if len(q.pending) > 0 && q.pending[0].m.Offset > q.next {
		q.armGap() // written after the read: wait for them again
	}
}

// deliver sends one write, next in offset order, to the room's local
// members: positioned sparks get {"room","offset","epoch","data"}, the
// others the data as any room write.
func (q *roomSeq) deliver(x *histMsg) {
	srv := q.h.srv
	m := x.m
	if protocol.IsControl(m.Data) {
		srv.stats.reservedRefused.Add(1)
		return
	}
	data := protocol.EscapeLineTerminators(m.Data)
	if x.plain == nil {
		x.plain = textFrame(data)
	}
	if len(q.positioned) == 0 && len(q.catchup) == 0 {
		srv.deliverLocal([]string{q.room}, x.skip, m.Except, x.plain)
		return
	}
	excluded := exceptFunc(m.Except)
	frame := positionedFrame(q.room, m.Offset, m.Epoch, data)
	n := 0
	for s, sp := range q.positioned {
		if excluded(s.id) || (sp.epoch == m.Epoch && m.Offset <= sp.pos) {
			continue
		}
		sp.epoch, sp.pos = m.Epoch, m.Offset
		if s.out.Push(frame) {
			n++
		}
	}
	for s, cb := range q.catchup {
		if excluded(s.id) {
			continue
		}
		if cb.overflow || len(cb.msgs) >= maxCatchUp || cb.bytes+len(m.Data) > srv.cfg.MaxQueueBytes/2 {
			// Beyond what a replay may hold (replay): the spark will not
			// be recovered, so nothing more is kept for it.
			cb.overflow, cb.msgs = true, nil
			continue
		}
		x.keep()
		cb.msgs = append(cb.msgs, x.m)
		cb.bytes += len(m.Data)
	}
	srv.stats.deliveries.Add(uint64(n))
	srv.deliverLocalExcluding([]string{q.room}, x.skip, m.Except, x.plain, q.isPositioned)
}

// isPositioned reports whether s gets the room's writes positioned (q.mu
// is held).
func (q *roomSeq) isPositioned(s *Spark) bool {
	if _, ok := q.positioned[s]; ok {
		return true
	}
	_, ok := q.catchup[s]
	return ok
}

// positionedFrame is {"room":room,"offset":offset,"epoch":epoch,"data":data}
// as a text frame; data is JSON text with its line terminators escaped.
func positionedFrame(room string, offset uint64, epoch string, data []byte) []byte {
	b := make([]byte, 0, len(data)+len(room)+len(epoch)+48)
	b = append(b, `{"room":`...)
	b = appendJSONString(b, room)
	b = append(b, `,"offset":`...)
	b = strconv.AppendUint(b, offset, 10)
	b = append(b, `,"epoch":`...)
	b = appendJSONString(b, epoch)
	b = append(b, `,"data":`...)
	b = append(b, data...)
	b = append(b, '}')
	return textFrame(b)
}

func appendJSONString(b []byte, s string) []byte {
	q, _ := json.Marshal(s) // escapes U+2028 and U+2029 too
	return append(b, q...)
}

// sparkHistory is a spark's budget of history reads.
type sparkHistory struct {
	mu    sync.Mutex
	limit *rateLimit
}

func (s *Spark) allowHistoryRead() bool {
	cfg := &s.srv.cfg
	if cfg.HistoryReadRate < 0 {
		return true
	}
	s.hist.mu.Lock()
	defer s.hist.mu.Unlock()
	if s.hist.limit == nil {
		s.hist.limit = newRateLimit(cfg.HistoryReadRate, cfg.HistoryReadBurst)
	}
	ok, _ := s.hist.limit.take(time.Now())
	return ok
}

func (s *Spark) inRoom(room string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.rooms[room]
	return ok
}

// JoinRecover joins room, which must keep history (Config.History), with
// positioned delivery: from now on the spark receives the room's writes as
//
//	{"room":"<room>","offset":<n>,"epoch":"<epoch>","data":<data>}
//
// in offset order, each once, instead of plain data. Without since it
// receives the writes after the returned position. With since (what a
// client last received before it reconnected) it first receives every
// write after since, in order, then the live ones, with no gap and no
// duplicate, whatever is written meanwhile; if the epoch changed or the
// history no longer reaches back to since (or is further back than the
// room's HistoryOptions.Size), or the replay would take more than half of
// Config.MaxQueueBytes (pushing it would end the spark as a slow
// consumer), Recovered is false, nothing is replayed and
// the spark receives the writes after the returned position. The replay
// is written before JoinRecover returns (an acknowledgement written then
// follows it). Reads with since are bounded per spark by
// Config.HistoryReadRate. On error the spark is not left in the room
// unless it was a member before.
func (s *Spark) JoinRecover(ctx context.Context, room string, since *HistoryPosition) (Recovery, error) {
	srv := s.srv
	h := srv.hist
	if h == nil {
		return Recovery{}, ErrNoHistory
	}
	if err := srv.ValidateRoom(room); err != nil {
		return Recovery{}, err
	}
	if (srv.index.wildcards && IsPattern(room)) || h.options(room).Size == 0 {
		return Recovery{}, fmt.Errorf("%w: %q", ErrNoHistory, room)
	}
	if since != nil {
		if len(since.Epoch) > MaxEpochLength {
			return Recovery{}, fmt.Errorf("primus: since: epoch longer than %d bytes", MaxEpochLength)
		}
		if !s.allowHistoryRead() {
			return Recovery{}, ErrHistoryRateLimited
		}
	}
	was := s.inRoom(room)
	for attempt := 0; ; attempt++ {
		q := h.seqFor(room)
		if q == nil {
			return Recovery{}, ErrServerClosed
		}
		if err := q.waitReady(ctx); err != nil {
			if err == errSeqDead {
				continue // the sequencer's room emptied meanwhile
			}
			h.dropIfEmpty(room)
			return Recovery{}, err
		}
		rec, retry, err := q.join(ctx, s, since)
		if retry && attempt < 3 {
			continue
		}
		if err != nil {
			if !was {
				s.Leave(room)
			}
			q.forget(s, was)
		}
		return rec, err
	}
}

// dropIfEmpty ends room's sequencer if the room has no members (a
// JoinRecover that made it failed before its spark joined).
func (h *historyState) dropIfEmpty(room string) {
	if q := h.lookup(room); q != nil {
		q.mu.Lock()
		q.killIfEmpty()
		q.mu.Unlock()
	}
}

// join positions s in the room and joins it; retry says that the
// sequencer died before (the room emptied and was joined again).
func (q *roomSeq) join(ctx context.Context, s *Spark, since *HistoryPosition) (rec Recovery, retry bool, err error) {
	h := q.h
	// s is positioned (or catching up) before it is a member: it never
	// gets a plain frame of the room.
	q.mu.Lock()
	if q.dead {
		q.mu.Unlock()
		return rec, true, ErrSparkClosed
	}
	prev := q.positioned[s]
	delete(q.positioned, s)
	var cb *catchBuf
	if since == nil {
		sp := &sparkPos{epoch: q.epoch, pos: q.next - 1}
		q.positioned[s] = sp
		rec.Position = HistoryPosition{Offset: sp.pos, Epoch: sp.epoch}
	} else {
		// Live writes from now on wait in cb while the replay is read.
		cb = &catchBuf{}
		q.catchup[s] = cb
	}
	q.mu.Unlock()
	if err := s.Join(q.room); err != nil {
		q.forget(s, false)
		return Recovery{}, false, err
	}
	if since == nil {
		return rec, false, nil
	}

	msgs, frames, pos, complete, err := q.batchedReplay(ctx, since)

	q.mu.Lock()
	defer q.mu.Unlock()
	if q.catchup[s] != cb {
		// The spark left (or closed) meanwhile.
		return rec, false, ErrSparkClosed
	}
	if err != nil && prev == nil {
		// s stays catching up (its live writes go nowhere) until
		// JoinRecover took it out of the room or made it a plain member
		// again (forget): it never gets a plain frame of a room it
		// joined positioned, and a plain member loses nothing.
		return rec, false, err
	}
	delete(q.catchup, s)
	if err != nil {
		if !cb.overflow {
			// It stays positioned where it was, with the writes it
			// missed meanwhile.
			for _, m := range cb.msgs {
				if m.Epoch != prev.epoch || m.Offset > prev.pos {
					s.out.Push(positionedFrame(q.room, m.Offset, m.Epoch, protocol.EscapeLineTerminators(m.Data)))
					prev.epoch, prev.pos = m.Epoch, m.Offset
				}
			}
			q.positioned[s] = prev
		}
		return rec, false, err
	}
	sp := &sparkPos{epoch: q.epoch, pos: q.next - 1}
	if frames, last, ok := q.replay(s, since, msgs, frames, pos, cb); ok && complete {
		for _, f := range frames {
			s.out.Push(f)
		}
		sp = &sparkPos{epoch: pos.Epoch, pos: last}
		rec.Recovered = true
		h.recovered.Add(1)
	} else {
		h.notRecovered.Add(1)
	}
	q.positioned[s] = sp
	rec.Position = HistoryPosition{Offset: sp.pos, Epoch: sp.epoch}
	return rec, false, nil
}

// batchedReplay returns the writes after since, their positioned frames
// and the room's position, from the next batched read (replayLoop), or,
// when that read began further back and could not make a replay (its
// lowest join was too far behind), from a read of its own; complete as
// for readReplay.
func (q *roomSeq) batchedReplay(ctx context.Context, since *HistoryPosition) ([]*Message, [][]byte, HistoryPosition, bool, error) {
	q.mu.Lock()
	if q.dead {
		q.mu.Unlock()
		return nil, nil, HistoryPosition{}, false, ErrSparkClosed
	}
	b := q.nextReplay
	if b == nil {
		b = &replayBatch{since: since.Offset, done: make(chan struct{})}
		q.nextReplay = b
	}
	b.since = min(b.since, since.Offset)
	if !q.replaying {
		q.replaying = true
		q.h.wg.Add(1)
		go q.replayLoop()
	}
	q.mu.Unlock()
	select {
	case <-b.done:
	case <-ctx.Done():
		return nil, nil, HistoryPosition{}, false, ctx.Err()
	}
	if b.err != nil {
		return nil, nil, b.pos, false, b.err
	}
	if b.complete || b.since == since.Offset {
		i, _ := slices.BinarySearchFunc(b.msgs, since.Offset+1, func(m *Message, o uint64) int { return cmp.Compare(m.Offset, o) })
		return b.msgs[i:], b.frames[i:], b.pos, b.complete, nil
	}
	msgs, pos, complete, err := q.readReplayBounded(ctx, since)
	return msgs, q.framesOf(msgs), pos, complete, err
}

// replayLoop runs the batched replay reads until no join waits.
func (q *roomSeq) replayLoop() {
	h := q.h
	defer h.wg.Done()
	for {
		q.mu.Lock()
		b := q.nextReplay
		q.nextReplay = nil
		if b == nil || q.dead {
			q.replaying = false
			q.mu.Unlock()
			if b != nil {
				b.err = ErrSparkClosed
				close(b.done)
			}
			return
		}
		q.mu.Unlock()
		ctx, cancel := context.WithTimeout(h.ctx, replayTimeout)
		b.msgs, b.pos, b.complete, b.err = q.readReplayBounded(ctx, &HistoryPosition{Offset: b.since})
		cancel()
		b.frames = q.framesOf(b.msgs)
		close(b.done)
	}
}

// readReplayBounded is readReplay within the node's bound on replay reads
// in flight.
func (q *roomSeq) readReplayBounded(ctx context.Context, since *HistoryPosition) ([]*Message, HistoryPosition, bool, error) {
	select {
	case q.h.reads <- struct{}{}:
		defer func() { <-q.h.reads }()
		return q.readReplay(ctx, since)
	case <-ctx.Done():
		return nil, HistoryPosition{}, false, ctx.Err()
	}
}

// framesOf returns the positioned frames of msgs.
func (q *roomSeq) framesOf(msgs []*Message) [][]byte {
	frames := make([][]byte, len(msgs))
	for i, m := range msgs {
		frames[i] = positionedFrame(q.room, m.Offset, m.Epoch, protocol.EscapeLineTerminators(m.Data))
	}
	return frames
}

// readReplay reads the writes after since, fillPage at a time, and the
// room's position at the last read; complete is false when they cannot
// make a replay (more than the room's Size of them, more bytes than
// replay allows, a missing one, the epoch changed meanwhile), so that a
// join never holds more than a page beyond what it can replay.
func (q *roomSeq) readReplay(ctx context.Context, since *HistoryPosition) (msgs []*Message, pos HistoryPosition, complete bool, err error) {
	h := q.h
	size, budget := h.options(q.room).Size, h.srv.cfg.MaxQueueBytes/2
	after, want, bytes := since.Offset, since.Offset+1, 0
	for first := true; ; first = false {
		n := min(fillPage, size-len(msgs))
		if n <= 0 {
			return nil, pos, false, nil // more than Size writes behind
		}
		page, p, err := h.hb.History(ctx, q.room, after, n)
		if err != nil {
			return nil, p, false, err
		}
		if !first && p.Epoch != pos.Epoch {
			return nil, p, false, nil
		}
		pos = p
		for _, m := range page {
			if m.Epoch != pos.Epoch || m.Offset != want {
				return nil, pos, false, nil
			}
			want++
			if bytes += len(m.Data) + len(q.room) + len(m.Epoch); bytes > budget {
				return nil, pos, false, nil
			}
		}
		msgs = append(msgs, page...)
		if len(page) > 0 {
			after = page[len(page)-1].Offset
		}
		if len(page) < n || after == pos.Offset {
			return msgs, pos, true, nil
		}
	}
}

// replay returns the frames that recover s from since (the writes read,
// msgs and pos, then the live ones buffered in cb) and the offset of the
// last; ok is false when they cannot: a write is missing, or they take
// more than half of the spark's backlog bound (pushing them would end the
// spark as a slow consumer, and its client would reconnect and ask for
// the same replay again).
func (q *roomSeq) replay(s *Spark, since *HistoryPosition, msgs []*Message, shared [][]byte, pos HistoryPosition, cb *catchBuf) (frames [][]byte, last uint64, ok bool) {
	if cb.overflow || !replayable(since, msgs, pos) {
		return nil, 0, false
	}
	budget := q.h.srv.cfg.MaxQueueBytes / 2
	size := 0
	add := func(f []byte) bool {
		size += len(f)
		frames = append(frames, f)
		return size <= budget
	}
	last = since.Offset
	for i, m := range msgs {
		if !(len(m.Except) > 0 && slices.Contains(m.Except, s.id)) && !add(shared[i]) {
			return nil, 0, false
		}
		last = m.Offset
	}
	for _, m := range cb.msgs {
		if m.Epoch == pos.Epoch && m.Offset > last {
			if !add(positionedFrame(q.room, m.Offset, m.Epoch, protocol.EscapeLineTerminators(m.Data))) {
				return nil, 0, false
			}
			last = m.Offset
		}
	}
	return frames, last, true
}

// forget drops s's position in the room (its join failed); a sequencer
// left without members dies. With plain (s stays a plain member, as it was
// before the join), the writes held for s while its replay was read are
// written to it as plain data.
func (q *roomSeq) forget(s *Spark, plain bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	cb, catching := q.catchup[s]
	if plain && !catching && q.positioned[s] != nil {
		return // it was positioned before the join and keeps its position
	}
	if cb != nil && plain {
		for _, m := range cb.msgs {
			s.out.Push(textFrame(protocol.EscapeLineTerminators(m.Data)))
		}
	}
	delete(q.positioned, s)
	delete(q.catchup, s)
	q.killIfEmpty()
}

// killIfEmpty ends the sequencer of a room without members, local or
// positioned (q.mu is held).
func (q *roomSeq) killIfEmpty() {
	if q.dead || len(q.positioned) > 0 || len(q.catchup) > 0 || q.h.srv.index.size(q.room) > 0 {
		return
	}
	q.kill()
	h := q.h
	h.mu.Lock()
	if h.rooms[q.room] == q {
		delete(h.rooms, q.room)
	}
	h.mu.Unlock()
}

// replayable reports whether msgs are every write after since up to pos,
// in the same epoch.
func replayable(since *HistoryPosition, msgs []*Message, pos HistoryPosition) bool {
	if since.Epoch != pos.Epoch && !(since.Epoch == "" && since.Offset == 0) {
		return false
	}
	if since.Offset > pos.Offset {
		return false
	}
	want := since.Offset + 1
	for _, m := range msgs {
		if m.Epoch != pos.Epoch || m.Offset != want {
			return false
		}
		want++
	}
	return want-1 == pos.Offset
}

// newEpochID returns a fresh epoch: 12 random characters of [0-9a-z].
func newEpochID() string {
	const digits = "0123456789abcdefghijklmnopqrstuvwxyz"
	var b [12]byte
	for i := range b {
		b[i] = digits[rand.N(len(digits))]
	}
	return string(b[:])
}

func (h *historyState) stats(s *Stats) {
	if h == nil {
		return
	}
	s.HistoryGaps = h.gaps.Load()
	s.HistoryResyncs = h.resyncs.Load()
	s.HistoryRecovered = h.recovered.Load()
	s.HistoryNotRecovered = h.notRecovered.Load()
	h.mu.Lock()
	s.HistoryRooms = len(h.rooms)
	h.mu.Unlock()
}
