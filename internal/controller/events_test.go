package controller

import (
	"net/netip"
	"slices"
	"strconv"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"streamlb/internal/receiver"
)

// TestEventSinkNeverWaitsForTheController holds the controller's lock (as
// a long resync does) and checks that an event is still taken at once.
// (Outside a synctest bubble: a goroutine waiting for a mutex is not
// durably blocked.)
func TestEventSinkNeverWaitsForTheController(t *testing.T) {
	g := newFakeGroup(addrA, addrB)
	c, err := New(Options{Group: "g1", Members: g.specs("a", "b")})
	if err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	taken := make(chan struct{})
	go func() {
		c.HandleStreamEvent(receiver.StreamEvent{Type: "inStreamCreated", Name: "s", IP: addrB, Peer: netip.MustParseAddr(addrB)})
		close(taken)
	}()
	select {
	case <-taken:
	case <-time.After(10 * time.Second):
		t.Fatal("HandleStreamEvent waited for the controller's lock")
	}
	c.mu.Unlock()
	if got := c.inbox.take(nil); len(got) != 1 || got[0].Name != "s" {
		t.Errorf("inbox holds %+v, want the event", got)
	}
}

// TestFullInboxDropsAndAsksForResync fills the inbox of a controller that
// is not running: the event beyond it is dropped, counted, and a resync is
// asked for.
func TestFullInboxDropsAndAsksForResync(t *testing.T) {
	g := newFakeGroup(addrA, addrB)
	c, err := New(Options{Group: "g1", Members: g.specs("a", "b")})
	if err != nil {
		t.Fatal(err)
	}
	ev := func(i int) receiver.StreamEvent {
		return receiver.StreamEvent{Type: "inStreamCreated", Name: "s" + strconv.Itoa(i), IP: addrA, Peer: netip.MustParseAddr(addrA)}
	}
	for i := range inboxSize {
		c.HandleStreamEvent(ev(i))
	}
	if n := testutil.ToFloat64(c.met.events.WithLabelValues("dropped")); n != 0 {
		t.Fatalf("%v events dropped before the inbox was full", n)
	}
	select {
	case <-c.resyncCh:
		t.Fatal("resync asked for before the inbox was full")
	default:
	}
	c.HandleStreamEvent(ev(inboxSize))
	if n := testutil.ToFloat64(c.met.events.WithLabelValues("dropped")); n != 1 {
		t.Errorf("dropped events = %v, want 1", n)
	}
	select {
	case <-c.resyncCh:
	default:
		t.Error("a dropped event did not ask for a resync")
	}
	if got := len(c.inbox.take(nil)); got != inboxSize {
		t.Errorf("inbox holds %d events, want %d", got, inboxSize)
	}
}

// TestEventBacklogIsHandledWhole sends more events at once than eventLoop
// handles under one hold of the lock: every one of them is acted on.
func TestEventBacklogIsHandledWhole(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, nil)
		defer h.end()
		n := 2*eventChunk + 7
		for i := range n {
			h.g.m(addrB).publish("s" + strconv.Itoa(i))
		}
		for i := range n {
			h.event("inStreamCreated", addrB, "s"+strconv.Itoa(i))
		}
		h.settle(5 * time.Second)
		got := h.g.m(addrA).replicas()
		for i := range n {
			name := "s" + strconv.Itoa(i)
			if got[name] != "rtmp://127.0.0.2/live/"+name {
				t.Fatalf("replica %s on member a: %q (of %d replicas)", name, got[name], len(got))
			}
		}
	})
}

// Each announced name is confirmed by a call of its own as soon as it
// arrives: a name announced while another's confirmation is in flight does
// not wait for that one, nor for a pause after it.
func TestConfirmationsDoNotWaitForEachOther(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, nil)
		defer h.end()
		a := h.g.m(addrA)
		a.setLatency("getStreamInfo", 100*time.Millisecond)
		a.publish("cam1")
		a.publish("cam2")
		h.event("inStreamCreated", addrA, "cam1")
		h.settle(10 * time.Millisecond)
		h.event("inStreamCreated", addrA, "cam2")
		// cam2's own call answers 110 ms in; a round that waited for
		// cam1's (100 ms) and a pause as long would answer at 300 ms.
		h.settle(120 * time.Millisecond)
		wantReplica(t, h.g.m(addrB), "cam2", "rtmp://127.0.0.1/live/cam2")
		wantReplica(t, h.g.m(addrC), "cam2", "rtmp://127.0.0.1/live/cam2")
	})
}

