package controller

// The per-member workers that converge one replica at a time.

import (
	"context"
	"slices"
	"strconv"
	"time"
	"unique"

	"streamlb/internal/ems"
)

// worker takes streams off m's queue and converges each on m. It stops,
// handing back the stream it took, when m has more workers than its target
// (a reload lowered max_inflight).
func (c *Controller) worker(ctx context.Context, m *member) {
	for {
		name, ok := m.work.queue.Get()
		if !ok {
			return
		}
		if retire(m) {
			m.work.queue.Done(name)
			m.work.queue.Add(name)
			return
		}
		if c.waitUsable(ctx, m) {
			c.work(ctx, m, name)
		}
		m.work.queue.Done(name)
		if ctx.Err() != nil {
			return
		}
	}
}

// retire reports whether m has more workers than its target and, if so,
// counts the caller out.
func retire(m *member) bool {
	for {
		n := m.run.workers.Load()
		if n <= m.run.workerTarget.Load() {
			return false
		}
		if m.run.workers.CompareAndSwap(n, n-1) {
			return true
		}
	}
}

// waitUsable blocks until m is up, not paused, and the first resync is
// done. It reports false when ctx ends first.
func (c *Controller) waitUsable(ctx context.Context, m *member) bool {
	for {
		c.mu.Lock()
		ok := c.isReady && m.health.state == MemberUp && !m.work.paused
		wait := m.health.stateChanged
		if !c.isReady {
			wait = c.ready
		}
		c.mu.Unlock()
		if ok {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-wait:
		}
	}
}

// work converges one replica.
func (c *Controller) work(ctx context.Context, m *member, name string) {
	start := time.Now()
	defer func() { c.met.workDuration.Observe(time.Since(start).Seconds()) }()

	c.mu.Lock()
	if m.obs.fullAt.Before(m.health.upAt) {
		// Back from an outage: the view from before it may be stale
		// (another balancer may have pulled meanwhile). Decide on a
		// listing taken since.
		m.work.needList = true
		c.wakeLocked(m)
		latency := time.Duration(m.health.latency.Load())
		c.mu.Unlock()
		m.work.queue.AddAfter(name, max(c.opts.ConfirmInterval, 50*time.Millisecond)+4*latency)
		return
	}
	a := c.planLocked(m, name, start)
	c.recordLocked(m, name, a, start)
	switch a.kind {
	case actRemove:
	case actConfirm:
		if !a.absentAfter.IsZero() {
			if c.absentFromLookLocked(a.origin, name, a.absentAfter) {
				// The source's absence starts now: plan it again, to
				// wait out the grace.
				a = c.planLocked(m, name, start)
			}
			delete(m.work.removals, name)
			break
		}
		// The grace is over, and the removal waits only for looks at m
		// and at the origin: it is decided now, and the looks it asks
		// for serve it, instead of a second round after them.
		if _, ok := m.work.removals[name]; !ok {
			m.work.removals[name] = start
		}
	default:
		delete(m.work.removals, name)
	}
	if a.relist {
		if a.kind == actConfirm {
			// A replica's source ended: its removal waits for a listing
			// of m taken after its grace.
			m.work.needListRemove = true
		} else {
			m.work.needList = true
		}
		c.wakeLocked(m)
	}
	if a.confirmPull {
		m.work.needInbound = true
		c.wakeLocked(m)
		m.work.queue.AddAfter(name, confirmPullAfter)
	}
	c.mu.Unlock()

	switch a.kind {
	case actNone:
		return
	case actWait:
		m.work.queue.AddAfter(name, a.after)
		return
	case actConfirm:
		// Other replicas waiting for the same listings share them; this
		// one is looked at again after they are done.
		c.mu.Lock()
		latency := time.Duration(m.health.latency.Load())
		if a.origin != nil {
			c.recheckOnLocked(a.origin, name)
			latency = max(latency, time.Duration(a.origin.health.latency.Load()))
		}
		again := c.recheckAfterLocked(m, name, a.relist, a.origin, latency)
		c.mu.Unlock()
		m.work.queue.AddAfter(name, again)
		return
	case actPull:
		if err := a.origin.work.pulls.wait(ctx); err != nil {
			return
		}
		c.pull(ctx, m, name, a.origin, a.demand)
	case actRemove:
		// The configId must come from a listing of m started after the
		// removal was decided: an older one may name a config since
		// removed, or, after an EMS restart, another config.
		c.mu.Lock()
		decided, ok := m.work.removals[name]
		if !ok {
			decided = start
			m.work.removals[name] = decided
		}
		fresh := !m.obs.fullAt.Before(decided)
		waitsForListing := !fresh
		if waitsForListing {
			m.work.needListRemove = true
			c.wakeLocked(m)
		}
		latency := time.Duration(m.health.latency.Load())
		// A source ends only by a look at its origin taken after the
		// removal was decided too: it may have appeared there since the
		// origin's last listing (another balancer pulled this replica
		// on seeing it).
		var waitsForOrigin *member
		if o := a.origin; a.reason == reasonEnded && o != nil && c.lookedAtLocked(o, name).Before(decided) {
			fresh = false
			waitsForOrigin = o
			c.recheckOnLocked(o, name)
			latency = max(latency, time.Duration(o.health.latency.Load()))
		}
		again := c.recheckAfterLocked(m, name, waitsForListing, waitsForOrigin, latency)
		c.mu.Unlock()
		if !fresh {
			m.work.queue.AddAfter(name, again)
			return
		}
		c.remove(ctx, m, name, a)
	}
}

