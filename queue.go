package primus

import (
	"errors"
	"net"
	"os"
	"sync"
	"time"

	"github.com/primusgo/primus/internal/ws"
)

// outQueue is a spark's outbound queue: bounded in bytes, written by one
// writer at a time, each write carrying everything queued. Frames are shared
// between recipients and never modified.
//
// The writer is normally a flusher of the server's flushPool, which writes
// without blocking; a connection that does not take the bytes at once (its
// socket buffer is full), or that is not a plain socket, gets a writer
// goroutine of its own until its queue is empty. Idle sparks have neither.
//
// push never takes the spark's own lock, so broadcasts may call it while
// holding room index locks.
type outQueue struct {
	mu      sync.Mutex
	frames  [][]byte
	spare   [][]byte
	bytes   int  // queued or being written
	largest int  // the largest frame queued or being written (0 when idle)
	writing bool // a flusher or writer goroutine owns the connection's writes
	stalled bool // the socket filled up: a writer goroutine waits for it to drain
	final   bool // a close frame is queued; nothing more is accepted
	dead    bool // the connection is gone
	failure CloseReason
	idle    chan struct{} // closed when writing stops, for drain

	// first backs frames when an idle queue gets a frame, so that the
	// common wake-up (one broadcast frame) allocates no slice; bufs is the
	// writer goroutine's net.Buffers, kept here so that writev does not
	// allocate it.
	first [1][]byte
	bufs  net.Buffers
}

// spareLimit bounds the batch slice a writer keeps for reuse.
const spareLimit = 1024

func textFrame(text []byte) []byte {
	return ws.AppendFrame(make([]byte, 0, ws.HeaderLen(len(text))+len(text)), ws.OpText, text)
}

// push queues frame; it reports false if the spark does not accept frames
// any more. A frame that would take the backlog (everything queued or being
// written besides the largest frame) past MaxQueueBytes ends the spark as a
// slow consumer: see overflowLocked.
func (q *outQueue) push(s *Spark, frame []byte) bool {
	q.mu.Lock()
	if q.final || q.dead {
		q.mu.Unlock()
		s.srv.stats.drops.Add(1)
		return false
	}
	if q.bytes+len(frame)-max(q.largest, len(frame)) > s.srv.cfg.MaxQueueBytes {
		stalled := q.overflowLocked(s)
		q.mu.Unlock()
		s.srv.stats.drops.Add(1)
		s.srv.stats.slowConsumers.Add(1)
		if stalled {
			s.abort() // may run under room index locks: must not block
		}
		return false
	}
	q.appendLocked(s, frame)
	q.mu.Unlock()
	return true
}

// overflowLocked ends a slow consumer. Its backlog is dropped at once. If
// its socket still takes writes, the close frame (1013) goes out after what
// is being written and the reader ends the spark when the client answers
// or CloseTimeout passes; if the socket is full (stalled), there is no way
// to say goodbye, and it reports true: the caller cuts the connection.
func (q *outQueue) overflowLocked(s *Spark) (stalled bool) {
	if q.stalled {
		q.failLocked(ReasonSlowConsumer)
		return true
	}
	q.failure = ReasonSlowConsumer
	for _, f := range q.frames {
		q.bytes -= len(f)
	}
	clear(q.frames)
	q.frames = q.frames[:0]
	q.final = true
	code, text, _ := ReasonSlowConsumer.closeStatus()
	q.appendLocked(s, ws.CloseFrame(code, text))
	_ = s.conn.SetReadDeadline(time.Now().Add(s.srv.cfg.CloseTimeout))
	return false
}

// pushFinal queues the close frame, past the byte bound; later pushes fail.
func (q *outQueue) pushFinal(s *Spark, frame []byte) {
	q.mu.Lock()
	if !q.final && !q.dead {
		q.final = true
		q.appendLocked(s, frame)
	}
	q.mu.Unlock()
}

// appendLocked queues frame and makes sure a writer will write it. Callers
// hold a count of srv.wg (the spark's reader holds one until the queue is
// dead), so starting a goroutine here never races Shutdown's wait.
func (q *outQueue) appendLocked(s *Spark, frame []byte) {
	if q.frames == nil && !q.writing {
		// No writer owns first (it is only ever batch or spare of a
		// running writer).
		q.frames = q.first[:0]
	}
	q.frames = append(q.frames, frame)
	q.bytes += len(frame)
	q.largest = max(q.largest, len(frame))
	if !q.writing {
		q.writing = true
		if s.raw != nil {
			s.srv.flushers.schedule(s)
		} else {
			s.srv.wg.Add(1)
			go q.writeLoop(s, nil, 0)
		}
	}
}

func (q *outQueue) failLocked(r CloseReason) {
	q.dead = true
	if q.failure == ReasonNone {
		q.failure = r
	}
	clear(q.frames)
	q.frames = q.frames[:0]
}

