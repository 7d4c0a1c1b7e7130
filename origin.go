package primus

import (
	"net/http"
	"net/url"
	"strings"

	"github.com/primusgo/primus/internal/glob"
)

// AllowOrigins returns a Config.CheckOrigin that closes cross-site
// WebSocket hijacking: an upgrade without an Origin header (not a browser)
// is allowed; a browser's Origin is allowed when its host is the request's
// Host, or when it matches one of patterns, else the upgrade gets 403.
//
// Patterns are compared with the lowercased origin; '*' matches any run of
// characters. A pattern with "://" is matched against the whole origin
// ("https://*.example.com"), one without against its host and port
// ("app.example.com", "*.example.com:8443"); an opaque origin ("null",
// sent by sandboxed frames and files) only matches a pattern "null" or
// "*". "*" alone allows every origin.
func AllowOrigins(patterns ...string) func(r *http.Request) bool {
	type pattern struct {
		glob.Pattern
		whole bool // matched against the whole origin, not its host
	}
	compiled := make([]pattern, len(patterns))
	for i, p := range patterns {
		p = strings.ToLower(strings.TrimSpace(p))
		compiled[i] = pattern{glob.Compile(p), strings.Contains(p, "://")}
	}
	return func(r *http.Request) bool {
		origin := r.Header.Get("Origin")
		if origin == "" {
			return true
		}
		origin = strings.ToLower(origin)
		host := ""
		if u, err := url.Parse(origin); err == nil && u.Host != "" {
			host = u.Host
			if strings.EqualFold(host, r.Host) {
				return true
			}
		}
		for _, p := range compiled {
			target := host
			if host == "" || p.whole {
				target = origin // an opaque origin ("null") is matched whole
			}
			if p.Match(target) {
				return true
			}
		}
		return false
	}
}
