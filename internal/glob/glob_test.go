package glob

import (
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestMatch(t *testing.T) {
	for _, tt := range []struct {
		pattern, s string
		want       bool
	}{
		{"", "", true},
		{"", "a", false},
		{"*", "", true},
		{"*", "anything at all", true},
		{"chat:*", "chat:", true},
		{"chat:*", "chat:room", true},
		{"chat:*", "chat", false},
		{"chat:*", "xchat:room", false},
		{"*.example.com", "api.example.com", true},
		{"*.example.com", "example.com", false},
		{"*.example.com", "api.example.com.evil.io", false},
		{"a*b*c", "abc", true},
		{"a*b*c", "aXbYc", true},
		{"a*b*c", "aXbYcZ", false},
		{"a*b*c", "acb", false},
		{"user:42", "user:42", true},
		{"user:42", "user:420", false},
		{"**", "x", true},
		{"a?c", "abc", false}, // '?' is literal
		{"a?c", "a?c", true},
		{"[ab]", "a", false}, // no classes
		{"é*", "été", true},
		{"*a*a*a*a*a*b", strings.Repeat("a", 200), false},
	} {
		if got := Match(tt.pattern, tt.s); got != tt.want {
			t.Errorf("Match(%q, %q) = %v, want %v", tt.pattern, tt.s, got, tt.want)
		}
	}
}

func TestPatternParts(t *testing.T) {
	// Parts stay literal: a substituted "*" matches only itself.
	p := FromParts([]string{"user:*", ""})
	if !p.Match("user:*x") || p.Match("user:x") {
		t.Error("FromParts: a star inside a part was a wildcard")
	}
	if s, ok := Compile("a:b").Literal(); !ok || s != "a:b" {
		t.Error("Literal of a pattern without stars")
	}
	if _, ok := Compile("a*").Literal(); ok {
		t.Error("Literal of a pattern with a star")
	}
	for pattern, all := range map[string]bool{"*": true, "***": true, "": false, "a*": false, "*a": false} {
		if Compile(pattern).MatchesAll() != all {
			t.Errorf("MatchesAll(%q) = %v", pattern, !all)
		}
	}
}

// FuzzMatch compares Match with a regular expression built from the pattern.
func FuzzMatch(f *testing.F) {
	f.Add("a*b", "axxb")
	f.Add("*", "")
	f.Add("**a", "ba")
	f.Fuzz(func(t *testing.T, pattern, s string) {
		if len(pattern) > 64 || len(s) > 256 {
			return
		}
		parts := strings.Split(pattern, "*")
		for i, p := range parts {
			parts[i] = regexp.QuoteMeta(p)
		}
		re, err := regexp.Compile(`^(?s:` + strings.Join(parts, ".*") + `)$`)
		if err != nil {
			return // invalid UTF-8 in the pattern: regexp refuses it
		}
		// regexp matches runes, Match bytes: they agree on valid UTF-8.
		if want := re.MatchString(s); Compile(pattern).Match(s) != want && validUTF8(pattern, s) {
			t.Fatalf("Match(%q, %q) = %v, regexp says %v", pattern, s, !want, want)
		}
	})
}

func validUTF8(ss ...string) bool {
	for _, s := range ss {
		if !utf8.ValidString(s) {
			return false
		}
	}
	return true
}