// take returns everything queued, or nil, having stopped writing, when
// there is nothing (more) to write.
func (q *outQueue) take() [][]byte {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.frames) == 0 || q.dead {
		q.stopLocked()
		return nil
	}
	batch := q.frames
	q.frames = q.spare[:0]
	q.spare = nil
	return batch
}

func (q *outQueue) stopLocked() {
	q.writing = false
	q.stalled = false
	q.frames, q.spare = nil, nil // idle sparks keep no buffers
	if q.idle != nil {
		close(q.idle)
		q.idle = nil
	}
}

// written accounts for a written batch and recycles it. A write error
// fails the queue and closes the connection.
func (q *outQueue) written(s *Spark, batch [][]byte, err error) {
	s.srv.stats.framesOut.Add(uint64(len(batch)))
	n, largest := 0, 0
	for _, f := range batch {
		n += len(f)
		largest = max(largest, len(f))
	}
	clear(batch)
	q.mu.Lock()
	q.bytes -= n
	if largest >= q.largest {
		// The largest frame is out: the next largest is still queued.
		q.largest = 0
		for _, f := range q.frames {
			q.largest = max(q.largest, len(f))
		}
	}
	if cap(batch) <= spareLimit {
		q.spare = batch[:0]
	}
	if err != nil {
		q.failLocked(ReasonWriteError)
	}
	q.mu.Unlock()
	if err != nil {
		s.abort()
	}
}

// flush is a flusher's turn at the spark: one non-blocking write of
// everything queued. The spark goes back to the end of the ready list if
// more frames arrived meanwhile (they coalesce while it waits its turn),
// and to a writer goroutine of its own if the socket did not take it all.
func (q *outQueue) flush(s *Spark, w *rawWriter) {
	batch := q.take()
	if batch == nil {
		return
	}
	sent, calls, err := w.write(s.raw, batch)
	s.srv.stats.writes.Add(uint64(calls))
	if errors.Is(err, errWouldBlock) {
		q.mu.Lock()
		q.stalled = true
		q.mu.Unlock()
		s.srv.wg.Add(1) // this flusher holds a count
		go q.writeLoop(s, batch, sent)
		return
	}
	q.written(s, batch, err)
	q.mu.Lock()
	if len(q.frames) > 0 && !q.dead {
		q.mu.Unlock()
		s.srv.flushers.schedule(s)
		return
	}
	q.stopLocked()
	q.mu.Unlock()
}

// writeLoop is a spark's own writer goroutine: it writes with blocking
// writes and WriteTimeout until the queue is empty. It starts with the
// unwritten rest of batch (sent bytes of it are out), if any.
func (q *outQueue) writeLoop(s *Spark, batch [][]byte, sent int) {
	defer s.srv.wg.Done()
	for {
		if batch == nil {
			if batch = q.take(); batch == nil {
				return
			}
		}
		q.bufs = unsent(batch, sent) // WriteTo consumes q.bufs, not batch
		err := q.writeBlocking(s)
		q.bufs = nil
		q.written(s, batch, err)
		batch, sent = nil, 0
	}
}

// writeBlocking writes q.bufs, giving the client WriteTimeout to take
// each part: a client that reads, however slowly, is not cut off (its
// backlog is bounded by MaxQueueBytes); one that takes nothing for
// WriteTimeout is. (After a timeout a TLS connection refuses further
// writes, so there the first timeout ends it.)
func (q *outQueue) writeBlocking(s *Spark) error {
	// Clear the deadline before returning, while this goroutine still
	// owns the writes: a stale one would fail the flushers' later writes
	// (the runtime checks it before a raw write), and once writing stops a
	// new writer may already have set its own.
	defer s.conn.SetWriteDeadline(time.Time{})
	for {
		_ = s.conn.SetWriteDeadline(time.Now().Add(s.srv.cfg.WriteTimeout))
		n, err := q.bufs.WriteTo(s.conn)
		s.srv.stats.writes.Add(1) // one writev, unless the socket took it in parts
		if err == nil || n == 0 || !errors.Is(err, os.ErrDeadlineExceeded) || len(q.bufs) == 0 {
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

// drain waits up to timeout for the writer to write what is queued and
// reports whether all of it was written.
func (q *outQueue) drain(timeout time.Duration) bool {
	q.mu.Lock()
	if !q.writing {
		ok := !q.dead
		q.mu.Unlock()
		return ok
	}
	if q.idle == nil {
		q.idle = make(chan struct{})
	}
	idle := q.idle
	q.mu.Unlock()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-idle:
		q.mu.Lock()
		defer q.mu.Unlock()
		return !q.dead
	case <-t.C:
		return false
	}
}

// discard drops everything queued once the connection is closed and
// returns why the queue failed, if it did.
func (q *outQueue) discard() CloseReason {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.failLocked(ReasonNone)
	return q.failure
}

// errWouldBlock reports that a non-blocking write stopped at a full socket
// buffer; the rest is for a writer goroutine.
var errWouldBlock = errors.New("primus: write would block")
