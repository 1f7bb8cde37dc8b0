package controller

import (
	"fmt"
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

// TestQueueUrgentLaneKeepsOneCopy checks that a key asked for urgently
// again and again while it waits sits in the urgent lane once: during a
// burst every event about a stream asks for it.
func TestQueueUrgentLaneKeepsOneCopy(t *testing.T) {
	q := newQueue[string]()
	defer q.ShutDown()
	for range 100 {
		q.AddUrgent("a")
		q.AddUrgent("b")
	}
	if n := q.Len(); n != 2 {
		t.Fatalf("Len = %d after 100 urgent adds of two keys, want 2", n)
	}
	k, _ := q.Get()
	q.AddUrgent(k) // while worked on: queued again by Done, once
	q.AddUrgent(k)
	q.Done(k)
	var got []string
	for q.Len() > 0 {
		k, _ := q.Get()
		got = append(got, k)
		q.Done(k)
	}
	if want := []string{"b", "a"}; !slices.Equal(got, want) {
		t.Errorf("handed out %q after the first, want %q", got, want)
	}
}

// TestQueueReleasesBurstMemory checks that a queue drained after a burst
// lets go of what the burst grew: lanes that hold their whole arrays, and
// maps that never shrink.
func TestQueueReleasesBurstMemory(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := newQueue[string]()
		defer q.ShutDown()
		const burst = 4 * shrinkAfter
		for i := range burst {
			q.AddUrgent(fmt.Sprint("u", i))
			q.AddAfter(fmt.Sprint("d", i), time.Second)
		}
		left := []string{"late-1", "late-2"}
		for i := range burst {
			k, _ := q.Get()
			q.Done(k)
			if i == burst-3 {
				for _, k := range left {
					q.Add(k)
				}
			}
		}
		q.mu.Lock()
		if q.urgent != nil || q.peak > burst/shrinkBy {
			t.Errorf("after the burst drained: urgent lane %d/%d, peak %d; want a nil lane and the map made anew", len(q.urgent), cap(q.urgent), q.peak)
		}
		q.mu.Unlock()

		time.Sleep(time.Second) // the delayed keys come due
		synctest.Wait()
		var got []string
		for q.Len() > 0 {
			k, _ := q.Get()
			got = append(got, k)
			q.Done(k)
		}
		if len(got) != burst+len(left) {
			t.Errorf("%d keys handed out after the burst, want %d (the delayed ones and the late ones)", len(got), burst+len(left))
		}
		q.mu.Lock()
		defer q.mu.Unlock()
		if q.delayed != nil || q.peakWaiting > 0 || len(q.waiting) != 0 {
			t.Errorf("after the delayed keys came due: heap %d/%d, waiting %d, peak %d; want all released", len(q.delayed), cap(q.delayed), len(q.waiting), q.peakWaiting)
		}
	})
}
