package clustertest

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/primusgo/primus/internal/redistest"
	"github.com/primusgo/primus/internal/testkit"
)

var (
	binOnce sync.Once
	binDir  string
	binPath string
	binErr  error
)

// primusServer builds cmd/primus-server once per test binary.
func primusServer(t testing.TB) string {
	t.Helper()
	binOnce.Do(func() {
		gobin, err := exec.LookPath("go")
		if err != nil {
			binErr = err
			return
		}
		if binDir, binErr = os.MkdirTemp("", "primus-server-"); binErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "primus-server")
		out, err := exec.Command(gobin, "build", "-o", binPath, "github.com/primusgo/primus/cmd/primus-server").CombinedOutput()
		if err != nil {
			binErr = &buildError{err, string(out)}
		}
	})
	if binErr != nil {
		t.Fatalf("building cmd/primus-server: %v", binErr)
	}
	return binPath
}

type buildError struct {
	err error
	out string
}

func (e *buildError) Error() string { return e.err.Error() + "\n" + e.out }

func cleanupBinary() {
	if binDir != "" {
		_ = os.RemoveAll(binDir)
	}
}

func exitWith(code int) { os.Exit(code) }

var listeningRe = regexp.MustCompile(`msg="primus-server listening" addr=(\S+)`)

// process is a running primus-server.
type process struct {
	node
	cmd  *exec.Cmd
	done chan struct{}

	mu  sync.Mutex
	out strings.Builder
}

// startProcess runs primus-server with args (plus -addr 127.0.0.1:0) and
// waits until it listens. It is stopped with SIGTERM when the test ends.
func startProcess(t testing.TB, name string, args ...string) *process {
	t.Helper()
	bin := primusServer(t)
	cmd := exec.Command(bin, append([]string{"-addr", "127.0.0.1:0", "-log-level", "debug"}, args...)...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PRIMUS_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &process{node: node{name: name}, cmd: cmd, done: make(chan struct{})}
	addr := make(chan string, 1)
	read := make(chan struct{})
	go func() {
		defer close(read)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			p.mu.Lock()
			p.out.WriteString(line + "\n")
			p.mu.Unlock()
			if m := listeningRe.FindStringSubmatch(line); m != nil {
				select {
				case addr <- m[1]:
				default:
				}
			}
		}
	}()
	go func() {
		<-read
		_ = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("%s output:\n%s", name, p.output())
		}
	})
	select {
	case a := <-addr:
		p.url = "http://" + a
	case <-p.done:
		t.Fatalf("%s exited before listening:\n%s", name, p.output())
	case <-time.After(15 * time.Second):
		t.Fatalf("%s did not listen within 15s:\n%s", name, p.output())
	}
	return p
}

func (p *process) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// stop sends SIGTERM and waits (SIGKILL after 10 s).
func (p *process) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// health returns the status field of GET /healthz.
func (n node) health() string {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, n.url+"/healthz", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	var h struct {
		Status string `json:"status"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&h)
	return h.Status
}

// TestPrimusServerProcesses runs three primus-server processes on one
// Redis: exactly-once multi-room writes with except across processes, and
// recovery from a Redis restart.
func TestPrimusServerProcesses(t *testing.T) {
	t.Parallel()
	srv := redistest.StartServer(t)
	ch := freshChannel()
	var nodes [3]node
	procs := make([]*process, 3)
	for i := range procs {
		procs[i] = startProcess(t, "proc"+string(rune('1'+i)), "-redis-url", srv.URL(), "-channel", ch)
		nodes[i] = procs[i].node
	}
	for _, n := range nodes {
		testkit.WaitFor(t, n.name+" healthy", func() bool { return n.health() == "ok" })
	}
	got := multiRoomScenario(t, nodes)
	want := map[string]int{"a1": 1, "a12": 1, "b2": 1, "b123": 1, "bx": 0, "c3": 1, "cnone": 0}
	for name, n := range want {
		if got[name] != n {
			t.Errorf("%s received %d copies, want %d", name, got[name], n)
		}
	}

	c2 := dial(t, "restart-c2", nodes[1].url)
	c2.join("after")
	awaitRoute(t, nodes[0], c2, "after", 10*time.Second)
	srv.Kill()
	testkit.WaitFor(t, "degraded health", func() bool { return nodes[1].health() == "degraded" })
	srv.Start()
	took := awaitRoute(t, nodes[0], c2, "after", 10*time.Second)
	t.Logf("cross-process delivery %v after Redis restarted", took.Round(time.Millisecond))
	if took > 2*time.Second {
		t.Errorf("delivery resumed after %v, want < 2s", took)
	}
	testkit.WaitFor(t, "healthy again", func() bool { return nodes[1].health() == "ok" })
}

// TestPrimusServerProcessesSentinel runs two primus-server processes
// through Sentinel and kills the master.
func TestPrimusServerProcessesSentinel(t *testing.T) {
	t.Parallel()
	g := redistest.StartSentinelGroup(t)
	ch := freshChannel()
	args := []string{"-sentinel-addrs", strings.Join(g.SentinelAddrs(), ","), "-sentinel-master", g.MasterName(), "-channel", ch}
	p1 := startProcess(t, "proc1", args...)
	p2 := startProcess(t, "proc2", args...)
	c1 := dial(t, "c1", p1.url)
	c2 := dial(t, "c2", p2.url)
	c1.join("r")
	c2.join("r")
	awaitRoute(t, p1.node, c2, "r", 10*time.Second)
	awaitRoute(t, p2.node, c1, "r", 10*time.Second)

	g.KillMaster()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := g.WaitForPromotion(ctx); err != nil {
		t.Fatal(err)
	}
	promoted := time.Now()
	awaitRoute(t, p1.node, c2, "r", 10*time.Second)
	awaitRoute(t, p2.node, c1, "r", 10*time.Second)
	took := time.Since(promoted)
	t.Logf("cross-process delivery both ways %v after the promotion", took.Round(time.Millisecond))
	if took > 5*time.Second {
		t.Errorf("delivery resumed %v after the promotion, want < 5s", took)
	}
}
