package client

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"strings"
	"time"
)

// Defaults. They mirror the original primus.js client where it has an
// equivalent.
const (
	// DefaultPathname is the Primus server's default pathname.
	DefaultPathname = "/primus"
	// DefaultPingTimeout is 1.5 x the server's default pingInterval (30 s),
	// the value the original server compiles into its client library.
	DefaultPingTimeout = 45 * time.Second
	// DefaultConnectTimeout bounds the first connection (the original
	// client's `timeout` option).
	DefaultConnectTimeout = 10 * time.Second
	// DefaultQueueSize bounds the outgoing queue, in messages. The original
	// client's queue is unbounded; a Go service should fail fast instead of
	// growing without limit while a server is away.
	DefaultQueueSize = 1024
	// DefaultMessageBuffer is the capacity of the Messages channel.
	DefaultMessageBuffer = 64
	// DefaultMaxRooms bounds the rooms Join keeps: the server's default
	// maxRoomsPerSpark.
	DefaultMaxRooms = 1000
	// DefaultReadLimit is the largest message accepted from the server, in
	// bytes: the server's own default maxLength (10 MiB).
	DefaultReadLimit = 10 << 20
)

// ReconnectPolicy is the backoff used after a connection is lost. Zero fields
// take the defaults of the original client's `recovery` module.
type ReconnectPolicy struct {
	// Min is the delay before the first attempt and the base of the
	// exponential backoff. Default 500ms.
	Min time.Duration
	// Max caps every delay after the first. Zero means no cap (the
	// original's Infinity).
	Max time.Duration
	// Factor is the growth of the delay per attempt. Default 2; values
	// below 1 are rejected.
	Factor float64
	// Retries is how many attempts in a row may fail before the client
	// ends with ErrReconnectFailed. Default 10; negative means unlimited.
	Retries int
	// Timeout bounds each reconnect attempt (dial and handshake).
	// Default 30s, as in the original.
	Timeout time.Duration
}

// Default reconnect policy values (see ReconnectPolicy).
const (
	DefaultReconnectMin     = 500 * time.Millisecond
	DefaultReconnectFactor  = 2
	DefaultReconnectRetries = 10
	DefaultReconnectTimeout = 30 * time.Second
)

func (p ReconnectPolicy) withDefaults() ReconnectPolicy {
	if p.Min <= 0 {
		p.Min = DefaultReconnectMin
	}
	if p.Factor == 0 {
		p.Factor = DefaultReconnectFactor
	}
	if p.Retries == 0 {
		p.Retries = DefaultReconnectRetries
	}
	if p.Timeout <= 0 {
		p.Timeout = DefaultReconnectTimeout
	}
	return p
}

// delay returns the wait before reconnect attempt n (1-based), with r a
// random number in [0, 1). It is the formula of the original client:
// attempt 1 waits Min, attempt n >= 2 waits
// min(round((r+1) * Min * Factor^(n-1)), Max): exponential growth with up to
// 100% jitter so that clients dropped together do not return together.
// Like the original, it rounds to whole milliseconds (unless Min is below
// one).
func (p ReconnectPolicy) delay(n int, r float64) time.Duration {
	if n <= 1 {
		return p.Min
	}
	unit := float64(time.Millisecond)
	if p.Min < time.Millisecond {
		unit = 1
	}
	d := unit * math.Round((r+1)*float64(p.Min)/unit*math.Pow(p.Factor, float64(n-1)))
	if p.Max > 0 && d > float64(p.Max) {
		return p.Max
	}
	if d >= math.MaxInt64 || math.IsNaN(d) {
		return time.Duration(math.MaxInt64)
	}
	return time.Duration(d)
}

