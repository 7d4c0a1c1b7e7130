package clientjs

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"
)

// compiledValues extracts the object literal Build wrote into the library.
func compiledValues(t *testing.T, lib []byte) map[string]any {
	t.Helper()
	m := regexp.MustCompile(`(?m)^\s*var compiled = (\{.*\}); //@@compiled@@$`).FindSubmatch(lib)
	if m == nil {
		t.Fatalf("compiled line not found in the built library")
	}
	var v map[string]any
	if err := json.Unmarshal(m[1], &v); err != nil {
		t.Fatalf("compiled values %s: %v", m[1], err)
	}
	return v
}

func TestBuildDefaults(t *testing.T) {
	v := compiledValues(t, Build(Options{}))
	if v["pathname"] != "/primus" || v["version"] != DefaultVersion || v["pingTimeout"] != false {
		t.Fatalf("defaults = %v", v)
	}
}

func TestBuildSubstitutesValues(t *testing.T) {
	cases := []struct {
		o        Options
		pathname string
		timeout  any
	}{
		{Options{Pathname: "/rt", PingInterval: 30 * time.Second, Version: "1.2.3"}, "/rt", float64(45000)},
		{Options{Pathname: "rt/ws", PingInterval: 1500 * time.Millisecond}, "/rt/ws", float64(2250)},
		{Options{PingInterval: 1501 * time.Millisecond}, "/primus", float64(2252)}, // 1501 + round(750.5)
		{Options{PingInterval: 1499 * time.Millisecond}, "/primus", float64(2249)}, // 1499 + round(749.5)
		{Options{PingInterval: -time.Second}, "/primus", false},
		{Options{Pathname: "/a</script>"}, "/a</script>", false},
	}
	for _, c := range cases {
		lib := Build(c.o)
		v := compiledValues(t, lib)
		if v["pathname"] != c.pathname || v["pingTimeout"] != c.timeout {
			t.Errorf("Build(%+v) compiled %v; want pathname %q pingTimeout %v", c.o, v, c.pathname, c.timeout)
		}
		if c.o.Version != "" && v["version"] != c.o.Version {
			t.Errorf("Build(%+v) version %v", c.o, v["version"])
		}
		if bytes.Contains(lib, []byte("</script>")) {
			t.Errorf("Build(%+v): </script> must not appear raw in the library", c.o)
		}
		// Everything but the compiled line is the embedded source.
		if len(lib)-len(source) != len(compiledLine.Find(lib))-len(compiledLine.Find(source)) {
			t.Errorf("Build(%+v) changed more than the compiled line", c.o)
		}
	}
}

func TestPingTimeout(t *testing.T) {
	for _, c := range []struct {
		in      time.Duration
		ms      int64
		enabled bool
	}{
		{0, 0, false},
		{30 * time.Second, 45000, true},
		{1500 * time.Millisecond, 2250, true},
		{1 * time.Millisecond, 2, true},
		{time.Microsecond, 2, true},
		{25 * time.Second, 37500, true},
	} {
		ms, ok := PingTimeout(c.in)
		if ms != c.ms || ok != c.enabled {
			t.Errorf("PingTimeout(%v) = %d, %v; want %d, %v", c.in, ms, ok, c.ms, c.enabled)
		}
	}
}

func TestSourceLooksLikeTheLibrary(t *testing.T) {
	for _, want := range []string{"root.Primus = Primus", "module.exports = Primus", "define.amd", "primus::pong::", "_primuscb"} {
		if !strings.Contains(string(source), want) {
			t.Errorf("primus.js lacks %q", want)
		}
	}
}

func do(t *testing.T, h http.Handler, method string, header http.Header) *http.Response {
	t.Helper()
	req := httptest.NewRequest(method, "/primus/primus.js", nil)
	for k, v := range header {
		req.Header[k] = v
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Result()
}

func TestHandler(t *testing.T) {
	o := Options{PingInterval: 1500 * time.Millisecond}
	h := Handler(o)
	want := Build(o)

	res := do(t, h, http.MethodGet, nil)
	body, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusOK || !bytes.Equal(body, want) {
		t.Fatalf("GET: status %d, %d bytes; want 200 and the built library (%d bytes)", res.StatusCode, len(body), len(want))
	}
	if ct := res.Header.Get("Content-Type"); ct != "text/javascript; charset=utf-8" {
		t.Errorf("Content-Type %q", ct)
	}
	if cc := res.Header.Get("Cache-Control"); !strings.Contains(cc, "max-age=") {
		t.Errorf("Cache-Control %q", cc)
	}
	etag := res.Header.Get("ETag")
	if !regexp.MustCompile(`^"[0-9a-f]{32}"$`).MatchString(etag) {
		t.Fatalf("ETag %q is not a strong hash tag", etag)
	}

	// Same options, same bytes, same tag; other options, other tag.
	if e := do(t, Handler(o), http.MethodGet, nil).Header.Get("ETag"); e != etag {
		t.Errorf("ETag not stable: %q vs %q", e, etag)
	}
	if e := do(t, Handler(Options{PingInterval: time.Second}), http.MethodGet, nil).Header.Get("ETag"); e == etag {
		t.Errorf("ETag %q does not change with the content", e)
	}

	for _, inm := range []string{etag, `"x", ` + etag, "W/" + etag, "*"} {
		res = do(t, h, http.MethodGet, http.Header{"If-None-Match": {inm}})
		body, _ = io.ReadAll(res.Body)
		if res.StatusCode != http.StatusNotModified || len(body) != 0 {
			t.Errorf("If-None-Match %s: status %d, %d bytes; want 304, empty", inm, res.StatusCode, len(body))
		}
		if res.Header.Get("ETag") != etag {
			t.Errorf("304 without the ETag")
		}
	}
	res = do(t, h, http.MethodGet, http.Header{"If-None-Match": {`"other"`}})
	if res.StatusCode != http.StatusOK {
		t.Errorf("stale If-None-Match: status %d", res.StatusCode)
	}

	res = do(t, h, http.MethodHead, nil)
	body, _ = io.ReadAll(res.Body)
	if res.StatusCode != http.StatusOK || len(body) != 0 || res.Header.Get("Content-Length") != itoa(len(want)) {
		t.Errorf("HEAD: status %d, body %d bytes, Content-Length %q", res.StatusCode, len(body), res.Header.Get("Content-Length"))
	}

	for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodOptions} {
		res = do(t, h, m, nil)
		if res.StatusCode != http.StatusMethodNotAllowed || res.Header.Get("Allow") != "GET, HEAD" {
			t.Errorf("%s: status %d, Allow %q", m, res.StatusCode, res.Header.Get("Allow"))
		}
	}
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}
