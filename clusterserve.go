package primus

import (
	"context"
	"slices"
	"time"
)

// Serving other nodes' requests: the broker's reader hands them over
// without waiting (enqueue); clusterWorkers goroutines apply them, at most
// that many at a time, and send the answer in pages of at most pageBytes
// to the caller's node. A request whose caller's deadline passed is
// dropped.

type incomingRequest struct {
	m        *nodeMessage
	deadline time.Time
}

func (c *clusterState) enqueue(m *nodeMessage) {
	r := &incomingRequest{m: m, deadline: time.Now().Add(time.Duration(m.TTL) * time.Millisecond)}
	select {
	case c.serveQ <- r:
	default:
		c.refused.Add(1)
		c.srv.log.Debug("primus: cluster request refused: too many in progress", "from", m.From, "op", m.Op)
	}
}

func (c *clusterState) worker() {
	defer c.wg.Done()
	for {
		select {
		case <-c.stopCtx.Done():
			return
		case r := <-c.serveQ:
			c.serve(r)
		}
	}
}

func (c *clusterState) serve(r *incomingRequest) {
	if !time.Now().Before(r.deadline) {
		c.refused.Add(1)
		return
	}
	c.served.Add(1)
	ctx, cancel := context.WithDeadline(c.stopCtx, r.deadline)
	defer cancel()
	na := c.srv.applyOp(ctx, r.m, r.deadline)
	c.reply(ctx, r.m, na)
}

// reply sends na to the caller in pages.
func (c *clusterState) reply(ctx context.Context, req *nodeMessage, na *nodeAnswer) {
	var pages []*nodeMessage
	page := func() *nodeMessage {
		p := &nodeMessage{T: msgResponse, From: c.self, ID: req.ID, Seq: int64(len(pages))}
		pages = append(pages, p)
		return p
	}
	switch req.Op {
	case opClients:
		p, size := page(), 0
		for _, id := range na.ids {
			if len(p.IDs) == maxPageItems || (size > 0 && size+len(id)+3 > pageBytes) {
				p, size = page(), 0
			}
			p.IDs = append(p.IDs, id)
			size += len(id) + 3
		}
	case opSizes:
		p, size := page(), 0
		for room, n := range na.sizes {
			if len(p.Sizes) == maxPageItems || (size > 0 && size+len(room)+16 > pageBytes) {
				p, size = page(), 0
			}
			if p.Sizes == nil {
				p.Sizes = make(map[string]int64)
			}
			p.Sizes[room] = n
			size += len(room) + 16
		}
	default:
		counts := na.counts
		page().N = &counts
	}
	if len(pages) > maxWirePages {
		pages = []*nodeMessage{{T: msgResponse, From: c.self, ID: req.ID, Err: "answer too large"}}
	}
	pages[len(pages)-1].Last = true
	for _, p := range pages {
		b, err := encodeNodeMessage(p)
		if err != nil {
			// An item no page can carry (a huge room name, say).
			b, err = encodeNodeMessage(&nodeMessage{T: msgResponse, From: c.self, ID: req.ID, Seq: p.Seq, Last: true, Err: "answer too large to send"})
			if err != nil {
				return
			}
		}
		if err := c.cb.Send(ctx, req.From, b); err != nil {
			c.srv.log.Debug("primus: cluster answer not sent", "to", req.From, "err", err)
			return
		}
	}
}

