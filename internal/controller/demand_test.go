package controller

import (
	"fmt"
	"math"
	"net/netip"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"pgregory.net/rapid"

	"streamlb/internal/receiver"
)

// demandGroup is six fake members a–f on 127.0.0.1–6.
func demandGroup() (*fakeGroup, []MemberSpec) {
	var addrs []string
	for i := 1; i <= 6; i++ {
		addrs = append(addrs, fmt.Sprintf("127.0.0.%d", i))
	}
	g := newFakeGroup(addrs...)
	return g, g.specs("a", "b", "c", "d", "e", "f")
}

func demandOptions(specs []MemberSpec) Options {
	return Options{Group: "g1", KeepAlive: true, ResyncInterval: 10 * time.Second, TeardownGrace: 3 * time.Second,
		Members: specs, Replication: Replication{Mode: ModeDemand, MinCopies: 2, ScaleUpUtilization: 0.7,
			ScaleDownAfter: time.Minute, LoadStaleAfter: 15 * time.Second}}
}

// holders counts, per stream, the members holding it: its origin and the
// members with a pull of it.
func holders(g *fakeGroup, names []string) map[string]int {
	out := map[string]int{}
	for _, f := range g.members {
		g.mu.Lock()
		for n := range f.sources {
			out[n]++
		}
		for _, c := range f.configs {
			out[c.LocalStreamName]++
		}
		g.mu.Unlock()
	}
	return out
}

// Twelve sources across six members settle on exactly two members each,
// and a second balancer with the same config changes nothing.
func TestDemandHoldsMinCopies(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g, specs := demandGroup()
		c1, end1 := start(t, demandOptions(specs))
		defer end1()
		var names []string
		for i := range 12 {
			name := fmt.Sprintf("cam%d", i)
			names = append(names, name)
			g.m(specs[i%6].Address).publish(name)
		}
		time.Sleep(15 * time.Second)
		synctest.Wait()
		for name, n := range holders(g, names) {
			if n != 2 {
				t.Errorf("%s on %d members, want 2", name, n)
			}
		}
		st := c1.Snapshot()
		if !st.Converged || len(st.Streams) != 12 {
			t.Fatalf("not converged: %+v", st)
		}
		for _, s := range st.Streams {
			if len(s.Desired) != 1 || len(s.Replicas) != 1 {
				t.Errorf("%s: desired %v, cells %v; want one member besides the origin", s.Name, s.Desired, s.Replicas)
			}
		}
		settled := writes(g)
		c2, end2 := start(t, demandOptions(specs))
		time.Sleep(time.Minute)
		synctest.Wait()
		end2()
		_ = c2
		if n := writes(g) - settled; n != 0 {
			t.Errorf("a second balancer made %d changes, want 0", n)
		}
	})
}

