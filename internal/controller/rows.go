package controller

// The status document's rows, kept between reads: a read recomputes only
// the rows of streams whose state may have changed since the last read
// (marked dirty by whatever changed them), and those whose state can
// change with time alone (a cell that is not present). Status, the
// metrics and the dashboard all read one build.

import (
	"cmp"
	"encoding/json"
	"slices"
	"sync"
	"time"
)

// streamRow is one stream's row of the status document, immutable once
// built: readers use it without the controller's lock.
type streamRow struct {
	name, origin string
	desired      []string // mode demand: who should hold it besides its origin
	cells        []cell
	conflicts    []Conflict
	counts       cellCounts
	// blocking: a cell on a member that is up and not paused keeps the
	// group from converged. attention: a cell is for the operator.
	// timed: a cell may change with time alone.
	blocking, attention, timed bool
	// lagSince is since when the oldest blocking cell has been so.
	lagSince time.Time
	// encoded is the row's JSON, made at its first encoded read.
	encodeOnce sync.Once
	encoded    []byte
}

// json returns the row's JSON, as StreamStatus marshals it.
func (r *streamRow) json() []byte {
	r.encodeOnce.Do(func() {
		b, err := json.Marshal(r.status())
		if err == nil {
			r.encoded = b
		}
	})
	return r.encoded
}

// cell is one replica cell; rs is nil for a plain present replica.
type cell struct {
	member string
	rs     *ReplicaStatus
}

var presentCell = ReplicaStatus{State: StatePresent}

// status materialises the row as the document shows it.
func (r *streamRow) status() StreamStatus {
	ss := StreamStatus{Name: r.name, Origin: r.origin, Replicas: make(map[string]ReplicaStatus, len(r.cells)), Desired: r.desired}
	for _, c := range r.cells {
		if c.rs == nil {
			ss.Replicas[c.member] = presentCell
		} else {
			ss.Replicas[c.member] = *c.rs
		}
	}
	return ss
}

// cellCounts counts a row's desired cells by state.
type cellCounts struct {
	present, pending, missing, failing, conflict, unknown, unreplicable int
}

func (n *cellCounts) add(state string, k int) {
	switch state {
	case StatePresent:
		n.present += k
	case StatePending:
		n.pending += k
	case StateMissing:
		n.missing += k
	case StateFailing:
		n.failing += k
	case StateConflict:
		n.conflict += k
	case StateUnknown:
		n.unknown += k
	case StateUnreplicable:
		n.unreplicable += k
	}
}

func (n cellCounts) total() int {
	return n.present + n.pending + n.missing + n.failing + n.conflict + n.unknown + n.unreplicable
}

func (n cellCounts) byState() map[string]int {
	return map[string]int{
		StatePresent: n.present, StatePending: n.pending, StateMissing: n.missing, StateFailing: n.failing,
		StateConflict: n.conflict, StateUnknown: n.unknown, StateUnreplicable: n.unreplicable,
	}
}

// rowCache keeps the rows between reads. rows, dirty, all and timed are
// guarded by the controller's lock; builds are serialised by mu, which
// also guards last.
type rowCache struct {
	rows  map[string]*streamRow
	dirty map[string]struct{}
	all   bool
	timed map[string]struct{}
	// changed is set by every change the document shows: a build is
	// reused only while nothing changed.
	changed bool

	mu   sync.Mutex
	last *built
}

func newRowCache() rowCache {
	return rowCache{rows: make(map[string]*streamRow), dirty: make(map[string]struct{}), timed: make(map[string]struct{}), all: true}
}

// dirtyLocked marks name's row as possibly changed.
func (c *Controller) dirtyLocked(name string) {
	c.rows.changed = true
	if !c.rows.all {
		c.rows.dirty[name] = struct{}{}
	}
}

// allDirtyLocked marks every row as possibly changed: a member's state,
// the member list or the settings changed.
func (c *Controller) allDirtyLocked() {
	c.rows.changed = true
	c.rows.all = true
	clear(c.rows.dirty)
}

