//go:build !unix

package primus

import (
	"net"
	"syscall"
)

// rawConnOf returns nil: without unix write semantics every spark gets a
// writer goroutine of its own (see outQueue).
func rawConnOf(net.Conn) syscall.RawConn { return nil }

type rawWriter struct{}

func newRawWriter() *rawWriter { return &rawWriter{} }

func (*rawWriter) write(syscall.RawConn, [][]byte) (sent, calls int, err error) {
	return 0, 0, errWouldBlock
}
