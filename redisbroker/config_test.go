package redisbroker

import (
	"context"
	"crypto/tls"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/primusgo/primus"
	"github.com/primusgo/primus/brokertest"
	"github.com/primusgo/primus/internal/redistest"
)

func TestParseMode(t *testing.T) {
	for in, want := range map[string]Mode{"": Native, "native": Native, "NATIVE": Native, " compat ": Compat, "primus-redis-rooms": Compat} {
		if got, err := ParseMode(in); err != nil || got != want {
			t.Errorf("ParseMode(%q) = %v, %v", in, got, err)
		}
	}
	if _, err := ParseMode("cluster"); err == nil {
		t.Error("ParseMode(cluster) succeeded")
	}
	if Native.String() != "native" || Compat.String() != "compat" {
		t.Error("Mode.String")
	}
}

func TestNewValidates(t *testing.T) {
	bad := map[string]Config{
		"no address":        {},
		"url and addr":      {URL: "redis://127.0.0.1:1", Addr: "127.0.0.1:1"},
		"addr without port": {Addr: "localhost"},
		"bad scheme":        {URL: "http://127.0.0.1:1"},
		"bad db in url":     {URL: "redis://127.0.0.1:1/x"},
		"negative db":       {Addr: "127.0.0.1:1", DB: -1},
		"bad mode":          {Addr: "127.0.0.1:1", Mode: 7},
		"sentinel in url":   {URL: "redis://127.0.0.1:1?master_set=m"},
		"bad sentinel":      {SentinelAddrs: []string{"nope"}},
	}
	for name, cfg := range bad {
		if _, err := New(cfg); err == nil {
			t.Errorf("%s: New succeeded", name)
		}
	}
}

