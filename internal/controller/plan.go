package controller

// Desired vs actual: which streams are sources, which origin wins, and what
// one replica needs.

import (
	"fmt"
	"time"
)

// isSourceLocked reports whether name is a source stream on m: an inbound
// stream that is not a replica (no streamlb tag, not pulled from a member).
func (c *Controller) isSourceLocked(m *member, name string) bool {
	if _, ok := m.obs.inbound[name]; !ok {
		return false
	}
	for _, cfg := range m.obs.configs[name] {
		if cfg.tagged {
			return false
		}
		if _, ok := c.byAddr[uriHost(cfg.uri)]; ok {
			return false
		}
	}
	return true
}

// applyListingLocked updates the sources of origin m after a listing.
func (c *Controller) applyListingLocked(m *member, now time.Time) {
	for name := range m.obs.inbound {
		if !c.isSourceLocked(m, name) {
			continue
		}
		recs := c.sources[name]
		if recs == nil {
			recs = make(map[*member]*source)
			c.sources[name] = recs
		}
		rec := recs[m]
		switch {
		case rec == nil:
			recs[m] = &source{firstSeen: now}
			c.met.sourcesSeen.Inc()
			c.enqueueAllLocked(name, 0)
		case !rec.absentSince.IsZero():
			rec.absentSince = time.Time{}
			c.enqueueAllLocked(name, 0)
		}
	}
	for name, recs := range c.sources {
		rec := recs[m]
		if rec == nil || !rec.absentSince.IsZero() || c.isSourceLocked(m, name) {
			continue
		}
		rec.absentSince = now
		c.enqueueAllLocked(name, 0)
		c.enqueueAllLocked(name, c.opts.TeardownGrace)
	}
}

// gcSourcesLocked forgets sources absent for long after their grace: their
// replicas have been removed by then.
func (c *Controller) gcSourcesLocked(now time.Time) {
	horizon := 3*c.opts.TeardownGrace + c.opts.ResyncInterval
	for name, recs := range c.sources {
		for m, rec := range recs {
			if c.byName[m.spec.Name] != m || (!rec.absentSince.IsZero() && now.Sub(rec.absentSince) > horizon) {
				delete(recs, m)
			}
		}
		if len(recs) == 0 {
			delete(c.sources, name)
		}
	}
}

// diffLocked queues every stream that needs work on destination m.
func (c *Controller) diffLocked(m *member, now time.Time) {
	if m.state != MemberUp {
		return
	}
	for name := range c.sources {
		if a := c.planLocked(m, name, now); a.kind != actNone {
			m.queue.Add(name)
		}
	}
	for name := range m.obs.configs {
		if _, ok := c.sources[name]; ok {
			continue
		}
		if a := c.planLocked(m, name, now); a.kind != actNone {
			m.queue.Add(name)
		}
	}
}

func (c *Controller) enqueueAllLocked(name string, after time.Duration) {
	for _, m := range c.members {
		m.queue.AddAfter(name, after)
	}
}

// winnerLocked returns the origin whose copy of name is replicated: of the
// members where it is a present source, the one that had it first.
func (c *Controller) winnerLocked(name string) *member {
	var best *member
	var bestRec *source
	for m, rec := range c.sources[name] {
		if !rec.absentSince.IsZero() || m.state != MemberUp {
			continue
		}
		if best == nil || rec.firstSeen.Before(bestRec.firstSeen) ||
			(rec.firstSeen.Equal(bestRec.firstSeen) && m.idx < best.idx) {
			best, bestRec = m, rec
		}
	}
	return best
}

// ownsLocked reports whether cfg on m is this group's to remove: tagged
// with its group, or adopted (an untagged pull of exactly a member's
// rtmp://ADDRESS/APP/NAME, as the original plugin leaves them).
func (c *Controller) ownsLocked(m *member, name string, cfg pullCfg) bool {
	if cfg.tagged {
		return cfg.tagGroup == c.opts.Group
	}
	o := c.byAddr[uriHost(cfg.uri)]
	return o != nil && o != m && isAdoptable(cfg, name, o.spec.Address, c.opts.AppName)
}

// originOfLocked returns the member a replica config pulls from, or nil.
func (c *Controller) originOfLocked(cfg pullCfg) *member {
	if cfg.tagOrigin != "" {
		return c.byAddr[cfg.tagOrigin]
	}
	return c.byAddr[uriHost(cfg.uri)]
}

type actionKind int

const (
	actNone actionKind = iota
	actPull
	actRemove
	actWait // re-check after a delay (teardown grace)
)

// action is what one (member, stream) needs, and the state to report.
type action struct {
	kind     actionKind
	desired  bool
	state    string
	origin   *member
	configID uint64
	after    time.Duration
	reason   string
}

// planLocked decides what stream name needs on member m. It is the whole
// policy: desired vs actual for one replica.
func (c *Controller) planLocked(m *member, name string, now time.Time) action {
	w := c.winnerLocked(name)
	cfgs := m.obs.configs[name]
	if w != nil && w != m && m.spec.Replicate && matches(name, c.opts.Include, c.opts.Exclude) {
		want := pullURI(w.spec.Address, c.opts.AppName, name)
		for _, cfg := range cfgs {
			if cfg.uri == want {
				st := StatePresent
				if since, ok := m.obs.failing[cfg.id]; ok && now.Sub(since) > c.opts.TeardownGrace {
					st = StateFailing
				}
				return action{kind: actNone, desired: true, state: st, origin: w}
			}
		}
		for _, cfg := range cfgs {
			if c.ownsLocked(m, name, cfg) {
				return action{kind: actRemove, desired: true, state: StatePending, origin: w, configID: cfg.id, reason: "origin changed"}
			}
		}
		if len(cfgs) > 0 {
			return action{kind: actNone, desired: true, state: StateConflict, origin: w,
				reason: fmt.Sprintf("a pull config named %q that streamlb did not create (%s)", name, cfgs[0].uri)}
		}
		if _, ok := m.obs.inbound[name]; ok {
			return action{kind: actNone, desired: true, state: StateConflict, origin: w,
				reason: fmt.Sprintf("%q is also a source on this member", name)}
		}
		return action{kind: actPull, desired: true, state: StateMissing, origin: w}
	}
	for _, cfg := range cfgs {
		if !c.ownsLocked(m, name, cfg) {
			continue
		}
		o := c.originOfLocked(cfg)
		if o == nil || o == m {
			continue // its origin left the group: prune's business
		}
		if w != nil && w != o {
			return action{kind: actRemove, configID: cfg.id, reason: "origin changed"}
		}
		recs := c.sources[name]
		if recs == nil {
			recs = make(map[*member]*source)
			c.sources[name] = recs
		}
		rec := recs[o]
		if rec == nil {
			rec = &source{firstSeen: now, absentSince: now}
			recs[o] = rec
		}
		if rec.absentSince.IsZero() {
			continue
		}
		if gone := now.Sub(rec.absentSince); gone < c.opts.TeardownGrace {
			return action{kind: actWait, after: c.opts.TeardownGrace - gone}
		}
		return action{kind: actRemove, configID: cfg.id, reason: "source ended"}
	}
	return action{kind: actNone}
}
