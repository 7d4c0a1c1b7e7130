// Package redistest starts real redis-server and redis-sentinel processes on
// free loopback ports for tests, and stops them when the test ends: single
// servers, Sentinel groups, and Redis Clusters (StartCluster: masters and
// replicas created with redis-cli --cluster create).
//
// The binaries must be on PATH (Debian: apt-get install redis-server
// redis-sentinel). A missing binary fails the test with a clear message; it
// never skips, so a CI without Redis cannot silently pass the Redis tests.
package redistest

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// StartTimeout bounds how long a process may take to answer PING.
var StartTimeout = 10 * time.Second

// Option configures a Server.
type Option func(*Server)

// WithPort makes the server listen on port instead of a free one (for
// example a port reserved earlier with FreePort, to start Redis after the
// code under test). Never 6379.
func WithPort(port int) Option { return func(s *Server) { s.port = port; s.fixedPort = true } }

// WithArgs appends redis-server command-line arguments, such as
// "--requirepass", "secret".
func WithArgs(args ...string) Option {
	return func(s *Server) { s.extra = append(s.extra, args...) }
}

// WithPassword makes the server require a password (default user) and
// makes the helper's own connections authenticate.
func WithPassword(pw string) Option {
	return func(s *Server) { s.password = pw; s.extra = append(s.extra, "--requirepass", pw) }
}

// Server is one redis-server (or redis-sentinel) process.
type Server struct {
	t         testing.TB
	bin       string
	sentinel  bool
	dir       string
	port      int
	fixedPort bool
	extra     []string
	password  string
	conf      string // sentinel config file
	useTLS    bool
	portFn    func(testing.TB) int // picks a port (default FreePort)
	clientTLS *tls.Config

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
	starts int
}

// StartServer starts a redis-server on a free loopback port and waits until
// it answers PING. It is killed when the test ends.
func StartServer(t testing.TB, opts ...Option) *Server {
	t.Helper()
	s := NewServer(t, opts...)
	s.Start()
	return s
}

// NewServer prepares a redis-server (port chosen, directory made) without
// starting it; Start starts it. Use it to test code that must cope with
// Redis being down at first.
func NewServer(t testing.TB, opts ...Option) *Server {
	t.Helper()
	s := &Server{t: t, bin: lookBin(t, "redis-server"), dir: t.TempDir()}
	for _, o := range opts {
		o(s)
	}
	if !s.fixedPort {
		s.port = s.freePort(t)
	}
	if s.port == 6379 {
		t.Fatal("redistest: refusing to use port 6379")
	}
	if s.useTLS {
		s.makeCerts(t)
	}
	t.Cleanup(s.Kill)
	return s
}

func lookBin(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("redistest: %s not found on PATH (install it, e.g. apt-get install redis-server redis-sentinel): %v", name, err)
	}
	return p
}

// FreePort returns a loopback TCP port that was free a moment ago (never 6379).
func FreePort(t testing.TB) int {
	t.Helper()
	for range 20 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("redistest: no free port: %v", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		_ = l.Close()
		if port != 6379 {
			return port
		}
	}
	t.Fatal("redistest: no free port")
	return 0
}

func (s *Server) freePort(t testing.TB) int {
	if s.portFn != nil {
		return s.portFn(t)
	}
	return FreePort(t)
}

// Addr is host:port.
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// Port is the TCP port.
func (s *Server) Port() int { return s.port }

// URL is a redis:// URL for the server (rediss:// with WithTLS), with the
// password, if any.
func (s *Server) URL() string {
	scheme := "redis://"
	if s.useTLS {
		scheme = "rediss://"
	}
	if s.password != "" {
		return scheme + ":" + s.password + "@" + s.Addr()
	}
	return scheme + s.Addr()
}

// Dir is the server's working directory (its log is redis.log there).
func (s *Server) Dir() string { return s.dir }

func (s *Server) args() []string {
	if s.sentinel {
		return []string{s.conf}
	}
	port := []string{"--port", strconv.Itoa(s.port)}
	if s.useTLS {
		port = append([]string{"--port", "0", "--tls-port", strconv.Itoa(s.port)}, s.tlsArgs()...)
	}
	args := append(port,
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", "no",
		"--repl-diskless-sync-delay", "0",
		"--dir", s.dir,
		"--daemonize", "no",
		"--logfile", filepath.Join(s.dir, "redis.log"),
	)
	return append(args, s.extra...)
}

