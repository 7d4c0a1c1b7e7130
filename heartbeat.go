package primus

import (
	"time"

	"github.com/primusgo/primus/internal/protocol"
)

// heartbeat is the server's one ticker, as in Primus: each tick ends the
// sparks that did not answer the previous ping and pings the others with
// one shared frame.
func (srv *Server) heartbeat() {
	defer close(srv.beatDone)
	if srv.cfg.PingInterval < 0 {
		<-srv.stopBeat
		return
	}
	// A Timer reset after each beat, not a Ticker: a Ticker that fires
	// while a beat is late delivers the next tick at once, and the sparks
	// just pinged would be judged (and closed) moments later. Like Node's
	// setInterval, the next beat is a full interval after this one.
	t := time.NewTimer(srv.cfg.PingInterval)
	defer t.Stop()
	for {
		select {
		case <-srv.stopBeat:
			return
		case <-t.C:
			srv.beat(time.Now())
			t.Reset(srv.cfg.PingInterval)
		}
	}
}

func (srv *Server) beat(now time.Time) {
	frame := textFrame(protocol.Ping(now.UnixMilli()))
	srv.forEachSpark(func(s *Spark) {
		if !s.alive.Swap(false) {
			srv.stats.heartbeatTimeouts.Add(1)
			s.end(ReasonHeartbeatTimeout)
			return
		}
		s.out.Push(frame)
	})
}
