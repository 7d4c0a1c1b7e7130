package serverapp

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/golang-jwt/jwt/v5"

	"github.com/primusgo/primus/auth"
	"github.com/primusgo/primus/internal/testcert"
	"github.com/primusgo/primus/internal/testkit"
)

var hmacSecret = []byte("0123456789abcdef0123456789abcdef")

// token signs claims with key (an HMAC secret or a private key) using m.
func token(t *testing.T, m jwt.SigningMethod, key any, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(m, claims).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// userToken is an HS256 token for sub valid for ttl with the given grants.
func userToken(t *testing.T, sub string, ttl time.Duration, rooms, publish []string) string {
	return token(t, jwt.SigningMethodHS256, hmacSecret, jwt.MapClaims{
		"sub": sub, "exp": time.Now().Add(ttl).Unix(), "rooms": rooms, "publish": publish,
	})
}

// The case, through the command protocol with the default bounds:
// a 9 MB publish to a room of 20 members that read as fast as they can,
// followed by a small one, reaches every member; the publisher (a member)
// gets its own acks too; nobody is ended as a slow consumer.
func TestLargePublishKeepsReaders(t *testing.T) {
	app, ts := startApp(t, Options{})
	var members []*testClient
	for i := range 20 {
		c := dial(t, ts)
		c.send(`{"join":"r","ack":` + strconv.Itoa(i) + `}`)
		members = append(members, c)
	}
	for i, c := range members {
		c.expect(`{"ack":` + strconv.Itoa(i) + `,"ok":true}`)
	}
	big := strings.Repeat("x", 9_000_000)
	pub := members[0]
	pub.send(`{"publish":{"room":"r","data":"` + big + `"},"ack":1}`)
	pub.send(`{"publish":{"room":"r","data":"small"},"ack":2}`)
	for i, c := range members {
		want := []int{len(big) + 2, len(`"small"`)}
		if i == 0 {
			want = []int{len(big) + 2, len(`{"ack":1,"ok":true}`), len(`"small"`), len(`{"ack":2,"ok":true}`)}
		}
		for _, n := range want {
			if got := c.nextWithin(time.Minute); len(got) != n {
				t.Fatalf("member %d: %d bytes %.40s, want %d", i, len(got), got, n)
			}
		}
	}
	if st := app.Primus.Stats(); st.SlowConsumers != 0 || st.Connections != 20 {
		t.Fatalf("%d slow consumers, %d connections", st.SlowConsumers, st.Connections)
	}
}

func TestCommandRoomLimits(t *testing.T) {
	_, ts := startApp(t, Options{MaxRoomsPerSpark: 2, MaxRoomNameLength: 8})
	c := dial(t, ts)
	c.send(`{"join":["a","b","c"],"ack":1}`)
	c.expect(`{"ack":1,"error":"primus: too many rooms for one spark (at most 2)"}`)
	c.send(`{"join":["a","b"],"ack":2}`)
	c.expect(`{"ack":2,"ok":true}`)
	c.send(`{"join":"c","ack":3}`)
	c.expect(`{"ack":3,"error":"primus: too many rooms for one spark (at most 2)"}`)
	c.send(`{"publish":{"room":"123456789","data":1},"ack":4}`)
	c.expect(`{"ack":4,"error":"primus: invalid room name: 9 bytes, over the limit of 8"}`)

	// Lists are refused at their first entry over the bound, not decoded
	// whole (a 9 MB list of short names would be a million strings).
	_, lim := startApp(t, Options{MaxPublishRooms: 3, MaxExceptIDs: 2})
	c = dial(t, lim)
	huge := `"` + strings.Repeat(`r","`, 2_000_000) + `r"`
	for _, tt := range []struct{ send, want string }{
		{`{"join":[` + huge + `],"ack":1}`, `{"ack":1,"error":"primus: too many rooms for one spark (at most 1000)"}`},
		{`{"publish":{"rooms":["a","b","c","d"],"data":1},"ack":2}`, `{"ack":2,"error":"invalid command: rooms: more than 3 entries"}`},
		{`{"publish":{"room":"a","except":["x","y","z"],"data":1},"ack":3}`, `{"ack":3,"error":"invalid command: except: more than 2 entries"}`},
	} {
		c.send(tt.send)
		c.expect(tt.want)
	}
	if code, body := post(t, lim.URL+"/api/publish", "", `{"rooms":["a","b","c","d"],"data":1}`); code != 400 || !strings.Contains(body, "rooms: more than 3 entries") {
		t.Errorf("API publish to 4 rooms: %d %s", code, body)
	}
}

func TestHTTPPublishBodies(t *testing.T) {
	_, ts := startApp(t, Options{MaxLength: 1024})
	c := dial(t, ts)
	c.send(`{"join":"news","ack":1}`)
	c.expect(`{"ack":1,"ok":true}`)
	for _, tt := range []struct {
		body string
		code int
		want string
	}{
		{`{"room":"news","data":1} x`, 400, "trailing data after the JSON value"},
		{`{"room":"news","data":1}{"room":"news","data":2}`, 400, "trailing data"},
		{`{"room":"news","data":1}}`, 400, "invalid JSON body"},
		{`{"room":"news","data":"primus::server::close"}`, 400, "primus::"},
		{`{"room":"news","data":"` + strings.Repeat("x", 1100) + `"}`, 413, "maximum message length"},
		{`{"room":"news","data":3}` + strings.Repeat(" ", 2000), 413, "maximum message length"},
		{"{\"room\":\"news\",\"data\":4}\n\t ", 200, `{"ok":true}`},
	} {
		if code, body := post(t, ts.URL+"/api/publish", "", tt.body); code != tt.code || !strings.Contains(body, tt.want) {
			t.Errorf("POST %.50q: %d %s, want %d with %q", tt.body, code, body, tt.code, tt.want)
		}
	}
	c.expect(`4`) // only the well-formed request was published
}

// /api requests in progress are bounded: with one allowed, a request whose
// body never finishes makes the next one get 503 at once.
func TestAPIRequestBound(t *testing.T) {
	app, ts := startApp(t, Options{MaxAPIRequests: 1})
	conn, err := net.Dial("tcp", strings.TrimPrefix(ts.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// A body that announces 100 bytes and sends 10: the handler waits for the rest.
	if _, err := conn.Write([]byte("POST /api/publish HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"room\":\"a")); err != nil {
		t.Fatal(err)
	}
	var code int
	var body string
	if !testkit.Eventually(testkit.Timeout, func() bool { // until the stalled request holds the slot
		code, body = post(t, ts.URL+"/api/publish", "", `{"room":"r","data":1}`)
		return code == http.StatusServiceUnavailable && strings.Contains(body, "too many API requests")
	}) {
		t.Fatalf("second request: %d %s, want 503", code, body)
	}
	if n := counterValue(t, app, "primus_api_busy_total"); n < 1 {
		t.Fatalf("primus_api_busy_total = %v", n)
	}
	conn.Close()
	// The slot comes back when the stalled request ends.
	testkit.WaitFor(t, "the slot of the closed request to come back", func() bool {
		code, _ := post(t, ts.URL+"/api/publish", "", `{"room":"r","data":1}`)
		return code == 200
	})
}

// counterValue scrapes /metrics of app for one unlabelled sample.
func counterValue(t *testing.T, app *App, name string) float64 {
	t.Helper()
	mfs, err := app.metrics.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			m := mf.GetMetric()[0]
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

func wsURL(ts string, path string) string { return "ws" + strings.TrimPrefix(ts, "http") + path }

// With a verifier, a token is needed to connect, and its claims grant
// joins and publishes; everything else is refused with an error ack.
func TestTokenGrants(t *testing.T) {
	v, err := auth.New(auth.Config{HMACSecret: hmacSecret})
	if err != nil {
		t.Fatal(err)
	}
	app, ts := startApp(t, Options{Verifier: v})
	for name, tok := range map[string]string{
		"no token": "",
		"expired":  userToken(t, "ann", -time.Minute, []string{"*"}, nil),
		"wrong key": token(t, jwt.SigningMethodHS256, []byte("another secret of thirty-two bytes!!"), jwt.MapClaims{
			"sub": "ann", "exp": time.Now().Add(time.Hour).Unix(),
		}),
		"alg none": "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0." + strings.TrimRight(jwtSegment(`{"sub":"ann","exp":9999999999}`), "=") + ".",
		"no exp":   token(t, jwt.SigningMethodHS256, hmacSecret, jwt.MapClaims{"sub": "ann"}),
		"no sub":   token(t, jwt.SigningMethodHS256, hmacSecret, jwt.MapClaims{"exp": time.Now().Add(time.Hour).Unix()}),
	} {
		_, resp, err := tryDial(t, ts.URL+"/primus?token="+tok, testkit.DialOptions{})
		if err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s: %v %v, want 401", name, resp, err)
		}
	}
	tok := userToken(t, "ann", time.Hour, []string{"user:{sub}", "chat:*"}, []string{"chat:*"})
	ann, _, err := tryDial(t, ts.URL+"/primus?token="+tok, testkit.DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// The header works too.
	bob, _, err := tryDial(t, ts.URL+"/primus", testkit.DialOptions{Header: http.Header{
		"Authorization": {"Bearer " + userToken(t, "bob", time.Hour, []string{"chat:*"}, nil)},
	}})
	if err != nil {
		t.Fatal(err)
	}
	for _, step := range []struct {
		c          *testClient
		send, want string
	}{
		{ann, `{"join":["user:ann","chat:1"],"ack":1}`, `{"ack":1,"ok":true}`},
		{ann, `{"join":["chat:2","user:bob"],"ack":2}`, `{"ack":2,"error":"not allowed to join room \"user:bob\""}`},
		{ann, `{"join":"*","ack":3}`, `{"ack":3,"error":"not allowed to join room \"*\""}`},
		{bob, `{"join":"chat:1","ack":4}`, `{"ack":4,"ok":true}`},
		{bob, `{"publish":{"room":"chat:1","data":"from bob"},"ack":5}`, `{"ack":5,"error":"not allowed to publish to room \"chat:1\""}`},
		{ann, `{"publish":{"rooms":["chat:1","user:ann"],"data":"x"},"ack":6}`, `{"ack":6,"error":"not allowed to publish to room \"user:ann\""}`},
		{ann, `{"publish":{"room":"chat:1","data":"from ann"},"ack":7}`, `"from ann"`},
		{ann, `{"leave":"chat:1","ack":8}`, `{"ack":7,"ok":true}`},
	} {
		step.c.send(step.send)
		step.c.expect(step.want)
	}
	ann.expect(`{"ack":8,"ok":true}`)
	bob.expect(`"from ann"`)
	if got := counterValue(t, app, "primus_forbidden_commands_total"); got != 4 {
		t.Errorf("primus_forbidden_commands_total = %v, want 4", got)
	}
	if st := app.Primus.Stats(); st.RejectedAuth != 6 {
		t.Errorf("RejectedAuth = %d, want 6", st.RejectedAuth)
	}

	// A spark is ended when its token expires (reconnect-style, 1008).
	short, _, err := tryDial(t, ts.URL+"/primus?token="+userToken(t, "cy", 1500*time.Millisecond, nil, nil), testkit.DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := short.WaitClosed(t); got != websocket.StatusPolicyViolation {
		t.Fatalf("expired spark: close %v (%v), want 1008", got, short.Err())
	}
	if n := app.Primus.Stats().TokenExpiries; n != 1 {
		t.Fatalf("TokenExpiries = %d", n)
	}
}

func jwtSegment(s string) string {
	return strings.NewReplacer("+", "-", "/", "_").Replace(b64(s))
}

func b64(s string) string {
	const enc = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	var out strings.Builder
	for i := 0; i < len(s); i += 3 {
		var v uint32
		n := min(3, len(s)-i)
		for j := range 3 {
			v <<= 8
			if j < n {
				v |= uint32(s[i+j])
			}
		}
		for j := range 4 {
			if j <= n {
				out.WriteByte(enc[(v>>(18-6*j))&63])
			}
		}
	}
	return out.String()
}

func TestClientPublishOff(t *testing.T) {
	_, ts := startApp(t, Options{ClientPublishOff: true})
	c := dial(t, ts)
	c.send(`{"join":"r","ack":1}`)
	c.expect(`{"ack":1,"ok":true}`)
	c.send(`{"publish":{"room":"r","data":1},"ack":2}`)
	c.expect(`{"ack":2,"error":"client publishing is disabled on this server"}`)
	if code, _ := post(t, ts.URL+"/api/publish", "", `{"room":"r","data":"api"}`); code != 200 {
		t.Fatalf("API publish: %d", code)
	}
	c.expect(`"api"`)
}

// Browser origins must be the server's own host or listed: cross-site
// WebSocket hijacking is closed by default.
func TestOrigins(t *testing.T) {
	_, ts := startApp(t, Options{AllowedOrigins: []string{"https://*.example.com"}})
	for origin, ok := range map[string]bool{
		"":                        true,
		ts.URL:                    true,
		"https://app.example.com": true,
		"https://evil.io":         false,
	} {
		o := testkit.DialOptions{Header: http.Header{}}
		if origin != "" {
			o.Header.Set("Origin", origin)
		}
		_, resp, err := tryDial(t, wsURL(ts.URL, "/primus"), o)
		if (err == nil) != ok || (!ok && (resp == nil || resp.StatusCode != 403)) {
			t.Errorf("Origin %q: %v %v, want allowed=%v", origin, resp, err, ok)
		}
	}
	_, def := startApp(t, Options{})
	_, resp, err := tryDial(t, wsURL(def.URL, "/primus"), testkit.DialOptions{Header: http.Header{"Origin": {"https://app.example.com"}}})
	if err == nil || resp.StatusCode != 403 {
		t.Errorf("a foreign origin by default: %v %v, want 403", resp, err)
	}
}

// Over -max-messages-per-second a command is answered with an error ack;
// a client that keeps flooding is ended and told not to reconnect.
func TestRateLimitAcks(t *testing.T) {
	app, ts := startApp(t, Options{MessageRate: 0.01, MessageBurst: 2})
	c := dial(t, ts)
	for i := range 5 {
		c.send(`{"join":"r","ack":` + string(rune('0'+i)) + `}`)
	}
	c.expect(`{"ack":0,"ok":true}`)
	c.expect(`{"ack":1,"ok":true}`)
	c.expect(`{"ack":2,"error":"rate limit exceeded: message dropped"}`)
	c.expect(`{"ack":3,"error":"rate limit exceeded: message dropped"}`)
	c.expect(`"primus::server::close"`)
	if got := c.WaitClosed(t); got != websocket.StatusPolicyViolation {
		t.Fatalf("close %v, want 1008", got)
	}
	if st := app.Primus.Stats(); st.RateLimited != 3 || st.RateLimitEnds != 1 {
		t.Fatalf("RateLimited %d, RateLimitEnds %d", st.RateLimited, st.RateLimitEnds)
	}
}

func TestConnLimits(t *testing.T) {
	_, ts := startApp(t, Options{MaxConnections: 2, MaxConnectionsPerIP: 1})
	dial(t, ts)
	_, resp, err := tryDial(t, ts.URL+"/primus", testkit.DialOptions{})
	if err == nil || resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("second connection from one address: %v %v, want 429", resp, err)
	}
	// Behind a proxy, the addresses come from X-Forwarded-For.
	_, proxied := startApp(t, Options{MaxConnections: 2, MaxConnectionsPerIP: 1, TrustForwardedFor: true})
	from := func(ip string) testkit.DialOptions {
		// What the client sent first, what the proxy appended last.
		return testkit.DialOptions{Header: http.Header{"X-Forwarded-For": {"10.0.0.1, " + ip}}}
	}
	for i, ip := range []string{"192.0.2.1", "192.0.2.2"} {
		if _, _, err := tryDial(t, proxied.URL+"/primus", from(ip)); err != nil {
			t.Fatalf("client %d: %v", i, err)
		}
	}
	if _, resp, err := tryDial(t, proxied.URL+"/primus", from("192.0.2.3")); err == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("third connection: %v %v, want 503", resp, err)
	}
}

// The standalone server with -tls-cert/-tls-key serves WSS (and HTTPS),
// HTTP/1.1 only, and -jwt-public-key verifies ES256 tokens.
func TestMainTLSAndPublicKey(t *testing.T) {
	cert := testcert.New(t)
	signer, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := x509.MarshalPKIXPublicKey(&signer.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	keyPath := filepath.Join(t.TempDir(), "jwt.pem")
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}), 0o600); err != nil {
		t.Fatal(err)
	}
	m := startMain(t, "-tls-cert", cert.CertFile, "-tls-key", cert.KeyFile, "-jwt-public-key", keyPath)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: cert.Pool, NextProtos: []string{"h2", "http/1.1"}}}}
	defer client.CloseIdleConnections()
	resp, err := client.Get("https://" + m.addr + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Proto != "HTTP/1.1" {
		t.Fatalf("readyz over TLS: %s %s", resp.Status, resp.Proto)
	}
	tok := token(t, jwt.SigningMethodES256, signer, jwt.MapClaims{"sub": "ann", "exp": time.Now().Add(time.Hour).Unix(), "rooms": []string{"r"}, "publish": []string{"r"}})
	c, _, err := tryDial(t, "wss://"+m.addr+"/primus?token="+tok, testkit.DialOptions{HTTPClient: client})
	if err != nil {
		t.Fatalf("wss dial: %v\n%s", err, m.logs.String())
	}
	c.send(`{"join":"r","ack":1}`)
	c.expect(`{"ack":1,"ok":true}`)
	c.send(`{"publish":{"room":"r","data":"secure"}}`)
	c.expect(`"secure"`)
	hs := token(t, jwt.SigningMethodHS256, pub, jwt.MapClaims{"sub": "ann", "exp": time.Now().Add(time.Hour).Unix()})
	if _, resp, err := tryDial(t, "wss://"+m.addr+"/primus?token="+hs, testkit.DialOptions{HTTPClient: client}); err == nil || resp.StatusCode != 401 {
		t.Fatalf("HS256 token signed with the public key: %v %v, want 401", resp, err)
	}
	if !strings.Contains(m.logs.String(), "tls=true") || strings.Contains(m.logs.String(), "running open") {
		t.Errorf("log:\n%s", m.logs.String())
	}
	if err := m.stop(); err != nil {
		t.Fatal(err)
	}
}

