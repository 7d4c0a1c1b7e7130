package client

import (
	"errors"
	"fmt"
)

// Sentinel errors. Every error this package returns either is one of these or
// wraps its cause with the "primus client: <operation>: " prefix (see
// wrapErr), so errors.Is/errors.As work on everything, including the
// underlying context and websocket errors.
var (
	// ErrClosed is returned by operations on a client that has ended. When
	// the client ended for another reason than Close (the server ended the
	// session, reconnecting failed), the returned error wraps that reason as
	// well, so errors.Is(err, ErrClosed) holds for every "client is gone"
	// case.
	ErrClosed = errors.New("primus client: closed")

	// ErrServerEnded is the end reason when the server ended the session on
	// purpose: it sent "primus::server::close" before closing the
	// connection (spark.end() on the server). Like the original client, the
	// client does not reconnect then.
	ErrServerEnded = errors.New("primus client: session ended by the server")

	// ErrReconnectFailed is the end reason when the connection was lost and
	// ReconnectPolicy.Retries reconnect attempts in a row failed. The error
	// also wraps the last attempt's cause.
	ErrReconnectFailed = errors.New("primus client: reconnect failed")

	// ErrConnectionLost is the end reason when the connection was lost and
	// reconnecting is disabled (Options.DisableReconnect). The error also
	// wraps the cause (for example ErrPingTimeout).
	ErrConnectionLost = errors.New("primus client: connection lost")

	// ErrPingTimeout is the reason a connection is abandoned when the server
	// sent no "primus::ping::" within the ping timeout (Options.PingTimeout):
	// the connection is presumed dead even if TCP has not noticed yet.
	ErrPingTimeout = errors.New("primus client: no heartbeat from the server within the ping timeout")

	// ErrQueueFull is returned by Write when the outgoing queue
	// (Options.QueueSize) is full: the connection is down or slower than the
	// application writes. The message was not queued.
	ErrQueueFull = errors.New("primus client: outgoing queue full")

	// ErrInvalidJSON is reported (Options.OnError, Options.Logger) for a
	// text frame from the server that is not valid JSON; the frame is
	// dropped and the connection stays open, like the original client.
	// WriteRaw returns it for invalid input.
	ErrInvalidJSON = errors.New("primus client: invalid JSON")

	// ErrBinary is returned by Message.Decode for a binary frame, which has
	// no JSON to decode.
	ErrBinary = errors.New("primus client: binary message")
)

// wrapErr is the one way this package adds context to an error.
func wrapErr(op string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("primus client: %s: %w", op, err)
}

// closedErr turns the end reason of a client into the error returned by
// operations attempted after the end.
func closedErr(reason error) error {
	if reason == nil || errors.Is(reason, ErrClosed) {
		return ErrClosed
	}
	return fmt.Errorf("%w: %w", ErrClosed, reason)
}
