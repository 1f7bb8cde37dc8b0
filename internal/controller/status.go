package controller

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"path"
	"slices"
	"time"
)

// Status is the one snapshot of the group that the status API, the
// dashboard, the status command and the metrics read. Its JSON form is the
// contract of DESIGN.md §4. It never holds a credential.
type Status struct {
	Converged bool `json:"converged"`
	// State sums the group up: "converged"; "converging" while streamlb
	// is at work; "needs_attention" when only the operator can fix what is
	// left (a member refusing the credentials, a conflict, an
	// unreplicable name) or a member is down.
	State      string         `json:"state"`
	Members    []MemberStatus `json:"members"`
	Streams    []StreamStatus `json:"streams"`
	Conflicts  []Conflict     `json:"conflicts"`
	QueueDepth int            `json:"queue_depth"`
	LastResync *ResyncStatus  `json:"last_resync"`
	LastReload *ReloadStatus  `json:"last_reload,omitempty"`
	// Summary counts the whole group, whatever the query selected.
	Summary Summary `json:"summary"`
	// NextCursor, when not empty, is the cursor of the page after this
	// one.
	NextCursor string `json:"next_cursor,omitempty"`
}

// Summary counts the group's streams and replica cells.
type Summary struct {
	Streams int `json:"streams"`
	// Replicas counts the desired replica cells by state.
	Replicas map[string]int `json:"replicas"`
	// Attention counts the streams with a cell the operator must look at
	// (conflict, unreplicable, failing, unknown).
	Attention int `json:"attention"`
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
	// Desired lists, in replication mode demand, the members that should
	// hold the stream besides its origin, in rendezvous order; demand
	// copies among them are marked in their replica status.
	Desired []string `json:"desired,omitempty"`

	// raw, when set, is the stream's JSON (a StatusQuery with Encoding).
	raw []byte
}

// WriteJSON writes st as compact JSON, the same as encoding/json makes of
// it, followed by a newline. With a document asked for with Encoding it
// writes each stream's kept JSON as it is, which for a large group is most
// of the document and most of the cost of encoding it.
func (st Status) WriteJSON(w io.Writer) error {
	streams := st.Streams
	st.Streams = nil
	head, err := json.Marshal(st)
	if err != nil {
		return err
	}
	const key = `"streams":null`
	i := bytes.Index(head, []byte(key))
	if i < 0 {
		return errors.New("status document without its streams key")
	}
	bw := bufio.NewWriterSize(w, 64<<10)
	bw.Write(head[:i+len(key)-len("null")])
	bw.WriteByte('[')
	for j, ss := range streams {
		if j > 0 {
			bw.WriteByte(',')
		}
		b := ss.raw
		if b == nil {
			if b, err = json.Marshal(ss); err != nil {
				return err
			}
		}
		bw.Write(b)
	}
	bw.WriteByte(']')
	bw.Write(head[i+len(key):])
	bw.WriteByte('\n')
	return bw.Flush()
}

// MarshalJSON writes the stream's JSON: the encoding kept with its status
// row when the document was asked for with Encoding, else its fields.
func (s StreamStatus) MarshalJSON() ([]byte, error) {
	if s.raw != nil {
		return s.raw, nil
	}
	type plain StreamStatus
	return json.Marshal(plain(s))
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
	// Demand marks a copy added for viewers (replication mode demand).
	Demand bool `json:"demand,omitempty"`
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

// StatusQuery selects part of the status document. The zero value selects
// everything.
type StatusQuery struct {
	// State keeps the streams with at least one cell in this state.
	State string
	// Member keeps, of each stream, the cells of this member (and the
	// streams whose origin it is).
	Member string
	// Stream keeps the streams whose name matches this path.Match glob.
	Stream string
	// Attention puts the streams that need attention first.
	Attention bool
	// Limit, when positive, is the most streams returned; Cursor the
	// NextCursor of the page before.
	Limit  int
	Cursor string
	// Encoding says the document is for encoding as JSON only: each
	// stream then marshals to the JSON kept with its status row, made once
	// per change of the row, and its Replicas map is left nil (with
	// Member set, streams are built as usual).
	Encoding bool
}

// Snapshot returns the whole status document. Safe for concurrent use.
func (c *Controller) Snapshot() Status { return c.Status(StatusQuery{}) }

// Status returns the status document, restricted to what q selects.
// Concurrent readers share one build, and a build recomputes only the
// streams whose state may have changed since the last one, holding the
// controller's lock a few milliseconds at a time: reading status costs the
// control loop almost nothing, however large the group. Safe for
// concurrent use.
func (c *Controller) Status(q StatusQuery) Status {
	b := c.rows.build(c)
	st := Status{
		Converged:  b.converged,
		State:      b.state,
		Members:    b.members,
		QueueDepth: b.queueDepth,
		LastResync: b.lastResync,
		LastReload: b.lastReload,
		Summary:    b.summary,
		Conflicts:  []Conflict{},
		Streams:    []StreamStatus{},
	}
	rows := b.rows
	if q.Attention {
		rows = b.byAttention
	}
	if q.Limit > 0 {
		st.Streams = make([]StreamStatus, 0, min(q.Limit, len(rows)))
	} else if q.Cursor == "" && q.State == "" && q.Member == "" && q.Stream == "" {
		st.Streams = make([]StreamStatus, 0, len(rows)) // the whole document
	}
	started := q.Cursor == ""
	for _, r := range rows {
		if !started {
			started = r.name == q.Cursor
			continue
		}
		if !r.selected(q) {
			continue
		}
		if q.Limit > 0 && len(st.Streams) == q.Limit {
			st.NextCursor = st.Streams[len(st.Streams)-1].Name
			break
		}
		if q.Encoding && q.Member == "" {
			st.Streams = append(st.Streams, StreamStatus{Name: r.name, Origin: r.origin, raw: r.json()})
			continue
		}
		ss := r.status()
		if q.Member != "" && ss.Origin != q.Member {
			for m := range ss.Replicas {
				if m != q.Member {
					delete(ss.Replicas, m)
				}
			}
		}
		st.Streams = append(st.Streams, ss)
	}
	for _, r := range b.rows {
		for _, cf := range r.conflicts {
			if (q.Member == "" || cf.Member == q.Member) && (q.Stream == "" || globMatch(q.Stream, cf.Stream)) {
				st.Conflicts = append(st.Conflicts, cf)
			}
		}
	}
	return st
}

func globMatch(pattern, name string) bool {
	ok, _ := path.Match(pattern, name)
	return ok
}

// selected reports whether the row passes q's filters.
func (r *streamRow) selected(q StatusQuery) bool {
	if q.Stream != "" && !globMatch(q.Stream, r.name) {
		return false
	}
	if q.Member != "" && r.origin != q.Member && !slices.ContainsFunc(r.cells, func(c cell) bool { return c.member == q.Member }) {
		return false
	}
	if q.State != "" {
		for _, c := range r.cells {
			state := StatePresent
			if c.rs != nil {
				state = c.rs.State
			}
			if state == q.State && (q.Member == "" || c.member == q.Member) {
				return true
			}
		}
		return false
	}
	return true
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

// needsAttention reports whether a cell in state is for the operator to
// look at.
func needsAttention(state string) bool {
	switch state {
	case StateConflict, StateUnreplicable, StateFailing, StateUnknown:
		return true
	}
	return false
}