// built is one build of the document's parts.
type built struct {
	at          time.Time
	rows        []*streamRow // by name
	byAttention []*streamRow // the rows needing attention first
	members     []MemberStatus
	converged   bool
	state       string
	summary     Summary
	queueDepth  int
	lastResync  *ResyncStatus
	lastReload  *ReloadStatus
	lag         time.Duration
}

// rebuildChunk is the most rows a build recomputes per hold of the
// controller's lock, rebuildHold about the longest such a hold lasts.
const (
	rebuildChunk = 256
	rebuildHold  = time.Millisecond
)

// reuseBuild is how long a build serves further readers as it is.
const reuseBuild = 100 * time.Millisecond

// build returns a build no older than reuseBuild.
func (rc *rowCache) build(c *Controller) *built {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	c.mu.Lock()
	if rc.last != nil && !rc.changed && time.Since(rc.last.at) < reuseBuild {
		c.mu.Unlock()
		return rc.last
	}
	rc.changed = false
	started := time.Now() // the lock is held from here to the first Unlock
	var todo []string
	if rc.all {
		rc.all = false
		clear(rc.dirty)
		todo = make([]string, 0, len(c.sources)+len(rc.rows))
		for name := range c.sources {
			todo = append(todo, name)
		}
		for name := range rc.rows {
			if _, ok := c.sources[name]; !ok {
				todo = append(todo, name)
			}
		}
	} else {
		todo = make([]string, 0, len(rc.dirty)+len(rc.timed))
		for name := range rc.dirty {
			todo = append(todo, name)
		}
		clear(rc.dirty)
		for name := range rc.timed {
			todo = append(todo, name)
		}
	}
	c.mu.Unlock()
	longest := time.Since(started) // every hold of the lock counts
	for len(todo) > 0 {
		c.mu.Lock()
		now := time.Now()
		n := 0
		for _, name := range todo {
			// Short holds: at most rebuildChunk rows, or rebuildHold.
			if n == rebuildChunk || (n%16 == 15 && time.Since(now) > rebuildHold) {
				break
			}
			n++
			r := c.rowLocked(name, now)
			if r == nil {
				delete(rc.rows, name)
				delete(rc.timed, name)
				continue
			}
			rc.rows[name] = r
			if r.timed {
				rc.timed[name] = struct{}{}
			} else {
				delete(rc.timed, name)
			}
		}
		todo = todo[n:]
		longest = max(longest, time.Since(now))
		c.mu.Unlock()
	}

	b := &built{at: time.Now()}
	c.mu.Lock()
	held := time.Now()
	b.converged = c.isReady
	memberTrouble := false
	for _, m := range c.members {
		b.members = append(b.members, MemberStatus{
			Name: m.spec.Name, Address: m.spec.Address, API: m.spec.API, State: m.health.state,
			Paused: m.work.paused, Replicate: m.spec.Replicate, LastError: m.health.lastErr, LastErrorAt: m.health.lastErrAt,
			SkippedEntries: m.health.skipped, SkipError: m.health.skipErr, LatencyMS: ms64(time.Duration(m.health.latency.Load())),
		})
		b.queueDepth += m.work.queue.Len()
		if m.health.state != MemberUp {
			b.converged = false
			memberTrouble = true
		}
	}
	b.rows = make([]*streamRow, 0, len(rc.rows))
	for _, r := range rc.rows {
		b.rows = append(b.rows, r)
	}
	if !c.resync.At.IsZero() {
		r := c.resync
		b.lastResync = &r
	}
	if c.lastReload != nil {
		r := *c.lastReload
		b.lastReload = &r
	}
	longest = max(longest, time.Since(held))
	c.mu.Unlock()

	slices.SortFunc(b.rows, func(x, y *streamRow) int { return cmp.Compare(x.name, y.name) })
	var n cellCounts
	for _, r := range b.rows {
		n.present += r.counts.present
		n.pending += r.counts.pending
		n.missing += r.counts.missing
		n.failing += r.counts.failing
		n.conflict += r.counts.conflict
		n.unknown += r.counts.unknown
		n.unreplicable += r.counts.unreplicable
		if r.blocking {
			b.converged = false
			b.lag = max(b.lag, b.at.Sub(r.lagSince))
		}
		if r.attention {
			b.summary.Attention++
		}
	}
	b.summary.Streams = len(b.rows)
	b.summary.Replicas = n.byState()
	b.byAttention = make([]*streamRow, 0, len(b.rows))
	for _, r := range b.rows {
		if r.attention {
			b.byAttention = append(b.byAttention, r)
		}
	}
	for _, r := range b.rows {
		if !r.attention {
			b.byAttention = append(b.byAttention, r)
		}
	}
	switch {
	case b.converged:
		b.state = "converged"
	case memberTrouble || n.failing > 0:
		b.state = "needs_attention"
	default:
		b.state = "converging"
	}
	rc.last = b
	c.met.statusBuild.Observe(time.Since(started).Seconds())
	c.met.statusLock.Set(longest.Seconds())
	return b
}

