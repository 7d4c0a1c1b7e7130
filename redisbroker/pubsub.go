package redisbroker

import (
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"strconv"
	"time"

	"github.com/primusgo/primus"
	"github.com/redis/rueidis"
)

var (
	errProbeFailed   = errors.New("redisbroker: probe did not come back")
	errMasterSwitch  = errors.New("redisbroker: sentinel switched master")
	errPubSubClosed  = errors.New("redisbroker: pub/sub connection closed")
	errClientMissing = errors.New("redisbroker: no client")
)

// tick is the connection loop's housekeeping period: lazy unsubscribes,
// probe deadlines and Sentinel master checks run on it.
const tick = 100 * time.Millisecond

// run is the connection loop: it creates the Redis client (retrying while
// Redis is unreachable), then keeps one Pub/Sub session alive, rebuilding it
// with jittered exponential backoff whenever it fails.
func (b *Broker) run() {
	defer b.wg.Done()
	bo := backoff{min: 50 * time.Millisecond, max: b.cfg.MaxBackoff}
	if b.cl != nil {
		b.runCluster(&bo)
		return
	}
	for !b.closing.Load() {
		if b.client.Load() == nil {
			if err := b.connect(); err != nil {
				b.stats.connectErrors.Add(1)
				b.log.Warn("redis unreachable", "err", err)
				if !b.sleep(bo.next()) {
					return
				}
				continue
			}
		}
		established, err := b.session(b.client.Load().c)
		b.stats.connected.Store(false)
		b.stats.subscribedRooms.Store(0)
		if b.closing.Load() {
			return
		}
		if established {
			b.stats.losses.Add(1)
			bo.reset()
			b.log.Warn("pub/sub connection lost", "err", err)
		} else {
			b.stats.connectErrors.Add(1)
			b.log.Warn("pub/sub connection failed", "err", err)
		}
		if !b.sleep(bo.next()) {
			return
		}
	}
}

// runCluster creates the cluster client (retrying while no seed answers),
// then runs the partitions until Close.
func (b *Broker) runCluster(bo *backoff) {
	for b.client.Load() == nil {
		if b.closing.Load() {
			return
		}
		if err := b.connect(); err != nil {
			b.stats.connectErrors.Add(1)
			b.log.Warn("redis cluster unreachable", "err", err)
			if !b.sleep(bo.next()) {
				return
			}
		}
	}
	b.cl.run()
}

// connect creates the Redis client. rueidis connects synchronously, and
// fails, when Redis is unreachable; once created, the client reconnects by
// itself for ordinary commands.
func (b *Broker) connect() error {
	defer b.attemptOnce.Do(func() { close(b.attempted) })
	c, err := rueidis.NewClient(b.opt)
	if err != nil {
		return err
	}
	if b.cl != nil && c.Mode() != rueidis.ClientModeCluster {
		c.Close()
		return errNotCluster
	}
	if b.closing.Load() {
		c.Close()
		return primus.ErrBrokerClosed
	}
	b.client.Store(&redisClient{c: c})
	return nil
}

// sleep waits d or until Close; it reports whether the broker is still open.
func (b *Broker) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-b.done:
		return false
	case <-t.C:
		return true
	}
}

