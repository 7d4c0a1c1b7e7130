package serverapp

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"time"
)

// Flags is the standalone server's configuration, from its command line:
// every flag has an environment variable (PRIMUS_ plus the flag name in upper case with
// underscores); flags win over the environment.
type Flags struct {
	Addr              string
	Pathname          string
	PingInterval      time.Duration
	MaxLength         int64
	MaxQueueBytes     int
	MaxRoomsPerSpark  int
	MaxRoomNameLength int
	Wildcards         bool
	MaxPublishRooms   int
	MaxExceptIDs      int
	APIKey            string
	NodeTTL           time.Duration
	ShutdownTimeout   time.Duration
	LogLevel          string
	LogFormat         string // text or json
	PprofAddr         string // when set, net/http/pprof is served there
	Version           bool   // print the version and exit

	HTTP     HTTPFlags
	Security SecurityFlags
	LameDuck LameDuckFlags
	Redis    RedisFlags
	History  HistoryFlags
}

// HistoryFlags keep room history (-history-size > 0).
type HistoryFlags struct {
	Size  int
	TTL   time.Duration
	Rooms []string // patterns; empty: every room
}

// HTTPFlags bounds what plain HTTP clients may hold.
type HTTPFlags struct {
	ReadTimeout    time.Duration // a whole request, body included
	WriteTimeout   time.Duration // a whole response
	IdleTimeout    time.Duration // a keep-alive connection between requests
	MaxAPIRequests int           // /api/* requests in progress at once
}

// SecurityFlags says who may connect, join and publish.
type SecurityFlags struct {
	AllowedOrigins       []string // browser origins besides the server's own host
	JWTHMACSecret        string   // HS256 secret
	JWTPublicKey         string   // PEM file: RS256, ES256 or EdDSA
	ClientPublish        bool     // clients may publish with the command protocol
	TLSCert, TLSKey      string   // serve HTTPS/WSS
	MaxConns             int
	MaxConnsPerIP        int
	TrustForwardedFor    bool // client addresses from X-Forwarded-For (behind a proxy)
	MaxMessagesPerSecond float64
	MessageBurst         int
}

// LameDuckFlags is the shutdown on SIGTERM: fail /readyz, keep serving
// for Delay, then close sparks spread over Duration.
type LameDuckFlags struct {
	Delay    time.Duration
	Duration time.Duration
}

// RedisFlags selects the Redis broker; all empty means the in-memory broker.
type RedisFlags struct {
	URL              string // redis:// or rediss:// URL, or host:port
	SentinelAddrs    string // comma-separated host:port list
	ClusterAddrs     string // comma-separated Redis Cluster seed host:port list
	SentinelMaster   string
	SentinelUsername string
	SentinelPassword string
	Mode             string // native (default) or compat
	Channel          string // channel prefix, default "primus"
}

// Enabled reports whether a Redis broker is configured.
func (r RedisFlags) Enabled() bool {
	return r.URL != "" || r.SentinelAddrs != "" || r.ClusterAddrs != ""
}