// Options configure a Client (see Dial). The zero value is a working
// configuration: every zero field takes the default stated on it, which
// mirrors the original primus.js client where it has an equivalent.
type Options struct {
	// Pathname is the server's Primus pathname (default "/primus"; a
	// missing leading '/' is added), used when the URL given to Dial has
	// no path. Behind a reverse proxy that mounts the server elsewhere,
	// give the full path, e.g. "/chat/primus".
	Pathname string
	// Header is added to every handshake request (first connection and
	// reconnects), e.g. Authorization for a server with an authorize hook.
	Header http.Header
	// HTTPClient makes the handshakes (TLS configuration, proxy, dialer);
	// its Timeout, if any, bounds each one. Default http.DefaultClient.
	HTTPClient *http.Client

	// PingTimeout is how long the client waits for the server's heartbeat
	// ("primus::ping::") after opening and after each ping before it
	// presumes the connection dead and reconnects (ErrPingTimeout). Use
	// 1.5 x the server's pingInterval; the default, 45s, matches the
	// server default of 30s. Negative disables the check, which leaves
	// half-open TCP connections undetected.
	PingTimeout time.Duration
	// ConnectTimeout bounds the first connection, made by Dial (default
	// 10s, the original's `timeout`); negative: only Dial's context bounds
	// it. Reconnect attempts are bounded by Reconnect.Timeout instead.
	ConnectTimeout time.Duration

	// Reconnect is the backoff after a connection is lost; zero fields
	// take the original client's defaults (see ReconnectPolicy).
	Reconnect ReconnectPolicy
	// DisableReconnect makes the client end as soon as its connection is
	// lost, with ErrConnectionLost wrapping the cause.
	DisableReconnect bool

	// QueueSize bounds the outgoing queue, in messages (default 1024):
	// Write returns ErrQueueFull when that many messages wait to be handed
	// to the connection. Negative is an error.
	QueueSize int
	// MessageBuffer is the capacity of the Messages channel (default 64);
	// negative makes it unbuffered. Unused with Handler.
	MessageBuffer int
	// ReadLimit is the largest message accepted from the server, in bytes
	// (default 10 MiB, the server's own default maxLength). A larger one
	// fails the connection (close 1009), which then reconnects. Negative
	// disables the limit.
	ReadLimit int64

	// Handler, when set, is called for every received message, in order,
	// on the connection's reader goroutine, instead of sending it to the
	// Messages channel. While it runs nothing else is read from the
	// connection, heartbeats included: a handler that blocks longer than
	// the ping timeout gets the connection dropped, and it must not wait
	// for anything that arrives on the connection (such as ID's answer).
	// It must not call Close (Close waits for its goroutine); call
	// go c.Close() instead.
	Handler func(Message)

	// OnOpen runs every time a connection opens: after the first Dial and
	// after every reconnect. A reconnect is a brand-new session on the
	// server (new spark id, no room membership): the client joins the
	// rooms of Join again by itself (those joins go out first); this is
	// where an application restores any other session state.
	//
	// It runs on the client's connection-management goroutine. Messages
	// written while it runs (by it or, concurrently, by any other
	// goroutine: the client cannot tell them apart) are sent at once, in
	// order; the messages queued while the client was disconnected are
	// held until it returns, so a re-join goes out before them. It may
	// call Write and ID and may wait for replies on Messages; it must not
	// call Close.
	OnOpen func(*Client)
	// OnRecover runs after each automatic rejoin of a room joined with
	// Recover (after a reconnect), when the server acknowledged it:
	// recovered is true when the server replayed every message of the
	// room the client missed (they were delivered before the call, in
	// order, each once), false when it could not (the room's history was
	// lost, an epoch change, or no longer reaches back that far): the
	// application must then reload the room's state from its source of
	// truth; the messages delivered after the call follow the new
	// position. It also runs with false when a room's epoch changes in
	// the middle of the stream. The first Join does not call it.
	//
	// It runs on the connection's reader goroutine, after every message
	// received before the acknowledgement was delivered (handed to
	// Handler or the Messages channel) and before any received after it,
	// with the rules of Handler: it must not block for long, call Join or
	// Leave (their acknowledgement is read by this goroutine) or Close.
	OnRecover func(room string, recovered bool)
	// MaxRooms bounds the rooms Join keeps (default 1000, the server's
	// default maxRoomsPerSpark); Join returns ErrTooManyRooms beyond it.
	// Negative is an error.
	MaxRooms int

	// OnClose runs whenever a connection closes, with the reason
	// (ErrPingTimeout, a read error, ErrServerEnded, ErrClosed), before the
	// client decides whether to reconnect, on the connection-management
	// goroutine; it must not call Close.
	OnClose func(err error)
	// OnReconnect runs when a reconnect attempt is scheduled (the
	// original's "reconnect scheduled"), on the connection-management
	// goroutine; it must not call Close.
	OnReconnect func(ReconnectEvent)
	// OnError receives problems that do not end the connection, such as a
	// frame from the server that is not valid JSON (ErrInvalidJSON). It
	// runs on the reader goroutine; it must not block or call Close.
	OnError func(error)

	// Logger receives connection lifecycle events (debug level) and
	// dropped frames (warn level). Nil discards everything.
	Logger *slog.Logger

	onPing func() // test seam: a ping arrived
}

// ReconnectEvent describes a scheduled reconnect attempt.
type ReconnectEvent struct {
	// Attempt is 1 for the first attempt after a connection was lost.
	Attempt int
	// Delay is the wait before this attempt.
	Delay time.Duration
	// Err is why the previous attempt failed, or why the connection was
	// lost for Attempt 1.
	Err error
}

// withDefaults fills in the zero fields and checks the others.
func (o Options) withDefaults() (Options, error) {
	var errs []error
	if o.Pathname == "" {
		o.Pathname = DefaultPathname
	} else if !strings.HasPrefix(o.Pathname, "/") {
		o.Pathname = "/" + o.Pathname
	}
	o.Header = o.Header.Clone()
	if o.PingTimeout == 0 {
		o.PingTimeout = DefaultPingTimeout
	}
	if o.ConnectTimeout == 0 {
		o.ConnectTimeout = DefaultConnectTimeout
	}
	if o.Reconnect.Factor != 0 && o.Reconnect.Factor < 1 {
		errs = append(errs, fmt.Errorf("reconnect factor %v is below 1", o.Reconnect.Factor))
	}
	o.Reconnect = o.Reconnect.withDefaults()
	switch {
	case o.QueueSize < 0:
		errs = append(errs, fmt.Errorf("queue size %d is negative", o.QueueSize))
	case o.QueueSize == 0:
		o.QueueSize = DefaultQueueSize
	}
	switch {
	case o.MaxRooms < 0:
		errs = append(errs, fmt.Errorf("max rooms %d is negative", o.MaxRooms))
	case o.MaxRooms == 0:
		o.MaxRooms = DefaultMaxRooms
	}
	switch {
	case o.MessageBuffer < 0:
		o.MessageBuffer = 0
	case o.MessageBuffer == 0:
		o.MessageBuffer = DefaultMessageBuffer
	}
	switch {
	case o.ReadLimit < 0:
		o.ReadLimit = -1 // websocket's "no limit"
	case o.ReadLimit == 0:
		o.ReadLimit = DefaultReadLimit
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o, errors.Join(errs...)
}
