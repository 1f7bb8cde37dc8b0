package controller

import (
	"slices"
	"testing"
	"testing/synctest"
	"time"
)

func TestQueueDeduplicatesAndNeverHandsOutAKeyTwice(t *testing.T) {
	q := newQueue[string]()
	defer q.ShutDown()
	q.Add("a")
	q.Add("a")
	q.Add("b")
	if n := q.Len(); n != 2 {
		t.Fatalf("Len = %d, want 2", n)
	}
	k, _ := q.Get()
	if k != "a" {
		t.Fatalf("Get = %q, want a", k)
	}
	q.Add("a") // while processing: handed out again after Done
	k2, _ := q.Get()
	if k2 != "b" {
		t.Fatalf("Get = %q, want b (a is being processed)", k2)
	}
	if n := q.Len(); n != 0 {
		t.Fatalf("Len = %d while a is processing, want 0", n)
	}
	q.Done("a")
	if k3, _ := q.Get(); k3 != "a" {
		t.Fatalf("Get after Done = %q, want a again", k3)
	}
}

func TestQueueAddAfter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := newQueue[string]()
		defer q.ShutDown()
		q.AddAfter("late", 10*time.Second)
		q.AddAfter("late", 20*time.Second) // the earlier one wins
		time.Sleep(9 * time.Second)
		synctest.Wait()
		if q.Len() != 0 {
			t.Fatal("delayed key handed out early")
		}
		time.Sleep(2 * time.Second)
		synctest.Wait()
		if q.Len() != 1 {
			t.Fatalf("Len = %d after the delay, want 1", q.Len())
		}
	})
}

func TestQueueShutDownWakesGet(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := newQueue[int]()
		done := make(chan bool)
		go func() { _, ok := q.Get(); done <- ok }()
		synctest.Wait()
		q.ShutDown()
		if <-done {
			t.Fatal("Get reported ok after ShutDown")
		}
	})
}

func TestBackoffIsCappedAndGrows(t *testing.T) {
	for n := 1; n < 40; n++ {
		d := backoff(n, time.Second, 30*time.Second)
		lo := min(time.Second<<(n-1), 30*time.Second) / 2
		if n > 6 {
			lo = 15 * time.Second
		}
		if d < lo || d > 45*time.Second {
			t.Errorf("backoff(%d) = %v, want within [%v, 45s]", n, d, lo)
		}
	}
}

// Urgent keys are handed out first; a key in both lanes is handed out
// once, and never while it is being worked on.
func TestQueueUrgentLane(t *testing.T) {
	q := newQueue[string]()
	for _, k := range []string{"a", "b", "c"} {
		q.Add(k)
	}
	q.AddUrgent("new")
	q.AddUrgent("c") // also queued normally
	var got []string
	for range 4 {
		k, _ := q.Get()
		got = append(got, k)
		q.Done(k)
	}
	if want := []string{"new", "c", "a", "b"}; !slices.Equal(got, want) {
		t.Errorf("order %q, want %q", got, want)
	}
	if n := q.Len(); n != 1 {
		t.Errorf("Len %d, want 1 (a stale copy of c)", n)
	}
	q.AddUrgent("x")
	k, _ := q.Get() // x, being worked on
	q.Add("x")      // added again meanwhile: Done queues it
	q.AddUrgent("y")
	if k2, _ := q.Get(); k2 != "y" {
		t.Errorf("got %q while %q is worked on, want y", k2, k)
	}
	q.Done("y")
	q.Done(k)
	if k3, _ := q.Get(); k3 != "x" {
		t.Errorf("got %q, want x again after its Done", k3)
	}
	q.ShutDown()
}
