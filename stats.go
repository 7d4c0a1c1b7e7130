package primus

import "sync/atomic"

type counters struct {
	connections       atomic.Int64
	connectionsTotal  atomic.Uint64
	messagesIn        atomic.Uint64
	parseErrors       atomic.Uint64
	deliveries        atomic.Uint64
	heartbeatTimeouts atomic.Uint64
	published         atomic.Uint64
	publishErrors     atomic.Uint64
	remoteMessages    atomic.Uint64
	reservedRefused   atomic.Uint64
	rejectedOrigin    atomic.Uint64
	rejectedAuth      atomic.Uint64
	rejectedFull      atomic.Uint64
	rejectedIPFull    atomic.Uint64
	rateLimited       atomic.Uint64
	rateLimitEnds     atomic.Uint64
	tokenExpiries     atomic.Uint64
}

// Stats is a snapshot of a server's counters, for metrics.
type Stats struct {
	Connections       int64  // open sparks
	ConnectionsTotal  uint64 // sparks ever accepted
	Rooms             int    // rooms with local members
	MessagesIn        uint64 // data and control messages read from clients
	ParseErrors       uint64 // incoming messages that were not valid JSON
	Deliveries        uint64 // room-write frames queued to local sparks
	FramesOut         uint64 // frames written to clients (all kinds)
	Writes            uint64 // write system calls to clients; FramesOut/Writes is how well frames coalesce
	Drops             uint64 // frames not queued: spark closing, closed or overflowing
	SlowConsumers     uint64 // sparks closed because their queue overflowed
	HeartbeatTimeouts uint64 // sparks closed for missing heartbeats
	Published         uint64 // room writes handed to the broker
	PublishErrors     uint64 // room writes the broker failed to publish
	RemoteMessages    uint64 // messages received from other nodes
	ReservedRefused   uint64 // writes refused and remote messages dropped for data that is a "primus::" string
	RejectedOrigin    uint64 // upgrades refused by CheckOrigin (403)
	RejectedAuth      uint64 // upgrades refused by Authorize or Authenticate
	RejectedFull      uint64 // upgrades refused by MaxConnections (503)
	RejectedIPFull    uint64 // upgrades refused by MaxConnectionsPerIP (429)
	RateLimited       uint64 // messages dropped for exceeding MessageRate
	RateLimitEnds     uint64 // sparks ended with ReasonRateLimited
	TokenExpiries     uint64 // sparks ended with ReasonTokenExpired

	// Room history (Config.History).
	HistoryRooms        int    // history rooms with local members (each with a sequencer)
	HistoryGaps         uint64 // writes this node's members could not get: the history no longer had them, or was lost (new epoch)
	HistoryResyncs      uint64 // reads of missed writes from the history (after a reconnection, a gap in offsets)
	HistoryRecovered    uint64 // joins with a since position that replayed everything missed
	HistoryNotRecovered uint64 // joins with a since position that could not (recovered:false)
}

// Stats returns the server's counters.
func (srv *Server) Stats() Stats {
	c := &srv.stats
	s := Stats{
		Connections:       c.connections.Load(),
		ConnectionsTotal:  c.connectionsTotal.Load(),
		Rooms:             srv.index.count(),
		MessagesIn:        c.messagesIn.Load(),
		ParseErrors:       c.parseErrors.Load(),
		Deliveries:        c.deliveries.Load(),
		FramesOut:         srv.writeStats.FramesOut.Load(),
		Writes:            srv.writeStats.Writes.Load(),
		Drops:             srv.writeStats.Drops.Load(),
		SlowConsumers:     srv.writeStats.SlowConsumers.Load(),
		HeartbeatTimeouts: c.heartbeatTimeouts.Load(),
		Published:         c.published.Load(),
		PublishErrors:     c.publishErrors.Load(),
		RemoteMessages:    c.remoteMessages.Load(),
		ReservedRefused:   c.reservedRefused.Load(),
		RejectedOrigin:    c.rejectedOrigin.Load(),
		RejectedAuth:      c.rejectedAuth.Load(),
		RejectedFull:      c.rejectedFull.Load(),
		RejectedIPFull:    c.rejectedIPFull.Load(),
		RateLimited:       c.rateLimited.Load(),
		RateLimitEnds:     c.rateLimitEnds.Load(),
		TokenExpiries:     c.tokenExpiries.Load(),
	}
	srv.hist.stats(&s)
	return s
}
