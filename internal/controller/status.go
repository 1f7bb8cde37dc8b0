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
}

// MemberStatus is one member's health.
type MemberStatus struct {
	Name      string  `json:"name"`
	Address   string  `json:"address"`
	API       string  `json:"api"`
	State     string  `json:"state"`
	Paused    bool    `json:"paused"`
	Replicate bool    `json:"replicate"`
	LastError string  `json:"last_error"`
	LatencyMS float64 `json:"latency_ms"`
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
			Paused: m.paused, Replicate: m.spec.Replicate, LastError: m.lastErr, LatencyMS: ms64(time.Duration(m.latency.Load())),
		})
		st.QueueDepth += m.queue.Len()
		if m.state != MemberUp {
			st.Converged = false
		}
	}
	if !c.isReady {
		st.Converged = false
	}
	for name := range c.sources {
		w := c.winnerLocked(name)
		if w == nil {
			continue
		}
		ss := StreamStatus{Name: name, Origin: w.spec.Name, Replicas: map[string]ReplicaStatus{}}
		for _, m := range c.members {
			if m == w {
				continue
			}
			a := c.planLocked(m, name, now)
			if !a.desired {
				continue
			}
			rs := ReplicaStatus{State: a.state}
			if o := m.ops[name]; o != nil {
				rs.Attempts, rs.LastError = o.attempts, o.lastErr
				if o.state == a.state {
					rs.Since = o.since
				}
			}
			if a.kind == actPull && rs.Attempts > 0 {
				rs.State = StatePending
			}
			if rs.State == StateConflict {
				st.Conflicts = append(st.Conflicts, Conflict{Stream: name, Member: m.spec.Name, Origin: w.spec.Name, Reason: a.reason})
			}
			if rs.State != StatePresent && m.state == MemberUp && !m.paused {
				st.Converged = false
			}
			ss.Replicas[m.spec.Name] = rs
		}
		st.Streams = append(st.Streams, ss)
	}
	// The same name as a source on two origins: the later one is reported.
	for name, recs := range c.sources {
		w := c.winnerLocked(name)
		for m, rec := range recs {
			if m != w && w != nil && rec.absentSince.IsZero() && m.state == MemberUp {
				st.Conflicts = append(st.Conflicts, Conflict{Stream: name, Member: m.spec.Name, Origin: w.spec.Name,
					Reason: "also a source on " + w.spec.Name + ", which had it first"})
			}
		}
	}
	slices.SortFunc(st.Streams, func(a, b StreamStatus) int { return cmp.Compare(a.Name, b.Name) })
	slices.SortFunc(st.Conflicts, func(a, b Conflict) int {
		return cmp.Or(cmp.Compare(a.Stream, b.Stream), cmp.Compare(a.Member, b.Member))
	})
	if !c.resync.At.IsZero() {
		r := c.resync
		st.LastResync = &r
	}
	return st
}

// lagLocked returns how long the oldest desired replica that is not present
// (on a member that is up and not paused) has been so: since its work
// record last changed state, or since its source was first seen.
func (c *Controller) lagLocked(now time.Time) time.Duration {
	var lag time.Duration
	for name, recs := range c.sources {
		w := c.winnerLocked(name)
		if w == nil {
			continue
		}
		for _, m := range c.members {
			if m == w || m.state != MemberUp || m.paused {
				continue
			}
			a := c.planLocked(m, name, now)
			if !a.desired || a.state == StatePresent {
				continue
			}
			since := recs[w].firstSeen
			if o := m.ops[name]; o != nil && o.since.After(since) {
				since = o.since
			}
			lag = max(lag, now.Sub(since))
		}
	}
	return lag
}
