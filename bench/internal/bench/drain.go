package bench

import (
	"bufio"
	"context"
	"encoding/binary"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// DrainResult is what clients saw of a lame-duck shutdown: when, after
// SIGTERM, /readyz failed and each client was closed.
type DrainResult struct {
	Clients   int             `json:"clients"`
	Connected int             `json:"connected"`
	Delay     time.Duration   `json:"lame_duck_delay"`
	Duration  time.Duration   `json:"lame_duck_duration"`
	ReadyzOff time.Duration   `json:"readyz_failed_after"`
	Closes    []time.Duration `json:"-"`     // after SIGTERM, sorted
	Codes     map[int]int     `json:"codes"` // close status codes (1005: none, -1: no close frame)
	Exit      string          `json:"exit"`  // the server's exit status
	MaxPer100 int             `json:"max_closes_per_100ms"`
}

// cmdDrain measures the reconnect spread of a lame-duck shutdown: N
// clients on one primus-server, SIGTERM, and the times of their closes.
func cmdDrain(ctx context.Context, args []string, stdout, stderr io.Writer, logf func(string, ...any)) error {
	fs := flag.NewFlagSet("drain", flag.ContinueOnError)
	fs.SetOutput(stderr)
	clients := fs.Int("clients", 10000, "connections to open")
	delay := fs.Duration("delay", 2*time.Second, "-lame-duck-delay of the server")
	duration := fs.Duration("duration", 10*time.Second, "-lame-duck-duration of the server")
	bin := fs.String("server", "", "primus-server binary (default: build ./cmd/primus-server)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if _, err := raiseNoFile(); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "primus-drain-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if *bin == "" {
		repo, err := findRepo()
		if err != nil {
			return err
		}
		*bin = filepath.Join(tmp, "primus-server")
		logf("building cmd/primus-server")
		build := exec.CommandContext(ctx, "go", "build", "-o", *bin, "./cmd/primus-server")
		build.Dir = repo // the library's module, not this one
		if out, err := build.CombinedOutput(); err != nil {
			return fmt.Errorf("go build: %v\n%s", err, out)
		}
	}
	res, err := RunDrain(ctx, *bin, tmp, *clients, *delay, *duration, logf)
	if err != nil {
		return err
	}
	fmt.Fprint(stdout, res.Markdown())
	return nil
}

// RunDrain runs the measurement with the primus-server binary bin.
func RunDrain(ctx context.Context, bin, dir string, clients int, delay, duration time.Duration, logf func(string, ...any)) (*DrainResult, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	srv, err := startServer("primus-server", dir, filepath.Join(dir, "server.log"), nil, nil, bin,
		"-addr", addr, "-log-level", "warn", "-lame-duck-delay", delay.String(), "-lame-duck-duration", duration.String())
	if err != nil {
		return nil, err
	}
	defer srv.stop()
	if err := waitFor(ctx, srv, 15*time.Second, func() error { return goHealthy(addr) }); err != nil {
		return nil, err
	}
	res := &DrainResult{Clients: clients, Delay: delay, Duration: duration, Codes: map[int]int{}}
	var (
		mu     sync.Mutex
		closed []time.Time
		codes  = map[int]int{}
		wg     sync.WaitGroup
		conns  []net.Conn
	)
	logf("connecting %d clients", clients)
	sem := make(chan struct{}, 200)
	for range clients {
		sem <- struct{}{}
		c, rest, err := dialRaw(addr)
		<-sem
		if err != nil {
			logf("client %d: %v", len(conns), err)
			break
		}
		conns = append(conns, c)
		wg.Add(1)
		go func() {
			defer wg.Done()
			code := readUntilClose(c, rest)
			mu.Lock()
			closed = append(closed, time.Now())
			codes[code]++
			mu.Unlock()
		}()
	}
	res.Connected = len(conns)
	logf("%d connected; SIGTERM", res.Connected)
	sigterm := time.Now()
	if err := srv.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return nil, err
	}
	for time.Since(sigterm) < 5*time.Second {
		if resp, err := http.Get("http://" + addr + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusServiceUnavailable {
				res.ReadyzOff = time.Since(sigterm)
				break
			}
		}
		time.Sleep(time.Millisecond)
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(delay + duration + 30*time.Second):
		for _, c := range conns {
			c.Close()
		}
		<-done
	}
	select {
	case <-srv.done:
		res.Exit = fmt.Sprint(srv.err)
	case <-time.After(15 * time.Second):
		res.Exit = "still running"
	}
	for _, at := range closed {
		res.Closes = append(res.Closes, at.Sub(sigterm))
	}
	slices.Sort(res.Closes)
	res.Codes = codes
	for i, j := 0, 0; i < len(res.Closes); i++ {
		for res.Closes[i]-res.Closes[j] >= 100*time.Millisecond {
			j++
		}
		res.MaxPer100 = max(res.MaxPer100, i-j+1)
	}
	return res, nil
}

func dialRaw(addr string) (net.Conn, []byte, error) {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, nil, err
	}
	if _, err := c.Write(handshakeRequest(addr, "/primus?_primuscb=drain")); err != nil {
		c.Close()
		return nil, nil, err
	}
	rest, err := readHandshake(c)
	if err != nil {
		c.Close()
		return nil, nil, err
	}
	return c, rest, nil
}

