package controller

// What a listing tells: the sources of a member, and which replicas need
// work after it. These are the only writers of the sources.

import (
	"fmt"
	"runtime"
	"sync"
	"time"
)

// applyListingLocked updates the sources of origin m after a successful
// listing that started at looked. A full listing shows which inbound
// streams are pulls; an inbound-only one does not (m's configs may have
// changed since its last full listing, for instance by another balancer of
// the group), so it makes sources, new or back, only of the names it was
// asked to confirm: those announced by events that were not a replica's. A full listing does not
// make a new source of a name that wasPull (the member's configs before it)
// showed as a replica: a replica whose config was removed between the
// listing's two calls would look like one. An inbound-only listing looks
// only at the names it confirms and those it no longer shows (gone): the
// others are as the listing before left them, and an origin may list
// thousands.
func (c *Controller) applyListingLocked(m *member, looked, now time.Time, full bool, announced map[string]time.Time, wasPull map[string][]pullCfg, gone []string) {
	present := func(name string) {
		recs := c.sourceRecsLocked(name)
		rec := recs[m]
		switch {
		case rec == nil:
			recs[m] = &source{firstSeen: now}
			c.met.sourcesSeen.Inc()
			c.sourceAppearedLocked(m, name, recs, now)
		case !rec.absentSince.IsZero():
			rec.absentSince = time.Time{}
			if rec.firstSeen.IsZero() { // made by absentFromLookLocked
				rec.firstSeen = now
				c.met.sourcesSeen.Inc()
			}
			c.sourceAppearedLocked(m, name, recs, now)
		}
	}
	absent := func(name string, recs map[*member]*source) {
		rec := recs[m]
		if rec == nil || !rec.absentSince.IsZero() || c.isSourceLocked(m, name) {
			return
		}
		rec.absentSince, rec.absentLook = now, looked
		c.dirtyLocked(name)
		c.record(Entry{At: now, Kind: EntrySourceEnded, Member: m.spec.Name, Stream: name})
		c.enqueueAllLocked(name, 0)
		c.enqueueAllLocked(name, c.opts.TeardownGrace)
	}
	for _, at := range announced {
		if !at.IsZero() { // a name a removal waits for has none
			c.met.confirmWait.Observe(now.Sub(at).Seconds())
		}
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
		if rec := c.sources[name][m]; (rec == nil || rec.firstSeen.IsZero()) && c.anyReplicaLocked(wasPull[name]) {
			continue
		}
		present(name)
	}
	for name, recs := range c.sources {
		absent(name, recs)
	}
}

// absentFromLookLocked records name absent from origin o since the last
// look at o that can show it, if that look was taken after since and did
// not show it, and reports whether it did. since is when a replica pulling
// name from o was first known, and no look after it has found the source
// gone: the source came and went between two looks at o, and the replica
// was pulled meanwhile. That look is the first evidence of its end, so the
// grace counts from there, whatever earlier looks did or did not show.
func (c *Controller) absentFromLookLocked(o *member, name string, since time.Time) bool {
	at := c.lookedAtLocked(o, name)
	if _, shown := o.obs.inbound[name]; shown || at.Before(since) {
		return false
	}
	recs := c.sourceRecsLocked(name)
	rec := recs[o]
	switch {
	case rec == nil:
		rec = &source{} // firstSeen stays zero: never seen
		recs[o] = rec
	case rec.absentSince.IsZero() || !rec.absentLook.Before(since):
		return false // present, or its absence already counts from a look since
	}
	// The look ended by now: the grace counts from here.
	now := time.Now()
	rec.absentSince, rec.absentLook = now, at
	c.dirtyLocked(name)
	c.record(Entry{At: now, Kind: EntrySourceEnded, Member: o.spec.Name, Stream: name,
		Detail: "gone at a look at " + at.UTC().Format(time.RFC3339) + ", after a replica of it was found"})
	return true
}

// sourceRecsLocked returns the records of name as a source, by member,
// made empty if there were none.
func (c *Controller) sourceRecsLocked(name string) map[*member]*source {
	recs := c.sources[name]
	if recs == nil {
		recs = make(map[*member]*source, 1)
		c.sources[name] = recs
	}
	return recs
}

