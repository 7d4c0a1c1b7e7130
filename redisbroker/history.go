package redisbroker

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/rueidis"

	"github.com/primusgo/primus"
)

// Room history (primus.HistoryBroker), native mode only.
//
// Each history room has two keys, next to its channel (in cluster mode
// under the same hash tag, so that keys and channel share one slot):
//
//	<Channel>:hist:<room>   a Redis Stream: entry ID "<offset>-0", one field
//	                        "p" holding the write's version 2 envelope, the
//	                        very bytes published
//	<Channel>:meta:<room>   a hash: "e" the epoch, "s" the last offset
//
// A write runs publishScript: the offset (HINCRBY) and, when the meta
// hash is missing (never written, expired, Redis restarted without
// persistence), a new epoch; the XADD; the PUBLISH (SPUBLISH in cluster
// mode) of the same bytes. Redis runs a script atomically, so no reader
// sees a publication without its entry or the other way round, and the
// room's publications leave Redis in offset order. Reads run readScript:
// the position (starting an epoch at offset 0 for a room without one, so
// that a reader and the first writer agree on it) and an XRANGE.

// ErrHistoryCompat is returned by EnableHistory in compat mode.
var ErrHistoryCompat = errors.New("redisbroker: compat mode cannot keep room history (the primus-redis-rooms format has no offsets); use native mode")

// HistoryKeys returns the stream and meta keys of room's history under
// prefix (single Redis and Sentinel).
func HistoryKeys(prefix, room string) (stream, meta string) {
	return prefix + ":hist:" + room, prefix + ":meta:" + room
}

// ClusterHistoryKeys returns them in cluster mode with the given partition
// count: under the hash tag of the room's channel (ClusterRoomChannel).
func ClusterHistoryKeys(prefix string, partitions int, room string) (stream, meta string) {
	tag := prefix + ":{" + partitionTags(partitions)[partitionOf(room, partitions)] + "}"
	return tag + ":hist:" + room, tag + ":meta:" + room
}

// publishScript stores and publishes one write.
//
// KEYS: stream, meta. ARGV: the envelope after version, offset and epoch
// (lead, id, origin, rooms, except, data); the channel; "publish" or
// "spublish"; the size kept; the stream's TTL and the meta's TTL in
// milliseconds; an epoch for a room without one. Returns {offset, epoch}.
//
// What others may have written under these keys is not trusted: a meta
// that is not a hash, an epoch that is not 1..64 of [0-9A-Za-z_-], an
// offset that is not an integer below 10^15 (Lua numbers are doubles: exact
// up to 2^53) start a new epoch; so does a stream that refuses the entry
// (not a stream, or a higher ID: the offset went back), which is replaced.
const publishScript = `
local function uvarint(n)
  local out = {}
  while n >= 128 do
    out[#out + 1] = string.char(n % 128 + 128)
    n = math.floor(n / 128)
  end
  out[#out + 1] = string.char(n)
  return table.concat(out)
end
local function fresh()
  redis.call('del', KEYS[2])
  redis.call('hset', KEYS[2], 'e', ARGV[7])
  return ARGV[7]
end
local epoch = redis.pcall('hget', KEYS[2], 'e')
if type(epoch) ~= 'string' or #epoch > 64 or not string.match(epoch, '^[%w_%-]+$') then
  epoch = fresh()
end
local top = redis.pcall('hincrby', KEYS[2], 's', 1)
if type(top) ~= 'number' or top >= 1e15 then
  epoch = fresh()
  top = redis.call('hincrby', KEYS[2], 's', 1)
end
redis.call('pexpire', KEYS[2], ARGV[6])
local payload = '\2' .. uvarint(top) .. uvarint(#epoch) .. epoch .. ARGV[1]
if top == 1 then
  redis.call('del', KEYS[1])
end
local id = string.format('%d-0', top)
local added = redis.pcall('xadd', KEYS[1], 'MAXLEN', '~', ARGV[4], id, 'p', payload)
if type(added) == 'table' and added.err then
  -- Not a stream, or one with a higher ID (the offset went back): a new
  -- epoch, since readers drop writes at offsets they have seen.
  epoch = fresh()
  top = redis.call('hincrby', KEYS[2], 's', 1)
  redis.call('pexpire', KEYS[2], ARGV[6])
  payload = '\2' .. uvarint(top) .. uvarint(#epoch) .. epoch .. ARGV[1]
  redis.call('del', KEYS[1])
  redis.call('xadd', KEYS[1], 'MAXLEN', '~', ARGV[4], '1-0', 'p', payload)
end
redis.call('pexpire', KEYS[1], ARGV[5])
redis.call(ARGV[3], ARGV[2], payload)
return {top, epoch}
`

