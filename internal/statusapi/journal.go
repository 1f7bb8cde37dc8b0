package statusapi

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"streamlb/internal/controller"
)

// Event levels.
const (
	LevelInfo   = "info"   // the group changed on its own: a source appeared, a member came back
	LevelAction = "action" // streamlb changed the group: a replica is in place
	LevelWarn   = "warn"   // something needs a look: a conflict, a paused member, a lost replica
	LevelError  = "error"  // something is broken: a member down, a replica failing
)

// Event is one change noticed between two successive status snapshots: the
// dashboard's list of recent actions and errors. It holds nothing the
// snapshot does not (in particular no credential).
type Event struct {
	Seq    uint64    `json:"seq"`
	At     time.Time `json:"at"`
	Level  string    `json:"level"`
	Member string    `json:"member,omitempty"`
	Stream string    `json:"stream,omitempty"`
	Text   string    `json:"text"`
}

// journalSize is how many events the journal keeps.
const journalSize = 200

// maxPerKind is how many events of one kind a single diff reports one by
// one; beyond it they are summed up in one event (a first resync of a
// large group would otherwise flood the list).
const maxPerKind = 8

// journal derives events from successive snapshots. It starts no
// goroutine: every poll takes a snapshot and compares it with the previous
// one, so it notices changes as often as the dashboard (or the events
// route) is read. Safe for concurrent use.
type journal struct {
	ctl Controller
	now func() time.Time

	mu      sync.Mutex
	prev    *controller.Status
	started time.Time
	ring    []Event // oldest first, at most journalSize
	seq     uint64  // of the newest event
}

// poll takes a snapshot, records what changed since the previous one and
// returns the snapshot. Snapshots are taken under the journal's lock, so
// concurrent polls are compared in the order they were taken.
func (j *journal) poll() controller.Status {
	j.mu.Lock()
	defer j.mu.Unlock()
	st := j.ctl.Snapshot()
	now := j.now()
	var evs []pending
	if j.prev == nil {
		j.started = now
		evs = firstEvents(st)
	} else {
		evs = diffStatus(*j.prev, st)
	}
	for _, e := range summarize(evs) {
		j.seq++
		e.Event.Seq, e.Event.At = j.seq, now
		j.ring = append(j.ring, e.Event)
	}
	if n := len(j.ring) - journalSize; n > 0 {
		j.ring = slices.Delete(j.ring, 0, n)
	}
	j.prev = &st
	return st
}

// since returns the events newer than seq, oldest first, and the sequence
// number of the newest event. A seq from the future (the daemon restarted
// since the caller last asked) returns everything.
func (j *journal) since(seq uint64) (evs []Event, last uint64) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if seq > j.seq {
		seq = 0
	}
	i, _ := slices.BinarySearchFunc(j.ring, seq+1, func(e Event, s uint64) int { return cmp.Compare(e.Seq, s) })
	return slices.Clone(j.ring[i:]), j.seq
}

// pending is an event before it is numbered, with the kind used to sum up
// many alike.
type pending struct {
	Event
	kind string
}

func ev(kind, level, member, stream, format string, args ...any) pending {
	return pending{Event: Event{Level: level, Member: member, Stream: stream, Text: fmt.Sprintf(format, args...)}, kind: kind}
}

// firstEvents describes the group when the journal starts watching: what
// it holds, and what is already wrong.
func firstEvents(st controller.Status) []pending {
	up := 0
	for _, m := range st.Members {
		if m.State == controller.MemberUp {
			up++
		}
	}
	evs := []pending{ev("start", LevelInfo, "", "", "watching %d members (%d up) and %d sources", len(st.Members), up, len(st.Streams))}
	for _, m := range st.Members {
		if m.State != controller.MemberUp {
			evs = append(evs, memberStateEvent(m))
		}
		if m.Paused {
			evs = append(evs, ev("paused", LevelWarn, m.Name, "", "%s is paused: it gets no new work", m.Name))
		}
	}
	for _, c := range st.Conflicts {
		evs = append(evs, conflictEvent(c))
	}
	for _, s := range st.Streams {
		for _, m := range sortedKeys(s.Replicas) {
			if r := s.Replicas[m]; r.State == controller.StateFailing {
				evs = append(evs, failingEvent(s.Name, m, r))
			}
		}
	}
	return evs
}

