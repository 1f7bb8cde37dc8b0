// Package inflight bounds the requests an HTTP server handles at once, in
// all and from one client address, so that a few clients holding requests
// open cannot take every slot from the others.
package inflight

import "sync"

// Limiter counts the requests in flight. Create it with New; it is safe
// for concurrent use.
type Limiter struct {
	sem     chan struct{}
	perPeer int

	mu     sync.Mutex
	byPeer map[string]int // peers with requests in flight only
}

// New returns a Limiter of total requests in flight at most, perPeer of
// them from one client address.
func New(total, perPeer int) *Limiter {
	return &Limiter{sem: make(chan struct{}, total), perPeer: perPeer, byPeer: make(map[string]int)}
}

// Acquire takes a slot for a request from peer. It reports false, taking
// nothing, when the total or peer's share is in use; otherwise the caller
// must call release once the request is done.
func (l *Limiter) Acquire(peer string) (release func(), ok bool) {
	l.mu.Lock()
	if l.byPeer[peer] >= l.perPeer {
		l.mu.Unlock()
		return nil, false
	}
	l.byPeer[peer]++
	l.mu.Unlock()
	select {
	case l.sem <- struct{}{}:
	default:
		l.done(peer)
		return nil, false
	}
	return func() {
		<-l.sem
		l.done(peer)
	}, true
}

func (l *Limiter) done(peer string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.byPeer[peer]--; l.byPeer[peer] == 0 {
		delete(l.byPeer, peer)
	}
}
