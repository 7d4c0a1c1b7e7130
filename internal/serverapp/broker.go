package serverapp

import (
	"log/slog"
	"strings"

	"github.com/primusgo/primus"
	"github.com/primusgo/primus/redisbroker"
)

// newBroker builds the broker the configuration asks for (nil: in-memory).
func newBroker(r RedisFlags, log *slog.Logger) (primus.Broker, error) {
	if !r.Enabled() {
		return nil, nil
	}
	mode, err := redisbroker.ParseMode(r.Mode)
	if err != nil {
		return nil, err
	}
	cfg := redisbroker.Config{
		Mode:             mode,
		Channel:          r.Channel,
		SentinelMaster:   r.SentinelMaster,
		SentinelUsername: r.SentinelUsername,
		SentinelPassword: r.SentinelPassword,
		Logger:           log,
	}
	switch {
	case r.ClusterAddrs != "":
		cfg.ClusterAddrs = splitAddrs(r.ClusterAddrs)
	case r.SentinelAddrs != "":
		cfg.SentinelAddrs = splitAddrs(r.SentinelAddrs)
	case strings.Contains(r.URL, "://"):
		cfg.URL = r.URL
	default:
		cfg.Addr = r.URL
	}
	b, err := redisbroker.New(cfg)
	if err != nil {
		return nil, err
	}
	return b, nil
}

func splitAddrs(s string) []string {
	var out []string
	for a := range strings.SplitSeq(s, ",") {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	return out
}

// nodeID returns the broker's node id, so that the server and its broker
// name the node alike in messages and logs.
func nodeID(b primus.Broker) string {
	if n, ok := b.(interface{ NodeID() string }); ok {
		return n.NodeID()
	}
	return ""
}
