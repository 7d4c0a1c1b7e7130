package primus

import (
	"log/slog"
	"net/http"
	"time"

	"github.com/primusgo/primus/internal/clientjs"
)

// Config configures a Server. The zero value is a working configuration
// with Primus's defaults.
type Config struct {
	// Pathname is where the server lives (default "/primus"). Every request
	// whose path starts with it belongs to Primus, as in the original.
	Pathname string
	// PingInterval is the heartbeat period (default 30s). The server sends
	// "primus::ping::<ms>" on every tick and closes sparks that answered
	// neither the previous ping nor sent a WebSocket ping since. Negative
	// disables heartbeats.
	PingInterval time.Duration
	// MaxLength bounds an incoming message in bytes (default 10 MiB); a
	// larger one closes the connection with 1009.
	MaxLength int64
	// MaxQueueBytes bounds each spark's outbound queue (default 4 MiB). A
	// spark whose queue would grow past it is closed with ReasonSlowConsumer.
	MaxQueueBytes int
	// WriteTimeout is how long a client may keep its socket full (not
	// reading) while frames wait to be written; then the spark is closed
	// with ReasonWriteError (default 10s). MaxQueueBytes may end it sooner.
	WriteTimeout time.Duration
	// CloseTimeout bounds the closing handshake (default 3s).
	CloseTimeout time.Duration
	// PublishTimeout bounds Broker.Publish for one room write (default 5s).
	PublishTimeout time.Duration

	// Broker carries room writes to and from other nodes. Nil means a
	// private in-memory broker: a single node. The server starts the broker
	// and closes it on Shutdown.
	Broker Broker
	// NodeID identifies this server in broker messages (default: random).
	NodeID string

	// Authorize, when set, runs before every upgrade; a non-nil error
	// rejects it with 401 (or the *AuthError's status) and a JSON body
	// {"error": "<message>"}.
	Authorize func(r *http.Request) error
	// CheckOrigin, when set, rejects upgrades for which it returns false
	// with 403. Nil accepts every origin, like Primus.
	CheckOrigin func(r *http.Request) bool
	// TrustForwardedFor makes RemoteAddr use the first X-Forwarded-For
	// address, for servers behind a proxy (Primus always does this).
	TrustForwardedFor bool
	// IDGenerator makes spark ids (default: 21 random characters of A-Za-z0-9_-).
	IDGenerator func() string
	// ClientLibrary serves <Pathname>/primus.js. Nil serves the built-in
	// browser client (the Primus client API, with Pathname and the ping
	// timeout for PingInterval compiled in, ETag-cached), as Primus does;
	// set http.NotFoundHandler() to serve none, or a handler of your own.
	ClientLibrary http.Handler

	// OnConnection runs for every new spark before it reads its first
	// message: register the spark's handlers here.
	OnConnection func(*Spark)
	// OnDisconnection runs after a spark closed and left its rooms.
	OnDisconnection func(*Spark)
	// OnJoin and OnLeave run after a spark joined or left a room (also for
	// each room left by LeaveAll and on disconnection).
	OnJoin  func(s *Spark, room string)
	OnLeave func(s *Spark, room string)

	// Logger receives debug and error logs; nil is silent.
	Logger *slog.Logger
}

func (c Config) withDefaults() Config {
	if c.Pathname == "" {
		c.Pathname = "/primus"
	}
	if c.Pathname[0] != '/' {
		c.Pathname = "/" + c.Pathname
	}
	if c.PingInterval == 0 {
		c.PingInterval = 30 * time.Second
	}
	if c.MaxLength <= 0 {
		c.MaxLength = 10 << 20
	}
	if c.MaxQueueBytes <= 0 {
		c.MaxQueueBytes = 4 << 20
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = 10 * time.Second
	}
	if c.CloseTimeout <= 0 {
		c.CloseTimeout = 3 * time.Second
	}
	if c.PublishTimeout <= 0 {
		c.PublishTimeout = 5 * time.Second
	}
	if c.IDGenerator == nil {
		c.IDGenerator = newID
	}
	if c.NodeID == "" {
		c.NodeID = newID()
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.ClientLibrary == nil {
		lib := clientjs.Options{Pathname: c.Pathname, Version: ProtocolVersion}
		if c.PingInterval > 0 {
			lib.PingInterval = c.PingInterval
		}
		c.ClientLibrary = clientjs.Handler(lib)
	}
	return c
}
