package primus_test

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/primusgo/primus"
	"github.com/primusgo/primus/internal/testkit"
)

func get(t *testing.T, ts *testServer, method, path string, header http.Header) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, ts.hs.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := ts.hs.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(body)
}

// upgradeHeader is a valid WebSocket handshake, for requests made with net/http.
func upgradeHeader() http.Header {
	return http.Header{
		"Connection":            {"Upgrade"},
		"Upgrade":               {"websocket"},
		"Sec-Websocket-Version": {"13"},
		"Sec-Websocket-Key":     {"dGhlIHNhbXBsZSBub25jZQ=="},
	}
}

func TestUpgradeRequired(t *testing.T) {
	ts := startServer(t, primus.Config{})
	for _, path := range []string{"/primus", "/primusXYZ", "/primus/anything?x=1"} {
		resp, body := get(t, ts, http.MethodGet, path, nil)
		if resp.StatusCode != http.StatusUpgradeRequired || body != "Upgrade Required" {
			t.Errorf("GET %s = %d %q, want 426 \"Upgrade Required\"", path, resp.StatusCode, body)
		}
		for k, want := range map[string]string{
			"Content-Type":  "text/plain",
			"Cache-Control": "no-store, no-cache, must-revalidate, max-age=0",
			"Pragma":        "no-cache",
		} {
			if got := resp.Header.Get(k); got != want {
				t.Errorf("GET %s: %s = %q, want %q", path, k, got, want)
			}
		}
	}
}

func TestOutsidePathname(t *testing.T) {
	ts := startServer(t, primus.Config{})
	for _, path := range []string{"/", "/other", "/prim"} {
		if resp, _ := get(t, ts, http.MethodGet, path, nil); resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s = %d, want 404", path, resp.StatusCode)
		}
		if resp, _ := get(t, ts, http.MethodGet, path, upgradeHeader()); resp.StatusCode != http.StatusNotFound {
			t.Errorf("upgrade %s = %d, want 404", path, resp.StatusCode)
		}
	}
}

func TestSpec(t *testing.T) {
	ts := startServer(t, primus.Config{})
	resp, body := get(t, ts, http.MethodGet, "/primus/spec", nil)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("GET /primus/spec = %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	// Byte for byte what Primus 8.0.9 answers (captures/http-surface.txt).
	want := `{"pingInterval":30000,"pathname":"/primus","version":"8.0.9","parser":"json","transformer":"websockets"}`
	if body != want {
		t.Fatalf("spec body\n got %s\nwant %s", body, want)
	}
}

func TestSpecConfigured(t *testing.T) {
	ts := startServer(t, primus.Config{Pathname: "realtime", PingInterval: 1500 * time.Millisecond})
	if p := ts.Pathname(); p != "/realtime" {
		t.Fatalf("Pathname() = %q, want /realtime", p)
	}
	_, body := get(t, ts, http.MethodGet, "/realtime/spec", nil)
	var spec map[string]any
	if err := json.Unmarshal([]byte(body), &spec); err != nil {
		t.Fatalf("spec %q: %v", body, err)
	}
	if spec["pingInterval"] != 1500.0 || spec["pathname"] != "/realtime" || spec["version"] != primus.ProtocolVersion ||
		spec["parser"] != "json" || spec["transformer"] != "websockets" {
		t.Fatalf("spec = %v", spec)
	}
	if resp, _ := get(t, ts, http.MethodGet, "/primus/spec", nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("old pathname answered %d", resp.StatusCode)
	}
	// The WebSocket lives under the configured pathname only.
	c := ts.dialPath(t, "/realtime/x?y=1", testkit.DialOptions{})
	c.Send(t, `"primus::id::"`)
	c.Expect(t, `"primus::id::`+ts.nextSpark(t).ID()+`"`)
	if c, _, err := ts.tryDial("/primus", testkit.DialOptions{}); err == nil {
		c.Close()
		t.Error("upgrade outside the pathname succeeded")
	}
}

func TestSpecHeartbeatDisabled(t *testing.T) {
	ts := startServer(t, primus.Config{PingInterval: -1})
	_, body := get(t, ts, http.MethodGet, "/primus/spec", nil)
	if !strings.Contains(body, `"pingInterval":false`) {
		t.Fatalf("spec %s, want pingInterval false", body)
	}
}

// The browser client is served by default, with the server's settings
// compiled in; a handler of one's own replaces it, NotFoundHandler removes it.
func TestClientLibraryRoute(t *testing.T) {
	ts := startServer(t, primus.Config{Pathname: "/rt", PingInterval: 10 * time.Second})
	resp, body := get(t, ts, http.MethodGet, "/rt/primus.js", nil)
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/javascript") ||
		resp.Header.Get("ETag") == "" || !strings.Contains(body, `"/rt"`) || !strings.Contains(body, "15000") {
		t.Errorf("default primus.js = %d %s, %d bytes (pathname or ping timeout missing?)", resp.StatusCode, resp.Header.Get("Content-Type"), len(body))
	}
	off := startServer(t, primus.Config{ClientLibrary: http.NotFoundHandler()})
	if resp, _ := get(t, off, http.MethodGet, "/primus/primus.js", nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("primus.js with NotFoundHandler = %d, want 404", resp.StatusCode)
	}
	lib := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
		_, _ = io.WriteString(w, "/* lib */")
	})
	ts2 := startServer(t, primus.Config{ClientLibrary: lib})
	resp, body = get(t, ts2, http.MethodGet, "/primus/primus.js", nil)
	if resp.StatusCode != 200 || body != "/* lib */" {
		t.Errorf("primus.js = %d %q", resp.StatusCode, body)
	}
}

