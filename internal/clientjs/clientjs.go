// Package clientjs holds the browser client library that a Primus server
// serves at <pathname>/primus.js, and builds it with the server's settings
// compiled in (pathname, version, ping timeout).
//
// The library (primus.js, embedded) is a dependency-free rewrite of the
// Primus 8 client for the websockets transformer and the JSON parser; its
// header comment lists what it supports and where it deliberately differs.
package clientjs

import (
	"bytes"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"regexp"
	"strings"
	"time"
)

//go:embed primus.js
var source []byte

// DefaultPathname is the pathname used when Options.Pathname is empty.
const DefaultPathname = "/primus"

// DefaultVersion is the version reported when Options.Version is empty: the
// Primus release whose protocol the library speaks.
const DefaultVersion = "8.0.9"

// Options are the server settings compiled into the library.
type Options struct {
	// Pathname is where the server accepts connections; the client ignores
	// the path of the URL it is given and uses this one. Default "/primus";
	// a missing leading "/" is added.
	Pathname string
	// PingInterval is the server's heartbeat interval. The client's default
	// pingTimeout is PingInterval + round(PingInterval/2) in milliseconds;
	// 0 (or negative) means heartbeats are disabled and the client has no
	// ping timeout by default.
	PingInterval time.Duration
	// Version is exposed as Primus.version. Default DefaultVersion.
	Version string
}

// compiledLine matches the one line of primus.js that carries the compiled
// values; Build replaces the object literal on it.
var compiledLine = regexp.MustCompile(`(?m)^(\s*var compiled = )\{.*\}(; //@@compiled@@)$`)

// PingTimeout returns the client's default ping timeout in milliseconds for
// a server ping interval, rounded like Primus (interval + round(interval/2)),
// and false when heartbeats are disabled.
func PingTimeout(interval time.Duration) (ms int64, enabled bool) {
	if interval <= 0 {
		return 0, false
	}
	p := interval.Milliseconds()
	if p == 0 {
		p = 1 // sub-millisecond intervals still enable heartbeats
	}
	return p + (p+1)/2, true // Math.round rounds halves up
}

// Build returns the client library with the values of o compiled in.
func Build(o Options) []byte {
	pathname := o.Pathname
	if pathname == "" {
		pathname = DefaultPathname
	}
	if !strings.HasPrefix(pathname, "/") {
		pathname = "/" + pathname
	}
	version := o.Version
	if version == "" {
		version = DefaultVersion
	}
	var pingTimeout any = false
	if ms, ok := PingTimeout(o.PingInterval); ok {
		pingTimeout = ms
	}
	values, err := json.Marshal(struct {
		Pathname    string `json:"pathname"`
		Version     string `json:"version"`
		PingTimeout any    `json:"pingTimeout"`
	}{pathname, version, pingTimeout})
	if err != nil {
		panic("clientjs: " + err.Error()) // strings, an int64 and a bool always encode
	}
	loc := compiledLine.FindSubmatchIndex(source)
	if loc == nil {
		panic("clientjs: primus.js lacks the //@@compiled@@ line")
	}
	out := make([]byte, 0, len(source)+len(values))
	out = append(out, source[:loc[3]]...) // up to and including "var compiled = "
	out = append(out, values...)
	out = append(out, source[loc[4]:]...) // from "; //@@compiled@@"
	return out
}

// Handler serves the library built from o (built once, when Handler is
// called) on any path it is mounted at: GET and HEAD only, with a strong ETag
// (SHA-256 of the bytes), If-None-Match -> 304, and
// Cache-Control "public, max-age=3600".
func Handler(o Options) http.Handler {
	body := Build(o)
	sum := sha256.Sum256(body)
	return &handler{body: body, etag: `"` + hex.EncodeToString(sum[:16]) + `"`}
}

type handler struct {
	body []byte
	etag string
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "Method Not Allowed", http.StatusMethodNotAllowed)
		return
	}
	hd := w.Header()
	hd.Set("Content-Type", "text/javascript; charset=utf-8")
	hd.Set("ETag", h.etag)
	hd.Set("Cache-Control", "public, max-age=3600")
	hd.Set("X-Content-Type-Options", "nosniff")
	// ServeContent answers If-None-Match (304), Range and HEAD for us.
	http.ServeContent(w, r, "primus.js", time.Time{}, bytes.NewReader(h.body))
}
