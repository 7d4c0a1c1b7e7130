package primus

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
)

// A client that never acknowledges cannot grow the spark's pending
// acknowledgements without bound: beyond maxPendingAcks the oldest are
// forgotten, and the newest still work.
func TestEmitterPendingAcksBounded(t *testing.T) {
	srv, err := New(Config{PingInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
	s := detachedSpark(srv, "s", &recordConn{}, nil)
	called := map[int]bool{}
	const sent = 3 * maxPendingAcks
	for i := 1; i <= sent; i++ {
		if err := s.Send("tick", i, AckFunc(func([]json.RawMessage) { called[i] = true })); err != nil {
			t.Fatal(err)
		}
	}
	s.emitter.mu.Lock()
	pending := len(s.emitter.acks)
	s.emitter.mu.Unlock()
	if pending > maxPendingAcks {
		t.Fatalf("%d acknowledgements pending (bound %d)", pending, maxPendingAcks)
	}
	for _, id := range []int{1, sent} {
		s.handleEvent(Data{raw: fmt.Appendf(nil, `{"id":%d,"type":1,"data":[]}`, id)})
	}
	if called[1] || !called[sent] {
		t.Fatalf("acks run: oldest %v (want false), newest %v (want true)", called[1], called[sent])
	}
}
