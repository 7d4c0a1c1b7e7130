package primus

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/primusgo/primus/internal/glob"
)

// PatternBroker is a Broker that carries wildcard rooms (Config.Wildcards):
// a node with local members of a pattern room must receive the writes to
// every room the pattern matches, on whatever node they are made.
type PatternBroker interface {
	Broker
	// EnablePatterns is called once, before Start, by a server with
	// wildcard rooms; an error (the broker cannot carry them) fails New.
	EnablePatterns() error
	// SubscribePattern and UnsubscribePattern are Subscribe and
	// Unsubscribe for a pattern room, with the same rules.
	SubscribePattern(pattern string)
	UnsubscribePattern(pattern string)
}

// IsPattern reports whether a room name is a wildcard pattern: it holds a
// '*' (which matches any run of characters; every other character is
// literal). Only servers with Config.Wildcards treat it so.
func IsPattern(room string) bool { return strings.Contains(room, "*") }

// patternSet is the node's pattern rooms that have local members, compiled.
// The hot path reads count alone: without patterns, writes pay nothing.
type patternSet struct {
	count atomic.Int32
	mu    sync.RWMutex
	set   map[string]glob.Pattern
}

func (ps *patternSet) add(p string) {
	ps.mu.Lock()
	if ps.set == nil {
		ps.set = make(map[string]glob.Pattern)
	}
	ps.set[p] = glob.Compile(p)
	ps.count.Store(int32(len(ps.set)))
	ps.mu.Unlock()
}

func (ps *patternSet) remove(p string) {
	ps.mu.Lock()
	delete(ps.set, p)
	ps.count.Store(int32(len(ps.set)))
	ps.mu.Unlock()
}

func (ps *patternSet) has(p string) bool {
	ps.mu.RLock()
	defer ps.mu.RUnlock()
	_, ok := ps.set[p]
	return ok
}

// expand returns rooms with the local patterns that match any of them
// added (each once). It costs rooms x patterns matches, which
// Config.MaxPatterns bounds.
func (ps *patternSet) expand(rooms []string) []string {
	if ps.count.Load() == 0 || len(rooms) == 0 {
		return rooms
	}
	out := slices.Clip(rooms)
	ps.mu.RLock()
	defer ps.mu.RUnlock()
	for name, p := range ps.set {
		for _, r := range rooms {
			if r != name && p.Match(r) {
				out = append(out, name)
				break
			}
		}
	}
	return out
}

// checkPatterns refuses a join that would take the node past MaxPatterns
// distinct pattern rooms.
func (srv *Server) checkPatterns(rooms []string) error {
	ix := srv.index
	if !ix.wildcards || srv.cfg.MaxPatterns < 0 {
		return nil
	}
	n := int(ix.patterns.count.Load())
	for _, r := range rooms {
		if IsPattern(r) && !ix.patterns.has(r) {
			if n++; n > srv.cfg.MaxPatterns {
				return fmt.Errorf("%w (at most %d patterns on this node)", ErrTooManyRooms, srv.cfg.MaxPatterns)
			}
		}
	}
	return nil
}
