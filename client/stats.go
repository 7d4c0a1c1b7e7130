package client

import "sync/atomic"

// Stats are cumulative counters of a client, for metrics and load tests.
// Every message the client gives up on is counted in one of Lost,
// Discarded, QueueFull or InvalidFrames.
type Stats struct {
	// Connects counts connections opened, the first one included.
	Connects uint64
	// Sent counts data messages handed to a connection (control messages
	// such as pongs excluded).
	Sent uint64
	// Received counts data messages received from the server (control
	// messages excluded), the ones in Lost included. It is counted before
	// the message is handed to the application.
	Received uint64
	// Lost counts messages lost with a failed connection: the outgoing
	// message being written, or a received message that was waiting for
	// the application to read Messages.
	Lost uint64
	// Discarded counts queued outgoing messages dropped because the client
	// ended (Close, or the end reasons of Err).
	Discarded uint64
	// QueueFull counts Write calls rejected with ErrQueueFull.
	QueueFull uint64
	// InvalidFrames counts frames from the server dropped because they
	// were not valid JSON.
	InvalidFrames uint64
	// Duplicates counts positioned messages (rooms joined with Recover)
	// dropped because the application had them already, or because a
	// recovery that did not recover superseded them.
	Duplicates uint64
}

type stats struct {
	connects, sent, received, lost, discarded, queueFull, invalidFrames, duplicates atomic.Uint64
}

// Stats returns a snapshot of the client's counters.
func (c *Client) Stats() Stats {
	s := &c.stats
	return Stats{
		Connects:      s.connects.Load(),
		Sent:          s.sent.Load(),
		Received:      s.received.Load(),
		Lost:          s.lost.Load(),
		Discarded:     s.discarded.Load(),
		QueueFull:     s.queueFull.Load(),
		InvalidFrames: s.invalidFrames.Load(),
		Duplicates:    s.duplicates.Load(),
	}
}