// shownUnaskedLocked casts doubt on the absence of each source of m that a
// listing of m's inbound streams shows again without having asked about
// it (not in announced): such a listing makes no source of a name, which
// may be another balancer's pull, but the source may be back. Its absence
// counts from no look any more: the plan asks m about it, and a look that
// finds it gone again starts the grace anew (absentFromLookLocked).
func (c *Controller) shownUnaskedLocked(m *member, appeared []string, announced map[string]time.Time) {
	for _, name := range appeared {
		if _, asked := announced[name]; asked {
			continue
		}
		if rec := c.sources[name][m]; rec != nil && !rec.absentSince.IsZero() {
			rec.absentLook = time.Time{}
			c.dirtyLocked(name)
		}
	}
}

// lookedAtLocked returns when the last look at o that can show name as a
// source started: a listing of its inbound streams (but for a name o held
// as streamlb's pull at its last full listing, which such a listing does
// not show), a full listing, or a look at name alone. A look taken before
// o last came back up does not count: zero then.
func (c *Controller) lookedAtLocked(o *member, name string) time.Time {
	at := o.obs.fullAt
	if !anyTagged(o.obs.configs[name]) {
		at = o.obs.inboundAt
	}
	if checked := o.obs.checked[name]; checked.After(at) {
		at = checked
	}
	if at.Before(o.health.upAt) {
		return time.Time{}
	}
	return at
}

// sourceAppearedLocked journals name appearing as a source on m, and
// queues what it needs.
func (c *Controller) sourceAppearedLocked(m *member, name string, recs map[*member]*source, now time.Time) {
	c.dirtyLocked(name)
	c.record(Entry{At: now, Kind: EntrySourceAppeared, Member: m.spec.Name, Stream: name})
	if why := unreplicable(name); why != "" {
		c.record(Entry{At: now, Kind: EntryUnreplicable, Member: m.spec.Name, Stream: name, Detail: why})
	}
	if n := c.presentOn(recs); n > 1 {
		c.record(Entry{At: now, Kind: EntryConflict, Member: m.spec.Name, Stream: name,
			Detail: fmt.Sprintf("a source on %d members; one origin is replicated", n)})
		c.needCreatedLocked(name)
	}
	c.enqueueNeededLocked(name, now)
}

// presentOn counts the members where recs says the source is present.
func (c *Controller) presentOn(recs map[*member]*source) int {
	n := 0
	for _, rec := range recs {
		if rec.absentSince.IsZero() {
			n++
		}
	}
	return n
}

// maxLookups bounds the names waiting for a creation time on one member.
const maxLookups = 1024

// needCreatedLocked asks the origins of name whose stream's creation time
// is not known for it: name is a source on several members, and the
// winner may depend on it.
func (c *Controller) needCreatedLocked(name string) {
	for o, rec := range c.sources[name] {
		if rec.created != 0 || !rec.absentSince.IsZero() || len(o.work.lookup) >= maxLookups {
			continue
		}
		o.work.lookup[name] = struct{}{}
		c.wakeLocked(o)
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
				c.dirtyLocked(name)
			}
		}
		if len(recs) == 0 {
			delete(c.sources, name)
			delete(c.ranks, name)
		}
	}
}

// diffChunk is how many streams a diff plans on one member, or how many
// views it computes, per hold of the controller's lock. At 50,000 streams
// × 16 members the diff after a resync's listings used to hold the lock for
// 0.4 to 0.6 s in one go, and every event, worker and status read waited
// that long. At 10,000 × 16 (BenchmarkDiff) the longest hold is 7 to 20
// ms instead of 57 to 82, for 12 to 15 % more time in all.
const diffChunk = 8192

// diffAll queues every stream that needs work on each member of ms that is
// up, and returns the longest it held the lock. It takes the lock itself,
// and lets go of it every chunk streams: first the streams' views, then
// the planning, member by member, a member per processor at a time, so
// that a member's maps stay in its processor's cache (planning a chunk of
// streams on every member in turn, a hold each, was 15 to 30 % slower).
//
// A plan may read a view older than its hold. That is safe: the diff only
// queues names, a worker plans its name again under the lock with a fresh
// view, and whatever changes a stream meanwhile (an event, a listing, a
// reload) queues it itself.
func (c *Controller) diffAll(ms []*member, chunk int) time.Duration {
	var longest time.Duration
	hold := func(fn func(now time.Time)) {
		c.mu.Lock()
		start := time.Now()
		fn(start)
		longest = max(longest, time.Since(start))
		c.mu.Unlock()
		if c.afterDiffChunk != nil {
			c.afterDiffChunk()
		}
	}
	var names []string
	hold(func(time.Time) {
		names = make([]string, 0, len(c.sources))
		for name := range c.sources {
			names = append(names, name)
		}
	})
	views := make([]streamView, 0, len(names))
	for i := 0; i < len(names); i += chunk {
		hold(func(now time.Time) {
			for _, name := range names[i:min(i+chunk, len(names))] {
				if _, ok := c.sources[name]; ok {
					views = append(views, c.viewLocked(name, now))
				}
			}
		})
	}
	parts := max(1, min(runtime.GOMAXPROCS(0), len(ms)))
	for k := 0; k < len(ms); k += parts {
		group := ms[k:min(k+parts, len(ms))]
		for i := 0; i < len(views); i += chunk {
			part := views[i:min(i+chunk, len(views))]
			hold(func(now time.Time) {
				c.planEachLocked(group, func(m *member) { c.diffViewsLocked(m, part, now) })
			})
		}
		hold(func(now time.Time) {
			c.planEachLocked(group, func(m *member) { c.diffOrphansLocked(m, now) })
		})
	}
	return longest
}

