package controller

import (
	"context"
	"net/netip"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"streamlb/internal/ems"
	"streamlb/internal/receiver"
)

const (
	addrA = "127.0.0.1"
	addrB = "127.0.0.2"
	addrC = "127.0.0.3"
)

// harness runs a Controller over a fake group inside a synctest bubble.
type harness struct {
	t   *testing.T
	g   *fakeGroup
	c   *Controller
	end func()
}

func newHarness(t *testing.T, mod func(*Options)) *harness {
	t.Helper()
	g := newFakeGroup(addrA, addrB, addrC)
	return newHarnessOn(t, g, g.specs("a", "b", "c"), mod)
}

// newHarnessOn is newHarness for the members specs describes, g's fakes or
// clients wrapping them.
func newHarnessOn(t *testing.T, g *fakeGroup, specs []MemberSpec, mod func(*Options)) *harness {
	t.Helper()
	opts := Options{
		Group:          "g1",
		KeepAlive:      true,
		ResyncInterval: 30 * time.Second,
		TeardownGrace:  10 * time.Second,
		Members:        specs,
		Registerer:     prometheus.NewRegistry(),
	}
	if mod != nil {
		mod(&opts)
	}
	c, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = c.Run(ctx); close(done) }()
	h := &harness{t: t, g: g, c: c, end: func() { cancel(); <-done }}
	<-c.Ready()
	synctest.Wait()
	return h
}

// settle lets fake time pass and every goroutine finish its work.
func (h *harness) settle(d time.Duration) {
	time.Sleep(d)
	synctest.Wait()
}

// relist asks for a full listing of the member named name now, as a
// name's conflict or a peer's pull would, without waiting for the resync.
func (h *harness) relist(name string) {
	h.c.mu.Lock()
	defer h.c.mu.Unlock()
	m := h.c.byName[name]
	m.work.needList = true
	h.c.wakeLocked(m)
}

func (h *harness) event(typ, origin, name string) {
	h.c.HandleStreamEvent(receiver.StreamEvent{Type: typ, Name: name, IP: origin, Peer: netip.MustParseAddr(origin)})
}

// announce publishes name on the member at origin and posts its
// inStreamCreated, as EMS does when a stream starts.
func (h *harness) announce(origin, name string) {
	h.g.m(origin).publish(name)
	h.event("inStreamCreated", origin, name)
}

func wantReplica(t *testing.T, f *fakeEMS, name, uri string) {
	t.Helper()
	if got := f.replicas()[name]; got != uri {
		t.Errorf("member %s: replica %q pulls %q, want %q", f.addr, name, got, uri)
	}
}

func TestEventReplicatesToEveryOtherMember(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, nil)
		defer h.end()
		h.announce(addrA, "cam1")
		h.settle(100 * time.Millisecond)
		wantReplica(t, h.g.m(addrB), "cam1", "rtmp://127.0.0.1/live/cam1")
		wantReplica(t, h.g.m(addrC), "cam1", "rtmp://127.0.0.1/live/cam1")
		if n := len(h.g.m(addrA).replicas()); n != 0 {
			t.Errorf("origin holds %d pull configs, want 0 (never a pull from itself)", n)
		}
		// Present only once seen streaming: by a listing of the member
		// soon after the pull.
		if st := replicaState(h.c, "cam1", "b"); st != StatePending {
			t.Errorf("replica on b is %q right after its pull, want pending", st)
		}
		h.settle(confirmPullAfter + time.Second)
		if st := h.c.Snapshot(); !st.Converged {
			t.Errorf("not converged: %+v", st)
		}
	})
}

func TestForgedEventPullsNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, nil)
		defer h.end()
		for range 100 {
			h.event("inStreamCreated", addrA, "ghost")
		}
		h.settle(time.Second)
		for _, a := range []string{addrA, addrB, addrC} {
			if n := h.g.m(a).count("pullStream"); n != 0 {
				t.Errorf("member %s got %d pullStream calls, want 0", a, n)
			}
		}
		if n := h.g.m(addrA).count("listInboundStreamNames"); n > 3 {
			t.Errorf("100 forged events cost %d listings of the origin, want them batched", n)
		}
	})
}

