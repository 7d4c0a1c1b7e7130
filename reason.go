package primus

import "errors"

// CloseReason says why a spark was closed. Every closed spark has one.
type CloseReason int

const (
	// ReasonNone: the spark is still open.
	ReasonNone CloseReason = iota
	// ReasonClientClosed: the client closed the connection (or it dropped).
	ReasonClientClosed
	// ReasonHeartbeatTimeout: no pong (nor WebSocket ping) arrived within a ping interval.
	ReasonHeartbeatTimeout
	// ReasonSlowConsumer: the spark's outbound queue exceeded Config.MaxQueueBytes.
	ReasonSlowConsumer
	// ReasonMessageTooLarge: the client sent a message over Config.MaxLength (close 1009).
	ReasonMessageTooLarge
	// ReasonProtocolError: the client broke the WebSocket protocol.
	ReasonProtocolError
	// ReasonWriteError: writing to the connection failed or timed out.
	ReasonWriteError
	// ReasonEnded: the application called Spark.End (the client does not reconnect).
	ReasonEnded
	// ReasonEndedReconnect: the application called Spark.EndReconnect.
	ReasonEndedReconnect
	// ReasonShutdown: the server is shutting down (the client reconnects elsewhere).
	ReasonShutdown
)

var reasonNames = [...]string{
	ReasonNone:             "open",
	ReasonClientClosed:     "client closed",
	ReasonHeartbeatTimeout: "heartbeat timeout",
	ReasonSlowConsumer:     "slow consumer",
	ReasonMessageTooLarge:  "message too large",
	ReasonProtocolError:    "protocol error",
	ReasonWriteError:       "write error",
	ReasonEnded:            "ended",
	ReasonEndedReconnect:   "ended (reconnect)",
	ReasonShutdown:         "server shutdown",
}

func (r CloseReason) String() string {
	if r >= 0 && int(r) < len(reasonNames) {
		return reasonNames[r]
	}
	return "unknown"
}

var (
	// ErrSparkClosed is returned by operations on a spark that is closing or closed.
	ErrSparkClosed = errors.New("primus: spark is closed")
	// ErrServerClosed is returned by operations on a server after Shutdown.
	ErrServerClosed = errors.New("primus: server is shut down")
	// ErrNoRooms is returned by a room write without rooms.
	ErrNoRooms = errors.New("primus: no rooms given")
	// ErrPublish wraps the broker's error when a room write was delivered
	// locally but could not be published to the other nodes.
	ErrPublish = errors.New("primus: delivered locally, but publishing to other nodes failed")
	// ErrInvalidRoom is returned for an empty room name.
	ErrInvalidRoom = errors.New("primus: invalid room name")
)
