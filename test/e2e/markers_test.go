package e2e

import (
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"streamlb/internal/app"
	"streamlb/internal/controller"
)

// The helpers here are the positive markers a test waits for before it
// asserts that something did not happen: work handed out and finished, a
// resync begun after a given time and finished, an entry in the journal.

// histCount returns the number of observations of histogram family in reg.
func histCount(t *testing.T, reg prometheus.Gatherer, family string) uint64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var n uint64
	found := false
	for _, mf := range mfs {
		if mf.GetName() != family {
			continue
		}
		found = true
		for _, m := range mf.GetMetric() {
			n += m.GetHistogram().GetSampleCount()
		}
	}
	if !found {
		t.Fatalf("no series %s in the registry", family)
	}
	return n
}

// workIdle waits until every replica the controller queued has been worked
// on: each add to a member's queue is handed to one work call, which is
// timed when it ends, so the two counts meet only when no work is waiting
// or in flight (keys waiting out a delay, such as a teardown grace, are
// counted when their delay ends).
func workIdle(t *testing.T, a *app.App, within time.Duration) {
	t.Helper()
	reg := a.Registry()
	if adds := counterSum(t, reg, "streamlb_workqueue_adds_total", nil); adds == 0 && histCount(t, reg, "streamlb_workqueue_work_duration_seconds") > 0 {
		t.Fatal("work done but no adds counted: streamlb_workqueue_adds_total is not what workIdle takes it for")
	}
	eventually(t, within, "the controller's work queues drained", func() bool {
		adds := counterSum(t, reg, "streamlb_workqueue_adds_total", nil)
		done := histCount(t, reg, "streamlb_workqueue_work_duration_seconds")
		return uint64(adds) == done && a.Controller().Snapshot().QueueDepth == 0
	})
}

// resyncedSince asks for a resync and waits until one that began after at
// has finished and the work it queued is done.
func resyncedSince(t *testing.T, a *app.App, at time.Time, within time.Duration) {
	t.Helper()
	ctl := a.Controller()
	ctl.TriggerResync()
	last := time.Now()
	eventually(t, within, "a resync begun after "+at.Format(time.StampMilli), func() bool {
		r := ctl.Snapshot().LastResync
		if r != nil && r.At.After(at) {
			return true
		}
		if time.Since(last) > 200*time.Millisecond {
			ctl.TriggerResync() // one asked for while another ran may have been folded into it
			last = time.Now()
		}
		return false
	})
	workIdle(t, a, within)
}

// journal returns the controller's journal entries of kind (all kinds when
// empty) about stream (any when empty).
func journal(a *app.App, kind, stream string) []controller.Entry {
	var out []controller.Entry
	var since uint64
	for {
		page, _ := a.Controller().Journal(since, 1000)
		for _, e := range page.Events {
			if (kind == "" || e.Kind == kind) && (stream == "" || e.Stream == stream) {
				out = append(out, e)
			}
		}
		if len(page.Events) == 0 || page.Next == since {
			return out
		}
		since = page.Next
	}
}

// journalEntry waits for the first journal entry of kind about stream.
func journalEntry(t *testing.T, a *app.App, kind, stream string, within time.Duration) controller.Entry {
	t.Helper()
	var e controller.Entry
	eventually(t, within, "a "+kind+" entry for "+stream+" in the journal", func() bool {
		es := journal(a, kind, stream)
		if len(es) == 0 {
			return false
		}
		e = es[0]
		return true
	})
	return e
}

// kinds lists the kinds of entries, for failure messages.
func kinds(es []controller.Entry) []string {
	var out []string
	for _, e := range es {
		out = append(out, e.Kind+":"+e.Member+"/"+e.Stream)
	}
	return slices.Compact(out)
}
