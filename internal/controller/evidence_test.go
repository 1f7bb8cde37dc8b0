package controller

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"strconv"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"streamlb/internal/ems"
	"streamlb/internal/receiver"
)

// start runs a Controller with opts until the test's bubble ends it.
func start(t *testing.T, opts Options) (c *Controller, end func()) {
	t.Helper()
	if opts.Registerer == nil {
		opts.Registerer = prometheus.NewRegistry()
	}
	c, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = c.Run(ctx); close(done) }()
	<-c.Ready()
	synctest.Wait()
	return c, func() { cancel(); <-done }
}

// writes counts the calls that change a member, on every member of g.
func writes(g *fakeGroup) int {
	n := 0
	for _, m := range g.members {
		n += m.count("pullStream") + m.count("removeConfig")
	}
	return n
}

// An origin whose API fails, for any reason, while its streams flow keeps
// every replica of its sources on every other member, for as long as it
// lasts: its sources are unknown, not absent. Checked throughout the
// outage, not only after it.
func TestOriginAPIFailureRemovesNothing(t *testing.T) {
	for _, tc := range []struct {
		name  string
		fail  func(a *apiDownEMS, on bool)
		state string
	}{
		{"transport errors", func(a *apiDownEMS, on bool) { a.down.Store(on) }, MemberDown},
		{"wrong credentials", func(a *apiDownEMS, on bool) {
			a.g.mu.Lock()
			a.unauth = on
			a.g.mu.Unlock()
		}, MemberUnauthorized},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				g := newFakeGroup(addrA, addrB, addrC)
				specs := g.specs("a", "b", "c")
				a := &apiDownEMS{fakeEMS: g.m(addrA)}
				specs[0].Client = a
				c, end := start(t, Options{Group: "g1", KeepAlive: true, ResyncInterval: 10 * time.Second,
					TeardownGrace: 5 * time.Second, Members: specs})
				defer end()
				for i := range 5 {
					g.m(addrA).publish(fmt.Sprintf("cam%d", i))
				}
				time.Sleep(15 * time.Second)
				synctest.Wait()
				if st := c.Snapshot(); !st.Converged || len(st.Streams) != 5 {
					t.Fatalf("not converged before the fault: %+v", st)
				}

				tc.fail(a, true)
				for step := range 60 { // five minutes: thirty resyncs, sixty graces
					time.Sleep(5 * time.Second)
					synctest.Wait()
					if n := g.m(addrB).count("removeConfig") + g.m(addrC).count("removeConfig"); n != 0 {
						t.Fatalf("after %ds of origin failure: %d removeConfig calls", 5*(step+1), n)
					}
				}
				st := c.Snapshot()
				if got := memberState(c, "a"); got != tc.state {
					t.Errorf("member a is %q, want %q", got, tc.state)
				}
				if len(st.Streams) != 5 {
					t.Fatalf("status shows %d streams during the outage, want 5: %+v", len(st.Streams), st.Streams)
				}
				for _, s := range st.Streams {
					for _, m := range []string{"b", "c"} {
						if rs := s.Replicas[m]; rs.State != StatePresent {
							t.Errorf("%s on %s is %q during the outage, want present (it streams)", s.Name, m, rs.State)
						}
					}
				}
				for i := range 5 {
					wantReplica(t, g.m(addrB), fmt.Sprintf("cam%d", i), fmt.Sprintf("rtmp://127.0.0.1/live/cam%d", i))
				}

				// A new source on the failed origin is announced: nothing is
				// pulled (it cannot be confirmed), and its cells say why.
				g.m(addrA).publish("late")
				c.HandleStreamEvent(receiver.StreamEvent{Type: "inStreamCreated", Name: "late", IP: addrA, Peer: netip.MustParseAddr(addrA)})
				time.Sleep(time.Second)
				synctest.Wait()
				if n := g.m(addrB).count("pullStream"); n != 5 {
					t.Errorf("b got %d pulls, want the 5 of before the outage", n)
				}

				// One source ends during the outage; once the API answers
				// again, a listing shows it absent and only its replicas go.
				g.m(addrA).unpublish("cam0")
				tc.fail(a, false)
				time.Sleep(40 * time.Second)
				synctest.Wait()
				wantReplica(t, g.m(addrB), "cam0", "")
				wantReplica(t, g.m(addrB), "cam1", "rtmp://127.0.0.1/live/cam1")
				wantReplica(t, g.m(addrB), "late", "rtmp://127.0.0.1/live/late")
				if n := g.m(addrB).count("removeConfig"); n != 1 {
					t.Errorf("b: %d removeConfig calls, want 1 (cam0)", n)
				}
			})
		})
	}
}

