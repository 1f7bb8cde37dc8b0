package inflight

import "testing"

// Slots are bounded per peer and in all, given back on release, and a
// refused request takes nothing.
func TestLimiter(t *testing.T) {
	l := New(3, 2)
	r1, ok1 := l.Acquire("a")
	r2, ok2 := l.Acquire("a")
	if !ok1 || !ok2 {
		t.Fatal("a's first two requests refused")
	}
	if _, ok := l.Acquire("a"); ok {
		t.Error("a's third request accepted past its share of 2")
	}
	r3, ok3 := l.Acquire("b")
	if !ok3 {
		t.Fatal("b's first request refused")
	}
	if _, ok := l.Acquire("c"); ok {
		t.Error("c accepted past the total of 3")
	}
	r1()
	r4, ok := l.Acquire("c")
	if !ok {
		t.Error("c refused after a slot was released")
	}
	r2()
	r3()
	r4()
	if len(l.byPeer) != 0 || len(l.sem) != 0 {
		t.Errorf("after every release: %d peers, %d slots held", len(l.byPeer), len(l.sem))
	}
}
