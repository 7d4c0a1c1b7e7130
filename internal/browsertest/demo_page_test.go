package browsertest_test

import (
	"context"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/primusgo/primus"
	"github.com/primusgo/primus/internal/browsertest"
	"github.com/primusgo/primus/internal/serverapp"
)

// startApp serves a standalone-server App (as internal/serverapp's tests do)
// until the end of the test.
func startApp(t *testing.T, opts serverapp.Options) (*serverapp.App, *httptest.Server) {
	t.Helper()
	app, err := serverapp.New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ts := httptest.NewServer(app)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = app.Shutdown(ctx)
		ts.Close()
	})
	return app, ts
}

// TestDemoPageInBrowser drives the demo page in headless Chromium on two
// nodes of one cluster: a message typed on node A's page appears on node B's
// page, and the screenshot lands in testoutput/demo-page.png.
func TestDemoPageInBrowser(t *testing.T) {
	hub := primus.NewMemoryHub()
	_, tsA := startApp(t, serverapp.Options{Broker: hub.NewBroker()})
	_, tsB := startApp(t, serverapp.Options{Broker: hub.NewBroker()})

	browser := browsertest.NewBrowser(t)
	pageA := browsertest.NewTab(t, browser)
	pageB := browsertest.NewTab(t, browser)
	const wait = 10 * time.Second

	for _, p := range []struct {
		ctx context.Context
		ts  *httptest.Server
	}{{pageA, tsA}, {pageB, tsB}} {
		browsertest.Load(t, p.ctx, p.ts.URL+"/")
		browsertest.WaitFor(t, p.ctx, wait, `document.getElementById('status').textContent === 'open'`, "the page to connect")
		browsertest.Exec(t, p.ctx, `document.getElementById('room').value = 'lobby'; document.getElementById('join').click()`)
		browsertest.WaitFor(t, p.ctx, wait, `window.demo.joined() === 'lobby' && !document.getElementById('send').disabled`, "the join to be acknowledged")
	}

	browsertest.Exec(t, pageA, `document.getElementById('text').value = 'hello from node A'; document.getElementById('send').click()`)
	const seen = `Array.from(document.querySelectorAll('#log li')).some(li => li.textContent === '[lobby] hello from node A')`
	browsertest.WaitFor(t, pageB, wait, seen, "node B's page to show node A's message")
	browsertest.WaitFor(t, pageA, wait, seen, "node A's page to show its own message")
	browsertest.Exec(t, pageB, `document.getElementById('text').value = 'and back from B'; document.getElementById('send').click()`)
	browsertest.WaitFor(t, pageA, wait, `document.querySelector('#log').textContent.includes('[lobby] and back from B')`, "node A's page to show node B's reply")
	if browsertest.Screenshot(t, pageA, "demo-page") == "" {
		t.Error("no screenshot of the demo page")
	}
}
