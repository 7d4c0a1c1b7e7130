// Command centrifuge-server is the Centrifuge peer of "primus-bench
// compare": one node of the Centrifuge library (github.com/centrifugal/
// centrifuge, the version in this module's go.mod) used the way its README
// shows, with the Redis broker, so that two of them behind one Redis are
// the same deployment as two Primus nodes with their Redis rooms.
//
// Everything is the library's default (centrifuge.Config{}, the Redis
// broker's and the WebSocket handler's zero configs: JSON protocol unless
// a client asks for Protobuf, app-level pings every 25 s, at most-once
// delivery without history or recovery) except what a benchmark peer
// needs: anonymous connections are accepted (OnConnecting returns
// credentials), and every client may subscribe to and publish into any
// channel (OnSubscribe and OnPublish allow all, as in the README's chat).
// There is no presence manager: no subscription asks for presence.
//
// The benchmark's room i is the channel "r<i>": one channel per room, same
// names. With -channel P the broker publishes a channel C on the Redis
// channel "P.client.C" (the broker's Prefix; default "centrifuge").
//
//	centrifuge-server -addr 127.0.0.1:8000 -redis 127.0.0.1:6380
//
// Endpoints: /connection/websocket (the library's WebSocket handler) and
// /healthz (200 "ok" once the node runs, which includes the Redis broker's
// PUB/SUB being up). It prints "listening <port>" when it serves, and shuts
// the node down on SIGTERM or SIGINT.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/centrifugal/centrifuge"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "centrifuge-server:", err)
		os.Exit(1)
	}
}

// config is the command line.
type config struct {
	addr    string // listen address
	redis   string // Redis address (host:port or redis:// URL)
	channel string // the Redis broker's prefix
}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("centrifuge-server", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.addr, "addr", "127.0.0.1:8000", "listen address")
	fs.StringVar(&c.redis, "redis", "", "Redis address, host:port or redis:// URL (required)")
	fs.StringVar(&c.channel, "channel", "centrifuge", "prefix of the Redis channels and keys (RedisBrokerConfig.Prefix)")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if c.redis == "" {
		return c, errors.New("-redis is required")
	}
	return c, nil
}

// newNode builds and runs a node with the Redis broker and the
// benchmark's permissions; Node.Run returns once the broker's PUB/SUB
// connections are up.
func newNode(c config, stderr io.Writer) (*centrifuge.Node, error) {
	logger := log.New(stderr, "", log.LstdFlags)
	node, err := centrifuge.New(centrifuge.Config{
		// Errors only, on stderr (the library logs nothing by default).
		LogLevel: centrifuge.LogLevelError,
		LogHandler: func(e centrifuge.LogEntry) {
			logger.Printf("%s: %v", e.Message, e.Fields)
		},
	})
	if err != nil {
		return nil, err
	}
	shard, err := centrifuge.NewRedisShard(node, centrifuge.RedisShardConfig{Address: c.redis})
	if err != nil {
		return nil, err
	}
	broker, err := centrifuge.NewRedisBroker(node, centrifuge.RedisBrokerConfig{
		Prefix: c.channel,
		Shards: []*centrifuge.RedisShard{shard},
	})
	if err != nil {
		return nil, err
	}
	node.SetBroker(broker)

	// Anonymous connections: credentials with an empty user ID.
	node.OnConnecting(func(ctx context.Context, _ centrifuge.ConnectEvent) (centrifuge.ConnectReply, error) {
		return centrifuge.ConnectReply{Credentials: &centrifuge.Credentials{UserID: ""}}, nil
	})
	node.OnConnect(func(client *centrifuge.Client) {
		client.OnSubscribe(func(_ centrifuge.SubscribeEvent, cb centrifuge.SubscribeCallback) {
			cb(centrifuge.SubscribeReply{}, nil)
		})
		client.OnPublish(func(_ centrifuge.PublishEvent, cb centrifuge.PublishCallback) {
			cb(centrifuge.PublishReply{}, nil)
		})
	})
	if err := node.Run(); err != nil {
		return nil, fmt.Errorf("running the node: %w", err)
	}
	return node, nil
}

// handler serves the node's WebSocket endpoint and /healthz.
func handler(node *centrifuge.Node) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/connection/websocket", centrifuge.NewWebsocketHandler(node, centrifuge.WebsocketConfig{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = io.WriteString(w, "ok\n")
	})
	return mux
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	node, err := newNode(c, stderr)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", c.addr)
	if err != nil {
		_ = node.Shutdown(context.Background())
		return err
	}
	srv := &http.Server{Handler: handler(node), ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	fmt.Fprintf(stdout, "listening %d\n", ln.Addr().(*net.TCPAddr).Port)

	select {
	case err = <-served:
	case <-ctx.Done():
	}
	// The node first (it disconnects the clients), then the listener.
	sctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	_ = node.Shutdown(sctx)
	_ = srv.Shutdown(sctx)
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}