// diffStatus lists what changed from a to b.
func diffStatus(a, b controller.Status) []pending {
	var evs []pending

	// Members.
	before := make(map[string]controller.MemberStatus, len(a.Members))
	for _, m := range a.Members {
		before[m.Name] = m
	}
	for _, m := range b.Members {
		p, ok := before[m.Name]
		delete(before, m.Name)
		switch {
		case !ok:
			evs = append(evs, ev("member-added", LevelInfo, m.Name, "", "member %s joined the group (%s, %s API)", m.Name, m.Address, m.API))
			if m.State != controller.MemberUp {
				evs = append(evs, memberStateEvent(m))
			}
		case p.State != m.State:
			evs = append(evs, memberStateEvent(m))
		}
		if ok && p.Paused != m.Paused {
			if m.Paused {
				evs = append(evs, ev("paused", LevelWarn, m.Name, "", "%s is paused: it gets no new work", m.Name))
			} else {
				evs = append(evs, ev("resumed", LevelInfo, m.Name, "", "%s resumed", m.Name))
			}
		}
	}
	for _, m := range a.Members {
		if _, gone := before[m.Name]; gone {
			evs = append(evs, ev("member-removed", LevelInfo, m.Name, "", "member %s left the group; its replicas stay until pruned", m.Name))
		}
	}

	// Streams and replicas.
	old := make(map[string]controller.StreamStatus, len(a.Streams))
	for _, s := range a.Streams {
		old[s.Name] = s
	}
	for _, s := range b.Streams {
		p, ok := old[s.Name]
		delete(old, s.Name)
		if !ok {
			evs = append(evs, newSourceEvent(s))
			continue
		}
		if p.Origin != s.Origin {
			evs = append(evs, ev("origin", LevelWarn, s.Origin, s.Name, "source %s moved from %s to %s", s.Name, p.Origin, s.Origin))
			continue
		}
		for _, m := range sortedKeys(s.Replicas) {
			r := s.Replicas[m]
			pr, had := p.Replicas[m]
			evs = append(evs, replicaEvents(s.Name, m, pr, had, r)...)
		}
		for _, m := range sortedKeys(p.Replicas) {
			if _, still := s.Replicas[m]; !still {
				evs = append(evs, ev("replica-dropped", LevelInfo, m, s.Name, "%s is no longer replicated to %s", s.Name, m))
			}
		}
	}
	for _, s := range a.Streams {
		if _, gone := old[s.Name]; gone {
			evs = append(evs, ev("source-gone", LevelInfo, s.Origin, s.Name, "source %s ended on %s; its replicas go after the teardown grace", s.Name, s.Origin))
		}
	}

	// Conflicts.
	type key struct{ stream, member string }
	was := make(map[key]controller.Conflict, len(a.Conflicts))
	for _, c := range a.Conflicts {
		was[key{c.Stream, c.Member}] = c
	}
	for _, c := range b.Conflicts {
		k := key{c.Stream, c.Member}
		if _, ok := was[k]; !ok {
			evs = append(evs, conflictEvent(c))
		}
		delete(was, k)
	}
	for _, c := range a.Conflicts {
		if _, cleared := was[key{c.Stream, c.Member}]; cleared {
			evs = append(evs, ev("conflict-cleared", LevelInfo, c.Member, c.Stream, "conflict over %s on %s is resolved", c.Stream, c.Member))
		}
	}

	if b.Converged && !a.Converged {
		evs = append(evs, ev("converged", LevelInfo, "", "", "the group is converged: every replica on every up member is present"))
	}
	return evs
}