// A member that cannot be listed shows its cells unknown, with the reason,
// not missing; the group is not converged.
func TestDownMemberCellsAreUnknown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, nil)
		defer h.end()
		h.g.m(addrC).setDown(true)
		h.announce(addrA, "s")
		h.settle(40 * time.Second)
		st := h.c.Snapshot()
		if len(st.Streams) != 1 {
			t.Fatalf("streams %+v", st.Streams)
		}
		rs := st.Streams[0].Replicas["c"]
		if rs.State != StateUnknown || rs.Reason == "" {
			t.Errorf("c's cell is %+v, want unknown with a reason", rs)
		}
		if st.Converged {
			t.Error("converged with a member down")
		}
	})
}

// Two balancers with the same config and a name published on two origins
// settle on the same origin (the stream created first) and then make no
// call that changes anything; neither does a third started afterwards.
func TestActiveActiveBalancersAgreeOnAConflict(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newFakeGroup(addrA, addrB, addrC)
		opts := func(order ...int) Options {
			all := g.specs("a", "b", "c")
			var specs []MemberSpec
			for _, i := range order {
				specs = append(specs, all[i])
			}
			return Options{Group: "g1", KeepAlive: true, ResyncInterval: 10 * time.Second, TeardownGrace: 5 * time.Second, Members: specs}
		}
		g.m(addrB).publish("news") // the primary encoder, first
		time.Sleep(time.Second)
		g.m(addrA).publish("news") // the backup, a second later
		// Each balancer lists the members in its own order.
		c1, end1 := start(t, opts(0, 1, 2))
		defer end1()
		c2, end2 := start(t, opts(2, 1, 0))
		defer end2()
		for _, c := range []*Controller{c1, c2} {
			for _, ip := range []string{addrA, addrB} {
				c.HandleStreamEvent(receiver.StreamEvent{Type: "inStreamCreated", Name: "news", IP: ip, Peer: netip.MustParseAddr(ip)})
			}
		}
		time.Sleep(30 * time.Second)
		synctest.Wait()
		wantReplica(t, g.m(addrC), "news", "rtmp://127.0.0.2/live/news")
		for _, c := range []*Controller{c1, c2} {
			st := c.Snapshot()
			if len(st.Streams) != 1 || st.Streams[0].Origin != "b" {
				t.Errorf("streams %+v, want news from b", st.Streams)
			}
			if len(st.Conflicts) != 1 || st.Conflicts[0].Member != "a" {
				t.Errorf("conflicts %+v, want news on a reported", st.Conflicts)
			}
		}
		settled := writes(g)
		time.Sleep(2 * time.Minute)
		synctest.Wait()
		if n := writes(g) - settled; n != 0 {
			t.Errorf("%d pulls and removals after settling, want 0", n)
		}
		c3, end3 := start(t, opts(1, 0, 2))
		time.Sleep(time.Minute)
		synctest.Wait()
		end3()
		if n := writes(g) - settled; n != 0 {
			t.Errorf("a balancer started later made %d changes, want 0", n)
		}
		_ = c3
	})
}

// A name that cannot stand in an RTMP URI unchanged is pulled nowhere,
// shown as unreplicable with the reason, and the group still converges.
func TestUnreplicableNameIsNeverPulled(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, nil)
		defer h.end()
		for _, name := range []string{"odd/name?x=1", "a b", "x%41", "ok"} {
			h.announce(addrA, name)
		}
		h.settle(40 * time.Second)
		if n := h.g.m(addrB).count("pullStream"); n != 1 {
			t.Errorf("b got %d pulls, want 1 (only ok)", n)
		}
		st := h.c.Snapshot()
		if !st.Converged {
			t.Errorf("not converged: %+v", st)
		}
		for _, s := range st.Streams {
			if s.Name == "ok" {
				continue
			}
			if rs := s.Replicas["b"]; rs.State != StateUnreplicable || rs.Reason == "" {
				t.Errorf("%q on b is %+v, want unreplicable with a reason", s.Name, rs)
			}
		}
	})
}

