package controller

// Demand copies (replication mode "demand", DESIGN §6): each source is held
// by its origin plus min_copies-1 members chosen by weighted rendezvous
// hashing of (stream, member), so every balancer computes the same set
// with no coordination and a member joining or leaving moves only the
// streams whose set it enters or leaves. Copies are added where viewers
// are, and taken away once nobody watches them. Only the desired-state
// function changes: workers, backoff, provenance tags, evidence-only
// removal and the resync are those of mode "all".

import (
	"cmp"
	"hash/fnv"
	"math"
	"slices"
	"time"
)

// Replication modes.
const (
	ModeAll    = "all"
	ModeDemand = "demand"
)

// tagDemand marks a demand copy in its provenance tag; its value is when
// the copy was made (Unix seconds), so that any balancer, this one after a
// restart included, knows it from a listing.
const tagDemand = "_streamlb_demand"

// Replication configures how many members hold each source.
type Replication struct {
	// Mode is ModeAll (default: every member holds every source) or
	// ModeDemand.
	Mode string
	// MinCopies is how many members hold each source in mode demand, its
	// origin included; at least 1 (default 2).
	MinCopies int
	// MaxCopies caps the copies of a source, origin included; 0: every
	// member.
	MaxCopies int
	// ScaleUpUtilization: a copy is added when every holder of a stream
	// stays above it for two load samples (default 0.7).
	ScaleUpUtilization float64
	// ScaleDownAfter: a demand copy is removed no sooner than this after
	// it was made, and only after two samples with no viewer of it
	// (default 5m).
	ScaleDownAfter time.Duration
	// LoadStaleAfter is the age past which a load sample no longer counts
	// (play.stale_after; default 15s).
	LoadStaleAfter time.Duration
}

func (r *Replication) setDefaults() {
	if r.Mode == "" {
		r.Mode = ModeAll
	}
	if r.MinCopies <= 0 {
		r.MinCopies = 2
	}
	if r.ScaleUpUtilization <= 0 {
		r.ScaleUpUtilization = 0.7
	}
	if r.ScaleDownAfter <= 0 {
		r.ScaleDownAfter = 5 * time.Minute
	}
	if r.LoadStaleAfter <= 0 {
		r.LoadStaleAfter = 15 * time.Second
	}
}

// LoadSample is one reading of a member's load, as demand copies use it.
type LoadSample struct {
	// At is when the reading was taken.
	At time.Time
	// Utilization is the member's (0: idle, 1: full).
	Utilization float64
	// Viewers counts the players of each stream the member serves.
	Viewers map[string]int
}

// ObserveLoad gives the controller a fresh load sample of member, which
// demand copies follow: the controller keeps the two latest of each
// member. It looks at once for the streams that need a copy more or less
// because of it. Safe for concurrent use; it never calls back.
func (c *Controller) ObserveLoad(member string, s LoadSample) {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := c.byName[member]
	if m == nil || c.opts.Replication.Mode != ModeDemand {
		return
	}
	m.health.load[1], m.health.load[0] = m.health.load[0], &s
	now := time.Now()
	r := c.opts.Replication
	// Copies on m that nobody watched in two samples may go.
	if m.health.load[1] != nil {
		for name, cfgs := range m.obs.configs {
			if m.health.load[0].Viewers[name] > 0 || m.health.load[1].Viewers[name] > 0 {
				continue
			}
			for _, cfg := range cfgs {
				if cfg.ours && cfg.demand && now.Sub(cfg.madeAt()) >= r.ScaleDownAfter {
					m.work.queue.Add(name)
					c.dirtyLocked(name)
					break
				}
			}
		}
	}
	// Streams all of whose holders are hot may need one more.
	if !c.hotLocked(m, now) {
		return
	}
	for name := range c.sources {
		w, _ := c.winnerLocked(name)
		if w == nil || (w != m && !c.holdsCopyLocked(m, name, w)) {
			continue
		}
		if c.allHotLocked(name, w, now) {
			c.dirtyLocked(name)
			c.enqueueNeededLocked(name, now)
		}
	}
}

// loadFresh is how old a load sample may be and still count.
func (c *Controller) loadFresh(s *LoadSample, now time.Time) bool {
	return s != nil && now.Sub(s.At) <= c.opts.Replication.LoadStaleAfter
}

