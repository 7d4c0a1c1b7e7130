package testkit

import (
	"context"
	"sync"
)

// Queue is an unbounded FIFO: server callbacks and client readers put into
// it without ever blocking, tests take from it with a deadline.
type Queue[T any] struct {
	mu     sync.Mutex
	items  []T
	closed bool
	signal chan struct{}
}

// NewQueue returns an empty queue.
func NewQueue[T any]() *Queue[T] { return &Queue[T]{signal: make(chan struct{}, 1)} }

// Put appends v.
func (q *Queue[T]) Put(v T) {
	q.mu.Lock()
	q.items = append(q.items, v)
	q.mu.Unlock()
	q.wake()
}

// Finish marks the end of the items: Get stops waiting once it took them all.
func (q *Queue[T]) Finish() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	q.wake()
}

// wake lets a waiting Get look again; one pending signal is enough, as Get
// takes everything there is before it waits.
func (q *Queue[T]) wake() {
	select {
	case q.signal <- struct{}{}:
	default:
	}
}

// Get takes the oldest item, waiting until ctx is done or the queue is
// finished and empty; ok is false then.
func (q *Queue[T]) Get(ctx context.Context) (v T, ok bool) {
	for {
		q.mu.Lock()
		if len(q.items) > 0 {
			v := q.items[0]
			var zero T
			q.items[0] = zero // no reference kept for the garbage collector
			q.items = q.items[1:]
			q.mu.Unlock()
			return v, true
		}
		closed := q.closed
		q.mu.Unlock()
		if closed {
			var zero T
			return zero, false
		}
		select {
		case <-q.signal:
		case <-ctx.Done():
			var zero T
			return zero, false
		}
	}
}

// TryGet takes the oldest item if there is one.
func (q *Queue[T]) TryGet() (T, bool) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return q.Get(ctx)
}

// Len is the number of items not taken yet.
func (q *Queue[T]) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.items)
}
