package controller

import (
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestDiffAllQueuesWhatEachMembersDiffQueues checks that a resync's diff,
// which plans on several members at once, queues on every member the same
// names as planning that member alone does: here replicas missing on some
// members, replicas of streams that ended, and replicas held everywhere,
// in mode all and in mode demand.
func TestDiffAllQueuesWhatEachMembersDiffQueues(t *testing.T) {
	for _, mode := range []string{ModeAll, ModeDemand} {
		t.Run(mode, func(t *testing.T) { testDiffAll(t, mode) })
	}
}

func testDiffAll(t *testing.T, mode string) {
	const members, streams = 6, 300
	names := func(member int) []string {
		var out []string
		for i := range streams {
			switch {
			case member == 0 && i%10 == 9:
				// Not a source: the replicas of it have lost their origin's stream.
			case member > 0 && i%(member+2) == 0:
				// A replica this member is missing.
			default:
				out = append(out, fmt.Sprintf("stream-%03d", i))
			}
		}
		return out
	}
	build := func() *Controller {
		specs := staticGroup(members, names)
		o := Options{Members: specs}
		if mode == ModeDemand {
			o = demandOptions(specs)
			o.Group = "default" // the group staticGroup's replicas are tagged with
		}
		c, err := New(o)
		if err != nil {
			t.Fatal(err)
		}
		c.Resync(t.Context())
		for _, m := range c.members {
			q := m.work.queue
			q.mu.Lock()
			q.items, q.urgent = nil, nil
			clear(q.dirty)
			q.mu.Unlock()
		}
		return c
	}
	queued := func(c *Controller) map[string][]string {
		out := map[string][]string{}
		for _, m := range c.members {
			q := m.work.queue
			q.mu.Lock()
			out[m.spec.Name] = slices.Sorted(maps.Keys(q.dirty))
			q.mu.Unlock()
		}
		return out
	}

	all, each := build(), build()
	now := time.Now()
	all.mu.Lock()
	all.diffAllLocked(now)
	all.mu.Unlock()
	each.mu.Lock()
	for _, m := range each.members {
		each.diffLocked(m, now)
	}
	each.mu.Unlock()

	got, want := queued(all), queued(each)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("names queued by the diff of every member (-each member alone +all at once):\n%s", diff)
	}
	total := 0
	for _, names := range want {
		total += len(names)
	}
	if total == 0 {
		t.Fatal("no member has anything queued: the group has nothing to diff")
	}
}