// hotLocked reports whether m's two latest samples are fresh and above
// scale_up_utilization.
func (c *Controller) hotLocked(m *member, now time.Time) bool {
	u := c.opts.Replication.ScaleUpUtilization
	return c.loadFresh(m.health.load[0], now) && m.health.load[1] != nil &&
		m.health.load[0].Utilization >= u && m.health.load[1].Utilization >= u
}

// streamsCopyLocked reports whether m holds this group's copy of name
// from w and a listing showed it streaming: m's last full listing, taken
// since m last came back up, or a listing of its inbound streams since
// the pull. An event's word is not enough.
func (c *Controller) streamsCopyLocked(m *member, name string, w *member) bool {
	if m.health.state != MemberUp || !m.obs.listed || m.obs.fullAt.Before(m.health.upAt) {
		return false
	}
	cfg, ok := c.copyOfLocked(m, name, w)
	if !ok || cfg.pulledAt != 0 || cfg.hinted {
		return false
	}
	_, stalled := m.obs.stalled[cfg.id]
	return !stalled
}

// holdsCopyLocked reports whether m holds this group's copy of name from w.
func (c *Controller) holdsCopyLocked(m *member, name string, w *member) bool {
	_, ok := c.copyOfLocked(m, name, w)
	return ok
}

// allHotLocked reports whether every holder of name (its origin w and the
// members with a copy) is hot.
func (c *Controller) allHotLocked(name string, w *member, now time.Time) bool {
	if !c.hotLocked(w, now) {
		return false
	}
	for _, m := range c.members {
		if m != w && c.holdsCopyLocked(m, name, w) && !c.hotLocked(m, now) {
			return false
		}
	}
	return true
}

// WantCopy tells the controller that a player of stream name found no
// holder below its high water: in mode demand, a copy is added on the
// next member with headroom. The request itself is answered with the best
// current holder. Safe for concurrent use; it never blocks for long.
func (c *Controller) WantCopy(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.opts.Replication.Mode != ModeDemand || len(c.wanted) >= maxWanted {
		return
	}
	if _, ok := c.wanted[name]; !ok {
		c.wanted[name] = time.Now()
	}
	c.dirtyLocked(name)
	c.enqueueNeededLocked(name, time.Now())
}

// maxWanted bounds the streams waiting for a demand copy asked for by a
// play request; wantedFor is how long such a request is kept.
const (
	maxWanted = 4096
	wantedFor = 30 * time.Second
)

// rankLocked returns the members that may hold replicas of name (they take
// replicas), by weighted rendezvous score, highest first. Every balancer
// computes the same order from the same member list.
func (c *Controller) rankLocked(name string) []*member {
	if r, ok := c.ranks[name]; ok {
		return r
	}
	type scored struct {
		m     *member
		score float64
	}
	var ss []scored
	for _, m := range c.members {
		if !m.spec.Replicate {
			continue
		}
		ss = append(ss, scored{m, rendezvous(name, m.spec.Address, m.spec.Weight)})
	}
	slices.SortFunc(ss, func(a, b scored) int {
		return cmp.Or(cmp.Compare(b.score, a.score), compareAddr(a.m.spec.Address, b.m.spec.Address))
	})
	r := make([]*member, len(ss))
	for i, s := range ss {
		r[i] = s.m
	}
	if len(c.ranks) < maxRanks {
		c.ranks[name] = r
	}
	return r
}

// maxRanks bounds the rankings kept.
const maxRanks = 1 << 17

// rendezvous is the weighted rendezvous score of (stream, member): with
// h uniform in (0, 1), -weight/ln(h) makes each member's share of streams
// proportional to its weight.
func rendezvous(name, addr string, weight float64) float64 {
	if weight <= 0 {
		weight = 1
	}
	f := fnv.New64a()
	f.Write([]byte(name))
	f.Write([]byte{0})
	f.Write([]byte(addr))
	h := (float64(mix64(f.Sum64())>>11) + 0.5) / (1 << 53)
	return -weight / math.Log(h)
}

// mix64 is splitmix64's finaliser: FNV-1a alone leaves the hashes of
// names that differ in their last bytes correlated.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// demandSet is who should hold a stream in mode demand.
type demandSet struct {
	// base are the members of the rendezvous set: min_copies-1 of them
	// besides the origin, up, in rank order.
	base []*member
	// extra are the members kept or added for viewers.
	extra []*member
	// add is the member a copy is added on now (nil: none), and why.
	add    *member
	reason string
}