// Plain HTTP clients cannot hold the server: idle keep-alive connections
// and dripped bodies are cut after their timeouts.
func TestMainHTTPTimeouts(t *testing.T) {
	m := startMain(t, "-http-idle-timeout", "300ms", "-http-read-timeout", "500ms")
	idle, err := net.Dial("tcp", m.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	if _, err := idle.Write([]byte("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	drip, err := net.Dial("tcp", m.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer drip.Close()
	if _, err := drip.Write([]byte("POST /api/publish HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{")); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]net.Conn{"idle keep-alive": idle, "dripped body": drip} {
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		start := time.Now()
		buf := make([]byte, 4096)
		var err error
		for err == nil {
			_, err = c.Read(buf) // the response (if any), then the server's close
		}
		if !errors.Is(err, net.ErrClosed) && !strings.Contains(err.Error(), "EOF") && !strings.Contains(err.Error(), "reset") {
			t.Errorf("%s: %v after %v, want the server to close it", name, err, time.Since(start))
		}
	}
	if err := m.stop(); err != nil {
		t.Fatal(err)
	}
}

// SIGTERM (ctx cancelled) makes the node a lame duck: /readyz fails at
// once while clients are still served and may still connect, then the
// clients are closed reconnect-style (1001).
func TestMainLameDuck(t *testing.T) {
	m := startMain(t, "-lame-duck-delay", "700ms", "-lame-duck-duration", "300ms")
	c, _, err := tryDial(t, "ws://"+m.addr+"/primus", testkit.DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c.send(`{"join":"r","ack":1}`)
	c.expect(`{"ack":1,"ok":true}`)
	m.cancel()
	var code int
	if !testkit.Eventually(testkit.Timeout, func() bool { // the signal is handled on Main's goroutine
		code, _ = get(t, "http://"+m.addr+"/readyz", "")
		return code == 503
	}) {
		t.Fatalf("readyz %d after the signal", code)
	}
	if code, body := get(t, "http://"+m.addr+"/healthz", ""); code != 200 || !strings.Contains(body, "draining") {
		t.Errorf("healthz while draining: %d %s", code, body)
	}
	// Still serving during the delay.
	late, _, err := tryDial(t, "ws://"+m.addr+"/primus", testkit.DialOptions{})
	if err != nil {
		t.Fatalf("upgrade during the lame-duck delay: %v", err)
	}
	late.send(`{"join":"r","ack":2}`)
	late.expect(`{"ack":2,"ok":true}`)
	c.send(`{"publish":{"room":"r","data":"still here"}}`)
	late.expect(`"still here"`)
	for _, cl := range []*testClient{c, late} {
		if got := cl.WaitClosed(t); got != websocket.StatusGoingAway {
			t.Errorf("close %v, want 1001", got)
		}
	}
	if err := m.stop(); err != nil {
		t.Fatal(err)
	}
}

func TestMainVersionHelpLogFormat(t *testing.T) {
	var out, errOut lockedBuffer
	if err := Main(context.Background(), []string{"-version"}, func(string) string { return "" }, &out, &errOut, nil); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out.String(), "primus-server ") || !strings.Contains(out.String(), "go1.") {
		t.Errorf("-version printed %q", out.String())
	}
	if err := Main(context.Background(), []string{"-h"}, func(string) string { return "" }, &out, &errOut, nil); err != nil {
		t.Errorf("-h: %v", err)
	}
	if !strings.Contains(errOut.String(), "-lame-duck-delay duration") || !strings.Contains(errOut.String(), "PRIMUS_ALLOWED_ORIGINS") {
		t.Errorf("usage lacks typed flags or their variables:\n%s", errOut.String())
	}
	m := startMain(t, "-log-format", "json")
	if err := m.stop(); err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(m.logs.String()), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil || rec["msg"] == nil {
			t.Fatalf("not a JSON log line: %q", line)
		}
	}
	if !strings.Contains(m.logs.String(), `"msg":"running open`) {
		t.Errorf("no warning about running open:\n%s", m.logs.String())
	}
}

// /readyz is 503 while the broker is not connected; /healthz stays 200.
func TestReadyzWithoutBroker(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close() // nothing listens there: the broker never connects
	m := startMain(t, "-redis-url", "redis://"+dead)
	if code, body := get(t, "http://"+m.addr+"/readyz", ""); code != 503 || !strings.Contains(body, "broker not connected") {
		t.Errorf("readyz: %d %s", code, body)
	}
	if code, body := get(t, "http://"+m.addr+"/healthz", ""); code != 200 || !strings.Contains(body, "degraded") {
		t.Errorf("healthz: %d %s", code, body)
	}
	if err := m.stop(); err != nil {
		t.Fatal(err)
	}
}

// postFrom posts body with extra headers.
func postFrom(t *testing.T, url string, h http.Header, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	maps.Copy(req.Header, h)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b))
}

