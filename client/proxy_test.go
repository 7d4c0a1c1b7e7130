package client

import (
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
)

// cutProxy is a loopback TCP proxy in front of a server whose connections a
// test can cut: cut closes every connection it carries and refuses new ones
// (accepted, then closed at once) until restore. Its target can change, as
// a server restarted elsewhere behind the same address.
type cutProxy struct {
	l net.Listener

	mu      sync.Mutex
	target  string
	blocked bool
	closed  bool
	conns   map[net.Conn]struct{}
	wg      sync.WaitGroup

	refused  atomic.Int64 // connections refused while cut
	accepted atomic.Int64 // connections carried
}

func startCutProxy(t *testing.T, target string) *cutProxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("proxy: %v", err)
	}
	p := &cutProxy{l: l, target: target, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

// URL is the proxy's http URL.
func (p *cutProxy) URL() string { return "http://" + p.l.Addr().String() }

func (p *cutProxy) setTarget(target string) {
	p.mu.Lock()
	p.target = target
	p.mu.Unlock()
}

// cut closes every connection and refuses new ones until restore.
func (p *cutProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.blocked = true
	for c := range p.conns {
		_ = c.Close()
	}
}

func (p *cutProxy) restore() {
	p.mu.Lock()
	p.blocked = false
	p.mu.Unlock()
}

func (p *cutProxy) close() {
	_ = p.l.Close()
	p.mu.Lock()
	p.closed = true
	for c := range p.conns {
		_ = c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

func (p *cutProxy) accept() {
	defer p.wg.Done()
	for {
		a, err := p.l.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		blocked, target := p.blocked, p.target
		p.mu.Unlock()
		if blocked {
			p.refused.Add(1)
			_ = a.Close()
			continue
		}
		b, err := net.Dial("tcp", target)
		if err != nil {
			_ = a.Close()
			continue
		}
		p.mu.Lock()
		if p.closed || p.blocked {
			p.mu.Unlock()
			_ = a.Close()
			_ = b.Close()
			continue
		}
		p.conns[a], p.conns[b] = struct{}{}, struct{}{}
		p.wg.Add(2)
		p.mu.Unlock()
		p.accepted.Add(1)
		go p.pump(a, b)
		go p.pump(b, a)
	}
}

func (p *cutProxy) pump(from, to net.Conn) {
	defer p.wg.Done()
	_, _ = io.Copy(to, from)
	_ = from.Close()
	_ = to.Close()
	p.mu.Lock()
	delete(p.conns, from)
	delete(p.conns, to)
	p.mu.Unlock()
}