// Forged events naming streams on a member keep at most a bounded set of
// names waiting for confirmation, and none for a member that is down.
func TestForgedFloodKeepsBoundedState(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, nil)
		defer h.end()
		h.g.m(addrA).setDown(true)
		h.settle(40 * time.Second) // a is found down
		if got := memberState(h.c, "a"); got != MemberDown {
			t.Fatalf("a is %q", got)
		}
		flood := func(origin string) {
			for i := range 100_000 {
				h.c.HandleStreamEvent(receiver.StreamEvent{Type: "inStreamCreated", Name: fmt.Sprintf("forged-%d", i),
					IP: origin, Peer: netip.MustParseAddr(origin)})
				if i%10_000 == 0 {
					synctest.Wait()
				}
			}
			synctest.Wait()
		}
		flood(addrA)
		h.c.mu.Lock()
		n := len(h.c.byName["a"].work.confirm)
		h.c.mu.Unlock()
		if n != 0 {
			t.Errorf("%d names kept for a member that is down, want 0", n)
		}
		h.g.m(addrB).g.mu.Lock()
		h.g.m(addrB).down = false
		h.g.m(addrB).g.mu.Unlock()
		flood(addrB)
		h.c.mu.Lock()
		n = len(h.c.byName["b"].work.confirm)
		h.c.mu.Unlock()
		if n > maxConfirm {
			t.Errorf("%d names waiting on b, want at most %d", n, maxConfirm)
		}
		h.settle(time.Minute)
		if w := writes(h.g); w != 0 {
			t.Errorf("forged events made %d pulls or removals", w)
		}
	})
}

// A listConfig entry that does not decode is skipped, counted and shown on
// its member; the member stays up and its other replicas are known.
func TestUndecodableListingEntryIsSkipped(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, nil)
		defer h.end()
		h.announce(addrA, "s")
		h.settle(time.Second)
		b := h.g.m(addrB)
		b.g.mu.Lock()
		b.undecodable = 2
		b.g.mu.Unlock()
		h.settle(40 * time.Second)
		for _, m := range h.c.Snapshot().Members {
			if m.Name != "b" {
				continue
			}
			if m.State != MemberUp || m.SkippedEntries != 2 || m.SkipError == "" {
				t.Errorf("member b: %+v, want up with 2 skipped entries and why", m)
			}
		}
		if st := replicaState(h.c, "s", "b"); st != StatePresent {
			t.Errorf("replica on b is %q, want present", st)
		}
		if n := b.count("removeConfig") + b.count("pullStream"); n != 1 {
			t.Errorf("b got %d pulls and removals, want the 1 pull", n)
		}
	})
}

// A replica another balancer pulled of a source this balancer has not
// seen yet is not removed on an origin listing older than the source: a
// removal for "source ended" waits for a look at the origin taken after
// it was decided.
func TestPeerReplicaOfANewSourceIsKept(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, nil) // resync at 0s and 30s, grace 10s
		defer h.end()
		h.settle(31 * time.Second) // a listed at 30s
		h.g.m(addrA).publish("new")
		b := h.g.m(addrB)
		addPeerReplica(b, "new")
		h.relist("b") // b is listed (its peer's replica seen), a is not
		h.settle(5 * time.Second)
		if n := b.count("removeConfig"); n != 0 {
			t.Errorf("%d removeConfig on b: the peer's replica of a live source was removed", n)
		}
		wantReplica(t, b, "new", "rtmp://127.0.0.1/live/new")
	})
}

// A replica another balancer pulled of a source that came and went between
// two looks at its origin is removed a grace after the first look that
// found it gone, not at once: that the origin's earlier listings did not
// show it says nothing of when it ended.
func TestPeerReplicaOfAnUnseenSourceWaitsOutTheGrace(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, nil) // resync at 0s and 30s, grace 10s
		defer h.end()
		h.settle(31 * time.Second) // a listed at 30s
		a, b := h.g.m(addrA), h.g.m(addrB)
		a.publish("brief") // and gone before this balancer looks again
		addPeerReplica(b, "brief")
		a.unpublish("brief")
		h.relist("b")
		// The first look at a without the source is after 31s.
		wantKeptForAGraceThenGone(t, h, b, "brief", "rtmp://127.0.0.1/live/brief", 0)
	})
}

// addPeerReplica gives f the replica of name from a that another balancer
// of group g1 would pull, and returns its URI.
func addPeerReplica(f *fakeEMS, name string) string {
	uri := "rtmp://127.0.0.1/live/" + name
	f.addConfig(name, uri, map[string]string{tagGroup: "g1", tagOrigin: addrA})
	return uri
}

