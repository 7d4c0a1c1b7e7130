package browsertest

import (
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/primusgo/primus/internal/nodefixture"
	"github.com/primusgo/primus/internal/serverapp"
)

//go:embed testdata/original-api.html
var originalAPIPage string

// servePage serves the legacy page, pointed at serverURL, from an origin of its own.
func servePage(t *testing.T, serverURL string) string {
	page := strings.ReplaceAll(originalAPIPage, "{{SERVER}}", serverURL)
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, page)
	}))
	t.Cleanup(ts.Close)
	return ts.URL
}

func seenIncludes(line string) string {
	return fmt.Sprintf(`window.legacy && window.legacy.seen.indexOf(%q) >= 0`, line)
}

// legacyFlow is what the page must show against any Primus 8 server with
// the rooms command protocol: connect, id, join, a room write published
// through the server's HTTP API.
func legacyFlow(t *testing.T, tab context.Context, publish func(data any)) {
	WaitFor(t, tab, wait, seenIncludes("open readyState=OPEN"), "open")
	WaitFor(t, tab, wait, seenIncludes("id length=21"), "the id callback")
	WaitFor(t, tab, wait, seenIncludes(`data {"ack":"joined","ok":true}`), "the join ack")
	publish(map[string]any{"news": "for legacy pages", "line": "a\u2028b"})
	WaitFor(t, tab, wait, `window.legacy.seen.some(function (l) {
		if (l.indexOf('data {') !== 0) return false;
		var d = JSON.parse(l.slice(5));
		return d.news === 'for legacy pages' && d.line === 'a\u2028b';
	})`, "the room write")
}

// TestOriginalAPIPage shows that a page written against the original client
// API works unchanged with our server: the same page is first checked
// against the original Node.js Primus 8.0.9 server (serving its own
// primus.js), then run against ours, which additionally restarts.
func TestOriginalAPIPage(t *testing.T) {
	browser := NewBrowser(t)

	t.Run("original Node server", func(t *testing.T) {
		node := nodefixture.StartServer(t, nodefixture.ServerOptions{})
		tab := NewTab(t, browser)
		Load(t, tab, servePage(t, node.URL()))
		legacyFlow(t, tab, func(data any) {
			ctx, cancel := context.WithTimeout(context.Background(), wait)
			defer cancel()
			if err := node.Publish(ctx, data, "legacy"); err != nil {
				t.Fatalf("publish: %v", err)
			}
		})
	})

	t.Run("our server", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		// The page lives on an origin of its own, which the server must allow.
		allow := []string{"-allowed-origins", "http://127.0.0.1:*"}
		stop := runServer(t, addr, allow...)
		tab := NewTab(t, browser)
		Load(t, tab, servePage(t, "http://"+addr))
		publish := func(data any) {
			body := fmt.Sprintf(`{"rooms":["legacy"],"data":%s}`, mustJSON(t, data))
			resp, err := http.Post("http://"+addr+"/api/publish", "application/json", strings.NewReader(body))
			if err != nil {
				t.Fatalf("publish: %v", err)
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("publish: %s", resp.Status)
			}
		}
		legacyFlow(t, tab, publish)

		// A restart: the page reconnects on its own and its open handler joins again.
		stop()
		WaitFor(t, tab, wait, seenIncludes("reconnect scheduled attempt=1"), "a scheduled reconnect")
		runServer(t, addr, allow...)
		WaitFor(t, tab, wait, seenIncludes("reconnected"), "the reconnect")
		WaitFor(t, tab, wait, `window.legacy.seen.filter(function (l) { return l === 'data {"ack":"joined","ok":true}'; }).length === 2`, "the second join ack")
		publish("after restart")
		WaitFor(t, tab, wait, seenIncludes(`data "after restart"`), "a room write after the restart")
		if got := Eval[[]string](t, tab, `window.legacy.seen.filter(function (l) { return l === 'end' || l.indexOf('error') === 0; })`); len(got) != 0 {
			t.Errorf("the page saw %v", got)
		}
		Screenshot(t, tab, "original-api-page")
	})

	// Cross-site WebSocket hijacking: by default a page from another origin
	// cannot connect (the browser sends its Origin; the server answers 403).
	t.Run("foreign page refused by default", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		runServer(t, addr)
		tab := NewTab(t, browser)
		Load(t, tab, servePage(t, "http://"+addr))
		WaitFor(t, tab, wait, seenIncludes("reconnect scheduled attempt=2"), "failed attempts")
		if got := Eval[[]string](t, tab, `window.legacy.seen.filter(function (l) { return l.indexOf('open') === 0 || l.indexOf('data') === 0; })`); len(got) != 0 {
			t.Fatalf("a foreign page connected: %v", got)
		}
		resp, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if !regexp.MustCompile(`primus_rejected_upgrades_total\{reason="origin"\} [1-9]`).Match(body) {
			t.Fatal("no upgrade was refused for its origin")
		}
	})
}

// runServer runs the standalone server on addr with args until the
// returned stop is called (or the test ends).
func runServer(t *testing.T, addr string, args ...string) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- serverapp.Main(ctx, append([]string{"-addr", addr, "-shutdown-timeout", "5s", "-lame-duck-delay", "0", "-lame-duck-duration", "0"}, args...),
			func(string) string { return "" }, discard{}, discard{}, func(net.Addr) { close(ready) })
	}()
	select {
	case <-ready:
	case err := <-done:
		cancel()
		t.Fatalf("server on %s: %v", addr, err)
	case <-time.After(wait):
		cancel()
		t.Fatalf("server on %s did not start", addr)
	}
	var stopped bool
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("server on %s: %v", addr, err)
		}
	}
	t.Cleanup(stop)
	return stop
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

func mustJSON(t *testing.T, v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
