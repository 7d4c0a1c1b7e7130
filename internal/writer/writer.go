// Package writer is a connection's write path: a queue bounded in bytes,
// written by one writer at a time, each write carrying everything queued.
// It knows frames as bytes and connections as net.Conn, nothing of sparks
// or servers.
//
// The writer is normally a flusher of a Pool, which writes without
// blocking; a connection that does not take the bytes at once (its socket
// buffer is full), or that is not a plain socket (TLS), gets a writer
// goroutine of its own until its queue is empty. Idle connections have
// neither. A Pool owns every goroutine its writers start.
package writer

import (
	"errors"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Failure says why a Writer stopped accepting frames.
type Failure int

const (
	// None: the writer has not failed.
	None Failure = iota
	// SlowConsumer: the backlog overflowed Config.MaxBacklog.
	SlowConsumer
	// WriteError: a write failed, or the client took nothing for WriteTimeout.
	WriteError
)

// Stats are the counters a Pool's writers share.
type Stats struct {
	FramesOut     atomic.Uint64 // frames written
	Writes        atomic.Uint64 // write system calls (or net.Conn writes)
	Drops         atomic.Uint64 // frames refused: the writer is closing, failed or overflowing
	SlowConsumers atomic.Uint64 // writers failed with SlowConsumer
}

// Config configures a Writer.
type Config struct {
	Conn net.Conn
	// Raw is Conn's socket for non-blocking writes (RawConnOf); nil writes
	// through Conn from a goroutine of the writer's own.
	Raw syscall.RawConn
	// MaxBacklog bounds the bytes queued or being written besides the
	// largest frame among them: one frame larger than the bound is always
	// accepted.
	MaxBacklog int
	// WriteTimeout is how long the client may take nothing while frames
	// wait; then the writer fails with WriteError.
	WriteTimeout time.Duration
	// Goodbye is written, after what is being written, when the backlog
	// overflows and the socket still takes writes (a close frame).
	Goodbye []byte
	// OnFail is called when the writer fails. cut says that nothing more
	// can be written (a write failed or timed out): the connection should
	// be closed at once. Without cut (a slow consumer) the Goodbye frame is
	// queued behind what is being written; should writing fail, OnFail is
	// called again with cut. OnFail may run while the caller of Push holds
	// locks: it must not block.
	OnFail func(f Failure, cut bool)
}

// Writer is one connection's write path. Its zero value is unusable: call
// Init. All methods are safe for concurrent use; frames are shared between
// writers and never modified.
type Writer struct {
	pool *Pool
	cfg  Config

	mu      sync.Mutex
	frames  [][]byte
	spare   [][]byte
	bytes   int  // queued or being written
	largest int  // the largest frame queued or being written (0 when idle)
	writing bool // a flusher or writer goroutine owns the connection's writes
	final   bool // a final frame is queued; nothing more is accepted
	dead    bool // the connection is gone
	failure Failure
	idle    chan struct{} // closed when writing stops, for Drain

	// first backs frames when an idle writer gets a frame, so that the
	// common wake-up (one broadcast frame) allocates no slice; bufs is the
	// writer goroutine's net.Buffers, kept here so that writev does not
	// allocate it.
	first [1][]byte
	bufs  net.Buffers
}

// spareLimit bounds the batch slice a writer keeps for reuse.
const spareLimit = 1024

// Init prepares w to write cfg.Conn through pool.
func (w *Writer) Init(pool *Pool, cfg Config) {
	w.pool, w.cfg = pool, cfg
}

// Push queues frame; it reports false if the writer does not accept
// frames any more. A frame that would take the backlog past MaxBacklog
// fails the writer as a slow consumer.
func (w *Writer) Push(frame []byte) bool {
	w.mu.Lock()
	if w.final || w.dead {
		w.mu.Unlock()
		w.pool.stats.Drops.Add(1)
		return false
	}
	if w.bytes+len(frame)-max(w.largest, len(frame)) > w.cfg.MaxBacklog {
		w.overflowLocked()
		w.mu.Unlock()
		w.pool.stats.Drops.Add(1)
		w.pool.stats.SlowConsumers.Add(1)
		w.cfg.OnFail(SlowConsumer, false)
		return false
	}
	w.appendLocked(frame)
	w.mu.Unlock()
	return true
}

// PushNow is Push for a frame that should not wait for a flusher: when
// the writer is idle (nothing queued or being written) and the connection
// is a plain socket, the frame is written at once on the caller's
// goroutine, without blocking; what the socket does not take continues on
// a writer goroutine. Otherwise the frame is queued as by Push. It saves
// the wake-up of a flusher for single-recipient writes; a broadcast should
// Push, so that flushers write its members in parallel.
func (w *Writer) PushNow(frame []byte) bool {
	w.mu.Lock()
	if w.writing || w.cfg.Raw == nil || w.final || w.dead {
		w.mu.Unlock()
		return w.Push(frame)
	}
	// Idle: take the writes over and write outside the lock.
	w.writing = true
	w.bytes += len(frame)
	w.largest = len(frame)
	batch := append(w.first[:0], frame) // first is free: nobody else writes
	w.mu.Unlock()
	rw := rawWriters.Get().(*rawWriter)
	w.writeBatch(rw, batch)
	rawWriters.Put(rw)
	return true
}

// overflowLocked fails a slow consumer. Its backlog is dropped at once and
// the Goodbye frame goes out after what is being written, as soon as the
// socket takes it: a client that reads, however slowly, learns why it is
// closed; one that takes nothing is cut when a write has waited
// WriteTimeout.
func (w *Writer) overflowLocked() {
	w.failure = SlowConsumer
	for _, f := range w.frames {
		w.bytes -= len(f)
	}
	clear(w.frames)
	w.frames = w.frames[:0]
	w.final = true
	w.appendLocked(w.cfg.Goodbye)
}

// PushFinal queues frame past the byte bound (a close frame); later
// pushes fail.
func (w *Writer) PushFinal(frame []byte) {
	w.mu.Lock()
	if !w.final && !w.dead {
		w.final = true
		w.appendLocked(frame)
	}
	w.mu.Unlock()
}

// appendLocked queues frame and makes sure a writer will write it.
func (w *Writer) appendLocked(frame []byte) {
	if w.frames == nil && !w.writing {
		// No writer owns first (it is only ever batch or spare of a
		// running writer).
		w.frames = w.first[:0]
	}
	w.frames = append(w.frames, frame)
	w.bytes += len(frame)
	w.largest = max(w.largest, len(frame))
	if !w.writing {
		w.writing = true
		if w.cfg.Raw != nil {
			w.pool.schedule(w)
		} else {
			w.pool.goWrite(w, nil, 0)
		}
	}
}

func (w *Writer) failLocked(f Failure) {
	w.dead = true
	if w.failure == None {
		w.failure = f
	}
	clear(w.frames)
	w.frames = w.frames[:0]
}

// take returns everything queued, or nil, having stopped writing, when
// there is nothing (more) to write.
func (w *Writer) take() [][]byte {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.frames) == 0 || w.dead {
		w.stopLocked()
		return nil
	}
	batch := w.frames
	w.frames = w.spare[:0]
	w.spare = nil
	return batch
}

