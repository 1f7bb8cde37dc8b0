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
	"strconv"
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
}

// LoadView is what demand copies need of the members' load: the two
// latest fresh samples of each member. The play service satisfies it.
type LoadView interface {
	// MemberLoad returns member's two latest load samples, newest first;
	// ok is false while it has no fresh sample.
	MemberLoad(member string) (l MemberLoad, ok bool)
}

// MemberLoad is a member's load as its two latest samples showed it.
type MemberLoad struct {
	// Utilization of the newest and the one before (-1 when there is no
	// sample before).
	Utilization [2]float64
	// Viewers of each stream, in the newest sample and the one before
	// (nil when there is none).
	Viewers [2]map[string]int
	// At is when the newest sample was taken.
	At time.Time
}

// SetLoad gives the controller the members' load, which demand copies
// follow. Safe for concurrent use; nil turns scaling off.
func (c *Controller) SetLoad(l LoadView) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.load = l
	c.allDirtyLocked()
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
	h := (float64(f.Sum64()>>11) + 0.5) / (1 << 53)
	return -weight / math.Log(h)
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
		if m != w && m.state == MemberUp && !m.paused {
			d.base = append(d.base, m)
		}
	}
	// Copies beyond the base set that exist stay while they may have
	// viewers or are younger than scale_down_after.
	for _, m := range rank {
		if m == w || slices.Contains(d.base, m) || len(d.base)+len(d.extra) >= limit {
			continue
		}
		if cfg, ok := c.copyOfLocked(m, name, w); ok && c.keepCopyLocked(m, name, cfg, now) {
			d.extra = append(d.extra, m)
		}
	}
	if c.load == nil || len(d.base)+len(d.extra) >= limit {
		return d
	}
	// Scale up: every holder above scale_up_utilization for two samples,
	// or a play request found none below its high water.
	holders := append([]*member{w}, d.base...)
	holders = append(holders, d.extra...)
	hot := true
	for _, h := range holders {
		l, ok := c.load.MemberLoad(h.spec.Name)
		if !ok || l.Utilization[0] < r.ScaleUpUtilization || l.Utilization[1] < r.ScaleUpUtilization {
			hot = false
			break
		}
	}
	reason := "utilization"
	if !hot {
		at, ok := c.wanted[name]
		if !ok || now.Sub(at) > wantedFor {
			return d
		}
		reason = "play"
	}
	for _, m := range rank {
		if m == w || d.has(m) || m.state != MemberUp || m.paused {
			continue
		}
		if l, ok := c.load.MemberLoad(m.spec.Name); ok && l.Utilization[0] < r.ScaleUpUtilization {
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
	if cfg.demandAt != 0 && now.Sub(time.Unix(cfg.demandAt, 0)) < c.opts.Replication.ScaleDownAfter {
		return true
	}
	if c.load == nil {
		return true
	}
	l, ok := c.load.MemberLoad(m.spec.Name)
	if !ok || l.Viewers[1] == nil {
		return true
	}
	return l.Viewers[0][name] > 0 || l.Viewers[1][name] > 0
}

// demandTag is the provenance tag value of a demand copy made at t.
func demandTag(t time.Time) string { return strconv.FormatInt(t.Unix(), 10) }
