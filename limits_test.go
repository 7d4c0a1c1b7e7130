package primus_test

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/primusgo/primus"
	"github.com/primusgo/primus/internal/testkit"
)

// dialStatus dials and returns the HTTP status of a refused upgrade (101 if it succeeded).
func dialStatus(t *testing.T, ts *testServer, o testkit.DialOptions) int {
	t.Helper()
	c, resp, err := ts.tryDial("", o)
	if err == nil {
		t.Cleanup(c.Close)
		return http.StatusSwitchingProtocols
	}
	if resp == nil {
		t.Fatalf("dial: %v", err)
	}
	return resp.StatusCode
}

func TestAllowOrigins(t *testing.T) {
	ts := startServer(t, primus.Config{CheckOrigin: primus.AllowOrigins("https://*.example.com", "partner.io:8443", "NULL")})
	host := strings.TrimPrefix(ts.hs.URL, "http://")
	for origin, want := range map[string]int{
		"":                                101, // not a browser
		"http://" + host:                  101, // same host
		"HTTP://" + strings.ToUpper(host): 101,
		"https://app.example.com":         101,
		"https://APP.Example.com":         101,
		"https://example.com":             403,
		"http://app.example.com":          403, // the pattern names the scheme
		"https://partner.io:8443":         101,
		"http://partner.io:8443":          101, // a host pattern takes any scheme
		"https://partner.io":              403,
		"https://evil.io":                 403,
		"https://app.example.com.evil.io": 403,
		"null":                            101,
		"http://" + host + ".evil.io":     403,
	} {
		h := http.Header{}
		if origin != "" {
			h.Set("Origin", origin)
		}
		if got := dialStatus(t, ts, testkit.DialOptions{Header: h}); got != want {
			t.Errorf("Origin %q: status %d, want %d", origin, got, want)
		}
	}
	if n := ts.Stats().RejectedOrigin; n != 6 {
		t.Errorf("RejectedOrigin = %d, want 6", n)
	}
	// Without patterns only the same host passes.
	same := startServer(t, primus.Config{CheckOrigin: primus.AllowOrigins()})
	if got := dialStatus(t, same, testkit.DialOptions{Header: http.Header{"Origin": {"https://app.example.com"}}}); got != 403 {
		t.Errorf("foreign origin without patterns: %d", got)
	}
	if got := dialStatus(t, same, testkit.DialOptions{Header: http.Header{"Origin": {same.hs.URL}}}); got != 101 {
		t.Errorf("same origin without patterns: %d", got)
	}
}

func TestConnectionLimits(t *testing.T) {
	ts := startServer(t, primus.Config{MaxConnections: 3, MaxConnectionsPerIP: 2, TrustForwardedFor: true})
	from := func(ip string) testkit.DialOptions {
		return testkit.DialOptions{Header: http.Header{"X-Forwarded-For": {ip}}}
	}
	a1 := ts.dial(t, from("10.0.0.1"))
	ts.nextSpark(t)
	ts.dial(t, from("10.0.0.1"))
	ts.nextSpark(t)
	if got := dialStatus(t, ts, from("10.0.0.1")); got != http.StatusTooManyRequests {
		t.Fatalf("third from one address: %d, want 429", got)
	}
	ts.dial(t, from("10.0.0.2"))
	ts.nextSpark(t)
	if got := dialStatus(t, ts, from("10.0.0.3")); got != http.StatusServiceUnavailable {
		t.Fatalf("fourth connection: %d, want 503", got)
	}
	if st := ts.Stats(); st.RejectedFull != 1 || st.RejectedIPFull != 1 {
		t.Errorf("RejectedFull %d, RejectedIPFull %d, want 1, 1", st.RejectedFull, st.RejectedIPFull)
	}
	// A closed spark gives its place back.
	a1.Close()
	ts.nextDisconnection(t)
	ts.dial(t, from("10.0.0.1"))
	ts.nextSpark(t)
}

