package redisbroker

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/primusgo/primus"
	"github.com/primusgo/primus/internal/glob"
	"github.com/redis/rueidis"
)

// Errors returned by Publish (besides Redis errors and primus.ErrBrokerClosed).
var (
	// ErrNotConnected: the broker has not reached Redis since it started.
	ErrNotConnected = errors.New("redisbroker: not connected to Redis")
	// ErrTooLarge: the payload would exceed Config.MaxPayload.
	ErrTooLarge = errors.New("redisbroker: message exceeds MaxPayload")
	// ErrEmptyData: a message without data cannot be published.
	ErrEmptyData = errors.New("redisbroker: message has no data")
	// ErrExceptUnsupported: compat mode with CompatRejectExcept refused a
	// message with an except list.
	ErrExceptUnsupported = errors.New("redisbroker: compat mode cannot carry except lists")
)

// probeTag starts every probe payload; each broker adds a random secret.
const probeTag = "primus-probe:"

// Broker is a primus.Broker on Redis Pub/Sub (single instance, Sentinel, or
// Redis Cluster with sharded Pub/Sub), in native or compat
// (primus-redis-rooms 0.3) mode. Create it with New.
type Broker struct {
	cfg           Config
	log           *slog.Logger
	opt           rueidis.ClientOption
	sentinel      bool
	roomPrefix    string   // native: "<channel>:room:"
	multiChannel  string   // native: "<channel>:rooms", every node hears it
	nodeChannel   string   // "<channel>:node:<id>" (probes)
	compatChannel string   // compat: "<channel>.<id>", where this node publishes
	compatPattern string   // compat: "<channel>.*"
	probePrefix   string   // "primus-probe:<random>:": others cannot answer our probes
	cl            *cluster // cluster mode only

	client atomic.Pointer[redisClient]

	nodes *nodeLink      // node messages (nodes.go): set before Start
	hist  *brokerHistory // room history (history.go): set before Start

	// mu guards the room index and the handler.
	mu       sync.RWMutex
	rooms    map[string]*roomState
	toSub    map[string]struct{}  // native: wanted rooms not yet subscribed
	unwanted map[string]time.Time // native: rooms left, still subscribed, since when
	hosted   int                  // rooms with wanted == true
	// patterns are the wanted pattern rooms (primus.Config.Wildcards),
	// compiled; they are in rooms too.
	patterns   map[string]glob.Pattern
	patternsOn bool
	handler    primus.BrokerHandler
	started    bool

	wake        chan struct{} // the connection loop applies subscriptions now
	attempted   chan struct{} // closed when the first connection attempt is over
	attemptOnce sync.Once
	done        chan struct{}
	closing     atomic.Bool
	closeOnce   sync.Once
	wg          sync.WaitGroup

	queues    []chan inbound
	seed      maphash.Seed
	barrierMu sync.Mutex // keeps barriers in one order across queues

	clock      clock
	ticked     func() // tests: called after the connection loop handled a tick
	epoch      time.Time
	lastRecv   atomic.Int64 // nanoseconds since epoch of the last Pub/Sub message
	probeSeq   atomic.Uint64
	probeAcked atomic.Uint64
	msgSeq     atomic.Uint64

	stats counters
}

// redisClient holds the client for the atomic pointer (nil until the first
// connection succeeds).
type redisClient struct{ c rueidis.Client }

type roomState struct {
	// A room or, with patterns on, a pattern room (a name with '*'),
	// subscribed with PSUBSCRIBE.
	wanted     bool // the server declared local members
	subscribed bool // native: SUBSCRIBEd (or being) on the current connection
	// live: the subscription is confirmed on the current connection;
	// liveCh, when not nil, is closed when it is (history.go, waitLive).
	live   bool
	liveCh chan struct{}
}

// inbound is a Pub/Sub message on its way to a worker, or a worker's
// share of a multi-room-channel message (barrier set).
type inbound struct {
	channel, payload string
	pattern          string // the Redis pattern a pmessage matched, if any
	barrier          *barrier
	lead             bool // this worker delivers the barrier's message
}

var _ primus.Broker = (*Broker)(nil)