// diffNames queues on m every stream of names that needs work there. It
// lets go of the lock every diffChunk names.
func (c *Controller) diffNames(m *member, names []string) {
	if c.diffedNames != nil {
		c.diffedNames(m, len(names))
	}
	for i := 0; i < len(names); i += diffChunk {
		c.mu.Lock()
		if c.byName[m.spec.Name] != m || m.health.state != MemberUp {
			c.mu.Unlock()
			return
		}
		now := time.Now()
		for _, name := range names[i:min(i+diffChunk, len(names))] {
			if _, ok := c.sources[name]; ok {
				v := c.viewLocked(name, now)
				c.diffViewLocked(m, &v, now)
			} else {
				c.diffOrphanLocked(m, name, now)
			}
		}
		c.mu.Unlock()
	}
}

// diffSourcesOf queues on every other member the streams whose source is
// on o and that need work there, after o's first listing since it came
// back. While o could not be listed its sources were unknown, and nothing
// was done about their replicas; those the other members lost meanwhile
// (EMS deletes a keepAlive=0 pull whose connection drops) are pulled
// again now, not at the next resync.
func (c *Controller) diffSourcesOf(o *member) {
	c.mu.Lock()
	if c.byName[o.spec.Name] != o || o.health.state != MemberUp {
		c.mu.Unlock()
		return
	}
	var names []string
	for name, recs := range c.sources {
		if rec := recs[o]; rec != nil && rec.absentSince.IsZero() {
			names = append(names, name)
		}
	}
	others := make([]*member, 0, len(c.members))
	for _, m := range c.members {
		if m != o {
			others = append(others, m)
		}
	}
	c.mu.Unlock()
	for _, m := range others {
		c.diffNames(m, names)
	}
}

// planEachLocked runs plan for each member of ms still in the group and up,
// each on a goroutine of its own but the first: plan reads the controller
// and writes only its member's queue.
func (c *Controller) planEachLocked(ms []*member, plan func(m *member)) {
	var wg sync.WaitGroup
	var first *member
	for _, m := range ms {
		if c.byName[m.spec.Name] != m || m.health.state != MemberUp {
			continue
		}
		if first == nil {
			first = m
			continue
		}
		wg.Go(func() { plan(m) })
	}
	if first != nil {
		plan(first) // this goroutine takes a member: it would only wait
	}
	wg.Wait()
}

// diffViewsLocked queues on m every stream of views that needs work there.
// It writes only m's queue, so that planEachLocked can run it for several
// members at once. A replica waiting out its source's grace is queued for
// when the grace ends, not now: a worker would only plan it to wait again,
// and after each removal listing of a member that was every stream ended
// in the last teardown_grace, planned under the controller's lock.
func (c *Controller) diffViewsLocked(m *member, views []streamView, now time.Time) {
	for i := range views {
		c.diffViewLocked(m, &views[i], now)
	}
}

// diffViewLocked queues on m the stream of v if it needs work there
// (diffViewsLocked).
func (c *Controller) diffViewLocked(m *member, v *streamView, now time.Time) {
	// A work record of a replica now present is dropped by its worker.
	a := c.planViewLocked(m, v, now)
	switch {
	case a.kind == actWait && !a.relist && !a.confirmPull:
		m.work.queue.AddAfter(v.name, a.after)
	case a.kind != actNone || a.relist || a.confirmPull || (a.state == StatePresent && m.work.ops[v.name] != nil):
		m.work.queue.Add(v.name)
	}
}

// diffOrphansLocked queues on m every name it holds configs of that is a
// source nowhere and needs work there.
func (c *Controller) diffOrphansLocked(m *member, now time.Time) {
	for name := range m.obs.configs {
		if _, ok := c.sources[name]; !ok {
			c.diffOrphanLocked(m, name, now)
		}
	}
}

