package redisbroker

import (
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"strings"
	"time"

	"github.com/redis/rueidis"
)

// Mode selects the wire format on Redis.
type Mode int

const (
	// Native (the default) uses one Redis channel per room and a versioned
	// envelope that carries multi-room writes and except lists across
	// nodes with exactly-once delivery per spark.
	Native Mode = iota
	// Compat speaks primus-redis-rooms 0.3 byte for byte, so Go nodes and
	// Node.js primus-redis-rooms nodes can share one Redis. See the package
	// documentation for what it cannot carry.
	Compat
)

// String returns "native" or "compat".
func (m Mode) String() string {
	switch m {
	case Native:
		return "native"
	case Compat:
		return "compat"
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// ParseMode parses "native" or "compat" (case-insensitive; "" is native).
func ParseMode(s string) (Mode, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "native":
		return Native, nil
	case "compat", "primus-redis-rooms":
		return Compat, nil
	}
	return 0, fmt.Errorf("redisbroker: unknown mode %q (want native or compat)", s)
}

// Defaults for zero Config fields.
const (
	DefaultChannel          = "primus"
	DefaultDialTimeout      = 2 * time.Second
	DefaultCommandTimeout   = 2 * time.Second
	DefaultProbeInterval    = 5 * time.Second
	DefaultUnsubscribeDelay = 5 * time.Second
	DefaultQueueSize        = 1024
	DefaultMaxPayload       = 16 << 20
	DefaultMaxBackoff       = 1 * time.Second
	DefaultSentinelRefresh  = 2 * time.Second
	DefaultHistoryMetaTTL   = 24 * time.Hour
	// DefaultClusterPartitions is the default Config.ClusterPartitions.
	DefaultClusterPartitions = 32
	// subscribeBatch is the number of channels per SUBSCRIBE/UNSUBSCRIBE command.
	subscribeBatch = 512
)

// Config configures a Broker. One of URL or Addr, SentinelAddrs, or
// ClusterAddrs is needed; every other field has a working default.
type Config struct {
	// URL is a redis:// or rediss:// URL (user, password, host:port, /db,
	// and the query parameters rueidis.ParseURL understands). Fields set
	// explicitly below override what the URL says.
	URL string
	// Addr is host:port of a single Redis (used when URL is empty).
	Addr string
	// Username and Password authenticate with Redis (ACL user or requirepass).
	Username, Password string
	// DB is the database selected on every connection. Pub/Sub ignores
	// databases: brokers on different DBs of one Redis still hear each
	// other; use Channel to separate clusters.
	DB int
	// TLS enables TLS to Redis (and to the sentinels if SentinelTLS is nil).
	TLS *tls.Config

	// SentinelAddrs are host:port addresses of Redis Sentinels; when set,
	// the master is discovered through them under SentinelMaster and
	// followed across failovers (URL/Addr are then ignored).
	SentinelAddrs []string
	// SentinelMaster is the monitored master's name (default "mymaster").
	SentinelMaster string
	// SentinelUsername and SentinelPassword authenticate with the sentinels.
	SentinelUsername, SentinelPassword string
	// SentinelTLS is the TLS configuration for the sentinels (default TLS).
	SentinelTLS *tls.Config
	// SentinelRefresh is how often the master address is re-checked with
	// the sentinels besides reacting to +switch-master (default 2s).
	SentinelRefresh time.Duration

	// ClusterAddrs are host:port seed addresses of a Redis Cluster (Redis
	// >= 7.0; a few are enough, the others are discovered). When set, room
	// channels are sharded channels (SSUBSCRIBE/SPUBLISH) spread over the
	// cluster's shards, and the broker follows failovers and slot
	// migrations by itself (see the package documentation). Native mode
	// only; URL, Addr and SentinelAddrs must then be empty, DB 0.
	ClusterAddrs []string
	// ClusterPartitions is the number of partitions the rooms are spread
	// over in cluster mode (default 32, at most 16384): each partition's
	// channels share one hash slot, so a node subscribes them in batches
	// and a slot migration moves a whole partition. More partitions spread
	// rooms more evenly over more shards; every node of a deployment, and
	// every external publisher, must use the same value.
	ClusterPartitions int

	// Mode is Native (zero value) or Compat.
	Mode Mode
	// Channel is the channel prefix (default "primus"). Native mode uses
	// channels "<Channel>:room:<room>" and "<Channel>:node:<NodeID>";
	// compat mode publishes on "<Channel>.<NodeID>" and subscribes to the
	// pattern "<Channel>.*" exactly like primus-redis-rooms.
	Channel string
	// NodeID identifies this node (default: a random UUID v4, which is
	// what primus-redis-rooms uses for its channel suffix).
	NodeID string

	// DialTimeout bounds connecting to Redis or a sentinel (default 2s).
	DialTimeout time.Duration
	// CommandTimeout bounds every Redis command, including publishes whose
	// caller context has a later or no deadline (default 2s).
	CommandTimeout time.Duration
	// ProbeInterval is how long the Pub/Sub connection may stay silent
	// before the broker proves it still delivers by publishing a probe to
	// itself (default 5s; negative disables probing).
	ProbeInterval time.Duration
	// ProbeTimeout is how long a probe may take to come back before the
	// Pub/Sub connection is considered dead and rebuilt (default
	// CommandTimeout).
	ProbeTimeout time.Duration
	// UnsubscribeDelay is how long a room stays subscribed after its last
	// local member left, so that churn does not storm Redis (default 5s;
	// negative unsubscribes at once).
	UnsubscribeDelay time.Duration
	// MaxBackoff caps the reconnect backoff (default 1s); attempts start at
	// 50ms, double, and are jittered.
	MaxBackoff time.Duration

	// Workers is the number of receive workers (default GOMAXPROCS,
	// at least 2). Messages are assigned to workers by channel, which keeps
	// each room's messages in order; a multi-room-channel message stops
	// every worker until it is delivered, which keeps it in order too.
	Workers int
	// QueueSize is the capacity of each worker's queue (default 1024).
	// Messages arriving while a queue is full are dropped and counted; the
	// Redis connection is never blocked.
	QueueSize int
	// MaxPayload is the largest Redis message published or accepted
	// (default 16 MiB). Larger incoming payloads are dropped and counted;
	// larger publishes fail with ErrTooLarge, and so do compat writes whose
	// per-room payloads add up to more.
	MaxPayload int

	// HistoryMetaTTL is how long a history room's offset and epoch (its
	// meta hash) outlive its last write or read, at least the room's
	// history TTL (default 24h): a client back after the stream expired
	// is told that writes were lost rather than meeting a new epoch.
	HistoryMetaTTL time.Duration

	// CompatRejectExcept makes Publish in compat mode fail with
	// ErrExceptUnsupported for messages with Except ids instead of
	// publishing them without the except list (see the package doc).
	CompatRejectExcept bool

	// Logger receives connection events (default: discard).
	Logger *slog.Logger
}

// withDefaults validates c and fills in defaults.
func (c Config) withDefaults() (Config, error) {
	if c.Mode != Native && c.Mode != Compat {
		return c, fmt.Errorf("redisbroker: invalid mode %d", int(c.Mode))
	}
	if len(c.ClusterAddrs) > 0 {
		if err := c.validateCluster(); err != nil {
			return c, err
		}
	} else if c.ClusterPartitions != 0 {
		return c, errors.New("redisbroker: ClusterPartitions without ClusterAddrs")
	}
	if len(c.SentinelAddrs) == 0 && len(c.ClusterAddrs) == 0 && c.URL == "" && c.Addr == "" {
		return c, errors.New("redisbroker: one of URL, Addr, SentinelAddrs or ClusterAddrs is required")
	}
	if c.URL != "" && c.Addr != "" {
		return c, errors.New("redisbroker: set URL or Addr, not both")
	}
	if c.Addr != "" {
		if _, _, err := net.SplitHostPort(c.Addr); err != nil {
			return c, fmt.Errorf("redisbroker: Addr %q: %w", c.Addr, err)
		}
	}
	for _, a := range c.SentinelAddrs {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return c, fmt.Errorf("redisbroker: sentinel address %q: %w", a, err)
		}
	}
	if c.DB < 0 {
		return c, fmt.Errorf("redisbroker: invalid DB %d", c.DB)
	}
	if c.Channel == "" {
		c.Channel = DefaultChannel
	}
	if c.NodeID == "" {
		c.NodeID = newUUID()
	}
	if c.SentinelMaster == "" {
		c.SentinelMaster = "mymaster"
	}
	if c.SentinelRefresh <= 0 {
		c.SentinelRefresh = DefaultSentinelRefresh
	}
	if c.SentinelTLS == nil {
		c.SentinelTLS = c.TLS
	}
	if c.DialTimeout <= 0 {
		c.DialTimeout = DefaultDialTimeout
	}
	if c.CommandTimeout <= 0 {
		c.CommandTimeout = DefaultCommandTimeout
	}
	if c.ProbeInterval == 0 {
		c.ProbeInterval = DefaultProbeInterval
	}
	if c.ProbeTimeout <= 0 {
		c.ProbeTimeout = c.CommandTimeout
	}
	if c.UnsubscribeDelay == 0 {
		c.UnsubscribeDelay = DefaultUnsubscribeDelay
	} else if c.UnsubscribeDelay < 0 {
		c.UnsubscribeDelay = 0
	}
	if c.MaxBackoff <= 0 {
		c.MaxBackoff = DefaultMaxBackoff
	}
	if c.Workers <= 0 {
		c.Workers = max(2, runtime.GOMAXPROCS(0))
	}
	if c.QueueSize <= 0 {
		c.QueueSize = DefaultQueueSize
	}
	if c.MaxPayload <= 0 {
		c.MaxPayload = DefaultMaxPayload
	}
	if c.HistoryMetaTTL <= 0 {
		c.HistoryMetaTTL = DefaultHistoryMetaTTL
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c, nil
}

// validateCluster checks a cluster-mode configuration and sets its
// defaults.
func (c *Config) validateCluster() error {
	switch {
	case c.Mode == Compat:
		return errors.New("redisbroker: compat mode cannot use a Redis Cluster: primus-redis-rooms has no cluster support (its Redis client talks to one Redis, and its pattern subscription cannot be sharded); use native mode with ClusterAddrs, or compat mode with a single Redis or Sentinel")
	case c.URL != "" || c.Addr != "" || len(c.SentinelAddrs) > 0:
		return errors.New("redisbroker: set one of URL/Addr, SentinelAddrs or ClusterAddrs, not several")
	case c.DB != 0:
		return fmt.Errorf("redisbroker: DB %d: a Redis Cluster only has database 0", c.DB)
	case strings.ContainsAny(c.Channel, "{}"):
		return fmt.Errorf("redisbroker: Channel %q: cluster mode needs a channel prefix without { or } (the room channels' hash tags follow it)", c.Channel)
	case c.ClusterPartitions < 0 || c.ClusterPartitions > numSlots:
		return fmt.Errorf("redisbroker: ClusterPartitions %d: want 1..%d", c.ClusterPartitions, numSlots)
	}
	for _, a := range c.ClusterAddrs {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return fmt.Errorf("redisbroker: cluster address %q: %w", a, err)
		}
	}
	if c.ClusterPartitions == 0 {
		c.ClusterPartitions = DefaultClusterPartitions
	}
	return nil
}

