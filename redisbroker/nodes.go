package redisbroker

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"time"

	"github.com/primusgo/primus"
	"github.com/redis/rueidis"
)

// Node messages (primus.ClusterBroker), native mode only: membership
// heartbeats and the requests and answers of the server's cluster calls.
//
//	<prefix>:nodes          broadcast: every node subscribes to it
//	<prefix>:node:<id>      one node's messages (the channel of its probes)
//
// Both are classic channels (SUBSCRIBE/PUBLISH), also on a Redis Cluster,
// where a classic PUBLISH reaches the subscribers on every cluster node:
// node messages are little traffic and need no slot. In single and
// Sentinel mode they are subscribed on the Pub/Sub connection with the
// rooms; in cluster mode on a connection of their own to any node of the
// cluster, probed like the others and rebuilt elsewhere when it fails; the
// node's messages are published through that node too while it is up (a
// random node of the cluster otherwise, which may be a dead one).
//
// The Redis reader never waits for the server: messages go to a bounded
// queue (QueueSize) read by one goroutine that hands them to the handler;
// what does not fit is dropped and counted. A probe on the node channel
// (a payload starting with "primus-probe:") is never a node message.

// ControlChannel is the Redis channel every native node subscribes to for
// node broadcasts (membership and cluster calls) under prefix.
func ControlChannel(prefix string) string { return prefix + ":nodes" }

// nodeLink is a broker's node-message state (set by EnableCluster, before
// Start; read-only afterwards).
type nodeLink struct {
	id      string
	h       primus.NodeHandler
	channel string // NodeChannel(prefix, id): Sends to this node
	control string // ControlChannel(prefix)
	q       chan nodeItem

	received, dropped, oversized, linkUps atomic.Uint64
	controlUp                             atomic.Bool // cluster mode: the control connection is subscribed
	controlAddr                           atomic.Pointer[string]
	// controlClient is the control connection's client while it is up
	// (cluster mode): node messages are published through the node it
	// proved alive rather than a random node of the cluster.
	controlClient atomic.Pointer[redisClient]
}

type nodeItem struct {
	payload string
	linkUp  bool
}

var _ primus.ClusterBroker = (*Broker)(nil)

// EnableCluster implements primus.ClusterBroker. Compat mode cannot carry
// node messages (primus-redis-rooms has none): it returns an error
// wrapping primus.ErrNotSupported, and the server's cluster calls fail with
// it while everything else works.
func (b *Broker) EnableCluster(nodeID string, h primus.NodeHandler) error {
	if b.cfg.Mode != Native {
		return fmt.Errorf("redisbroker: compat mode carries no node messages (primus-redis-rooms has none): %w", primus.ErrNotSupported)
	}
	if nodeID == "" || h == nil {
		return errors.New("redisbroker: EnableCluster needs a node id and a handler")
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case b.closing.Load():
		return primus.ErrBrokerClosed
	case b.started:
		return errors.New("redisbroker: EnableCluster after Start")
	case b.nodes != nil:
		return errors.New("redisbroker: EnableCluster called twice")
	}
	b.nodes = &nodeLink{
		id:      nodeID,
		h:       h,
		channel: NodeChannel(b.cfg.Channel, nodeID),
		control: ControlChannel(b.cfg.Channel),
		q:       make(chan nodeItem, b.cfg.QueueSize),
	}
	return nil
}

// Broadcast implements primus.ClusterBroker: one PUBLISH on the control
// channel, which every native node (this one too) hears.
func (b *Broker) Broadcast(ctx context.Context, payload []byte) error {
	if b.nodes == nil {
		return primus.ErrNotSupported
	}
	return b.publishNode(ctx, b.nodes.control, payload)
}

// Send implements primus.ClusterBroker: one PUBLISH on the node's channel.
func (b *Broker) Send(ctx context.Context, nodeID string, payload []byte) error {
	if b.nodes == nil {
		return primus.ErrNotSupported
	}
	return b.publishNode(ctx, NodeChannel(b.cfg.Channel, nodeID), payload)
}

func (b *Broker) publishNode(ctx context.Context, channel string, payload []byte) error {
	if b.closing.Load() {
		return primus.ErrBrokerClosed
	}
	if len(payload) > b.cfg.MaxPayload {
		return ErrTooLarge
	}
	cb, err := b.connectedClient(ctx)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, b.cfg.CommandTimeout)
	defer cancel()
	pub := func(c rueidis.Client) error {
		return c.Do(ctx, c.B().Publish().Channel(channel).Message(rueidis.BinaryString(payload)).Build()).Error()
	}
	if cc := b.nodes.controlClient.Load(); cc != nil {
		if err := pub(cc.c); err == nil || ctx.Err() != nil {
			return wrapPublish(err)
		}
		// The control connection is going away: through the cluster.
	}
	return wrapPublish(pub(cb.c))
}

func wrapPublish(err error) error {
	if err != nil {
		return fmt.Errorf("redisbroker: publish: %w", err)
	}
	return nil
}

// startNodes starts the node-message goroutines (Start, under b.mu).
func (b *Broker) startNodes() {
	if b.nodes == nil {
		return
	}
	b.wg.Add(1)
	go b.nodeWorker()
	if b.cl != nil {
		b.wg.Add(1)
		go b.runControl()
	}
}