// session runs one Pub/Sub connection: subscribe everything from the room
// index, then apply subscription changes, probe when idle and watch for a
// new Sentinel master until the connection fails or the broker closes.
func (b *Broker) session(c rueidis.Client) (established bool, err error) {
	if c == nil {
		return false, errClientMissing
	}
	master := b.masterAddr(c) // before Dedicate: a switch in between only costs one extra reconnect
	dc, _ := c.Dedicate()
	defer func() {
		// Close the connection rather than return it to the pool, and do
		// it aside: closing a black-holed connection can take a while.
		b.wg.Add(1)
		go func() { defer b.wg.Done(); dc.Close() }()
	}()
	closed := dc.SetPubSubHooks(rueidis.PubSubHooks{OnMessage: b.onMessage})
	select {
	case err := <-closed:
		return false, orClosed(err)
	default:
	}

	start := time.Now()
	n := b.resetSubscriptions()
	base := []rueidis.Completed{dc.B().Subscribe().Channel(b.nodeChannel).Build()}
	if b.cfg.Mode == Compat {
		base = append(base, dc.B().Psubscribe().Pattern(b.compatPattern).Build())
	} else {
		base = append(base, dc.B().Subscribe().Channel(b.multiChannel).Build())
		base = append(base, b.nodeSubscriptions(dc)...)
	}
	if err := b.do(dc, base...); err != nil {
		return false, err
	}
	if err := b.applyRooms(dc); err != nil {
		return false, err
	}
	took := time.Since(start)
	b.stats.lastResubscribe.Store(int64(took))
	b.stats.lastResubscribeRooms.Store(int64(n))
	if b.stats.connects.Add(1) > 1 {
		// What was written while no connection listened is read back
		// from the history rooms' streams.
		b.historyResync(nil)
	}
	b.stats.connected.Store(true)
	b.lastRecv.Store(int64(b.clock.Now().Sub(b.epoch)))
	b.log.Info("pub/sub connected", "rooms", n, "resubscribe", took, "master", master)
	b.nodeLinkUp()

	ticks, stop := b.clock.Ticker(tick)
	defer stop()
	var p prober
	for {
		select {
		case <-b.done:
			return true, nil
		case err := <-closed:
			return true, orClosed(err)
		case <-b.wake:
			if err := b.applyRooms(dc); err != nil {
				return true, err
			}
		case <-ticks:
			err := b.housekeeping(c, dc, master, &p)
			if b.ticked != nil {
				b.ticked()
			}
			if err != nil {
				return true, err
			}
		}
	}
}

// housekeeping is a tick's work: lazy unsubscribes, the Sentinel master
// check and the idle probe.
func (b *Broker) housekeeping(c rueidis.Client, dc rueidis.DedicatedClient, master string, p *prober) error {
	if err := b.applyRooms(dc); err != nil {
		return err
	}
	b.flushDropped()
	if b.sentinel {
		if now := b.masterAddr(c); now != "" && now != master {
			b.stats.masterSwitches.Add(1)
			b.log.Info("sentinel master changed", "from", master, "to", now)
			return errMasterSwitch
		}
	}
	return b.probe(c, p)
}

func orClosed(err error) error {
	if err == nil {
		return errPubSubClosed
	}
	return err
}

// masterAddr is the address the client currently sends commands to
// (the Sentinel-resolved master), or "".
func (b *Broker) masterAddr(c rueidis.Client) string {
	for addr := range c.Nodes() {
		return addr
	}
	return ""
}

// do runs commands on the Pub/Sub connection in one round trip, bounded
// by CommandTimeout plus 1 ms per subscribeBatch channels (a resubscription
// of a million rooms takes Redis a while).
func (b *Broker) do(dc rueidis.DedicatedClient, cmds ...rueidis.Completed) error {
	if len(cmds) == 0 {
		return nil
	}
	timeout := b.cfg.CommandTimeout + time.Duration(len(cmds))*time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for _, r := range dc.DoMulti(ctx, cmds...) {
		if err := r.Error(); err != nil {
			return err
		}
	}
	return nil
}

// resetSubscriptions marks every wanted room as to be subscribed (a new
// connection has none) and forgets the others. It returns the number of
// rooms to subscribe.
func (b *Broker) resetSubscriptions() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	clear(b.unwanted)
	clear(b.toSub)
	for room, st := range b.rooms {
		st.subscribed = false
		setLive(st, false)
		if !st.wanted {
			delete(b.rooms, room)
			continue
		}
		if b.cfg.Mode == Native {
			b.toSub[room] = struct{}{}
		}
	}
	return b.hosted
}

