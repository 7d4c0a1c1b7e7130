package redistest

import (
	"net"
	"sync"
	"sync/atomic"
	"testing"
)

// Proxy is a TCP proxy in front of a server that can black-hole the
// connections it carries: after Blackhole, bytes on the connections open at
// that moment are silently discarded in both directions while the
// connections stay up; connections opened later work normally. This is how a
// test produces a "silent" subscription (connection up, messages not
// arriving) as a half-dead network path or a wedged middlebox would.
type Proxy struct {
	t      testing.TB
	l      net.Listener
	target string

	mu     sync.Mutex
	conns  []*proxyConn
	closed bool
	wg     sync.WaitGroup
}

type proxyConn struct {
	a, b net.Conn
	dead atomic.Bool
}

// StartProxy listens on a free loopback port and forwards to target. It is
// closed when the test ends.
func StartProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("redistest: proxy listen: %v", err)
	}
	p := &Proxy{t: t, l: l, target: target}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.Close)
	return p
}

// Addr is the proxy's host:port.
func (p *Proxy) Addr() string { return p.l.Addr().String() }

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		a, err := p.l.Accept()
		if err != nil {
			return
		}
		b, err := net.Dial("tcp", p.target)
		if err != nil {
			_ = a.Close()
			continue
		}
		pc := &proxyConn{a: a, b: b}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			_ = a.Close()
			_ = b.Close()
			return
		}
		p.conns = append(p.conns, pc)
		p.wg.Add(2)
		p.mu.Unlock()
		go p.pump(pc, a, b)
		go p.pump(pc, b, a)
	}
}

func (p *Proxy) pump(pc *proxyConn, from, to net.Conn) {
	defer p.wg.Done()
	defer func() { _ = from.Close(); _ = to.Close() }()
	buf := make([]byte, 32<<10)
	for {
		n, err := from.Read(buf)
		if n > 0 && !pc.dead.Load() {
			if _, werr := to.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// Blackhole makes every connection currently open through the proxy
// discard all traffic from now on, without closing it.
func (p *Proxy) Blackhole() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, pc := range p.conns {
		pc.dead.Store(true)
	}
}

// Close closes the listener and every connection and waits for the
// proxy's goroutines.
func (p *Proxy) Close() {
	_ = p.l.Close()
	p.mu.Lock()
	p.closed = true
	for _, pc := range p.conns {
		_ = pc.a.Close()
		_ = pc.b.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}
