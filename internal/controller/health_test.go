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

	"streamlb/internal/ems"
	"streamlb/internal/receiver"
)

// flakyEMS answers every other call with a 500, as a member behind a
// failing load balancer or an overloaded web server does.
type flakyEMS struct {
	*fakeEMS
	mu    sync.Mutex
	on    bool
	n     int
	calls int
}

func (f *flakyEMS) fail(cmd string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if !f.on {
		return nil
	}
	f.n++
	if f.n%2 == 0 {
		return &ems.Error{Member: f.addr, Command: cmd, Kind: ems.KindHTTP, StatusCode: 500, Err: errors.New("500")}
	}
	return nil
}

func (f *flakyEMS) Version(ctx context.Context) (ems.Version, error) {
	if err := f.fail("version"); err != nil {
		return ems.Version{}, err
	}
	return f.fakeEMS.Version(ctx)
}

func (f *flakyEMS) EachPullConfigSkipping(ctx context.Context, fn func(*ems.PullConfig) error, skip func(error)) error {
	if err := f.fail("listConfig"); err != nil {
		return err
	}
	return f.fakeEMS.EachPullConfigSkipping(ctx, fn, skip)
}

func (f *flakyEMS) ListInboundStreamNames(ctx context.Context) ([]string, error) {
	if err := f.fail("listInboundStreamNames"); err != nil {
		return nil, err
	}
	return f.fakeEMS.ListInboundStreamNames(ctx)
}

func (f *flakyEMS) PullStream(ctx context.Context, req ems.PullRequest) (ems.PullResult, error) {
	if err := f.fail("pullStream"); err != nil {
		return ems.PullResult{}, err
	}
	return f.fakeEMS.PullStream(ctx, req)
}

func (f *flakyEMS) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

// A member failing every other call is parked, not hammered: each probe
// that succeeds brings it back, the next failure parks it again, and the
// probes of such a flapping member back off as those of one that stays
// down. Once it answers again it is refilled.
func TestFlappingMemberIsNotHammered(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newFakeGroup(addrA, addrB, addrC)
		specs := g.specs("a", "b", "c")
		c := &flakyEMS{fakeEMS: g.m(addrC)}
		specs[2].Client = c
		h := newHarnessOn(t, g, specs, func(o *Options) { o.ResyncInterval = 10 * time.Second })
		defer h.end()
		for i := range 20 {
			name := string(rune('a' + i))
			g.m(addrA).publish(name)
			h.event("inStreamCreated", addrA, name)
		}
		c.mu.Lock()
		c.on = true
		c.mu.Unlock()
		before := c.count()
		h.settle(time.Minute)
		// Each return costs a probe, a listing and a few pulls before
		// three failures park the member again; the returns back off
		// from a second to the resync interval: ten or so in a minute.
		// (Without the backoff, tens of thousands.)
		if n := c.count() - before; n > 120 {
			t.Errorf("a member failing every other call got %d calls in a minute; want it parked and probed", n)
		}
		c.mu.Lock()
		c.on = false
		c.mu.Unlock()
		h.settle(25 * time.Second)
		if n := len(g.m(addrC).replicas()); n != 20 {
			t.Errorf("member c holds %d replicas once it answers again, want 20", n)
		}
	})
}

// slowEMS is a member whose API hangs while slow is set: calls wait until
// it answers again or their deadline passes.
type slowEMS struct {
	*fakeEMS
	slow atomic.Bool
}

func (s *slowEMS) wait(ctx context.Context, cmd string) error {
	for s.slow.Load() {
		select {
		case <-ctx.Done():
			return &ems.Error{Member: s.addr, Command: cmd, Kind: ems.KindTransport, Err: ctx.Err()}
		case <-time.After(10 * time.Millisecond):
		}
	}
	return nil
}

func (s *slowEMS) Version(ctx context.Context) (ems.Version, error) {
	if err := s.wait(ctx, "version"); err != nil {
		return ems.Version{}, err
	}
	return s.fakeEMS.Version(ctx)
}

func (s *slowEMS) GetStreamInfo(ctx context.Context, name string) (ems.StreamInfo, error) {
	if err := s.wait(ctx, "getStreamInfo"); err != nil {
		return ems.StreamInfo{}, err
	}
	return s.fakeEMS.GetStreamInfo(ctx, name)
}

func (s *slowEMS) ListInboundStreamNames(ctx context.Context) ([]string, error) {
	if err := s.wait(ctx, "listInboundStreamNames"); err != nil {
		return nil, err
	}
	return s.fakeEMS.ListInboundStreamNames(ctx)
}

// slowHarness runs a controller of members a, b and c, whose calls time
// out after 5 s, and returns it with a, which can be made to hang.
func slowHarness(t *testing.T) (*harness, *slowEMS) {
	t.Helper()
	g := newFakeGroup(addrA, addrB, addrC)
	specs := g.specs("a", "b", "c")
	a := &slowEMS{fakeEMS: g.m(addrA)}
	specs[0].Client = a
	return newHarnessOn(t, g, specs, func(o *Options) { o.CallTimeout = 5 * time.Second }), a
}

