package controller

// Member health: parking a member that fails, probing it, and the listings
// each member runs on demand.

import (
	"context"
	"maps"
	"slices"
	"strings"
	"time"

	"streamlb/internal/ems"
)

// memberFailedLocked counts a failed call against m's health: a 401 parks
// it as unauthorized; a failed listing, or three transport or 5xx failures
// in a row, park it as down.
func (c *Controller) memberFailedLocked(m *member, err error, listing bool) {
	switch {
	case ems.IsUnauthorized(err):
		c.setStateLocked(m, MemberUnauthorized, err)
	case ems.IsRetryable(err):
		if n := m.health.failStreak.Add(1); listing || n >= 3 {
			c.setStateLocked(m, MemberDown, err)
		}
	default:
		if listing {
			c.setStateLocked(m, MemberDown, err)
		}
	}
}

func (c *Controller) setStateLocked(m *member, state string, err error) {
	if err != nil {
		m.setErrLocked(err)
		c.rows.changed = true
	}
	if m.health.state == state {
		return
	}
	prev := m.health.state
	m.health.state = state
	c.allDirtyLocked()
	if state != MemberUp {
		// Back up, it changes the placement once it is listed (lister).
		c.placementChangedLocked()
	}
	close(m.health.stateChanged)
	m.health.stateChanged = make(chan struct{})
	e := Entry{Member: m.spec.Name}
	if err != nil {
		e.Detail = trimErr(err)
	}
	switch state {
	case MemberUp:
		m.health.lastErr, m.health.lastErrAt = "", time.Time{} // it no longer applies
		m.health.upAt = time.Now()
		m.health.failStreak.Store(0)
		m.work.needList = true
		e.Kind, e.Detail = EntryMemberUp, "was "+prev
	default:
		// Its sources are unknown from now, not absent: nothing is
		// removed on their account for as long as it lasts. An absence
		// seen before is forgotten too: the source may come and go
		// unseen meanwhile, so once the member is back its absence counts
		// again from a look taken after it (planLocked, unseen).
		for name, recs := range c.sources {
			if rec := recs[m]; rec != nil && !rec.absentSince.IsZero() {
				delete(recs, m)
				if len(recs) == 0 {
					delete(c.sources, name)
				}
				c.dirtyLocked(name)
			}
		}
		e.Kind = EntryMemberDown
		if state == MemberUnauthorized {
			e.Kind = EntryMemberUnauthorized
		}
	}
	c.record(e)
	c.wakeLocked(m)
}

func (c *Controller) wakeLocked(m *member) {
	select {
	case m.work.wake <- struct{}{}:
	default:
	}
}

