// Package browsertest runs tests in a real headless Chromium through
// chromedp: it starts the browser, opens tabs, loads pages, waits for
// JavaScript conditions (polling in the page, no sleeps) and saves
// screenshots into testoutput/ at the repository root.
//
// Chromium is required: a missing browser fails the test (it never skips).
// The binary is /usr/bin/chromium unless PRIMUS_TEST_CHROMIUM names another.
package browsertest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// ChromiumPath is the browser binary used when PRIMUS_TEST_CHROMIUM is unset.
const ChromiumPath = "/usr/bin/chromium"

// DefaultTimeout bounds page loads, evaluations and waits that are given no
// timeout of their own.
const DefaultTimeout = 15 * time.Second

// NewBrowser starts a headless Chromium with a fresh profile in t.TempDir()
// and returns a chromedp context for its first tab. The browser is closed
// (and waited for) when the test and its subtests are done. Use NewTab for
// more tabs of the same browser, e.g. one per parallel subtest.
func NewBrowser(t testing.TB) context.Context {
	t.Helper()
	path := os.Getenv("PRIMUS_TEST_CHROMIUM")
	if path == "" {
		path = ChromiumPath
	}
	if fi, err := os.Stat(path); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
		t.Fatalf("browsertest: Chromium not found at %s (%v): the browser tests need it; "+
			"install Debian's chromium package or set PRIMUS_TEST_CHROMIUM to a Chromium binary", path, err)
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		// Timers drive the code under test: keep them unthrottled in every tab.
		chromedp.Flag("disable-background-timer-throttling", true),
		chromedp.Flag("disable-renderer-backgrounding", true),
		chromedp.Flag("disable-backgrounding-occluded-windows", true),
		chromedp.Flag("no-default-browser-check", true),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.Flag("mute-audio", true),
		chromedp.WindowSize(1000, 700),
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(allocCtx)
	if err := chromedp.Do(ctx); err != nil { // starts the browser
		cancel()
		cancelAlloc()
		t.Fatalf("browsertest: starting %s: %v", path, err)
	}
	t.Cleanup(func() {
		cctx, ccancel := context.WithTimeout(ctx, 10*time.Second)
		if err := chromedp.Cancel(cctx); err != nil && !errors.Is(err, context.Canceled) {
			t.Logf("browsertest: closing the browser: %v", err)
		}
		ccancel()
		cancel()
		cancelAlloc()
	})
	watchConsole(t, ctx)
	return ctx
}

// NewTab opens a new tab in the browser of ctx (from NewBrowser); it is closed
// when t is done. Tabs may be used from parallel subtests, one tab each.
func NewTab(t testing.TB, browser context.Context) context.Context {
	t.Helper()
	ctx, cancel := chromedp.NewContext(browser)
	if err := chromedp.Do(ctx); err != nil {
		cancel()
		t.Fatalf("browsertest: opening a tab: %v", err)
	}
	t.Cleanup(cancel)
	watchConsole(t, ctx)
	return ctx
}

// watchConsole collects the tab's console output and uncaught exceptions and
// logs them if the test fails.
func watchConsole(t testing.TB, ctx context.Context) {
	var (
		mu    sync.Mutex
		lines []string
	)
	add := func(s string) {
		mu.Lock()
		if len(lines) < 500 {
			lines = append(lines, s)
		}
		mu.Unlock()
	}
	_ = chromedp.Listen(ctx, func(ev any) {
		switch ev := ev.(type) {
		case *runtime.EventConsoleAPICalled:
			var parts []string
			for _, a := range ev.Args {
				if a.Value != nil {
					parts = append(parts, string(a.Value))
				} else {
					parts = append(parts, a.Description)
				}
			}
			add(fmt.Sprintf("console.%s: %s", ev.Type, strings.Join(parts, " ")))
		case *runtime.EventExceptionThrown:
			d := ev.ExceptionDetails
			msg := d.Text
			if d.Exception != nil && d.Exception.Description != "" {
				msg = d.Exception.Description
			}
			add(fmt.Sprintf("uncaught exception: %s (%s:%d)", msg, d.URL, d.LineNumber+1))
		}
	})
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		for _, l := range lines {
			t.Logf("browser: %s", l)
		}
	})
}