func (w *Writer) stopLocked() {
	w.writing = false
	w.frames, w.spare = nil, nil // idle writers keep no buffers
	if w.idle != nil {
		close(w.idle)
		w.idle = nil
	}
}

// sizes measures batch: its bytes and its largest frame. It must run
// before the batch is written: a write consumes the frames (net.Buffers
// empties and shortens them in place).
func sizes(batch [][]byte) (n, largest int) {
	for _, f := range batch {
		n += len(f)
		largest = max(largest, len(f))
	}
	return n, largest
}

// written accounts for a written batch of n bytes whose largest frame was
// largest, and recycles it. A write error fails the writer.
func (w *Writer) written(batch [][]byte, n, largest int, err error) {
	w.pool.stats.FramesOut.Add(uint64(len(batch)))
	clear(batch)
	w.mu.Lock()
	w.bytes -= n
	if largest >= w.largest {
		// The largest frame is out: the next largest is still queued.
		w.largest = 0
		for _, f := range w.frames {
			w.largest = max(w.largest, len(f))
		}
	}
	if cap(batch) <= spareLimit {
		w.spare = batch[:0]
	}
	failed := err != nil && !w.dead
	if err != nil {
		w.failLocked(WriteError)
	}
	w.mu.Unlock()
	if failed {
		w.cfg.OnFail(WriteError, true)
	}
}