// diffOrphanLocked queues on m name, a source nowhere, if it needs work
// there. The view has no origin, and computing it reads only.
func (c *Controller) diffOrphanLocked(m *member, name string, now time.Time) {
	if a := c.planLocked(m, name, now); a.kind != actNone {
		m.work.queue.Add(name)
	}
}

// enqueueNeededLocked queues name, ahead of resync and retry work, on the
// members that need work for it. A member not listed yet is left to the
// diff that follows its first listing: planning for it would queue every
// stream, for nothing.
func (c *Controller) enqueueNeededLocked(name string, now time.Time) {
	v := c.viewLocked(name, now)
	for _, m := range c.members {
		if !m.obs.listed {
			continue
		}
		if a := c.planViewLocked(m, &v, now); a.kind != actNone || a.relist || a.confirmPull {
			m.work.queue.AddUrgent(name)
		}
	}
}

func (c *Controller) enqueueAllLocked(name string, after time.Duration) {
	for _, m := range c.members {
		m.work.queue.AddAfter(name, after)
	}
}

// failingTransitionsLocked journals m's replicas that a full listing shows
// not streaming past the grace, and those streaming again.
func (c *Controller) failingTransitionsLocked(m *member, now time.Time) {
	var newly []uint64
	for id, since := range m.obs.stalled {
		if _, ok := m.obs.failing[id]; !ok && now.Sub(since) > c.opts.TeardownGrace {
			newly = append(newly, id)
		}
	}
	back := 0
	for id := range m.obs.failing {
		if _, ok := m.obs.stalled[id]; !ok {
			back++
		}
	}
	if len(newly) == 0 && back == 0 {
		return
	}
	names := m.obs.namesByID()
	for _, id := range newly {
		m.obs.failing[id] = names[id]
		c.record(Entry{Kind: EntryReplicaFailing, Member: m.spec.Name, Stream: names[id],
			Detail: "not streaming since " + m.obs.stalled[id].UTC().Format(time.RFC3339)})
	}
	for id, name := range m.obs.failing {
		if _, ok := m.obs.stalled[id]; ok {
			continue
		}
		delete(m.obs.failing, id)
		if _, ok := names[id]; ok { // else removed: journaled as such
			c.record(Entry{Kind: EntryReplicaRecovered, Member: m.spec.Name, Stream: name})
		}
	}
}

// dirtyListingLocked marks the rows a full listing of m may have changed
// (listingChangesLocked).
func (c *Controller) dirtyListingLocked(m *member, oldConfigs map[string][]pullCfg, oldInbound map[string]struct{}, oldStalled map[uint64]time.Time) {
	if c.rows.all {
		return
	}
	c.listingChangesLocked(m, oldConfigs, oldInbound, oldStalled, c.dirtyLocked)
}

// listingChangesLocked calls changed with each name whose configs, inbound
// presence or streaming state on m differ between a full listing and the
// listing before it (old). A name may be passed more than once.
func (c *Controller) listingChangesLocked(m *member, oldConfigs map[string][]pullCfg, oldInbound map[string]struct{}, oldStalled map[uint64]time.Time, changed func(name string)) {
	for name, cfgs := range m.obs.configs {
		if !sameConfigs(cfgs, oldConfigs[name]) {
			changed(name)
		}
	}
	for name := range oldConfigs {
		if _, ok := m.obs.configs[name]; !ok {
			changed(name)
		}
	}
	for name := range m.obs.inbound {
		if _, ok := oldInbound[name]; !ok {
			changed(name)
		}
	}
	for name := range oldInbound {
		if _, ok := m.obs.inbound[name]; !ok {
			changed(name)
		}
	}
	stalled := false
	for id := range m.obs.stalled {
		if _, ok := oldStalled[id]; !ok {
			stalled = true
			break
		}
	}
	if !stalled {
		for id := range oldStalled {
			if _, ok := m.obs.stalled[id]; !ok {
				stalled = true
				break
			}
		}
	}
	if stalled {
		names := m.obs.namesByID()
		for id := range m.obs.stalled {
			if _, ok := oldStalled[id]; !ok {
				changed(names[id])
			}
		}
		for id := range oldStalled {
			if _, ok := m.obs.stalled[id]; !ok {
				if n, ok := names[id]; ok {
					changed(n)
				}
			}
		}
	}
}

// sameConfigs reports whether two listings of one name's configs agree.
func sameConfigs(a, b []pullCfg) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