func TestResyncFindsStreamsEventsMissed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, nil)
		defer h.end()
		h.g.m(addrB).publish("lost")
		h.settle(29 * time.Second)
		if got := h.g.m(addrA).replicas()["lost"]; got != "" {
			t.Fatalf("replicated before any event or resync: %q", got)
		}
		h.settle(2 * time.Second)
		wantReplica(t, h.g.m(addrA), "lost", "rtmp://127.0.0.2/live/lost")
		wantReplica(t, h.g.m(addrC), "lost", "rtmp://127.0.0.2/live/lost")
	})
}

func TestTeardownAfterGraceAndNotBefore(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, nil)
		defer h.end()
		a := h.g.m(addrA)
		a.publish("s")
		h.event("inStreamCreated", addrA, "s")
		h.settle(time.Second)
		wantReplica(t, h.g.m(addrB), "s", "rtmp://127.0.0.1/live/s")

		// A blip shorter than the grace removes nothing.
		a.unpublish("s")
		h.event("inStreamClosed", addrA, "s")
		h.settle(5 * time.Second)
		a.publish("s")
		h.event("inStreamCreated", addrA, "s")
		h.settle(10 * time.Second)
		wantReplica(t, h.g.m(addrB), "s", "rtmp://127.0.0.1/live/s")
		if n := h.g.m(addrB).count("removeConfig"); n != 0 {
			t.Fatalf("blip removed %d configs", n)
		}

		// An end longer than the grace removes the replicas.
		a.unpublish("s")
		h.event("inStreamClosed", addrA, "s")
		h.settle(9 * time.Second)
		wantReplica(t, h.g.m(addrB), "s", "rtmp://127.0.0.1/live/s")
		h.settle(2 * time.Second)
		wantReplica(t, h.g.m(addrB), "s", "")
		wantReplica(t, h.g.m(addrC), "s", "")
	})
}

func TestDownMemberIsFilledWhenItReturns(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, func(o *Options) { o.ResyncInterval = 10 * time.Second })
		defer h.end()
		c := h.g.m(addrC)
		c.setDown(true)
		h.announce(addrA, "s")
		h.settle(5 * time.Second)
		wantReplica(t, h.g.m(addrB), "s", "rtmp://127.0.0.1/live/s")
		if st := memberState(h.c, "c"); st != MemberDown {
			t.Fatalf("member c is %q, want down", st)
		}
		calls := c.count("pullStream") + c.count("version")
		h.settle(60 * time.Second)
		if n := c.count("pullStream") + c.count("version") - calls; n > 12 {
			t.Errorf("a down member got %d calls in a minute; want it parked and probed", n)
		}
		c.setDown(false)
		// Back, c is probed (its probes have backed off), listed, filled,
		// and its pull seen streaming by a later listing: on the fake
		// clock, within a resync interval and a half.
		for deadline := time.Now().Add(15 * time.Second); ; {
			h.settle(500 * time.Millisecond)
			st := h.c.Snapshot()
			if st.Converged {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("not converged after the member returned: %+v %+v", st.Members, st.Streams)
			}
		}
		wantReplica(t, c, "s", "rtmp://127.0.0.1/live/s")
	})
}

func TestWrongCredentialsParkTheMember(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newFakeGroup(addrA, addrB, addrC)
		g.m(addrC).unauth = true
		h := newHarnessOn(t, g, g.specs("a", "b", "c"), func(o *Options) { o.ResyncInterval = 10 * time.Second })
		defer h.end()
		g.m(addrA).publish("s")
		h.event("inStreamCreated", addrA, "s")
		h.settle(time.Minute)
		wantReplica(t, g.m(addrB), "s", "rtmp://127.0.0.1/live/s")
		if st := memberState(h.c, "c"); st != MemberUnauthorized {
			t.Errorf("member c is %q, want unauthorized", st)
		}
		total := 0
		for _, n := range g.m(addrC).calls {
			total += n
		}
		if total > 10 {
			t.Errorf("member with wrong credentials got %d calls in a minute; want about one per resync_interval", total)
		}
	})
}

func TestAdoptsWhatTheOriginalPluginLeft(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newFakeGroup(addrA, addrB, addrC)
		g.m(addrA).publish("old")
		g.m(addrB).addConfig("old", "rtmp://127.0.0.1/live/old", nil)
		g.m(addrC).addConfig("old", "rtmp://127.0.0.1/live/old", nil)
		h := newHarnessOn(t, g, g.specs("a", "b", "c"), nil)
		defer h.end()
		h.settle(time.Second)
		if st := h.c.Snapshot(); !st.Converged {
			t.Errorf("group left by the original plugin not converged: %+v", st.Streams)
		}
		for _, a := range []string{addrA, addrB, addrC} {
			if n := g.m(a).count("pullStream"); n != 0 {
				t.Errorf("member %s got %d pulls, want 0", a, n)
			}
		}
		// Adopted replicas are removed on teardown like streamlb's own.
		g.m(addrA).unpublish("old")
		h.settle(45 * time.Second)
		wantReplica(t, g.m(addrB), "old", "")
	})
}

