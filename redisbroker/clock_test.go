package redisbroker

import (
	"sync"
	"testing"
	"time"

	"github.com/primusgo/primus/brokertest"
)

// fakeClock is a clock a test moves on; each Advance makes the connection
// loop handle one tick at the new time and returns once it has.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	ticks   chan time.Time
	handled chan struct{}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Ticker(time.Duration) (<-chan time.Time, func()) { return c.ticks, func() {} }

// Advance moves the clock on by d and waits until the connection loop has
// handled a tick at the new time.
func (c *fakeClock) Advance(t testing.TB, d time.Duration) {
	t.Helper()
	c.mu.Lock()
	c.now = c.now.Add(d)
	now := c.now
	c.mu.Unlock()
	timeout := time.NewTimer(10 * time.Second)
	defer timeout.Stop()
	select {
	case c.ticks <- now:
	case <-timeout.C:
		t.Fatal("the connection loop took no tick")
	}
	select {
	case <-c.handled:
	case <-timeout.C:
		t.Fatal("the connection loop did not finish its tick")
	}
}

// startBrokerWithClock is startBroker with a fake clock (set before Start).
func startBrokerWithClock(t testing.TB, cfg Config) (*Broker, *brokertest.Recorder, *fakeClock) {
	t.Helper()
	b := newBroker(t, cfg)
	fc := &fakeClock{now: b.epoch, ticks: make(chan time.Time), handled: make(chan struct{})}
	b.clock = fc
	b.ticked = func() { fc.handled <- struct{}{} }
	rec := brokertest.NewRecorder()
	if err := b.Start(rec); err != nil {
		t.Fatalf("Start: %v", err)
	}
	return b, rec, fc
}