// recheckAfterLocked returns when a replica of m waiting for evidence is
// looked at again: once the removal listing of m it waits for (listing) is
// due, and once the listing of its origin's inbound streams it waits for
// (origin, when not nil: a full one for a name the origin holds as a
// streamlb pull, see recheckOnLocked) is due, each answered in about
// latency; shortly after, when it waits for neither. The listings' diffs
// queue it as soon as they are applied: this is in case they say nothing.
func (c *Controller) recheckAfterLocked(m *member, name string, listing bool, origin *member, latency time.Duration) time.Duration {
	d := max(c.opts.ConfirmInterval, 50*time.Millisecond) + 4*latency
	if listing {
		d = max(d, c.removeListSpacing()-time.Since(m.obs.fullAt)+4*latency)
	}
	if origin != nil {
		last := origin.obs.inboundAt
		if anyTagged(origin.obs.configs[name]) {
			last = origin.obs.fullAt
		}
		d = max(d, c.removeListSpacing()-time.Since(last)+4*latency)
	}
	return d
}

func (c *Controller) pull(ctx context.Context, m *member, name string, origin *member, demand bool) {
	uri := unique.Make(pullURI(origin.spec.Address, c.opts.AppName, name)).Value() // shared with the other destinations
	keep := c.opts.KeepAlive
	req := ems.PullRequest{
		URI:             uri,
		LocalStreamName: name,
		KeepAlive:       &keep,
		// Players and replica pulls are told apart by it (DESIGN §6).
		EmulateUserAgent: UserAgent,
		Vars:             map[string]string{tagGroup: c.opts.Group, tagOrigin: origin.spec.Address},
	}
	made := ceilSecond(time.Now())
	if demand {
		req.Vars[tagDemand] = strconv.FormatUint(uint64(made), 10)
	} else {
		req.Vars[tagMade] = strconv.FormatUint(uint64(made), 10)
	}
	var res ems.PullResult
	err := c.call(ctx, m, "pullStream", func(ctx context.Context) error {
		var err error
		res, err = m.spec.Client.PullStream(ctx, req)
		return err
	})
	if ctx.Err() != nil {
		return
	}
	c.mu.Lock()
	if err == nil {
		now := time.Now()
		m.obs.configs[name] = append(m.obs.configs[name], pullCfg{
			id: res.ConfigID, uri: uri, tagOrigin: origin.spec.Address, tagged: true, ours: true,
			seen: ceilSecond(now), pulledAt: now.UnixNano(), demand: demand, made: made,
		})
		if demand {
			delete(c.wanted, name)
			c.met.demandAdded.Inc()
		}
		// Seen streaming by its inStreamCreated, or else by a listing.
		m.work.queue.AddAfter(name, confirmPullAfter)
		c.gen++
		if m.work.listingFull {
			m.obs.ownChanges[name] = c.gen
		}
		// Records are kept for replicas in trouble only.
		delete(m.work.ops, name)
		c.dirtyLocked(name)
		c.mu.Unlock()
		c.met.pulls.Inc()
		origin.work.pulls.succeeded()
		c.record(Entry{At: now, Kind: EntryReplicaPulled, Member: m.spec.Name, Stream: name, Origin: origin.spec.Name,
			Detail: "config " + strconv.FormatUint(res.ConfigID, 10)})
		return
	}
	defer c.mu.Unlock()
	o := c.opLocked(m, name, time.Now())
	switch {
	case ems.IsAlreadyTaken(err):
		// Someone holds the name: look at the member's configs, then
		// decide (ours: done; someone else's: conflict).
		o.attempts++
		o.lastErr = trimErr(err)
		m.work.needList = true
		c.wakeLocked(m)
		m.work.queue.AddAfter(name, backoff(o.attempts, c.opts.RetryBase, c.opts.RetryMax))
	default:
		if !ems.IsUnauthorized(err) {
			origin.work.pulls.failed()
		}
		c.failedLocked(m, name, o, err)
	}
}

