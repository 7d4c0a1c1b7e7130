package primus

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/primusgo/primus/internal/glob"
)

// MemoryHub connects MemoryBrokers in one process: every broker made by the
// same hub is a node of one cluster. Several Servers sharing a hub behave
// like servers sharing a Redis, which is how multi-node behaviour is tested
// without Redis.
type MemoryHub struct {
	mu    sync.RWMutex
	nodes map[*MemoryBroker]struct{}

	history memoryHistory // memoryhistory.go
}

// NewMemoryHub returns an empty hub.
func NewMemoryHub() *MemoryHub {
	return &MemoryHub{nodes: make(map[*MemoryBroker]struct{})}
}

// NewBroker returns a new node of the hub's cluster.
func (h *MemoryHub) NewBroker() *MemoryBroker {
	b := &MemoryBroker{hub: h, rooms: make(map[string]struct{})}
	h.mu.Lock()
	h.nodes[b] = struct{}{}
	h.mu.Unlock()
	return b
}

// NewMemoryBroker returns a broker that is the only node of its own hub: room
// writes stay in the process. It is what a Server uses when Config.Broker is nil.
func NewMemoryBroker() *MemoryBroker { return NewMemoryHub().NewBroker() }

// MemoryBroker is the in-process Broker. Publish hands the message to the
// handlers of the other nodes synchronously, so delivery is ordered per
// publisher and never lost while both nodes are open.
type MemoryBroker struct {
	hub *MemoryHub

	// mu guards handler and closed; handler calls hold the read lock so
	// that Close waits for the calls in flight.
	mu      sync.RWMutex
	handler BrokerHandler
	closed  bool

	// roomsMu guards rooms. It must not be mu: the server calls Subscribe
	// and Unsubscribe under a room index lock, and handler calls (under mu)
	// take room index locks, so sharing one lock deadlocks.
	roomsMu  sync.Mutex
	rooms    map[string]struct{}
	patterns map[string]glob.Pattern

	node atomic.Pointer[memoryNode] // cluster calls (memorycluster.go)
}

var _ PatternBroker = (*MemoryBroker)(nil)

// Start implements Broker.
func (b *MemoryBroker) Start(h BrokerHandler) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return ErrBrokerClosed
	}
	b.handler = h
	if n := b.node.Load(); n != nil {
		n.start()
	}
	return nil
}

// Publish implements Broker: every other node of the hub that hosts one of
// m.Rooms receives m once.
func (b *MemoryBroker) Publish(ctx context.Context, m *Message) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	b.mu.RLock()
	closed := b.closed
	b.mu.RUnlock()
	if closed {
		return ErrBrokerClosed
	}
	b.hub.mu.RLock()
	defer b.hub.mu.RUnlock()
	for n := range b.hub.nodes {
		if n != b {
			n.deliver(m)
		}
	}
	return nil
}

func (b *MemoryBroker) deliver(m *Message) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.closed || b.handler == nil || !b.hostsAny(m.Rooms) {
		return
	}
	b.handler.HandleMessage(m, m.Skip)
}

func (b *MemoryBroker) hostsAny(rooms []string) bool {
	b.roomsMu.Lock()
	defer b.roomsMu.Unlock()
	for _, r := range rooms {
		if _, ok := b.rooms[r]; ok {
			return true
		}
		for _, p := range b.patterns {
			if p.Match(r) {
				return true
			}
		}
	}
	return false
}

// EnablePatterns implements PatternBroker.
func (b *MemoryBroker) EnablePatterns() error { return nil }

// SubscribePattern implements PatternBroker.
func (b *MemoryBroker) SubscribePattern(pattern string) {
	b.roomsMu.Lock()
	if b.patterns == nil {
		b.patterns = make(map[string]glob.Pattern)
	}
	b.patterns[pattern] = glob.Compile(pattern)
	b.roomsMu.Unlock()
}

// UnsubscribePattern implements PatternBroker.
func (b *MemoryBroker) UnsubscribePattern(pattern string) {
	b.roomsMu.Lock()
	delete(b.patterns, pattern)
	b.roomsMu.Unlock()
}

// Subscribe implements Broker.
func (b *MemoryBroker) Subscribe(room string) {
	b.roomsMu.Lock()
	b.rooms[room] = struct{}{}
	b.roomsMu.Unlock()
}

// Unsubscribe implements Broker.
func (b *MemoryBroker) Unsubscribe(room string) {
	b.roomsMu.Lock()
	delete(b.rooms, room)
	b.roomsMu.Unlock()
}

// Close implements Broker; it waits for handler calls in flight.
func (b *MemoryBroker) Close() error {
	b.hub.mu.Lock()
	delete(b.hub.nodes, b)
	b.hub.mu.Unlock()
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	if n := b.node.Load(); n != nil {
		n.stop()
	}
	return nil
}
