package bench

import (
	"context"
	"fmt"
	"streamlb/internal/config"
	"time"
)

// burstPrefix names the burst's streams: burst-0, burst-1, …
const burstPrefix = "burst-"

// liveGroup is a balancer and its emulated members, kept running from the
// burst to the scenarios that need a converged group.
type liveGroup struct {
	g      *emsimGroup
	b      *balancer // nil once stopped
	listen string
	k      int
	// set is the balancer's config as the burst started it.
	set balancerSettings
}

// close stops the balancer, folding its peak memory into the result, and
// the members. It may be called more than once.
func (l *liveGroup) close(r *runner) {
	l.stopBalancer(r)
	if l.g != nil {
		l.g.close()
		l.g = nil
	}
}

func (l *liveGroup) stopBalancer(r *runner) {
	if l.b == nil {
		return
	}
	rss, err := l.b.stop()
	if err == nil {
		r.notePeaks(l.b, rss)
	}
	l.b = nil
}

// bursts runs the burst at each max_inflight candidate (or the one given),
// keeps the fastest, and returns its group, converged, for the scenarios
// that follow.
func (r *runner) bursts(ctx context.Context) (*liveGroup, error) {
	o := r.o
	ks := o.Candidates
	if o.MaxInflight > 0 {
		ks = []int{o.MaxInflight}
	}
	r.progress("burst: %d streams at once on one origin, %d members; max_inflight %s", o.Streams, o.Members, join(ks))
	var best Trial
	var kept *liveGroup
	for i, k := range ks {
		t, l, err := r.burst(ctx, k)
		if err != nil {
			return nil, err
		}
		r.res.Trials = append(r.res.Trials, t)
		r.progress("burst: max_inflight %d: %.3f s, %.0f pullStream calls/s", k, float64(t.Seconds), float64(t.CallsPerS))
		if t.CallsPerS > best.CallsPerS {
			best = t
		}
		if i == len(ks)-1 && best.MaxInflight == k {
			kept = l
		} else {
			l.close(r)
		}
	}
	if kept == nil {
		// The fastest was not the last one run: run it again, for a group
		// to go on with; its second figures are the ones reported.
		r.progress("burst: again at max_inflight %d", best.MaxInflight)
		t, l, err := r.burst(ctx, best.MaxInflight)
		if err != nil {
			return nil, err
		}
		best, kept = t, l
	}
	r.res.MaxInflight = best.MaxInflight
	if o.Defaults {
		r.res.Defaults = true
		r.res.MaxPullsPerSecond = int(config.DefaultMaxPullsPerSecond)
	}
	r.res.BurstStreams = o.Streams
	r.res.BurstSeconds = best.Seconds
	r.res.BurstPullCalls = best.PullCalls
	r.res.BurstConfirmCalls = best.ConfirmCalls
	r.res.BurstCallsPerS = best.CallsPerS
	return kept, nil
}

// burst starts a fresh group with a balancer at max_inflight k, publishes
// the streams on member 0 at once and waits until every other member
// holds every replica.
func (r *runner) burst(ctx context.Context, k int) (Trial, *liveGroup, error) {
	o := r.o
	listen, err := freeListen()
	if err != nil {
		return Trial{}, nil, err
	}
	l := &liveGroup{listen: listen, k: k}
	l.g, err = startEmsim(ctx, o.Exe, o.Members, o.Separate, o.KeepAlive, "http://"+listen+"/evowebservices/", r.prof)
	if err != nil {
		return Trial{}, nil, err
	}
	l.set = balancerSettings{
		defaults:    o.Defaults,
		maxInflight: k, resyncInterval: 10 * time.Minute, teardownGrace: 10 * time.Second,
		memoryLimit: o.MemoryLimit,
	}
	if o.Replication == ReplicationDemand {
		l.set.copies, l.set.poll = o.Copies, o.PollInterval
		if l.set.playListen, err = freeListen(); err != nil {
			l.close(r)
			return Trial{}, nil, err
		}
	}
	l.b, err = startBalancer(ctx, o.Exe, r.dir, listen, l.g.ips, l.set, r.prof)
	if err != nil {
		l.close(r)
		return Trial{}, nil, err
	}
	before, err := l.g.allStats(ctx)
	if err != nil {
		l.close(r)
		return Trial{}, nil, err
	}
	start := time.Now()
	r.prof.cpu(fmt.Sprintf("burst-%d", k), map[string]string{"balancer": l.b.debug, "emsim": l.g.debug})
	if err := l.g.publishMany(ctx, 0, burstPrefix, o.Streams); err != nil {
		l.close(r)
		return Trial{}, nil, err
	}
	var after []memberStats
	if o.Replication == ReplicationDemand {
		after, err = r.awaitCopies(ctx, l, start)
	} else {
		after, err = r.awaitReplicas(ctx, l, allBut(len(l.g.ips), 0), o.Streams)
	}
	if err != nil {
		l.close(r)
		return Trial{}, nil, err
	}
	r.prof.heap(fmt.Sprintf("burst-%d-balancer", k), l.b.debug)
	r.prof.metrics(fmt.Sprintf("burst-%d", k), l.b.listen)
	r.prof.wait()
	var last int64
	t := Trial{MaxInflight: k}
	r.res.ReplicasHeld = 0
	for i, s := range after {
		r.res.ReplicasHeld += int64(s.PullConfigs)
		if i != 0 {
			last = max(last, s.LastPullNS)
			t.PullCalls += s.Calls["pullstream"] - before[i].Calls["pullstream"]
		}
		t.ConfirmCalls += s.Calls["listinboundstreamnames"] - before[i].Calls["listinboundstreamnames"]
		t.ConfirmCalls += s.Calls["listconfig"] - before[i].Calls["listconfig"]
	}
	t.Seconds = Seconds(float64(last-start.UnixNano()) / 1e9)
	if t.Seconds > 0 {
		t.CallsPerS = Rate(float64(t.PullCalls) / float64(t.Seconds))
	}
	return t, l, nil
}

// allBut returns 0…n-1 without skip.
func allBut(n, skip int) []int {
	var out []int
	for i := range n {
		if i != skip {
			out = append(out, i)
		}
	}
	return out
}

// awaitReplicas waits until each of the members holds want pull
// configurations, and returns every member's stats at that point.
func (r *runner) awaitReplicas(ctx context.Context, l *liveGroup, members []int, want int) ([]memberStats, error) {
	within := max(2*time.Minute, time.Duration(want*len(members))*time.Second/300)
	var out []memberStats
	err := poll(ctx, within, 50*time.Millisecond, fmt.Sprintf("%d replicas on each of %d members", want, len(members)), l.b.proc,
		func(ctx context.Context) (bool, error) {
			if err := l.g.exitErr(); err != nil {
				return true, err
			}
			for _, i := range members {
				s, err := l.g.stats(ctx, i)
				if err != nil {
					return false, err
				}
				if s.PullConfigs < want {
					return false, nil
				}
			}
			all, err := l.g.allStats(ctx)
			if err != nil {
				return false, err
			}
			out = all
			return true, nil
		})
	return out, err
}
