package controller

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// fresh returns the status document as a build that recomputes every row
// would give it.
func fresh(c *Controller) Status {
	c.mu.Lock()
	c.allDirtyLocked()
	c.mu.Unlock()
	c.rows.mu.Lock()
	c.rows.last = nil
	c.rows.mu.Unlock()
	return c.Snapshot()
}

// cached returns the status document from the rows kept since the last
// build, recomputing only those marked dirty or timed.
func cached(c *Controller) Status {
	c.rows.mu.Lock()
	c.rows.last = nil
	c.rows.mu.Unlock()
	return c.Snapshot()
}

// Whatever happens to the group, the document built from the kept rows is
// the one a full rebuild gives: every change marks the rows it touches.
func TestStatusRowsFollowEveryChange(t *testing.T) {
	for seed := range uint64(4) {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				rng := rand.New(rand.NewPCG(seed, 7))
				h := newHarness(t, func(o *Options) { o.ResyncInterval = 7 * time.Second; o.TeardownGrace = 3 * time.Second })
				defer h.end()
				addrs := []string{addrA, addrB, addrC}
				names := []string{"a", "b", "c"}
				for step := range 120 {
					i := rng.IntN(3)
					f := h.g.m(addrs[i])
					name := fmt.Sprintf("s%d", rng.IntN(8))
					var did string
					switch rng.IntN(10) {
					case 0, 1:
						f.publish(name)
						h.event("inStreamCreated", addrs[i], name)
						did = "publish " + name + " on " + names[i]
					case 2:
						f.unpublish(name)
						h.event("inStreamClosed", addrs[i], name)
						did = "unpublish " + name + " on " + names[i]
					case 3:
						f.publish(name) // no event: a resync finds it
						did = "publish quietly " + name + " on " + names[i]
					case 4:
						f.setDown(rng.IntN(2) == 0)
						did = "toggle down " + names[i]
					case 5:
						f.g.mu.Lock()
						f.cut = !f.cut
						f.g.mu.Unlock()
						did = "toggle cut " + names[i]
					case 6:
						if rng.IntN(2) == 0 {
							_ = h.c.Pause(names[i])
						} else {
							_ = h.c.Resume(names[i])
						}
						did = "pause or resume " + names[i]
					case 7:
						f.addConfig(name, "rtmp://10.9.9.9/live/"+name, nil)
						did = "foreign config " + name + " on " + names[i]
					case 8:
						// A reload: the same members, or one of them given
						// replicas no more (or again).
						specs := memberSpecs(h.c)
						did = "reload the same members"
						if rng.IntN(2) == 0 {
							specs[i].Replicate = !specs[i].Replicate
							did = fmt.Sprintf("reload with %s replicating %v", names[i], specs[i].Replicate)
						}
						if err := h.c.SetMembers(specs, func(a, b MemberSpec) bool { return true }); err != nil {
							t.Fatal(err)
						}
					default:
						did = "wait"
					}
					h.settle(time.Duration(rng.IntN(4000)) * time.Millisecond)
					got, want := cached(h.c), fresh(h.c)
					if diff := cmp.Diff(want, got, cmpopts.IgnoreUnexported(StreamStatus{})); diff != "" {
						t.Fatalf("step %d (%s): kept rows differ from a full rebuild (-want +got):\n%s", step, did, diff)
					}
				}
			})
		})
	}
}

