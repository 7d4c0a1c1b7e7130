package primus

import "fmt"

// AddDetachedSparks registers n sparks without connections on srv (ids
// "<prefix>-<i>"), each joined to rooms, for tests with more sparks than
// a test process has file descriptors.
func AddDetachedSparks(srv *Server, prefix string, n int, rooms ...string) error {
	for i := range n {
		if err := detachedSpark(srv, fmt.Sprintf("%s-%06d", prefix, i), &recordConn{}, nil).Join(rooms...); err != nil {
			return err
		}
	}
	return nil
}