// lister runs m's on-demand listings: confirmations of events too many to
// confirm one by one, relists after a name conflict or a return, a look
// at new pulls streaming, and the probes of a parked member. A few names
// are confirmed by calls of their own, which it starts when it is woken
// (dispatchConfirmsLocked); they do not wait for it.
//
// Probes back off, and keep backing off across returns that do not last:
// a member that answers a probe and fails the next call (a share of its
// calls failing) is probed no more often than one that stays down. Only a
// member that stayed up for a resync interval is probed at once when it
// fails again.
func (c *Controller) lister(ctx context.Context, m *member) {
	probes := 0
	var upAt, notBefore, fullAfter, inboundAfter time.Time
	var timer <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-m.work.wake:
		case <-timer:
		}
		timer = nil
		c.mu.Lock()
		if !c.isReady {
			c.mu.Unlock()
			continue // woken again once the first resync is done
		}
		state := m.health.state
		resync := c.opts.ResyncInterval // a reload may change it
		var (
			full, inbound bool
			removals      bool // a full listing is for removals only
			returned      bool // the first full listing since m came back
			announced     map[string]time.Time
			lookup        []string
			next          time.Duration // the soonest a listing waited for is due
		)
		later := func(d time.Duration) {
			if next == 0 || d < next {
				next = d
			}
		}
		// due reports whether at has come, and otherwise wakes the lister
		// then.
		due := func(at time.Time) bool {
			if wait := time.Until(at); wait > 0 {
				later(wait)
				return false
			}
			return true
		}
		if state == MemberUp {
			c.startConfirmsLocked(m)
			full = m.work.needList
			removals = !full
			returned = m.obs.fullAt.Before(m.health.upAt)
			if !full && m.work.needListRemove {
				// Removals are not urgent: they waited teardown_grace
				// already. Spaced listings serve them all, and leave the
				// member's time, and its names' confirmations, to new
				// streams.
				full = due(m.obs.fullAt.Add(c.removeListSpacing()))
			}
			// Events arriving meanwhile share the listing.
			full = full && due(fullAfter)
			// Names waiting for a full listing (m.work.needList: what m's
			// configs were may be stale) take no listing of the inbound
			// streams alone.
			if !full && !m.work.needList {
				switch {
				case len(m.work.confirm) > confirmByNameMax:
					// Names beyond what calls of their own serve share a
					// listing.
					inbound = true
				case m.work.needInbound && due(m.obs.inboundAt.Add(pullConfirmSpacing)):
					// Only pulls wait to be seen streaming: one listing
					// every pullConfirmSpacing answers them all, whatever
					// their number.
					inbound = true
				case len(m.work.recheck) > 0 && due(m.obs.inboundAt.Add(c.removeListSpacing())):
					// Removals elsewhere wait for a look at their sources
					// here: one listing every removeListSpacing answers
					// them all.
					inbound = true
				}
			}
			inbound = inbound && due(inboundAfter)
			if full || inbound {
				m.work.needInbound = false
				if full {
					m.work.needList, m.work.needListRemove = false, false
				}
				if len(m.work.confirm) > 0 {
					// A listing answers every name waiting.
					announced = m.work.confirm
					m.work.confirm = make(map[string]time.Time)
				}
				if len(m.work.recheck) > 0 {
					// The names removals wait for too, with no time of
					// announcement: they are not new streams.
					if announced == nil {
						announced = make(map[string]time.Time, len(m.work.recheck))
					}
					for name := range m.work.recheck {
						if _, ok := announced[name]; !ok {
							announced[name] = time.Time{}
						}
					}
					clear(m.work.recheck)
				}
			}
			for name := range m.work.lookup {
				lookup = append(lookup, name)
				delete(m.work.lookup, name)
			}
			if next > 0 {
				timer = time.After(next)
			}
		}
		c.mu.Unlock()
		if len(lookup) > 0 {
			c.lookupCreated(ctx, m, lookup)
		}
		if state != MemberUp {
			if !upAt.IsZero() && time.Since(upAt) > resync {
				probes = 0 // back for a while: a new outage
			}
			if wait := time.Until(notBefore); wait > 0 {
				timer = time.After(wait)
				continue
			}
			ok := c.probe(ctx, m)
			probes++
			// A down member is probed sooner at first; wrong credentials
			// will not fix themselves, so that member waits a full interval.
			wait := min(backoff(probes, time.Second, resync), resync)
			if state == MemberUnauthorized {
				wait = resync
			}
			notBefore = time.Now().Add(wait)
			if ok {
				upAt = time.Now()
				continue
			}
			timer = time.After(wait)
			continue
		}
		if !full && !inbound {
			continue
		}
		listed := time.Now()
		var changed map[string]struct{}
		var onChange func(string)
		if full && removals {
			changed = make(map[string]struct{})
			onChange = func(name string) { changed[name] = struct{}{} }
		}
		_, inboundTook := c.listMember(ctx, m, full, announced, nil, onChange)
		took := time.Since(listed)
		switch {
		case full && removals:
			// Only what the listing changed, and the removals it was
			// made for, need planning again. Other changes are queued
			// by what makes them (an event, a listing of the origin, a
			// member's return, a reload, in mode demand a change of
			// the members streams are placed on); what none of them
			// queues (in mode demand, a stand-in copy no longer needed
			// once the copy it stood in for streams) waits for the
			// resync's diff.
			c.mu.Lock()
			for name := range m.work.removals {
				changed[name] = struct{}{}
			}
			c.mu.Unlock()
			c.diffNames(m, slices.Collect(maps.Keys(changed)))
		case full:
			c.diffAll([]*member{m}, diffChunk)
			if returned {
				c.diffSourcesOf(m)
				c.mu.Lock()
				c.placementChangedLocked()
				c.mu.Unlock()
			}
		}
		// The next listing of a kind waits three times as long as the
		// last one of that kind took: a member listing thousands of
		// streams spends at most a quarter of its time answering them. A
		// full listing (the configs too) does not hold up the listing of
		// the inbound streams that confirms announced names, which takes
		// a fraction of its time. A listing that failed parked the
		// member: it is probed at once, and listed once back, not after a
		// pause as long as the timeout it ran into.
		c.mu.Lock()
		up := m.health.state == MemberUp
		c.mu.Unlock()
		fullAfter, inboundAfter = time.Time{}, time.Time{}
		if up {
			inboundAfter = listed.Add(max(c.opts.ConfirmInterval, 4*inboundTook))
			if full {
				fullAfter = listed.Add(max(c.opts.ConfirmInterval, 4*took))
			}
		}
		timer = time.After(0) // whatever arrived meanwhile
	}
}

