package controller

// The status document's rows, kept between reads: a read recomputes only
// the rows of streams whose state may have changed since the last read
// (marked dirty by whatever changed them), and those whose state can
// change with time alone (a cell that is not present). Status, the
// metrics and the dashboard all read one build.

import (
	"cmp"
	"encoding/json"
	"runtime"
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

// rowCache keeps the rows between reads. dirty, all and changed are
// guarded by the controller's lock; builds are serialised by mu, which
// guards the rest.
type rowCache struct {
	dirty map[string]struct{}
	all   bool
	// changed is set by every change the document shows: a build is
	// reused only while nothing changed.
	changed bool

	mu    sync.Mutex
	rows  map[string]*streamRow
	timed map[string]struct{} // rows that may change with time alone
	last  *built
	// Buffers reused from build to build, so that nothing is allocated
	// while the controller's lock is held: an allocation there can be made
	// to help the collector for milliseconds.
	todo    []string
	facts   []rowFacts
	members []MemberStatus
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

// rebuildChunk is the most rows a build gathers per hold of the
// controller's lock, rebuildHold about the longest such a hold lasts.
const (
	rebuildChunk = 256
	rebuildHold  = 500 * time.Microsecond
)

// reuseBuild is how long a build serves further readers as it is.
const reuseBuild = 100 * time.Millisecond

// build returns a build no older than reuseBuild. It holds the
// controller's lock only to read, in short holds that allocate nothing;
// the rows are made between them.
func (rc *rowCache) build(c *Controller) *built {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	var (
		lastResync = new(ResyncStatus)
		lastReload = new(ReloadStatus)
		hadResync  bool
		hadReload  bool
	)
	c.mu.Lock()
	if rc.last != nil && !rc.changed && time.Since(rc.last.at) < reuseBuild {
		c.mu.Unlock()
		return rc.last
	}
	rc.changed = false
	started := time.Now() // the lock is held from here to the first Unlock
	todo := rc.todo[:0]
	all := rc.all
	members := len(c.members)
	if all {
		rc.all = false
		clear(rc.dirty)
		for name := range c.sources {
			todo = append(todo, name)
		}
	} else {
		for name := range rc.dirty {
			todo = append(todo, name)
		}
		clear(rc.dirty)
	}
	c.mu.Unlock()
	longest := time.Since(started) // every hold of the lock counts
	if all {
		// Rows of names that are no source any more go.
		seen := make(map[string]struct{}, len(todo))
		for _, name := range todo {
			seen[name] = struct{}{}
		}
		for name := range rc.rows {
			if _, ok := seen[name]; !ok {
				todo = append(todo, name)
			}
		}
	} else {
		for name := range rc.timed {
			todo = append(todo, name)
		}
	}
	rc.todo = todo[:0]
	rc.growFacts(members)

	for len(todo) > 0 {
		// Yield before each hold: a goroutine that runs on for 10 ms is
		// preempted by the scheduler, and, while the collector marks, the
		// processor then goes to its worker for as long as several
		// milliseconds. Yielding here, with the lock not held, is when
		// that happens instead of in the middle of a hold.
		runtime.Gosched()
		c.mu.Lock()
		now := time.Now()
		n := 0
		for _, name := range todo {
			// Short holds: at most rebuildChunk rows, or rebuildHold.
			if n == rebuildChunk || time.Since(now) > rebuildHold {
				break
			}
			c.gatherLocked(&rc.facts[n], name, now)
			n++
		}
		longest = max(longest, time.Since(now))
		c.mu.Unlock()
		for i, name := range todo[:n] {
			r := rc.facts[i].row(now)
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
	}

	b := &built{at: time.Now()}
	b.rows = make([]*streamRow, 0, len(rc.rows))
	for _, r := range rc.rows {
		b.rows = append(b.rows, r)
	}
	for {
		c.mu.Lock()
		if len(c.members) <= cap(rc.members) {
			break
		}
		n := len(c.members)
		c.mu.Unlock()
		rc.members = make([]MemberStatus, 0, 2*n) // outside the lock
	}
	held := time.Now()
	b.converged = c.isReady
	memberTrouble := false
	ms := rc.members[:0]
	for _, m := range c.members {
		ms = append(ms, MemberStatus{
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
	if !c.resync.At.IsZero() {
		*lastResync, hadResync = c.resync, true
	}
	if c.lastReload != nil {
		*lastReload, hadReload = *c.lastReload, true
	}
	longest = max(longest, time.Since(held))
	c.mu.Unlock()
	b.members = slices.Clone(ms)
	if hadResync {
		b.lastResync = lastResync
	}
	if hadReload {
		b.lastReload = lastReload
	}

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

// growFacts makes room, before the lock is taken, for the facts of a
// hold's rows in a group of members members: growing a buffer while
// holding the lock would allocate there, and an allocation can be made to
// help the collector for milliseconds.
func (rc *rowCache) growFacts(members int) {
	if len(rc.facts) < rebuildChunk {
		rc.facts = append(rc.facts, make([]rowFacts, rebuildChunk-len(rc.facts))...)
	}
	for i := range rc.facts {
		f := &rc.facts[i]
		if cap(f.cells) < members {
			f.cells = make([]cellFacts, 0, members)
		}
		if cap(f.desired) < members {
			f.desired = make([]string, 0, members)
		}
		if cap(f.conflicts) < members {
			f.conflicts = make([]Conflict, 0, members)
		}
	}
}

// rowFacts is what one row is made of, gathered under the controller's
// lock into buffers reused from build to build; row makes the row from it
// after the lock is released.
type rowFacts struct {
	name, origin string
	ok           bool // name has a winning origin
	firstSeen    time.Time
	demand       bool
	desired      []string
	cells        []cellFacts
	conflicts    []Conflict
	multi        bool // the name is a source on several members
	elsewhere    bool // a source on a member whose cell does not say so
}

// cellFacts is one desired cell of a row.
type cellFacts struct {
	member string
	rs     ReplicaStatus
	timed  bool // the cell may change with time alone
	// blocking: the member is up and not paused, and the cell keeps the
	// group from converged since blockedSince.
	blocking     bool
	blockedSince time.Time
}

// gatherLocked fills f with the facts of stream name's row. It allocates
// nothing once f's buffers have grown to the group's size.
func (c *Controller) gatherLocked(f *rowFacts, name string, now time.Time) {
	*f = rowFacts{name: name, desired: f.desired[:0], cells: f.cells[:0], conflicts: f.conflicts[:0]}
	v := c.viewLocked(name, now)
	w := v.w
	if w == nil {
		return
	}
	f.ok, f.origin, f.demand = true, w.spec.Name, v.demand
	f.firstSeen = c.sources[name][w].firstSeen
	if v.demand {
		d := v.set
		for _, m := range d.base {
			f.desired = append(f.desired, m.spec.Name)
		}
		for _, m := range d.extra {
			f.desired = append(f.desired, m.spec.Name)
		}
		if d.add != nil {
			f.desired = append(f.desired, d.add.spec.Name)
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
		cf := cellFacts{member: m.spec.Name, rs: ReplicaStatus{State: a.state, Reason: a.reason}}
		o := m.work.ops[name]
		if o != nil {
			cf.rs.Attempts, cf.rs.LastError = o.attempts, o.lastErr
			if o.state == a.state {
				cf.rs.Since = o.since
			}
		}
		if a.kind == actPull && cf.rs.Attempts > 0 {
			cf.rs.State = StatePending
		}
		if cfg, ok := c.copyOfLocked(m, name, w); ok && cfg.demand {
			cf.rs.Demand = true
		}
		cf.timed = cf.rs.State != StatePresent || (o != nil && o.attempts > 0) || a.relist || a.confirmPull
		if blocksConvergence(cf.rs.State) && m.health.state == MemberUp && !m.work.paused {
			cf.blocking = true
			cf.blockedSince = f.firstSeen
			if o != nil && o.since.After(cf.blockedSince) {
				cf.blockedSince = o.since
			}
		}
		f.cells = append(f.cells, cf)
		if cf.rs.State == StateConflict {
			f.conflicts = append(f.conflicts, Conflict{Stream: name, Member: m.spec.Name, Origin: w.spec.Name, Reason: a.reason})
		}
	}
	// The same name as a source on other members: reported where their
	// cell does not say so already.
	if recs := c.sources[name]; len(recs) > 1 {
		f.multi = true
		for m, rec := range recs {
			if m != w && rec.absentSince.IsZero() && !c.planViewLocked(m, &v, now).desired {
				f.conflicts = append(f.conflicts, Conflict{Stream: name, Member: m.spec.Name, Origin: w.spec.Name,
					Reason: "also a source on " + w.spec.Name + ", whose copy is replicated"})
				f.elsewhere = true
			}
		}
	}
}

// row makes the row gathered in f, or nil when its name has no winning
// origin (it is a source nowhere).
func (f *rowFacts) row(now time.Time) *streamRow {
	if !f.ok {
		return nil
	}
	r := &streamRow{name: f.name, origin: f.origin, lagSince: now, timed: f.multi}
	if len(f.desired) > 0 {
		r.desired = slices.Clone(f.desired)
	}
	r.cells = make([]cell, 0, len(f.cells))
	for i := range f.cells {
		cf := &f.cells[i]
		r.counts.add(cf.rs.State, 1)
		r.timed = r.timed || cf.timed
		if needsAttention(cf.rs.State) {
			r.attention = true
		}
		if cf.blocking {
			r.blocking = true
			if cf.blockedSince.Before(r.lagSince) {
				r.lagSince = cf.blockedSince
			}
		}
		if cf.rs == presentCell {
			r.cells = append(r.cells, cell{member: cf.member})
		} else {
			rs := cf.rs
			r.cells = append(r.cells, cell{member: cf.member, rs: &rs})
		}
	}
	r.attention = r.attention || f.elsewhere
	if len(f.conflicts) > 0 {
		r.conflicts = slices.Clone(f.conflicts)
		slices.SortFunc(r.conflicts, func(a, b Conflict) int { return cmp.Compare(a.Member, b.Member) })
	}
	return r
}
