package primus

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
)

// The memory broker's node messages: each node has a queue and a goroutine
// that hands its messages to the handler, so that a handler never runs on
// the sender's goroutine (as over Redis), in the order they were sent.

var _ ClusterBroker = (*MemoryBroker)(nil)

// memoryNodeQueue bounds the node messages waiting for one node; more are
// dropped (the protocol names the nodes whose answers were lost).
const memoryNodeQueue = 4096

type memoryNode struct {
	id      string
	h       NodeHandler
	q       chan memoryNodeItem
	done    chan struct{}
	wg      sync.WaitGroup
	closed  atomic.Bool
	dropped atomic.Uint64
}

type memoryNodeItem struct {
	payload []byte
	linkUp  bool
}

// EnableCluster implements ClusterBroker.
func (b *MemoryBroker) EnableCluster(nodeID string, h NodeHandler) error {
	if nodeID == "" || h == nil {
		return errors.New("primus: EnableCluster needs a node id and a handler")
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case b.closed:
		return ErrBrokerClosed
	case b.handler != nil:
		return errors.New("primus: EnableCluster after Start")
	case b.node.Load() != nil:
		return errors.New("primus: EnableCluster called twice")
	}
	b.node.Store(&memoryNode{id: nodeID, h: h, q: make(chan memoryNodeItem, memoryNodeQueue), done: make(chan struct{})})
	return nil
}

// Broadcast implements ClusterBroker: every other node of the hub with
// cluster calls enabled receives payload.
func (b *MemoryBroker) Broadcast(ctx context.Context, payload []byte) error {
	return b.sendNode(ctx, "", payload)
}

// Send implements ClusterBroker.
func (b *MemoryBroker) Send(ctx context.Context, nodeID string, payload []byte) error {
	if nodeID == "" {
		return nil
	}
	return b.sendNode(ctx, nodeID, payload)
}

func (b *MemoryBroker) sendNode(ctx context.Context, to string, payload []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if len(payload) > MaxNodeMessage {
		return errors.New("primus: node message larger than MaxNodeMessage")
	}
	b.mu.RLock()
	closed := b.closed
	b.mu.RUnlock()
	if closed {
		return ErrBrokerClosed
	}
	if b.node.Load() == nil {
		return ErrNotSupported
	}
	p := append([]byte(nil), payload...) // receivers only read it
	b.hub.mu.RLock()
	defer b.hub.mu.RUnlock()
	for n := range b.hub.nodes {
		if nn := n.node.Load(); n != b && nn != nil && (to == "" || nn.id == to) {
			nn.push(memoryNodeItem{payload: p})
		}
	}
	return nil
}

func (n *memoryNode) push(it memoryNodeItem) {
	if n.closed.Load() {
		return
	}
	select {
	case n.q <- it:
	default:
		n.dropped.Add(1)
	}
}

// start runs the node's delivery goroutine; the link is up at once.
func (n *memoryNode) start() {
	n.push(memoryNodeItem{linkUp: true})
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		for {
			select {
			case <-n.done:
				return
			case it := <-n.q:
				if n.closed.Load() {
					return
				}
				if it.linkUp {
					n.h.NodeLinkUp()
				} else {
					n.h.HandleNodeMessage(it.payload)
				}
			}
		}
	}()
}

// stop ends delivery and waits for the handler call in flight.
func (n *memoryNode) stop() {
	if n.closed.Swap(true) {
		return
	}
	close(n.done)
	n.wg.Wait()
}
