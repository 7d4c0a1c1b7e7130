package primus

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"time"
)

// A cluster call: the caller snapshots the live nodes, broadcasts one
// request, applies it locally meanwhile, and waits until every node of the
// snapshot answered in full (all its pages), left the membership, or ctx
// ended. Answers of nodes that joined after the snapshot are taken while
// the call waits, never waited for.

const (
	// maxCallItems bounds what one call accumulates (ids or rooms over
	// all nodes): a forged answer cannot exhaust memory.
	maxCallItems = 4 << 20
	// maxCallBytes bounds the bytes of those ids and room names: a page
	// of few but long names must not add up to gigabytes either.
	maxCallBytes = 128 << 20
	// maxExtraNodes bounds the answering nodes that were not in the
	// snapshot.
	maxExtraNodes = 64
)

// nodeAnswer is one node's answer as it arrives, page by page.
type nodeAnswer struct {
	seen     map[int64]struct{}
	maxSeq   int64
	total    int64 // pages, known from the last one (-1 before)
	complete bool
	gone     bool               // left the membership before answering in full
	err      string             // answered with an error, or its answer was invalid
	ids      []string           // a complete answer's ids, sorted (opClients)
	idPages  map[int64][]string // the pages of ids as they arrive
	sizes    map[string]int64
	counts   wireCounts
}

func newNodeAnswer() *nodeAnswer {
	return &nodeAnswer{seen: make(map[int64]struct{}), total: -1, maxSeq: -1}
}

// pendingCall is a call waiting for answers.
type pendingCall struct {
	c  *clusterState
	id string
	op string

	mu        sync.Mutex
	expect    map[string]bool
	nodes     map[string]*nodeAnswer
	remaining int // expected nodes without a complete answer
	extra     int
	items     int
	bytes     int   // of the ids and room names taken
	members   int64 // opCount: members reported so far
	abortErr  error
	finished  bool
	done      chan struct{}
	closeOnce sync.Once
}

func (p *pendingCall) signal() { p.closeOnce.Do(func() { close(p.done) }) }

// add takes one page of a node's answer.
func (p *pendingCall) add(m *nodeMessage, live bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.finished {
		return
	}
	na := p.nodes[m.From]
	if na == nil {
		if !p.expect[m.From] {
			// A node that joined after the snapshot: its answer counts if
			// it completes in time; a forged node name does not.
			if !live || p.extra >= maxExtraNodes {
				p.c.unmatched.Add(1)
				return
			}
			p.extra++
		}
		na = newNodeAnswer()
		p.nodes[m.From] = na
	}
	if na.complete {
		return
	}
	if _, dup := na.seen[m.Seq]; dup {
		return
	}
	na.seen[m.Seq] = struct{}{}
	na.maxSeq = max(na.maxSeq, m.Seq)
	switch {
	case m.Err != "":
		na.err = m.Err
		p.completeLocked(m.From, na)
		return
	case na.total >= 0 && m.Seq >= na.total, m.Last && na.maxSeq > m.Seq:
		na.err = "inconsistent pages"
		p.completeLocked(m.From, na)
		return
	}
	// A page counts as one item at least: empty pages cannot pile up
	// in na.seen either.
	n, size := max(1, len(m.IDs)+len(m.Sizes)), 0
	for _, id := range m.IDs {
		size += len(id)
	}
	for room := range m.Sizes {
		size += len(room)
	}
	if p.items+n > maxCallItems || p.bytes+size > maxCallBytes {
		na.err = "answer too large"
		p.completeLocked(m.From, na)
		return
	}
	p.items += n
	p.bytes += size
	switch p.op {
	case opClients:
		if len(m.IDs) > 0 {
			if na.idPages == nil {
				na.idPages = make(map[int64][]string)
			}
			na.idPages[m.Seq] = m.IDs
		}
	case opSizes:
		if na.sizes == nil {
			na.sizes = make(map[string]int64, len(m.Sizes))
		}
		for room, k := range m.Sizes {
			na.sizes[room] = min(na.sizes[room]+k, maxWireCount)
		}
	default:
		if m.N != nil {
			na.counts = *m.N
		}
	}
	if m.Last {
		na.total = m.Seq + 1
	}
	if na.total >= 0 && int64(len(na.seen)) == na.total {
		p.completeLocked(m.From, na)
	}
}

