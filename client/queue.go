package client

// outgoing is one data message waiting for the writer. seq orders the
// messages accepted by Write, for Flush.
type outgoing struct {
	seq uint64
	b   []byte
}

// fifo is a slice-backed queue. The outgoing queue is bounded by
// Options.QueueSize, so the backing array stays small.
type fifo struct {
	items []outgoing
	head  int
}

func (f *fifo) len() int { return len(f.items) - f.head }

func (f *fifo) push(o outgoing) { f.items = append(f.items, o) }

func (f *fifo) front() (outgoing, bool) {
	if f.len() == 0 {
		return outgoing{}, false
	}
	return f.items[f.head], true
}

func (f *fifo) pop() (outgoing, bool) {
	if f.len() == 0 {
		return outgoing{}, false
	}
	o := f.items[f.head]
	f.items[f.head] = outgoing{} // let the payload be collected
	f.head++
	switch {
	case f.head == len(f.items):
		f.items, f.head = f.items[:0], 0
	case f.head >= 64 && f.head*2 >= len(f.items):
		n := copy(f.items, f.items[f.head:])
		clear(f.items[n:])
		f.items, f.head = f.items[:n], 0
	}
	return o, true
}