// ParseFlags reads flags from args and defaults from getenv. It returns
// flag.ErrHelp after printing the usage for -h.
func ParseFlags(args []string, getenv func(string) string, stderr io.Writer) (Flags, error) {
	var c Flags
	f := newFlagSet("primus-server", getenv, stderr)
	f.str(&c.Addr, "addr", ":8080", "listen address")
	f.str(&c.Pathname, "pathname", "/primus", "Primus endpoint path")
	f.duration(&c.PingInterval, "ping-interval", 30*time.Second, "heartbeat interval (0 disables)")
	f.int64(&c.MaxLength, "max-length", 10<<20, "largest incoming message in bytes")
	f.int(&c.MaxQueueBytes, "max-queue-bytes", 0, "per-spark backlog bound in bytes (besides its largest message); a spark over it is ended as a slow consumer (0: twice -max-length, at least 4 MiB)")
	f.int(&c.MaxRoomsPerSpark, "max-rooms-per-spark", 1000, "rooms one spark may be in (-1: no bound)")
	f.int(&c.MaxRoomNameLength, "max-room-name-length", 256, "longest room name in bytes (-1: no bound)")
	f.boolean(&c.Wildcards, "wildcards", false, "rooms whose name holds * are patterns: a write to user:42 also reaches the members of user:* (primus-rooms' default; * matches any run of characters, nothing else is special); joining a pattern needs a grant like any room")
	f.int(&c.MaxPublishRooms, "max-publish-rooms", 1000, "rooms one publish (command or API) may name (-1: no bound)")
	f.int(&c.MaxExceptIDs, "max-except", 1000, "spark ids one publish may except (-1: no bound)")
	f.str(&c.APIKey, "api-key", "", "when set, /api/* requires Authorization: Bearer <key>")
	f.duration(&c.NodeTTL, "node-ttl", 5*time.Second, "how long after its last heartbeat (sent every quarter of it) another node counts as live for the cluster-wide API calls (/api/nodes, /api/rooms, /api/join, ...); every node should use the same value")
	f.duration(&c.ShutdownTimeout, "shutdown-timeout", 10*time.Second, "how long the last step of a shutdown waits for clients to answer their close")
	f.str(&c.LogLevel, "log-level", "info", "debug, info, warn or error")
	f.str(&c.LogFormat, "log-format", "text", "text or json")
	f.str(&c.PprofAddr, "pprof-addr", "", "when set, serve Go's profiler (net/http/pprof, /debug/pprof/) on this separate address, e.g. 127.0.0.1:6060; keep it private")
	f.fs.BoolVar(&c.Version, "version", false, "print the version and exit")

	f.duration(&c.HTTP.ReadTimeout, "http-read-timeout", 30*time.Second, "time to read a whole HTTP request, body included")
	f.duration(&c.HTTP.WriteTimeout, "http-write-timeout", 30*time.Second, "time to write a whole HTTP response")
	f.duration(&c.HTTP.IdleTimeout, "http-idle-timeout", 30*time.Second, "how long an idle keep-alive connection is kept")
	f.int(&c.HTTP.MaxAPIRequests, "max-api-requests", 16, "/api/* requests served at once; more get 503")

	f.list(&c.Security.AllowedOrigins, "allowed-origins", "browser origins allowed besides the server's own host (comma-separated, * wildcards: https://*.example.com, app.example.com:8443, *)")
	f.str(&c.Security.JWTHMACSecret, "jwt-hmac-secret", "", "HS256 secret (32 bytes at least): clients need a token (?token= or Authorization: Bearer) to connect; its rooms and publish claims grant joins and publishes")
	f.str(&c.Security.JWTPublicKey, "jwt-public-key", "", "PEM file with an RSA (RS256), ECDSA P-256 (ES256) or Ed25519 (EdDSA) public key, instead of -jwt-hmac-secret")
	f.boolean(&c.Security.ClientPublish, "client-publish", true, "clients may publish with the command protocol (false: only the HTTP API publishes)")
	f.str(&c.Security.TLSCert, "tls-cert", "", "certificate file (PEM): serve HTTPS and WSS")
	f.str(&c.Security.TLSKey, "tls-key", "", "private key file (PEM) of -tls-cert")
	f.int(&c.Security.MaxConns, "max-conns", 0, "open WebSocket connections of this node (0: no bound); more get 503")
	f.int(&c.Security.MaxConnsPerIP, "max-conns-per-ip", 0, "open WebSocket connections per client address (0: no bound); more get 429")
	f.boolean(&c.Security.TrustForwardedFor, "trust-forwarded-for", false, "take client addresses (for -max-conns-per-ip and logs) from X-Forwarded-For: only behind a proxy that sets it")
	f.float(&c.Security.MaxMessagesPerSecond, "max-messages-per-second", 0, "messages a client may send per second (0: no bound); more are refused, and a client that keeps flooding is ended")
	f.int(&c.Security.MessageBurst, "message-burst", 0, "messages a client may send at once above -max-messages-per-second (0: the rate)")

	f.duration(&c.LameDuck.Delay, "lame-duck-delay", 5*time.Second, "on SIGTERM, fail /readyz and keep serving this long before closing clients, so the balancer drains the node")
	f.duration(&c.LameDuck.Duration, "lame-duck-duration", 10*time.Second, "then close the clients in batches spread over this long, so they do not reconnect elsewhere all at once")

	f.str(&c.Redis.URL, "redis-url", "", "Redis URL (redis://[user:pass@]host:port/db or rediss://...) or host:port; enables the Redis broker")
	f.str(&c.Redis.SentinelAddrs, "sentinel-addrs", "", "comma-separated Sentinel addresses; enables the Redis broker through Sentinel")
	f.str(&c.Redis.ClusterAddrs, "redis-cluster-addrs", "", "comma-separated Redis Cluster seed addresses (host:port,...; Redis >= 7): room channels are sharded over the cluster's shards (native mode only); enables the Redis broker")
	f.str(&c.Redis.SentinelMaster, "sentinel-master", "mymaster", "Sentinel master name")
	f.str(&c.Redis.SentinelUsername, "sentinel-username", "", "Sentinel ACL user")
	f.str(&c.Redis.SentinelPassword, "sentinel-password", "", "Sentinel password")
	f.str(&c.Redis.Mode, "redis-mode", "native", "native (per-room channels) or compat (primus-redis-rooms 0.3 wire format)")
	f.str(&c.Redis.Channel, "channel", "primus", "Redis channel prefix")

	f.int(&c.History.Size, "history-size", 0, "keep the last N writes of every room (or of the -history-rooms) with offsets, so that clients joining with recover get them in order and recover what they missed after a reconnect (0: no history; native mode)")
	f.duration(&c.History.TTL, "history-ttl", 0, "how long a room's history is kept after its last write (0: 5m)")
	f.list(&c.History.Rooms, "history-rooms", "rooms that keep history when -history-size is set (comma-separated, * matches any run of characters: chat:*,news); default every room")
	if err := f.parse(args); err != nil {
		return c, err
	}
	return c, c.validate()
}