// Hot holders bring a third copy; once nobody watches it for two samples
// and scale_down_after has passed, it goes, and never below min_copies;
// a copy with viewers is never removed; load oscillating around the
// threshold adds no copy after copy.
func TestDemandCopiesFollowViewers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g, specs := demandGroup()
		c, end := start(t, demandOptions(specs))
		defer end()
		g.m(specs[0].Address).publish("news")
		time.Sleep(15 * time.Second)
		synctest.Wait()
		st := c.Snapshot()
		if len(st.Streams) != 1 || len(st.Streams[0].Desired) != 1 {
			t.Fatalf("streams %+v", st.Streams)
		}
		second := st.Streams[0].Desired[0]
		sample := func(util float64, viewers map[string]map[string]int) {
			for _, s := range specs {
				u := 0.1
				if s.Name == "a" || s.Name == second {
					u = util
				}
				c.ObserveLoad(s.Name, LoadSample{At: time.Now(), Utilization: u, Viewers: viewers[s.Name]})
			}
		}
		count := func() int { return holders(g, nil)["news"] }

		sample(0.8, nil)
		time.Sleep(time.Second)
		synctest.Wait()
		if n := count(); n != 2 {
			t.Errorf("after one hot sample news is on %d members, want 2 (two samples needed)", n)
		}
		hotAt := time.Now()
		sample(0.8, nil)
		synctest.Wait()
		time.Sleep(100 * time.Millisecond)
		synctest.Wait()
		if n := count(); n != 3 {
			t.Fatalf("after two hot samples news is on %d members, want 3", n)
		}
		var third string
		for _, s := range c.Snapshot().Streams[0].Desired {
			if s != second {
				third = s
			}
		}
		if rs := c.Snapshot().Streams[0].Replicas[third]; !rs.Demand {
			t.Errorf("the third copy on %s is %+v, want a demand copy", third, rs)
		}
		t.Logf("third copy on %s within %v", third, time.Since(hotAt))

		// Load oscillates around the threshold: no fourth copy, as long as
		// the third takes its share (it is not hot).
		for i := range 6 {
			sample([]float64{0.75, 0.65}[i%2], map[string]map[string]int{third: {"news": 5}})
			time.Sleep(5 * time.Second)
			synctest.Wait()
		}
		if n := count(); n != 3 {
			t.Errorf("news on %d members while load oscillates, want 3", n)
		}
		// Viewers stay on the third copy past scale_down_after: kept.
		for range 20 {
			sample(0.2, map[string]map[string]int{third: {"news": 1}})
			time.Sleep(5 * time.Second)
			synctest.Wait()
		}
		if n := count(); n != 3 {
			t.Errorf("a copy with viewers was removed: news on %d members", n)
		}
		// Nobody watches: after two samples it goes, down to min_copies.
		for range 4 {
			sample(0.1, nil)
			time.Sleep(5 * time.Second)
			synctest.Wait()
		}
		if n := count(); n != 2 {
			t.Errorf("news on %d members after nobody watched the demand copy, want 2", n)
		}
		for range 10 {
			sample(0.0, nil)
			time.Sleep(5 * time.Second)
			synctest.Wait()
		}
		if n := count(); n != 2 {
			t.Errorf("news on %d members with no viewers anywhere, want min_copies 2", n)
		}
	})
}

// Adding one member to N moves at most about 1/(N+1) of the streams' sets:
// rendezvous hashing only moves the streams whose set the new member
// enters.
func TestRendezvousMovesFewStreams(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		n := rapid.IntRange(2, 31).Draw(t, "members")
		k := rapid.IntRange(1, min(3, n)).Draw(t, "copies")
		const streams = 2000
		addrs := make([]string, n+1)
		for i := range addrs {
			addrs[i] = fmt.Sprintf("10.%d.%d.%d", i/65536, i/256%256, i%256)
		}
		top := func(name string, members []string) []string {
			ms := slices.Clone(members)
			slices.SortFunc(ms, func(a, b string) int {
				return compareScore(rendezvous(name, b, 1), rendezvous(name, a, 1))
			})
			return ms[:k]
		}
		moved := 0
		for s := range streams {
			name := fmt.Sprintf("stream-%d", s)
			before, after := top(name, addrs[:n]), top(name, addrs)
			if !slices.Contains(after, addrs[n]) && !slices.Equal(before, after) {
				t.Fatalf("%s: set changed %v → %v without the new member", name, before, after)
			}
			if !slices.Equal(before, after) {
				moved++
			}
		}
		// Each stream's set takes the new member with probability k/(n+1).
		want := float64(streams*k) / float64(n+1)
		if slack := 4*math.Sqrt(want) + 10; float64(moved) > want+slack {
			t.Fatalf("%d of %d streams moved with %d members and %d copies, want about %.0f", moved, streams, n+1, k, want)
		}
	})
}