func TestCORSPreflight(t *testing.T) {
	ts := startServer(t, primus.Config{})
	resp, _ := get(t, ts, http.MethodOptions, "/primus", http.Header{"Origin": {"http://example.com"}})
	if resp.StatusCode != 200 {
		t.Fatalf("OPTIONS = %d", resp.StatusCode)
	}
	for k, want := range map[string]string{
		"Access-Control-Allow-Origin":      "http://example.com",
		"Access-Control-Allow-Credentials": "true",
		"Access-Control-Max-Age":           "2592000",
		"Access-Control-Allow-Methods":     "GET, HEAD, PUT, POST, DELETE, OPTIONS",
	} {
		if got := resp.Header.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
}

func TestMiddleware(t *testing.T) {
	srv, err := primus.New(primus.Config{})
	if err != nil {
		t.Fatal(err)
	}
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusTeapot)
		_, _ = io.WriteString(w, "app:"+r.URL.Path)
	})
	hs := httptest.NewServer(srv.Middleware(next))
	t.Cleanup(func() {
		hs.Close()
		_ = srv.Shutdown(t.Context())
	})
	ts := &testServer{Server: srv, hs: hs}
	if resp, body := get(t, ts, http.MethodGet, "/api/x", nil); resp.StatusCode != http.StatusTeapot || body != "app:/api/x" {
		t.Errorf("outside = %d %q", resp.StatusCode, body)
	}
	if resp, _ := get(t, ts, http.MethodGet, "/primus", nil); resp.StatusCode != http.StatusUpgradeRequired {
		t.Errorf("/primus = %d", resp.StatusCode)
	}
	c := ts.dial(t, testkit.DialOptions{})
	c.Send(t, `"primus::id::"`)
	if f := c.Next(t); !strings.HasPrefix(string(f.Data), `"primus::id::`) {
		t.Fatalf("through middleware: %s", f)
	}
}