// New validates cfg and returns a broker. It does not connect: Start does,
// in the background, and keeps reconnecting for the broker's lifetime.
func New(cfg Config) (*Broker, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	opt, err := cfg.clientOption()
	if err != nil {
		return nil, err
	}
	b := &Broker{
		cfg:           cfg,
		log:           cfg.Logger.With("component", "redisbroker", "mode", cfg.Mode.String(), "node", cfg.NodeID),
		opt:           opt,
		sentinel:      len(cfg.SentinelAddrs) > 0,
		roomPrefix:    cfg.Channel + ":room:",
		multiChannel:  MultiRoomChannel(cfg.Channel),
		nodeChannel:   cfg.Channel + ":node:" + cfg.NodeID,
		compatChannel: cfg.Channel + "." + cfg.NodeID,
		compatPattern: cfg.Channel + ".*",
		probePrefix:   probeTag + strconv.FormatUint(rand.Uint64(), 36) + ":",
		rooms:         make(map[string]*roomState),
		toSub:         make(map[string]struct{}),
		unwanted:      make(map[string]time.Time),
		wake:          make(chan struct{}, 1),
		attempted:     make(chan struct{}),
		done:          make(chan struct{}),
		queues:        make([]chan inbound, cfg.Workers),
		seed:          maphash.MakeSeed(),
		clock:         realClock{},
		epoch:         time.Now(),
	}
	for i := range b.queues {
		b.queues[i] = make(chan inbound, cfg.QueueSize)
	}
	if len(cfg.ClusterAddrs) > 0 {
		b.cl = newCluster(b)
	}
	return b, nil
}

// NodeID is this node's id: the origin in native envelopes and the channel
// suffix in compat mode.
func (b *Broker) NodeID() string { return b.cfg.NodeID }

// Mode is the broker's wire mode.
func (b *Broker) Mode() Mode { return b.cfg.Mode }

// RoomChannel is the native-mode Redis channel of room under prefix.
func RoomChannel(prefix, room string) string { return prefix + ":room:" + room }

// NodeChannel is the Redis channel a node with nodeID listens on for its
// probes (both modes).
func NodeChannel(prefix, nodeID string) string { return prefix + ":node:" + nodeID }

