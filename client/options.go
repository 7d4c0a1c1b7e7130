package client

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
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

// Option configures Dial.
type Option func(*options)

type options struct {
	pathname       string
	header         http.Header
	httpClient     *http.Client
	pingTimeout    time.Duration
	connectTimeout time.Duration
	reconnect      bool
	policy         ReconnectPolicy
	queueSize      int
	messageBuffer  int
	readLimit      int64
	handler        func(Message)
	onOpen         func(*Client)
	onClose        func(error)
	onReconnect    func(ReconnectEvent)
	onError        func(error)
	logger         *slog.Logger
	random         func() float64 // jitter source; tests replace it
	onPing         func()         // test seam: a ping arrived
}

func defaultOptions() options {
	return options{
		pathname:       DefaultPathname,
		pingTimeout:    DefaultPingTimeout,
		connectTimeout: DefaultConnectTimeout,
		reconnect:      true,
		policy:         ReconnectPolicy{}.withDefaults(),
		queueSize:      DefaultQueueSize,
		messageBuffer:  DefaultMessageBuffer,
		readLimit:      DefaultReadLimit,
		logger:         slog.New(slog.DiscardHandler),
		random:         rand.Float64,
	}
}

func (o *options) validate() error {
	var errs []error
	if o.policy.Factor < 1 {
		errs = append(errs, fmt.Errorf("reconnect factor %v is below 1", o.policy.Factor))
	}
	if o.queueSize < 1 {
		errs = append(errs, fmt.Errorf("queue size %d is below 1", o.queueSize))
	}
	if o.messageBuffer < 0 {
		errs = append(errs, fmt.Errorf("message buffer %d is negative", o.messageBuffer))
	}
	if o.pingTimeout < 0 || o.connectTimeout < 0 {
		errs = append(errs, errors.New("negative timeout"))
	}
	return errors.Join(errs...)
}

// WithPathname sets the server's Primus pathname (default "/primus"), used
// when the URL given to Dial has no path. Behind a reverse proxy that mounts
// the server elsewhere, pass the full path, e.g. "/chat/primus".
func WithPathname(p string) Option {
	return func(o *options) {
		if !strings.HasPrefix(p, "/") {
			p = "/" + p
		}
		o.pathname = p
	}
}

// WithHeader adds HTTP headers to every handshake request (first connection
// and reconnects), e.g. Authorization for a server with an authorize hook.
func WithHeader(h http.Header) Option {
	return func(o *options) { o.header = h.Clone() }
}

// WithHTTPClient sets the HTTP client used for the handshakes (TLS config,
// proxy, custom dialer). Its Timeout, if any, bounds each handshake.
func WithHTTPClient(hc *http.Client) Option {
	return func(o *options) { o.httpClient = hc }
}

// WithPingTimeout sets how long the client waits for the server's heartbeat
// ("primus::ping::") after opening and after each ping before it presumes
// the connection dead and reconnects. Use 1.5 x the server's pingInterval
// (the default, 45s, matches the server default of 30s). 0 disables the
// check, which leaves half-open TCP connections undetected.
func WithPingTimeout(d time.Duration) Option {
	return func(o *options) { o.pingTimeout = d }
}

// WithConnectTimeout bounds the first connection made by Dial (default 10s;
// 0 means only Dial's context bounds it). Reconnect attempts are bounded by
// ReconnectPolicy.Timeout instead.
func WithConnectTimeout(d time.Duration) Option {
	return func(o *options) { o.connectTimeout = d }
}

// WithReconnect sets the reconnect policy (and re-enables reconnecting after
// WithoutReconnect). Zero fields take their defaults.
func WithReconnect(p ReconnectPolicy) Option {
	return func(o *options) {
		o.reconnect = true
		o.policy = p.withDefaults()
	}
}

// WithoutReconnect makes the client end (with ErrConnectionLost wrapping the
// cause) as soon as its connection is lost.
func WithoutReconnect() Option {
	return func(o *options) { o.reconnect = false }
}

// WithQueueSize bounds the outgoing queue, in messages (default 1024). Write
// returns ErrQueueFull when the queue holds n messages not yet handed to the
// connection.
func WithQueueSize(n int) Option {
	return func(o *options) { o.queueSize = n }
}

// WithMessageBuffer sets the capacity of the Messages channel (default 64).
// Ignored with WithHandler.
func WithMessageBuffer(n int) Option {
	return func(o *options) { o.messageBuffer = n }
}

// WithReadLimit sets the largest message accepted from the server, in bytes
// (default 10 MiB). A larger message fails the connection (close 1009), which
// then reconnects. A negative n disables the limit.
func WithReadLimit(n int64) Option {
	return func(o *options) { o.readLimit = n }
}

// WithHandler makes the client call h for every received message, in order,
// on the connection's reader goroutine, instead of sending it to the Messages
// channel. While h runs, nothing else is read from the connection, including
// heartbeats: a handler that blocks longer than the ping timeout gets the
// connection dropped, and h must not wait for anything that arrives on the
// connection (such as ID's answer). h must not call Close (Close waits for
// the goroutine running h); call go c.Close() instead.
func WithHandler(h func(Message)) Option {
	return func(o *options) { o.handler = h }
}

// WithOnOpen registers f to run every time a connection opens: after the
// first Dial and after every reconnect. A reconnect is a brand-new session
// on the server (new spark id, no room membership), so f is where an
// application (re-)joins its rooms.
//
// f runs on the client's connection-management goroutine. Messages written
// while it runs (by f or, concurrently, by any other goroutine: the client
// cannot tell them apart) are sent at once, in order; the messages queued
// while the client was disconnected are held until f returns, so a re-join
// goes out before them. f may call Write and ID and may wait for replies on
// Messages; it must not call Close.
func WithOnOpen(f func(*Client)) Option {
	return func(o *options) { o.onOpen = f }
}

// WithOnClose registers f to run whenever a connection closes, with the
// reason (ErrPingTimeout, a read error, ErrServerEnded, ErrClosed). It runs
// before the client decides whether to reconnect, on the
// connection-management goroutine; it must not call Close.
func WithOnClose(f func(err error)) Option {
	return func(o *options) { o.onClose = f }
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

// WithOnReconnect registers f to run when a reconnect attempt is scheduled
// (the original's "reconnect scheduled"), on the connection-management
// goroutine; it must not call Close.
func WithOnReconnect(f func(ReconnectEvent)) Option {
	return func(o *options) { o.onReconnect = f }
}

// WithOnError registers f for problems that do not end the connection, such
// as a frame from the server that is not valid JSON (ErrInvalidJSON). It runs
// on the reader goroutine; it must not block or call Close.
func WithOnError(f func(error)) Option {
	return func(o *options) { o.onError = f }
}

// WithLogger sets the logger for connection lifecycle events (debug level)
// and dropped frames (warn level). The default discards everything.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) {
		if l != nil {
			o.logger = l
		}
	}
}