// Authenticate names the user; an identity that expires ends its spark
// reconnect-style with close 1008, and an expired one is refused.
func TestAuthenticate(t *testing.T) {
	expires := time.Now().Add(time.Hour)
	ts := startServer(t, primus.Config{Authenticate: func(r *http.Request) (*primus.Identity, error) {
		switch r.URL.Query().Get("user") {
		case "":
			return nil, errors.New("who are you?")
		case "late":
			return &primus.Identity{UserID: "late", Expires: time.Now().Add(-time.Second)}, nil
		case "short":
			return &primus.Identity{UserID: "short", Expires: time.Now().Add(300 * time.Millisecond)}, nil
		}
		return &primus.Identity{UserID: r.URL.Query().Get("user"), Expires: expires, Claims: "claims"}, nil
	}})
	if got := dialStatus(t, ts, testkit.DialOptions{}); got != 401 {
		t.Errorf("anonymous: %d, want 401", got)
	}
	_, resp, err := ts.tryDial("/primus?user=late", testkit.DialOptions{})
	if err == nil || resp == nil || resp.StatusCode != 401 || !strings.Contains(resp.Header.Get("Www-Authenticate"), "token expired") {
		t.Fatalf("expired identity: %v %v", err, resp)
	}
	ts.dialPath(t, "/primus?user=ann", testkit.DialOptions{})
	s := ts.nextSpark(t)
	if s.UserID() != "ann" || s.Identity().Claims != "claims" || !s.Identity().Expires.Equal(expires) {
		t.Fatalf("UserID %q, Identity %+v", s.UserID(), s.Identity())
	}
	if n := ts.Stats().RejectedAuth; n != 2 {
		t.Errorf("RejectedAuth = %d, want 2", n)
	}

	short := ts.dialPath(t, "/primus?user=short", testkit.DialOptions{})
	ss := ts.nextSpark(t)
	if got := ts.nextDisconnection(t); got != ss || ss.CloseReason() != primus.ReasonTokenExpired {
		t.Fatalf("disconnected %s with %v", got.UserID(), got.CloseReason())
	}
	if rest := short.Rest(t); len(rest) != 0 {
		t.Errorf("frames before the close: %v (no primus::server::close: the client may reconnect)", rest)
	}
	if code := websocket.CloseStatus(short.Err()); code != websocket.StatusPolicyViolation {
		t.Errorf("close status %v, want 1008", code)
	}
	if n := ts.Stats().TokenExpiries; n != 1 {
		t.Errorf("TokenExpiries = %d, want 1", n)
	}
	// Without Authenticate there is no identity.
	plain := startServer(t, primus.Config{})
	plain.dial(t, testkit.DialOptions{})
	if s := plain.nextSpark(t); s.Identity() != nil || s.UserID() != "" {
		t.Errorf("identity without Authenticate: %+v", s.Identity())
	}
}

// Messages over MessageRate are refused to OnError with the data; a spark
// that keeps flooding is ended intentionally (no reconnect) with 1008.
func TestMessageRate(t *testing.T) {
	errs := testkit.NewQueue[error]()
	data := testkit.NewQueue[string]()
	ts := startServer(t, primus.Config{MessageRate: 0.01, MessageBurst: 3, OnConnection: func(s *primus.Spark) {
		s.OnData(func(_ *primus.Spark, d primus.Data) { data.Put(string(d.JSON())) })
		s.OnError(func(_ *primus.Spark, err error) { errs.Put(err) })
	}})
	c := ts.dial(t, testkit.DialOptions{})
	s := ts.nextSpark(t)
	// The burst passes, the next three are refused, the seventh is a flood:
	// a rate of one message per 100 s adds no token meanwhile.
	for i := range 7 {
		c.Send(t, `{"n":`+string(rune('0'+i))+`}`)
	}
	ctx, cancel := waitCtx()
	defer cancel()
	for i := range 3 {
		if d, _ := data.Get(ctx); d != `{"n":`+string(rune('0'+i))+`}` {
			t.Fatalf("message %d: %q", i, d)
		}
	}
	for i := 3; i < 6; i++ {
		err, _ := errs.Get(ctx)
		var rl *primus.RateLimitError
		if !errors.As(err, &rl) || !errors.Is(err, primus.ErrRateLimited) || string(rl.Data.JSON()) != `{"n":`+string(rune('0'+i))+`}` {
			t.Fatalf("refusal %d: %v", i, err)
		}
	}
	if got := ts.nextDisconnection(t); got != s || s.CloseReason() != primus.ReasonRateLimited {
		t.Fatalf("closed with %v", s.CloseReason())
	}
	rest := c.Rest(t)
	if len(rest) != 1 || string(rest[0].Data) != `"primus::server::close"` {
		t.Errorf("frames before the close: %v, want primus::server::close", rest)
	}
	if code := websocket.CloseStatus(c.Err()); code != websocket.StatusPolicyViolation {
		t.Errorf("close status %v, want 1008", code)
	}
	if d, ok := data.TryGet(); ok {
		t.Errorf("refused data reached OnData: %s", d)
	}
	st := ts.Stats()
	if st.RateLimited != 4 || st.RateLimitEnds != 1 {
		t.Errorf("RateLimited %d, RateLimitEnds %d; want 4, 1", st.RateLimited, st.RateLimitEnds)
	}
}
