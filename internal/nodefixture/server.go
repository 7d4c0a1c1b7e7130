package nodefixture

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// startTimeout bounds the wait for a process's readiness line.
const startTimeout = 30 * time.Second

// stopGrace is how long Stop waits after SIGTERM before killing.
const stopGrace = 5 * time.Second

// ServerOptions configure the reference server (testdata/node/server.js).
type ServerOptions struct {
	// PingInterval is Primus's server heartbeat interval (PING_INTERVAL).
	// 0 means the Primus default (30 s); a negative value disables heartbeats.
	// It is sent in whole milliseconds.
	PingInterval time.Duration
	// RedisAddr ("host:port") registers primus-redis-rooms against that Redis.
	// Empty: no Redis, rooms are the same primus-redis-rooms code but local to
	// the process.
	RedisAddr string
	// Channel is primus-redis-rooms' redis.channel (default "primus").
	Channel string
	// Env adds environment variables ("K=V") for the node process.
	Env []string
}

// Server is a running server.js. It listens on a free 127.0.0.1 port.
type Server struct {
	p    *proc
	port int
}

// StartServer starts the reference server and waits until it prints its
// `listening <port>` line, which with Redis also means its pattern
// subscription is confirmed. The server is killed by t.Cleanup; its output is
// logged there if the test failed.
func StartServer(t testing.TB, opts ServerOptions) *Server {
	t.Helper()
	Require(t)

	env := []string{"PORT=0", "EXIT_ON_STDIN_CLOSE=1"}
	switch {
	case opts.PingInterval < 0:
		env = append(env, "PING_INTERVAL=0")
	case opts.PingInterval > 0:
		env = append(env, "PING_INTERVAL="+strconv.FormatInt(max(opts.PingInterval.Milliseconds(), 1), 10))
	}
	if opts.RedisAddr != "" {
		host, port, err := net.SplitHostPort(opts.RedisAddr)
		if err != nil {
			t.Fatalf("nodefixture: RedisAddr %q: %v", opts.RedisAddr, err)
		}
		env = append(env, "REDIS_HOST="+host, "REDIS_PORT="+port)
	}
	if opts.Channel != "" {
		env = append(env, "REDIS_CHANNEL="+opts.Channel)
	}
	env = append(env, opts.Env...)

	ready := make(chan int, 1)
	p, err := startProc("server.js", nil, env, func(line []byte) {
		if rest, ok := bytes.CutPrefix(line, []byte("listening ")); ok {
			if port, err := strconv.Atoi(string(rest)); err == nil {
				select {
				case ready <- port:
				default:
				}
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{p: p}
	t.Cleanup(func() {
		s.p.kill()
		if t.Failed() {
			t.Logf("nodefixture: server.js (port %d):\n%s", s.port, s.p.output())
		}
	})

	timer := time.NewTimer(startTimeout)
	defer timer.Stop()
	select {
	case s.port = <-ready:
	case <-p.done:
		t.Fatalf("nodefixture: server.js exited before listening (%v):\n%s", p.waitErr, p.output())
	case <-timer.C:
		t.Fatalf("nodefixture: server.js did not print `listening` within %v", startTimeout)
	}
	return s
}

// Port returns the TCP port the server listens on.
func (s *Server) Port() int { return s.port }

// Addr returns "127.0.0.1:<port>".
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// URL returns "http://127.0.0.1:<port>", the URL to give to Primus clients
// (the Primus endpoint is URL()+"/primus").
func (s *Server) URL() string { return "http://" + s.Addr() }

// Publish asks the server to write data to each room in turn
// (POST /api/publish, primus.room(r).write(data) per room).
func (s *Server) Publish(ctx context.Context, data any, rooms ...string) error {
	body, err := json.Marshal(map[string]any{"rooms": rooms, "data": data})
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.URL()+"/api/publish", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("nodefixture: POST /api/publish: %s: %s", resp.Status, strings.TrimSpace(string(b)))
	}
	return nil
}

// Rooms returns this node's room registry (GET /api/rooms): room name ->
// ids of the local member sparks, in join order. It includes the rooms
// primus-redis-rooms never removes (written-to rooms, zombie members).
func (s *Server) Rooms(ctx context.Context) (map[string][]string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.URL()+"/api/rooms", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("nodefixture: GET /api/rooms: %s", resp.Status)
	}
	var out struct {
		Rooms map[string][]string `json:"rooms"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return nil, err
	}
	return out.Rooms, nil
}

// Stop shuts the server down gracefully (SIGTERM: primus.destroy(), so every
// client receives primus::server::close and does not reconnect) and waits for
// it to exit; after 5 s it is killed. It returns the exit error, nil for a
// clean exit.
func (s *Server) Stop() error { return s.p.terminate(stopGrace) }

// Kill kills the server (SIGKILL: connections drop without a close
// handshake, clients reconnect) and waits for it to be reaped.
func (s *Server) Kill() { s.p.kill() }

// Output returns what the server printed so far (stdout, then stderr with
// one JSON diagnostic per line).
func (s *Server) Output() string { return s.p.output() }

// WaitLog waits until the server's stderr diagnostics (one JSON object per
// line, e.g. {"ev":"psubscribe",...}, {"ev":"redis-error",...},
// {"ev":"connection",...}) contain substr at least n times in total since
// start. It fails when ctx is done or the server exits first.
func (s *Server) WaitLog(ctx context.Context, substr string, n int) error {
	return s.p.stderr.waitCount(ctx, s.p.done, substr, n)
}