// Names confirmed one by one are confirmed at most perNameConfirm at a time
// per origin; more than confirmByNameMax waiting share one listing instead;
// and no confirmation call is ever in flight while the same member's
// inbound streams are listed, whose answer it could undo.
func TestConfirmationsBoundedAndNeverDuringAListing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, nil)
		defer h.end()
		a := h.g.m(addrA)
		a.setLatency("getStreamInfo", 50*time.Millisecond)
		a.setLatency("listInboundStreamNames", 50*time.Millisecond)
		lists := a.count("listInboundStreamNames")
		// announce publishes n streams on a and posts their events.
		var names []string
		announce := func(prefix string, n int) {
			for i := range n {
				name := prefix + strconv.Itoa(i)
				a.publish(name)
				h.event("inStreamCreated", addrA, name)
				names = append(names, name)
			}
		}
		announce("few", 10)
		h.settle(time.Second)
		if peak, _ := a.stats("getStreamInfo"); peak > perNameConfirm {
			t.Errorf("%d getStreamInfo calls in flight at once on the origin, want at most %d", peak, perNameConfirm)
		}
		if n := a.count("listInboundStreamNames") - lists; n != 0 {
			t.Errorf("%d listings of the origin for 10 names, want none", n)
		}
		infos := a.count("getStreamInfo")
		const many = 3 * confirmByNameMax
		announce("many", many)
		h.settle(2 * time.Second)
		if n := a.count("listInboundStreamNames") - lists; n == 0 {
			t.Errorf("no listing of the origin for %d names", many)
		}
		// The first names handled get calls of their own (perNameConfirm
		// at a time) until more than confirmByNameMax wait; the lister then
		// takes the names handled so far into one listing, and those
		// handled after it (at most confirmByNameMax, or another listing
		// takes them) get calls of their own once it is applied.
		if n, most := a.count("getStreamInfo")-infos, perNameConfirm+confirmByNameMax; n > most {
			t.Errorf("%d getStreamInfo calls for %d names at once, want at most %d: the rest answered by listings", n, many, most)
		}
		if _, overlaps := a.stats("getStreamInfo"); overlaps != 0 {
			t.Errorf("a getStreamInfo call was in flight during a listing of the same member's inbound streams %d times", overlaps)
		}
		for _, name := range names {
			wantReplica(t, h.g.m(addrB), name, "rtmp://127.0.0.1/live/"+name)
		}
	})
}

// A few announced names are confirmed with one getStreamInfo each, not a
// listing of every stream on the origin; a replica among them is not taken
// for a source.
func TestFewEventsConfirmedByName(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, nil)
		defer h.end()
		a := h.g.m(addrA)
		lists := a.count("listInboundStreamNames")
		a.publish("cam")
		h.event("inStreamCreated", addrA, "cam")
		h.settle(100 * time.Millisecond)
		wantReplica(t, h.g.m(addrB), "cam", "rtmp://127.0.0.1/live/cam")
		if n := a.count("listInboundStreamNames") - lists; n != 0 {
			t.Errorf("%d listings of the origin to confirm one name, want 0", n)
		}
		if n := a.count("getStreamInfo"); n < 1 {
			t.Errorf("%d getStreamInfo calls, want the confirmation", n)
		}
		// b's replica announced as if it were a source of b: not one.
		h.c.HandleStreamEvent(receiver.StreamEvent{Type: "inStreamCreated", Name: "cam", IP: addrB, Peer: netip.MustParseAddr(addrB)})
		h.settle(time.Second)
		if st := h.c.Snapshot(); len(st.Conflicts) != 0 || len(st.Streams) != 1 || st.Streams[0].Origin != "a" {
			t.Errorf("status %+v, want cam from a and no conflict", st)
		}
	})
}

