package browsertest

import (
	"context"
	"fmt"
	"html"
	"testing"

	"github.com/chromedp/chromedp"
)

// HarnessJS records the events of Primus clients in the page:
//
//	track(primus, [label])  listen to every public event of the client and
//	                        record {client, ev, args, t, readyState} in
//	                        window.events (errors become {error: message},
//	                        ArrayBuffers {arraybuffer: [bytes]}, reconnect
//	                        opts {attempt, retries, scheduled, duration});
//	                        returns the client
//	evs(name, [label])      the recorded events of that name
//	count(name, [label])    how many
//	names([label])          the sequence of recorded event names
//	debugState()            a JSON dump of everything (used by WaitFor)
//
// Each event is also appended to <pre id="log"> so that screenshots show it.
const HarnessJS = `(function () {
  var log = window.events = [];
  var names = ['open', 'data', 'error', 'close', 'end', 'offline', 'online', 'timeout',
    'reconnect scheduled', 'reconnect', 'reconnected', 'reconnect timeout',
    'reconnect failed', 'readyStateChange', 'destroy', 'incoming::ping'];
  function simplify(v) {
    if (v instanceof Error) return { error: v.message };
    if (v instanceof ArrayBuffer) return { arraybuffer: Array.prototype.slice.call(new Uint8Array(v)) };
    if (typeof Event !== 'undefined' && v instanceof Event) return { event: v.type };
    if (v && typeof v === 'object' && 'attempt' in v && 'scheduled' in v && 'retries' in v) {
      return { attempt: v.attempt, retries: v.retries, scheduled: v.scheduled, duration: v.duration };
    }
    return v;
  }
  function show(v) { try { return JSON.stringify(v); } catch (e) { return String(v); } }
  window.track = function (p, label) {
    label = label || 'p';
    names.forEach(function (name) {
      p.on(name, function () {
        var args = Array.prototype.map.call(arguments, simplify);
        log.push({ client: label, ev: name, args: args, t: Date.now(), readyState: p.readyState });
        var pre = document.getElementById('log');
        if (pre) pre.textContent += new Date().toISOString().slice(11, 23) + ' ' + label + ' ' + name + ' ' + show(args) + '\n';
      });
    });
    return p;
  };
  window.evs = function (name, label) {
    return log.filter(function (e) { return e.ev === name && (!label || e.client === label); });
  };
  window.count = function (name, label) { return window.evs(name, label).length; };
  window.names = function (label) {
    return log.filter(function (e) { return !label || e.client === label; }).map(function (e) { return e.ev; });
  };
  window.debugState = function () {
    return show(log.map(function (e) { return e.client + ':' + e.ev + ' ' + show(e.args); }));
  };
})();`

// PageHTML returns a test page that loads the client library from scriptURL
// and defines HarnessJS.
func PageHTML(scriptURL string) string {
	return fmt.Sprintf(`<!doctype html>
<html><head><meta charset="utf-8"><title>primus browser test</title>
<style>body { font: 13px monospace; margin: 12px; } h1 { font-size: 15px; }</style>
<script src="%s"></script>
<script>%s</script>
</head><body><h1>primus browser test</h1><pre id="log"></pre></body></html>
`, html.EscapeString(scriptURL), HarnessJS)
}

// Exec runs JavaScript statements in the tab, ignoring their value.
func Exec(t testing.TB, ctx context.Context, js string) {
	t.Helper()
	Eval[chromedp.Void](t, ctx, js+"\n;undefined")
}
