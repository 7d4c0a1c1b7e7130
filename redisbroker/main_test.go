package redisbroker

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/primusgo/primus"
	"github.com/primusgo/primus/brokertest"
	"github.com/primusgo/primus/internal/redistest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// rueidis's cluster client closes the connections a slot-map
		// refresh made redundant 5 s later, also after Close.
		goleak.IgnoreAnyFunction("github.com/redis/rueidis.(*clusterClient)._refresh.func2"))
}

var prefixSeq atomic.Int64

// freshChannel returns a channel prefix no other test uses, so tests can
// share a Redis.
func freshChannel() string { return fmt.Sprintf("t%d", prefixSeq.Add(1)) }

// testConfig is a configuration with test-friendly timings.
func testConfig(addr string, mode Mode, channel string) Config {
	return Config{
		Addr:             addr,
		Mode:             mode,
		Channel:          channel,
		DialTimeout:      time.Second,
		CommandTimeout:   time.Second,
		UnsubscribeDelay: 200 * time.Millisecond,
		MaxBackoff:       500 * time.Millisecond,
	}
}

// newBroker creates a broker from cfg and closes it when the test ends.
func newBroker(t testing.TB, cfg Config) *Broker {
	t.Helper()
	b, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// startBroker creates and starts a broker with a recorder as its handler.
func startBroker(t testing.TB, cfg Config) (*Broker, *brokertest.Recorder) {
	t.Helper()
	b := newBroker(t, cfg)
	rec := brokertest.NewRecorder()
	if err := b.Start(rec); err != nil {
		t.Fatalf("Start: %v", err)
	}
	return b, rec
}

func clusterOf(srv *redistest.Server, mode Mode) brokertest.NewCluster {
	return func(t testing.TB, n int) []primus.Broker {
		ch := freshChannel()
		nodes := make([]primus.Broker, n)
		for i := range nodes {
			nodes[i] = newBroker(t, testConfig(srv.Addr(), mode, ch))
		}
		return nodes
	}
}

func TestConformanceNative(t *testing.T) {
	srv := redistest.StartServer(t)
	brokertest.Run(t, clusterOf(srv, Native))
}

func TestConformanceCompat(t *testing.T) {
	srv := redistest.StartServer(t)
	brokertest.RunWithLimits(t, clusterOf(srv, Compat), brokertest.Limits{NoExcept: true, PerRoomCopies: true, NoCluster: true})
}
