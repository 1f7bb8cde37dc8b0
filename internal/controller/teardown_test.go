package controller

import (
	"fmt"
	"maps"
	"slices"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"streamlb/internal/ems"
)

// A source that comes back while its inStreamCreated event is lost keeps
// its replicas: before tearing down after the grace, the controller lists
// the origin once more. A source that really ended is still removed once
// the grace is over.
func TestTeardownConfirmsOnTheOriginThatTheSourceIsStillGone(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, nil) // resync every 30s, grace 10s
		defer h.end()
		a := h.g.m(addrA)
		a.publish("cam")
		h.event("inStreamCreated", addrA, "cam")
		h.settle(time.Second)
		wantReplica(t, h.g.m(addrB), "cam", "rtmp://127.0.0.1/live/cam")

		// A blip: the source stops and its closed event arrives; it comes
		// back two seconds later, but that event is lost.
		a.unpublish("cam")
		h.event("inStreamClosed", addrA, "cam")
		h.settle(2 * time.Second)
		a.publish("cam")
		h.settle(12 * time.Second) // past the grace, before the next resync
		for _, m := range []*fakeEMS{h.g.m(addrB), h.g.m(addrC)} {
			wantReplica(t, m, "cam", "rtmp://127.0.0.1/live/cam")
			if n := m.count("removeConfig"); n != 0 {
				t.Errorf("member %s: %d removeConfig calls for a source that is back", m.addr, n)
			}
		}

		// The source ends for good: removed after the grace, not before.
		a.unpublish("cam")
		h.event("inStreamClosed", addrA, "cam")
		h.settle(9900 * time.Millisecond)
		wantReplica(t, h.g.m(addrB), "cam", "rtmp://127.0.0.1/live/cam")
		// The looks at the members and the origin that the grace's end
		// asks for serve the removal: no second round after them.
		h.settle(500 * time.Millisecond)
		for _, m := range []*fakeEMS{h.g.m(addrB), h.g.m(addrC)} {
			if got := m.replicas()["cam"]; got != "" {
				t.Errorf("member %s still holds %q 0.4 s after the grace", m.addr, got)
			}
		}
	})
}

// A member restarted without its saved configs, unnoticed between two
// listings, numbers its configs afresh: the id the controller last saw on
// its replica may name someone else's config now. Before tearing down, the
// controller lists the member again, and removes only what is its own.
func TestTeardownListsTheMemberBeforeRemovingByConfigID(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, nil) // resync every 30s, grace 10s
		defer h.end()
		a, b := h.g.m(addrA), h.g.m(addrB)
		a.publish("cam")
		h.event("inStreamCreated", addrA, "cam")
		h.settle(time.Second)
		wantReplica(t, b, "cam", "rtmp://127.0.0.1/live/cam")

		// b restarts empty, and an operator's config gets the id that
		// was the replica's.
		h.g.mu.Lock()
		var id uint64
		for cid, c := range b.configs {
			if c.LocalStreamName == "cam" {
				id = cid
			}
		}
		clear(b.configs)
		b.configs[id] = ems.PullConfig{ConfigID: id, LocalStreamName: "operator", URI: "rtsp://cam.example.invalid/op", KeepAlive: true}
		h.g.mu.Unlock()

		a.unpublish("cam")
		h.event("inStreamClosed", addrA, "cam")
		h.settle(12 * time.Second) // past the grace, before the next resync
		if got := b.replicas()["operator"]; got != "rtsp://cam.example.invalid/op" {
			t.Errorf("the operator's config on b is gone (%q): removed by a stale config id", got)
		}
		if n := b.count("removeConfig"); n != 0 {
			t.Errorf("b got %d removeConfig calls, want none: it holds nothing of the group's", n)
		}
		wantReplica(t, h.g.m(addrC), "cam", "")
	})
}

// Streams ending one after another share the listings their removals wait
// for: a member's configs, and the origin's inbound streams, are listed
// about once per removeListSpacing (a tenth of the grace) while the
// removals come due, not once per ended stream, and the origin gets no
// call per name and member. A stream starting meanwhile is confirmed at
// once. Every replica is still removed, none before its grace.
func TestEndedStreamsShareTheListingsTheirRemovalsWaitFor(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, nil) // resync every 30s, grace 10s: spacing 1s
		defer h.end()
		a, b, c := h.g.m(addrA), h.g.m(addrB), h.g.m(addrC)
		const n = 20
		name := func(i int) string { return fmt.Sprintf("s%02d", i) }
		for i := range n {
			h.announce(addrA, name(i))
		}
		h.settle(time.Second)
		for i := range n {
			wantReplica(t, b, name(i), "rtmp://127.0.0.1/live/"+name(i))
		}

		// One ends every 100 ms for 2 s.
		before := b.count("listConfig")
		for i := range n {
			a.unpublish(name(i))
			h.event("inStreamClosed", addrA, name(i))
			h.settle(100 * time.Millisecond)
		}
		h.settle(10*time.Second - 2*time.Second - 100*time.Millisecond) // the first grace is almost over
		if got := len(b.replicas()); got != n {
			t.Fatalf("b holds %d replicas before the first grace is over, want %d", got, n)
		}
		infos, inbound := a.count("getStreamInfo"), a.count("listInboundStreamNames")
		h.settle(time.Second)
		// A stream that starts while the removals go on is confirmed
		// at once: their looks at the origin do not hold it up.
		h.announce(addrA, "live")
		h.settle(100 * time.Millisecond)
		wantReplica(t, b, "live", "rtmp://127.0.0.1/live/live")
		wantReplica(t, c, "live", "rtmp://127.0.0.1/live/live")
		h.settle(3 * time.Second) // the last grace is over, and a spacing more
		for _, m := range []*fakeEMS{b, c} {
			if got := slices.Collect(maps.Keys(m.replicas())); !slices.Equal(got, []string{"live"}) {
				t.Errorf("member %s holds replicas %q after every grace, want only live", m.addr, got)
			}
		}
		// The removals came due over 2 s, and each waits for listings
		// taken after its grace: a listing a spacing, a few more at
		// most, not one per stream.
		if got := b.count("listConfig") - before; got > 6 {
			t.Errorf("b's configs were listed %d times for 20 removals due over 2s, want at most 6", got)
		}
		// Their looks at the origin were shared the same way, and the
		// only call of its own was live's confirmation.
		if got := a.count("listInboundStreamNames") - inbound; got > 6 {
			t.Errorf("the origin's inbound streams were listed %d times for 20 ended streams due over 2s, want at most 6", got)
		}
		if got := a.count("getStreamInfo") - infos; got > 1 {
			t.Errorf("%d getStreamInfo calls on the origin while 40 replicas of ended streams were removed, want only live's", got)
		}
	})
}

