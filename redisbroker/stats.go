package redisbroker

import (
	"sync/atomic"
	"time"
)

// Stats is a snapshot of a Broker's counters (monotonic, since New) and
// gauges. The standalone server exports them as Prometheus metrics.
type Stats struct {
	Mode   string // "native" or "compat"
	NodeID string

	// Connected is true while the Pub/Sub connection is up and subscribed
	// (cluster mode: while at least one shard delivers; see Shards).
	Connected bool
	// Rooms is the number of rooms this node hosts (declared by Subscribe).
	Rooms int
	// SubscribedRooms is the number of room channels subscribed on the
	// current Pub/Sub connection (native; compat subscribes one pattern and
	// reports the hosted rooms).
	SubscribedRooms int
	// QueueDepth is the number of received messages waiting for a worker.
	QueueDepth int

	// Published counts Publish calls that reached Redis (a multi-room
	// write is one publish here, even when it is one PUBLISH per room).
	Published uint64
	// MultiRoomBroadcasts counts the native multi-room writes among them
	// that went once on the multi-room channel, which every node hears,
	// rather than on each room's channel (over the fan-out budget).
	MultiRoomBroadcasts uint64
	// PublishErrors counts Publish calls that failed: Redis unreachable,
	// timeout, not connected yet, message too large, closed.
	PublishErrors uint64
	// ExceptNotCarried counts compat-mode publishes whose Except list could
	// not be carried to other nodes.
	ExceptNotCarried uint64

	// Received counts messages handed to the server.
	Received uint64
	// DecodeErrors counts malformed payloads that were ignored.
	DecodeErrors uint64
	// Oversized counts incoming payloads over MaxPayload that were ignored.
	Oversized uint64
	// Dropped counts incoming messages dropped because their worker's
	// queue was full (a multi-room-channel message counts once when any
	// queue was full: the rooms of those queues' workers lose it).
	Dropped uint64
	// Ignored counts well-formed messages that were not delivered: for a
	// room this node does not host (any more), multi-room-channel messages
	// for none of its rooms, or, in compat mode, without a "data" field.
	Ignored uint64

	// Connects counts Pub/Sub connections established and subscribed;
	// Reconnects counts those after the first.
	Connects, Reconnects uint64
	// ConnectErrors counts failed attempts to connect or subscribe.
	ConnectErrors uint64
	// ConnectionLosses counts established Pub/Sub connections that broke
	// (including those rebuilt after a failed probe or a master switch).
	ConnectionLosses uint64
	// MasterSwitches counts Pub/Sub connections rebuilt because Sentinel
	// named a new master.
	MasterSwitches uint64

	// LastResubscribe is how long the last (re)subscription took, from the
	// new connection being up to every room channel confirmed.
	LastResubscribe time.Duration
	// LastResubscribeRooms is the number of rooms it subscribed.
	LastResubscribeRooms int

	// ProbesSent counts idle probes; ProbeFailures those that did not come
	// back in time (each one rebuilds the Pub/Sub connection).
	ProbesSent, ProbeFailures uint64

	// Room history (primus.HistoryBroker). HistoryPublished counts
	// history writes stored and published; HistoryReads the reads
	// (positions, resyncs, replays); HistoryMalformed the stream entries
	// left out of reads because they were not what the broker writes;
	// HistoryResyncs the rooms lists handed to the server to read back
	// (after a reconnection, a detached partition, dropped messages).
	HistoryPublished, HistoryReads, HistoryMalformed, HistoryResyncs uint64

	// Cluster mode only. ClusterShards is the number of shards (masters
	// owning slots) in the latest slot map; Partitions the number of
	// partitions and PartitionsUp those subscribed on a live connection;
	// Shards describes every shard this node subscribes on (and former
	// masters it did, for their counters), sorted by address.
	ClusterShards            int
	Partitions, PartitionsUp int
	Shards                   []ShardStats
}

// ShardsDown lists the current shards whose partitions are not all
// subscribed (cluster mode).
func (s Stats) ShardsDown() []string {
	var down []string
	for _, sh := range s.Shards {
		if sh.Current && !sh.Up {
			down = append(down, sh.Addr)
		}
	}
	return down
}

type counters struct {
	published, publishErrors, exceptNotCarried          atomic.Uint64
	multiRoomBroadcasts                                 atomic.Uint64
	received, decodeErrors, oversized, dropped, ignored atomic.Uint64
	connects, connectErrors, losses, masterSwitches     atomic.Uint64
	probesSent, probeFailures                           atomic.Uint64
	lastResubscribe                                     atomic.Int64
	lastResubscribeRooms, subscribedRooms               atomic.Int64
	connected                                           atomic.Bool
	historyPublished, historyReads                      atomic.Uint64
	historyMalformed, historyResyncs                    atomic.Uint64
}

// Stats returns a snapshot of the broker's counters and gauges.
func (b *Broker) Stats() Stats {
	c := &b.stats
	s := Stats{
		Mode:                 b.cfg.Mode.String(),
		NodeID:               b.cfg.NodeID,
		Connected:            c.connected.Load(),
		Published:            c.published.Load(),
		MultiRoomBroadcasts:  c.multiRoomBroadcasts.Load(),
		PublishErrors:        c.publishErrors.Load(),
		ExceptNotCarried:     c.exceptNotCarried.Load(),
		Received:             c.received.Load(),
		DecodeErrors:         c.decodeErrors.Load(),
		Oversized:            c.oversized.Load(),
		Dropped:              c.dropped.Load(),
		Ignored:              c.ignored.Load(),
		Connects:             c.connects.Load(),
		ConnectErrors:        c.connectErrors.Load(),
		ConnectionLosses:     c.losses.Load(),
		MasterSwitches:       c.masterSwitches.Load(),
		LastResubscribe:      time.Duration(c.lastResubscribe.Load()),
		LastResubscribeRooms: int(c.lastResubscribeRooms.Load()),
		ProbesSent:           c.probesSent.Load(),
		ProbeFailures:        c.probeFailures.Load(),
		HistoryPublished:     c.historyPublished.Load(),
		HistoryReads:         c.historyReads.Load(),
		HistoryMalformed:     c.historyMalformed.Load(),
		HistoryResyncs:       c.historyResyncs.Load(),
	}
	if s.Connects > 0 {
		s.Reconnects = s.Connects - 1
	}
	for _, q := range b.queues {
		s.QueueDepth += len(q)
	}
	b.mu.RLock()
	s.Rooms = b.hosted
	if b.cfg.Mode == Compat {
		s.SubscribedRooms = b.hosted
	} else {
		s.SubscribedRooms = int(c.subscribedRooms.Load())
	}
	b.mu.RUnlock()
	if b.cl != nil {
		s.SubscribedRooms = b.cl.subscribedRooms()
		s.Shards, s.ClusterShards, s.Connected = b.cl.stats()
		s.Partitions = b.cl.n
		for _, p := range b.cl.parts {
			if p.attached.Load() {
				s.PartitionsUp++
			}
		}
	}
	return s
}