// readScript reads a room's position and entries.
//
// KEYS: stream, meta. ARGV: the first ID to read ("<offset>-0"); the most
// entries to read (0: none); an epoch for a room without one; the meta's
// TTL in milliseconds. Returns {offset, epoch, entries}.
const readScript = `
local function fresh()
  redis.call('del', KEYS[2])
  redis.call('hset', KEYS[2], 'e', ARGV[3])
  return ARGV[3], 0
end
local epoch, top
local meta = redis.pcall('hmget', KEYS[2], 'e', 's')
if meta.err then
  epoch, top = fresh()
else
  epoch, top = meta[1], meta[2]
  if not epoch or #epoch > 64 or not string.match(epoch, '^[%w_%-]+$') then
    epoch, top = fresh()
  elseif not top then
    top = 0
  elseif top ~= '0' and not (#top <= 15 and string.match(top, '^[1-9]%d*$')) then
    -- Not what HINCRBY writes, or beyond what a Lua number holds exactly.
    epoch, top = fresh()
  else
    top = tonumber(top)
  end
end
redis.call('pexpire', KEYS[2], ARGV[4])
local entries = {}
if ARGV[2] ~= '0' and top > 0 then
  local r = redis.pcall('xrange', KEYS[1], ARGV[1], '+', 'COUNT', ARGV[2])
  if not r.err then
    entries = r
  end
end
return {top, epoch, entries}
`

var (
	luaPublish = rueidis.NewLuaScript(publishScript)
	luaRead    = rueidis.NewLuaScript(readScript)
)

// brokerHistory is a Broker's history state (EnableHistory).
type brokerHistory struct {
	resync func(rooms []string)

	mu      sync.Mutex
	dropped map[string]struct{} // rooms whose messages were dropped, to resync
}

var _ primus.HistoryBroker = (*Broker)(nil)