// Start implements primus.Broker: it starts the receive workers and the
// connection loop and returns at once; if Redis is unreachable the broker
// keeps trying in the background (Publish fails meanwhile) until Close.
func (b *Broker) Start(h primus.BrokerHandler) error {
	if h == nil {
		return errors.New("redisbroker: nil handler")
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closing.Load() {
		return primus.ErrBrokerClosed
	}
	if b.started {
		return errors.New("redisbroker: already started")
	}
	b.started = true
	b.handler = h
	for _, q := range b.queues {
		b.wg.Add(1)
		go b.worker(q)
	}
	b.wg.Add(1)
	go b.run()
	b.startNodes()
	return nil
}

// Close implements primus.Broker: it closes the Redis connections and
// waits for the workers; no handler call starts after it returns. If a
// connection attempt is in flight, Close waits for it (at most DialTimeout).
func (b *Broker) Close() error {
	b.closeOnce.Do(func() {
		b.mu.Lock()
		b.closing.Store(true)
		b.mu.Unlock()
		close(b.done)
		b.wg.Wait()
		if b.cl != nil {
			b.cl.closeAll()
		}
		if cb := b.client.Swap(nil); cb != nil {
			cb.c.Close()
		}
		b.stats.connected.Store(false)
	})
	return nil
}

// Subscribe implements primus.Broker. It never blocks on the network: the
// connection loop applies the subscription (batched with others).
func (b *Broker) Subscribe(room string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	st := b.rooms[room]
	if st == nil {
		st = &roomState{}
		b.rooms[room] = st
	}
	if st.wanted {
		return
	}
	st.wanted = true
	b.hosted++
	if b.cfg.Mode == Compat {
		return
	}
	if b.cl != nil {
		p := b.cl.partOf(room)
		p.rooms[room] = st
		delete(p.unwanted, room)
		if !st.subscribed {
			p.toSub[room] = struct{}{}
			poke(p.wake)
		}
		return
	}
	delete(b.unwanted, room)
	if !st.subscribed {
		b.toSub[room] = struct{}{}
		b.wakeLoop()
	}
}

// Unsubscribe implements primus.Broker. In native mode the channel is
// unsubscribed lazily, UnsubscribeDelay later, if the room has not been
// subscribed again meanwhile; messages for it are ignored from now on.
func (b *Broker) Unsubscribe(room string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	st := b.rooms[room]
	if st == nil || !st.wanted {
		return
	}
	st.wanted = false
	b.hosted--
	// Nobody waits for an unwanted room. A subscription kept for
	// UnsubscribeDelay stays live: a join meanwhile finds it confirmed
	// (applyRooms marks it dead when the UNSUBSCRIBE goes out).
	setLive(st, st.live && st.subscribed)
	if b.cl != nil {
		p := b.cl.partOf(room)
		if !st.subscribed {
			delete(b.rooms, room)
			delete(p.rooms, room)
			delete(p.toSub, room)
			return
		}
		p.unwanted[room] = b.clock.Now()
		if b.cfg.UnsubscribeDelay == 0 {
			poke(p.wake)
		}
		return
	}
	if b.cfg.Mode == Compat || !st.subscribed {
		delete(b.rooms, room)
		delete(b.toSub, room)
		return
	}
	b.unwanted[room] = b.clock.Now()
	if b.cfg.UnsubscribeDelay == 0 {
		b.wakeLoop()
	}
}

func (b *Broker) wakeLoop() {
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

func (b *Broker) hosts(room string) bool {
	b.mu.RLock()
	st := b.rooms[room]
	ok := st != nil && st.wanted
	b.mu.RUnlock()
	return ok
}

// Publish implements primus.Broker. Native mode publishes one envelope on
// the channel of every distinct room of m (one pipelined round trip) when
// that costs Redis at most fanoutBudget bytes, and otherwise once on the
// multi-room channel; compat mode publishes one primus-redis-rooms payload
// per room on this node's channel, and fails with ErrTooLarge if they add
// up to more than MaxPayload. The call is bounded by ctx and
// CommandTimeout. Errors are counted in Stats.PublishErrors.
func (b *Broker) Publish(ctx context.Context, m *primus.Message) error {
	err := b.publish(ctx, m)
	if err != nil {
		b.stats.publishErrors.Add(1)
		return err
	}
	b.stats.published.Add(1)
	return nil
}

func (b *Broker) publish(ctx context.Context, m *primus.Message) error {
	if b.closing.Load() {
		return primus.ErrBrokerClosed
	}
	rooms := uniqueRooms(m.Rooms)
	if len(rooms) == 0 {
		return nil
	}
	if len(m.Data) == 0 {
		return ErrEmptyData
	}
	cb, err := b.connectedClient(ctx)
	if err != nil {
		return err
	}
	c := cb.c
	var cmds rueidis.Commands
	broadcast := false
	if b.cfg.Mode == Native {
		em := primus.Message{ID: m.ID, Origin: b.cfg.NodeID, Rooms: rooms, Except: m.Except, Data: m.Data, Skip: m.Skip}
		if em.ID == "" {
			em.ID = strconv.FormatUint(b.msgSeq.Add(1), 36)
		}
		size := envelopeSize(&em)
		if size > b.cfg.MaxPayload {
			return ErrTooLarge
		}
		payload := rueidis.BinaryString(AppendEnvelope(make([]byte, 0, size), &em))
		if b.cl != nil {
			// Sharded: a room's channel lives on the shard of its
			// partition's slot; a write over the budget goes once on the
			// service channel of its first room's partition, which every
			// node subscribes to.
			if len(rooms) > 1 && len(rooms)*size > fanoutBudget {
				broadcast = true
				cmds = append(cmds, c.B().Spublish().Channel(b.cl.partOf(rooms[0]).svc).Message(payload).Build())
			} else {
				cmds = make(rueidis.Commands, 0, len(rooms))
				for _, r := range rooms {
					cmds = append(cmds, c.B().Spublish().Channel(b.cl.partOf(r).roomPrefix+r).Message(payload).Build())
				}
			}
		} else if len(rooms) > 1 && len(rooms)*size > fanoutBudget {
			broadcast = true
			cmds = append(cmds, c.B().Publish().Channel(b.multiChannel).Message(payload).Build())
		} else {
			cmds = make(rueidis.Commands, 0, len(rooms))
			for _, r := range rooms {
				cmds = append(cmds, c.B().Publish().Channel(b.roomPrefix+r).Message(payload).Build())
			}
		}
	} else {
		payloads, err := compatPayloads(rooms, m.Data, b.cfg.MaxPayload)
		if err != nil {
			return err
		}
		if len(m.Except) > 0 {
			if b.cfg.CompatRejectExcept {
				return ErrExceptUnsupported
			}
			b.stats.exceptNotCarried.Add(1)
		}
		cmds = make(rueidis.Commands, 0, len(rooms))
		for _, p := range payloads {
			cmds = append(cmds, c.B().Publish().Channel(b.compatChannel).Message(rueidis.BinaryString(p)).Build())
		}
	}
	ctx, cancel := context.WithTimeout(ctx, b.cfg.CommandTimeout)
	defer cancel()
	if len(cmds) == 1 {
		if err := c.Do(ctx, cmds[0]).Error(); err != nil {
			return fmt.Errorf("redisbroker: publish: %w", err)
		}
		if broadcast {
			b.stats.multiRoomBroadcasts.Add(1)
		}
		return nil
	}
	for _, r := range c.DoMulti(ctx, cmds...) {
		if err := r.Error(); err != nil {
			return fmt.Errorf("redisbroker: publish: %w", err)
		}
	}
	return nil
}

// uniqueRooms returns rooms without duplicates, in first-occurrence order
// (rooms itself when it has none). It is linear: a write may target
// thousands of rooms.
func uniqueRooms(rooms []string) []string {
	if len(rooms) <= 8 {
		// Too few for a map to pay off.
		for i := 1; i < len(rooms); i++ {
			if slices.Contains(rooms[:i], rooms[i]) {
				return dedupe(rooms)
			}
		}
		return rooms
	}
	seen := make(map[string]struct{}, len(rooms))
	for i, r := range rooms {
		if _, dup := seen[r]; dup {
			out := slices.Clone(rooms[:i])
			for _, r := range rooms[i+1:] {
				if _, dup := seen[r]; !dup {
					seen[r] = struct{}{}
					out = append(out, r)
				}
			}
			return out
		}
		seen[r] = struct{}{}
	}
	return rooms
}

func dedupe(rooms []string) []string {
	out := make([]string, 0, len(rooms))
	for _, r := range rooms {
		if !slices.Contains(out, r) {
			out = append(out, r)
		}
	}
	return out
}

// onMessage is the Pub/Sub hook. It runs on the Redis connection's reading
// goroutine, so it only classifies and hands the message to a worker (a
// multi-room-channel message to every worker, see barrier); it never
// blocks.
func (b *Broker) onMessage(m rueidis.PubSubMessage) {
	b.lastRecv.Store(int64(b.clock.Now().Sub(b.epoch)))
	if b.takeNode(m) {
		return
	}
	if m.Channel == b.nodeChannel {
		if seq, ok := strings.CutPrefix(m.Message, b.probePrefix); ok {
			// Only a probe this broker sent counts (n <= probeSeq).
			if n, err := strconv.ParseUint(seq, 10, 64); err == nil && n > b.probeAcked.Load() && n <= b.probeSeq.Load() {
				b.probeAcked.Store(n)
			}
		}
		return
	}
	if b.closing.Load() || m.Channel == b.compatChannel {
		// Compat: our own publications come back through the pattern;
		// local members already have them.
		return
	}
	if len(m.Message) > b.cfg.MaxPayload {
		b.stats.oversized.Add(1)
		return
	}
	if m.Channel == b.multiChannel && b.cfg.Mode == Native {
		b.queueToAll(m.Message)
		return
	}
	if m.Pattern != "" && b.cfg.Mode == Native {
		b.enqueuePattern(m.Channel, m.Pattern, m.Message)
		return
	}
	b.enqueue(m.Channel, m.Message)
}

// enqueue hands a room channel's message to its worker without blocking.
func (b *Broker) enqueue(channel, payload string) { b.enqueuePattern(channel, "", payload) }

// enqueuePattern is enqueue for a message that matched pattern ("" for
// a plain subscription): on the channel's worker, so in order with the
// channel's other messages.
func (b *Broker) enqueuePattern(channel, pattern, payload string) {
	if b.closing.Load() {
		return
	}
	if len(payload) > b.cfg.MaxPayload {
		b.stats.oversized.Add(1)
		return
	}
	q := b.queues[b.queueIndex(channel)]
	select {
	case q <- inbound{channel: channel, payload: payload, pattern: pattern}:
	default:
		b.stats.dropped.Add(1)
		b.noteDropped(channel) // a history room reads it back
	}
}

// roomChannel is the native channel of room.
func (b *Broker) roomChannel(room string) string {
	if b.cl != nil {
		return b.cl.partOf(room).roomPrefix + room
	}
	return b.roomPrefix + room
}

// roomOf is the room of a native room channel.
func (b *Broker) roomOf(channel string) (string, bool) {
	if b.cl != nil {
		return b.cl.roomOf(channel)
	}
	return strings.CutPrefix(channel, b.roomPrefix)
}

// queueIndex is the worker queue of channel: one per channel keeps each
// room's messages in order.
func (b *Broker) queueIndex(channel string) int {
	return int(maphash.String(b.seed, channel) % uint64(len(b.queues)))
}

func (b *Broker) worker(q chan inbound) {
	defer b.wg.Done()
	for {
		select {
		case <-b.done:
			return
		case in := <-q:
			if b.closing.Load() {
				return
			}
			switch {
			case in.barrier != nil:
				b.handleBarrier(in)
			case b.cfg.Mode == Native:
				b.handleNative(in)
			default:
				b.handleCompat(in)
			}
		}
	}
}

// delivery is the message handed to the server, with room storage inline
// (one allocation per delivery).
type delivery struct {
	msg  primus.Message
	room [1]string
}

func (b *Broker) handleNative(in inbound) {
	room, ok := b.roomOf(in.channel)
	if !ok {
		b.stats.ignored.Add(1)
		return
	}
	env, err := decodeEnvelope(in.payload)
	if err != nil {
		b.stats.decodeErrors.Add(1)
		return
	}
	if env.origin == b.cfg.NodeID && env.offset == 0 {
		// Our own publication: delivered locally already. (A history
		// write is handed over anyway: the server delivers each offset
		// once, and so repairs a write whose reply was lost.)
		return
	}
	i := 0
	if len(env.rooms) > 0 {
		i = env.lead
		for i < len(env.rooms) && env.rooms[i] != room {
			i++
		}
		if i == len(env.rooms) {
			// Published on a channel that is not one of its target rooms.
			b.stats.decodeErrors.Add(1)
			return
		}
	} else if env.offset > 0 {
		b.stats.decodeErrors.Add(1) // a history write names its room
		return
	}
	if !b.takes(room, in.pattern) {
		b.stats.ignored.Add(1)
		return
	}
	d := &delivery{room: [1]string{room}}
	d.msg = primus.Message{
		ID:     env.id,
		Origin: env.origin,
		Rooms:  d.room[:],
		Except: env.except,
		Data:   bytesOf(env.data),
		Offset: env.offset,
		Epoch:  env.epoch,
		Skip:   env.rooms[:i:i],
	}
	// The copies of the earlier rooms (and the rooms to skip) reach their
	// members.
	b.deliver(&d.msg, d.msg.Skip)
}

func (b *Broker) handleCompat(in inbound) {
	cm, err := decodeCompat(in.payload)
	if err != nil {
		b.stats.decodeErrors.Add(1)
		return
	}
	if !cm.hasData || !b.hostsOrMatches(cm.room) {
		b.stats.ignored.Add(1)
		return
	}
	d := &delivery{room: [1]string{cm.room}}
	d.msg = primus.Message{
		Origin: strings.TrimPrefix(in.channel, b.cfg.Channel+"."),
		Rooms:  d.room[:],
		Data:   bytesOf(cm.data),
	}
	b.deliver(&d.msg, nil)
}

// deliver hands m to the server, with the rooms whose members other
// copies reach. b.handler is set before the workers start and never
// changes.
func (b *Broker) deliver(m *primus.Message, skip []string) {
	b.stats.received.Add(1)
	b.handler.HandleMessage(m, skip)
}

// connectedClient returns the Redis client. Right after Start it waits for
// the first connection attempt (fast on a reachable Redis) instead of
// failing the calls made at once; after that attempt failed, it is
// ErrNotConnected at once.
func (b *Broker) connectedClient(ctx context.Context) (*redisClient, error) {
	if cb := b.client.Load(); cb != nil {
		return cb, nil
	}
	select {
	case <-b.attempted:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-b.done:
		return nil, primus.ErrBrokerClosed
	}
	if cb := b.client.Load(); cb != nil {
		return cb, nil
	}
	return nil, ErrNotConnected
}
