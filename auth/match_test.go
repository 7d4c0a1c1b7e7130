package auth

import (
	"strings"
	"testing"
)

// refMatch is the obvious dynamic-programming glob match, over a pattern
// in which "{sub}" stands for sub and only the pattern's own stars are
// wildcards.
func refMatch(pattern, sub, name string) bool {
	type item struct {
		star bool
		b    byte
	}
	var items []item
	for i := 0; i < len(pattern); {
		switch {
		case pattern[i] == '*':
			items = append(items, item{star: true})
			i++
		case strings.HasPrefix(pattern[i:], "{sub}"):
			for j := 0; j < len(sub); j++ {
				items = append(items, item{b: sub[j]})
			}
			i += len("{sub}")
		default:
			items = append(items, item{b: pattern[i]})
			i++
		}
	}
	// m[j]: items[:i] match name[:j]
	m := make([]bool, len(name)+1)
	m[0] = true
	for _, it := range items {
		next := make([]bool, len(name)+1)
		for j := range next {
			if it.star {
				next[j] = m[j] || (j > 0 && next[j-1])
			} else {
				next[j] = j > 0 && m[j-1] && name[j-1] == it.b
			}
		}
		m = next
	}
	return m[len(name)]
}

func FuzzMatch(f *testing.F) {
	for _, s := range [][3]string{
		{"user:{sub}", "ann", "user:ann"},
		{"user:{sub}", "*", "user:x"},
		{"*a*b*", "", "xaybz"},
		{"a*a", "", "a"},
		{"**", "", ""},
		{"*{sub}*", "a*", "ba*c"},
		{"{sub}{sub}*", "{sub}", "{sub}{sub}"},
		{"日本*", "", "日本語"},
	} {
		f.Add(s[0], s[1], s[2])
	}
	f.Fuzz(func(t *testing.T, pattern, sub, name string) {
		if len(pattern) > 64 || len(sub) > 16 || len(name) > 128 {
			return
		}
		g, err := compileGrants("rooms", []string{pattern}, sub)
		if err != nil {
			t.Fatal(err)
		}
		want := name != "" && refMatch(pattern, sub, name)
		if got := g.match(name); got != want {
			t.Fatalf("pattern %q sub %q name %q: match %v, want %v", pattern, sub, name, got, want)
		}
	})
}