func compareScore(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// A reload that replaces members (new credentials) leaves no ranking made
// of the members it replaced.
func TestRanksFollowTheMemberList(t *testing.T) {
	g, specs := demandGroup()
	c, err := New(demandOptions(specs))
	if err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	c.rankLocked("cam")
	c.mu.Unlock()
	never := func(a, b MemberSpec) bool { return false } // every member starts afresh
	if err := c.SetMembers(g.specs("a", "b", "c", "d", "e", "f"), never); err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, m := range c.rankLocked("cam") {
		if c.byName[m.spec.Name] != m {
			t.Errorf("ranking of cam holds member %s from before the reload", m.spec.Name)
		}
	}
}

// A demand copy is not removed on stale samples: two readings without
// viewers count only while the newest is fresh.
func TestDemandCopyKeptOnStaleSamples(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g, specs := demandGroup()
		c, end := start(t, demandOptions(specs))
		defer end()
		g.m(specs[0].Address).publish("news")
		time.Sleep(15 * time.Second)
		synctest.Wait()
		second := c.Snapshot().Streams[0].Desired[0]
		hot := func() {
			for _, s := range specs {
				u := 0.1
				if s.Name == "a" || s.Name == second {
					u = 0.9
				}
				c.ObserveLoad(s.Name, LoadSample{At: time.Now(), Utilization: u})
			}
		}
		hot()
		hot()
		time.Sleep(time.Second)
		synctest.Wait()
		if n := holders(g, nil)["news"]; n != 3 {
			t.Fatalf("news on %d members after two hot samples, want 3", n)
		}
		// Two readings without viewers, then the load reader goes quiet:
		// past stale_after they are no evidence.
		for _, s := range specs {
			c.ObserveLoad(s.Name, LoadSample{At: time.Now(), Utilization: 0.1})
		}
		for _, s := range specs {
			c.ObserveLoad(s.Name, LoadSample{At: time.Now(), Utilization: 0.1})
		}
		time.Sleep(30 * time.Second) // samples stale (15s), scale_down_after (1m) not yet
		synctest.Wait()
		time.Sleep(2 * time.Minute) // past scale_down_after, with only stale samples
		synctest.Wait()
		if n := holders(g, nil)["news"]; n != 3 {
			t.Errorf("news on %d members: a demand copy was removed on stale samples", n)
		}
	})
}

// camCopied starts a balancer in mode demand over demandGroup with
// resync_interval resync, publishes cam on a and lets the first resync
// place its copy. copies returns the members holding a copy of cam.
func camCopied(t *testing.T, resync time.Duration) (g *fakeGroup, specs []MemberSpec, c *Controller, end func(), copies func() []MemberSpec) {
	g, specs = demandGroup()
	opts := demandOptions(specs)
	opts.ResyncInterval = resync
	c, end = start(t, opts)
	g.m(specs[0].Address).publish("cam")
	c.TriggerResync()
	time.Sleep(5 * time.Second)
	synctest.Wait()
	copies = func() []MemberSpec {
		var with []MemberSpec
		for _, s := range specs[1:] {
			if _, ok := g.m(s.Address).replicas()["cam"]; ok {
				with = append(with, s)
			}
		}
		return with
	}
	return g, specs, c, end, copies
}

func specNames(ss []MemberSpec) []string {
	var out []string
	for _, s := range ss {
		out = append(out, s.Name)
	}
	return out
}

// In mode demand, pausing the member that holds a stream's copy has the
// next member in its ranking pull one at once, not at the next resync;
// the paused member's copy stays.
func TestDemandCopyMovesAtOnceWhenItsHolderIsPaused(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		_, _, c, end, copies := camCopied(t, time.Minute)
		defer end()
		first := copies()
		if len(first) != 1 {
			t.Fatalf("copies of cam on %v; want one", specNames(first))
		}
		holder := first[0].Name
		c.mu.Lock()
		lastResync := c.resync.At
		c.mu.Unlock()

		if err := c.Pause(holder); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Second)
		synctest.Wait()
		c.mu.Lock()
		resynced := !c.resync.At.Equal(lastResync)
		c.mu.Unlock()
		if resynced {
			t.Fatal("a resync ran before the check; it would place the copy itself")
		}
		with := specNames(copies())
		if len(with) != 2 || !slices.Contains(with, holder) {
			t.Errorf("a second after %s was paused, copies of cam are on %v; want %s's and one more", holder, with, holder)
		}
	})
}