func (c *Flags) validate() error {
	if c.PingInterval <= 0 {
		c.PingInterval = -1
	}
	switch {
	case c.MaxLength <= 0:
		return fmt.Errorf("-max-length: want a positive number of bytes, got %d", c.MaxLength)
	case c.MaxQueueBytes < 0:
		return fmt.Errorf("-max-queue-bytes: want a number of bytes (0: the default), got %d", c.MaxQueueBytes)
	case c.MaxRoomsPerSpark == 0 || c.MaxRoomNameLength == 0 || c.MaxPublishRooms == 0 || c.MaxExceptIDs == 0:
		return errors.New("-max-rooms-per-spark, -max-room-name-length, -max-publish-rooms, -max-except: want a positive bound, or -1 for none")
	case c.LogFormat != "text" && c.LogFormat != "json":
		return fmt.Errorf("-log-format: want text or json, got %q", c.LogFormat)
	case c.Redis.Mode != "native" && c.Redis.Mode != "compat":
		return fmt.Errorf("-redis-mode: want native or compat, got %q", c.Redis.Mode)
	case c.Redis.sources() > 1:
		return errors.New("-redis-url, -sentinel-addrs and -redis-cluster-addrs: give one of them, not several")
	case c.Redis.ClusterAddrs != "" && c.Redis.Mode == "compat":
		return errors.New("-redis-cluster-addrs with -redis-mode compat: primus-redis-rooms has no Redis Cluster support; use native mode on a cluster")
	case c.Security.JWTHMACSecret != "" && c.Security.JWTPublicKey != "":
		return errors.New("-jwt-hmac-secret and -jwt-public-key: give one, not both")
	case (c.Security.TLSCert == "") != (c.Security.TLSKey == ""):
		return errors.New("-tls-cert and -tls-key: give both or neither")
	case c.Security.MaxConns < 0 || c.Security.MaxConnsPerIP < 0 || c.Security.MaxMessagesPerSecond < 0 || c.Security.MessageBurst < 0:
		return errors.New("-max-conns, -max-conns-per-ip, -max-messages-per-second, -message-burst: want 0 (no bound) or more")
	case c.HTTP.MaxAPIRequests <= 0:
		return fmt.Errorf("-max-api-requests: want a positive number, got %d", c.HTTP.MaxAPIRequests)
	case c.NodeTTL <= 0:
		return fmt.Errorf("-node-ttl: want a positive duration, got %v", c.NodeTTL)
	case c.LameDuck.Delay < 0 || c.LameDuck.Duration < 0:
		return errors.New("-lame-duck-delay and -lame-duck-duration: want 0 or more")
	}
	if _, err := parseLevel(c.LogLevel); err != nil {
		return err
	}
	return c.validateHistory()
}

