package client

import (
	"math"
	"net/http"
	"testing"
	"time"
)

func TestEndpoint(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in, pathname, want string
	}{
		{"http://127.0.0.1:8080", "/primus", "ws://127.0.0.1:8080/primus"},
		{"http://127.0.0.1:8080/", "/primus", "ws://127.0.0.1:8080/primus"},
		{"https://example.com", "/primus", "wss://example.com/primus"},
		{"ws://h:1", "/primus", "ws://h:1/primus"},
		{"WSS://h:1/", "/primus", "wss://h:1/primus"},
		{"http://h/?token=abc&x=1", "/primus", "ws://h/primus?token=abc&x=1"},
		{"http://h?token=abc", "/primus", "ws://h/primus?token=abc"},
		{"http://h/primus", "/primus", "ws://h/primus"},
		{"http://h/primus/anything/here?x=1", "/primus", "ws://h/primus/anything/here?x=1"},
		{"http://h/primus#frag", "/primus", "ws://h/primus"},
		{"http://h", "/chat/primus", "ws://h/chat/primus"},
		{"http://h/chat/primus?a=b", "/chat/primus", "ws://h/chat/primus?a=b"},
	} {
		got, err := endpoint(tc.in, tc.pathname)
		if err != nil || got != tc.want {
			t.Errorf("endpoint(%q, %q) = %q, %v; want %q", tc.in, tc.pathname, got, err, tc.want)
		}
	}
	for _, in := range []string{
		"http://h/other",   // not under the pathname
		"ftp://h/",         // scheme
		"127.0.0.1:8080",   // no scheme
		"http:///primus",   // no host
		"http://h/%zz",     // unparsable
		"/primus?token=ab", // relative
	} {
		if got, err := endpoint(in, DefaultPathname); err == nil {
			t.Errorf("endpoint(%q) = %q, want an error", in, got)
		}
	}
}

func TestOptionsDefaults(t *testing.T) {
	t.Parallel()
	o, err := Options{}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if o.Pathname != "/primus" || o.PingTimeout != 45*time.Second || o.ConnectTimeout != 10*time.Second ||
		o.QueueSize != 1024 || o.MessageBuffer != 64 || o.ReadLimit != 10<<20 || o.Logger == nil ||
		o.DisableReconnect || o.Reconnect != (ReconnectPolicy{}).withDefaults() {
		t.Fatalf("zero Options = %+v", o)
	}

	header := http.Header{"X": {"1"}}
	o, err = Options{Pathname: "realtime", Header: header, PingTimeout: -1, ConnectTimeout: -1, MessageBuffer: -1, ReadLimit: -5}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	// Negative: disabled, unbuffered, unlimited; Dial keeps its own header.
	header.Set("X", "2")
	if o.Pathname != "/realtime" || o.PingTimeout > 0 || o.ConnectTimeout > 0 || o.MessageBuffer != 0 || o.ReadLimit != -1 || o.Header.Get("X") != "1" {
		t.Fatalf("Options = %+v", o)
	}

	for _, bad := range []Options{{QueueSize: -1}, {Reconnect: ReconnectPolicy{Factor: 0.5}}, {Reconnect: ReconnectPolicy{Factor: -2}}} {
		if _, err := bad.withDefaults(); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
}

func TestReconnectDelay(t *testing.T) {
	t.Parallel()
	p := ReconnectPolicy{}.withDefaults()
	if p.Min != 500*time.Millisecond || p.Factor != 2 || p.Retries != 10 || p.Max != 0 || p.Timeout != 30*time.Second {
		t.Fatalf("defaults = %+v", p)
	}
	for _, tc := range []struct {
		n    int
		r    float64
		want time.Duration
	}{
		{1, 0.9, 500 * time.Millisecond}, // attempt 1: exactly min, no jitter
		{2, 0, 1000 * time.Millisecond},  // (r+1) * min * factor^(n-1)
		{2, 0.398, 1398 * time.Millisecond},
		{3, 0.3345, 2669 * time.Millisecond}, // captures/reconnect-client.log: 500, 1398, 2669
		{3, 0.99999, 4000 * time.Millisecond},
		{10, 0, 500 * time.Millisecond * 512},
	} {
		if got := p.delay(tc.n, tc.r); got != tc.want {
			t.Errorf("delay(%d, %v) = %v, want %v", tc.n, tc.r, got, tc.want)
		}
	}
	capped := ReconnectPolicy{Min: time.Second, Max: 3 * time.Second}.withDefaults()
	if got := capped.delay(5, 0.5); got != 3*time.Second {
		t.Errorf("capped delay = %v", got)
	}
	if got := capped.delay(1, 0.5); got != time.Second {
		t.Errorf("first capped delay = %v", got)
	}
	if got := (ReconnectPolicy{Min: 300 * time.Microsecond, Factor: 2}).delay(2, 0.5); got != 900*time.Microsecond {
		t.Errorf("sub-millisecond delay = %v", got)
	}
	if got := p.delay(200, 0.5); got != time.Duration(math.MaxInt64) {
		t.Errorf("huge attempt = %v, want the maximum duration", got)
	}
}

func TestFIFO(t *testing.T) {
	t.Parallel()
	var f fifo
	next := uint64(1)
	for round := 0; round < 5; round++ {
		for i := 0; i < 100; i++ {
			f.push(outgoing{seq: uint64(round*100 + i + 1)})
		}
		for i := 0; i < 100; i++ {
			if o, _ := f.front(); o.seq != next {
				t.Fatalf("front = %d, want %d", o.seq, next)
			}
			if o, ok := f.pop(); !ok || o.seq != next {
				t.Fatalf("pop = %d, %v; want %d", o.seq, ok, next)
			}
			next++
		}
	}
	if _, ok := f.pop(); ok || f.len() != 0 {
		t.Fatal("queue not empty")
	}
}
