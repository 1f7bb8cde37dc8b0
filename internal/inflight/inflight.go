// Package inflight bounds the requests an HTTP server handles at once, in
// all and from one client address, so that a few clients holding requests
// open cannot take every slot from the others.
//
// Some peers may be trusted (the EMS members posting to the event sink):
// they take no share of their own, only slots of the total, and Wait lets
// them queue for one instead of being refused at once. A part of the total
// can be kept for them, out of reach of every other peer together.
package inflight

import (
	"context"
	"errors"
	"sync"

	"golang.org/x/sync/semaphore"
)

// Why a request got no slot, as TryAcquire and Wait tell it.
var (
	// ErrPeer means the peer's own share was in use.
	ErrPeer = errors.New("inflight: the peer's share of requests is in use")
	// ErrOthers means the slots every untrusted peer together may hold
	// (the total less the part SetTrusted keeps for trusted peers, when it
	// keeps one) were in use.
	ErrOthers = errors.New("inflight: the slots open to untrusted peers are in use")
	// ErrTotal means every slot was in use (for a trusted peer in Wait:
	// still so when its context ended).
	ErrTotal = errors.New("inflight: every slot is in use")
)

// Limiter counts the requests in flight. Create it with New; it is safe
// for concurrent use.
type Limiter struct {
	total   *semaphore.Weighted // every request, trusted or not
	size    int
	perPeer int

	mu       sync.Mutex
	byPeer   map[string]int      // untrusted peers with requests in flight only
	others   int                 // requests of untrusted peers in flight
	trusted  map[string]struct{} // SetTrusted
	reserved int                 // slots untrusted peers together leave free
}

// New returns a Limiter of total requests in flight at most, perPeer of
// them from one client address. No peer is trusted until SetTrusted.
func New(total, perPeer int) *Limiter {
	return &Limiter{total: semaphore.NewWeighted(int64(total)), size: total, perPeer: perPeer, byPeer: make(map[string]int)}
}

// SetTrusted replaces the trusted peers: each is bounded by the total
// alone, and untrusted peers together hold at most the total less
// reserved slots (reserved is clamped to [0, total]). Requests already in
// flight keep their slots. Peers are compared as given, so callers must
// write each address one way (as Acquire's and Wait's peer argument is).
func (l *Limiter) SetTrusted(peers []string, reserved int) {
	set := make(map[string]struct{}, len(peers))
	for _, p := range peers {
		set[p] = struct{}{}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.trusted = set
	l.reserved = min(max(reserved, 0), l.size)
}

// Trusted reports whether peer is trusted.
func (l *Limiter) Trusted(peer string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, ok := l.trusted[peer]
	return ok
}

// Acquire takes a slot for a request from peer at once, or reports false,
// taking nothing; otherwise the caller must call release once the request
// is done.
func (l *Limiter) Acquire(peer string) (release func(), ok bool) {
	release, err := l.acquire(nil, peer)
	return release, err == nil
}

// TryAcquire is Acquire, telling why a request got no slot: ErrPeer,
// ErrOthers or ErrTotal.
func (l *Limiter) TryAcquire(peer string) (release func(), err error) {
	return l.acquire(nil, peer)
}

// Wait takes a slot for a request from peer. An untrusted peer's request
// is answered at once, as by Acquire; a trusted peer's request waits for a
// slot of the total until ctx is done, ahead of any request that comes
// later. The error is ErrPeer, ErrOthers or ErrTotal, and then nothing is
// taken; otherwise the caller must call release once the request is done.
func (l *Limiter) Wait(ctx context.Context, peer string) (release func(), err error) {
	return l.acquire(ctx, peer)
}

// acquire takes a slot for peer; a nil ctx never waits.
func (l *Limiter) acquire(ctx context.Context, peer string) (func(), error) {
	l.mu.Lock()
	_, trusted := l.trusted[peer]
	if !trusted {
		switch {
		case l.byPeer[peer] >= l.perPeer:
			l.mu.Unlock()
			return nil, ErrPeer
		case l.reserved > 0 && l.others >= l.size-l.reserved:
			l.mu.Unlock()
			return nil, ErrOthers
		}
		l.byPeer[peer]++
		l.others++
	}
	l.mu.Unlock()

	var got bool
	if trusted && ctx != nil {
		// Acquire fails only when ctx ends; while it waits, TryAcquire
		// fails for everyone else, so the waiters are served first.
		got = l.total.TryAcquire(1) || l.total.Acquire(ctx, 1) == nil
	} else {
		got = l.total.TryAcquire(1)
	}
	if !got {
		if !trusted {
			l.done(peer)
		}
		return nil, ErrTotal
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			l.total.Release(1)
			if !trusted {
				l.done(peer)
			}
		})
	}, nil
}

func (l *Limiter) done(peer string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.others--
	if l.byPeer[peer]--; l.byPeer[peer] == 0 {
		delete(l.byPeer, peer)
	}
}