// sources counts the Redis locations given.
func (r RedisFlags) sources() int {
	n := 0
	for _, s := range []string{r.URL, r.SentinelAddrs, r.ClusterAddrs} {
		if s != "" {
			n++
		}
	}
	return n
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return l, fmt.Errorf("-log-level: %w", err)
	}
	return l, nil
}

// flagSet is a flag set whose defaults come from PRIMUS_* variables.
type flagSet struct {
	fs     *flag.FlagSet
	getenv func(string) string
	errs   []error
}

func newFlagSet(name string, getenv func(string) string, stderr io.Writer) *flagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return &flagSet{fs: fs, getenv: getenv}
}

func envName(flagName string) string {
	return "PRIMUS_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// env returns the flag's environment value and the usage text naming it.
func (f *flagSet) env(name, usage string) (string, string) {
	return f.getenv(envName(name)), usage + " (env " + envName(name) + ")"
}

// fromEnv parses an environment value into def with parse, remembering a
// bad value as an error that names the variable.
func fromEnv[T any](f *flagSet, name string, def T, parse func(string) (T, error)) T {
	v := f.getenv(envName(name))
	if v == "" {
		return def
	}
	t, err := parse(v)
	if err != nil {
		f.errs = append(f.errs, fmt.Errorf("%s=%q: %w", envName(name), v, err))
		return def
	}
	return t
}

func (f *flagSet) str(p *string, name, def, usage string) {
	v, usage := f.env(name, usage)
	if v != "" {
		def = v
	}
	f.fs.StringVar(p, name, def, usage)
}

func (f *flagSet) duration(p *time.Duration, name string, def time.Duration, usage string) {
	_, usage = f.env(name, usage)
	f.fs.DurationVar(p, name, fromEnv(f, name, def, time.ParseDuration), usage)
}

func (f *flagSet) int(p *int, name string, def int, usage string) {
	_, usage = f.env(name, usage)
	f.fs.IntVar(p, name, fromEnv(f, name, def, strconv.Atoi), usage)
}

func (f *flagSet) int64(p *int64, name string, def int64, usage string) {
	_, usage = f.env(name, usage)
	f.fs.Int64Var(p, name, fromEnv(f, name, def, func(s string) (int64, error) { return strconv.ParseInt(s, 10, 64) }), usage)
}

func (f *flagSet) float(p *float64, name string, def float64, usage string) {
	_, usage = f.env(name, usage)
	f.fs.Float64Var(p, name, fromEnv(f, name, def, func(s string) (float64, error) { return strconv.ParseFloat(s, 64) }), usage)
}

func (f *flagSet) boolean(p *bool, name string, def bool, usage string) {
	_, usage = f.env(name, usage)
	f.fs.BoolVar(p, name, fromEnv(f, name, def, strconv.ParseBool), usage)
}

// list is a comma-separated list flag.
func (f *flagSet) list(p *[]string, name, usage string) {
	v, usage := f.env(name, usage)
	*p = splitList(v)
	f.fs.Func(name, usage, func(s string) error {
		*p = splitList(s)
		return nil
	})
}

func splitList(s string) []string {
	var out []string
	for item := range strings.SplitSeq(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

func (f *flagSet) parse(args []string) error {
	if err := f.fs.Parse(args); err != nil {
		return err
	}
	if f.fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %v", f.fs.Args())
	}
	return errors.Join(f.errs...)
}
