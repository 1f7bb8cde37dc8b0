package controller

import (
	"cmp"
	"slices"
	"time"
)

// Status is the one snapshot of the group that the status API, the
// dashboard, the status command and the metrics read. Its JSON form is the
// contract of DESIGN.md §4. It never holds a credential.
type Status struct {
	Converged  bool           `json:"converged"`
	Members    []MemberStatus `json:"members"`
	Streams    []StreamStatus `json:"streams"`
	Conflicts  []Conflict     `json:"conflicts"`
	QueueDepth int            `json:"queue_depth"`
	LastResync *ResyncStatus  `json:"last_resync"`
	LastReload *ReloadStatus  `json:"last_reload,omitempty"`
}

// MemberStatus is one member's health.
type MemberStatus struct {
	Name      string `json:"name"`
	Address   string `json:"address"`
	API       string `json:"api"`
	State     string `json:"state"`
	Paused    bool   `json:"paused"`
	Replicate bool   `json:"replicate"`
	LastError string `json:"last_error"`
	// LastErrorAt is when LastError happened; zero when there is none.
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
	LatencyMS   float64   `json:"latency_ms"`
	// SkippedEntries counts the entries of the member's last listConfig
	// that did not decode and were left out; SkipError says why.
	SkippedEntries int    `json:"skipped_entries,omitempty"`
	SkipError      string `json:"skip_error,omitempty"`
}

// StreamStatus is one source stream and its replicas, by member name.
type StreamStatus struct {
	Name     string                   `json:"name"`
	Origin   string                   `json:"origin"`
	Replicas map[string]ReplicaStatus `json:"replicas"`
}

// ReplicaStatus is one replica's state.
type ReplicaStatus struct {
	State     string    `json:"state"`
	Since     time.Time `json:"since,omitzero"`
	Attempts  int       `json:"attempts"`
	LastError string    `json:"last_error"`
	// Reason says why a replica is unknown, unreplicable, in conflict or
	// not streaming yet.
	Reason string `json:"reason,omitempty"`
}

// Conflict is a stream name streamlb leaves alone on a member.
type Conflict struct {
	Stream string `json:"stream"`
	Member string `json:"member"`
	Origin string `json:"origin"`
	Reason string `json:"reason"`
}

// ResyncStatus describes the last full resync.
type ResyncStatus struct {
	At         time.Time `json:"at"`
	DurationMS float64   `json:"duration_ms"`
	Calls      int       `json:"calls"`
}

// Snapshot returns the current status. Safe for concurrent use.
func (c *Controller) Snapshot() Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.snapshotLocked(time.Now())
}

func (c *Controller) snapshotLocked(now time.Time) Status {
	st := Status{Converged: true, Members: []MemberStatus{}, Streams: []StreamStatus{}, Conflicts: []Conflict{}}
	for _, m := range c.members {
		st.Members = append(st.Members, MemberStatus{
			Name: m.spec.Name, Address: m.spec.Address, API: m.spec.API, State: m.state,
			Paused: m.paused, Replicate: m.spec.Replicate, LastError: m.lastErr, LastErrorAt: m.lastErrAt, SkippedEntries: m.skipped, SkipError: m.skipErr, LatencyMS: ms64(time.Duration(m.latency.Load())),
		})
		st.QueueDepth += m.queue.Len()
		if m.state != MemberUp {
			st.Converged = false
		}
	}
	if !c.isReady {
		st.Converged = false
	}
	c.eachReplicaLocked(now, func(name string, w, m *member, rs ReplicaStatus, reason string) {
		if m == nil {
			st.Streams = append(st.Streams, StreamStatus{Name: name, Origin: w.spec.Name, Replicas: map[string]ReplicaStatus{}})
			return
		}
		if rs.State == StateConflict {
			st.Conflicts = append(st.Conflicts, Conflict{Stream: name, Member: m.spec.Name, Origin: w.spec.Name, Reason: reason})
		}
		if blocksConvergence(rs.State) && m.state == MemberUp && !m.paused {
			st.Converged = false
		}
		st.Streams[len(st.Streams)-1].Replicas[m.spec.Name] = rs
	})
	// The same name as a source on two origins: the later one is reported.
	c.eachSourceConflictLocked(now, func(name string, w, m *member) {
		st.Conflicts = append(st.Conflicts, Conflict{Stream: name, Member: m.spec.Name, Origin: w.spec.Name,
			Reason: "also a source on " + w.spec.Name + ", whose copy is replicated"})
	})
	slices.SortFunc(st.Streams, func(a, b StreamStatus) int { return cmp.Compare(a.Name, b.Name) })
	slices.SortFunc(st.Conflicts, func(a, b Conflict) int {
		return cmp.Or(cmp.Compare(a.Stream, b.Stream), cmp.Compare(a.Member, b.Member))
	})
	if !c.resync.At.IsZero() {
		r := c.resync
		st.LastResync = &r
	}
	if c.lastReload != nil {
		r := *c.lastReload
		st.LastReload = &r
	}
	return st
}

