package controller

// The planner: which streams are sources, which origin wins, and what one
// replica needs. Every function here reads the controller's state and
// writes nothing: a decision is a pure function of what the members listed
// (and the time), so every balancer of a group, and this one after a
// restart, decides the same. The listings write the state (listing.go);
// the workers execute the actions (work.go).

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"time"
	"unicode"
	"unicode/utf8"
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

// winnerLocked returns the origin whose copy of name is replicated, as
// DESIGN §2 defines it: of the members whose last successful listing shows
// name as a source, the one this group's existing replicas pull from (the
// most of them), then the one whose stream EMS reports created first, then
// the lowest address. Every balancer that sees the same listings picks the
// same. decided is false when name is a source on several members and the
// creation times needed to choose are not known yet: then nothing is done
// about name until they are.
func (c *Controller) winnerLocked(name string) (w *member, decided bool) {
	recs := c.sources[name]
	var only *member
	n := 0
	for m, rec := range recs {
		if rec.absentSince.IsZero() {
			only = m
			n++
		}
	}
	switch n {
	case 0:
		return nil, true
	case 1:
		return only, true
	}
	// A conflict: the same name is a source on several members.
	votes := make(map[*member]int, n)
	for _, d := range c.members {
		for _, cfg := range d.obs.configs[name] {
			o := c.originOfLocked(cfg)
			if o == nil || o == d || !c.ownsLocked(d, name, cfg) {
				continue
			}
			if rec := recs[o]; rec != nil && rec.absentSince.IsZero() && isPullURI(cfg.uri, o.spec.Address, c.opts.AppName, name) {
				votes[o]++
			}
		}
	}
	better := func(a, b *member) bool {
		if va, vb := votes[a], votes[b]; va != vb {
			return va > vb
		}
		ca, cb := recs[a].created, recs[b].created
		if ca != 0 && cb != 0 && ca != cb {
			return ca < cb
		}
		return compareAddr(a.spec.Address, b.spec.Address) < 0
	}
	var best *member
	for m, rec := range recs {
		if rec.absentSince.IsZero() && (best == nil || better(m, best)) {
			best = m
		}
	}
	// Creation times are needed only where the vote does not decide.
	decided = true
	top := votes[best]
	for m, rec := range recs {
		if m != best && rec.absentSince.IsZero() && votes[m] == top && (rec.created == 0 || recs[best].created == 0) {
			decided = false
		}
	}
	return best, decided
}

// compareAddr orders member addresses: as IP addresses when both are, else
// as strings.
func compareAddr(a, b string) int {
	x, errx := netip.ParseAddr(a)
	y, erry := netip.ParseAddr(b)
	if errx == nil && erry == nil {
		return x.Compare(y)
	}
	return cmp.Compare(a, b)
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
	// demand marks a pull as a demand copy (tagged _streamlb_demand).
	demand bool
	// confirmPull asks for a listing of the member's inbound streams: it
	// holds a pull this controller made and has not seen streaming yet.
	confirmPull bool
	// relist asks for a full listing of the member: it streams the name
	// without a config this controller knows of, which may be a pull made
	// since its last full listing, or holds a pull this controller made
	// and has not seen streaming yet.
	relist bool
	// absentAfter, when set, marks a confirmation of a source whose
	// absence from origin no look since then has shown: the next look at
	// origin that does starts the absence, and the grace with it.
	absentAfter time.Time
}

// reasonNotNeeded is the reason of a demand copy's removal; reasonEnded
// that of a replica whose source ended.
const (
	reasonNotNeeded = "copy no longer needed"
	reasonEnded     = "source ended"
)

// confirmPullAfter is how long after a pull this controller lists the
// member's inbound streams to see the replica streaming, when no event
// said so first.
const confirmPullAfter = time.Second

// planLocked decides what stream name needs on member m. It is the whole
// policy: desired vs actual for one replica. It writes nothing.
func (c *Controller) planLocked(m *member, name string, now time.Time) action {
	v := c.viewLocked(name, now)
	return c.planViewLocked(m, &v, now)
}

// streamView is what planning one stream needs that is the same for every
// member: computed once per stream by the callers that plan it on every
// member (a status row, a resync's diff).
type streamView struct {
	name     string
	w        *member // the winning origin, nil when none
	decided  bool
	scoped   bool   // passes include and exclude
	unrepl   string // why the name cannot be replicated, "" when it can
	demand   bool   // mode demand: set holds who should hold it
	set      demandSet
	computed bool
}

// viewLocked returns the view of stream name.
func (c *Controller) viewLocked(name string, now time.Time) streamView {
	v := streamView{name: name, computed: true}
	v.w, v.decided = c.winnerLocked(name)
	if v.w == nil {
		return v
	}
	v.scoped = matches(name, c.opts.Include, c.opts.Exclude)
	v.unrepl = unreplicable(name)
	if v.scoped && c.opts.Replication.Mode == ModeDemand {
		v.demand, v.set = true, c.demandSetLocked(name, v.w, now)
	}
	return v
}

