//go:build unix

package writer

import (
	"io"
	"net"
	"syscall"
)

// RawConnOf returns the connection's socket for non-blocking writes, or
// nil unless it is a plain TCP or Unix socket: a wrapper (TLS, or any
// type that embeds a *net.TCPConn to add behaviour to Write) is written
// through its own Write.
func RawConnOf(c net.Conn) syscall.RawConn {
	var raw syscall.RawConn
	var err error
	switch c := c.(type) {
	case *net.TCPConn:
		raw, err = c.SyscallConn()
	case *net.UnixConn:
		raw, err = c.SyscallConn()
	}
	if err != nil {
		return nil
	}
	return raw
}

// coalesceLimit is the most bytes of consecutive frames copied into one
// write; larger frames are written from where they are.
const coalesceLimit = 64 << 10

// rawWriter makes a flusher's non-blocking writes. A call's batch and
// results travel through its fields because RawConn.Write takes a
// callback: made once per writer (fn), it lets a write allocate nothing.
type rawWriter struct {
	scratch []byte // consecutive small frames are copied here
	batch   [][]byte
	sent    int
	calls   int
	err     error
	fn      func(fd uintptr) bool
}

func newRawWriter() *rawWriter {
	w := &rawWriter{}
	w.fn = w.writeFD
	return w
}

// write writes batch to the socket without waiting for it: it returns the
// number of bytes written, of write(2) calls made, and errWouldBlock if the
// socket's buffer filled before the end. Consecutive small frames leave in
// one write(2).
func (w *rawWriter) write(raw syscall.RawConn, batch [][]byte) (sent, calls int, err error) {
	w.batch, w.sent, w.calls, w.err = batch, 0, 0, nil
	rerr := raw.Write(w.fn)
	sent, calls, err = w.sent, w.calls, w.err
	w.batch, w.err = nil, nil
	if err == nil {
		err = rerr
	}
	return sent, calls, err
}

func (w *rawWriter) writeFD(fd uintptr) bool {
	batch := w.batch
	for i := 0; i < len(batch); {
		buf, j := batch[i], i+1
		if j < len(batch) && len(buf)+len(batch[j]) <= coalesceLimit {
			b := append(w.scratch[:0], buf...)
			for ; j < len(batch) && len(b)+len(batch[j]) <= coalesceLimit; j++ {
				b = append(b, batch[j]...)
			}
			w.scratch, buf = b, b
		}
		for len(buf) > 0 {
			n, e := syscall.Write(int(fd), buf)
			w.calls++
			if n > 0 {
				w.sent += n
				buf = buf[n:]
			}
			switch {
			case e == syscall.EINTR:
			case e == syscall.EAGAIN:
				w.err = errWouldBlock
				return true
			case e != nil:
				w.err = e
				return true
			case n <= 0:
				w.err = io.ErrShortWrite
				return true
			}
		}
		i = j
	}
	return true // done: never wait for the socket here
}
