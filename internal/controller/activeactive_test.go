package controller

import (
	"context"
	"errors"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"streamlb/internal/ems"
	"streamlb/internal/receiver"
)

// Two controllers of one group on the same members (active-active): the
// second learns of a member's new stream only through the listing that
// confirms another event there. A replica the first one made on that
// member is not a source, whatever that listing shows: the second never
// pulls from it, and never removes the first one's replicas.
func TestAnotherControllersReplicaIsNotASource(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, nil) // controller X, resync every 30s
		defer h.end()
		y, err := New(Options{Group: "g1", KeepAlive: true, ResyncInterval: 30 * time.Second, TeardownGrace: 10 * time.Second,
			Members: h.g.specs("a", "b", "c"), Registerer: prometheus.NewRegistry()})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { _ = y.Run(ctx); close(done) }()
		defer func() { cancel(); <-done }()
		<-y.Ready()
		synctest.Wait()

		// cam starts on a; only X hears of it and replicates it.
		h.announce(addrA, "cam")
		h.settle(time.Second)
		wantReplica(t, h.g.m(addrB), "cam", "rtmp://127.0.0.1/live/cam")
		wantReplica(t, h.g.m(addrC), "cam", "rtmp://127.0.0.1/live/cam")

		// A source starts on b, and Y hears of it: Y lists b's inbound
		// streams, X's replica of cam among them.
		h.g.m(addrB).publish("bsrc")
		for _, c := range []*Controller{h.c, y} {
			c.HandleStreamEvent(receiver.StreamEvent{Type: "inStreamCreated", Name: "bsrc", IP: addrB, Peer: netip.MustParseAddr(addrB)})
		}
		h.settle(5 * time.Second)

		wantReplica(t, h.g.m(addrA), "bsrc", "rtmp://127.0.0.2/live/bsrc")
		wantReplica(t, h.g.m(addrC), "bsrc", "rtmp://127.0.0.2/live/bsrc")
		wantReplica(t, h.g.m(addrB), "cam", "rtmp://127.0.0.1/live/cam")
		wantReplica(t, h.g.m(addrC), "cam", "rtmp://127.0.0.1/live/cam")
		for _, a := range []string{addrA, addrB, addrC} {
			if n := h.g.m(a).count("removeConfig"); n != 0 {
				t.Errorf("member %s: %d removeConfig calls; the controllers fight", a, n)
			}
		}
		st := y.Snapshot()
		if len(st.Conflicts) != 0 {
			t.Errorf("Y reports conflicts: %+v", st.Conflicts)
		}
		for _, s := range st.Streams {
			if s.Name == "cam" && (s.Origin != "a" || s.Replicas["b"].State != StatePresent || s.Replicas["c"].State != StatePresent) {
				t.Errorf("Y sees cam as %+v, want origin a and replicas present on b and c", s)
			}
		}
	})
}

// racingEMS is a member on which another balancer of the group pulls a
// replica between the two calls of a listing.
type racingEMS struct {
	*fakeEMS
	mu    sync.Mutex
	armed func() // run once, after the next list call
}

func (r *racingEMS) after() {
	r.mu.Lock()
	f := r.armed
	r.armed = nil
	r.mu.Unlock()
	if f != nil {
		f()
	}
}

func (r *racingEMS) EachPullConfigSkipping(ctx context.Context, fn func(*ems.PullConfig) error, skip func(error)) error {
	defer r.after()
	return r.fakeEMS.EachPullConfigSkipping(ctx, fn, skip)
}

func (r *racingEMS) ListInboundStreamNames(ctx context.Context) ([]string, error) {
	defer r.after()
	return r.fakeEMS.ListInboundStreamNames(ctx)
}

