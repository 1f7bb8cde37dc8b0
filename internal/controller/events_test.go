package controller

import (
	"net/netip"
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
