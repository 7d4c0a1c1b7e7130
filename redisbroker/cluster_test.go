package redisbroker

import (
	"testing"
	"time"

	"github.com/primusgo/primus"
	"github.com/primusgo/primus/brokertest"
	"github.com/primusgo/primus/internal/redistest"
)

// clusterTestConfig is a cluster-mode configuration with test-friendly
// timings.
func clusterTestConfig(c *redistest.Cluster, channel string) Config {
	return Config{
		ClusterAddrs:     c.Addrs(),
		Channel:          channel,
		DialTimeout:      time.Second,
		CommandTimeout:   time.Second,
		UnsubscribeDelay: 200 * time.Millisecond,
		MaxBackoff:       500 * time.Millisecond,
	}
}

func clusterNodes(c *redistest.Cluster) brokertest.NewCluster {
	return func(t testing.TB, n int) []primus.Broker {
		ch := freshChannel()
		nodes := make([]primus.Broker, n)
		for i := range nodes {
			nodes[i] = newBroker(t, clusterTestConfig(c, ch))
		}
		return nodes
	}
}

func TestClusterConformance(t *testing.T) {
	c := redistest.StartCluster(t, redistest.ClusterConfig{})
	brokertest.Run(t, clusterNodes(c))
}
