package controller

import (
	"fmt"
	"testing"
	"testing/synctest"
	"time"
)

// A reload's tunables apply to the running controller: more workers at
// once, fewer after their work; new scope patterns from the next decision.
func TestSetTunablesAppliesLive(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, nil)
		defer h.end()
		workers := func(name string) int {
			h.c.mu.Lock()
			defer h.c.mu.Unlock()
			return int(h.c.byName[name].run.workers.Load())
		}
		h.c.SetTunables(Tunables{MaxInflight: 16})
		if got := workers("b"); got != 16 {
			t.Errorf("b has %d workers after raising max_inflight to 16", got)
		}
		h.c.SetTunables(Tunables{MaxInflight: 2, Exclude: []string{"tmp_*"}})
		for i := range 40 {
			name := fmt.Sprintf("s%d", i)
			h.announce(addrA, name)
		}
		h.announce(addrA, "tmp_x")
		h.settle(5 * time.Second)
		if got := workers("b"); got != 2 {
			t.Errorf("b has %d workers after lowering max_inflight to 2 and some work", got)
		}
		if n := len(h.g.m(addrB).replicas()); n != 40 {
			t.Errorf("b holds %d replicas, want 40 (tmp_x excluded)", n)
		}
		wantReplica(t, h.g.m(addrB), "tmp_x", "")
	})
}

// A reload's resync_interval takes effect at once, also while a member is
// down (its probes follow it).
func TestSetTunablesResyncInterval(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, nil) // resync every 30s
		defer h.end()
		h.g.m(addrC).setDown(true)
		h.settle(31 * time.Second)
		before := h.g.m(addrA).count("listConfig")
		h.c.SetTunables(Tunables{ResyncInterval: 5 * time.Second})
		h.settle(21 * time.Second)
		if n := h.g.m(addrA).count("listConfig") - before; n < 4 {
			t.Errorf("%d listings of a in 21s after resync_interval became 5s, want at least 4", n)
		}
	})
}
