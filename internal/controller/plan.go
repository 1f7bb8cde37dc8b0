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
	return !c.anyReplicaLocked(m.obs.configs[name])
}

// anyReplicaLocked reports whether one of cfgs makes its stream a replica:
// tagged by streamlb, or pulling from a member.
func (c *Controller) anyReplicaLocked(cfgs []pullCfg) bool {
	for _, cfg := range cfgs {
		if cfg.tagged {
			return true
		}
		if _, ok := c.byAddr[uriHost(cfg.uri)]; ok {
			return true
		}
	}
	return false
}

// applyListingLocked updates the sources of origin m after a listing. A
// full listing shows which inbound streams are pulls; an inbound-only one
// does not (m's configs may have changed since its last full listing, for
// instance by another balancer of the group), so it makes sources, new or
// back, only of the names it was asked to confirm: those announced by
// events that were not a replica's. A full listing does not make a new
// source of a name that wasPull (the member's configs before it) showed as
// a replica: a replica whose config was removed between the listing's two
// calls would look like one. An inbound-only listing looks only at the
// names it confirms and those it no longer shows (gone): the others are as
// the listing before left them, and an origin may list thousands.
func (c *Controller) applyListingLocked(m *member, now time.Time, full bool, announced map[string]time.Time, wasPull map[string][]pullCfg, gone []string) {
	present := func(name string) {
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
			c.enqueueNeededLocked(name, now)
		case !rec.absentSince.IsZero():
			rec.absentSince = time.Time{}
			c.enqueueNeededLocked(name, now)
		}
	}
	absent := func(name string, recs map[*member]*source) {
		rec := recs[m]
		if rec == nil || !rec.absentSince.IsZero() || c.isSourceLocked(m, name) {
			return
		}
		rec.absentSince = now
		c.enqueueAllLocked(name, 0)
		c.enqueueAllLocked(name, c.opts.TeardownGrace)
	}
	for _, at := range announced {
		c.met.confirmWait.Observe(now.Sub(at).Seconds())
	}
	if !full {
		for name := range announced {
			if c.isSourceLocked(m, name) {
				present(name)
			}
		}
		for name := range announced {
			absent(name, c.sources[name])
		}
		for _, name := range gone {
			absent(name, c.sources[name])
		}
		return
	}
	for name := range m.obs.inbound {
		if !c.isSourceLocked(m, name) {
			continue
		}
		if c.sources[name][m] == nil && c.anyReplicaLocked(wasPull[name]) {
			continue
		}
		present(name)
	}
	for name, recs := range c.sources {
		absent(name, recs)
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

// enqueueNeededLocked queues name on the members that need work for it. A
// member not listed yet is left to the diff that follows its first
// listing: planning for it would queue every stream, for nothing.
func (c *Controller) enqueueNeededLocked(name string, now time.Time) {
	for _, m := range c.members {
		if !m.obs.listed {
			continue
		}
		if a := c.planLocked(m, name, now); a.kind != actNone || a.relist {
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
		return cfg.ours
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
	// actConfirm: the grace is over, but the origin (the source may be
	// back, its event lost) or the member (its config may be gone or
	// replaced) has not been listed since; list them, then re-check.
	actConfirm
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
	// relist asks for a full listing of the member: it streams the name
	// without a config this controller knows of, which may be a pull made
	// since its last full listing.
	relist bool
}

// planLocked decides what stream name needs on member m. It is the whole
// policy: desired vs actual for one replica.
func (c *Controller) planLocked(m *member, name string, now time.Time) action {
	w := c.winnerLocked(name)
	cfgs := m.obs.configs[name]
	if w != nil && w != m && m.spec.Replicate && matches(name, c.opts.Include, c.opts.Exclude) {
		for _, cfg := range cfgs {
			if isPullURI(cfg.uri, w.spec.Address, c.opts.AppName, name) {
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
			return action{kind: actNone, desired: true, state: StateConflict, origin: w, relist: c.sources[name][m] == nil,
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
		deadline := rec.absentSince.Add(c.opts.TeardownGrace)
		confirm := action{kind: actConfirm, relist: m.obs.fullAt.Before(deadline)}
		if o.state == MemberUp && o.obs.inboundAt.Before(deadline) {
			confirm.origin = o
		}
		if confirm.relist || confirm.origin != nil {
			return confirm
		}
		return action{kind: actRemove, configID: cfg.id, reason: "source ended"}
	}
	return action{kind: actNone}
}
