package controller

// Changes to the member list and maintenance pauses.

import (
	"errors"
	"fmt"
	"log/slog"
)

// Pause stops giving new work to the named member; its replicas stay.
func (c *Controller) Pause(name string) error { return c.setPaused(name, true) }

// Resume gives work to a paused member again.
func (c *Controller) Resume(name string) error { return c.setPaused(name, false) }

// ErrUnknownMember is returned for a member name that is not in the group.
var ErrUnknownMember = errors.New("unknown member")

func (c *Controller) setPaused(name string, paused bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := c.byName[name]
	if m == nil {
		return fmt.Errorf("%w %q", ErrUnknownMember, name)
	}
	if m.work.paused == paused {
		return nil
	}
	m.work.paused = paused
	c.allDirtyLocked()
	if paused {
		// A resumed member keeps the copies it held while paused: the
		// extra copies made meanwhile go at the next resync.
		c.placementChangedLocked()
	}
	close(m.health.stateChanged)
	m.health.stateChanged = make(chan struct{})
	if !paused {
		m.work.needList = true
		c.wakeLocked(m)
	}
	m.log(c.log).Info("member paused", "paused", paused)
	return nil
}

// SetMembers applies a reloaded member list: new members are added and
// filled, removed members are forgotten (their replicas stay, for prune),
// members whose spec is unchanged keep their state and workers, and a
// member whose client changed (new credentials) starts afresh. While Run
// runs, its member loop starts the new members and stops the old ones
// soon after SetMembers returns.
func (c *Controller) SetMembers(specs []MemberSpec, same func(a, b MemberSpec) bool) error {
	c.mu.Lock()
	var stop []*member
	// changed: whether what a status row shows of the members changed
	// (which members there are, their order, whether they take replicas).
	changed := len(specs) != len(c.members)
	keep := make(map[string]bool)
	var next []*member
	byName := make(map[string]*member)
	byAddr := make(map[string]*member)
	for i, s := range specs {
		old := c.byName[s.Name]
		if old != nil && same(old.spec, s) {
			// Placement changes too when the weight does: the members'
			// rankings are made anew below, and mode demand's rows show them.
			changed = changed || old.idx != i || old.spec.Replicate != s.Replicate || old.spec.Weight != s.Weight
			old.idx = i
			// What a reload may change of a member it keeps, field by
			// field: workers read the name, address and client unlocked.
			old.spec.Replicate, old.spec.Host, old.spec.Weight = s.Replicate, s.Host, s.Weight
			next = append(next, old)
			keep[s.Name] = true
		} else {
			if old != nil {
				stop = append(stop, old)
				keep[s.Name] = true
			}
			changed = true
			nm := c.newMember(s, i)
			nm.work.needList = true
			next = append(next, nm)
		}
		m := next[len(next)-1]
		if _, dup := byName[s.Name]; dup {
			c.mu.Unlock()
			return fmt.Errorf("member %q: name used twice", s.Name)
		}
		if _, dup := byAddr[s.Address]; dup {
			c.mu.Unlock()
			return fmt.Errorf("member %q: address %s used twice", s.Name, s.Address)
		}
		byName[s.Name], byAddr[s.Address] = m, m
	}
	for _, m := range c.members {
		if !keep[m.spec.Name] {
			stop = append(stop, m)
		}
	}
	// Sources follow a member that was replaced (new credentials) and are
	// forgotten with a member that left: it is no origin any more, and its
	// replicas elsewhere are left for prune.
	for name, recs := range c.sources {
		for m, rec := range recs {
			if byName[m.spec.Name] == m {
				continue
			}
			delete(recs, m)
			if nm := byName[m.spec.Name]; nm != nil && nm.spec.Address == m.spec.Address {
				recs[nm] = rec
			}
		}
		if len(recs) == 0 {
			delete(c.sources, name)
		}
	}
	c.members, c.byName, c.byAddr = next, byName, byAddr
	clear(c.ranks) // rankings hold the members they were made of
	if changed {
		// A reload that leaves the members as they were keeps the rows:
		// rebuilding every one costs about 16 µs per stream.
		c.allDirtyLocked()
	}
	if c.running && !c.stopping {
		// The retired members take no more work from now on; Run's
		// member loop waits for their goroutines and starts the new
		// members.
		for _, m := range stop {
			m.run.stopped = true
			if m.run.cancel != nil {
				m.run.cancel()
			}
			m.work.queue.ShutDown()
		}
		c.retired = append(c.retired, stop...)
		select {
		case c.membersCh <- struct{}{}:
		default:
		}
	}
	c.mu.Unlock()
	c.TriggerResync()
	return nil
}

func (m *member) log(l *slog.Logger) *slog.Logger {
	return l.With("member", m.spec.Name)
}
