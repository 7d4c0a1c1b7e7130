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
}

func newMetrics(a *App) *metrics {
	m := &metrics{reg: prometheus.NewRegistry()}
	m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.publishes = prometheus.NewCounter(prometheus.CounterOpts{Name: "primus_publish_requests_total", Help: "Room writes requested by clients and the HTTP API."})
	m.commandErrors = prometheus.NewCounter(prometheus.CounterOpts{Name: "primus_command_errors_total", Help: "Client commands and API requests answered with an error."})
	m.reg.MustRegister(m.publishes, m.commandErrors)

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
	if rb, ok := a.opts.Broker.(*redisbroker.Broker); ok {
		m.reg.MustRegister(redisCollector{rb})
	}
	return m
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
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

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

var redisMetrics = []redisMetric{
	{redisDesc("connected", "1 while the Pub/Sub connection is up and subscribed."), prometheus.GaugeValue, func(s redisbroker.Stats) float64 { return b2f(s.Connected) }},
	{redisDesc("rooms", "Rooms this node hosts."), prometheus.GaugeValue, func(s redisbroker.Stats) float64 { return float64(s.Rooms) }},
	{redisDesc("subscribed_rooms", "Room channels subscribed (native) or hosted rooms (compat)."), prometheus.GaugeValue, func(s redisbroker.Stats) float64 { return float64(s.SubscribedRooms) }},
	{redisDesc("receive_queue_depth", "Received messages waiting for a worker."), prometheus.GaugeValue, func(s redisbroker.Stats) float64 { return float64(s.QueueDepth) }},
	{redisDesc("publishes_total", "Room writes published to Redis."), prometheus.CounterValue, func(s redisbroker.Stats) float64 { return float64(s.Published) }},
	{redisDesc("publish_errors_total", "Room writes that could not be published."), prometheus.CounterValue, func(s redisbroker.Stats) float64 { return float64(s.PublishErrors) }},
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
