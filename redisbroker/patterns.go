package redisbroker

import (
	"errors"
	"strings"

	"github.com/primusgo/primus"
	"github.com/primusgo/primus/internal/glob"
)

// Wildcard rooms (primus.Config.Wildcards). In native mode a node with
// members of pattern room p PSUBSCRIBEs <prefix>:room:<p> (the rest of the
// name escaped, so '*' is the only wildcard): it then hears the writes to
// every matching room, and nothing more. One write can arrive more than
// once (as a message for a room the node hosts, and as a message per
// matching pattern); the node hands it to its server once, by this rule:
// the copy for a hosted room wins; otherwise the copy of the node's
// smallest matching pattern (the server adds the members of every joined
// pattern that matches). Patterns joined or left between two copies of one
// write (microseconds) can make a member miss it or get it twice, the same
// race as multi-room copies. In compat mode every node hears every write
// already. Cluster mode cannot carry them: sharded Pub/Sub has no
// patterns.

var _ primus.PatternBroker = (*Broker)(nil)

// EnablePatterns implements primus.PatternBroker.
func (b *Broker) EnablePatterns() error {
	if b.cl != nil {
		return errors.New("redisbroker: Redis Cluster's sharded Pub/Sub has no pattern subscriptions: wildcard rooms need a single Redis or Sentinel")
	}
	b.mu.Lock()
	b.patternsOn = true
	b.mu.Unlock()
	return nil
}

// SubscribePattern implements primus.PatternBroker.
func (b *Broker) SubscribePattern(pattern string) {
	b.mu.Lock()
	if b.patterns == nil {
		b.patterns = make(map[string]glob.Pattern)
	}
	b.patterns[pattern] = glob.Compile(pattern)
	b.mu.Unlock()
	b.Subscribe(pattern) // the subscription itself: PSUBSCRIBE, see applyRooms
}

// UnsubscribePattern implements primus.PatternBroker.
func (b *Broker) UnsubscribePattern(pattern string) {
	b.mu.Lock()
	delete(b.patterns, pattern)
	b.mu.Unlock()
	b.Unsubscribe(pattern)
}

// isPattern reports whether a subscribed name is a pattern room.
func (b *Broker) isPattern(name string) bool {
	return b.patternsOn && strings.Contains(name, "*")
}

// redisGlob escapes s for a Redis pattern, keeping '*' as the wildcard.
func redisGlob(s string, keepStars bool) string {
	var sb strings.Builder
	for _, c := range []byte(s) {
		switch c {
		case '?', '[', ']', '\\':
			sb.WriteByte('\\')
		case '*':
			if !keepStars {
				sb.WriteByte('\\')
			}
		}
		sb.WriteByte(c)
	}
	return sb.String()
}

// patternChannel is the Redis pattern of a pattern room.
func (b *Broker) patternChannel(pattern string) string {
	return redisGlob(b.roomPrefix, false) + redisGlob(pattern, true)
}

// takes reports whether a copy of a write for room that arrived through
// pattern ("" for a plain room message) is the one to hand over (see the
// rule above).
func (b *Broker) takes(room, pattern string) bool {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if st := b.rooms[room]; st != nil && st.wanted && !b.isPattern(room) {
		return pattern == "" // the hosted room's own copy
	}
	if pattern == "" {
		return false
	}
	smallest := ""
	for name, p := range b.patterns {
		if p.Match(room) && (smallest == "" || name < smallest) {
			smallest = name
		}
	}
	return smallest != "" && b.patternChannel(smallest) == pattern
}

// hostsOrMatches reports whether the node hosts room or a pattern matching
// it (compat mode, where every node hears every write).
func (b *Broker) hostsOrMatches(room string) bool {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if st := b.rooms[room]; st != nil && st.wanted {
		return true
	}
	for _, p := range b.patterns {
		if p.Match(room) {
			return true
		}
	}
	return false
}
