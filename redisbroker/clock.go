package redisbroker

import "time"

// clock is the broker's time for subscription delays and idle probes (not
// for network deadlines): the real one, or one a test drives, so that a
// test proves that nothing happens before a delay without sleeping.
type clock interface {
	Now() time.Time
	// Ticker ticks every d until stop is called.
	Ticker(d time.Duration) (ticks <-chan time.Time, stop func())
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

func (realClock) Ticker(d time.Duration) (<-chan time.Time, func()) {
	t := time.NewTicker(d)
	return t.C, t.Stop
}