func (d demandSet) has(m *member) bool {
	return slices.Contains(d.base, m) || slices.Contains(d.extra, m) || d.add == m
}

// placementChangedLocked has every stream planned again on every member,
// in mode demand, after a member went down or was paused, and after the
// first listing of a member back up: the members that should hold a copy
// of a stream are picked among those up and not paused, so a copy lost
// with a member is made on the next one at once, not at the next resync.
// (Planned at its return instead, before the member is listed and can
// pull, the copies made meanwhile would go before it holds its own.) In
// mode all a member's state changes what is wanted on no other member.
func (c *Controller) placementChangedLocked() {
	if c.opts.Replication.Mode != ModeDemand {
		return
	}
	select {
	case c.rediffCh <- struct{}{}:
	default:
	}
}

// demandSetLocked computes who should hold name, whose winning origin is
// w. It writes nothing.
func (c *Controller) demandSetLocked(name string, w *member, now time.Time) demandSet {
	r := c.opts.Replication
	limit := r.MaxCopies - 1 // besides the origin
	if r.MaxCopies <= 0 {
		limit = len(c.members)
	}
	var d demandSet
	rank := c.rankLocked(name)
	for _, m := range rank {
		if len(d.base) >= min(r.MinCopies-1, limit) {
			break
		}
		if m != w && m.health.state == MemberUp && !m.work.paused {
			d.base = append(d.base, m)
		}
	}
	// A member of the base set whose copy is not seen streaming (not
	// pulled yet, not streaming yet, or not listed since it came back) has
	// a copy beyond the set stand in for it: the copy that takes another's
	// place in the set streams before the other goes.
	standIns := 0
	for _, m := range d.base {
		if !c.streamsCopyLocked(m, name, w) {
			standIns++
		}
	}
	// Copies beyond the base set that exist stay while they may have
	// viewers or are younger than scale_down_after, or stand in.
	for _, m := range rank {
		if m == w || slices.Contains(d.base, m) {
			continue
		}
		cfg, ok := c.copyOfLocked(m, name, w)
		switch {
		case !ok:
		case len(d.base)+len(d.extra) < limit && c.keepCopyLocked(m, name, cfg, now):
			d.extra = append(d.extra, m)
		case standIns > 0 && m.health.state == MemberUp:
			// A down member's copy serves nobody: it stands in for none.
			d.extra = append(d.extra, m)
			standIns--
		}
	}
	if len(d.base)+len(d.extra) >= limit {
		return d
	}
	// Scale up: every holder above scale_up_utilization for two samples,
	// or a play request found none below its high water.
	reason := "utilization"
	hot := c.hotLocked(w, now)
	for _, m := range d.base {
		hot = hot && c.hotLocked(m, now)
	}
	for _, m := range d.extra {
		hot = hot && c.hotLocked(m, now)
	}
	if !hot {
		at, ok := c.wanted[name]
		if !ok || now.Sub(at) > wantedFor {
			return d
		}
		reason = "play"
	}
	for _, m := range rank {
		if m == w || d.has(m) || m.health.state != MemberUp || m.work.paused {
			continue
		}
		if l := m.health.load[0]; c.loadFresh(l, now) && l.Utilization < c.opts.Replication.ScaleUpUtilization {
			d.add, d.reason = m, reason
			break
		}
	}
	return d
}

// copyOfLocked returns this group's config of name on m pulling from w.
func (c *Controller) copyOfLocked(m *member, name string, w *member) (pullCfg, bool) {
	for _, cfg := range m.obs.configs[name] {
		if isPullURI(cfg.uri, w.spec.Address, c.opts.AppName, name) && c.ownsLocked(m, name, cfg) {
			return cfg, true
		}
	}
	return pullCfg{}, false
}

// keepCopyLocked reports whether a copy of name on m beyond the base set
// stays: it is younger than scale_down_after, or m's two latest samples do
// not both show it without viewers (no sample: it may have some).
func (c *Controller) keepCopyLocked(m *member, name string, cfg pullCfg, now time.Time) bool {
	if cfg.demand && now.Sub(cfg.madeAt()) < c.opts.Replication.ScaleDownAfter {
		return true
	}
	if m.health.load[0] == nil || m.health.load[1] == nil || !c.loadFresh(m.health.load[0], now) {
		return true // no fresh evidence that nobody watches it
	}
	return m.health.load[0].Viewers[name] > 0 || m.health.load[1].Viewers[name] > 0
}