// A page of the document, attention first, then the next by its cursor.
func TestStatusQueryPagesAndFilters(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, nil)
		defer h.end()
		for i := range 5 {
			name := fmt.Sprintf("s%d", i)
			h.announce(addrA, name)
		}
		h.announce(addrA, "odd name")
		h.settle(3 * time.Second)
		p1 := h.c.Status(StatusQuery{Attention: true, Limit: 2})
		if len(p1.Streams) != 2 || p1.Streams[0].Name != "odd name" || p1.NextCursor == "" {
			t.Fatalf("first page %+v, want the unreplicable name first and a cursor", p1.Streams)
		}
		if p1.Summary.Streams != 6 || p1.Summary.Attention != 1 || p1.Summary.Replicas[StateUnreplicable] != 2 {
			t.Errorf("summary %+v", p1.Summary)
		}
		p2 := h.c.Status(StatusQuery{Attention: true, Limit: 2, Cursor: p1.NextCursor})
		if len(p2.Streams) != 2 || p2.Streams[0].Name == p1.Streams[1].Name {
			t.Errorf("second page %+v after %+v", p2.Streams, p1.Streams)
		}
		st := h.c.Status(StatusQuery{State: StateUnreplicable})
		if len(st.Streams) != 1 {
			t.Errorf("state filter: %+v", st.Streams)
		}
		st = h.c.Status(StatusQuery{Stream: "s[12]", Member: "b"})
		if len(st.Streams) != 2 || len(st.Streams[0].Replicas) != 1 {
			t.Errorf("glob and member filters: %+v", st.Streams)
		}
	})
}

// In a converged group no row is recomputed by a read, and each kind of
// change reaches the rows it touches.
func TestStatusRowsOfAConvergedGroup(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, func(o *Options) { o.TeardownGrace = 3 * time.Second })
		defer h.end()
		for i := range 4 {
			name := fmt.Sprintf("s%d", i)
			h.announce(addrA, name)
		}
		h.settle(5 * time.Second)
		if st := fresh(h.c); !st.Converged {
			t.Fatalf("not converged: %+v", st)
		}
		h.c.mu.Lock()
		timed := len(h.c.rows.timed)
		h.c.mu.Unlock()
		if timed != 0 {
			t.Errorf("%d rows recomputed at every read in a converged group, want 0", timed)
		}
		check := func(what string) {
			t.Helper()
			got, want := cached(h.c), fresh(h.c)
			if diff := cmp.Diff(want, got, cmpopts.IgnoreUnexported(StreamStatus{})); diff != "" {
				t.Errorf("after %s: kept rows differ from a full rebuild (-want +got):\n%s", what, diff)
			}
		}
		h.g.m(addrA).publish("s9") // found by the next resync, no event
		h.settle(31 * time.Second)
		check("a source found by a resync")
		h.g.m(addrA).unpublish("s0")
		h.event("inStreamClosed", addrA, "s0")
		h.settle(10 * time.Second)
		check("a source ended and its replicas removed")
		_ = h.c.Pause("c")
		h.settle(time.Second)
		check("a pause")
		_ = h.c.Resume("c")
		h.settle(time.Second)
		check("a resume")
		h.g.m(addrB).setDown(true)
		h.settle(31 * time.Second)
		check("a member down")
		h.g.m(addrB).setDown(false)
		h.settle(40 * time.Second)
		check("a member back")
		b := h.g.m(addrB)
		b.g.mu.Lock()
		for id, cfg := range b.configs {
			if cfg.LocalStreamName == "s1" {
				delete(b.configs, id) // removed by hand
			}
		}
		b.g.mu.Unlock()
		h.settle(31 * time.Second)
		check("a replica removed by someone else and pulled again")
		b.g.mu.Lock()
		b.cut = true // b's replicas stop streaming; only a listing shows it
		b.g.mu.Unlock()
		h.settle(31 * time.Second)
		check("replicas no longer streaming")
	})
}

// The document asked for encoding marshals to the same JSON as the one
// with every map built.
func TestStatusEncodingIsTheSameJSON(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, nil)
		defer h.end()
		for _, name := range []string{"s1", "s2", "odd name"} {
			h.announce(addrA, name)
		}
		h.g.m(addrC).setDown(true)
		h.settle(35 * time.Second)
		plain, err := json.Marshal(h.c.Status(StatusQuery{}))
		if err != nil {
			t.Fatal(err)
		}
		kept, err := json.Marshal(h.c.Status(StatusQuery{Encoding: true}))
		if err != nil {
			t.Fatal(err)
		}
		if string(plain) != string(kept) {
			t.Errorf("encoded document differs:\n%s\n%s", plain, kept)
		}
		var buf strings.Builder
		if err := h.c.Status(StatusQuery{Encoding: true}).WriteJSON(&buf); err != nil {
			t.Fatal(err)
		}
		if buf.String() != string(plain)+"\n" {
			t.Errorf("WriteJSON differs from encoding/json:\n%s\n%s", buf.String(), plain)
		}
	})
}