// EnableHistory implements primus.HistoryBroker. Compat mode refuses with
// ErrHistoryCompat.
func (b *Broker) EnableHistory(resync func(rooms []string)) error {
	if b.cfg.Mode == Compat {
		return ErrHistoryCompat
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.started {
		return errors.New("redisbroker: EnableHistory after Start")
	}
	b.hist = &brokerHistory{resync: resync, dropped: make(map[string]struct{})}
	return nil
}

// historyKeys are room's keys in this broker's mode.
func (b *Broker) historyKeys(room string) (stream, meta string) {
	if b.cl != nil {
		p := b.cl.partOf(room)
		tag := b.cl.prefix + p.tag + "}"
		return tag + ":hist:" + room, tag + ":meta:" + room
	}
	return HistoryKeys(b.cfg.Channel, room)
}

// newEpoch is a fresh epoch: 12 characters of [0-9a-z].
func newEpoch() string {
	const digits = "0123456789abcdefghijklmnopqrstuvwxyz"
	var e [12]byte
	for i := range e {
		e[i] = digits[rand.N(len(digits))]
	}
	return string(e[:])
}

// validEpoch reports whether e is an epoch the scripts keep: 1..64 of
// [0-9A-Za-z_-].
func validEpoch(e string) bool {
	if len(e) == 0 || len(e) > primus.MaxEpochLength {
		return false
	}
	for i := 0; i < len(e); i++ {
		c := e[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

func millis(d time.Duration) string {
	return strconv.FormatInt(max(1, d.Milliseconds()), 10)
}

// historyClient returns the Redis client, waiting for the first
// connection attempt as Publish does.
func (b *Broker) historyClient(ctx context.Context) (rueidis.Client, error) {
	if b.hist == nil {
		return nil, errors.New("redisbroker: history not enabled")
	}
	if b.closing.Load() {
		return nil, primus.ErrBrokerClosed
	}
	cb, err := b.connectedClient(ctx)
	if err != nil {
		return nil, err
	}
	return cb.c, nil
}

// PublishHistory implements primus.HistoryBroker: one script stores the
// write in the room's stream under its next offset and publishes it, as
// a version 2 envelope, on the room's channel.
func (b *Broker) PublishHistory(ctx context.Context, m *primus.Message, opts primus.HistoryOptions) (pos primus.HistoryPosition, err error) {
	defer func() {
		if err != nil {
			b.stats.publishErrors.Add(1)
		} else {
			b.stats.published.Add(1)
			b.stats.historyPublished.Add(1)
		}
	}()
	if len(m.Rooms) != 1 || opts.Size <= 0 {
		return pos, errors.New("redisbroker: a history write names one room and a size")
	}
	if len(m.Data) == 0 {
		return pos, ErrEmptyData
	}
	c, err := b.historyClient(ctx)
	if err != nil {
		return pos, err
	}
	room := m.Rooms[0]
	em := primus.Message{ID: m.ID, Origin: b.cfg.NodeID, Rooms: m.Rooms, Except: m.Except, Data: m.Data, Skip: m.Skip}
	if em.ID == "" {
		em.ID = strconv.FormatUint(b.msgSeq.Add(1), 36)
	}
	tail := appendEnvelopeTail(nil, &em)
	// version, offset (at most 10 bytes), epoch (at most 1+64)
	if 1+10+1+primus.MaxEpochLength+len(tail) > b.cfg.MaxPayload {
		return pos, ErrTooLarge
	}
	stream, meta := b.historyKeys(room)
	cmd := "publish"
	if b.cl != nil {
		cmd = "spublish"
	}
	ttl := opts.TTL
	if ttl <= 0 {
		ttl = primus.DefaultHistoryTTL
	}
	ctx, cancel := context.WithTimeout(ctx, b.cfg.CommandTimeout)
	defer cancel()
	v, err := luaPublish.Exec(ctx, c, []string{stream, meta}, []string{
		string(tail), b.roomChannel(room), cmd, strconv.Itoa(min(opts.Size, primus.MaxHistorySize)),
		millis(ttl), millis(max(ttl, b.cfg.HistoryMetaTTL)), newEpoch(),
	}).ToArray()
	if err != nil {
		return pos, fmt.Errorf("redisbroker: history publish: %w", err)
	}
	if len(v) != 2 {
		return pos, errors.New("redisbroker: history publish: unexpected reply")
	}
	top, err1 := v[0].AsInt64()
	epoch, err2 := v[1].ToString()
	if err1 != nil || err2 != nil || top <= 0 || !validEpoch(epoch) {
		return pos, errors.New("redisbroker: history publish: unexpected reply")
	}
	return primus.HistoryPosition{Offset: uint64(top), Epoch: epoch}, nil
}

// History implements primus.HistoryBroker. Entries that are not what
// PublishHistory writes (another ID form, a missing or malformed
// envelope, another offset, epoch or room, over MaxPayload) are left out
// and counted in Stats.HistoryMalformed.
func (b *Broker) History(ctx context.Context, room string, since uint64, limit int) ([]*primus.Message, primus.HistoryPosition, error) {
	return b.readHistory(ctx, room, since, limit)
}

// Position implements primus.HistoryBroker.
func (b *Broker) Position(ctx context.Context, room string) (primus.HistoryPosition, error) {
	_, pos, err := b.readHistory(ctx, room, 0, 0)
	return pos, err
}

func (b *Broker) readHistory(ctx context.Context, room string, since uint64, limit int) ([]*primus.Message, primus.HistoryPosition, error) {
	var pos primus.HistoryPosition
	c, err := b.historyClient(ctx)
	if err != nil {
		return nil, pos, err
	}
	if err := b.waitLive(ctx, room); err != nil {
		return nil, pos, err
	}
	start := "0-0"
	if since >= math.MaxInt64 || limit < 0 {
		limit = 0 // nothing can be after it
	} else {
		start = strconv.FormatUint(since+1, 10) + "-0"
	}
	stream, meta := b.historyKeys(room)
	ctx, cancel := context.WithTimeout(ctx, b.cfg.CommandTimeout+time.Duration(limit/1000)*time.Millisecond)
	defer cancel()
	b.stats.historyReads.Add(1)
	v, err := luaRead.Exec(ctx, c, []string{stream, meta}, []string{
		start, strconv.Itoa(limit), newEpoch(), millis(b.cfg.HistoryMetaTTL),
	}).ToArray()
	if err != nil {
		return nil, pos, fmt.Errorf("redisbroker: history read: %w", err)
	}
	if len(v) != 3 {
		return nil, pos, errors.New("redisbroker: history read: unexpected reply")
	}
	top, err1 := v[0].AsInt64()
	epoch, err2 := v[1].ToString()
	entries, err3 := v[2].ToArray()
	if err1 != nil || err2 != nil || err3 != nil || top < 0 || !validEpoch(epoch) {
		return nil, pos, errors.New("redisbroker: history read: unexpected reply")
	}
	pos = primus.HistoryPosition{Offset: uint64(top), Epoch: epoch}
	var out []*primus.Message
	last := since
	for _, e := range entries[:min(len(entries), limit)] {
		m, ok := b.historyEntry(e, room, pos)
		if !ok || m.Offset <= last {
			b.stats.historyMalformed.Add(1)
			continue
		}
		last = m.Offset
		out = append(out, m)
	}
	return out, pos, nil
}

// historyEntry decodes one XRANGE entry; ok is false for anything but
// what PublishHistory writes for room, at most at pos.
func (b *Broker) historyEntry(e rueidis.RedisMessage, room string, pos primus.HistoryPosition) (*primus.Message, bool) {
	kv, err := e.ToArray()
	if err != nil || len(kv) != 2 {
		return nil, false
	}
	id, err := kv[0].ToString()
	if err != nil {
		return nil, false
	}
	ms, ok := strings.CutSuffix(id, "-0")
	if !ok {
		return nil, false
	}
	offset, err := strconv.ParseUint(ms, 10, 64)
	if err != nil || offset == 0 || offset > pos.Offset {
		return nil, false
	}
	fields, err := kv[1].ToArray()
	if err != nil || len(fields) != 2 {
		return nil, false
	}
	if name, err := fields[0].ToString(); err != nil || name != "p" {
		return nil, false
	}
	payload, err := fields[1].ToString()
	if err != nil || len(payload) > b.cfg.MaxPayload {
		return nil, false
	}
	env, err := decodeEnvelope(payload)
	if err != nil || env.offset != offset || env.epoch != pos.Epoch || len(env.rooms) != env.lead+1 || env.rooms[env.lead] != room {
		return nil, false
	}
	return env.message(), true
}

// ---- subscription liveness and resyncs ----

// waitLive returns when the node's subscription to room is confirmed on
// the current connection, at once if the node does not host room.
func (b *Broker) waitLive(ctx context.Context, room string) error {
	for {
		b.mu.Lock()
		st := b.rooms[room]
		if st == nil || !st.wanted || st.live {
			b.mu.Unlock()
			return nil
		}
		if st.liveCh == nil {
			st.liveCh = make(chan struct{})
		}
		ch := st.liveCh
		b.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("redisbroker: waiting for the subscription of room %q: %w", room, ctx.Err())
		case <-b.done:
			return primus.ErrBrokerClosed
		}
	}
}

// setLive records whether st's subscription is confirmed and wakes its
// waiters (b.mu is held).
func setLive(st *roomState, live bool) {
	st.live = live
	if st.liveCh != nil && (live || !st.wanted) {
		close(st.liveCh)
		st.liveCh = nil
	}
}

// historyResync tells the server that rooms (nil: all) were not
// subscribed for a while.
func (b *Broker) historyResync(rooms []string) {
	if b.hist != nil && !b.closing.Load() {
		b.stats.historyResyncs.Add(1)
		b.hist.resync(rooms)
	}
}

// noteDropped remembers that a message of channel was dropped (a full
// worker queue): the next tick asks the server to resync its room. It
// runs in the Pub/Sub hook and never blocks for long.
func (b *Broker) noteDropped(channel string) {
	if b.hist == nil || b.cfg.Mode != Native {
		return
	}
	room, ok := b.roomOf(channel)
	if !ok {
		return
	}
	b.hist.mu.Lock()
	if len(b.hist.dropped) < 100_000 {
		b.hist.dropped[room] = struct{}{}
	}
	b.hist.mu.Unlock()
}

// flushDropped asks the server to resync the rooms whose messages were
// dropped since the last tick.
func (b *Broker) flushDropped() {
	if b.hist == nil {
		return
	}
	b.hist.mu.Lock()
	if len(b.hist.dropped) == 0 {
		b.hist.mu.Unlock()
		return
	}
	rooms := make([]string, 0, len(b.hist.dropped))
	for r := range b.hist.dropped {
		rooms = append(rooms, r)
	}
	clear(b.hist.dropped)
	b.hist.mu.Unlock()
	b.historyResync(rooms)
}

// partitionRooms lists the wanted rooms of p (cluster mode).
func (b *Broker) partitionRooms(p *partition) []string {
	b.mu.RLock()
	defer b.mu.RUnlock()
	rooms := make([]string, 0, len(p.rooms))
	for r, st := range p.rooms {
		if st.wanted {
			rooms = append(rooms, r)
		}
	}
	return rooms
}
