package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// startRedis runs a redis-server on a free loopback port (never 6379)
// without persistence until the test ends.
func startRedis(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatal("redis-server is needed on the PATH (Debian: apt-get install redis-server)")
	}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	dir := t.TempDir()
	cmd := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "",
		"--appendonly", "no", "--dir", dir)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	addr := "127.0.0.1:" + strconv.Itoa(port)
	for deadline := time.Now().Add(10 * time.Second); ; {
		if c, err := net.DialTimeout("tcp4", addr, time.Second); err == nil {
			_, _ = c.Write([]byte("PING\r\n"))
			line, _ := bufio.NewReader(c).ReadString('\n')
			c.Close()
			if strings.HasPrefix(line, "+PONG") {
				return addr
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("redis-server on %s did not answer PING", addr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// startNode runs a node like main does and serves it until the test ends.
func startNode(t *testing.T, redis string) string {
	t.Helper()
	node, err := newNode(config{redis: redis, channel: "bench-test"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(handler(node))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = node.Shutdown(ctx)
		srv.Close()
	})
	return srv.Listener.Addr().String()
}

// client is a bare protocol client: one JSON command per frame, the
// server's frames split at newlines.
type client struct {
	t       *testing.T
	c       *websocket.Conn
	pending []string
}

func dial(ctx context.Context, t *testing.T, addr string) *client {
	t.Helper()
	c, _, err := websocket.Dial(ctx, "ws://"+addr+"/connection/websocket", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.CloseNow() })
	return &client{t: t, c: c}
}

func (c *client) send(ctx context.Context, cmd string) {
	c.t.Helper()
	if err := c.c.Write(ctx, websocket.MessageText, []byte(cmd)); err != nil {
		c.t.Fatal(err)
	}
}

// next returns the next message from the server, answering pings ({}).
func (c *client) next(ctx context.Context) string {
	c.t.Helper()
	for {
		for len(c.pending) > 0 {
			m := c.pending[0]
			c.pending = c.pending[1:]
			if m == "{}" {
				c.send(ctx, "{}")
				continue
			}
			return m
		}
		_, b, err := c.c.Read(ctx)
		if err != nil {
			c.t.Fatal(err)
		}
		c.pending = strings.Split(string(b), "\n")
	}
}

// call sends a command and returns its reply.
func (c *client) call(ctx context.Context, id int, cmd string) string {
	c.t.Helper()
	c.send(ctx, fmt.Sprintf(`{"id":%d,%s}`, id, cmd))
	prefix := fmt.Sprintf(`{"id":%d,`, id)
	for {
		m := c.next(ctx)
		if strings.HasPrefix(m, prefix) {
			if strings.Contains(m, `"error":`) {
				c.t.Fatalf("%s: %s", cmd, m)
			}
			return m
		}
	}
}

// A publication from a client on one node reaches a subscriber on the
// other through Redis, its data byte for byte, as a push of the JSON
// protocol.
func TestCrossNodePublish(t *testing.T) {
	redis := startRedis(t)
	a, b := startNode(t, redis), startNode(t, redis)
	for _, addr := range []string{a, b} {
		resp, err := http.Get("http://" + addr + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || string(body) != "ok\n" {
			t.Fatalf("healthz: %d %q", resp.StatusCode, body)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	sub := dial(ctx, t, a)
	if r := sub.call(ctx, 1, `"connect":{}`); !strings.HasPrefix(r, `{"id":1,"connect":{"client":"`) {
		t.Fatalf("connect reply %s", r)
	}
	if r := sub.call(ctx, 2, `"subscribe":{"channel":"r7"}`); r != `{"id":2,"subscribe":{}}` {
		t.Fatalf("subscribe reply %s", r)
	}
	pub := dial(ctx, t, b)
	pub.call(ctx, 1, `"connect":{}`)
	data := `{"s":1,"t":42,"r":7,"w":0,"p":"xxxx"}`
	// The node subscribes in Redis before it replies to the subscribe
	// command, so one publish is enough.
	if r := pub.call(ctx, 2, `"publish":{"channel":"r7","data":`+data+`}`); r != `{"id":2,"publish":{}}` {
		t.Fatalf("publish reply %s", r)
	}
	if m, want := sub.next(ctx), `{"push":{"channel":"r7","pub":{"data":`+data+`}}}`; m != want {
		t.Fatalf("got %s, want %s", m, want)
	}
}

func TestFlags(t *testing.T) {
	if _, err := parseFlags(nil, io.Discard); err == nil {
		t.Error("no -redis accepted")
	}
	c, err := parseFlags([]string{"-redis", "127.0.0.1:1", "-addr", "127.0.0.1:0"}, io.Discard)
	if err != nil || c.channel != "centrifuge" || c.addr != "127.0.0.1:0" {
		t.Errorf("%+v %v", c, err)
	}
}
