package redisbroker

import (
	"slices"
	"sync/atomic"

	"github.com/primusgo/primus"
)

// fanoutBudget bounds what a multi-room write may put into Redis as one
// envelope per room channel: rooms x envelope size. Such writes reach only
// the nodes hosting one of the rooms. Above it the envelope, which lists
// every room, goes once on the multi-room channel instead, so a write costs
// Redis its data plus its room names, never their product.
const fanoutBudget = 64 << 10

// MultiRoomChannel is the native-mode Redis channel under prefix that every
// node subscribes to: multi-room writes over the fan-out budget go there,
// once. ("rooms" cannot collide with "room:<room>" nor with "node:<id>",
// and compat nodes' pattern "<prefix>.*" does not match it.)
func MultiRoomChannel(prefix string) string { return prefix + ":rooms" }

// barrier carries one multi-room-channel message through every worker
// queue. Rooms are spread over workers by channel, so the message must be
// handed to the server after everything queued to any worker before it and
// before everything queued after it: each worker stops at the barrier until
// all workers that got it have arrived; the first worker it was queued to
// (the lead) then delivers it and releases the others.
type barrier struct {
	payload string
	// pending counts the workers yet to arrive, plus one held by the hook
	// until it has queued the barrier everywhere it could.
	pending  atomic.Int32
	allIn    chan struct{} // closed when pending reaches zero
	released chan struct{} // closed by the lead when it is done
	// missed lists the queues that were full. The hook writes it before
	// giving up its share of pending; the lead reads it after allIn.
	missed []int
}

func (br *barrier) arrive(n int) {
	if br.pending.Add(-int32(n)) == 0 {
		close(br.allIn)
	}
}

// queueToAll queues a multi-room-channel message to every worker without
// blocking (it runs in the Pub/Sub hook). A full queue does not get it: the
// message is then counted as dropped and the rooms of that queue's worker
// lose it, while the other rooms keep their order.
func (b *Broker) queueToAll(payload string) {
	origin, ok := envelopeOrigin(payload)
	if !ok {
		b.stats.decodeErrors.Add(1)
		return
	}
	if origin == b.cfg.NodeID {
		return // our own write, delivered locally already: no need to stop the workers
	}
	br := &barrier{payload: payload, allIn: make(chan struct{}), released: make(chan struct{})}
	br.pending.Store(int32(len(b.queues)) + 1)
	lead := true
	// Barriers must sit in the same order in every queue, or two workers
	// could wait for each other; hooks of an old and a new connection may
	// briefly overlap.
	b.barrierMu.Lock()
	for i, q := range b.queues {
		select {
		case q <- inbound{barrier: br, lead: lead}:
			lead = false
		default:
			br.missed = append(br.missed, i)
		}
	}
	b.barrierMu.Unlock()
	if len(br.missed) > 0 {
		b.stats.dropped.Add(1)
	}
	br.arrive(1 + len(br.missed))
}

// handleBarrier is a worker reaching a barrier. It returns when the
// message has been handled (or the broker closes: nobody waits forever).
func (b *Broker) handleBarrier(in inbound) {
	br := in.barrier
	br.arrive(1)
	if !in.lead {
		select {
		case <-br.released:
		case <-b.done:
		}
		return
	}
	defer close(br.released)
	m := b.decodeMultiRoom(br.payload) // while the others arrive
	if m == nil {
		return
	}
	select {
	case <-br.allIn:
	case <-b.done:
		return
	}
	if len(br.missed) > 0 {
		m.Rooms = slices.DeleteFunc(m.Rooms, func(room string) bool {
			return slices.Contains(br.missed, b.queueIndex(b.roomChannel(room)))
		})
		if len(m.Rooms) == 0 {
			return
		}
	}
	if b.closing.Load() {
		return
	}
	b.deliver(m, m.Skip)
}

// decodeMultiRoom decodes a multi-room-channel envelope into the message
// for the server: the listed rooms this node hosts, in list order, with the
// except list, to be handed over with no rooms to skip (the server then
// serves each local member once).
// It returns nil, after counting why, when there is nothing to deliver.
func (b *Broker) decodeMultiRoom(payload string) *primus.Message {
	env, err := decodeEnvelope(payload)
	if err != nil || len(env.rooms) <= env.lead || env.offset != 0 {
		// (History writes go on their room's channel only.)
		b.stats.decodeErrors.Add(1)
		return nil
	}
	rooms := b.hostedAmong(env.rooms[env.lead:]) // the decoder's own slice
	if len(rooms) == 0 {
		b.stats.ignored.Add(1)
		return nil
	}
	m := &primus.Message{
		ID:     env.id,
		Origin: env.origin,
		Rooms:  rooms,
		Except: env.except,
		Data:   bytesOf(env.data),
	}
	if env.lead > 0 {
		// The members of the rooms to skip get the write another way.
		m.Skip = b.hostedAmong(env.rooms[:env.lead])
	}
	return m
}

// hostedAmong filters list, in place, down to the rooms this node hosts.
// The lock is taken per chunk so that Subscribe, which the server calls
// under its room lock, never waits for a whole 10 000-room list.
func (b *Broker) hostedAmong(list []string) []string {
	n := 0
	for start := 0; start < len(list); start += 1024 {
		b.mu.RLock()
		for _, room := range list[start:min(start+1024, len(list))] {
			if st := b.rooms[room]; st != nil && st.wanted {
				list[n] = room
				n++
			}
		}
		b.mu.RUnlock()
	}
	return list[:n]
}
