//go:build !unix

package primus

import (
	"net"
	"syscall"
)

// rawConnOf returns nil: without unix write semantics every spark gets a
// writer goroutine of its own (see outQueue).
func rawConnOf(net.Conn) syscall.RawConn { return nil }

func writeNonblocking(syscall.RawConn, [][]byte, *[]byte) (sent, calls int, err error) {
	return 0, 0, errWouldBlock
}
