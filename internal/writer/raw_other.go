//go:build !unix

package writer

import (
	"net"
	"syscall"
)

// RawConnOf returns nil: without unix write semantics every connection
// is written by a goroutine of its own (see Writer).
func RawConnOf(net.Conn) syscall.RawConn { return nil }

type rawWriter struct{}

func newRawWriter() *rawWriter { return &rawWriter{} }

func (*rawWriter) write(syscall.RawConn, [][]byte) (sent, calls int, err error) {
	return 0, 0, errWouldBlock
}
