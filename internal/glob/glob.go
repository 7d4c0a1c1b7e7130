// Package glob matches names against patterns in which '*' stands for any
// run of characters (including none) and every other character is
// literal: no classes, no escapes, anchored at both ends. Origins, room
// grants and wildcard rooms use it.
package glob

// Match reports whether s matches pattern. It never backtracks more than
// once per star, so a hostile pattern ("*a*a*a*...b") costs at most
// O(len(pattern) * len(s)).
func Match(pattern, s string) bool {
	p, i := 0, 0
	star, mark := -1, 0 // the last star seen in pattern, and where s was then
	for i < len(s) {
		switch {
		case p < len(pattern) && pattern[p] == '*':
			star, mark = p, i
			p++
		case p < len(pattern) && pattern[p] == s[i]:
			p++
			i++
		case star >= 0:
			// Let the last star take one more byte and retry from there.
			mark++
			p, i = star+1, mark
		default:
			return false
		}
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}
