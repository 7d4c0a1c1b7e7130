package serverapp

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/go-json-experiment/json/jsontext"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/primusgo/primus"
	"github.com/primusgo/primus/internal/glob"
	"github.com/primusgo/primus/redisbroker"
)

// Room history in the command protocol (docs/history.md):
//
//	{"join":"r","recover":true,"ack":1}
//	    -> {"ack":1,"ok":true,"offset":N,"epoch":"E"}
//	{"join":"r","since":{"offset":N,"epoch":"E"},"ack":1}
//	    -> the writes after N, then {"ack":1,"ok":true,"recovered":true,"offset":M,"epoch":"E"}
//
// after which the spark receives r's writes as
// {"room":"r","offset":N,"epoch":"E","data":X}.

// recoverTimeout bounds a join with recovery (its history read, and the
// wait for the node's subscription).
const recoverTimeout = 10 * time.Second

var errRecoverOneRoom = errors.New("recover and since take one room")

// joinRecover runs a join with "recover" or "since".
func (a *App) joinRecover(s *primus.Spark, cmd *command) error {
	if len(cmd.Join) != 1 {
		return errRecoverOneRoom
	}
	ctx, cancel := context.WithTimeout(context.Background(), recoverTimeout)
	defer cancel()
	rec, err := s.JoinRecover(ctx, cmd.Join[0], cmd.Since)
	if err != nil {
		return err
	}
	b := cmd.reply[:0]
	if cmd.Since != nil {
		b = append(b, `,"recovered":`...)
		b = strconv.AppendBool(b, rec.Recovered)
	}
	b = append(b, `,"offset":`...)
	b = strconv.AppendUint(b, rec.Position.Offset, 10)
	b = append(b, `,"epoch":`...)
	b = strconv.AppendQuote(b, rec.Position.Epoch) // [0-9A-Za-z_-]: a JSON string as is
	cmd.reply = b
	return nil
}

// readSince reads {"offset":N,"epoch":"E"}: N a non-negative integer
// below 2^63, E at most primus.MaxEpochLength bytes of [0-9A-Za-z_-] (what
// brokers make epochs of); null is none.
func readSince(dec *jsontext.Decoder) (*primus.HistoryPosition, error) {
	bad := errors.New(`since must be {"offset":<integer>,"epoch":"<string>"}`)
	tok, err := dec.ReadToken()
	if err != nil {
		return nil, err
	}
	switch tok.Kind() {
	case 'n':
		return nil, nil
	case '{':
	default:
		return nil, bad
	}
	var pos primus.HistoryPosition
	for dec.PeekKind() != '}' {
		name, err := dec.ReadToken()
		if err != nil {
			return nil, err
		}
		switch name.String() {
		case "offset":
			v, err := dec.ReadValue()
			if err != nil {
				return nil, err
			}
			n, perr := strconv.ParseUint(string(v), 10, 63)
			if perr != nil {
				return nil, bad
			}
			pos.Offset = n
		case "epoch":
			t, err := dec.ReadToken()
			if err != nil {
				return nil, err
			}
			if t.Kind() != '"' || len(t.String()) > primus.MaxEpochLength || !epochChars(t.String()) {
				return nil, bad
			}
			pos.Epoch = t.String()
		default:
			if err := dec.SkipValue(); err != nil {
				return nil, err
			}
		}
	}
	if _, err := dec.ReadToken(); err != nil { // '}'
		return nil, err
	}
	return &pos, nil
}

// epochChars reports whether e is made of [0-9A-Za-z_-] only.
func epochChars(e string) bool {
	for i := 0; i < len(e); i++ {
		c := e[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// historyConfig is Options' history as a primus.Config.History, or nil.
func historyConfig(opts Options) func(string) primus.HistoryOptions {
	if opts.HistorySize <= 0 {
		return nil
	}
	h := primus.HistoryOptions{Size: opts.HistorySize, TTL: opts.HistoryTTL}
	if len(opts.HistoryRooms) == 0 {
		return func(string) primus.HistoryOptions { return h }
	}
	patterns := make([]glob.Pattern, len(opts.HistoryRooms))
	for i, p := range opts.HistoryRooms {
		patterns[i] = glob.Compile(p)
	}
	return func(room string) primus.HistoryOptions {
		for _, p := range patterns {
			if p.Match(room) {
				return h
			}
		}
		return primus.HistoryOptions{}
	}
}

// validateHistory checks the -history-* flags.
func (c *Flags) validateHistory() error {
	h := c.History
	switch {
	case h.Size < 0 || h.Size > primus.MaxHistorySize:
		return fmt.Errorf("-history-size: want 0 (no history) to %d, got %d", primus.MaxHistorySize, h.Size)
	case h.TTL < 0:
		return fmt.Errorf("-history-ttl: want a positive duration (0: %v), got %v", primus.DefaultHistoryTTL, h.TTL)
	case h.Size == 0 && (len(h.Rooms) > 0 || h.TTL > 0):
		return errors.New("-history-ttl and -history-rooms need -history-size")
	case h.Size > 0 && c.Redis.Mode == "compat":
		return errors.New("-history-size with -redis-mode compat: the primus-redis-rooms format has no offsets; use native mode")
	}
	return nil
}

// registerHistoryMetrics exports the history counters (server and Redis
// broker) when history is on.
func (a *App) registerHistoryMetrics() {
	if a.opts.HistorySize <= 0 {
		return
	}
	reg := a.metrics.reg
	stat := func(f func(primus.Stats) uint64) func() float64 {
		return func() float64 { return float64(f(a.Primus.Stats())) }
	}
	reg.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "primus_history_gaps_total",
			Help: "Writes to history rooms this node's members could not get: the history no longer had them when the node read back what it missed, or it was lost (a new epoch)."},
			stat(func(s primus.Stats) uint64 { return s.HistoryGaps })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "primus_history_resyncs_total",
			Help: "Reads of missed writes from a room's history (after a Redis reconnection, a gap in offsets)."},
			stat(func(s primus.Stats) uint64 { return s.HistoryResyncs })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "primus_history_rooms", Help: "History rooms with local members."},
			func() float64 { return float64(a.Primus.Stats().HistoryRooms) }),
	)
	recovered := prometheus.NewDesc("primus_history_recoveries_total", "Joins with a since position, by result: recovered true (everything missed replayed) or false.", []string{"recovered"}, nil)
	reg.MustRegister(statsCollector{a, []statsMetric{
		{recovered, prometheus.CounterValue, []string{"true"}, func(s primus.Stats) uint64 { return s.HistoryRecovered }},
		{recovered, prometheus.CounterValue, []string{"false"}, func(s primus.Stats) uint64 { return s.HistoryNotRecovered }},
	}})
	if rb, ok := a.opts.Broker.(*redisbroker.Broker); ok {
		rstat := func(f func(redisbroker.Stats) uint64) func() float64 {
			return func() float64 { return float64(f(rb.Stats())) }
		}
		reg.MustRegister(
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "primus_redis_history_writes_total", Help: "History writes stored and published."},
				rstat(func(s redisbroker.Stats) uint64 { return s.HistoryPublished })),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "primus_redis_history_reads_total", Help: "History reads (positions, resyncs, replays)."},
				rstat(func(s redisbroker.Stats) uint64 { return s.HistoryReads })),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "primus_redis_history_malformed_total", Help: "Stream entries left out of reads because they were not what the broker writes."},
				rstat(func(s redisbroker.Stats) uint64 { return s.HistoryMalformed })),
		)
	}
}
