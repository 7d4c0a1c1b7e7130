package primus

import (
	"context"
	"sync"
	"time"
)

// The memory broker's room history: a ring of the last Size writes per room
// and the room's offset and epoch, shared by the brokers of one hub. As in
// Redis, the ring expires TTL after the room's last write while the offset
// and epoch live on (memoryMetaTTL), so that a reader learns that writes
// were lost rather than meeting a new epoch; a room idle for longer is
// forgotten and starts a new epoch.

// memoryMetaTTL is how long a room's offset and epoch outlive its last use.
const memoryMetaTTL = 24 * time.Hour

type memoryHistory struct {
	mu     sync.Mutex
	rooms  map[string]*memoryRoomHistory
	writes int // since the last sweep of forgotten rooms
}

type memoryRoomHistory struct {
	epoch    string
	top      uint64
	ring     []*Message // the last writes, oldest first
	expires  time.Time  // when ring is dropped
	lastUsed time.Time
}

var _ HistoryBroker = (*MemoryBroker)(nil)

// room returns room's history, starting an epoch if it has none (its
// lock is held).
func (mh *memoryHistory) room(room string, now time.Time) *memoryRoomHistory {
	if mh.rooms == nil {
		mh.rooms = make(map[string]*memoryRoomHistory)
	}
	rh := mh.rooms[room]
	if rh == nil || now.Sub(rh.lastUsed) > memoryMetaTTL {
		rh = &memoryRoomHistory{epoch: newEpochID()}
		mh.rooms[room] = rh
	}
	if !rh.expires.IsZero() && now.After(rh.expires) {
		clear(rh.ring)
		rh.ring = rh.ring[:0]
	}
	rh.lastUsed = now
	return rh
}

// sweep forgets rooms unused for memoryMetaTTL, every 1024 writes.
func (mh *memoryHistory) sweep(now time.Time) {
	if mh.writes++; mh.writes < 1024 {
		return
	}
	mh.writes = 0
	for name, rh := range mh.rooms {
		if now.Sub(rh.lastUsed) > memoryMetaTTL {
			delete(mh.rooms, name)
		}
	}
}

// EnableHistory implements HistoryBroker. A memory broker's subscriptions
// are never interrupted: it never calls resync.
func (b *MemoryBroker) EnableHistory(resync func(rooms []string)) error { return nil }

// PublishHistory implements HistoryBroker: the write is stored in the
// hub's ring for the room and handed to the other nodes hosting it, all
// under the hub's history lock, so that every node receives a room's
// writes in offset order.
func (b *MemoryBroker) PublishHistory(ctx context.Context, m *Message, opts HistoryOptions) (HistoryPosition, error) {
	if err := ctx.Err(); err != nil {
		return HistoryPosition{}, err
	}
	b.mu.RLock()
	closed := b.closed
	b.mu.RUnlock()
	if closed {
		return HistoryPosition{}, ErrBrokerClosed
	}
	if len(m.Rooms) != 1 || opts.Size <= 0 {
		return HistoryPosition{}, ErrNoHistory
	}
	mh := &b.hub.history
	now := time.Now()
	mh.mu.Lock()
	defer mh.mu.Unlock()
	mh.sweep(now)
	rh := mh.room(m.Rooms[0], now)
	rh.top++
	stored := *m
	stored.Offset, stored.Epoch = rh.top, rh.epoch
	size := min(opts.Size, MaxHistorySize)
	if len(rh.ring) >= size {
		n := len(rh.ring) - size + 1
		clear(rh.ring[:n])
		rh.ring = rh.ring[n:]
	}
	rh.ring = append(rh.ring, &stored)
	ttl := opts.TTL
	if ttl <= 0 {
		ttl = DefaultHistoryTTL
	}
	rh.expires = now.Add(ttl)
	b.hub.mu.RLock()
	for n := range b.hub.nodes {
		if n != b {
			n.deliver(&stored)
		}
	}
	b.hub.mu.RUnlock()
	return HistoryPosition{Offset: stored.Offset, Epoch: stored.Epoch}, nil
}

// History implements HistoryBroker.
func (b *MemoryBroker) History(ctx context.Context, room string, since uint64, limit int) ([]*Message, HistoryPosition, error) {
	if err := ctx.Err(); err != nil {
		return nil, HistoryPosition{}, err
	}
	mh := &b.hub.history
	mh.mu.Lock()
	defer mh.mu.Unlock()
	rh := mh.room(room, time.Now())
	pos := HistoryPosition{Offset: rh.top, Epoch: rh.epoch}
	var out []*Message
	for _, m := range rh.ring {
		if len(out) >= limit {
			break
		}
		if m.Offset > since {
			out = append(out, m)
		}
	}
	return out, pos, nil
}

// Position implements HistoryBroker.
func (b *MemoryBroker) Position(ctx context.Context, room string) (HistoryPosition, error) {
	_, pos, err := b.History(ctx, room, 0, 0)
	return pos, err
}
