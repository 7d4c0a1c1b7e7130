package primus

import "sync"

// flushPool writes the queues of many sparks from a few goroutines, at
// most GOMAXPROCS, which exist only while some spark has frames to write.
// A spark waits its turn in the ready list, so under load more frames reach
// its queue before it is written and each write(2) carries more of them; the
// kernel's cost is per write, not per byte. Flushers never block on a
// client: see outQueue.flush.
type flushPool struct {
	mu      sync.Mutex
	ready   []*Spark // ready[head:] wait for a flusher, oldest first
	head    int
	running int
	max     int
}

// compactAt is how far head may advance before the ready list is moved
// down, so that a list that never empties does not grow without bound.
const compactAt = 1024

// schedule puts s at the end of the ready list. The caller owns s's writes
// (its queue is marked writing) and holds a count of srv.wg.
func (p *flushPool) schedule(s *Spark) {
	p.mu.Lock()
	p.ready = append(p.ready, s)
	start := p.running < p.max
	if start {
		p.running++
	}
	p.mu.Unlock()
	if start {
		s.srv.wg.Add(1)
		go p.run(s.srv)
	}
}

// next returns the spark to write next, or nil when the flusher should exit.
func (p *flushPool) next() *Spark {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.head == len(p.ready) {
		p.running--
		if cap(p.ready) > compactAt {
			p.ready = nil // a burst's list is not kept for idle times
		}
		p.ready, p.head = p.ready[:0], 0
		return nil
	}
	s := p.ready[p.head]
	p.ready[p.head] = nil
	p.head++
	if p.head >= compactAt && p.head*2 >= len(p.ready) {
		n := copy(p.ready, p.ready[p.head:])
		clear(p.ready[n:])
		p.ready, p.head = p.ready[:n], 0
	}
	return s
}

// writerPool keeps rawWriters (and their scratch buffers) between the
// short lives of flushers.
var writerPool = sync.Pool{New: func() any { return newRawWriter() }}

func (p *flushPool) run(srv *Server) {
	defer srv.wg.Done()
	w := writerPool.Get().(*rawWriter)
	defer writerPool.Put(w)
	for s := p.next(); s != nil; s = p.next() {
		s.out.flush(s, w)
	}
}