// Start starts the process (again) on the server's port and waits until it
// answers PING. A process that fails to bind because the port was taken is
// retried on a fresh port unless the port is fixed (WithPort or a restart).
func (s *Server) Start() {
	s.t.Helper()
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		if lastErr = s.startOnce(); lastErr == nil {
			return
		}
		if s.fixedPort || s.starts > 0 {
			// Same port required: the old socket may linger a moment.
			time.Sleep(100 * time.Millisecond)
			continue
		}
		s.port = s.freePort(s.t)
	}
	s.t.Fatalf("redistest: starting %s on %s: %v\n%s", filepath.Base(s.bin), s.Addr(), lastErr, s.logTail())
}

func (s *Server) startOnce() error {
	s.mu.Lock()
	if s.cmd != nil {
		s.mu.Unlock()
		return errors.New("already running")
	}
	cmd := exec.Command(s.bin, s.args()...)
	cmd.Dir = s.dir
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Start(); err != nil {
		s.mu.Unlock()
		return err
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	s.cmd, s.exited = cmd, exited
	s.mu.Unlock()

	deadline := time.Now().Add(StartTimeout)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			s.mu.Lock()
			s.cmd = nil
			s.mu.Unlock()
			return fmt.Errorf("process exited during start-up: %s", bytes.TrimSpace(out.Bytes()))
		default:
		}
		if err := s.ping(); err == nil {
			s.starts++
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	s.Kill()
	return errors.New("no PONG before the start timeout")
}

func (s *Server) ping() error {
	c, err := s.dial()
	if err != nil {
		return err
	}
	defer c.Close()
	v, err := c.Do("PING")
	if err != nil {
		return err
	}
	if v != "PONG" {
		return fmt.Errorf("PING answered %v", v)
	}
	return nil
}

func (s *Server) dial() (*Conn, error) {
	c, err := DialTLS(s.Addr(), 2*time.Second, s.clientTLS)
	if err != nil {
		return nil, err
	}
	if s.password != "" {
		if _, err := c.Do("AUTH", s.password); err != nil {
			c.Close()
			return nil, err
		}
	}
	return c, nil
}

func (s *Server) logTail() string {
	b, err := os.ReadFile(filepath.Join(s.dir, "redis.log"))
	if err != nil {
		return ""
	}
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}

// Running reports whether the process is running.
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cmd != nil
}

func (s *Server) signal(sig syscall.Signal, wait time.Duration) {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-exited:
		return
	case <-time.After(wait):
	}
	_ = cmd.Process.Kill()
	<-exited
}

// Stop stops the process gracefully (SIGTERM) and waits for it to exit.
func (s *Server) Stop() { s.signal(syscall.SIGTERM, 5*time.Second) }

// Kill kills the process (SIGKILL) and waits for it to exit. Idempotent.
func (s *Server) Kill() { s.signal(syscall.SIGKILL, 5*time.Second) }

// Restart stops the server and starts it again on the same port.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	s.Start()
}

// Client returns a new connection to the server, closed when the test ends.
func (s *Server) Client() *Conn {
	s.t.Helper()
	c, err := s.dial()
	if err != nil {
		s.t.Fatalf("redistest: connecting to %s: %v", s.Addr(), err)
	}
	s.t.Cleanup(func() { _ = c.Close() })
	return c
}

// Do runs one command on a fresh connection.
func (s *Server) Do(args ...string) (any, error) {
	c, err := s.dial()
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.Do(args...)
}

// Publish publishes payload on channel and returns the number of receivers
// Redis reports; it fails the test on error.
func (s *Server) Publish(channel, payload string) int {
	s.t.Helper()
	v, err := s.Do("PUBLISH", channel, payload)
	if err != nil {
		s.t.Fatalf("redistest: PUBLISH %s: %v", channel, err)
	}
	n, _ := v.(int64)
	return int(n)
}