func TestForeignConfigIsAConflictLeftAlone(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newFakeGroup(addrA, addrB, addrC)
		g.m(addrA).publish("x")
		g.m(addrB).addConfig("x", "rtsp://camera.example/x", nil)
		g.m(addrC).addConfig("y", "rtmp://127.0.0.1/live/y", map[string]string{tagGroup: "other", tagOrigin: addrA})
		h := newHarnessOn(t, g, g.specs("a", "b", "c"), nil)
		defer h.end()
		h.settle(time.Minute)
		wantReplica(t, g.m(addrB), "x", "rtsp://camera.example/x")
		wantReplica(t, g.m(addrC), "y", "rtmp://127.0.0.1/live/y")
		wantReplica(t, g.m(addrC), "x", "rtmp://127.0.0.1/live/x")
		st := h.c.Snapshot()
		if len(st.Conflicts) != 1 || st.Conflicts[0].Member != "b" || st.Conflicts[0].Stream != "x" {
			t.Errorf("conflicts = %+v, want x on b", st.Conflicts)
		}
		if n := g.m(addrB).count("removeConfig") + g.m(addrC).count("removeConfig"); n != 0 {
			t.Errorf("%d removeConfig calls, want none", n)
		}
	})
}

func TestNoReplicaOfAReplica(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, nil)
		defer h.end()
		h.announce(addrA, "s")
		h.settle(time.Second)
		// The replica's own event on b, as EMS posts it.
		h.c.HandleStreamEvent(receiver.StreamEvent{Type: "inStreamCreated", Name: "s", IP: addrB,
			PullURI: "rtmp://127.0.0.1/live/s", Vars: map[string]string{tagGroup: "g1", tagOrigin: addrA}})
		h.settle(time.Minute)
		for _, a := range []string{addrA, addrB, addrC} {
			for name, uri := range h.g.m(a).replicas() {
				if uri != "rtmp://127.0.0.1/live/s" || name != "s" {
					t.Errorf("member %s pulls %s from %s", a, name, uri)
				}
			}
		}
		if n := h.g.m(addrA).count("pullStream"); n != 0 {
			t.Errorf("origin got %d pulls", n)
		}
	})
}

func TestRetriesWithBackoffUntilItWorks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, nil)
		defer h.end()
		b := h.g.m(addrB)
		b.g.mu.Lock()
		b.sources["s"] = true // b holds the name itself for a while,
		// published after a's: a's copy wins once the creation times are
		// read (until then nothing is pulled anywhere, unless a replica
		// already pulls a's).
		b.created["s"] = float64(time.Now().Add(time.Hour).UnixNano()) / 1e6
		b.g.mu.Unlock()
		h.announce(addrA, "s")
		// The pull fails, b is listed again, and the two creation times
		// are looked up: how many listing rounds that takes depends on
		// the order the goroutines ran in, so the fake clock runs until
		// the conflict shows, for 10 s at most.
		for deadline := time.Now().Add(10 * time.Second); ; {
			h.settle(100 * time.Millisecond)
			st := h.c.Snapshot()
			if len(st.Conflicts) > 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no conflict reported while b holds the name: %+v", st)
			}
		}
		b.unpublish("s")
		h.settle(time.Minute)
		wantReplica(t, b, "s", "rtmp://127.0.0.1/live/s")
	})
}

func TestPausedMemberGetsNoWork(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, nil)
		defer h.end()
		if err := h.c.Pause("c"); err != nil {
			t.Fatal(err)
		}
		h.announce(addrA, "s")
		h.settle(time.Second)
		wantReplica(t, h.g.m(addrC), "s", "")
		if err := h.c.Resume("c"); err != nil {
			t.Fatal(err)
		}
		h.settle(time.Second)
		wantReplica(t, h.g.m(addrC), "s", "rtmp://127.0.0.1/live/s")
		if err := h.c.Pause("nope"); err == nil {
			t.Error("Pause of an unknown member succeeded")
		}
	})
}