// applyRooms subscribes the rooms waiting for it and unsubscribes those
// left longer than UnsubscribeDelay ago, in batches of subscribeBatch
// channels per command, all in one round trip each way.
func (b *Broker) applyRooms(dc rueidis.DedicatedClient) error {
	if b.cfg.Mode != Native {
		return nil
	}
	now := b.clock.Now()
	b.mu.Lock()
	var subs, psubs, unsubs, subRooms []string
	for room := range b.toSub {
		if st := b.rooms[room]; st != nil && st.wanted && !st.subscribed {
			st.subscribed = true
			subRooms = append(subRooms, room)
			if b.isPattern(room) {
				psubs = append(psubs, b.patternChannel(room))
			} else {
				subs = append(subs, b.roomPrefix+room)
			}
		}
	}
	clear(b.toSub)
	for room, since := range b.unwanted {
		if now.Sub(since) >= b.cfg.UnsubscribeDelay {
			unsubs = append(unsubs, room)
			delete(b.unwanted, room)
			if st := b.rooms[room]; st != nil {
				setLive(st, false) // a join from now on waits for the new SUBSCRIBE
			}
		}
	}
	var unsubChannels, punsubs []string
	for _, room := range unsubs {
		if b.isPattern(room) {
			punsubs = append(punsubs, b.patternChannel(room))
		} else {
			unsubChannels = append(unsubChannels, b.roomPrefix+room)
		}
	}
	b.mu.Unlock()
	if len(subs) == 0 && len(psubs) == 0 && len(unsubs) == 0 {
		return nil
	}

	var cmds []rueidis.Completed
	for chunk := range slices.Chunk(subs, subscribeBatch) {
		cmds = append(cmds, dc.B().Subscribe().Channel(chunk...).Build())
	}
	for chunk := range slices.Chunk(psubs, subscribeBatch) {
		cmds = append(cmds, dc.B().Psubscribe().Pattern(chunk...).Build())
	}
	for chunk := range slices.Chunk(unsubChannels, subscribeBatch) {
		cmds = append(cmds, dc.B().Unsubscribe().Channel(chunk...).Build())
	}
	for chunk := range slices.Chunk(punsubs, subscribeBatch) {
		cmds = append(cmds, dc.B().Punsubscribe().Pattern(chunk...).Build())
	}
	if err := b.do(dc, cmds...); err != nil {
		return err
	}

	b.mu.Lock()
	defer b.mu.Unlock()
	b.stats.subscribedRooms.Add(int64(len(subs) + len(psubs) - len(unsubs)))
	for _, room := range subRooms {
		if st := b.rooms[room]; st != nil && st.subscribed {
			setLive(st, true)
		}
	}
	for _, room := range unsubs {
		st := b.rooms[room]
		if st == nil {
			continue
		}
		if st.wanted {
			// Joined again while the UNSUBSCRIBE was in flight.
			st.subscribed = false
			b.toSub[room] = struct{}{}
			b.wakeLoop()
			continue
		}
		delete(b.rooms, room)
	}
	return nil
}

// prober is the idle-probe state of one session.
type prober struct {
	outstanding bool
	seq         uint64
	sent        time.Time
}

// probe publishes a probe on this node's channel when nothing arrived for
// ProbeInterval, and fails the session when a probe does not come back
// within ProbeTimeout: a connection that is up but no longer delivers
// (black-holed, or left on a demoted master) is rebuilt.
func (b *Broker) probe(c rueidis.Client, p *prober) error {
	if b.cfg.ProbeInterval < 0 {
		return nil
	}
	now := b.clock.Now()
	if p.outstanding {
		if b.probeAcked.Load() >= p.seq {
			p.outstanding = false
			return nil
		}
		if now.Sub(p.sent) > b.cfg.ProbeTimeout {
			b.stats.probeFailures.Add(1)
			b.log.Warn("probe failed", "seq", p.seq, "sent", p.sent)
			return errProbeFailed
		}
		return nil
	}
	idle := now.Sub(b.epoch) - time.Duration(b.lastRecv.Load())
	if idle < b.cfg.ProbeInterval {
		return nil
	}
	p.seq = b.probeSeq.Add(1)
	p.outstanding = true
	p.sent = now
	b.stats.probesSent.Add(1)
	b.log.Debug("probe", "seq", p.seq, "idle", idle)
	payload := b.probePrefix + strconv.FormatUint(p.seq, 10)
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), b.cfg.ProbeTimeout)
		defer cancel()
		// An error here shows up as the probe not coming back.
		_ = c.Do(ctx, c.B().Publish().Channel(b.nodeChannel).Message(payload).Build()).Error()
	}()
	return nil
}

// backoff is capped exponential backoff with jitter: each delay is drawn
// from [d/2, d] where d doubles from min up to max.
type backoff struct {
	min, max time.Duration
	n        int
}

func (bo *backoff) next() time.Duration {
	d := bo.min << min(bo.n, 20)
	if d > bo.max || d <= 0 {
		d = bo.max
	} else {
		bo.n++
	}
	return d/2 + rand.N(d/2+1)
}

func (bo *backoff) reset() { bo.n = 0 }