// A listing that runs into its timeout parks the member, and the member is
// probed at once: it is back as soon as it answers, not after a pause as
// long as the timeout (during which its sources count as gone and their
// replicas elsewhere are removed).
func TestMemberParkedByASlowListingIsProbedAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, a := slowHarness(t)
		g := h.g
		defer h.end()
		g.m(addrA).publish("cam")
		h.event("inStreamCreated", addrA, "cam")
		h.settle(time.Second)
		wantReplica(t, g.m(addrB), "cam", "rtmp://127.0.0.1/live/cam")

		// An event makes the controller confirm the stream on a, which
		// hangs for the call timeout; a answers again right after.
		a.slow.Store(true)
		h.event("inStreamCreated", addrA, "cam")
		h.settle(5500 * time.Millisecond)
		if st := memberState(h.c, "a"); st != MemberDown {
			t.Fatalf("member a is %q after a listing timed out, want down", st)
		}
		a.slow.Store(false)
		h.settle(3 * time.Second) // a probe within a backoff step, well before twice the timeout
		if st := memberState(h.c, "a"); st != MemberUp {
			t.Errorf("member a is %q 3s after it answers again, want up", st)
		}
		h.settle(10 * time.Second) // past the grace
		wantReplica(t, g.m(addrB), "cam", "rtmp://127.0.0.1/live/cam")
	})
}

// A member parked by a listing that ran into its timeout is listed in full
// as soon as it is back, not after the pause that spaces listings of a
// member that answers (three times the listing's duration, here the
// timeout).
func TestMemberParkedByASlowListingIsListedOnceBack(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, a := slowHarness(t)
		g := h.g
		defer h.end()

		// a's serverStarted asks for a full listing of a, which hangs for
		// the call timeout; a answers again right after.
		a.slow.Store(true)
		h.c.HandleServerStarted(netip.MustParseAddr(addrA), time.Now())
		h.settle(5500 * time.Millisecond)
		if st := memberState(h.c, "a"); st != MemberDown {
			t.Fatalf("member a is %q after a listing timed out, want down", st)
		}
		lists := g.m(addrA).count("listConfig")
		a.slow.Store(false)
		h.settle(3 * time.Second) // a probe within a backoff step, then the listing
		if st := memberState(h.c, "a"); st != MemberUp {
			t.Fatalf("member a is %q 3s after it answers again, want up", st)
		}
		if n := g.m(addrA).count("listConfig") - lists; n == 0 {
			t.Errorf("member a not listed in full within 3s of its return")
		}
	})
}

// An origin's return has the other members pull again the replicas they
// lost while it was down (EMS deletes a keepAlive=0 pull whose connection
// drops), once its first listing shows its sources: not at the next
// resync. While it was down, nothing was done about them.
func TestOriginsReturnRefillsWhatOthersLostWithoutAResync(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, nil) // resync_interval 30 s
		defer h.end()
		a, b := h.g.m(addrA), h.g.m(addrB)
		const uri = "rtmp://127.0.0.1/live/s"
		h.announce(addrA, "s")
		h.settle(3 * time.Second)
		wantReplica(t, b, "s", uri)

		a.setDown(true)
		h.c.TriggerResync()
		h.settle(time.Second)
		if st := memberState(h.c, "a"); st != MemberDown {
			t.Fatalf("a is %q, want down", st)
		}
		b.g.mu.Lock()
		for id, cfg := range b.configs {
			if cfg.LocalStreamName == "s" {
				delete(b.configs, id)
			}
		}
		b.g.mu.Unlock()
		h.c.HandleStreamEvent(receiver.StreamEvent{Type: "inStreamClosed", Name: "s", IP: addrB, Peer: netip.MustParseAddr(addrB),
			PullURI: uri, Vars: map[string]string{tagGroup: "g1", tagOrigin: addrA}})
		h.settle(2 * time.Second)
		if _, ok := b.replicas()["s"]; ok {
			t.Fatal("b pulled s from a while a was down")
		}
		h.c.mu.Lock()
		lastResync := h.c.resync.At
		h.c.mu.Unlock()

		a.setDown(false)
		deadline := time.Now().Add(20 * time.Second) // a's probes back off
		for memberState(h.c, "a") != MemberUp {
			if time.Now().After(deadline) {
				t.Fatal("a not up 20 s after it came back")
			}
			h.settle(100 * time.Millisecond)
		}
		h.settle(time.Second)
		h.c.mu.Lock()
		resynced := !h.c.resync.At.Equal(lastResync)
		h.c.mu.Unlock()
		if resynced {
			t.Fatal("a resync ran before the check; it would refill b itself")
		}
		if _, ok := b.replicas()["s"]; !ok {
			t.Error("b did not pull s again within a second of its origin's return")
		}
	})
}
