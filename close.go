package primus

import "github.com/primusgo/primus/internal/ws"

// CloseReason says why a spark was closed. Every closed spark has one.
type CloseReason int

const (
	// ReasonNone: the spark is still open.
	ReasonNone CloseReason = iota
	// ReasonClientClosed: the client closed the connection (or it dropped).
	ReasonClientClosed
	// ReasonHeartbeatTimeout: no pong (nor WebSocket ping) arrived within a ping interval.
	ReasonHeartbeatTimeout
	// ReasonSlowConsumer: the spark's backlog exceeded Config.MaxQueueBytes.
	// The client gets a close frame (1013) if its socket takes one.
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
	// ReasonTokenExpired: the spark's Identity expired (close 1008, reconnect-style:
	// a client that brings fresh credentials comes back).
	ReasonTokenExpired
	// ReasonRateLimited: the client kept sending faster than Config.MessageRate
	// after its messages were refused (close 1008 after "primus::server::close":
	// the client does not reconnect).
	ReasonRateLimited
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
	ReasonTokenExpired:     "token expired",
	ReasonRateLimited:      "rate limited",
}

func (r CloseReason) String() string {
	if r >= 0 && int(r) < len(reasonNames) {
		return reasonNames[r]
	}
	return "unknown"
}

// closeStatus is the WebSocket close frame the server sends when it closes
// a spark for reason (code 0: a close frame without status, as Primus
// sends), and whether "primus::server::close" goes first so that the
// client does not reconnect.
func (r CloseReason) closeStatus() (code int, text string, final bool) {
	switch r {
	case ReasonEnded:
		return 0, "", true
	case ReasonShutdown:
		return ws.CloseGoingAway, "", false
	case ReasonSlowConsumer:
		return ws.CloseTryAgainLater, "slow consumer", false
	case ReasonTokenExpired:
		return ws.ClosePolicyViolation, "token expired", false
	case ReasonRateLimited:
		return ws.ClosePolicyViolation, "rate limited", true
	}
	return 0, "", false
}