// planViewLocked is planLocked with the stream's view computed already.
func (c *Controller) planViewLocked(m *member, v *streamView, now time.Time) action {
	name, w, decided := v.name, v.w, v.decided
	cfgs := m.obs.configs[name]
	inScope := w != nil && w != m && m.spec.Replicate && v.scoped
	want, demandCopy := inScope, false
	if inScope && v.demand {
		want = v.set.has(m)
		demandCopy = v.set.add == m || slices.Contains(v.set.extra, m)
	}
	if want {
		if why := v.unrepl; why != "" {
			return action{kind: actNone, desired: true, state: StateUnreplicable, origin: w, reason: why}
		}
		if m.health.state != MemberUp || !m.obs.listed {
			return action{kind: actNone, desired: true, state: StateUnknown, origin: w, reason: "member " + m.health.state}
		}
		if !decided {
			return action{kind: actNone, desired: true, state: StatePending, origin: w,
				reason: fmt.Sprintf("%q is a source on several members; waiting for their creation times", name)}
		}
		for _, cfg := range cfgs {
			if isPullURI(cfg.uri, w.spec.Address, c.opts.AppName, name) {
				return c.replicaStateLocked(m, cfg, w, now)
			}
		}
		if w.health.state != MemberUp {
			// Nothing is guessed about a source its origin cannot show.
			return action{kind: actNone, desired: true, state: StateUnknown, origin: w, reason: "origin " + w.spec.Name + " " + w.health.state}
		}
		for _, cfg := range cfgs {
			if c.ownsLocked(m, name, cfg) {
				if o := c.originOfLocked(cfg); o != nil && o != w && o.health.state != MemberUp && c.isCandidateLocked(name, o) {
					return action{kind: actNone, desired: true, state: StateUnknown, origin: w, reason: "origin " + o.spec.Name + " " + o.health.state}
				}
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
		return action{kind: actPull, desired: true, state: StateMissing, origin: w, demand: demandCopy}
	}
	if m.health.state != MemberUp || !m.obs.listed || !decided {
		return action{kind: actNone}
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
		if w == o {
			if inScope && w.health.state == MemberUp {
				// Mode demand, and m is not in the stream's set any more.
				return action{kind: actRemove, configID: cfg.id, reason: reasonNotNeeded}
			}
			continue // out of scope here: kept, never pulled
		}
		// The source is present on no member. Only a successful listing of
		// its origin can say it ended.
		if o.health.state != MemberUp || !o.obs.listed {
			return action{kind: actNone}
		}
		if _, shown := o.obs.inbound[name]; shown {
			// o's inbound streams show the name, but no look that asked
			// about it made it a source again (a listing of the inbound
			// streams makes sources only of the names it asks about): a
			// source back unannounced, to be asked about, or a pull of
			// o's own. Neither is evidence of an end.
			if c.isSourceLocked(o, name) {
				return action{kind: actConfirm, origin: o}
			}
			return action{kind: actNone}
		}
		rec := c.sources[name][o]
		if rec == nil || rec.absentLook.Before(cfg.seenAt()) {
			// No look at o since this replica was known has found the
			// source gone. This controller never saw it there, or forgot
			// it while o was down, or saw an earlier life of the name end:
			// the source came and went between two looks at o while
			// another balancer pulled the replica, or ended before this
			// controller started. That earlier looks did not show it says
			// nothing of when it ended: its absence starts at the next
			// look at o that can show it (work).
			return action{kind: actConfirm, origin: o, absentAfter: cfg.seenAt()}
		}
		absent := rec.absentSince
		if gone := now.Sub(absent); gone < c.opts.TeardownGrace {
			return action{kind: actWait, after: c.opts.TeardownGrace - gone}
		}
		deadline := absent.Add(c.opts.TeardownGrace)
		confirm := action{kind: actConfirm, relist: m.obs.fullAt.Before(deadline)}
		if c.lookedAtLocked(o, name).Before(deadline) {
			confirm.origin = o
		}
		if confirm.relist || confirm.origin != nil {
			return confirm
		}
		return action{kind: actRemove, configID: cfg.id, reason: reasonEnded, origin: o}
	}
	return action{kind: actNone}
}

// isCandidateLocked reports whether name was a source on o at o's last
// successful listing.
func (c *Controller) isCandidateLocked(name string, o *member) bool {
	rec := c.sources[name][o]
	return rec != nil && rec.absentSince.IsZero()
}

// replicaStateLocked reports the state of replica cfg of a stream from
// origin w on m: present while its pull streams, pending while it has not
// been seen streaming yet (for up to teardown_grace), failing after.
func (c *Controller) replicaStateLocked(m *member, cfg pullCfg, w *member, now time.Time) action {
	a := action{kind: actNone, desired: true, state: StatePresent, origin: w}
	if cfg.pulledAt != 0 {
		// Pulled by this controller since m's last full listing.
		pulled := time.Unix(0, cfg.pulledAt)
		a.state = StatePending
		a.reason = "pulled; not seen streaming yet"
		if now.Sub(pulled) > c.opts.TeardownGrace {
			a.state, a.reason = StateFailing, "pulled; not streaming"
		}
		a.confirmPull = now.Sub(pulled) >= confirmPullAfter
		return a
	}
	if since, ok := m.obs.stalled[cfg.id]; ok {
		a.state = StatePending
		a.reason = "not streaming yet"
		if now.Sub(since) > c.opts.TeardownGrace {
			a.state = StateFailing
			a.reason = "not streaming"
		}
	}
	return a
}

// maxNameLen is the longest stream name streamlb replicates: EMS keeps
// parameters in fixed buffers, and a longer name is someone's mistake or
// an attack.
const maxNameLen = 256

// unreplicable returns why a source named name cannot be pulled under the
// same name through an RTMP URI path, or "" when it can.
func unreplicable(name string) string {
	if len(name) > maxNameLen {
		return fmt.Sprintf("name longer than %d bytes", maxNameLen)
	}
	if !utf8.ValidString(name) {
		return "name is not valid UTF-8"
	}
	for _, r := range name {
		switch {
		case r == '/' || r == '?' || r == '#' || r == '%' || r == '\\':
			return fmt.Sprintf("name contains %q, which an RTMP URI path does not carry unchanged", r)
		case unicode.IsSpace(r) || unicode.IsControl(r):
			return fmt.Sprintf("name contains %q (whitespace or a control character)", r)
		}
	}
	return ""
}
