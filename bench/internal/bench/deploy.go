package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// server is a child process of the comparison: redis-server or a node.
type server struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error
}

// startServer starts argv with env added, output to logPath. onLine, if
// set, sees stdout line by line.
func startServer(name, dir, logPath string, env []string, onLine func(string), argv ...string) (*server, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = logf
	// The children die with the generator, whatever happens to it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	var stdout io.ReadCloser
	if onLine != nil {
		if stdout, err = cmd.StdoutPipe(); err != nil {
			logf.Close()
			return nil, err
		}
	} else {
		cmd.Stdout = logf
	}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	s := &server{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		if stdout != nil {
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				fmt.Fprintln(logf, sc.Text())
				onLine(sc.Text())
			}
		}
		s.err = cmd.Wait()
		logf.Close()
		close(s.done)
	}()
	return s, nil
}

func (s *server) pid() int { return s.cmd.Process.Pid }

func (s *server) exited() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM, then SIGKILL after a grace period.
func (s *server) stop() {
	if s.exited() {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(6 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
}

// tail returns the end of the process's log.
func (s *server) tail() string {
	b, _ := os.ReadFile(s.log)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}

// freePort returns a free loopback TCP port (never Redis's 6379: the
// kernel picks it from the ephemeral range).
func freePort() (int, error) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// waitFor polls ready every 50 ms until it succeeds, s exits or timeout.
func waitFor(ctx context.Context, s *server, timeout time.Duration, ready func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := ready()
		if err == nil {
			return nil
		}
		if s.exited() {
			return fmt.Errorf("%s exited: %v\n%s", s.name, s.err, s.tail())
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after %s: %v\n%s", s.name, timeout, err, s.tail())
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func redisPing(addr string) error {
	c, err := net.DialTimeout("tcp4", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	b := make([]byte, 16)
	n, err := c.Read(b)
	if err != nil {
		return err
	}
	if !bytes.HasPrefix(b[:n], []byte("+PONG")) {
		return fmt.Errorf("redis answered %q", b[:n])
	}
	return nil
}

// centrifugeHealthy checks centrifuge-server's /healthz (served once its
// node runs, Redis broker included).
func centrifugeHealthy(addr string) error {
	resp, err := http.Get("http://" + addr + "/healthz")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("healthz %d", resp.StatusCode)
	}
	return nil
}

// buildCentrifuge builds the Centrifuge peer, the module in dir
// (bench/centrifuge), into the binary out.
func buildCentrifuge(ctx context.Context, dir, out string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, ".")
	cmd.Dir = dir
	// Its own go.mod, as the module's users see it, even under a go.work.
	cmd.Env = append(os.Environ(), "GOWORK=off")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build in %s: %v\n%s", dir, err, b)
	}
	return nil
}

// centrifugePrefix is the Redis prefix of the Centrifuge nodes (the
// library's default).
const centrifugePrefix = "centrifuge"

// stackProtocol is the client protocol each stack speaks.
func stackProtocol(stack string) string {
	switch stack {
	case "centrifuge":
		return ProtoCentrifuge
	case "go-history":
		return ProtoPrimusRecover
	}
	return ProtoPrimus // node, go, go-cluster, floor
}

// goHealthy waits for /healthz to say "ok" (which includes a connected
// Redis broker).
func goHealthy(addr string) error {
	resp, err := http.Get("http://" + addr + "/healthz")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || !bytes.Contains(b, []byte(`"status":"ok"`)) {
		return fmt.Errorf("healthz %d %s", resp.StatusCode, bytes.TrimSpace(b))
	}
	return nil
}

// deployment is Redis and the two nodes of one stack.
type deployment struct {
	redis   *server
	shards  []*server // go-cluster: the other masters of the Redis Cluster
	nodes   []*server
	targets []Target
	redisAt string
}

func (d *deployment) procs() []Proc {
	var ps []Proc
	for i, n := range d.nodes {
		ps = append(ps, Proc{Name: "server-" + string(rune('x'+i)), Pid: n.pid()})
	}
	ps = append(ps, Proc{Name: "redis", Pid: d.redis.pid()})
	for i, s := range d.shards {
		ps = append(ps, Proc{Name: "redis-shard" + strconv.Itoa(i+2), Pid: s.pid()})
	}
	return ps
}

func (d *deployment) stop() {
	for _, n := range d.nodes {
		n.stop()
	}
	if d.redis != nil {
		d.redis.stop()
	}
	for _, s := range d.shards {
		s.stop()
	}
}

// alive reports a node or Redis that died.
func (d *deployment) alive() error {
	for _, s := range append(append([]*server{d.redis}, d.shards...), d.nodes...) {
		if s != nil && s.exited() {
			return fmt.Errorf("%s exited: %v\n%s", s.name, s.err, s.tail())
		}
	}
	return nil
}

// env is what the comparison needs to start the stacks.
type env struct {
	repo      string // module root
	nodeDir   string // testdata/node
	tmp       string
	goBin     string // built primus-server
	cfBin     string // built centrifuge-server (bench/centrifuge)
	redisBin  string
	goRedis   string // native or compat
	pingMs    int
	logPrefix string

	profileDir string // run Go nodes as "<self> serve -cpuprofile <dir>/<tag>.prof"
	self       string
}

func (e *env) startRedis(ctx context.Context, tag string) (*server, string, error) {
	port, err := freePort()
	if err != nil {
		return nil, "", err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	s, err := startServer("redis", e.tmp, e.logPath(tag+"-redis"), nil, nil, e.redisBin,
		"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--protected-mode", "no", "--daemonize", "no", "--dir", e.tmp)
	if err != nil {
		return nil, "", err
	}
	if err := waitFor(ctx, s, 10*time.Second, func() error { return redisPing(addr) }); err != nil {
		s.stop()
		return nil, "", err
	}
	return s, addr, nil
}

// startCluster starts a Redis Cluster of three masters without replicas
// (cluster-enabled redis-servers joined with redis-cli --cluster create):
// the first master, the others, and the seed addresses.
func (e *env) startCluster(ctx context.Context, tag string) (*server, []*server, string, error) {
	var all []*server
	var addrs []string
	fail := func(err error) (*server, []*server, string, error) {
		for _, s := range all {
			s.stop()
		}
		return nil, nil, "", err
	}
	for i := range 3 {
		port, err := freeClusterPort()
		if err != nil {
			return fail(err)
		}
		addr := "127.0.0.1:" + strconv.Itoa(port)
		dir := filepath.Join(e.tmp, fmt.Sprintf("%scluster%d-%d", e.logPrefix+tag, i, port))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fail(err)
		}
		s, err := startServer(fmt.Sprintf("redis%d", i), dir, e.logPath(fmt.Sprintf("%s-redis%d", tag, i)), nil, nil, e.redisBin,
			"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
			"--protected-mode", "no", "--daemonize", "no", "--dir", dir,
			"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000")
		if err != nil {
			return fail(err)
		}
		all = append(all, s)
		if err := waitFor(ctx, s, 10*time.Second, func() error { return redisPing(addr) }); err != nil {
			return fail(err)
		}
		addrs = append(addrs, addr)
	}
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		return fail(fmt.Errorf("redis-cli is needed for the go-cluster stack: %w", err))
	}
	args := append([]string{"--cluster", "create"}, addrs...)
	if out, err := exec.CommandContext(ctx, cli, append(args, "--cluster-replicas", "0", "--cluster-yes")...).CombinedOutput(); err != nil {
		return fail(fmt.Errorf("redis-cli --cluster create: %v\n%s", err, out))
	}
	for _, a := range addrs {
		if err := waitFor(ctx, all[0], 15*time.Second, func() error {
			out, err := exec.CommandContext(ctx, cli, "-h", "127.0.0.1", "-p", a[strings.LastIndexByte(a, ':')+1:], "cluster", "info").Output()
			if err != nil || !bytes.Contains(out, []byte("cluster_state:ok")) {
				return fmt.Errorf("%s: cluster not ok yet", a)
			}
			return nil
		}); err != nil {
			return fail(err)
		}
	}
	return all[0], all[1:], strings.Join(addrs, ","), nil
}

// freeClusterPort returns a free loopback port below 55536 whose cluster
// bus port (+10000) is free too.
func freeClusterPort() (int, error) {
	for range 200 {
		port := 20000 + rand.IntN(35000)
		ok := true
		for _, p := range []int{port, port + 10000} {
			ln, err := net.Listen("tcp4", "127.0.0.1:"+strconv.Itoa(p))
			if err != nil {
				ok = false
				break
			}
			ln.Close()
		}
		if ok {
			return port, nil
		}
	}
	return 0, errors.New("no free cluster port pair")
}

func (e *env) logPath(tag string) string {
	return e.tmp + "/" + e.logPrefix + tag + ".log"
}

// goHistorySize is the history kept per room by the go-history stack.
const goHistorySize = 100

// deploy starts Redis and two nodes of stack ("node", "centrifuge", "go",
// "go-cluster", "go-history" or "floor").
func (e *env) deploy(ctx context.Context, stack, tag string) (*deployment, error) {
	d := &deployment{}
	dl, err := dialectFor(stackProtocol(stack))
	if err != nil {
		return nil, err
	}
	var seeds string
	if stack == "go-cluster" {
		if d.redis, d.shards, seeds, err = e.startCluster(ctx, tag); err != nil {
			return nil, err
		}
		d.redisAt = seeds[:strings.IndexByte(seeds+",", ',')]
	} else if d.redis, d.redisAt, err = e.startRedis(ctx, tag); err != nil {
		return nil, err
	}
	_, rport, _ := net.SplitHostPort(d.redisAt)
	for i := range 2 {
		port, err := freePort()
		if err != nil {
			d.stop()
			return nil, err
		}
		addr := "127.0.0.1:" + strconv.Itoa(port)
		name := fmt.Sprintf("%s-node%d", stack, i)
		var s *server
		switch stack {
		case "go", "go-cluster", "go-history":
			argv := []string{e.goBin}
			if e.profileDir != "" {
				argv = []string{e.self, "serve", "-cpuprofile", filepath.Join(e.profileDir, e.logPrefix+tag+"-"+name+".prof"), "--"}
			}
			switch stack {
			case "go-cluster":
				argv = append(argv, "-redis-cluster-addrs", seeds)
			case "go-history":
				// Every room keeps history; the clients join with
				// "recover" (positioned delivery). Native mode only.
				argv = append(argv, "-redis-url", d.redisAt, "-history-size", strconv.Itoa(goHistorySize), "-history-ttl", "5m")
			default:
				argv = append(argv, "-redis-url", d.redisAt, "-redis-mode", e.goRedis)
			}
			argv = append(argv, "-addr", addr,
				"-ping-interval", strconv.Itoa(e.pingMs)+"ms", "-log-level", "warn", "-shutdown-timeout", "3s",
				"-lame-duck-delay", "0s", "-lame-duck-duration", "0s")
			s, err = startServer(name, e.repo, e.logPath(tag+"-"+name), nil, nil, argv...)
			if err == nil {
				err = waitFor(ctx, s, 15*time.Second, func() error { return goHealthy(addr) })
			}
		case "node":
			ready := make(chan struct{})
			s, err = startServer(name, e.nodeDir, e.logPath(tag+"-"+name),
				[]string{"PORT=" + strconv.Itoa(port), "REDIS_HOST=127.0.0.1", "REDIS_PORT=" + rport,
					"PING_INTERVAL=" + strconv.Itoa(e.pingMs)},
				func(line string) {
					if strings.HasPrefix(line, "listening ") {
						select {
						case <-ready:
						default:
							close(ready)
						}
					}
				}, "node", "server.js")
			if err == nil {
				err = waitFor(ctx, s, 30*time.Second, func() error {
					select {
					case <-ready:
						return nil
					default:
						return errors.New("no listening line yet")
					}
				})
			}
		case "centrifuge":
			s, err = startServer(name, e.tmp, e.logPath(tag+"-"+name), nil, nil, e.cfBin,
				"-addr", addr, "-redis", d.redisAt, "-channel", centrifugePrefix)
			if err == nil {
				err = waitFor(ctx, s, 15*time.Second, func() error { return centrifugeHealthy(addr) })
			}
		case "floor":
			// One process for both "nodes": no Redis hop.
			if i == 1 {
				d.targets = append(d.targets, d.targets[0])
				continue
			}
			s, err = startServer(name, e.tmp, e.logPath(tag+"-"+name), nil, nil, e.self, "floor", "-addr", addr)
			if err == nil {
				err = waitFor(ctx, s, 10*time.Second, func() error {
					c, err := net.DialTimeout("tcp4", addr, time.Second)
					if err == nil {
						c.Close()
					}
					return err
				})
			}
		default:
			err = fmt.Errorf("unknown stack %q", stack)
		}
		if s != nil {
			d.nodes = append(d.nodes, s)
		}
		if err != nil {
			d.stop()
			return nil, err
		}
		d.targets = append(d.targets, Target{Addr: addr, Path: dl.path()})
	}
	return d, nil
}

// raiseNoFile raises the open-file soft limit to the hard limit (children
// inherit it: the Node servers need it for 20,000 connections).
func raiseNoFile() (uint64, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, err
	}
	if lim.Cur < lim.Max {
		lim.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			return 0, err
		}
	}
	return lim.Cur, nil
}

// cmdOutput runs a command and returns its trimmed output ("" on error).
func cmdOutput(dir string, argv ...string) string {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = dir
	b, err := cmd.Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}
