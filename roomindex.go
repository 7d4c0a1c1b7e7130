package primus

import (
	"hash/maphash"
	"sync"
)

// roomIndex maps room names to their local members. It is sharded by room
// name so that joins in one room do not wait for a broadcast in another;
// a broadcast holds one shard's read lock while it queues frames.
type roomIndex struct {
	seed   maphash.Seed
	shards [64]roomShard
	broker Broker

	// With wildcard rooms, pattern rooms are rooms too (members, events,
	// limits), and also listed in patterns; their broker is pb.
	wildcards bool
	pb        PatternBroker
	patterns  patternSet
}

type roomShard struct {
	mu    sync.RWMutex
	rooms map[string]*members
}

// members keeps join order and O(1) removal.
type members struct {
	sparks []*Spark
	pos    map[*Spark]int
}

func newRoomIndex(b Broker) *roomIndex {
	ix := &roomIndex{seed: maphash.MakeSeed(), broker: b}
	for i := range ix.shards {
		ix.shards[i].rooms = make(map[string]*members)
	}
	return ix
}

func (ix *roomIndex) shard(room string) *roomShard {
	return &ix.shards[maphash.String(ix.seed, room)%uint64(len(ix.shards))]
}

// add puts s in room; it reports whether the room was created. The broker
// hears about the room's first member under the shard lock, so that
// subscriptions and unsubscriptions reach it in membership order.
func (ix *roomIndex) add(room string, s *Spark) bool {
	sh := ix.shard(room)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	m := sh.rooms[room]
	created := m == nil
	if created {
		m = &members{pos: make(map[*Spark]int, 1)}
		sh.rooms[room] = m
		if ix.wildcards && IsPattern(room) {
			ix.patterns.add(room)
			ix.pb.SubscribePattern(room)
		} else {
			ix.broker.Subscribe(room)
		}
	}
	if _, ok := m.pos[s]; !ok {
		m.pos[s] = len(m.sparks)
		m.sparks = append(m.sparks, s)
	}
	return created
}

// remove takes s out of room and frees the room after its last member.
func (ix *roomIndex) remove(room string, s *Spark) {
	sh := ix.shard(room)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	m := sh.rooms[room]
	if m == nil {
		return
	}
	i, ok := m.pos[s]
	if !ok {
		return
	}
	last := len(m.sparks) - 1
	if i != last {
		// Swap-remove: join order is not kept across leaves, delivery
		// order within a spark is what matters.
		moved := m.sparks[last]
		m.sparks[i] = moved
		m.pos[moved] = i
	}
	m.sparks[last] = nil
	m.sparks = m.sparks[:last]
	delete(m.pos, s)
	if len(m.sparks) == 0 {
		delete(sh.rooms, room)
		if ix.wildcards && IsPattern(room) {
			ix.patterns.remove(room)
			ix.pb.UnsubscribePattern(room)
		} else {
			ix.broker.Unsubscribe(room)
		}
	} else if cap(m.sparks) > 64 && len(m.sparks) < cap(m.sparks)/4 {
		m.sparks = append([]*Spark(nil), m.sparks...) // give memory back after churn
	}
}

// each calls fn for every member of room under the shard's read lock; fn
// must not take the spark's lock or any index lock.
func (ix *roomIndex) each(room string, fn func(*Spark)) {
	sh := ix.shard(room)
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	if m := sh.rooms[room]; m != nil {
		for _, s := range m.sparks {
			fn(s)
		}
	}
}

// few copies room's members into buf if there are at most len(buf) of
// them, and returns them; ok is false for a larger room.
func (ix *roomIndex) few(room string, buf []*Spark) (members []*Spark, ok bool) {
	sh := ix.shard(room)
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	m := sh.rooms[room]
	if m == nil {
		return nil, true
	}
	if len(m.sparks) > len(buf) {
		return nil, false
	}
	return append(buf[:0], m.sparks...), true
}

// snapshot returns room's members.
func (ix *roomIndex) snapshot(room string) []*Spark {
	sh := ix.shard(room)
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	if m := sh.rooms[room]; m != nil {
		return append([]*Spark(nil), m.sparks...)
	}
	return nil
}

func (ix *roomIndex) size(room string) int {
	sh := ix.shard(room)
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	if m := sh.rooms[room]; m != nil {
		return len(m.sparks)
	}
	return 0
}

// rooms returns every room with its member count.
func (ix *roomIndex) rooms() map[string]int {
	out := make(map[string]int)
	for i := range ix.shards {
		sh := &ix.shards[i]
		sh.mu.RLock()
		for name, m := range sh.rooms {
			out[name] = len(m.sparks)
		}
		sh.mu.RUnlock()
	}
	return out
}

func (ix *roomIndex) count() int {
	n := 0
	for i := range ix.shards {
		sh := &ix.shards[i]
		sh.mu.RLock()
		n += len(sh.rooms)
		sh.mu.RUnlock()
	}
	return n
}
