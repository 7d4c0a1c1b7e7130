package writer

import "sync"

// Pool writes the queues of many connections from a few goroutines, the
// flushers (at most Max), which exist only while some writer has frames
// to write. A writer waits its turn in the ready list, so under load more
// frames reach its queue before it is written and each write(2) carries
// more of them; the kernel's cost is per write, not per byte. Flushers
// never block on a client: a writer whose socket fills up continues on a
// goroutine of its own.
//
// The Pool accounts for every goroutine it starts: Wait returns when none
// is left.
type Pool struct {
	stats *Stats
	max   int
	wg    sync.WaitGroup // flushers and writer goroutines

	mu      sync.Mutex
	ready   []*Writer // ready[head:] wait for a flusher, oldest first
	head    int
	running int
}

// NewPool returns a pool of at most maxFlushers flushers (at least one)
// counting into stats.
func NewPool(maxFlushers int, stats *Stats) *Pool {
	return &Pool{stats: stats, max: max(1, maxFlushers)}
}

// Wait waits until the pool's goroutines are gone. Call it only once no
// writer will start one (every writer was discarded): a goroutine started
// during Wait is not waited for.
func (p *Pool) Wait() { p.wg.Wait() }

// compactAt is how far head may advance before the ready list is moved
// down, so that a list that never empties does not grow without bound.
const compactAt = 1024

// schedule puts w at the end of the ready list. The caller owns w's
// writes (it is marked writing).
func (p *Pool) schedule(w *Writer) {
	p.mu.Lock()
	p.ready = append(p.ready, w)
	start := p.running < p.max
	if start {
		p.running++
		p.wg.Add(1)
	}
	p.mu.Unlock()
	if start {
		go p.run()
	}
}

// goWrite gives w a writer goroutine of its own, starting with the unsent
// rest of batch (if any). The caller owns w's writes.
func (p *Pool) goWrite(w *Writer, batch [][]byte, sent int) {
	p.wg.Add(1)
	if batch == nil {
		go w.writeFresh() // the common case captures one pointer, not five words
		return
	}
	go w.writeLoop(batch, sent)
}

// next returns the writer to flush next, or nil when the flusher should exit.
func (p *Pool) next() *Writer {
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
	w := p.ready[p.head]
	p.ready[p.head] = nil
	p.head++
	if p.head >= compactAt && p.head*2 >= len(p.ready) {
		n := copy(p.ready, p.ready[p.head:])
		clear(p.ready[n:])
		p.ready, p.head = p.ready[:n], 0
	}
	return w
}

// rawWriters keeps rawWriters (and their scratch buffers) between the
// short lives of flushers.
var rawWriters = sync.Pool{New: func() any { return newRawWriter() }}

func (p *Pool) run() {
	defer p.wg.Done()
	rw := rawWriters.Get().(*rawWriter)
	defer rawWriters.Put(rw)
	for w := p.next(); w != nil; w = p.next() {
		w.flush(rw)
	}
}