// Load navigates the tab to url and waits until the page has loaded.
func Load(t testing.TB, ctx context.Context, url string) {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, DefaultTimeout)
	defer cancel()
	if err := chromedp.Do(tctx, chromedp.Navigate(url)); err != nil {
		t.Fatalf("browsertest: loading %s: %v", url, err)
	}
}

// Eval evaluates the JavaScript expression in the tab and returns its value
// decoded into T (use chromedp.Void to ignore it). Promises are awaited.
func Eval[T any](t testing.TB, ctx context.Context, expr string) T {
	t.Helper()
	v, err := TryEval[T](ctx, expr)
	if err != nil {
		t.Fatalf("browsertest: evaluating %s: %v", expr, err)
	}
	return v
}

// TryEval is Eval returning the error instead of failing the test.
func TryEval[T any](ctx context.Context, expr string) (T, error) {
	tctx, cancel := context.WithTimeout(ctx, DefaultTimeout)
	defer cancel()
	return chromedp.Run(tctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
}

// WaitFor polls the JavaScript expression in the tab (every 10 ms) until it
// is truthy, and fails the test with the message (plus a screenshot and the
// value of DebugExpr if the page defines it) when timeout passes first.
func WaitFor(t testing.TB, ctx context.Context, timeout time.Duration, expr, msg string) {
	t.Helper()
	if err := TryWaitFor(ctx, timeout, expr); err != nil {
		Screenshot(t, ctx, "")
		t.Fatalf("browsertest: waiting %v for %s (%s): %v; page state: %s", timeout, msg, expr, err, debugState(ctx))
	}
}

// TryWaitFor is WaitFor returning the error instead of failing the test.
func TryWaitFor(ctx context.Context, timeout time.Duration, expr string) error {
	tctx, cancel := context.WithTimeout(ctx, timeout+5*time.Second)
	defer cancel()
	_, err := chromedp.Run(tctx, chromedp.Poll[chromedp.Void](expr,
		chromedp.WithPollingInterval(10*time.Millisecond),
		chromedp.WithPollingTimeout(timeout)))
	return err
}

// DebugExpr is evaluated for the failure message of WaitFor, if the page
// defines it (the harness page of this package does).
const DebugExpr = `typeof window.debugState === 'function' ? window.debugState() : ''`

func debugState(ctx context.Context) string {
	s, err := TryEval[string](ctx, DebugExpr)
	if err != nil {
		return "(unavailable: " + err.Error() + ")"
	}
	return s
}

// RepoRoot returns the root of the repository (the directory holding the
// library's go.mod, above this package's own module), searched upwards from
// the working directory.
func RepoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatalf("browsertest: %v", err)
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && strings.Contains(string(b), "module github.com/primusgo/primus\n") {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatalf("browsertest: no go.mod of github.com/primusgo/primus above the working directory")
		}
		dir = parent
	}
}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// Screenshot saves a PNG of the tab's viewport as testoutput/<name>.png at
// the repository root (name defaults to the test name) and returns the path.
// Failing to take it is logged, not fatal.
func Screenshot(t testing.TB, ctx context.Context, name string) string {
	t.Helper()
	if name == "" {
		name = t.Name()
	}
	dir := filepath.Join(RepoRoot(t), "testoutput")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Logf("browsertest: screenshot: %v", err)
		return ""
	}
	tctx, cancel := context.WithTimeout(ctx, DefaultTimeout)
	defer cancel()
	png, err := chromedp.Run(tctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Logf("browsertest: screenshot: %v", err)
		return ""
	}
	path := filepath.Join(dir, unsafeName.ReplaceAllString(name, "_")+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Logf("browsertest: screenshot: %v", err)
		return ""
	}
	t.Logf("screenshot: %s", path)
	return path
}