func TestIncludeExcludeAndReplicateFalse(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newFakeGroup(addrA, addrB, addrC)
		specs := g.specs("a", "b", "c")
		specs[2].Replicate = false
		h := newHarnessOn(t, g, specs, func(o *Options) { o.Exclude = []string{"tmp_*"} })
		defer h.end()
		g.m(addrA).publish("tmp_1")
		g.m(addrA).publish("keep")
		g.m(addrC).publish("fromc")
		h.event("inStreamCreated", addrA, "tmp_1")
		h.event("inStreamCreated", addrA, "keep")
		h.event("inStreamCreated", addrC, "fromc")
		h.settle(time.Second)
		wantReplica(t, g.m(addrB), "keep", "rtmp://127.0.0.1/live/keep")
		wantReplica(t, g.m(addrB), "tmp_1", "")
		wantReplica(t, g.m(addrC), "keep", "")
		wantReplica(t, g.m(addrA), "fromc", "rtmp://127.0.0.3/live/fromc")
	})
}

func memberState(c *Controller, name string) string {
	for _, m := range c.Snapshot().Members {
		if m.Name == name {
			return m.State
		}
	}
	return ""
}

var _ = ems.PullConfig{}

func TestReplicaThatCannotConnectIsFailingAfterTheGrace(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, func(o *Options) { o.ResyncInterval = 5 * time.Second })
		defer h.end()
		b := h.g.m(addrB)
		b.g.mu.Lock()
		b.cut = true
		b.g.mu.Unlock()
		h.announce(addrA, "s")
		h.settle(6 * time.Second)
		if st := replicaState(h.c, "s", "b"); st != StatePending {
			t.Fatalf("replica on b is %q while not streaming within the grace, want pending (failing only after the grace)", st)
		}
		h.settle(15 * time.Second)
		if st := replicaState(h.c, "s", "b"); st != StateFailing {
			t.Errorf("replica on b is %q after failing past the grace, want failing", st)
		}
		if h.c.Snapshot().Converged {
			t.Error("converged with a failing replica")
		}
		b.g.mu.Lock()
		b.cut = false
		b.g.mu.Unlock()
		h.settle(6 * time.Second)
		if st := replicaState(h.c, "s", "b"); st != StatePresent {
			t.Errorf("replica on b is %q after it connected, want present", st)
		}
	})
}

func replicaState(c *Controller, stream, member string) string {
	for _, s := range c.Snapshot().Streams {
		if s.Name == stream {
			return s.Replicas[member].State
		}
	}
	return ""
}

func TestMetricsDescribeTheGroup(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		reg := prometheus.NewRegistry()
		h := newHarness(t, func(o *Options) { o.Registerer = reg })
		defer h.end()
		h.g.m(addrC).setDown(true)
		h.announce(addrA, "s")
		h.settle(3 * time.Second)
		gauge := func(name string) float64 {
			t.Helper()
			mfs, err := reg.Gather()
			if err != nil {
				t.Fatal(err)
			}
			for _, mf := range mfs {
				if mf.GetName() == name {
					v := 0.0
					for _, m := range mf.GetMetric() {
						v += m.GetGauge().GetValue() + m.GetCounter().GetValue()
					}
					return v
				}
			}
			t.Fatalf("no series %s", name)
			return 0
		}
		if got := gauge("streamlb_member_up"); got != 2 {
			t.Errorf("streamlb_member_up sums to %v, want 2 (c is down)", got)
		}
		if got := gauge("streamlb_converged"); got != 0 {
			t.Errorf("streamlb_converged = %v with a member down", got)
		}
		h.g.m(addrC).setDown(false)
		h.settle(40 * time.Second)
		for name, want := range map[string]float64{
			"streamlb_replicas_desired":        2,
			"streamlb_replicas_present":        2,
			"streamlb_converged":               1,
			"streamlb_convergence_lag_seconds": 0,
			"streamlb_conflicts":               0,
			"streamlb_replica_pulls_total":     2,
		} {
			if got := gauge(name); got != want {
				t.Errorf("%s = %v, want %v", name, got, want)
			}
		}
		if got := gauge("streamlb_workqueue_adds_total"); got < 2 {
			t.Errorf("streamlb_workqueue_adds_total = %v, want at least 2", got)
		}
	})
}

