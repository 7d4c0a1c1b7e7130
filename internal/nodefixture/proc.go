package nodefixture

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// proc is one node process with its stdout read line by line.
type proc struct {
	name  string // script name, for messages
	cmd   *exec.Cmd
	stdin io.WriteCloser

	stdout syncBuffer // transcript of stdout lines
	stderr syncBuffer

	done    chan struct{} // closed once the process has exited and stdout is drained
	waitErr error         // set before done is closed

	stdinMu sync.Mutex
}

// startProc starts `node <script> args...` in the fixture directory with the
// given extra environment. onLine is called from the reader goroutine for every
// stdout line (without the newline).
func startProc(script string, args, env []string, onLine func([]byte)) (*proc, error) {
	p := &proc{name: script, done: make(chan struct{})}
	cmd := exec.Command("node", append([]string{filepath.Join(Dir(), script)}, args...)...)
	cmd.Dir = Dir()
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = &p.stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("nodefixture: starting node %s: %w", script, err)
	}
	p.cmd, p.stdin = cmd, stdin
	go p.read(stdout, onLine)
	return p, nil
}

func (p *proc) read(stdout io.Reader, onLine func([]byte)) {
	r := bufio.NewReader(stdout)
	for {
		line, err := r.ReadBytes('\n')
		if len(line) > 0 {
			p.stdout.Write(line)
			onLine(bytes.TrimRight(line, "\r\n"))
		}
		if err != nil {
			break
		}
	}
	p.waitErr = p.cmd.Wait()
	close(p.done)
}

// send writes one line to the process's stdin.
func (p *proc) send(line []byte) error {
	p.stdinMu.Lock()
	defer p.stdinMu.Unlock()
	select {
	case <-p.done:
		return fmt.Errorf("%w: node %s: %v", ErrExited, p.name, p.waitErr)
	default:
	}
	_, err := p.stdin.Write(append(line, '\n'))
	return err
}

// exited reports whether the process has exited.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// kill sends SIGKILL and waits until the process is reaped.
func (p *proc) kill() {
	if !p.exited() {
		_ = p.cmd.Process.Kill()
	}
	<-p.done // cmd.Wait has closed stdin
}

// terminate sends SIGTERM and waits up to grace for the exit, then kills.
// It returns the exit error (nil for exit code 0).
func (p *proc) terminate(grace time.Duration) error {
	if !p.exited() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
	}
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-p.done:
		return p.waitErr
	case <-t.C:
		p.kill()
		return fmt.Errorf("nodefixture: node %s did not exit within %v of SIGTERM; killed", p.name, grace)
	}
}

// wait waits for the process to exit on its own.
func (p *proc) wait(ctx context.Context) error {
	select {
	case <-p.done:
		return p.waitErr
	case <-ctx.Done():
		return ctx.Err()
	}
}

// output returns both transcripts for logs.
func (p *proc) output() string {
	return fmt.Sprintf("--- node %s stdout ---\n%s--- node %s stderr ---\n%s", p.name, p.stdout.String(), p.name, p.stderr.String())
}

// syncBuffer is a bytes.Buffer safe for concurrent use that can be waited on.
type syncBuffer struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	notify chan struct{} // closed and replaced on every write; nil until needed
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.notify != nil {
		close(b.notify)
		b.notify = nil
	}
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// waitCount waits until the buffer holds at least n occurrences of substr,
// until ctx is done or done is closed (the writer is gone).
func (b *syncBuffer) waitCount(ctx context.Context, done <-chan struct{}, substr string, n int) error {
	for {
		b.mu.Lock()
		got := bytes.Count(b.buf.Bytes(), []byte(substr))
		if got >= n {
			b.mu.Unlock()
			return nil
		}
		if b.notify == nil {
			b.notify = make(chan struct{})
		}
		ch := b.notify
		b.mu.Unlock()
		select {
		case <-ch:
		case <-done:
			// Writes may have raced with the exit; look once more.
			if bytes.Count([]byte(b.String()), []byte(substr)) >= n {
				return nil
			}
			return fmt.Errorf("%w before %q appeared %d times (seen %d)", ErrExited, substr, n, got)
		case <-ctx.Done():
			return fmt.Errorf("nodefixture: waiting for %q x%d (seen %d): %w", substr, n, got, ctx.Err())
		}
	}
}