func TestBadHandshake(t *testing.T) {
	ts := startServer(t, primus.Config{})
	h := upgradeHeader()
	h.Set("Sec-Websocket-Version", "8")
	resp, _ := get(t, ts, http.MethodGet, "/primus", h)
	if resp.StatusCode != http.StatusUpgradeRequired || resp.Header.Get("Sec-Websocket-Version") != "13" {
		t.Errorf("version 8: %d, Sec-WebSocket-Version %q", resp.StatusCode, resp.Header.Get("Sec-Websocket-Version"))
	}
	h = upgradeHeader()
	h.Set("Sec-Websocket-Key", "short")
	if resp, _ := get(t, ts, http.MethodGet, "/primus", h); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("bad key: %d", resp.StatusCode)
	}
	if resp, _ := get(t, ts, http.MethodPost, "/primus", upgradeHeader()); resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST upgrade: %d", resp.StatusCode)
	}
	if n := ts.Stats().ConnectionsTotal; n != 0 {
		t.Errorf("ConnectionsTotal = %d", n)
	}
}

func TestNoSubprotocolNoCompression(t *testing.T) {
	ts := startServer(t, primus.Config{})
	h := upgradeHeader()
	h.Set("Sec-Websocket-Protocol", "chat")
	h.Set("Sec-Websocket-Extensions", "permessage-deflate; client_max_window_bits")
	c := ts.dial(t, testkit.DialOptions{Header: http.Header{"Sec-Websocket-Protocol": {"chat"}}})
	if p := c.Conn.Subprotocol(); p != "" {
		t.Errorf("subprotocol %q negotiated", p)
	}
	if e := c.Resp.Header.Get("Sec-Websocket-Extensions"); e != "" {
		t.Errorf("extensions %q negotiated", e)
	}
	if a := c.Resp.Header.Get("Sec-Websocket-Accept"); a == "" {
		t.Error("no Sec-WebSocket-Accept")
	}
}

func TestAuthorize(t *testing.T) {
	var seen string
	ts := startServer(t, primus.Config{Authorize: func(r *http.Request) error {
		switch tok := r.URL.Query().Get("token"); tok {
		case "good":
			seen = tok
			return nil
		case "forbidden":
			return &primus.AuthError{Status: http.StatusForbidden, Message: "not for you", Authenticate: `Bearer realm="x"`}
		}
		return errors.New("bad token <x>")
	}})
	c, resp, err := ts.tryDial("/primus?token=bad", testkit.DialOptions{})
	if err == nil {
		c.Close()
		t.Fatal("unauthorized dial succeeded")
	}
	if resp == nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("response %v, want 401", resp)
	}
	body, _ := io.ReadAll(resp.Body)
	var msg map[string]string
	if err := json.Unmarshal(body, &msg); err != nil || msg["error"] != "bad token <x>" || len(msg) != 1 {
		t.Errorf("body %q, want {\"error\":\"bad token <x>\"}", body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}

	c, resp, err = ts.tryDial("/primus?token=forbidden", testkit.DialOptions{})
	if err == nil {
		c.Close()
		t.Fatal("forbidden dial succeeded")
	}
	if resp.StatusCode != http.StatusForbidden || resp.Header.Get("Www-Authenticate") != `Bearer realm="x"` {
		t.Errorf("forbidden: %d %q", resp.StatusCode, resp.Header.Get("Www-Authenticate"))
	}
	body, _ = io.ReadAll(resp.Body)
	if string(body) != `{"error":"not for you"}` {
		t.Errorf("forbidden body %q", body)
	}
	if n := ts.Stats().ConnectionsTotal; n != 0 {
		t.Fatalf("rejected upgrades made %d sparks", n)
	}

	ts.dialPath(t, "/primus?token=good", testkit.DialOptions{})
	ts.nextSpark(t)
	if seen != "good" {
		t.Fatal("Authorize did not see the accepted request")
	}
}

func TestCheckOrigin(t *testing.T) {
	ts := startServer(t, primus.Config{CheckOrigin: func(r *http.Request) bool {
		return r.Header.Get("Origin") == "https://good.example"
	}})
	c, resp, err := ts.tryDial("", testkit.DialOptions{Header: http.Header{"Origin": {"https://evil.example"}}})
	if err == nil {
		c.Close()
		t.Fatal("dial from a bad origin succeeded")
	}
	if resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("response %v, want 403", resp)
	}
	ts.dial(t, testkit.DialOptions{Header: http.Header{"Origin": {"https://good.example"}}})
	ts.nextSpark(t)
}
