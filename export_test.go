package primus

import (
	"errors"
	"net"
)

// ShrinkSendBuffer sets the kernel send buffer of s's connection to n
// bytes, so that tests reach a full socket with little data.
func ShrinkSendBuffer(s *Spark, n int) error {
	tc, ok := s.conn.(*net.TCPConn)
	if !ok {
		return errors.New("not a TCP connection")
	}
	return tc.SetWriteBuffer(n)
}
