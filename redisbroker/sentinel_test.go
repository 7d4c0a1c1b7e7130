package redisbroker

import (
	"context"
	"testing"
	"time"

	"github.com/primusgo/primus/brokertest"
	"github.com/primusgo/primus/internal/redistest"
)

func sentinelConfig(g *redistest.SentinelGroup, mode Mode, channel string) Config {
	return Config{
		SentinelAddrs:  g.SentinelAddrs(),
		SentinelMaster: g.MasterName(),
		Mode:           mode,
		Channel:        channel,
		DialTimeout:    time.Second,
		CommandTimeout: time.Second,
		ProbeInterval:  time.Second,
	}
}

func TestSentinelFailover(t *testing.T) {
	cases := []struct {
		name string
		mode Mode
		kill bool
	}{
		{"native/kill-master", Native, true},
		{"native/sentinel-failover", Native, false},
		{"compat/kill-master", Compat, true},
		{"compat/sentinel-failover", Compat, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			g := redistest.StartSentinelGroup(t)
			cfg := sentinelConfig(g, c.mode, freshChannel())
			a, recA := startBroker(t, cfg)
			b, recB := startBroker(t, cfg)
			a.Subscribe("r")
			b.Subscribe("r")
			brokertest.AwaitSubscribed(t, b, recA, "r")
			brokertest.AwaitSubscribed(t, a, recB, "r")

			old := g.Master()
			if c.kill {
				g.KillMaster()
			} else {
				g.Failover()
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			nm, err := g.WaitForPromotion(ctx)
			if err != nil {
				t.Fatal(err)
			}
			promoted := time.Now()
			ab := awaitDelivery(t, a, recB, "r", 10*time.Second)
			ba := awaitDelivery(t, b, recA, "r", 10*time.Second)
			took := time.Since(promoted)
			t.Logf("delivery both ways %v after the promotion (a->b %v, b->a after that %v)", took.Round(time.Millisecond), ab.Round(time.Millisecond), ba.Round(time.Millisecond))
			if took > 5*time.Second {
				t.Errorf("cross-node delivery resumed %v after the promotion, want < 5s", took)
			}

			// Both nodes end up subscribed on the new master, not on the
			// demoted one (where messages would arrive only through
			// replication, or not at all).
			var channel string
			if c.mode == Native {
				channel = RoomChannel(cfg.Channel, "r")
			} else {
				channel = NodeChannel(cfg.Channel, a.NodeID())
			}
			want := int64(2)
			if c.mode == Compat {
				want = 1
			}
			waitNumsub(t, nm, channel, want)
			if d := time.Since(promoted); d > 5*time.Second {
				t.Errorf("nodes subscribed on the new master %v after the promotion, want < 5s", d)
			}
			if !c.kill {
				// The old master stays up and is demoted; delivery keeps
				// working once it is a replica, and nobody listens there.
				if err := g.WaitForRole(ctx, old, "slave"); err != nil {
					t.Fatal(err)
				}
				waitNumsub(t, old, channel, 0)
				awaitDelivery(t, a, recB, "r", 5*time.Second)
				awaitDelivery(t, b, recA, "r", 5*time.Second)
			}
			sa, sb := a.Stats(), b.Stats()
			t.Logf("a: reconnects %d, master switches %d, probe failures %d; b: reconnects %d, master switches %d, probe failures %d",
				sa.Reconnects, sa.MasterSwitches, sa.ProbeFailures, sb.Reconnects, sb.MasterSwitches, sb.ProbeFailures)
			if sa.Reconnects == 0 || sb.Reconnects == 0 {
				t.Error("a node never moved its Pub/Sub connection")
			}
		})
	}
}