// A member that held a copy goes down and comes back empty (restarted):
// the copy placed elsewhere meanwhile, watched by nobody, stands in until
// the returned member's own copy streams, so the stream never has fewer
// than min_copies holders, even while the returned member is slow to list
// and its pull does not connect, and whatever its replica's event says.
// Once a listing shows its copy streaming, the stand-in goes.
func TestDemandCopyStandsInUntilAReturnedMemberStreamsItsOwn(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g, specs, c, end, copies := camCopied(t, time.Hour)
		defer end()
		idle := func() { // every member idle, nobody watching anything
			for _, s := range specs {
				c.ObserveLoad(s.Name, LoadSample{At: time.Now(), Utilization: 0.1})
			}
		}
		first := copies()
		if len(first) != 1 {
			t.Fatalf("copies of cam on %v; want one", specNames(first))
		}
		name := first[0].Name
		x := g.m(first[0].Address)
		x.setDown(true)
		g.mu.Lock()
		clear(x.configs) // it restarts and forgets its pulls
		x.cut = true     // and cannot reach the origin for a while
		g.mu.Unlock()
		c.TriggerResync() // finds it down
		deadline := time.Now().Add(time.Minute)
		for len(copies()) == 0 {
			if time.Now().After(deadline) {
				t.Fatal("no copy of cam was placed while its holder was down")
			}
			time.Sleep(100 * time.Millisecond)
		}
		standIn := specNames(copies())
		time.Sleep(2 * time.Minute) // the copy is older than scale_down_after
		idle()
		idle()
		synctest.Wait()

		x.setLatency("listConfig", 3*time.Second)
		x.setDown(false)
		// Probes back off while it is down: a step of a second until it is
		// found up, then of 50 ms until it holds its copy.
		step, deadline := time.Second, time.Now().Add(2*time.Hour)
		for !slices.Contains(specNames(copies()), name) {
			if !slices.Equal(specNames(copies()), standIn) {
				t.Fatalf("%s is %s and copies of cam are on %v; want %v until it pulls", name, memberState(c, name), specNames(copies()), standIn)
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s is %s and copies of cam are on %v; want one on it", name, memberState(c, name), specNames(copies()))
			}
			if memberState(c, name) == MemberUp {
				step = 50 * time.Millisecond
			}
			idle()
			time.Sleep(step)
			synctest.Wait()
		}
		// Its replica's inStreamCreated, forged or early, is not a listing:
		// the stand-in stays when every stream is planned again.
		uri := x.replicas()["cam"]
		c.HandleStreamEvent(receiver.StreamEvent{Type: "inStreamCreated", Name: "cam", IP: first[0].Address,
			Peer: netip.MustParseAddr(first[0].Address), PullURI: uri, Vars: map[string]string{tagGroup: "g1", tagOrigin: specs[0].Address}})
		synctest.Wait()
		other := specs[len(specs)-1].Name
		if other == name || other == standIn[0] {
			other = specs[len(specs)-2].Name
		}
		if err := c.Pause(other); err != nil { // has every stream planned again
			t.Fatal(err)
		}
		time.Sleep(time.Second)
		synctest.Wait()
		if got := specNames(copies()); !slices.Contains(got, standIn[0]) {
			t.Fatalf("copies of cam are on %v after an event said %s's streams; want %s's to stay until a listing shows it", got, name, standIn[0])
		}
		if err := c.Resume(other); err != nil {
			t.Fatal(err)
		}

		// A resync's listing of x shows its copy not streaming. (Without the
		// latency: a listing waiting for another of the same member blocks
		// on a mutex, which stops the bubble's clock.)
		x.setLatency("listConfig", 0)
		lists := x.count("listConfig")
		c.TriggerResync()
		time.Sleep(5 * time.Second)
		idle()
		synctest.Wait()
		if x.count("listConfig") == lists {
			t.Fatalf("%s was not listed by the resync", name)
		}
		if got := specNames(copies()); !slices.Contains(got, standIn[0]) {
			t.Fatalf("copies of cam are on %v while %s's does not stream; want %s's to stay", got, name, standIn[0])
		}

		g.mu.Lock()
		x.cut = false
		g.mu.Unlock()
		c.TriggerResync()
		deadline = time.Now().Add(time.Minute)
		for !slices.Equal(specNames(copies()), []string{name}) {
			if time.Now().After(deadline) {
				t.Fatalf("copies of cam are on %v after %s's streams; want it only", specNames(copies()), name)
			}
			idle()
			time.Sleep(time.Second)
			synctest.Wait()
			c.TriggerResync()
		}
	})
}