// removeListSpacing is the least time between two full listings of a
// member made only for the removals that wait for one: a tenth of
// teardown_grace (1 s by default), at most 10 s. Streams ending one after
// another then cost a member one listing of its configs in that time,
// not one after another at the lister's pace.
func (c *Controller) removeListSpacing() time.Duration {
	return min(c.opts.TeardownGrace/10, 10*time.Second)
}

// pullConfirmSpacing is the least time between two listings of a
// member's inbound streams made only to see its new pulls streaming (an
// event says so sooner, where the member posts its events).
const pullConfirmSpacing = 2 * time.Second

// Announced names are confirmed on their origin by one getStreamInfo call
// each, at most perNameConfirm at a time per origin, as long as no more
// than confirmByNameMax wait; more share a listing of the origin's inbound
// streams, which answers them all. A flood of forged events then costs
// the origin at most perNameConfirm small calls at a time, and listings at
// the lister's pace.
const (
	perNameConfirm   = 4
	confirmByNameMax = 16
)

// dispatchConfirmsLocked starts the calls that confirm names waiting on
// origin m one by one, if few wait (startConfirmsLocked), and wakes m's
// lister for the names that must wait for a listing.
func (c *Controller) dispatchConfirmsLocked(m *member) {
	if c.startConfirmsLocked(m) {
		c.wakeLocked(m)
	}
}

// recheckOnLocked asks for a look at name on origin o, for a removal that
// waits for one: o's next listing of its inbound streams, at most one every
// removeListSpacing, answers every name asked for. Past maxConfirm names,
// a full listing of o answers them all.
func (c *Controller) recheckOnLocked(o *member, name string) {
	if anyTagged(o.obs.configs[name]) {
		// A listing of the inbound streams leaves out a name o held as
		// streamlb's pull at its last full listing: only a full one, as
		// spaced as removals' own, can show it.
		o.work.needListRemove = true
	} else if _, ok := o.work.recheck[name]; !ok {
		if len(o.work.recheck) >= maxConfirm {
			o.work.needList = true
		} else {
			o.work.recheck[name] = struct{}{}
		}
	}
	c.wakeLocked(o)
}

// startConfirmsLocked starts a call of its own for each name waiting on
// origin m, if few wait: as soon as one of m's perNameConfirm slots is free
// and the name has no call in flight already. It reports whether names
// are left for the lister (a listing, or m's return).
func (c *Controller) startConfirmsLocked(m *member) bool {
	if len(m.work.confirm) == 0 {
		return false
	}
	if !c.isReady || m.health.state != MemberUp || m.work.needList || (m.work.listing && !m.work.inboundListed) || m.run.ctx == nil || m.run.stopped ||
		len(m.work.confirm) > confirmByNameMax {
		return true
	}
	for name, at := range m.work.confirm {
		if len(m.work.confirming) >= perNameConfirm {
			break // a call that ends starts the next
		}
		if _, busy := m.work.confirming[name]; busy {
			continue // asked again meanwhile: once the answer is in
		}
		delete(m.work.confirm, name)
		m.work.confirming[name] = struct{}{}
		ctx := m.run.ctx
		m.run.done.Go(func() { c.confirmByName(ctx, m, name, at) })
	}
	return false
}