// clientOption builds the rueidis options. Retries are disabled: a PUBLISH
// retried after a lost reply could be delivered twice, and the broker does
// its own reconnecting.
func (c Config) clientOption() (rueidis.ClientOption, error) {
	var opt rueidis.ClientOption
	if len(c.ClusterAddrs) > 0 {
		opt.InitAddress = append([]string(nil), c.ClusterAddrs...)
	} else if len(c.SentinelAddrs) > 0 {
		opt.InitAddress = append([]string(nil), c.SentinelAddrs...)
		opt.Sentinel = rueidis.SentinelOption{
			MasterSet:               c.SentinelMaster,
			Username:                c.SentinelUsername,
			Password:                c.SentinelPassword,
			TLSConfig:               c.SentinelTLS,
			Dialer:                  net.Dialer{Timeout: c.DialTimeout},
			TopologyRefreshInterval: c.SentinelRefresh,
		}
	} else if c.URL != "" {
		var err error
		if opt, err = rueidis.ParseURL(c.URL); err != nil {
			return opt, fmt.Errorf("redisbroker: URL: %w", err)
		}
		if opt.Sentinel.MasterSet != "" {
			return opt, errors.New("redisbroker: use SentinelAddrs/SentinelMaster for Sentinel, not master_set in the URL")
		}
	} else {
		opt.InitAddress = []string{c.Addr}
	}
	if c.Username != "" {
		opt.Username = c.Username
	}
	if c.Password != "" {
		opt.Password = c.Password
	}
	if c.DB != 0 {
		opt.SelectDB = c.DB
	}
	if c.TLS != nil {
		opt.TLSConfig = c.TLS
	}
	opt.Dialer.Timeout = c.DialTimeout
	opt.ConnWriteTimeout = max(2*c.CommandTimeout, 2*time.Second)
	opt.DisableCache = true
	opt.DisableRetry = true
	opt.ForceSingleClient = len(c.SentinelAddrs) == 0 && len(c.ClusterAddrs) == 0
	opt.ClientName = clientName(c.NodeID)
	return opt, nil
}

// clientName is the CLIENT SETNAME value: "primus:<node id>" with anything
// but printable ASCII replaced (SETNAME rejects spaces).
func clientName(nodeID string) string {
	b := []byte("primus:" + nodeID)
	for i, c := range b {
		if c <= ' ' || c > '~' {
			b[i] = '_'
		}
	}
	return string(b)
}

// newUUID returns a random RFC 4122 version 4 UUID.
func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	var s [36]byte
	hex.Encode(s[0:8], b[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], b[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], b[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], b[8:10])
	s[23] = '-'
	hex.Encode(s[24:], b[10:])
	return string(s[:])
}
