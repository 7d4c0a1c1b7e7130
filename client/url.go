package client

import (
	"fmt"
	"net/url"
	"strings"
)

// endpoint turns the URL given to Dial into the WebSocket URL to connect to.
//
// Like the original client, a bare server URL ("http://host:8080" or with
// path "/") gets the Primus pathname, and the query string is kept (servers
// read it as spark.query, e.g. for tokens). A path under the pathname (the
// server routes by prefix, so "/primus/anything" is fine) is kept as given.
// Unlike the original, which silently replaces any other path with its
// compiled-in pathname, any other path is an error: in Go code it is more
// likely a mistake (or a proxy mount that Options.Pathname should state) than
// something to ignore.
func endpoint(raw, pathname string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", err
	}
	switch strings.ToLower(u.Scheme) {
	case "http", "ws":
		u.Scheme = "ws"
	case "https", "wss":
		u.Scheme = "wss"
	default:
		return "", fmt.Errorf("unsupported URL scheme %q (want http, https, ws or wss)", u.Scheme)
	}
	if u.Host == "" {
		return "", fmt.Errorf("URL %q has no host", raw)
	}
	switch {
	case u.Path == "" || u.Path == "/":
		u.Path, u.RawPath = pathname, ""
	case strings.HasPrefix(u.Path, pathname):
	default:
		return "", fmt.Errorf("URL path %q is not under the Primus pathname %q (set Options.Pathname for a server mounted elsewhere)", u.Path, pathname)
	}
	u.Fragment, u.RawFragment = "", ""
	return u.String(), nil
}