func (p *pendingCall) completeLocked(from string, na *nodeAnswer) {
	na.complete = true
	if na.idPages != nil {
		// The pages in order; a node sends its ids sorted (whoever does
		// not costs this node a sort).
		for seq := range na.total {
			na.ids = append(na.ids, na.idPages[seq]...)
		}
		na.idPages = nil
		if !slices.IsSorted(na.ids) {
			slices.Sort(na.ids)
		}
	}
	if p.op == opCount && na.err == "" && na.counts.Sparks > 0 {
		// One node with members answers "not empty".
		p.members += na.counts.Sparks
		p.signal()
	}
	if p.expect[from] {
		if p.remaining--; p.remaining == 0 {
			p.signal()
		}
	}
}

// gone: node id left the membership; the call stops waiting for it.
func (p *pendingCall) gone(id string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.finished || !p.expect[id] {
		return
	}
	na := p.nodes[id]
	if na == nil {
		na = newNodeAnswer()
		p.nodes[id] = na
	}
	if na.complete {
		return
	}
	na.gone = true
	p.completeLocked(id, na)
}

// abort ends the wait at once (the server is shutting down).
func (p *pendingCall) abort(err error) {
	p.mu.Lock()
	if p.abortErr == nil {
		p.abortErr = err
	}
	p.mu.Unlock()
	p.signal()
}

// answer is a call's merged result: the complete answers by node.
type answer struct {
	nodes   map[string]*nodeAnswer
	members int64
}

