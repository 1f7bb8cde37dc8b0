package controller

import (
	"fmt"
	"maps"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestDiffAllQueuesWhatEachMembersDiffQueues checks that a resync's diff,
// which plans a chunk of streams per hold of the lock and several members
// at once, queues on every member the same names as planning that member
// alone in one hold does: here replicas missing on some members, replicas
// of streams that ended, and replicas held everywhere, in mode all and in
// mode demand. Between two chunks the lock is free.
func TestDiffAllQueuesWhatEachMembersDiffQueues(t *testing.T) {
	for _, mode := range []string{ModeAll, ModeDemand} {
		t.Run(mode, func(t *testing.T) { testDiffAll(t, mode) })
	}
}

// diffLocked queues every stream that needs work on destination m, in one
// hold of the lock: what diffAll must queue.
func (c *Controller) diffLocked(m *member, now time.Time) {
	if m.health.state != MemberUp {
		return
	}
	views := make([]streamView, 0, len(c.sources))
	for name := range c.sources {
		views = append(views, c.viewLocked(name, now))
	}
	c.diffViewsLocked(m, views, now)
	c.diffOrphansLocked(m, now)
}

func testDiffAll(t *testing.T, mode string) {
	const members, streams = 6, 300
	names := func(member int) []string {
		var out []string
		for i := range streams {
			switch {
			case member == 0 && i%10 == 9:
				// Not a source: the replicas of it have lost their origin's stream.
			case member > 0 && i%(member+2) == 0:
				// A replica this member is missing.
			default:
				out = append(out, fmt.Sprintf("stream-%03d", i))
			}
		}
		return out
	}
	build := func() *Controller {
		specs := staticGroup(members, names)
		o := Options{Members: specs}
		if mode == ModeDemand {
			o = demandOptions(specs)
			o.Group = "default" // the group staticGroup's replicas are tagged with
		}
		c, err := New(o)
		if err != nil {
			t.Fatal(err)
		}
		c.Resync(t.Context())
		for _, m := range c.members {
			q := m.work.queue
			q.mu.Lock()
			q.items, q.urgent = nil, nil
			clear(q.dirty)
			q.mu.Unlock()
		}
		return c
	}
	queued := func(c *Controller) map[string][]string {
		out := map[string][]string{}
		for _, m := range c.members {
			q := m.work.queue
			q.mu.Lock()
			out[m.spec.Name] = slices.Sorted(maps.Keys(q.dirty))
			q.mu.Unlock()
		}
		return out
	}

	all, each := build(), build()
	const chunk = 7
	chunks := 0
	all.afterDiffChunk = func() {
		chunks++
		if !all.mu.TryLock() {
			t.Errorf("the lock is held between chunk %d and the next", chunks)
			return
		}
		all.mu.Unlock()
	}
	sources := len(all.sources)
	all.diffAll(all.members, chunk)
	// The views and the planning of every member, each in chunks.
	if least := 2 * (sources + chunk - 1) / chunk; chunks < least || sources < 10*chunk {
		t.Errorf("the diff of %d sources let go of the lock %d times, want at least %d (chunks of %d)", sources, chunks, least, chunk)
	}
	now := time.Now()
	each.mu.Lock()
	for _, m := range each.members {
		each.diffLocked(m, now)
	}
	each.mu.Unlock()

	got, want := queued(all), queued(each)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("names queued by the diff of every member (-each member alone +all at once):\n%s", diff)
	}
	total := 0
	for _, names := range want {
		total += len(names)
	}
	if total == 0 {
		t.Fatal("no member has anything queued: the group has nothing to diff")
	}
}

// TestResyncLetsGoOfTheLockAndReportsItsLongestHold checks that a resync's
// diff lets go of the controller's lock between its chunks, and that the
// resync reports its longest hold, which is shorter than the resync.
func TestResyncLetsGoOfTheLockAndReportsItsLongestHold(t *testing.T) {
	const members, streams = 4, 300
	names := make([]string, streams)
	for i := range names {
		names[i] = fmt.Sprintf("stream-%03d", i)
	}
	c, err := New(Options{Members: staticGroup(members, func(int) []string { return names }), Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	free, held := 0, 0
	c.afterDiffChunk = func() {
		if !c.mu.TryLock() {
			held++
			return
		}
		free++
		c.mu.Unlock()
	}
	c.Resync(t.Context())
	if free < 3 || held != 0 {
		t.Errorf("between the diff's chunks the lock was free %d times and held %d times, want free at least 3 times (the names, the views, the planning) and never held", free, held)
	}
	c.mu.Lock()
	resync := time.Duration(c.resync.DurationMS * float64(time.Millisecond))
	c.mu.Unlock()
	longest := time.Duration(testutil.ToFloat64(c.met.resyncLock) * float64(time.Second))
	if longest <= 0 || longest > resync {
		t.Errorf("streamlb_resync_lock_seconds %v, want more than 0 and at most the resync's %v", longest, resync)
	}
}

// TestAnEventIsActedOnWhileAResyncPlans checks that a resync's diff does
// not hold up events: a stream published and announced while the diff
// waits between two of its chunks is replicated before the diff goes on,
// and so before the resync ends.
func TestAnEventIsActedOnWhileAResyncPlans(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, nil)
		defer h.end()
		for i := range 40 {
			h.g.m(addrA).publish(fmt.Sprintf("cam%02d", i))
		}
		h.c.TriggerResync()
		h.settle(2 * time.Second)
		wantReplica(t, h.g.m(addrB), "cam00", "rtmp://127.0.0.1/live/cam00")

		var (
			waited       bool
			onA, onC     string
			resyncBefore time.Time
		)
		h.c.mu.Lock()
		lastResync := h.c.resync.At
		h.c.afterDiffChunk = func() {
			if waited {
				return
			}
			waited = true
			if !h.c.mu.TryLock() {
				t.Error("the lock is held between two chunks of the diff")
				return
			}
			h.c.mu.Unlock()
			h.announce(addrB, "live")
			time.Sleep(time.Second) // the diff waits here, the lock free
			onA, onC = h.g.m(addrA).replicas()["live"], h.g.m(addrC).replicas()["live"]
			h.c.mu.Lock()
			resyncBefore = h.c.resync.At
			h.c.mu.Unlock()
		}
		h.c.mu.Unlock()
		h.c.TriggerResync()
		h.settle(3 * time.Second)

		if !waited {
			t.Fatal("the resync's diff never let go of the lock between two chunks")
		}
		if want := "rtmp://127.0.0.2/live/live"; onA != want || onC != want {
			t.Errorf("while the diff waited, a and c pulled %q and %q, want %q", onA, onC, want)
		}
		if !resyncBefore.Equal(lastResync) {
			t.Errorf("the resync had ended (at %v) while its diff waited", resyncBefore)
		}
		h.c.mu.Lock()
		ended := h.c.resync.At
		h.c.mu.Unlock()
		if !ended.After(lastResync) {
			t.Errorf("the resync did not end after its diff went on")
		}
	})
}