// replicaEvents describes one replica's change: had tells whether it was
// in the previous snapshot.
func replicaEvents(stream, member string, p controller.ReplicaStatus, had bool, r controller.ReplicaStatus) []pending {
	if had && p.State == r.State {
		if r.LastError != "" && r.LastError != p.LastError {
			return []pending{ev("replica-error", LevelError, member, stream, "%s on %s: %s (attempt %d)", stream, member, r.LastError, r.Attempts)}
		}
		return nil
	}
	switch r.State {
	case controller.StatePresent:
		return []pending{ev("replica-present", LevelAction, member, stream, "%s replicated to %s", stream, member)}
	case controller.StatePending:
		if r.LastError != "" {
			return []pending{ev("replica-error", LevelError, member, stream, "%s on %s: %s (attempt %d)", stream, member, r.LastError, r.Attempts)}
		}
		return []pending{ev("replica-pending", LevelAction, member, stream, "working on %s on %s", stream, member)}
	case controller.StateMissing:
		if had && p.State == controller.StatePresent {
			return []pending{ev("replica-lost", LevelWarn, member, stream, "%s is gone from %s; it is pulled again", stream, member)}
		}
		return nil // a new replica starts missing: its pull follows
	case controller.StateFailing:
		return []pending{failingEvent(stream, member, r)}
	case controller.StateConflict:
		return nil // reported with the conflicts
	default:
		return []pending{ev("replica-state", LevelWarn, member, stream, "%s on %s is %s", stream, member, r.State)}
	}
}

// newSourceEvent reports a source seen for the first time, with the
// replicas already in place (events are handled in milliseconds, so they
// often are by the next snapshot).
func newSourceEvent(s controller.StreamStatus) pending {
	var done []string
	for _, m := range sortedKeys(s.Replicas) {
		if s.Replicas[m].State == controller.StatePresent {
			done = append(done, m)
		}
	}
	if len(done) == 0 {
		return ev("source-new", LevelInfo, s.Origin, s.Name, "source %s appeared on %s", s.Name, s.Origin)
	}
	return ev("source-new", LevelAction, s.Origin, s.Name, "source %s appeared on %s and is replicated to %s", s.Name, s.Origin, strings.Join(done, ", "))
}

func memberStateEvent(m controller.MemberStatus) pending {
	why := ""
	if m.LastError != "" {
		why = ": " + m.LastError
	}
	switch m.State {
	case controller.MemberUp:
		return ev("member-up", LevelInfo, m.Name, "", "%s is up", m.Name)
	case controller.MemberDown:
		return ev("member-down", LevelError, m.Name, "", "%s is down%s", m.Name, why)
	case controller.MemberUnauthorized:
		return ev("member-unauthorized", LevelError, m.Name, "", "%s refuses streamlb's credentials%s", m.Name, why)
	default:
		return ev("member-state", LevelWarn, m.Name, "", "%s is %s%s", m.Name, m.State, why)
	}
}

func failingEvent(stream, member string, r controller.ReplicaStatus) pending {
	why := ""
	if r.LastError != "" {
		why = ": " + r.LastError
	}
	return ev("replica-failing", LevelError, member, stream, "%s on %s is failing (EMS cannot pull it from its origin)%s", stream, member, why)
}

func conflictEvent(c controller.Conflict) pending {
	return ev("conflict", LevelWarn, c.Member, c.Stream, "conflict: %s on %s is left alone: %s", c.Stream, c.Member, c.Reason)
}

// summarize keeps at most maxPerKind events of each kind: beyond that,
// the first maxPerKind-1 are kept and the rest are summed up in one event,
// in the place of the first one left out.
func summarize(evs []pending) []pending {
	byKind := make(map[string][]pending)
	for _, e := range evs {
		byKind[e.kind] = append(byKind[e.kind], e)
	}
	var out []pending
	seen := make(map[string]int)
	for _, e := range evs {
		all := byKind[e.kind]
		seen[e.kind]++
		switch i := seen[e.kind]; {
		case len(all) <= maxPerKind || i < maxPerKind:
			out = append(out, e)
		case i == maxPerKind:
			rest := all[maxPerKind-1:]
			var names []string
			for _, x := range rest[:min(3, len(rest))] {
				names = append(names, cmp.Or(x.Stream, x.Member))
			}
			out = append(out, pending{kind: e.kind, Event: Event{
				Level: e.Level,
				Text:  fmt.Sprintf("… and %d more like these: %s, …", len(rest), strings.Join(names, ", ")),
			}})
		}
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