// wantKept checks that f made no removeConfig and holds its replica name
// pulling uri.
func wantKept(t *testing.T, f *fakeEMS, name, uri string) {
	t.Helper()
	if n := f.count("removeConfig"); n != 0 {
		t.Errorf("%d removeConfig on %s", n, f.addr)
	}
	wantReplica(t, f, name, uri)
}

// wantKeptForAGraceThenGone checks that f holds its replica name (pulling
// uri) for a whole grace of 10s from now, less 0.1s, with no removeConfig
// after the removed it had made before, and that it is gone 5s later.
func wantKeptForAGraceThenGone(t *testing.T, h *harness, f *fakeEMS, name, uri string, removed int) {
	t.Helper()
	h.settle(9900 * time.Millisecond)
	if n := f.count("removeConfig") - removed; n != 0 {
		t.Fatalf("%d removeConfig on %s within the grace", n, f.addr)
	}
	wantReplica(t, f, name, uri)
	h.settle(5 * time.Second)
	wantReplica(t, f, name, "")
}

// A name whose source ended long ago lives again, briefly, between two
// looks at its origin, and another balancer pulls a replica meanwhile: the
// old life's end is no evidence about the new one, whose replica waits a
// grace from the first look that finds it gone.
func TestPeerReplicaOfANewLifeIsNotJudgedByTheOldOnesEnd(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, nil) // resync at 0s and 30s, grace 10s
		defer h.end()
		a, b := h.g.m(addrA), h.g.m(addrB)
		h.announce(addrA, "cam")
		h.settle(time.Second)
		a.unpublish("cam")
		h.event("inStreamClosed", addrA, "cam")
		h.settle(15 * time.Second) // its replicas are gone; its record is not
		wantReplica(t, b, "cam", "")
		removed := b.count("removeConfig")
		a.publish("cam")
		addPeerReplica(b, "cam")
		a.unpublish("cam")
		h.relist("b")
		wantKeptForAGraceThenGone(t, h, b, "cam", "rtmp://127.0.0.1/live/cam", removed)
	})
}

// A member whose EMS restarted unnoticed hands out configIds anew: a
// replica a peer pulls there of a new life of the name may get the id,
// and the URI, of the replica this balancer knew before. It is another
// config (its _streamlb_made differs), known since the listing that shows
// it, and the old life's end is no evidence about it.
func TestConfigUnderAReusedIDIsANewReplica(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, nil) // resync at 0s and 30s, grace 10s
		defer h.end()
		a, b := h.g.m(addrA), h.g.m(addrB)
		h.announce(addrA, "cam")
		h.settle(2 * time.Second)
		var old ems.PullConfig
		b.g.mu.Lock()
		for _, c := range b.configs {
			old = c
		}
		b.g.mu.Unlock()
		if old.Vars[tagMade] == "" {
			t.Fatalf("replica %+v carries no %s", old, tagMade)
		}
		a.unpublish("cam")
		h.event("inStreamClosed", addrA, "cam") // this life ends at 2s
		h.settle(2 * time.Second)
		// b restarts, unnoticed; cam lives again on a, unseen here; a
		// peer pulls it onto b, under the old replica's id.
		a.publish("cam")
		vars := maps.Clone(old.Vars)
		vars[tagMade] = strconv.FormatInt(time.Now().Unix(), 10)
		b.g.mu.Lock()
		b.configs[old.ConfigID] = ems.PullConfig{ConfigID: old.ConfigID, LocalStreamName: "cam", URI: old.URI, Vars: vars}
		b.g.mu.Unlock()
		h.relist("b")
		h.settle(3 * time.Second)
		a.unpublish("cam") // the new life ends at 7s
		removed := b.count("removeConfig")
		h.settle(9900 * time.Millisecond)
		if n := b.count("removeConfig") - removed; n != 0 {
			t.Fatalf("%d removeConfig on b within the grace of the new life's end", n)
		}
		h.settle(35 * time.Second) // the resync at 30s looks at a
		wantReplica(t, b, "cam", "")
	})
}