func TestDefaults(t *testing.T) {
	b, err := New(Config{Addr: "127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	c := b.cfg
	if c.Channel != "primus" || c.Mode != Native || c.DialTimeout != DefaultDialTimeout || c.CommandTimeout != DefaultCommandTimeout ||
		c.ProbeInterval != DefaultProbeInterval || c.UnsubscribeDelay != DefaultUnsubscribeDelay || c.Workers < 2 ||
		c.QueueSize != DefaultQueueSize || c.MaxPayload != DefaultMaxPayload || c.Logger == nil || c.SentinelMaster != "mymaster" {
		t.Errorf("defaults: %+v", c)
	}
	uuid := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	if !uuid.MatchString(b.NodeID()) {
		t.Errorf("NodeID %q is not a UUID v4", b.NodeID())
	}
	if b.compatChannel != "primus."+b.NodeID() || b.compatPattern != "primus.*" || b.roomPrefix != "primus:room:" ||
		b.nodeChannel != "primus:node:"+b.NodeID() {
		t.Errorf("channels: %q %q %q %q", b.compatChannel, b.compatPattern, b.roomPrefix, b.nodeChannel)
	}
	if RoomChannel("p", "r") != "p:room:r" || NodeChannel("p", "n") != "p:node:n" {
		t.Error("channel helpers")
	}
	if n := clientName("a b\nc"); n != "primus:a_b_c" {
		t.Errorf("clientName = %q", n)
	}
	if s := b.Stats(); s.Mode != "native" || s.NodeID != b.NodeID() || s.Connected {
		t.Errorf("stats before Start: %+v", s)
	}
	// Publish before Start: nothing to connect with yet.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := b.Publish(ctx, &primus.Message{Rooms: []string{"r"}, Data: []byte(`1`)}); err == nil {
		t.Error("Publish before Start succeeded")
	}
}

func TestStartTwiceAndNilHandler(t *testing.T) {
	b := newBroker(t, Config{Addr: "127.0.0.1:1", DialTimeout: 100 * time.Millisecond})
	if err := b.Start(nil); err == nil {
		t.Error("Start(nil) succeeded")
	}
	rec := brokertest.NewRecorder()
	if err := b.Start(rec); err != nil {
		t.Fatal(err)
	}
	if err := b.Start(rec); err == nil {
		t.Error("second Start succeeded")
	}
	_ = b.Close()
	if err := b.Start(rec); err == nil {
		t.Error("Start after Close succeeded")
	}
}

func TestPublishErrors(t *testing.T) {
	srv := redistest.StartServer(t)
	cfg := testConfig(srv.Addr(), Native, freshChannel())
	cfg.MaxPayload = 1024
	b, _ := startBroker(t, cfg)
	ctx := context.Background()
	if err := b.Publish(ctx, &primus.Message{Rooms: nil, Data: []byte(`1`)}); err != nil {
		t.Errorf("no rooms: %v", err)
	}
	if err := b.Publish(ctx, &primus.Message{Rooms: []string{"r"}}); err != ErrEmptyData {
		t.Errorf("no data: %v", err)
	}
	if err := b.Publish(ctx, &primus.Message{Rooms: []string{"r"}, Data: []byte(`"` + strings.Repeat("x", 1024) + `"`)}); err != ErrTooLarge {
		t.Errorf("too large: %v", err)
	}
	cfg.Mode, cfg.CompatRejectExcept = Compat, true
	c, _ := startBroker(t, cfg)
	if err := c.Publish(ctx, &primus.Message{Rooms: []string{"r"}, Except: []string{"x"}, Data: []byte(`1`)}); err != ErrExceptUnsupported {
		t.Errorf("compat except: %v", err)
	}
	if s := b.Stats(); s.PublishErrors != 2 || s.Published != 1 {
		t.Errorf("stats: %+v", s)
	}
}

// TestAuthAndDB connects with a password in the URL plus a database, and
// with an ACL user and password in the Config.
func TestAuthAndDB(t *testing.T) {
	srv := redistest.StartServer(t, redistest.WithPassword("s3cret"))
	if _, err := srv.Do("ACL", "SETUSER", "alice", "on", ">wonderland", "~*", "&*", "+@all"); err != nil {
		t.Fatal(err)
	}
	ch := freshChannel()
	viaURL := testConfig("", Native, ch)
	viaURL.Addr, viaURL.URL = "", srv.URL()+"/3"
	a, recA := startBroker(t, viaURL)
	acl := testConfig(srv.Addr(), Native, ch)
	acl.Username, acl.Password, acl.DB = "alice", "wonderland", 5
	b, _ := startBroker(t, acl)
	a.Subscribe("r")
	brokertest.AwaitSubscribed(t, b, recA, "r")

	wrong := testConfig(srv.Addr(), Native, ch)
	wrong.Password = "nope"
	w, _ := startBroker(t, wrong)
	waitStats(t, w, "a failed attempt", func(s Stats) bool { return s.ConnectErrors > 0 })
	if err := w.Publish(context.Background(), &primus.Message{Rooms: []string{"r"}, Data: []byte(`1`)}); err == nil {
		t.Error("publish with a wrong password succeeded")
	}
}

func TestTLS(t *testing.T) {
	srv := redistest.StartServer(t, redistest.WithTLS())
	ch := freshChannel()
	viaURL := testConfig("", Native, ch)
	viaURL.Addr, viaURL.URL, viaURL.TLS = "", srv.URL(), srv.TLSConfig()
	a, recA := startBroker(t, viaURL)
	viaAddr := testConfig(srv.Addr(), Native, ch)
	viaAddr.TLS = srv.TLSConfig()
	b, _ := startBroker(t, viaAddr)
	a.Subscribe("r")
	brokertest.AwaitSubscribed(t, b, recA, "r")

	// Without trusting the CA the connection is refused.
	untrusted := testConfig(srv.Addr(), Native, ch)
	untrusted.TLS = &tls.Config{MinVersion: tls.VersionTLS12}
	u, _ := startBroker(t, untrusted)
	waitStats(t, u, "a failed attempt", func(s Stats) bool { return s.ConnectErrors > 0 })
	if u.Stats().Connected {
		t.Error("connected without trusting the server")
	}
}
