package interop_test

import (
	"bufio"
	"net/http"
	"net/textproto"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/primusgo/primus/internal/serverapp"
)

// captureFile is where the original's answers were recorded (Primus 8.0.9
// with pingInterval 1500). The expectations below are copied from it; when
// the file is present, the test also checks they still agree with it.
const captureFile = "/work/shared/spec/captures/http-surface.txt"

// captured is one recorded answer: the status, the headers the test
// compares, and the body.
type captured struct {
	title  string
	status int
	header map[string]string
	body   string
}

var (
	upgradeRequired = captured{
		status: 426,
		header: map[string]string{
			"Content-Type":  "text/plain",
			"Cache-Control": "no-store, no-cache, must-revalidate, max-age=0",
			"Pragma":        "no-cache",
		},
		body: "Upgrade Required",
	}
	specAnswer = captured{
		title:  "GET /primus/spec",
		status: 200,
		header: map[string]string{"Content-Type": "application/json"},
		body:   `{"pingInterval":1500,"pathname":"/primus","version":"8.0.9","parser":"json","transformer":"websockets"}`,
	}
	httpSurface = []struct {
		path string
		want captured
	}{
		{"/primus", withTitle(upgradeRequired, "GET /primus (no upgrade)")},
		{"/primusXYZ", withTitle(upgradeRequired, "GET /primusXYZ (prefix match)")},
		{"/primus/spec", specAnswer},
	}
)

func withTitle(c captured, title string) captured {
	c.title = title
	return c
}

// The plain-HTTP answers under the pathname are the original's: 426 with
// its headers and body for any path with the prefix, and /spec byte for
// byte.
func TestHTTPSurface(t *testing.T) {
	t.Parallel()
	_, url := startApp(t, serverapp.Options{PingInterval: 1500 * time.Millisecond})
	for _, tc := range httpSurface {
		resp, body := httpDo(t, http.MethodGet, url+tc.path, nil)
		if resp.StatusCode != tc.want.status {
			t.Errorf("GET %s: status %d, want %d", tc.path, resp.StatusCode, tc.want.status)
		}
		for k, v := range tc.want.header {
			if got := resp.Header.Get(k); got != v {
				t.Errorf("GET %s: %s %q, want %q", tc.path, k, got, v)
			}
		}
		if string(body) != tc.want.body {
			t.Errorf("GET %s: body %q, want %q", tc.path, body, tc.want.body)
		}
	}
}

// TestHTTPSurfaceExpectations checks the expectations above against the
// capture of the original, where it is available.
func TestHTTPSurfaceExpectations(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile(captureFile)
	if os.IsNotExist(err) {
		t.Skipf("%s is not on this machine; the expectations were copied from it", captureFile)
	}
	if err != nil {
		t.Fatal(err)
	}
	sections := map[string]string{}
	for _, s := range strings.Split("\n"+string(raw), "\n### ")[1:] {
		title, rest, _ := strings.Cut(s, "\n")
		sections[title] = rest
	}
	for _, tc := range httpSurface {
		text, ok := sections[tc.want.title]
		if !ok {
			t.Errorf("no section %q in %s", tc.want.title, captureFile)
			continue
		}
		got := parseCapture(t, text)
		if got.status != tc.want.status || got.body != tc.want.body {
			t.Errorf("%s: captured %d %q, expected %d %q", tc.want.title, got.status, got.body, tc.want.status, tc.want.body)
		}
		for k, v := range tc.want.header {
			if got.header[k] != v {
				t.Errorf("%s: captured %s %q, expected %q", tc.want.title, k, got.header[k], v)
			}
		}
	}
}

// parseCapture reads a recorded response: status line, headers, a blank
// line and the body (de-chunked in the recording).
func parseCapture(t *testing.T, text string) captured {
	t.Helper()
	r := textproto.NewReader(bufio.NewReader(strings.NewReader(text)))
	line, err := r.ReadLine()
	if err != nil {
		t.Fatal(err)
	}
	var c captured
	proto, status, _ := strings.Cut(line, " ")
	code, _, _ := strings.Cut(status, " ")
	if !strings.HasPrefix(proto, "HTTP/1.1") || len(code) != 3 {
		t.Fatalf("status line %q", line)
	}
	c.status = int(code[0]-'0')*100 + int(code[1]-'0')*10 + int(code[2]-'0')
	h, err := r.ReadMIMEHeader()
	if err != nil {
		t.Fatalf("headers: %v", err)
	}
	c.header = map[string]string{}
	for k := range h {
		c.header[k] = h.Get(k)
	}
	var body strings.Builder
	for {
		l, err := r.ReadLine()
		if err != nil {
			break
		}
		body.WriteString(l)
		body.WriteByte('\n')
	}
	c.body = strings.TrimRight(body.String(), "\n")
	return c
}
