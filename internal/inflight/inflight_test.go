package inflight

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"
)

// idle fails the test unless l holds no slot and tracks no peer.
func idle(t *testing.T, l *Limiter) {
	t.Helper()
	l.mu.Lock()
	peers, others := len(l.byPeer), l.others
	l.mu.Unlock()
	if peers != 0 || others != 0 || !l.total.TryAcquire(int64(l.size)) {
		t.Errorf("after every release: %d peers, %d untrusted requests, total not free", peers, others)
		return
	}
	l.total.Release(int64(l.size))
}

// Slots are bounded per peer and in all, given back on release, and a
// refused request takes nothing.
func TestLimiter(t *testing.T) {
	l := New(3, 2)
	r1, ok1 := l.Acquire("a")
	r2, ok2 := l.Acquire("a")
	if !ok1 || !ok2 {
		t.Fatal("a's first two requests refused")
	}
	if _, err := l.TryAcquire("a"); !errors.Is(err, ErrPeer) {
		t.Errorf("a's third request past its share of 2: %v, want ErrPeer", err)
	}
	r3, ok3 := l.Acquire("b")
	if !ok3 {
		t.Fatal("b's first request refused")
	}
	if _, err := l.TryAcquire("c"); !errors.Is(err, ErrTotal) {
		t.Errorf("c past the total of 3: %v, want ErrTotal", err)
	}
	r1()
	r1() // a second call gives back nothing more
	r4, ok := l.Acquire("c")
	if !ok {
		t.Error("c refused after a slot was released")
	}
	r2()
	r3()
	r4()
	idle(t, l)
}

// A trusted peer takes no share of its own: it is bounded by the total
// alone, and untrusted peers together leave the reserved slots to it.
func TestTrustedPeersAreBoundedByTheTotalAlone(t *testing.T) {
	l := New(6, 2)
	l.SetTrusted([]string{"m"}, 2)
	if !l.Trusted("m") || l.Trusted("x") {
		t.Fatalf("Trusted(m) = %v, Trusted(x) = %v; want true, false", l.Trusted("m"), l.Trusted("x"))
	}
	var releases []func()
	take := func(peer string) error {
		r, err := l.TryAcquire(peer)
		if err == nil {
			releases = append(releases, r)
		}
		return err
	}
	for i := range 3 {
		if err := take("m"); err != nil {
			t.Fatalf("m's request %d: %v, want a slot past the share of 2", i+1, err)
		}
	}
	// 3 of 6 held by m; untrusted peers may hold 4 together.
	for _, p := range []string{"x", "y", "z"} {
		if err := take(p); err != nil {
			t.Fatalf("%s's first request: %v", p, err)
		}
	}
	if err := take("w"); !errors.Is(err, ErrTotal) {
		t.Errorf("w while all 6 slots are held: %v, want ErrTotal", err)
	}
	releases[0]() // one of m's
	releases = releases[1:]
	if err := take("w"); err != nil {
		t.Fatalf("w after a slot was freed: %v", err)
	}
	releases[0]() // another of m's: 5 of 6 held, 4 by untrusted peers
	releases = releases[1:]
	if err := take("v"); !errors.Is(err, ErrOthers) {
		t.Errorf("v while untrusted peers hold 4 of 6 with 2 kept: %v, want ErrOthers", err)
	}
	if err := take("m"); err != nil {
		t.Errorf("m with a kept slot free: %v", err)
	}
	for _, r := range releases {
		r()
	}
	idle(t, l)
	l.SetTrusted(nil, 0)
	if err := take("m"); err != nil {
		t.Fatal(err)
	}
	if err := take("m"); err != nil {
		t.Fatal(err)
	}
	if err := take("m"); !errors.Is(err, ErrPeer) {
		t.Errorf("m's third request once it is no longer trusted: %v, want ErrPeer", err)
	}
}

// A trusted peer's request waits for a slot, and gets the next one freed
// before any request that comes later; it gives up when its context ends.
// An untrusted peer's request never waits.
func TestWaitServesTrustedPeersFirst(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := New(2, 2)
		l.SetTrusted([]string{"m"}, 0)
		rx, err := l.TryAcquire("x")
		if err != nil {
			t.Fatal(err)
		}
		rm, err := l.TryAcquire("m")
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		got := make(chan func())
		go func() {
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			defer cancel()
			r, err := l.Wait(ctx, "m")
			if err != nil {
				t.Errorf("m's waiting request: %v, want a slot", err)
			}
			got <- r
		}()
		synctest.Wait() // m's request is blocked waiting
		if _, err := l.Wait(t.Context(), "y"); !errors.Is(err, ErrTotal) {
			t.Errorf("y's request while every slot is held: %v, want ErrTotal at once", err)
		}
		time.Sleep(time.Second)
		rx()
		r := <-got
		if waited := time.Since(start); waited != time.Second {
			t.Errorf("m waited %v, want the 1s until x released its slot", waited)
		}
		if _, err := l.TryAcquire("y"); !errors.Is(err, ErrTotal) {
			t.Errorf("y after the freed slot went to m: %v, want ErrTotal", err)
		}

		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
		defer cancel()
		if _, err := l.Wait(ctx, "m"); !errors.Is(err, ErrTotal) {
			t.Errorf("m's request still without a slot when its context ended: %v, want ErrTotal", err)
		}
		if waited := time.Since(start); waited != 3*time.Second {
			t.Errorf("m's second request gave up after %v in all, want 3s (1s, then its 2s context)", waited)
		}
		r()
		rm()
		idle(t, l)
	})
}