func (a *answer) sortedNodes() []string {
	names := make([]string, 0, len(a.nodes))
	for n := range a.nodes {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// clients lists every id once (the first node in id order keeps a
// duplicate), sorted by id: the nodes' sorted lists merged pairwise.
func (a *answer) clients() []ClusterSpark {
	var lists [][]ClusterSpark
	for _, node := range a.sortedNodes() {
		ids := a.nodes[node].ids
		l := make([]ClusterSpark, len(ids))
		for i, id := range ids {
			l[i] = ClusterSpark{ID: id, Node: node}
		}
		lists = append(lists, l)
	}
	if len(lists) == 0 {
		return []ClusterSpark{}
	}
	for len(lists) > 1 {
		next := lists[:0:0]
		for i := 0; i < len(lists); i += 2 {
			if i+1 == len(lists) {
				next = append(next, lists[i])
			} else {
				next = append(next, mergeSparks(lists[i], lists[i+1]))
			}
		}
		lists = next
	}
	return slices.CompactFunc(lists[0], func(x, y ClusterSpark) bool { return x.ID == y.ID })
}

// mergeSparks merges two lists sorted by id; on equal ids a's come first.
func mergeSparks(a, b []ClusterSpark) []ClusterSpark {
	out := make([]ClusterSpark, 0, len(a)+len(b))
	for len(a) > 0 && len(b) > 0 {
		if strings.Compare(b[0].ID, a[0].ID) < 0 {
			out, b = append(out, b[0]), b[1:]
		} else {
			out, a = append(out, a[0]), a[1:]
		}
	}
	return append(append(out, a...), b...)
}

func (a *answer) sizes() map[string]int {
	out := make(map[string]int)
	for _, na := range a.nodes {
		for room, k := range na.sizes {
			out[room] = int(min(int64(out[room])+k, maxWireCount))
		}
	}
	return out
}

func (a *answer) result() RemoteResult {
	var r RemoteResult
	for _, node := range a.sortedNodes() {
		c := a.nodes[node].counts
		r.Nodes = append(r.Nodes, NodeResult{Node: node, Sparks: int(c.Sparks), Changed: int(c.Changed), Failed: int(c.Failed)})
	}
	return r
}

// merge adds the counts of another part of the same operation.
func (a *answer) merge(o *answer) {
	for node, na := range o.nodes {
		if mine := a.nodes[node]; mine != nil {
			mine.counts.Sparks += na.counts.Sparks
			mine.counts.Changed += na.counts.Changed
			mine.counts.Failed += na.counts.Failed
		} else {
			a.nodes[node] = na
		}
	}
}

// call runs one cluster request (m's op and arguments) on every live node,
// this one included.
func (c *clusterState) call(ctx context.Context, m *nodeMessage) (*answer, error) {
	if err := c.usable(); err != nil {
		return nil, err
	}
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	if err := c.awaitWarm(ctx); err != nil {
		return nil, err
	}
	deadline, _ := ctx.Deadline()
	ttl := time.Until(deadline)
	if ttl <= 0 {
		return nil, context.DeadlineExceeded
	}
	c.calls.Add(1)
	m.T, m.From, m.ID = msgRequest, c.self, newID()
	m.TTL = max(1, min(ttl.Milliseconds(), maxWireTTL))
	expect := c.liveOthers()
	var payload []byte
	if len(expect) > 0 {
		var err error
		if payload, err = encodeNodeMessage(m); err != nil {
			return nil, err
		}
	}
	p := &pendingCall{c: c, id: m.ID, op: m.Op, expect: make(map[string]bool, len(expect)),
		nodes: make(map[string]*nodeAnswer), remaining: len(expect), done: make(chan struct{})}
	for _, id := range expect {
		p.expect[id] = true
	}
	if p.remaining == 0 {
		p.signal() // alone: only the local answer
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, ErrServerClosed
	}
	c.pending[p.id] = p
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.pending, p.id)
		c.mu.Unlock()
	}()

	local := make(chan *nodeAnswer, 1)
	go func() { local <- c.srv.applyOp(ctx, m, deadline) }()
	var sendErr error
	if len(expect) > 0 {
		if sendErr = c.cb.Broadcast(ctx, payload); sendErr != nil {
			sendErr = errors.Join(ErrPublish, sendErr)
		}
	}
	if sendErr == nil {
		select {
		case <-p.done:
		case <-ctx.Done():
		}
	}
	mine := <-local

	p.mu.Lock()
	p.finished = true
	ans := &answer{nodes: map[string]*nodeAnswer{c.self: mine}, members: p.members + mine.counts.Sparks}
	var missing []string
	failed := map[string]string{}
	timedOut := false
	for node, na := range p.nodes {
		switch {
		case na.complete && na.err == "" && !na.gone:
			ans.nodes[node] = na
		case na.complete && na.err != "":
			failed[node] = na.err
		}
	}
	for node := range p.expect {
		na := p.nodes[node]
		if na == nil || !na.complete || na.gone {
			missing = append(missing, node)
			if na == nil || !na.gone {
				timedOut = true
			}
		}
	}
	abortErr := p.abortErr
	p.mu.Unlock()

	if m.Op == opCount && ans.members > 0 {
		return ans, nil // members somewhere: the others need not answer
	}
	if len(missing) == 0 && len(failed) == 0 && abortErr == nil {
		return ans, nil
	}
	c.partialCalls.Add(1)
	slices.Sort(missing)
	pe := &PartialError{Missing: missing, Err: abortErr}
	if len(failed) > 0 {
		pe.Failed = failed
	}
	switch {
	case pe.Err != nil:
	case sendErr != nil:
		pe.Err = sendErr
	case timedOut:
		pe.Err = ctx.Err()
	}
	return ans, pe
}

// response takes an answer page from another node.
func (c *clusterState) response(m *nodeMessage) {
	c.mu.Lock()
	p := c.pending[m.ID]
	var live bool
	if p != nil && !p.expect[m.From] {
		e := c.nodes[m.From]
		live = e != nil && time.Since(e.info.LastSeen) <= c.ttl
	}
	c.mu.Unlock()
	if p == nil {
		c.unmatched.Add(1)
		return
	}
	p.add(m, live)
}
