package serverapp

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/primusgo/primus"
	"github.com/primusgo/primus/redisbroker"
)

// metrics exposes the server's counters to Prometheus. The primus package
// keeps plain atomic counters; they are read here at scrape time.
type metrics struct {
	reg           *prometheus.Registry
	publishes     prometheus.Counter
	commandErrors prometheus.Counter
	forbidden     prometheus.Counter
	apiBusy       prometheus.Counter
}

func newMetrics(a *App) *metrics {
	m := &metrics{reg: prometheus.NewRegistry()}
	m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.publishes = prometheus.NewCounter(prometheus.CounterOpts{Name: "primus_publish_requests_total", Help: "Room writes requested by clients and the HTTP API."})
	m.commandErrors = prometheus.NewCounter(prometheus.CounterOpts{Name: "primus_command_errors_total", Help: "Client commands and API requests answered with an error."})
	m.forbidden = prometheus.NewCounter(prometheus.CounterOpts{Name: "primus_forbidden_commands_total", Help: "Joins and publishes refused because the client's token does not grant them."})
	m.apiBusy = prometheus.NewCounter(prometheus.CounterOpts{Name: "primus_api_busy_total", Help: "API requests answered 503 because -max-api-requests were in progress."})
	m.reg.MustRegister(m.publishes, m.commandErrors, m.forbidden, m.apiBusy)
	v := buildVersion()
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name:        "primus_build_info",
		Help:        "1, labelled with the server's version, VCS revision and Go version.",
		ConstLabels: prometheus.Labels{"version": v.version, "revision": v.revision, "goversion": v.goVersion},
	}, func() float64 { return 1 }))
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "primus_ready", Help: "1 while /readyz answers 200.",
	}, func() float64 { return oneIfTrue(!a.draining.Load() && a.brokerConnected()) }))
	rejected := prometheus.NewDesc("primus_rejected_upgrades_total", "WebSocket upgrades refused, by reason: origin (403), auth (401/403), max_conns (503), max_conns_per_ip (429).", []string{"reason"}, nil)
	ends := prometheus.NewDesc("primus_ends_total", "Sparks ended by the server for a client's behaviour, by reason.", []string{"reason"}, nil)
	m.reg.MustRegister(statsCollector{a, []statsMetric{
		{rejected, prometheus.CounterValue, []string{"origin"}, func(s primus.Stats) uint64 { return s.RejectedOrigin }},
		{rejected, prometheus.CounterValue, []string{"auth"}, func(s primus.Stats) uint64 { return s.RejectedAuth }},
		{rejected, prometheus.CounterValue, []string{"max_conns"}, func(s primus.Stats) uint64 { return s.RejectedFull }},
		{rejected, prometheus.CounterValue, []string{"max_conns_per_ip"}, func(s primus.Stats) uint64 { return s.RejectedIPFull }},
		{ends, prometheus.CounterValue, []string{"slow_consumer"}, func(s primus.Stats) uint64 { return s.SlowConsumers }},
		{ends, prometheus.CounterValue, []string{"heartbeat_timeout"}, func(s primus.Stats) uint64 { return s.HeartbeatTimeouts }},
		{ends, prometheus.CounterValue, []string{"rate_limited"}, func(s primus.Stats) uint64 { return s.RateLimitEnds }},
		{ends, prometheus.CounterValue, []string{"token_expired"}, func(s primus.Stats) uint64 { return s.TokenExpiries }},
	}})

	stat := func(f func(primus.Stats) float64) func() float64 {
		return func() float64 { return f(a.Primus.Stats()) }
	}
	gauge := func(name, help string, f func(primus.Stats) float64) {
		m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, stat(f)))
	}
	counter := func(name, help string, f func(primus.Stats) float64) {
		m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, stat(f)))
	}
	gauge("primus_connections", "Open sparks.", func(s primus.Stats) float64 { return float64(s.Connections) })
	gauge("primus_rooms", "Rooms with local members.", func(s primus.Stats) float64 { return float64(s.Rooms) })
	counter("primus_connections_total", "Sparks accepted.", func(s primus.Stats) float64 { return float64(s.ConnectionsTotal) })
	counter("primus_messages_in_total", "Messages read from clients.", func(s primus.Stats) float64 { return float64(s.MessagesIn) })
	counter("primus_parse_errors_total", "Incoming messages that were not valid JSON.", func(s primus.Stats) float64 { return float64(s.ParseErrors) })
	counter("primus_messages_out_total", "Room-write deliveries queued to local sparks.", func(s primus.Stats) float64 { return float64(s.Deliveries) })
	counter("primus_frames_out_total", "Frames written to clients.", func(s primus.Stats) float64 { return float64(s.FramesOut) })
	counter("primus_writes_total", "Write system calls to clients; frames_out / writes shows how well frames coalesce.", func(s primus.Stats) float64 { return float64(s.Writes) })
	counter("primus_drops_total", "Frames dropped: spark closing, closed or overflowing.", func(s primus.Stats) float64 { return float64(s.Drops) })
	counter("primus_slow_consumer_ends_total", "Sparks ended because their send queue overflowed.", func(s primus.Stats) float64 { return float64(s.SlowConsumers) })
	counter("primus_heartbeat_timeouts_total", "Sparks ended for missing heartbeats.", func(s primus.Stats) float64 { return float64(s.HeartbeatTimeouts) })
	counter("primus_published_total", "Room writes handed to the broker.", func(s primus.Stats) float64 { return float64(s.Published) })
	counter("primus_publish_errors_total", "Room writes the broker failed to publish.", func(s primus.Stats) float64 { return float64(s.PublishErrors) })
	counter("primus_remote_messages_total", "Messages received from other nodes.", func(s primus.Stats) float64 { return float64(s.RemoteMessages) })
	counter("primus_rate_limited_messages_total", "Client messages dropped for exceeding -max-messages-per-second.", func(s primus.Stats) float64 { return float64(s.RateLimited) })
	counter("primus_reserved_refused_total", `Writes refused, and remote messages dropped, whose data was a "primus::" string.`, func(s primus.Stats) float64 { return float64(s.ReservedRefused) })
	if rb, ok := a.opts.Broker.(*redisbroker.Broker); ok {
		m.reg.MustRegister(redisCollector{rb})
		if rb.Stats().Partitions > 0 {
			m.reg.MustRegister(shardCollector{rb})
		}
	}
	return m
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// statsCollector exports labelled counters of primus.Stats, read once per scrape.
type statsCollector struct {
	a       *App
	metrics []statsMetric
}