// nodeSubscriptions are the node channels to subscribe besides the node's
// probe channel (single and Sentinel sessions).
func (b *Broker) nodeSubscriptions(dc rueidis.DedicatedClient) []rueidis.Completed {
	if b.nodes == nil {
		return nil
	}
	channels := []string{b.nodes.control}
	if b.nodes.channel != b.nodeChannel {
		channels = append(channels, b.nodes.channel)
	}
	return []rueidis.Completed{dc.B().Subscribe().Channel(channels...).Build()}
}

// takeNode is the Pub/Sub hook's first step: it queues a node message and
// reports whether m was one (a probe is not).
func (b *Broker) takeNode(m rueidis.PubSubMessage) bool {
	n := b.nodes
	if n == nil || (m.Channel != n.control && m.Channel != n.channel) {
		return false
	}
	if m.Channel == b.nodeChannel && strings.HasPrefix(m.Message, probeTag) {
		return false
	}
	if b.closing.Load() {
		return true
	}
	if len(m.Message) > b.cfg.MaxPayload || len(m.Message) > primus.MaxNodeMessage {
		n.oversized.Add(1)
		return true
	}
	select {
	case n.q <- nodeItem{payload: m.Message}:
	default:
		n.dropped.Add(1)
	}
	return true
}

// nodeLinkUp tells the server that node messages arrive (again), in order
// with them.
func (b *Broker) nodeLinkUp() {
	n := b.nodes
	if n == nil {
		return
	}
	n.linkUps.Add(1)
	select {
	case n.q <- nodeItem{linkUp: true}:
	default:
		n.dropped.Add(1)
	}
}

func (b *Broker) nodeWorker() {
	defer b.wg.Done()
	n := b.nodes
	for {
		select {
		case <-b.done:
			return
		case it := <-n.q:
			if b.closing.Load() {
				return
			}
			if it.linkUp {
				n.h.NodeLinkUp()
				continue
			}
			n.received.Add(1)
			n.h.HandleNodeMessage(bytesOf(it.payload))
		}
	}
}

// runControl keeps the cluster-mode control connection: a single-node
// client to a random node of the cluster, subscribed to the node channels,
// rebuilt with backoff when it fails or its probe does not come back.
func (b *Broker) runControl() {
	defer b.wg.Done()
	bo := backoff{min: 50 * time.Millisecond, max: b.cfg.MaxBackoff}
	for b.client.Load() == nil {
		if !b.sleep(50 * time.Millisecond) {
			return
		}
	}
	for !b.closing.Load() {
		established, err := b.controlSession()
		b.nodes.controlUp.Store(false)
		if b.closing.Load() {
			return
		}
		if established {
			bo.reset()
			b.log.Warn("node-message connection lost", "err", err)
		} else {
			b.log.Warn("node-message connection failed", "err", err)
		}
		if !b.sleep(bo.next()) {
			return
		}
	}
}

func (b *Broker) controlSession() (established bool, err error) {
	c := b.client.Load().c
	var addrs []string
	for a := range c.Nodes() {
		addrs = append(addrs, a)
	}
	if len(addrs) == 0 {
		return false, errClientMissing
	}
	addr := addrs[rand.IntN(len(addrs))]
	opt := b.opt
	opt.InitAddress = []string{addr}
	opt.ForceSingleClient = true
	client, err := rueidis.NewClient(opt)
	if err != nil {
		return false, fmt.Errorf("%s: %w", addr, err)
	}
	dc, _ := client.Dedicate()
	defer func() {
		b.nodes.controlClient.Store(nil)
		b.wg.Add(1)
		go func() { defer b.wg.Done(); dc.Close(); client.Close() }()
	}()
	closed := dc.SetPubSubHooks(rueidis.PubSubHooks{OnMessage: b.onMessage})
	select {
	case err := <-closed:
		return false, orClosed(err)
	default:
	}
	channels := []string{b.nodeChannel, b.nodes.control}
	if b.nodes.channel != b.nodeChannel {
		channels = append(channels, b.nodes.channel)
	}
	if err := b.do(dc, dc.B().Subscribe().Channel(channels...).Build()); err != nil {
		return false, fmt.Errorf("%s: %w", addr, err)
	}
	b.nodes.controlUp.Store(true)
	b.nodes.controlAddr.Store(&addr)
	b.nodes.controlClient.Store(&redisClient{c: client})
	b.lastRecv.Store(int64(b.clock.Now().Sub(b.epoch)))
	b.log.Info("node-message connection up", "node", addr)
	b.nodeLinkUp()
	ticks, stop := b.clock.Ticker(tick)
	defer stop()
	var p prober
	for {
		select {
		case <-b.done:
			return true, nil
		case err := <-closed:
			return true, orClosed(err)
		case <-ticks:
			if err := b.probe(c, &p); err != nil {
				return true, err
			}
		}
	}
}

// NodeStats are the broker's node-message counters (zero unless a server
// enabled cluster calls).
type NodeStats struct {
	// Received counts node messages handed to the server; Dropped those
	// lost because its queue was full; Oversized those over MaxPayload.
	Received, Dropped, Oversized uint64
	// LinkUps counts the times node messages started arriving (again).
	LinkUps uint64
}

// NodeStats returns the node-message counters.
func (b *Broker) NodeStats() NodeStats {
	n := b.nodes
	if n == nil {
		return NodeStats{}
	}
	return NodeStats{Received: n.received.Load(), Dropped: n.dropped.Load(), Oversized: n.oversized.Load(), LinkUps: n.linkUps.Load()}
}