func (c *Controller) remove(ctx context.Context, m *member, name string, a action) {
	err := c.call(ctx, m, "removeConfig", func(ctx context.Context) error {
		return m.spec.Client.RemoveConfig(ctx, a.configID)
	})
	if ctx.Err() != nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	o := c.opLocked(m, name, now)
	if err != nil {
		c.failedLocked(m, name, o, err)
		return
	}
	delete(m.work.removals, name)
	cfgs := slices.DeleteFunc(m.obs.configs[name], func(cfg pullCfg) bool { return cfg.id == a.configID })
	if len(cfgs) == 0 {
		delete(m.obs.configs, name)
	} else {
		m.obs.configs[name] = cfgs
	}
	c.gen++
	if m.work.listingFull {
		m.obs.ownChanges[name] = c.gen
	}
	o.attempts, o.lastErr = 0, ""
	c.met.removals.Inc()
	if a.reason == reasonNotNeeded {
		c.met.demandRemoved.Inc()
	}
	c.record(Entry{At: now, Kind: EntryReplicaRemoved, Member: m.spec.Name, Stream: name,
		Detail: a.reason + " (config " + strconv.FormatUint(a.configID, 10) + ")"})
	m.work.queue.Add(name) // a changed origin is pulled next
}

// failedLocked records a failed call on replica (m, name) and schedules
// its retry.
func (c *Controller) failedLocked(m *member, name string, o *op, err error) {
	o.attempts++
	msg := trimErr(err)
	if msg != o.lastErr {
		m.log(c.log).Warn("replica work failed", "stream", name, "attempt", o.attempts, "err", err)
	}
	o.lastErr = msg
	c.met.retries.Inc()
	c.memberFailedLocked(m, err, false)
	m.work.queue.AddAfter(name, backoff(o.attempts, c.opts.RetryBase, c.opts.RetryMax))
}

// opLocked returns the work record of replica (m, name), creating it.
func (c *Controller) opLocked(m *member, name string, now time.Time) *op {
	c.dirtyLocked(name) // the caller changes it
	o := m.work.ops[name]
	if o == nil {
		o = &op{since: now}
		m.work.ops[name] = o
	}
	return o
}

// recordLocked keeps the replica's reported state and when it changed;
// records of replicas that are fine are dropped, so memory follows the
// trouble, not the group's size.
func (c *Controller) recordLocked(m *member, name string, a action, now time.Time) {
	c.dirtyLocked(name)
	o := m.work.ops[name]
	if !a.desired || (a.state == StatePresent && (o == nil || o.attempts == 0)) {
		if o != nil && a.kind == actNone {
			delete(m.work.ops, name)
		}
		return
	}
	if o == nil {
		o = &op{since: now}
		m.work.ops[name] = o
	}
	if o.state != a.state {
		o.state, o.since = a.state, now
		if a.state == StateConflict {
			c.record(Entry{At: now, Kind: EntryConflict, Member: m.spec.Name, Stream: name, Detail: a.reason})
		}
	}
}
