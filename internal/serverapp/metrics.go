package serverapp

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/primusgo/primus"
)

// metrics exposes the server's counters to Prometheus. The primus package
// keeps plain atomic counters; they are read here at scrape time.
type metrics struct {
	reg           *prometheus.Registry
	publishes     prometheus.Counter
	commandErrors prometheus.Counter
}

// BrokerStats is implemented by brokers that export counters (the Redis
// broker does); they are exposed as primus_broker_<name>.
type BrokerStats interface {
	MetricValues() map[string]float64
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
	counter("primus_drops_total", "Frames dropped: spark closing, closed or overflowing.", func(s primus.Stats) float64 { return float64(s.Drops) })
	counter("primus_slow_consumer_ends_total", "Sparks ended because their send queue overflowed.", func(s primus.Stats) float64 { return float64(s.SlowConsumers) })
	counter("primus_heartbeat_timeouts_total", "Sparks ended for missing heartbeats.", func(s primus.Stats) float64 { return float64(s.HeartbeatTimeouts) })
	counter("primus_published_total", "Room writes handed to the broker.", func(s primus.Stats) float64 { return float64(s.Published) })
	counter("primus_publish_errors_total", "Room writes the broker failed to publish.", func(s primus.Stats) float64 { return float64(s.PublishErrors) })
	counter("primus_remote_messages_total", "Messages received from other nodes.", func(s primus.Stats) float64 { return float64(s.RemoteMessages) })
	if bs, ok := a.opts.Broker.(BrokerStats); ok {
		m.reg.MustRegister(brokerCollector{bs})
	}
	return m
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// brokerCollector exports a broker's counters as untyped metrics, so that
// the broker package does not import Prometheus.
type brokerCollector struct{ b BrokerStats }

func (c brokerCollector) Describe(chan<- *prometheus.Desc) {} // unchecked collector: names vary by broker

func (c brokerCollector) Collect(ch chan<- prometheus.Metric) {
	for name, v := range c.b.MetricValues() {
		desc := prometheus.NewDesc("primus_broker_"+name, "Broker metric "+name+".", nil, nil)
		ch <- prometheus.MustNewConstMetric(desc, prometheus.UntypedValue, v)
	}
}