// eachReplicaLocked calls fn for each stream that has a winning origin w:
// once with m nil (and rs zero) for the stream itself, then for each
// desired replica on a member m, with its state as reported and, for a
// conflict, the reason.
func (c *Controller) eachReplicaLocked(now time.Time, fn func(name string, w, m *member, rs ReplicaStatus, reason string)) {
	for name := range c.sources {
		w, _ := c.winnerLocked(name)
		if w == nil {
			continue
		}
		fn(name, w, nil, ReplicaStatus{State: StatePresent}, "")
		for _, m := range c.members {
			if m == w {
				continue
			}
			a := c.planLocked(m, name, now)
			if !a.desired {
				continue
			}
			rs := ReplicaStatus{State: a.state, Reason: a.reason}
			if o := m.ops[name]; o != nil {
				rs.Attempts, rs.LastError = o.attempts, o.lastErr
				if o.state == a.state {
					rs.Since = o.since
				}
			}
			if a.kind == actPull && rs.Attempts > 0 {
				rs.State = StatePending
			}
			fn(name, w, m, rs, a.reason)
		}
	}
}

// eachSourceConflictLocked calls fn for each name that is a source on a
// member m other than its winning origin w, where m's replica cell does
// not report it already (m takes no replica of name).
func (c *Controller) eachSourceConflictLocked(now time.Time, fn func(name string, w, m *member)) {
	for name, recs := range c.sources {
		if len(recs) < 2 {
			continue
		}
		w, _ := c.winnerLocked(name)
		for m, rec := range recs {
			if m != w && w != nil && rec.absentSince.IsZero() && !c.planLocked(m, name, now).desired {
				fn(name, w, m)
			}
		}
	}
}

// blocksConvergence reports whether a desired replica in state keeps the
// group from converged: every state but present, and those only the
// operator can resolve (a conflict, an unreplicable name).
func blocksConvergence(state string) bool {
	switch state {
	case StatePresent, StateConflict, StateUnreplicable:
		return false
	}
	return true
}

// groupCounts are the figures of the group's gauges, counted without
// building a Status: a scrape of a large group then costs no memory.
type groupCounts struct {
	desired, present, conflicts, unreplicable int
	converged                                 bool
	lag                                       time.Duration
}

// countsLocked returns, in one pass, the figures snapshotLocked reports
// and the convergence lag: how long the oldest desired replica that is not
// present (on a member that is up and not paused) has been so, since its
// work record last changed state or its source was first seen.
func (c *Controller) countsLocked(now time.Time) groupCounts {
	g := groupCounts{converged: c.isReady}
	for _, m := range c.members {
		if m.state != MemberUp {
			g.converged = false
		}
	}
	c.eachReplicaLocked(now, func(name string, w, m *member, rs ReplicaStatus, _ string) {
		if m == nil {
			return
		}
		g.desired++
		switch rs.State {
		case StatePresent:
			g.present++
			return
		case StateConflict:
			g.conflicts++
			return
		case StateUnreplicable:
			g.unreplicable++
			return
		}
		if m.state != MemberUp || m.paused {
			return
		}
		g.converged = false
		since := c.sources[name][w].firstSeen
		if o := m.ops[name]; o != nil && o.since.After(since) {
			since = o.since
		}
		g.lag = max(g.lag, now.Sub(since))
	})
	c.eachSourceConflictLocked(now, func(string, *member, *member) { g.conflicts++ })
	return g
}