// One client address cannot take every /api slot with stalled bodies: it
// gets a quarter of them; others are still served.
func TestAPIRequestsPerAddress(t *testing.T) {
	_, ts := startApp(t, Options{MaxAPIRequests: 8, TrustForwardedFor: true})
	from := func(ip string) http.Header { return http.Header{"X-Forwarded-For": {ip}} }
	for range 2 { // 8 / 4 slots for one address
		conn, err := net.Dial("tcp", strings.TrimPrefix(ts.URL, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if _, err := conn.Write([]byte("POST /api/publish HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 192.0.2.1\r\nContent-Length: 100\r\n\r\n{\"room\":\"a")); err != nil {
			t.Fatal(err)
		}
	}
	var code int
	var body string
	if !testkit.Eventually(testkit.Timeout, func() bool { // until both stalled requests hold their slots
		code, body = postFrom(t, ts.URL+"/api/publish", from("192.0.2.1"), `{"room":"r","data":1}`)
		return code == http.StatusServiceUnavailable
	}) {
		t.Fatalf("a third request from the address: %d %s, want 503", code, body)
	}
	if code, body := postFrom(t, ts.URL+"/api/publish", from("192.0.2.2"), `{"room":"r","data":1}`); code != 200 {
		t.Fatalf("another address: %d %s", code, body)
	}
}

// A page on another origin cannot publish through a visitor's browser.
func TestAPIOrigins(t *testing.T) {
	_, ts := startApp(t, Options{AllowedOrigins: []string{"https://app.example.com"}})
	for origin, want := range map[string]int{
		"":                        200, // not a browser
		ts.URL:                    200, // same host
		"https://app.example.com": 200,
		"https://evil.example":    403,
	} {
		h := http.Header{"Content-Type": {"text/plain"}}
		if origin != "" {
			h.Set("Origin", origin)
		}
		if code, body := postFrom(t, ts.URL+"/api/publish", h, `{"rooms":["news"],"data":"x"}`); code != want {
			t.Errorf("Origin %q: %d %s, want %d", origin, code, body, want)
		}
	}
}
