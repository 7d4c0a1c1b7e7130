package client

import (
	"encoding/json"
	"sync/atomic"
	"testing"
	"time"
)

// A server that never acknowledges (or a connection lost before it did:
// the next spark never answers) cannot grow the client's pending
// acknowledgements without bound: beyond maxPendingAcks the oldest are
// forgotten, and the newest still work.
func TestSendPendingAcksBounded(t *testing.T) {
	s := startStub(t, stubConfig{})
	c, sc := dialStub(t, s, Options{QueueSize: 1 << 16})
	const sent = 3 * maxPendingAcks
	var oldest, newest atomic.Bool
	for i := 1; i <= sent; i++ {
		fn := func([]json.RawMessage) {}
		switch i {
		case 1:
			fn = func([]json.RawMessage) { oldest.Store(true) }
		case sent:
			fn = func([]json.RawMessage) { newest.Store(true) }
		}
		if err := c.Send("tick", i, AckFunc(fn)); err != nil {
			t.Fatal(err)
		}
	}
	c.emitter.mu.Lock()
	pending := len(c.emitter.acks)
	c.emitter.mu.Unlock()
	if pending > maxPendingAcks {
		t.Fatalf("%d acknowledgements pending (bound %d)", pending, maxPendingAcks)
	}
	sc.write(map[string]any{"id": 1, "type": 1, "data": []any{}})
	sc.write(map[string]any{"id": sent, "type": 1, "data": []any{}})
	deadline := time.Now().Add(testTimeout)
	for !newest.Load() && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if oldest.Load() || !newest.Load() {
		t.Fatalf("acks run: oldest %v (want false), newest %v (want true)", oldest.Load(), newest.Load())
	}
}
