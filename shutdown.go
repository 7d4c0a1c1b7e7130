package primus

import (
	"context"
	"fmt"
	"time"
)

// Shutdown stops accepting connections, closes every spark
// reconnect-style (clients move to another node), stops the heartbeat,
// closes the broker, and waits for the server's goroutines or ctx.
func (srv *Server) Shutdown(ctx context.Context) error {
	if !srv.stopAccepting() {
		return ErrServerClosed
	}
	return srv.shutdown(ctx)
}

// Drain is Shutdown for a rolling restart behind a load balancer (a "lame
// duck"): new upgrades are refused with 503 at once, and the open sparks
// are closed reconnect-style in small batches spread evenly over the given
// duration, so that their clients do not all reconnect to the other nodes
// in the same moment; then the server shuts down as Shutdown does, within
// ctx. If ctx ends first, the remaining sparks are closed at once.
func (srv *Server) Drain(ctx context.Context, over time.Duration) error {
	if !srv.stopAccepting() {
		return ErrServerClosed
	}
	var sparks []*Spark
	srv.forEachSpark(func(s *Spark) { sparks = append(sparks, s) })
	if over > 0 && len(sparks) > 0 {
		// Batches every drainStep (fewer, larger ones for many sparks), each
		// due at its share of the duration, so that a late start catches up.
		steps := max(1, min(len(sparks), int(over/drainStep)))
		start := time.Now()
		t := time.NewTimer(0)
		defer t.Stop()
	loop:
		for i := range steps {
			select {
			case <-ctx.Done():
				break loop
			case <-t.C:
			}
			lo, hi := i*len(sparks)/steps, (i+1)*len(sparks)/steps
			for _, s := range sparks[lo:hi] {
				s.end(ReasonShutdown)
			}
			clear(sparks[lo:hi]) // closed sparks are not kept alive by this list
			t.Reset(time.Until(start.Add(over * time.Duration(i+1) / time.Duration(steps))))
		}
	}
	return srv.shutdown(ctx)
}

// drainStep is the shortest time between two of Drain's batches.
const drainStep = 20 * time.Millisecond

// stopAccepting makes upgrades fail with 503; it reports false if the
// server was already closing.
func (srv *Server) stopAccepting() bool {
	srv.registerMu.Lock()
	defer srv.registerMu.Unlock()
	return !srv.closing.Swap(true)
}

func (srv *Server) shutdown(ctx context.Context) error {
	srv.cluster.close() // bye: the other nodes stop waiting for this one
	close(srv.stopBeat)
	<-srv.beatDone
	srv.forEachSpark(func(s *Spark) { s.end(ReasonShutdown) })
	done := make(chan struct{})
	go func() {
		srv.wg.Wait()   // the readers: every spark finished and its writer was discarded,
		srv.pool.Wait() // so no write starts any more
		close(done)
	}()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		// Clients that do not answer the close in time are cut off. Their
		// goroutines end at once, unless an application handler never
		// returns: that one is not waited for beyond a short grace.
		srv.forEachSpark(func(s *Spark) { s.abort() })
		grace := time.NewTimer(time.Second)
		select {
		case <-done:
		case <-grace.C:
		}
		grace.Stop()
		err = ctx.Err()
	}
	srv.hist.close()
	if berr := srv.broker.Close(); berr != nil && err == nil {
		err = fmt.Errorf("primus: closing broker: %w", berr)
	}
	return err
}