// A copy stands in only on a member that is up: when the member first in
// a stream's ranking goes down with its copy, and the next one's new pull
// does not stream yet, a watched-before copy further down the ranking
// stays, not the down member's, which serves nobody.
func TestDemandStandInIsOnAMemberUp(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g, specs, c, end, copies := camCopied(t, time.Hour)
		defer end()
		byName := map[string]MemberSpec{}
		for _, s := range specs {
			byName[s.Name] = s
		}
		c.mu.Lock()
		var rank []string
		for _, m := range c.rankLocked("cam") {
			if m.spec.Address != specs[0].Address {
				rank = append(rank, m.spec.Name)
			}
		}
		c.mu.Unlock()
		if got := specNames(copies()); !slices.Equal(got, rank[:1]) {
			t.Fatalf("copies of cam on %v; want on %s, first in its ranking %v", got, rank[0], rank)
		}
		x, y, z := g.m(byName[rank[0]].Address), g.m(byName[rank[1]].Address), g.m(byName[rank[2]].Address)
		sample := func(viewersOnZ int) {
			for _, s := range specs {
				ls := LoadSample{At: time.Now(), Utilization: 0.1}
				if s.Name == rank[2] {
					ls.Viewers = map[string]int{"cam": viewersOnZ}
				}
				c.ObserveLoad(s.Name, ls)
			}
		}
		// z holds a copy its viewers keep.
		z.addConfig("cam", x.replicas()["cam"], map[string]string{tagGroup: "g1", tagOrigin: specs[0].Address})
		sample(1)
		sample(1)
		c.TriggerResync()
		time.Sleep(5 * time.Second)
		synctest.Wait()
		if got, want := specNames(copies()), []string{rank[0], rank[2]}; !slices.Equal(got, want) && !slices.Equal(got, []string{want[1], want[0]}) {
			t.Fatalf("copies of cam on %v; want on %s and %s", got, rank[0], rank[2])
		}

		// x goes down, y's pull cannot connect, nobody watches z's copy.
		g.mu.Lock()
		y.cut = true
		g.mu.Unlock()
		x.setDown(true)
		sample(0)
		sample(0)
		c.TriggerResync()
		time.Sleep(5 * time.Second)
		synctest.Wait()
		if st := memberState(c, rank[0]); st != MemberDown {
			t.Fatalf("%s is %s, want down", rank[0], st)
		}
		if _, ok := y.replicas()["cam"]; !ok {
			t.Fatalf("%s did not pull cam when %s went down", rank[1], rank[0])
		}
		if _, ok := z.replicas()["cam"]; !ok {
			t.Errorf("%s's copy of cam went while %s is down and %s's does not stream", rank[2], rank[0], rank[1])
		}
	})
}
