// Package glob matches names against patterns in which '*' stands for any
// run of characters (including none) and every other character is
// literal: no classes, no escapes, anchored at both ends. Origins, room
// grants and wildcard rooms use it.
package glob

import "strings"

// Pattern is a compiled pattern: the literal parts between its stars.
type Pattern struct {
	parts []string // one part: no star
}

// Compile compiles pattern.
func Compile(pattern string) Pattern { return Pattern{parts: strings.Split(pattern, "*")} }

// FromParts builds the pattern parts[0]*parts[1]*...; the parts are literal
// even if they contain '*' (a substituted user name, say).
func FromParts(parts []string) Pattern { return Pattern{parts: parts} }

// Match reports whether s matches pattern (compile patterns used often).
func Match(pattern, s string) bool { return Compile(pattern).Match(s) }

// Literal reports whether the pattern has no star, and its text if so.
func (p Pattern) Literal() (string, bool) {
	if len(p.parts) == 1 {
		return p.parts[0], true
	}
	return "", false
}

// MatchesAll reports whether the pattern is made of stars only.
func (p Pattern) MatchesAll() bool {
	for _, part := range p.parts {
		if part != "" {
			return false
		}
	}
	return len(p.parts) > 1
}

// Match reports whether s matches the pattern. Taking each middle part at
// its leftmost place is optimal when '*' is the only wildcard, so there is
// no backtracking: the cost is that of the strings.Index calls, at worst
// O(len(s) * len(pattern)), whatever a hostile pattern looks like.
func (p Pattern) Match(s string) bool {
	if len(p.parts) == 1 {
		return s == p.parts[0]
	}
	first, last := p.parts[0], p.parts[len(p.parts)-1]
	if len(s) < len(first)+len(last) || !strings.HasPrefix(s, first) || !strings.HasSuffix(s, last) {
		return false
	}
	mid := s[len(first) : len(s)-len(last)]
	for _, part := range p.parts[1 : len(p.parts)-1] {
		i := strings.Index(mid, part)
		if i < 0 {
			return false
		}
		mid = mid[i+len(part):]
	}
	return true
}