// applyOp carries out a request on this node's sparks (for the caller's
// own node as for the others) and returns the complete answer. deadline is
// the caller's: a disconnection waits for its sparks to close until a
// little before it.
func (srv *Server) applyOp(ctx context.Context, m *nodeMessage, deadline time.Time) *nodeAnswer {
	na := newNodeAnswer()
	na.complete = true
	switch m.Op {
	case opClients:
		if len(m.In) == 0 {
			excluded := exceptFunc(m.Except)
			srv.forEachSpark(func(s *Spark) {
				if !excluded(s.id) {
					na.ids = append(na.ids, s.id)
				}
			})
		} else {
			for _, s := range srv.selectMembers(m.In, m.Except) {
				na.ids = append(na.ids, s.id)
			}
		}
		// Sorted here, in parallel on every node: the caller merges.
		slices.Sort(na.ids)
	case opSizes:
		sizes := srv.index.rooms()
		na.sizes = make(map[string]int64, len(sizes))
		for room, n := range sizes {
			na.sizes[room] = int64(n)
		}
	case opCount:
		na.counts.Sparks = int64(len(srv.selectMembers(m.In, nil)))
	case opJoin, opLeave, opDisconnect:
		var sparks []*Spark
		if len(m.IDs) > 0 {
			for _, id := range dedupe(m.IDs) {
				if s := srv.Spark(id); s != nil {
					sparks = append(sparks, s)
				}
			}
		} else {
			sparks = srv.selectMembers(m.In, m.Except)
		}
		na.counts = srv.applyToSparks(ctx, m, sparks, deadline)
	}
	return na
}

// selectMembers returns the local members of rooms, each once, except the
// excepted ids.
func (srv *Server) selectMembers(rooms, except []string) []*Spark {
	excluded := exceptFunc(except)
	rooms = dedupe(rooms)
	if len(rooms) == 1 {
		members := srv.index.snapshot(rooms[0])
		out := members[:0]
		for _, s := range members {
			if !excluded(s.id) {
				out = append(out, s)
			}
		}
		return out
	}
	seen := make(map[*Spark]struct{})
	var out []*Spark
	for _, room := range rooms {
		for _, s := range srv.index.snapshot(room) {
			if _, dup := seen[s]; dup || excluded(s.id) {
				continue
			}
			seen[s] = struct{}{}
			out = append(out, s)
		}
	}
	return out
}

func (srv *Server) applyToSparks(ctx context.Context, m *nodeMessage, sparks []*Spark, deadline time.Time) wireCounts {
	var c wireCounts
	c.Sparks = int64(len(sparks))
	switch m.Op {
	case opJoin:
		for _, s := range sparks {
			n := s.countRooms(m.Target, false)
			if err := s.Join(m.Target...); err != nil {
				c.Failed++
				continue
			}
			c.Changed += int64(n)
		}
	case opLeave:
		for _, s := range sparks {
			n := s.countRooms(m.Target, true)
			s.Leave(m.Target...)
			c.Changed += int64(n)
		}
	case opDisconnect:
		var waits []<-chan struct{}
		for _, s := range sparks {
			if !s.isOpen() {
				c.Failed++
				continue
			}
			waits = append(waits, s.finished())
			if m.Reconnect {
				s.EndReconnect()
			} else {
				s.End()
			}
			c.Changed++
		}
		// Answer once the sparks closed (their OnDisconnection ran), or
		// in time for the answer to reach the caller, and never later
		// than a closing handshake takes (whatever the request says).
		margin := min(max(time.Until(deadline)/10, 5*time.Millisecond), 250*time.Millisecond)
		until := deadline.Add(-margin)
		if most := time.Now().Add(srv.cfg.CloseTimeout + time.Second); most.Before(until) {
			until = most
		}
		wait, cancel := context.WithDeadline(ctx, until)
		defer cancel()
		for _, ch := range waits {
			select {
			case <-ch:
			case <-wait.Done():
				return c
			}
		}
	}
	return c
}

// finished returns a channel closed once the spark closed and its
// OnDisconnection ran.
func (s *Spark) finished() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.overCh == nil {
		s.overCh = make(chan struct{})
		if s.over {
			close(s.overCh)
		}
	}
	return s.overCh
}

// countRooms counts the rooms of list the spark is in (in) or not in (!in).
func (s *Spark) countRooms(list []string, in bool) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, r := range dedupe(list) {
		if _, ok := s.rooms[r]; ok == in {
			n++
		}
	}
	return n
}
