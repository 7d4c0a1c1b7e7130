package primus_test

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Joins and leaves that create and free rooms on one node while another
// node writes to those rooms: room subscriptions (under a room index lock)
// and remote deliveries (which take room index locks) must not deadlock.
func TestClusterJoinsDuringRemoteWrites(t *testing.T) {
	nodes := startCluster(t, 2)
	a, b := nodes[0], nodes[1]
	_, sb := connectN(t, b, 4)
	const rooms = 256
	name := func(i int) string { return fmt.Sprintf("r%d", i%rooms) }
	var stop atomic.Bool
	var wg sync.WaitGroup
	for _, s := range sb {
		wg.Go(func() {
			for i := 0; !stop.Load(); i++ {
				_ = s.Join(name(i))
				_ = s.Leave(name(i))
			}
		})
	}
	for w := range 2 {
		wg.Go(func() {
			for i := w; !stop.Load(); i += 2 {
				_ = a.Room(name(i), name(i+1)).Write(i)
			}
		})
	}
	finished := make(chan struct{})
	go func() {
		time.Sleep(500 * time.Millisecond) // load duration, not synchronisation
		stop.Store(true)
		wg.Wait()
		close(finished)
	}()
	select {
	case <-finished:
	case <-time.After(waitTimeout):
		t.Fatal("deadlock: joins and remote writes did not finish")
	}
	if n := b.Stats().Rooms; n != 0 {
		t.Fatalf("%d rooms left on B", n)
	}
}
