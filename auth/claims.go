package auth

import (
	"fmt"
	"strings"
	"time"

	"github.com/primusgo/primus"
	"github.com/primusgo/primus/internal/glob"
)

// Claims are a verified token's claims. Nothing changes them after Verify,
// so they are safe for concurrent use; the grants are compiled from the
// patterns at Verify, and editing Rooms or Publish changes none. The
// methods of a nil *Claims grant nothing.
type Claims struct {
	Subject   string    // sub
	Issuer    string    // iss, "" if absent
	Audience  []string  // aud
	ID        string    // jti, "" if absent
	ExpiresAt time.Time // exp
	NotBefore time.Time // nbf, zero if absent
	IssuedAt  time.Time // iat, zero if absent
	Rooms     []string  // rooms: the patterns as in the token
	Publish   []string  // publish: the patterns as in the token

	rooms, publish grants // compiled, with {sub} substituted
}

// CanJoin reports whether a pattern in rooms grants room.
func (c *Claims) CanJoin(room string) bool {
	return c != nil && c.rooms.match(room)
}

// CanPublish reports whether patterns in publish grant every one of rooms;
// it is false when rooms is empty.
func (c *Claims) CanPublish(rooms ...string) bool {
	if c == nil || len(rooms) == 0 {
		return false
	}
	for _, r := range rooms {
		if !c.publish.match(r) {
			return false
		}
	}
	return true
}

// ClaimsOf returns the Claims of a spark that a Verifier's Authenticate
// let in, or nil (whose methods grant nothing).
func ClaimsOf(s *primus.Spark) *Claims {
	if s == nil {
		return nil
	}
	id := s.Identity()
	if id == nil {
		return nil
	}
	c, _ := id.Claims.(*Claims)
	return c
}

// grants are compiled patterns: names without * in a set, the others as
// globs.
type grants struct {
	all   bool // a pattern of stars only: every room
	exact map[string]struct{}
	globs []glob.Pattern
}

// compileGrants compiles patterns for sub. The pattern is split at its
// stars before "{sub}" is replaced, so the subject's own characters are
// all literal.
func compileGrants(claim string, patterns []string, sub string) (grants, error) {
	var g grants
	for _, p := range patterns {
		n := strings.Count(p, "{sub}")
		if size := len(p) + n*(len(sub)-len("{sub}")); size > MaxPatternLength {
			return grants{}, invalid(nil, fmt.Sprintf("%s claim has a pattern of %d bytes (at most %d)", claim, size, MaxPatternLength))
		}
		parts := strings.Split(p, "*")
		for i := range parts {
			parts[i] = strings.ReplaceAll(parts[i], "{sub}", sub)
		}
		pattern := glob.FromParts(parts)
		if name, ok := pattern.Literal(); ok {
			if g.exact == nil {
				g.exact = make(map[string]struct{})
			}
			g.exact[name] = struct{}{}
		} else if pattern.MatchesAll() {
			g.all = true
		} else {
			g.globs = append(g.globs, pattern)
		}
	}
	return g, nil
}

func (g *grants) match(room string) bool {
	if room == "" {
		return false
	}
	if g.all {
		return true
	}
	if _, ok := g.exact[room]; ok {
		return true
	}
	for _, p := range g.globs {
		if p.Match(room) {
			return true
		}
	}
	return false
}
