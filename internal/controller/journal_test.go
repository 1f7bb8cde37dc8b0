package controller

import (
	"fmt"
	"testing"
	"testing/synctest"
	"time"
)

// The journal records transitions where they happen, with their time and
// in order, whether or not anyone reads it.
func TestJournalRecordsTransitionsAsTheyHappen(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, nil)
		defer h.end()
		p, wait := h.c.Journal(0, 0)
		from := p.Next
		published := time.Now()
		h.announce(addrA, "cam")
		select {
		case <-wait:
		default:
			h.settle(10 * time.Millisecond)
			select {
			case <-wait:
			default:
				t.Fatal("the journal's wait channel was not closed by a new entry")
			}
		}
		h.settle(5 * time.Second)
		downAt := time.Now()
		h.g.m(addrC).setDown(true)
		h.settle(40 * time.Second)

		p, _ = h.c.Journal(from, 0)
		var got []string
		for _, e := range p.Events {
			got = append(got, fmt.Sprintf("%s %s %s", e.Kind, e.Member, e.Stream))
			switch e.Kind {
			case EntrySourceAppeared, EntryReplicaPulled:
				if d := e.At.Sub(published); d < 0 || d > time.Second {
					t.Errorf("%s at %v, %v after the stream was published, want within 1s", e.Kind, e.At, d)
				}
			case EntryMemberDown:
				if d := e.At.Sub(downAt); d < 0 || d > 31*time.Second {
					t.Errorf("member_down at +%v after the member went down, want by the next resync", d)
				}
			}
		}
		want := []string{"source_appeared a cam", "replica_pulled b cam", "replica_pulled c cam", "member_down c "}
		if !containsInOrder(got, want) {
			t.Errorf("journal %q, want %q in this order", got, want)
		}
		for i := 1; i < len(p.Events); i++ {
			if p.Events[i].Seq != p.Events[i-1].Seq+1 || p.Events[i].At.Before(p.Events[i-1].At) {
				t.Errorf("entries %d and %d out of order: %+v, %+v", i-1, i, p.Events[i-1], p.Events[i])
			}
		}
	})
}

// containsInOrder reports whether want occurs in got as a subsequence,
// where the two pulls may come in either order.
func containsInOrder(got, want []string) bool {
	seen := map[string]int{}
	for i, g := range got {
		seen[g] = i + 1
	}
	last := 0
	for i, w := range want {
		at := seen[w]
		if at == 0 {
			return false
		}
		if i != 2 && at < last { // the two pulls race
			return false
		}
		last = max(last, at)
	}
	return true
}

// The ring keeps the newest entries; a reader from before them learns
// what was dropped.
func TestJournalRingIsBounded(t *testing.T) {
	j := newJournal(3)
	for i := range 5 {
		j.add(Entry{Kind: EntryReload, Detail: fmt.Sprint(i)})
	}
	p, _ := j.read(0, 0)
	if p.Oldest != 3 || p.Next != 5 || len(p.Events) != 3 || p.Events[0].Seq != 3 {
		t.Errorf("read(0) = %+v, want entries 3..5, oldest 3", p)
	}
	p, _ = j.read(3, 1)
	if len(p.Events) != 1 || p.Events[0].Seq != 4 || p.Next != 4 {
		t.Errorf("read(3, limit 1) = %+v, want entry 4 and next 4", p)
	}
	p, _ = j.read(9, 0)
	if len(p.Events) != 0 || p.Next != 5 {
		t.Errorf("read(9) = %+v, want nothing and next 5", p)
	}
}