type statsMetric struct {
	desc   *prometheus.Desc
	kind   prometheus.ValueType
	labels []string
	value  func(primus.Stats) uint64
}

func (c statsCollector) Describe(ch chan<- *prometheus.Desc) {
	for i, m := range c.metrics {
		if i == 0 || m.desc != c.metrics[i-1].desc {
			ch <- m.desc
		}
	}
}

func (c statsCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.a.Primus.Stats()
	for _, m := range c.metrics {
		ch <- prometheus.MustNewConstMetric(m.desc, m.kind, float64(m.value(st)), m.labels...)
	}
}

// redisCollector exports the Redis broker's counters at scrape time, so
// that the broker package does not import Prometheus.
type redisCollector struct{ b *redisbroker.Broker }

type redisMetric struct {
	desc  *prometheus.Desc
	kind  prometheus.ValueType
	value func(redisbroker.Stats) float64
}

func redisDesc(name, help string) *prometheus.Desc {
	return prometheus.NewDesc("primus_redis_"+name, help, nil, nil)
}

// oneIfTrue is a gauge's value for a condition.
func oneIfTrue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

var redisMetrics = []redisMetric{
	{redisDesc("connected", "1 while the Pub/Sub connection is up and subscribed."), prometheus.GaugeValue, func(s redisbroker.Stats) float64 { return oneIfTrue(s.Connected) }},
	{redisDesc("rooms", "Rooms this node hosts."), prometheus.GaugeValue, func(s redisbroker.Stats) float64 { return float64(s.Rooms) }},
	{redisDesc("subscribed_rooms", "Room channels subscribed (native) or hosted rooms (compat)."), prometheus.GaugeValue, func(s redisbroker.Stats) float64 { return float64(s.SubscribedRooms) }},
	{redisDesc("receive_queue_depth", "Received messages waiting for a worker."), prometheus.GaugeValue, func(s redisbroker.Stats) float64 { return float64(s.QueueDepth) }},
	{redisDesc("publishes_total", "Room writes published to Redis."), prometheus.CounterValue, func(s redisbroker.Stats) float64 { return float64(s.Published) }},
	{redisDesc("publish_errors_total", "Room writes that could not be published."), prometheus.CounterValue, func(s redisbroker.Stats) float64 { return float64(s.PublishErrors) }},
	{redisDesc("multi_room_broadcasts_total", "Multi-room writes published once on the all-nodes channel (too large to fan out per room)."), prometheus.CounterValue, func(s redisbroker.Stats) float64 { return float64(s.MultiRoomBroadcasts) }},
	{redisDesc("except_not_carried_total", "Compat-mode publishes whose except list could not cross nodes."), prometheus.CounterValue, func(s redisbroker.Stats) float64 { return float64(s.ExceptNotCarried) }},
	{redisDesc("receives_total", "Messages received from Redis and handed to the server."), prometheus.CounterValue, func(s redisbroker.Stats) float64 { return float64(s.Received) }},
	{redisDesc("decode_errors_total", "Malformed Redis payloads ignored."), prometheus.CounterValue, func(s redisbroker.Stats) float64 { return float64(s.DecodeErrors) }},
	{redisDesc("oversized_total", "Redis payloads over the size limit ignored."), prometheus.CounterValue, func(s redisbroker.Stats) float64 { return float64(s.Oversized) }},
	{redisDesc("drops_total", "Received messages dropped because a worker queue was full."), prometheus.CounterValue, func(s redisbroker.Stats) float64 { return float64(s.Dropped) }},
	{redisDesc("ignored_total", "Well-formed messages for rooms this node does not host (or compat messages without data)."), prometheus.CounterValue, func(s redisbroker.Stats) float64 { return float64(s.Ignored) }},
	{redisDesc("connects_total", "Pub/Sub connections established and subscribed."), prometheus.CounterValue, func(s redisbroker.Stats) float64 { return float64(s.Connects) }},
	{redisDesc("reconnects_total", "Pub/Sub reconnections."), prometheus.CounterValue, func(s redisbroker.Stats) float64 { return float64(s.Reconnects) }},
	{redisDesc("connect_errors_total", "Failed attempts to connect or subscribe."), prometheus.CounterValue, func(s redisbroker.Stats) float64 { return float64(s.ConnectErrors) }},
	{redisDesc("connection_losses_total", "Established Pub/Sub connections that broke."), prometheus.CounterValue, func(s redisbroker.Stats) float64 { return float64(s.ConnectionLosses) }},
	{redisDesc("master_switches_total", "Pub/Sub connections moved to a new Sentinel master."), prometheus.CounterValue, func(s redisbroker.Stats) float64 { return float64(s.MasterSwitches) }},
	{redisDesc("resubscribe_seconds", "Duration of the last (re)subscription of every room."), prometheus.GaugeValue, func(s redisbroker.Stats) float64 { return s.LastResubscribe.Seconds() }},
	{redisDesc("resubscribe_rooms", "Rooms subscribed by the last (re)subscription."), prometheus.GaugeValue, func(s redisbroker.Stats) float64 { return float64(s.LastResubscribeRooms) }},
	{redisDesc("probes_total", "Idle delivery probes sent."), prometheus.CounterValue, func(s redisbroker.Stats) float64 { return float64(s.ProbesSent) }},
	{redisDesc("probe_failures_total", "Idle delivery probes that did not come back (each rebuilds the connection)."), prometheus.CounterValue, func(s redisbroker.Stats) float64 { return float64(s.ProbeFailures) }},
}

