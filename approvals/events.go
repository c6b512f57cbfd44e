package approvals

import (
	"context"
	"sync"
)

// eventBuffer is how many changes a subscriber may fall behind before it
// loses the oldest.
const eventBuffer = 256

// broker hands every committed change to every subscriber without ever
// waiting for one: it runs on the raft apply path.
type broker struct {
	mu     sync.Mutex
	subs   map[chan *Request]struct{}
	closed bool
	done   chan struct{}
}

func newBroker() *broker {
	return &broker{subs: map[chan *Request]struct{}{}, done: make(chan struct{})}
}

func (b *broker) publish(reqs []*Request) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for ch := range b.subs {
		for _, r := range reqs {
			offer(ch, r.clone())
		}
	}
}

// offer sends r on ch, dropping the oldest queued change if ch is full.
// Only the broker sends, under its lock, so after one drop there is room.
func offer(ch chan *Request, r *Request) {
	for {
		select {
		case ch <- r:
			return
		default:
		}
		select {
		case <-ch:
		default:
		}
	}
}

func (b *broker) subscribe(ctx context.Context) <-chan *Request {
	ch := make(chan *Request, eventBuffer)
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		close(ch)
		return ch
	}
	b.subs[ch] = struct{}{}
	go func() {
		select {
		case <-ctx.Done():
		case <-b.done:
		}
		b.mu.Lock()
		defer b.mu.Unlock()
		if _, ok := b.subs[ch]; ok {
			delete(b.subs, ch)
			close(ch)
		}
	}()
	return ch
}

func (b *broker) close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return
	}
	b.closed = true
	for ch := range b.subs {
		delete(b.subs, ch)
		close(ch)
	}
	close(b.done)
}
