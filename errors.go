package primus

import (
	"errors"
	"fmt"
)

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
	// ErrInvalidRoom is returned for a room name that is empty, longer than
	// Config.MaxRoomNameLength or not valid UTF-8 (the error says which).
	ErrInvalidRoom = errors.New("primus: invalid room name")
	// ErrTooManyRooms is returned by a Join that would put a spark in more
	// than Config.MaxRoomsPerSpark rooms; the spark joins none of them.
	ErrTooManyRooms = errors.New("primus: too many rooms for one spark")
	// ErrReservedData is returned for a write whose value is a string that
	// starts with "primus::": Primus clients take such strings as protocol
	// messages ("primus::server::close" stops their reconnecting), so they
	// are never relayed as data.
	ErrReservedData = errors.New(`primus: data is a string starting with "primus::", which clients take as a protocol message`)
	// ErrRateLimited is wrapped by *RateLimitError.
	ErrRateLimited = errors.New("primus: message rate limit exceeded")
	// ErrBrokerClosed is returned by a Broker used after Close.
	ErrBrokerClosed = errors.New("primus: broker closed")
)

// RateLimitError is passed to a spark's OnError handler for a message that
// arrived faster than Config.MessageRate allows. The message is dropped
// (it never reaches OnData); Data lets the application answer it.
type RateLimitError struct {
	Data Data
}

func (e *RateLimitError) Error() string { return ErrRateLimited.Error() }
func (e *RateLimitError) Unwrap() error { return ErrRateLimited }

func invalidRoom(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalidRoom}, args...)...)
}

// ParseError reports an incoming message that was not valid JSON; the
// message is dropped and the connection stays open, as in Primus.
type ParseError struct {
	Data []byte
	Err  error
}

func (e *ParseError) Error() string { return "primus: " + e.Err.Error() }
func (e *ParseError) Unwrap() error { return e.Err }

// AuthError rejects an upgrade from Config.Authorize with a status other
// than 401 or with a WWW-Authenticate challenge.
type AuthError struct {
	Status       int    // default 401
	Message      string // sent as {"error": Message}
	Authenticate string // optional WWW-Authenticate header
}

func (e *AuthError) Error() string { return e.Message }