func TestSetMembersAddsFillsAndLeavesRemovedAlone(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const addrD = "127.0.0.4"
		g := newFakeGroup(addrA, addrB, addrC, addrD)
		specs := g.specs("a", "b", "c", "d")
		h := newHarnessOn(t, g, specs[:3], nil)
		defer h.end()
		g.m(addrA).publish("fromA")
		g.m(addrC).publish("fromC")
		h.event("inStreamCreated", addrA, "fromA")
		h.event("inStreamCreated", addrC, "fromC")
		h.settle(time.Second)
		wantReplica(t, g.m(addrB), "fromC", "rtmp://127.0.0.3/live/fromC")

		// d joins, c leaves, b's client is replaced (as with new credentials).
		next := []MemberSpec{specs[0], specs[1], specs[3]}
		next[1].Client = g.m(addrB)
		same := func(x, y MemberSpec) bool { return x.Name != "b" }
		h.c.mu.Lock()
		oldB, oldC := h.c.byName["b"], h.c.byName["c"]
		h.c.mu.Unlock()
		if err := h.c.SetMembers(next, same); err != nil {
			t.Fatal(err)
		}
		h.settle(time.Minute)
		// Run's member loop stopped the members that left or were
		// replaced and started d.
		h.c.mu.Lock()
		if !oldB.run.stopped || !oldC.run.stopped || oldB.run.ctx.Err() == nil || oldC.run.ctx.Err() == nil {
			t.Errorf("old members stopped: b %v, c %v", oldB.run.stopped, oldC.run.stopped)
		}
		if d := h.c.byName["d"]; d.run.ctx == nil || d.run.ctx.Err() != nil {
			t.Error("the new member d was not started")
		}
		h.c.mu.Unlock()
		wantReplica(t, g.m(addrD), "fromA", "rtmp://127.0.0.1/live/fromA")
		wantReplica(t, g.m(addrB), "fromA", "rtmp://127.0.0.1/live/fromA")
		// c's replicas stay, and replicas of c's sources are left for prune.
		wantReplica(t, g.m(addrC), "fromA", "rtmp://127.0.0.1/live/fromA")
		wantReplica(t, g.m(addrB), "fromC", "rtmp://127.0.0.3/live/fromC")
		wantReplica(t, g.m(addrD), "fromC", "")
		if n := g.m(addrC).count("removeConfig") + g.m(addrB).count("removeConfig"); n != 0 {
			t.Errorf("%d removeConfig calls after a member left", n)
		}
		st := h.c.Snapshot()
		if !st.Converged || len(st.Members) != 3 {
			t.Errorf("after the reload: converged %v, %d members", st.Converged, len(st.Members))
		}
		if err := h.c.SetMembers([]MemberSpec{specs[0], specs[0]}, same); err == nil {
			t.Error("SetMembers accepted a name used twice")
		}
	})
}

func TestEventOriginFallsBackToPeerThenHost(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newFakeGroup(addrA, addrB, addrC)
		specs := g.specs("a", "b", "c")
		specs[2].Host = true
		h := newHarnessOn(t, g, specs, nil)
		defer h.end()
		g.m(addrB).publish("viaPeer")
		g.m(addrC).publish("viaHost")
		// payload.ip is not a member (a multi-homed EMS): the sender is.
		h.c.HandleStreamEvent(receiver.StreamEvent{Type: "inStreamCreated", Name: "viaPeer", IP: "192.0.2.7", Peer: netip.MustParseAddr(addrB)})
		// Neither is: the sidecar's host is the origin.
		h.c.HandleStreamEvent(receiver.StreamEvent{Type: "inStreamCreated", Name: "viaHost", IP: "", Peer: netip.MustParseAddr("192.0.2.8")})
		h.settle(time.Second)
		wantReplica(t, g.m(addrA), "viaPeer", "rtmp://127.0.0.2/live/viaPeer")
		wantReplica(t, g.m(addrA), "viaHost", "rtmp://127.0.0.3/live/viaHost")
	})
}

func TestUnknownOriginIsNotActedOn(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, nil)
		defer h.end()
		h.g.m(addrA).publish("s")
		h.c.HandleStreamEvent(receiver.StreamEvent{Type: "inStreamCreated", Name: "s", IP: "192.0.2.7", Peer: netip.MustParseAddr("192.0.2.7")})
		h.settle(time.Second)
		for _, a := range []string{addrA, addrB, addrC} {
			if n := h.g.m(a).count("listInboundStreamNames") + h.g.m(a).count("pullStream"); n > 1 {
				t.Errorf("member %s got %d calls for an event of unknown origin", a, n)
			}
		}
	})
}
