//go:build unix

package primus

import (
	"io"
	"net"
	"syscall"
)

// rawConnOf returns the connection's socket for non-blocking writes, or
// nil unless it is a plain TCP or Unix socket: a wrapper (TLS, or any
// type that embeds a *net.TCPConn to add behaviour to Write) is written
// through its own Write.
func rawConnOf(c net.Conn) syscall.RawConn {
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

// writeNonblocking writes batch to the socket without waiting for it: it
// returns the number of bytes written, of write(2) calls made, and
// errWouldBlock if the socket's buffer filled before the end. Consecutive
// small frames are copied into scratch and leave in one write(2).
func writeNonblocking(raw syscall.RawConn, batch [][]byte, scratch *[]byte) (sent, calls int, err error) {
	rerr := raw.Write(func(fd uintptr) bool {
		for i := 0; i < len(batch); {
			buf, j := batch[i], i+1
			if j < len(batch) && len(buf)+len(batch[j]) <= coalesceLimit {
				b := append((*scratch)[:0], buf...)
				for ; j < len(batch) && len(b)+len(batch[j]) <= coalesceLimit; j++ {
					b = append(b, batch[j]...)
				}
				*scratch, buf = b, b
			}
			for len(buf) > 0 {
				n, e := syscall.Write(int(fd), buf)
				calls++
				if n > 0 {
					sent += n
					buf = buf[n:]
				}
				switch {
				case e == syscall.EINTR:
				case e == syscall.EAGAIN:
					err = errWouldBlock
					return true
				case e != nil:
					err = e
					return true
				case n <= 0:
					err = io.ErrShortWrite
					return true
				}
			}
			i = j
		}
		return true // done: never wait for the socket here
	})
	if err == nil {
		err = rerr
	}
	return sent, calls, err
}