// A full listing of an origin looks at its inbound streams first and reads
// its configs after: a source it found absent was absent when it started,
// and a replica known by then only. Here a name lives again, unseen, while
// a slow listing reads the configs, and a peer pulls a replica of it.
func TestAbsenceIsEvidenceFromWhenTheLookStarted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		t0 := time.Now()
		g := newFakeGroup(addrA, addrB, addrC)
		a, b := g.m(addrA), g.m(addrB)
		a.setLatency("listConfig", 3*time.Second)
		h := newHarnessOn(t, g, g.specs("a", "b", "c"), nil) // resync at 0s and 30s, grace 10s
		defer h.end()
		h.announce(addrA, "cam")
		h.settle(25 * time.Second)
		wantReplica(t, b, "cam", "rtmp://127.0.0.1/live/cam")
		// The first life ends, unannounced, and its replica goes with it.
		a.unpublish("cam")
		b.g.mu.Lock()
		clear(b.configs)
		b.g.mu.Unlock()
		time.Sleep(time.Until(t0.Add(30*time.Second + 500*time.Millisecond)))
		synctest.Wait()
		// a's resync listing looked at its inbound streams at 30s and reads
		// its configs until 33s.
		a.publish("cam")
		addPeerReplica(b, "cam")
		h.relist("b")
		h.settle(9500 * time.Millisecond)
		a.unpublish("cam") // the second life ends at 40s
		h.settle(9900 * time.Millisecond)
		if n := b.count("removeConfig"); n != 0 {
			t.Fatalf("%d removeConfig on b within the grace of the second life's end", n)
		}
		h.settle(time.Minute)
		wantReplica(t, b, "cam", "")
	})
}

// A name the origin held as a streamlb pull (another group's) at its last
// full listing is one its listings of inbound streams leave out: the look
// a removal waits for there is a full listing, spaced as removals' own,
// not a listing of the inbound streams every second until the resync.
func TestANameTheOriginPullsIsLookedAtByFullListings(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newFakeGroup(addrA, addrB, addrC)
		a, b := g.m(addrA), g.m(addrB)
		a.addConfig("x", "rtmp://10.9.9.9/live/x", map[string]string{tagGroup: "g2"})
		addPeerReplica(b, "x")
		h := newHarnessOn(t, g, g.specs("a", "b", "c"), func(o *Options) { o.ResyncInterval = 2 * time.Minute })
		defer h.end()
		inbound, full := a.count("listInboundStreamNames"), a.count("listConfig")
		h.settle(15 * time.Second)
		wantReplica(t, b, "x", "") // not a source on a: gone after the grace
		if n := a.count("listInboundStreamNames") - inbound; n > 3 {
			t.Errorf("%d listings of a's inbound streams, want at most 3", n)
		}
		if n := a.count("listConfig") - full; n > 3 {
			t.Errorf("%d full listings of a, want at most 3", n)
		}
	})
}

// A source back on its origin without an event, which a listing of the
// origin's inbound streams shows though it did not ask about it, is no
// evidence of an end: the removal waits for a look that asks. If the
// source is still there, nothing is removed; if it is gone again, its
// grace starts anew from that look.
func TestASourceTheOriginShowsUnaskedIsAskedAbout(t *testing.T) {
	for _, again := range []bool{false, true} {
		t.Run(map[bool]string{false: "back", true: "back and gone again"}[again], func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := newHarness(t, nil) // grace 10s
				defer h.end()
				a, b := h.g.m(addrA), h.g.m(addrB)
				h.announce(addrA, "cam")
				h.settle(time.Second)
				a.unpublish("cam")
				h.event("inStreamClosed", addrA, "cam")
				h.settle(time.Second)
				h.c.mu.Lock()
				ma := h.c.byName["a"]
				rec := h.c.sources["cam"][ma]
				if rec == nil || rec.absentSince.IsZero() {
					h.c.mu.Unlock()
					t.Fatal("cam not seen absent on a")
				}
				deadline := rec.absentSince.Add(10 * time.Second)
				h.c.mu.Unlock()
				a.publish("cam") // back, without an event
				time.Sleep(time.Until(deadline.Add(-10 * time.Millisecond)))
				synctest.Wait()
				// As a listing of a's inbound streams for other names, taken
				// just after the grace, leaves it.
				h.c.mu.Lock()
				ma.obs.inbound["cam"] = struct{}{}
				ma.obs.inboundAt = deadline.Add(time.Millisecond)
				h.c.shownUnaskedLocked(ma, []string{"cam"}, nil)
				h.c.mu.Unlock()
				if again {
					a.unpublish("cam")
				}
				h.settle(9900 * time.Millisecond)
				if n := b.count("removeConfig"); n != 0 {
					t.Fatalf("%d removeConfig on b within the grace of the source's last look on a", n)
				}
				wantReplica(t, b, "cam", "rtmp://127.0.0.1/live/cam")
				if again {
					h.settle(5 * time.Second)
					wantReplica(t, b, "cam", "")
				}
			})
		})
	}
}