// A replica pulled by another balancer while this one lists the member is
// not taken for a source of the member, whichever call of the listing it
// falls between.
func TestReplicaPulledDuringAListingIsNotASource(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newFakeGroup(addrA, addrB, addrC)
		specs := g.specs("a", "b", "c")
		b := &racingEMS{fakeEMS: g.m(addrB)}
		specs[1].Client = b
		// b first: of two sources seen at the same instant, b's wins.
		specs[0], specs[1] = specs[1], specs[0]
		h := newHarnessOn(t, g, specs, nil)
		defer h.end()

		// cam starts on a without an event: the next resync finds it.
		// During that resync another balancer pulls it onto b.
		g.m(addrA).publish("cam")
		b.mu.Lock()
		b.armed = func() {
			g.m(addrB).addConfig("cam", "rtmp://127.0.0.1/live/cam", map[string]string{tagGroup: "g1", tagOrigin: addrA})
		}
		b.mu.Unlock()
		h.settle(31 * time.Second)
		// The two listings of the resync run at once: when b's comes
		// second, this balancer has pulled cam onto b before the other
		// one, and that pull is seen streaming by a listing up to 2 s
		// later. The fake clock runs until b's cell is present.
		var st Status
		for deadline := time.Now().Add(10 * time.Second); ; {
			st = h.c.Snapshot()
			if len(st.Streams) == 1 && st.Streams[0].Replicas["b"].State == StatePresent {
				break
			}
			if time.Now().After(deadline) {
				break
			}
			h.settle(500 * time.Millisecond)
		}

		wantReplica(t, g.m(addrB), "cam", "rtmp://127.0.0.1/live/cam")
		wantReplica(t, g.m(addrC), "cam", "rtmp://127.0.0.1/live/cam")
		if len(st.Conflicts) != 0 {
			t.Errorf("conflicts reported: %+v", st.Conflicts)
		}
		if len(st.Streams) != 1 || st.Streams[0].Origin != "a" || st.Streams[0].Replicas["b"].State != StatePresent {
			t.Errorf("streams %+v, want cam from a, present on b", st.Streams)
		}
		if n := g.m(addrB).count("removeConfig") + g.m(addrC).count("removeConfig"); n != 0 {
			t.Errorf("%d removeConfig calls", n)
		}
	})
}

// apiDownEMS is a member whose API can fail while its media keep flowing:
// the streams pulled from it still stream.
type apiDownEMS struct {
	*fakeEMS
	down atomic.Bool
}

func (f *apiDownEMS) err(cmd string) error {
	return &ems.Error{Member: f.addr, Command: cmd, Kind: ems.KindTransport, Err: errors.New("connection reset")}
}

func (f *apiDownEMS) Version(ctx context.Context) (ems.Version, error) {
	if f.down.Load() {
		return ems.Version{}, f.err("version")
	}
	return f.fakeEMS.Version(ctx)
}

func (f *apiDownEMS) EachPullConfigSkipping(ctx context.Context, fn func(*ems.PullConfig) error, skip func(error)) error {
	if f.down.Load() {
		return f.err("listConfig")
	}
	return f.fakeEMS.EachPullConfigSkipping(ctx, fn, skip)
}

func (f *apiDownEMS) ListInboundStreamNames(ctx context.Context) ([]string, error) {
	if f.down.Load() {
		return nil, f.err("listInboundStreamNames")
	}
	return f.fakeEMS.ListInboundStreamNames(ctx)
}

// A replica removed by another balancer between the two calls of a listing
// is not taken for a source of its member either (its stream was listed,
// its config not), not even while its origin's API is down and its
// sources are unknown.
func TestReplicaRemovedDuringAListingIsNotASource(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newFakeGroup(addrA, addrB, addrC)
		specs := g.specs("a", "b", "c")
		a := &apiDownEMS{fakeEMS: g.m(addrA)}
		b := &racingEMS{fakeEMS: g.m(addrB)}
		specs[0].Client, specs[1].Client = a, b
		h := newHarnessOn(t, g, specs, nil)
		defer h.end()
		g.m(addrA).publish("cam")
		h.event("inStreamCreated", addrA, "cam")
		h.settle(time.Second)
		wantReplica(t, g.m(addrC), "cam", "rtmp://127.0.0.1/live/cam")

		// a's API fails (its streams still flow); during the next resync
		// another balancer removes the replica on b.
		h.settle(24 * time.Second)
		a.down.Store(true)
		b.mu.Lock()
		b.armed = func() {
			g.mu.Lock()
			defer g.mu.Unlock()
			for id, c := range g.m(addrB).configs {
				if c.LocalStreamName == "cam" {
					delete(g.m(addrB).configs, id)
				}
			}
		}
		b.mu.Unlock()
		h.settle(6 * time.Second) // the resync at 30s, within the grace

		wantReplica(t, g.m(addrC), "cam", "rtmp://127.0.0.1/live/cam")
		if n := g.m(addrC).count("removeConfig"); n != 0 {
			t.Errorf("c's replica removed within the grace (%d removeConfig calls)", n)
		}
		st := h.c.Snapshot()
		for _, s := range st.Streams {
			if s.Origin != "a" {
				t.Errorf("stream %q listed with origin %s, want a (b holds a replica, not a source)", s.Name, s.Origin)
			}
			if rs := s.Replicas["b"]; rs.State != StateUnknown {
				t.Errorf("b's cell is %q while the origin's API is down, want unknown", rs.State)
			}
		}
		if len(st.Conflicts) != 0 {
			t.Errorf("conflicts %+v, want none", st.Conflicts)
		}
	})
}