// While a full listing reads the origin's configs, which takes far longer
// than listing its inbound streams, an announced name is confirmed by a
// call of its own at once: its first pulls do not wait for the listing.
// What that call finds is newer than the listing's inbound streams, and the
// listing, applied after, does not undo it: a stream published after the
// inbound listing is not taken for ended (nor its replicas removed), and
// one unpublished after it is not taken for back.
func TestConfirmationsDoNotWaitForAListingsConfigs(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, nil)
		defer h.end()
		a := h.g.m(addrA)
		h.announce(addrA, "old")
		h.settle(time.Second)
		wantReplica(t, h.g.m(addrB), "old", "rtmp://127.0.0.1/live/old")
		p, _ := h.c.Journal(0, 0)
		from := p.Next

		a.setLatency("listConfig", 2*time.Second)
		lists, infos := a.count("listConfig"), a.count("getStreamInfo")
		h.c.TriggerResync()
		h.settle(100 * time.Millisecond)
		if n := a.inflightCount("listConfig"); n != 1 {
			t.Fatalf("%d listConfig calls in flight on the origin after the resync began, want 1", n)
		}
		h.announce(addrA, "new")
		a.unpublish("old")
		h.event("inStreamClosed", addrA, "old")
		h.settle(100 * time.Millisecond)
		if a.count("listConfig") != lists || a.inflightCount("listConfig") != 1 {
			t.Fatal("the listing was no longer in flight when the names were confirmed")
		}
		if n := a.count("getStreamInfo") - infos; n < 2 {
			t.Errorf("%d getStreamInfo calls on the origin while its configs were listed, want one for each name", n)
		}
		wantReplica(t, h.g.m(addrB), "new", "rtmp://127.0.0.1/live/new")
		wantReplica(t, h.g.m(addrC), "new", "rtmp://127.0.0.1/live/new")

		// The listing applied, a teardown grace, and the rechecks of a
		// member whose 2-second listings make it look slow.
		h.settle(40 * time.Second)
		wantReplica(t, h.g.m(addrB), "new", "rtmp://127.0.0.1/live/new")
		wantReplica(t, h.g.m(addrC), "new", "rtmp://127.0.0.1/live/new")
		if got := h.g.m(addrB).replicas()["old"]; got != "" {
			t.Errorf("b still pulls old (%q) 40 s after it ended", got)
		}
		p, _ = h.c.Journal(from, 0)
		var got []string
		for _, e := range p.Events {
			if e.Kind == EntrySourceAppeared || e.Kind == EntrySourceEnded {
				got = append(got, e.Kind+" "+e.Stream)
			}
		}
		slices.Sort(got)
		if want := []string{EntrySourceAppeared + " new", EntrySourceEnded + " old"}; !slices.Equal(got, want) {
			t.Errorf("sources journaled %q, want %q: the listing undid what the names' own calls found", got, want)
		}
	})
}

// After a full listing that took long, the listing of the inbound streams
// that confirms many announced names waits only as its own duration asks:
// the pause after a listing keeps a member's time spent answering them to
// a quarter, and a listing of the inbound streams takes a fraction of a
// full one's.
func TestManyNamesDoNotWaitOutAFullListingsPause(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, nil)
		defer h.end()
		a := h.g.m(addrA)
		a.setLatency("listConfig", time.Second)
		a.setLatency("getStreamInfo", 50*time.Millisecond)
		lists := a.count("listConfig")
		h.relist("a") // as a name's conflict asks
		h.settle(1100 * time.Millisecond)
		if n := a.count("listConfig") - lists; n != 1 {
			t.Fatalf("%d full listings of the origin, want 1", n)
		}
		inbound := a.count("listInboundStreamNames")
		var names []string
		for i := range 3 * confirmByNameMax {
			name := "cam" + strconv.Itoa(i)
			h.announce(addrA, name)
			names = append(names, name)
		}
		h.settle(300 * time.Millisecond)
		if a.count("listInboundStreamNames") == inbound {
			t.Errorf("no listing of the origin's inbound streams for %d names in 300 ms, after a full listing of 1 s", len(names))
		}
		for _, name := range names {
			wantReplica(t, h.g.m(addrB), name, "rtmp://127.0.0.1/live/"+name)
		}
	})
}
