package primus

import (
	"sync"
	"time"
)

// connLimits enforces Config.MaxConnections and MaxConnectionsPerIP. A
// spark holds its place from the upgrade until it finished.
type connLimits struct {
	max, perIP int
	mu         sync.Mutex
	total      int
	byIP       map[string]int
}

func (l *connLimits) enabled() bool { return l.max > 0 || l.perIP > 0 }

// acquire takes a place for a connection from ip, or says which limit is
// full: errServerFull or errIPFull.
func (l *connLimits) acquire(ip string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.max > 0 && l.total >= l.max {
		return errServerFull
	}
	if l.perIP > 0 {
		if l.byIP[ip] >= l.perIP {
			return errIPFull
		}
		if l.byIP == nil {
			l.byIP = make(map[string]int)
		}
		l.byIP[ip]++
	}
	l.total++
	return nil
}

func (l *connLimits) release(ip string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total--
	if l.perIP > 0 {
		if n := l.byIP[ip] - 1; n > 0 {
			l.byIP[ip] = n
		} else {
			delete(l.byIP, ip)
		}
	}
}

var (
	errServerFull = &AuthError{Status: 503, Message: "server at its connection limit"}
	errIPFull     = &AuthError{Status: 429, Message: "too many connections from this address"}
)

// rateLimit is a spark's message budget (Config.MessageRate and
// MessageBurst): one token bucket for the messages it may send, and one
// of the same size for the messages it may have refused before it is
// ended. Only the spark's reader uses it.
type rateLimit struct {
	rate, burst float64
	last        time.Time
	allowed     float64
	refusable   float64
}

func newRateLimit(rate float64, burst int) *rateLimit {
	return &rateLimit{rate: rate, burst: float64(burst), allowed: float64(burst), refusable: float64(burst)}
}

// take spends a token for a message at now. It reports whether the
// message may pass and, if not, whether the spark has also run out of
// refusals (it keeps flooding).
func (l *rateLimit) take(now time.Time) (ok, flood bool) {
	if !l.last.IsZero() {
		add := now.Sub(l.last).Seconds() * l.rate
		l.allowed = min(l.burst, l.allowed+add)
		l.refusable = min(l.burst, l.refusable+add)
	}
	l.last = now
	if l.allowed >= 1 {
		l.allowed--
		return true, false
	}
	if l.refusable >= 1 {
		l.refusable--
		return false, false
	}
	return false, true
}