// confirmByName confirms one announced name on origin m with its own
// getStreamInfo call: a stream that EMS shows and that is not a pull of
// this group's or from a member is a source; one EMS answers "not found"
// for is absent. A call that fails parks m, as a failed listing does, and
// leaves the name unknown. The call never overlaps the listing of m's
// inbound streams (see listMember): an answer is never applied over a
// newer listing's, and one found while a full listing reads m's configs
// is kept when that listing is applied.
func (c *Controller) confirmByName(ctx context.Context, m *member, name string, announced time.Time) {
	started := time.Now()
	var info ems.StreamInfo
	err := c.call(ctx, m, "getStreamInfo", func(ctx context.Context) error {
		var err error
		info, err = m.spec.Client.GetStreamInfo(ctx, name)
		return err
	})
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(m.work.confirming, name)
	c.confirmed.Broadcast()
	if ctx.Err() != nil {
		return
	}
	defer c.dispatchConfirmsLocked(m)
	known, source := false, false
	if desc, fail := ems.IsFail(err); fail {
		// Only EMS's "Stream NAME not found" says the stream is not
		// there; any other FAIL says nothing about it: left unknown.
		known = strings.HasSuffix(desc, " not found")
	} else if err != nil {
		c.memberFailedLocked(m, err, true)
		return
	} else {
		known, source = true, !c.isReplicaInfo(info)
	}
	if !known || m.health.state != MemberUp {
		return // parked meanwhile: what it holds is unknown
	}
	// Answered while a listing reads m's configs (one answered while a
	// listing waits to start is older than it, and superseded by it).
	newer := m.work.listing && m.work.inboundListed
	if newer && len(m.work.newer) >= maxConfirm {
		// More answers than the listing in flight keeps: its own result
		// decides, and a replica waiting for this name asks again.
		return
	}
	if source {
		m.obs.inbound[name] = struct{}{}
	} else {
		delete(m.obs.inbound, name)
	}
	c.dirtyLocked(name)
	if len(m.obs.checked) < maxConfirm {
		m.obs.checked[name] = started
	}
	if newer {
		m.work.newer[name] = source
	}
	c.applyListingLocked(m, started, time.Now(), false, map[string]time.Time{name: announced}, nil, nil)
}

// isReplicaInfo reports whether a stream EMS describes is a replica: a
// pull tagged by streamlb, or pulling from a member.
func (c *Controller) isReplicaInfo(info ems.StreamInfo) bool {
	ps := info.PullSettings
	if ps == nil {
		return false
	}
	if _, ok := ps.Vars[tagGroup]; ok {
		return true
	}
	_, ok := c.byAddr[uriHost(ps.URI)]
	return ok
}

// lookupCreated asks m for the creation time of each stream in names: each
// is a source on several members, and the winner may depend on it. A name
// that cannot be looked up now is asked for again at the next resync.
func (c *Controller) lookupCreated(ctx context.Context, m *member, names []string) {
	for _, name := range names {
		var info ems.StreamInfo
		err := c.call(ctx, m, "getStreamInfo", func(ctx context.Context) error {
			var err error
			info, err = m.spec.Client.GetStreamInfo(ctx, name)
			return err
		})
		if ctx.Err() != nil {
			return
		}
		c.mu.Lock()
		if err != nil {
			if _, fail := ems.IsFail(err); !fail {
				c.memberFailedLocked(m, err, false)
			}
		} else if rec := c.sources[name][m]; rec != nil && info.Created > 0 {
			rec.created = info.Created
			c.dirtyLocked(name)
			c.enqueueNeededLocked(name, time.Now())
		}
		c.mu.Unlock()
	}
}

// probe checks a parked member with one call; on success the member is up
// again and its resync is queued.
func (c *Controller) probe(ctx context.Context, m *member) bool {
	err := c.call(ctx, m, "version", func(ctx context.Context) error {
		_, err := m.spec.Client.Version(ctx)
		return err
	})
	if ctx.Err() != nil {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		if m.health.state != MemberUnauthorized || ems.IsUnauthorized(err) {
			m.setErrLocked(err)
			c.rows.changed = true
		}
		return false
	}
	c.setStateLocked(m, MemberUp, nil)
	return true
}

// setErrLocked records err as m's last error, with its time.
func (m *member) setErrLocked(err error) {
	m.health.lastErr, m.health.lastErrAt = trimErr(err), time.Now()
}