// rowLocked computes the row of stream name, or nil when name has no
// winning origin (it is a source nowhere).
func (c *Controller) rowLocked(name string, now time.Time) *streamRow {
	v := c.viewLocked(name, now)
	w := v.w
	if w == nil {
		return nil
	}
	r := &streamRow{name: name, origin: w.spec.Name, lagSince: now}
	firstSeen := c.sources[name][w].firstSeen
	if v.demand {
		d := v.set
		for _, ms := range [][]*member{d.base, d.extra, {d.add}} {
			for _, m := range ms {
				if m != nil {
					r.desired = append(r.desired, m.spec.Name)
				}
			}
		}
	}
	for _, m := range c.members {
		if m == w {
			continue
		}
		a := c.planViewLocked(m, &v, now)
		if !a.desired {
			continue
		}
		rs := ReplicaStatus{State: a.state, Reason: a.reason}
		o := m.work.ops[name]
		if o != nil {
			rs.Attempts, rs.LastError = o.attempts, o.lastErr
			if o.state == a.state {
				rs.Since = o.since
			}
		}
		if a.kind == actPull && rs.Attempts > 0 {
			rs.State = StatePending
		}
		if cfg, ok := c.copyOfLocked(m, name, w); ok && cfg.demandAt != 0 {
			rs.Demand = true
		}
		r.counts.add(rs.State, 1)
		if rs.State == StateConflict {
			r.conflicts = append(r.conflicts, Conflict{Stream: name, Member: m.spec.Name, Origin: w.spec.Name, Reason: a.reason})
		}
		if rs.State != StatePresent || (o != nil && o.attempts > 0) || a.relist || a.confirmPull {
			r.timed = true
		}
		if needsAttention(rs.State) {
			r.attention = true
		}
		if blocksConvergence(rs.State) && m.health.state == MemberUp && !m.work.paused {
			r.blocking = true
			since := firstSeen
			if o != nil && o.since.After(since) {
				since = o.since
			}
			if since.Before(r.lagSince) {
				r.lagSince = since
			}
		}
		if rs == presentCell {
			r.cells = append(r.cells, cell{member: m.spec.Name})
		} else {
			r.cells = append(r.cells, cell{member: m.spec.Name, rs: &rs})
		}
	}
	// The same name as a source on other members: reported where their
	// cell does not say so already.
	if recs := c.sources[name]; len(recs) > 1 {
		for m, rec := range recs {
			if m != w && rec.absentSince.IsZero() && !c.planViewLocked(m, &v, now).desired {
				r.conflicts = append(r.conflicts, Conflict{Stream: name, Member: m.spec.Name, Origin: w.spec.Name,
					Reason: "also a source on " + w.spec.Name + ", whose copy is replicated"})
				r.attention = true
			}
		}
		r.timed = true
	}
	slices.SortFunc(r.conflicts, func(a, b Conflict) int { return cmp.Compare(a.Member, b.Member) })
	return r
}