func (c redisCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, m := range redisMetrics {
		ch <- m.desc
	}
}

func (c redisCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.b.Stats()
	for _, m := range redisMetrics {
		ch <- prometheus.MustNewConstMetric(m.desc, m.kind, m.value(st))
	}
}

// shardCollector exports a Redis Cluster broker's per-shard state; the
// shard label is the master's host:port (after a failover the promoted
// replica's address appears, and the old address keeps its counters but
// no primus_redis_shard_up).
type shardCollector struct{ b *redisbroker.Broker }

type shardMetric struct {
	desc    *prometheus.Desc
	kind    prometheus.ValueType
	current bool // only for shards the node uses now
	value   func(redisbroker.ShardStats) float64
}

var (
	shardsDesc   = redisDesc("shards", "Shards (masters owning slots) in the Redis Cluster's slot map.")
	shardMetrics = []shardMetric{
		{shardDesc("shard_up", "1 while every partition of the shard is subscribed on a live connection."), prometheus.GaugeValue, true, func(s redisbroker.ShardStats) float64 { return oneIfTrue(s.Up) }},
		{shardDesc("shard_partitions", "Room partitions the shard owns."), prometheus.GaugeValue, true, func(s redisbroker.ShardStats) float64 { return float64(s.Partitions) }},
		{shardDesc("shard_subscribed_rooms", "Room channels subscribed on the shard."), prometheus.GaugeValue, true, func(s redisbroker.ShardStats) float64 { return float64(s.SubscribedRooms) }},
		{shardDesc("shard_connects_total", "Subscription connections established to the shard."), prometheus.CounterValue, false, func(s redisbroker.ShardStats) float64 { return float64(s.Connects) }},
		{shardDesc("shard_connection_losses_total", "Subscription connections to the shard that broke."), prometheus.CounterValue, false, func(s redisbroker.ShardStats) float64 { return float64(s.ConnectionLosses) }},
		{shardDesc("shard_resubscribes_total", "Partitions subscribed again on the shard (reconnects, failovers, slot moves)."), prometheus.CounterValue, false, func(s redisbroker.ShardStats) float64 { return float64(s.Resubscribes) }},
		{shardDesc("shard_moved_slots_total", "Partition slots followed to the shard after a migration (sunsubscribe or MOVED)."), prometheus.CounterValue, false, func(s redisbroker.ShardStats) float64 { return float64(s.MovedSlots) }},
		{shardDesc("shard_probe_failures_total", "Idle probes of the shard connection that did not come back."), prometheus.CounterValue, false, func(s redisbroker.ShardStats) float64 { return float64(s.ProbeFailures) }},
	}
)

func shardDesc(name, help string) *prometheus.Desc {
	return prometheus.NewDesc("primus_redis_"+name, help, []string{"shard"}, nil)
}

func (c shardCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- shardsDesc
	for _, m := range shardMetrics {
		ch <- m.desc
	}
}

func (c shardCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.b.Stats()
	ch <- prometheus.MustNewConstMetric(shardsDesc, prometheus.GaugeValue, float64(st.ClusterShards))
	for _, sh := range st.Shards {
		for _, m := range shardMetrics {
			if m.current && !sh.Current {
				continue
			}
			ch <- prometheus.MustNewConstMetric(m.desc, m.kind, m.value(sh), sh.Addr)
		}
	}
}
