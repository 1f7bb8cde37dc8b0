package bench

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// resyncCount and resyncSum are the balancer's resync duration histogram;
// cpuSeconds and gcCycles its process's CPU time and completed collections.
const (
	resyncCount = "streamlb_resync_duration_seconds_count"
	resyncSum   = "streamlb_resync_duration_seconds_sum"
	cpuSeconds  = "process_cpu_seconds_total"
	gcCycles    = "go_gc_duration_seconds_count"
	resyncLock  = "streamlb_resync_lock_seconds"
)

// quiesce waits until the members answer no call (but for load polling)
// and post no event for 2 s: the balancer has nothing left to do. A pull
// has the balancer list its member's inbound streams a second later, to
// see it streaming; a quiet second alone let the last of those land in
// the resync measured next, as a call beyond its two a member. In
// mode demand the members' events are left out: at 5,000 streams the
// origin's queue of outStreamCreated events (one per copy pulled from it,
// which the balancer ignores) drains for minutes, while the calls show
// the balancer idle.
func quiesce(ctx context.Context, l *liveGroup) error {
	events := l.set.copies == 0
	var prev int64 = -1
	stable := 0
	return poll(ctx, 2*time.Minute, 250*time.Millisecond, "a quiet group", l.b.proc, func(ctx context.Context) (bool, error) {
		all, err := l.g.allStats(ctx)
		if err != nil {
			return false, err
		}
		var n int64
		for _, s := range all {
			n += s.workCalls()
			if events {
				n += s.EventsSent + s.EventsFail + s.EventsDrop
			}
		}
		if n == prev {
			stable++
		} else {
			stable = 0
		}
		prev = n
		return stable >= 8, nil
	})
}

// resync reloads the balancer of the converged group, which makes it run
// one resync, and reads the resync's duration from its metrics and the
// calls it made from the members (load polling's aside).
func (r *runner) resync(ctx context.Context, l *liveGroup) error {
	if err := quiesce(ctx, l); err != nil {
		return err
	}
	if err := l.g.collect(ctx); err != nil {
		return err
	}
	m0, err := l.b.metrics(ctx)
	if err != nil {
		return err
	}
	before, err := l.g.allStats(ctx)
	if err != nil {
		return err
	}
	r.progress("resync: one pass over %d streams on %d members", r.o.Streams, r.o.Members)
	r.prof.cpu("resync", map[string]string{"balancer": l.b.debug, "emsim": l.g.debug})
	if err := l.b.reload(); err != nil {
		return err
	}
	// Wait for the resync's listings at the members, then for its end in
	// the metrics, scraped once a second: a scrape rebuilds the status rows
	// the resync changed (at 50,000 streams, scrapes every 100 ms took
	// 0.8 s of the balancer's CPU during the resync they waited for).
	if err := awaitListings(ctx, l, before); err != nil {
		return err
	}
	var m1 map[string]float64
	err = poll(ctx, time.Minute, time.Second, "the resync's end", l.b.proc, func(ctx context.Context) (bool, error) {
		m, err := l.b.metrics(ctx)
		if err != nil {
			return false, err
		}
		m1 = m
		return sumMetric(m, resyncCount) > sumMetric(m0, resyncCount), nil
	})
	if err != nil {
		return err
	}
	after, err := l.g.allStats(ctx)
	if err != nil {
		return err
	}
	r.prof.wait()
	var calls int64
	byCommand := map[string]int64{}
	for i := range after {
		calls += after[i].workCalls() - before[i].workCalls()
		for cmd, n := range after[i].Calls {
			if d := n - before[i].Calls[cmd]; d != 0 && !slices.Contains(loadCalls, cmd) {
				byCommand[cmd] += d
			}
		}
	}
	r.res.ResyncSeconds = Seconds(sumMetric(m1, resyncSum) - sumMetric(m0, resyncSum))
	r.res.ResyncCallsPerMember = Rate(float64(calls) / float64(len(after)))
	r.res.ResyncCPUSeconds = Seconds(sumMetric(m1, cpuSeconds) - sumMetric(m0, cpuSeconds))
	r.res.ResyncGCCycles = int64(sumMetric(m1, gcCycles) - sumMetric(m0, gcCycles))
	r.res.ResyncLockMS = Millis(sumMetric(m1, resyncLock) * 1000)
	var cmds []string
	for _, cmd := range slices.Sorted(maps.Keys(byCommand)) {
		cmds = append(cmds, fmt.Sprintf("%s %d", cmd, byCommand[cmd]))
	}
	r.progress("resync: %.3f s, %.2f calls per member (%s); the balancer's CPU %.2f s, %d collections; its longest hold of the lock %.1f ms",
		float64(r.res.ResyncSeconds), float64(r.res.ResyncCallsPerMember), strings.Join(cmds, ", "), float64(r.res.ResyncCPUSeconds), r.res.ResyncGCCycles, float64(r.res.ResyncLockMS))
	return nil
}

// recovery restarts the converged group's balancer with a short resync
// interval, then, just after one of its resyncs, restarts the last member
// empty and measures until it holds as many replicas again as before (every
// stream in mode all, its share in mode demand).
func (r *runner) recovery(ctx context.Context, l *liveGroup) error {
	o := r.o
	l.stopBalancer(r)
	set := l.set
	set.resyncInterval = o.RecoveryResync
	b, err := startBalancer(ctx, o.Exe, r.dir, l.listen, l.g.ips, set, r.prof)
	if err != nil {
		return err
	}
	l.b = b
	r.res.RecoveryResyncIntervalS = Seconds(o.RecoveryResync.Seconds())
	before, err := l.g.allStats(ctx)
	if err != nil {
		return err
	}
	if err := awaitListings(ctx, l, before); err != nil {
		return err
	}
	victim := len(l.g.ips) - 1
	held := before[victim].PullConfigs
	if held == 0 {
		return fmt.Errorf("member %s holds no replica to recover", l.g.ips[victim])
	}
	r.progress("recovery: member %s restarts empty just after a resync (resync_interval %v)", l.g.ips[victim], o.RecoveryResync)
	start := time.Now()
	if err := l.g.restart(ctx, victim); err != nil {
		return err
	}
	after, err := r.awaitReplicas(ctx, l, []int{victim}, held)
	if err != nil {
		return err
	}
	r.prof.heap("recovery-balancer", l.b.debug)
	r.prof.metrics("recovery", l.b.listen)
	r.res.RecoverySeconds = Seconds(float64(after[victim].LastPullNS-start.UnixNano()) / 1e9)
	r.progress("recovery: %.3f s", float64(r.res.RecoverySeconds))
	return nil
}

// awaitListings waits until every member has answered a listConfig since
// before was taken: a resync has listed the whole group. A member seen
// listed is not asked again, and the members are asked every 20 ms, not
// more often: at 50,000 streams these requests would otherwise take CPU
// from the resync they wait for.
func awaitListings(ctx context.Context, l *liveGroup, before []memberStats) error {
	listed := make([]bool, len(before))
	return poll(ctx, 2*time.Minute, 20*time.Millisecond, "a resync's listings", l.b.proc, func(ctx context.Context) (bool, error) {
		for i := range before {
			if listed[i] {
				continue
			}
			s, err := l.g.stats(ctx, i)
			if err != nil {
				return false, err
			}
			if s.Calls["listconfig"] <= before[i].Calls["listconfig"] {
				return false, nil
			}
			listed[i] = true
		}
		return true, nil
	})
}