// A member's full listings while replicas of ended streams wait out their
// grace do not have a worker plan each of them again: they are queued for
// when the grace ends, which they already were. (After every removal
// listing of a member, that was every stream ended in the last grace.)
func TestListingsDoNotRequeueReplicasWaitingOutTheirGrace(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		reg := prometheus.NewRegistry()
		h := newHarness(t, func(o *Options) { o.Registerer = reg })
		defer h.end()
		a, b := h.g.m(addrA), h.g.m(addrB)
		const n = 50
		h.announceSettled(addrA, n)
		for i := range n {
			a.unpublish(fmt.Sprintf("s%02d", i))
			h.event("inStreamClosed", addrA, fmt.Sprintf("s%02d", i))
		}
		h.settle(time.Second)
		works := func() uint64 {
			t.Helper()
			mfs, err := reg.Gather()
			if err != nil {
				t.Fatal(err)
			}
			for _, mf := range mfs {
				if mf.GetName() == "streamlb_workqueue_work_duration_seconds" {
					return mf.GetMetric()[0].GetHistogram().GetSampleCount()
				}
			}
			t.Fatal("no streamlb_workqueue_work_duration_seconds")
			return 0
		}
		before, lists := works(), b.count("listConfig")
		for range 5 {
			h.relist("b")
			h.settle(time.Second)
		}
		if got := b.count("listConfig") - lists; got != 5 {
			t.Fatalf("%d full listings of b, want 5", got)
		}
		if got := works() - before; got > 0 {
			t.Errorf("%d replicas worked on during 5 listings of b while %d replicas waited out their grace, want none of them", got, n)
		}
		if got := len(b.replicas()); got != n {
			t.Errorf("b holds %d replicas within the grace, want %d", got, n)
		}
		h.settle(10 * time.Second)
		if got := len(b.replicas()); got != 0 {
			t.Errorf("b holds %d replicas after the grace, want 0", got)
		}
	})
}

// A listing of a member's configs made for its removals plans again only
// the streams it shows changed, and the removals it was made for, not
// every stream of the group: the diff of every stream is the resync's.
// What the listing finds changed is still repaired at once: here a
// replica whose config was removed behind the balancer's back, which no
// event tells of.
func TestRemovalListingsPlanOnlyWhatTheyChanged(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, nil)
		defer h.end()
		a, b := h.g.m(addrA), h.g.m(addrB)
		const n = 50
		h.announceSettled(addrA, n)
		if got := len(b.replicas()); got != n {
			t.Fatalf("b holds %d replicas, want %d", got, n)
		}
		var diffs, onB, most atomic.Int64
		h.c.mu.Lock()
		h.c.afterDiffChunk = func() { diffs.Add(1) }
		h.c.diffedNames = func(m *member, n int) {
			if m.spec.Address == addrB {
				onB.Add(1)
				if int64(n) > most.Load() {
					most.Store(int64(n))
				}
			}
		}
		lastResync := h.c.resync.At
		h.c.mu.Unlock()
		lists := b.count("listConfig")

		a.unpublish("s00")
		h.event("inStreamClosed", addrA, "s00")
		b.g.mu.Lock()
		for id, cfg := range b.configs {
			if cfg.LocalStreamName == "s01" {
				delete(b.configs, id)
			}
		}
		b.g.mu.Unlock()
		h.settle(10*time.Second + 2*time.Second)

		h.c.mu.Lock()
		resynced := h.c.resync.At.After(lastResync)
		h.c.mu.Unlock()
		if resynced {
			t.Fatal("a resync ran in the test's window; it diffs every stream")
		}
		if got := b.count("listConfig") - lists; got == 0 {
			t.Fatal("no listing of b's configs for the removal of s00")
		}
		replicas := b.replicas()
		if _, ok := replicas["s00"]; ok {
			t.Error("b still holds s00 two seconds after its grace")
		}
		if _, ok := replicas["s01"]; !ok {
			t.Error("b's removal listing showed s01's replica gone, and b did not pull it again")
		}
		if got := diffs.Load(); got > 0 {
			t.Errorf("%d chunks of a diff of every stream ran after b's removal listings, want none", got)
		}
		// s00's removal and s01's lost config: no more on any listing.
		if onB.Load() == 0 {
			t.Error("no diff followed b's removal listings")
		} else if got := most.Load(); got > 2 {
			t.Errorf("a diff after a removal listing of b planned %d streams, want at most 2 (s00, s01) of %d", got, n)
		}
	})
}

// announceSettled announces n streams, s00 and on, on the member at
// origin, and lets the group replicate them.
func (h *harness) announceSettled(origin string, n int) {
	for i := range n {
		h.announce(origin, fmt.Sprintf("s%02d", i))
	}
	h.settle(3 * time.Second)
}