// readUntilClose reads server frames (answering nothing) until a close
// frame, whose status it returns (1005 for none), or -1 if the connection
// ended without one.
func readUntilClose(c net.Conn, rest []byte) int {
	defer c.Close()
	r := bufio.NewReader(io.MultiReader(strings.NewReader(string(rest)), c))
	var buf []byte
	tmp := make([]byte, 4096)
	for {
		for {
			op, p, n, err := nextFrame(buf)
			if err != nil {
				return -1
			}
			if n == 0 {
				break
			}
			if op == opClose {
				if len(p) < 2 {
					return 1005
				}
				return int(binary.BigEndian.Uint16(p))
			}
			buf = buf[n:]
		}
		n, err := r.Read(tmp)
		if err != nil {
			return -1
		}
		buf = append(buf, tmp[:n]...)
	}
}

// Markdown renders the result: the spread of the closes over time.
func (r *DrainResult) Markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "Lame-duck drain of %d connected clients (of %d), -lame-duck-delay %v, -lame-duck-duration %v.\n\n",
		r.Connected, r.Clients, r.Delay, r.Duration)
	fmt.Fprintf(&b, "- /readyz answered 503 %v after SIGTERM; the server exited with %s\n", r.ReadyzOff.Round(time.Millisecond), r.Exit)
	if len(r.Closes) == 0 {
		return b.String()
	}
	q := func(f float64) time.Duration {
		return r.Closes[int(f*float64(len(r.Closes)-1))].Round(time.Millisecond)
	}
	fmt.Fprintf(&b, "- closes after SIGTERM: first %v, p10 %v, p50 %v, p90 %v, last %v\n", q(0), q(0.1), q(0.5), q(0.9), q(1))
	fmt.Fprintf(&b, "- at most %d closes in any 100 ms (%.0f/s; an even spread is %.0f/s)\n",
		r.MaxPer100, float64(r.MaxPer100)*10, float64(r.Connected)/r.Duration.Seconds())
	fmt.Fprintf(&b, "- close status codes: %v\n\n", r.Codes)
	fmt.Fprintf(&b, "| seconds after SIGTERM | closes |\n|---|---|\n")
	const bucket = time.Second
	last := r.Closes[len(r.Closes)-1]
	for from := time.Duration(0); from <= last; from += bucket {
		n := 0
		for _, c := range r.Closes {
			if c >= from && c < from+bucket {
				n++
			}
		}
		fmt.Fprintf(&b, "| %d-%d | %d |\n", int(from/time.Second), int((from+bucket)/time.Second), n)
	}
	return b.String()
}