// flush is a flusher's turn at the writer: one non-blocking write of
// everything queued. The writer goes back to the end of the ready list if
// more frames arrived meanwhile (they coalesce while it waits its turn),
// and to a writer goroutine of its own if the socket did not take it all.
func (w *Writer) flush(rw *rawWriter) {
	if batch := w.take(); batch != nil {
		w.writeBatch(rw, batch)
	}
}

// writeBatch writes batch, which the caller owns the writes for, without
// blocking, and sees to what comes after: a writer goroutine for the rest
// if the socket filled, a flusher's turn if frames arrived meanwhile.
func (w *Writer) writeBatch(rw *rawWriter, batch [][]byte) {
	n, largest := sizes(batch)
	sent, calls, err := rw.write(w.cfg.Raw, batch)
	w.pool.stats.Writes.Add(uint64(calls))
	if errors.Is(err, errWouldBlock) {
		w.pool.goWrite(w, batch, sent)
		return
	}
	w.written(batch, n, largest, err)
	w.mu.Lock()
	if len(w.frames) > 0 && !w.dead {
		w.mu.Unlock()
		w.pool.schedule(w)
		return
	}
	w.stopLocked()
	w.mu.Unlock()
}

func (w *Writer) writeFresh() { w.writeLoop(nil, 0) }

// writeLoop is the writer's own goroutine (counted in the pool): it writes
// with blocking writes and WriteTimeout until the queue is empty. It starts
// with the unwritten rest of batch (sent bytes of it are out), if any.
func (w *Writer) writeLoop(batch [][]byte, sent int) {
	defer w.pool.wg.Done()
	for {
		if batch == nil {
			if batch = w.take(); batch == nil {
				return
			}
		}
		n, largest := sizes(batch)
		w.bufs = unsent(batch, sent) // shares batch's array: WriteTo empties its frames
		err := w.writeBlocking()
		w.bufs = nil
		w.written(batch, n, largest, err)
		batch, sent = nil, 0
	}
}

// writeBlocking writes w.bufs, giving the client WriteTimeout to take
// each part: a client that reads, however slowly, is not cut off (its
// backlog is bounded by MaxBacklog); one that takes nothing for
// WriteTimeout is. (After a timeout a TLS connection refuses further
// writes, so there the first timeout ends it.)
func (w *Writer) writeBlocking() error {
	// Clear the deadline before returning, while this goroutine still
	// owns the writes: a stale one would fail the flushers' later writes
	// (the runtime checks it before a raw write), and once writing stops a
	// new writer may already have set its own.
	defer w.cfg.Conn.SetWriteDeadline(time.Time{})
	for {
		_ = w.cfg.Conn.SetWriteDeadline(time.Now().Add(w.cfg.WriteTimeout))
		n, err := w.bufs.WriteTo(w.cfg.Conn)
		w.pool.stats.Writes.Add(1) // one writev, unless the socket took it in parts
		if err == nil || n == 0 || !errors.Is(err, os.ErrDeadlineExceeded) || len(w.bufs) == 0 {
			return err
		}
	}
}

// unsent returns the frames of batch after its first sent bytes, as
// net.Buffers sharing batch's backing array.
func unsent(batch [][]byte, sent int) net.Buffers {
	bufs := net.Buffers(batch)
	for sent > 0 && len(bufs) > 0 {
		if len(bufs[0]) > sent {
			bufs[0] = bufs[0][sent:]
			break
		}
		sent -= len(bufs[0])
		bufs = bufs[1:]
	}
	return bufs
}

// Drain waits up to timeout for what is queued to be written and reports
// whether all of it was.
func (w *Writer) Drain(timeout time.Duration) bool {
	w.mu.Lock()
	if !w.writing {
		ok := !w.dead
		w.mu.Unlock()
		return ok
	}
	if w.idle == nil {
		w.idle = make(chan struct{})
	}
	idle := w.idle
	w.mu.Unlock()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-idle:
		w.mu.Lock()
		defer w.mu.Unlock()
		return !w.dead
	case <-t.C:
		return false
	}
}

// Discard drops everything queued once the connection is closed; the
// writer accepts nothing more. It returns why the writer failed, if it did.
func (w *Writer) Discard() Failure {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.failLocked(None)
	return w.failure
}

// errWouldBlock reports that a non-blocking write stopped at a full socket
// buffer; the rest is for a writer goroutine.
var errWouldBlock = errors.New("writer: write would block")
