package primus

import (
	"net"
	"sync"
	"time"

	"github.com/primusgo/primus/internal/ws"
)

// outQueue is a spark's outbound queue: bounded in bytes, drained by one
// writer goroutine that exists only while there is something to write, and
// that writes everything queued with one writev(2). Frames are shared
// between recipients and never modified.
//
// push never takes the spark's own lock, so broadcasts may call it while
// holding room index locks.
type outQueue struct {
	mu      sync.Mutex
	frames  [][]byte
	spare   [][]byte
	bytes   int  // queued or being written
	writing bool // a writer goroutine is running
	final   bool // a close frame is queued; nothing more is accepted
	dead    bool // the connection is gone
	failure CloseReason
	idle    chan struct{} // closed when the writer stops, for drain

	// first backs frames when an idle queue gets a frame, so that the
	// common wake-up (one broadcast frame) allocates no slice; bufs is the
	// writer's net.Buffers, kept here so that writev does not allocate it.
	first [1][]byte
	bufs  net.Buffers
}

// spareLimit bounds the batch slice a writer keeps for reuse.
const spareLimit = 1024

func textFrame(text []byte) []byte {
	return ws.AppendFrame(make([]byte, 0, ws.HeaderLen(len(text))+len(text)), ws.OpText, text)
}

// push queues frame; it reports false if the spark does not accept frames
// any more. Overflowing the byte bound closes the connection at once.
func (q *outQueue) push(s *Spark, frame []byte) bool {
	q.mu.Lock()
	if q.final || q.dead {
		q.mu.Unlock()
		s.srv.stats.drops.Add(1)
		return false
	}
	if q.bytes+len(frame) > s.srv.cfg.MaxQueueBytes && q.bytes > 0 {
		q.failLocked(ReasonSlowConsumer)
		q.mu.Unlock()
		s.srv.stats.drops.Add(1)
		s.srv.stats.slowConsumers.Add(1)
		s.conn.Close()
		return false
	}
	q.appendLocked(s, frame)
	q.mu.Unlock()
	return true
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

func (q *outQueue) appendLocked(s *Spark, frame []byte) {
	if q.frames == nil && !q.writing {
		// No writer owns first (it is only ever batch or spare of a
		// running writer).
		q.frames = q.first[:0]
	}
	q.frames = append(q.frames, frame)
	q.bytes += len(frame)
	if !q.writing {
		q.writing = true
		s.srv.wg.Add(1)
		go q.writeLoop(s)
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

func (q *outQueue) writeLoop(s *Spark) {
	defer s.srv.wg.Done()
	for {
		q.mu.Lock()
		if len(q.frames) == 0 || q.dead {
			q.writing = false
			q.frames, q.spare = nil, nil // idle sparks keep no buffers
			if q.idle != nil {
				close(q.idle)
				q.idle = nil
			}
			q.mu.Unlock()
			return
		}
		batch := q.frames
		q.frames = q.spare[:0]
		q.spare = nil
		q.mu.Unlock()

		n := 0
		for _, f := range batch {
			n += len(f)
		}
		_ = s.conn.SetWriteDeadline(time.Now().Add(s.srv.cfg.WriteTimeout))
		q.bufs = batch // WriteTo consumes q.bufs, not batch
		_, err := q.bufs.WriteTo(s.conn)
		q.bufs = nil
		s.srv.stats.framesOut.Add(uint64(len(batch)))

		clear(batch)
		q.mu.Lock()
		q.bytes -= n
		if cap(batch) <= spareLimit {
			q.spare = batch[:0]
		}
		if err != nil {
			q.failLocked(ReasonWriteError)
			q.mu.Unlock()
			s.conn.Close()
			continue
		}
		q.mu.Unlock()
	}
}

// drain waits up to timeout for the writer to write what is queued.
func (q *outQueue) drain(timeout time.Duration) {
	q.mu.Lock()
	if !q.writing {
		q.mu.Unlock()
		return
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
	case <-t.C:
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
