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
	// MaxQueueBytes bounds each spark's backlog (default: twice MaxLength,
	// at least 4 MiB): the bytes waiting to be written to it besides its
	// largest waiting message. A spark whose backlog would grow past it is
	// closed with ReasonSlowConsumer. One message larger than the bound is
	// always accepted, and with the default a burst of up to three
	// messages of MaxLength is too, so a client that keeps reading is not
	// ended by a few large messages. (Frames written to a room are shared
	// by its members: a large backlog of room writes costs each member
	// little memory of its own.)
	MaxQueueBytes int
	// WriteTimeout is how long a client may keep its socket full (not
	// reading) while frames wait to be written; then the spark is closed
	// with ReasonWriteError (default 10s). MaxQueueBytes may end it sooner.
	WriteTimeout time.Duration
	// CloseTimeout bounds the closing handshake (default 3s).
	CloseTimeout time.Duration
	// PublishTimeout bounds Broker.Publish for one room write (default 5s).
	PublishTimeout time.Duration

	// MaxRoomsPerSpark bounds the rooms one spark may be in (default 1000;
	// negative: no bound). A Join over it fails with ErrTooManyRooms.
	MaxRoomsPerSpark int
	// MaxRoomNameLength bounds a room name in bytes (default 256; negative:
	// no bound). Longer names, empty names and names that are not valid
	// UTF-8 are refused with ErrInvalidRoom.
	MaxRoomNameLength int
	// Wildcards makes a room name that holds '*' a pattern, as primus-rooms
	// does by default: a write to room r also reaches the members of every
	// joined pattern that matches r (each spark once, Except honoured, on
	// every node). '*' matches any run of characters; every other
	// character is literal (unlike primus-rooms' unescaped regular
	// expressions). Joining a pattern is a join like any other (limits,
	// grants). The broker must be a PatternBroker.
	Wildcards bool
	// MaxPatterns bounds the distinct pattern rooms with local members
	// (default 1000; negative: no bound): every write is matched against
	// each of them. A Join that would add one more fails with
	// ErrTooManyRooms.
	MaxPatterns int
	// MaxConnections bounds the open sparks of this server (0: no bound);
	// upgrades over it are answered 503.
	MaxConnections int
	// MaxConnectionsPerIP bounds the open sparks per client address as
	// Spark.RemoteAddr sees it (0: no bound); upgrades over it are answered 429.
	MaxConnectionsPerIP int
	// MessageRate bounds the messages a spark may send per second, with
	// bursts of MessageBurst (default: MessageRate, at least 1); 0 means no
	// bound. A message over the rate is dropped and reported to the spark's
	// OnError handler as a *RateLimitError; a spark whose refused messages
	// exceed the same rate and burst too (it keeps sending at more than
	// twice the rate) is ended with ReasonRateLimited.
	MessageRate  float64
	MessageBurst int

	// Broker carries room writes to and from other nodes. Nil means a
	// private in-memory broker: a single node. The server starts the broker
	// and closes it on Shutdown.
	Broker Broker
	// NodeID identifies this server in broker messages (default: random).
	NodeID string
	// NodeTTL is how long after its last heartbeat another node still
	// counts as live for the cluster calls (default 5s); nodes send one
	// every NodeTTL/4. See Server.Nodes.
	NodeTTL time.Duration
	// ClusterTimeout bounds a cluster call whose context has no deadline
	// (default 5s).
	ClusterTimeout time.Duration

	// History, when set, says which rooms keep history and how much: the
	// rooms for which it returns a non-zero Size keep their last Size
	// writes for TTL, every write to them gets the room's next offset and
	// its epoch, and members receive them in offset order on every node,
	// a node that missed some (a broker reconnection, a gap in offsets)
	// reading them back from the history. Sparks can then join with
	// positioned delivery and recover what they missed while away
	// (Spark.JoinRecover). It is called for every room of every write
	// (keep it cheap) and must give the same answer on every node. The
	// broker must be a HistoryBroker. Nil: no history (docs/history.md).
	History func(room string) HistoryOptions
	// MaxHistoryRoomsPerWrite bounds the history rooms one write may name
	// (default 16; negative: no bound): each gets a stored copy of the
	// write, so a write to many history rooms costs the broker that many
	// copies. A write over it fails with ErrTooManyHistoryRooms.
	MaxHistoryRoomsPerWrite int
	// HistoryReadRate bounds the history reads (JoinRecover with a since
	// position) of one spark per second, with bursts of HistoryReadBurst
	// (defaults 10 and 100; a negative rate: no bound). A read over it
	// fails with ErrHistoryRateLimited.
	HistoryReadRate  float64
	HistoryReadBurst int

	// Authorize, when set, runs before every upgrade; a non-nil error
	// rejects it with 401 (or the *AuthError's status) and a JSON body
	// {"error": "<message>"}.
	Authorize func(r *http.Request) error
	// Authenticate, when set, runs before every upgrade (after CheckOrigin
	// and Authorize) and says who the client is: Spark.UserID and
	// Spark.Identity return what it found. An error rejects the upgrade
	// like Authorize's. A spark whose Identity expires is ended with
	// ReasonTokenExpired. Package auth provides one for JWTs.
	Authenticate func(r *http.Request) (*Identity, error)
	// CheckOrigin, when set, rejects upgrades for which it returns false
	// with 403. Nil accepts every origin, like Primus; AllowOrigins builds
	// a check that closes cross-site WebSocket hijacking.
	CheckOrigin func(r *http.Request) bool
	// TrustForwardedFor makes RemoteAddr the last X-Forwarded-For address:
	// the client as the proxy in front of the server saw it (proxies append
	// to the header; the entries before are whatever the client sent, so
	// unlike Primus, which takes the first, a client cannot choose its
	// address). Behind several proxies, have the outermost one overwrite
	// the header. Set it only behind a proxy.
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
		c.MaxQueueBytes = int(max(4<<20, 2*c.MaxLength))
	}
	if c.MaxRoomsPerSpark == 0 {
		c.MaxRoomsPerSpark = 1000
	}
	if c.MaxPatterns == 0 {
		c.MaxPatterns = 1000
	}
	if c.MaxRoomNameLength == 0 {
		c.MaxRoomNameLength = 256
	}
	if c.MessageRate > 0 && c.MessageBurst <= 0 {
		c.MessageBurst = max(1, int(c.MessageRate))
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
	if c.NodeTTL <= 0 {
		c.NodeTTL = 5 * time.Second
	}
	if c.ClusterTimeout <= 0 {
		c.ClusterTimeout = 5 * time.Second
	}
	if c.MaxHistoryRoomsPerWrite == 0 {
		c.MaxHistoryRoomsPerWrite = 16
	}
	if c.HistoryReadRate == 0 {
		c.HistoryReadRate = 10
	}
	if c.HistoryReadBurst <= 0 {
		c.HistoryReadBurst = 100
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