// A reload that leaves the members as they were rebuilds no row; one that
// changes what a row shows of them rebuilds every row.
func TestReloadOfTheSameMembersKeepsRows(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, nil)
		defer h.end()
		h.announce(addrA, "s")
		h.settle(time.Second)
		_ = h.c.Snapshot()
		specs := memberSpecs(h.c)
		always := func(a, b MemberSpec) bool { return true }
		allDirty := func() bool {
			h.c.mu.Lock()
			defer h.c.mu.Unlock()
			return h.c.rows.all
		}
		if allDirty() {
			t.Fatal("every row is to be rebuilt after a build")
		}
		if err := h.c.SetMembers(specs, always); err != nil {
			t.Fatal(err)
		}
		if allDirty() {
			t.Error("a reload of the same members has every row rebuilt")
		}
		specs[1].Replicate = false
		if err := h.c.SetMembers(specs, always); err != nil {
			t.Fatal(err)
		}
		if !allDirty() {
			t.Error("a reload that stops a member's replicas left the rows as they were")
		}
	})
}

// memberSpecs returns the specs of c's members, in order.
func memberSpecs(c *Controller) []MemberSpec {
	c.mu.Lock()
	defer c.mu.Unlock()
	var specs []MemberSpec
	for _, m := range c.members {
		specs = append(specs, m.spec)
	}
	return specs
}

// A reload that makes another member the host (the sidecar's local EMS)
// reaches members it keeps: events of unknown origin go to the new host.
func TestReloadMovesTheHost(t *testing.T) {
	g := newFakeGroup(addrA, addrB)
	specs := g.specs("a", "b")
	specs[0].Host = true
	c, err := New(Options{Group: "g1", Members: specs})
	if err != nil {
		t.Fatal(err)
	}
	specs[0].Host, specs[1].Host = false, true
	if err := c.SetMembers(specs, func(a, b MemberSpec) bool { return true }); err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	host := "none"
	if h := c.hostLocked(); h != nil {
		host = h.spec.Name
	}
	if host != "b" {
		t.Errorf("host after the reload = %s, want b", host)
	}
}

// A reload that changes the weight of a member it keeps reaches that
// member: the streams' rankings of mode demand follow the new weight.
func TestReloadTakesTheNewWeight(t *testing.T) {
	g := newFakeGroup(addrA, addrB, addrC)
	specs := g.specs("a", "b", "c")
	c, err := New(Options{Group: "g1", Members: specs})
	if err != nil {
		t.Fatal(err)
	}
	first := func() map[string]int {
		c.mu.Lock()
		defer c.mu.Unlock()
		n := map[string]int{}
		for i := range 100 {
			n[c.rankLocked(fmt.Sprintf("s%03d", i))[0].spec.Name]++
		}
		return n
	}
	if n := first(); n["c"] > 60 {
		t.Fatalf("c ranks first for %d of 100 streams at weight 1, want about a third", n["c"])
	}
	specs[2].Weight = 1000
	if err := c.SetMembers(specs, func(a, b MemberSpec) bool { return true }); err != nil {
		t.Fatal(err)
	}
	if n := first(); n["c"] < 95 {
		t.Errorf("c ranks first for %d of 100 streams at weight 1000, want nearly all", n["c"])
	}
	c.mu.Lock()
	all := c.rows.all
	c.mu.Unlock()
	if !all {
		t.Error("the rows were kept after a reload that changed a weight")
	}
}