// A listing of the origin's inbound streams does not show a name the
// origin held as streamlb's pull at its last full listing: it is no
// evidence that a source of that name is gone. Here the pull was removed
// and the name published on the origin since, and a peer pulled it.
func TestInboundListingBlindToANameIsNoEvidence(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newFakeGroup(addrA, addrB, addrC)
		a, b := g.m(addrA), g.m(addrB)
		id := a.addConfig("x", "rtmp://10.9.9.9/live/x", map[string]string{tagGroup: "g2"})
		h := newHarnessOn(t, g, g.specs("a", "b", "c"), nil) // resync at 0s and 30s, grace 10s
		defer h.end()
		h.settle(time.Second)
		a.g.mu.Lock()
		delete(a.configs, id)
		a.g.mu.Unlock()
		a.publish("x") // live from here on
		addPeerReplica(b, "x")
		h.relist("b")
		h.settle(time.Minute)
		wantKept(t, b, "x", "rtmp://127.0.0.1/live/x") // its source is live
	})
}

// A replica whose origin streams the name as a pull of its own (not
// streamlb's, not a source) is left alone, and asks nothing of the origin
// beyond the resync's listings.
func TestReplicaOfAnOriginsOwnPullIsLeftAlone(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newFakeGroup(addrA, addrB, addrC)
		a, b, c := g.m(addrA), g.m(addrB), g.m(addrC)
		c.addConfig("x", "rtmp://10.9.9.9/live/x", map[string]string{tagGroup: "g2"})
		a.addConfig("x", "rtmp://127.0.0.3/other/x", nil)
		addPeerReplica(b, "x")
		h := newHarnessOn(t, g, g.specs("a", "b", "c"), nil) // resync every 30s
		defer h.end()
		lists := a.count("listInboundStreamNames")
		h.settle(5 * time.Minute)
		if n := a.count("listInboundStreamNames") - lists; n > 12 {
			t.Errorf("%d listings of a's inbound streams in 5 minutes, want the resync's 10 and a few", n)
		}
		wantKept(t, b, "x", "rtmp://127.0.0.1/live/x") // a streams x
	})
}

// An absence seen before the origin could not be listed is not carried
// across the outage: once it is back, the grace starts again.
func TestAbsenceIsNotCountedAcrossAnOutage(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newFakeGroup(addrA, addrB, addrC)
		specs := g.specs("a", "b", "c")
		a := &apiDownEMS{fakeEMS: g.m(addrA)}
		specs[0].Client = a
		h := newHarnessOn(t, g, specs, func(o *Options) { o.ResyncInterval = 5 * time.Second })
		defer h.end()
		g.m(addrA).publish("cam")
		h.event("inStreamCreated", addrA, "cam")
		h.settle(3 * time.Second)
		g.m(addrA).unpublish("cam")
		h.event("inStreamClosed", addrA, "cam") // seen absent at ~3s
		h.settle(time.Second)
		a.down.Store(true) // unknown from ~5s, for 20s: past the grace
		h.settle(20 * time.Second)
		a.down.Store(false)
		h.settle(6 * time.Second) // back, listed, but not for a grace
		if n := g.m(addrB).count("removeConfig"); n != 0 {
			t.Errorf("%d removeConfig on b right after the outage: the absence was counted across it", n)
		}
		h.settle(15 * time.Second)
		wantReplica(t, g.m(addrB), "cam", "")
	})
}

// A FAIL other than "not found" from a per-name confirmation is no
// evidence that the stream is gone: its replicas stay.
func TestOddFailIsNoEvidenceOfAbsence(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, func(o *Options) { o.ResyncInterval = 10 * time.Minute })
		defer h.end()
		a := h.g.m(addrA)
		a.publish("cam")
		h.event("inStreamCreated", addrA, "cam")
		h.settle(time.Second)
		wantReplica(t, h.g.m(addrB), "cam", "rtmp://127.0.0.1/live/cam")
		a.g.mu.Lock()
		a.infoFails = true
		a.g.mu.Unlock()
		h.event("inStreamClosed", addrA, "cam") // forged: cam still streams
		h.settle(time.Minute)
		if n := h.g.m(addrB).count("removeConfig"); n != 0 {
			t.Errorf("%d removeConfig on b after an odd FAIL from the origin", n)
		}
	})
}
