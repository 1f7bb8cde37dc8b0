package controller

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// Entry is one transition of the group as the journal keeps it: when it
// happened (not when somebody looked), in order. It holds no credential.
type Entry struct {
	Seq    uint64    `json:"seq"`
	At     time.Time `json:"at"`
	Kind   string    `json:"kind"`
	Member string    `json:"member,omitempty"`
	Stream string    `json:"stream,omitempty"`
	Origin string    `json:"origin,omitempty"`
	Detail string    `json:"detail,omitempty"`
}

// Journal entry kinds.
const (
	EntryReplicaPulled      = "replica_pulled"
	EntryReplicaRemoved     = "replica_removed"
	EntryReplicaFailing     = "replica_failing"
	EntryReplicaRecovered   = "replica_recovered"
	EntrySourceAppeared     = "source_appeared"
	EntrySourceEnded        = "source_ended"
	EntryMemberDown         = "member_down"
	EntryMemberUp           = "member_up"
	EntryMemberUnauthorized = "member_unauthorized"
	EntryConflict           = "conflict"
	EntryReload             = "reload"
	EntryUnreplicable       = "unreplicable"
)

// DefaultJournalSize is how many entries the journal keeps by default.
const DefaultJournalSize = 10000

// JournalPage is a read of the journal.
type JournalPage struct {
	// Events are the entries after the sequence number asked for, oldest
	// first.
	Events []Entry `json:"events"`
	// Next is the sequence number to ask for next: the newest entry's.
	Next uint64 `json:"next"`
	// Oldest is the sequence number of the oldest entry still kept;
	// entries between the one asked for and it were dropped.
	Oldest uint64 `json:"oldest"`
}

// journal is a bounded ring of entries with its own lock, so that readers
// never wait for the controller's. Safe for concurrent use.
type journal struct {
	mu   sync.Mutex
	ring []Entry // ring[(seq-1) % len]; len is the capacity
	seq  uint64  // of the newest entry; 0: none yet
	wait chan struct{}
}

func newJournal(size int) *journal {
	if size <= 0 {
		size = DefaultJournalSize
	}
	return &journal{ring: make([]Entry, size), wait: make(chan struct{})}
}

// add appends e, numbering it, and wakes the waiting readers.
func (j *journal) add(e Entry) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.seq++
	e.Seq = j.seq
	j.ring[(j.seq-1)%uint64(len(j.ring))] = e
	close(j.wait)
	j.wait = make(chan struct{})
}

// read returns up to limit entries after since (all with limit <= 0), and
// a channel closed when the next entry is added.
func (j *journal) read(since uint64, limit int) (JournalPage, <-chan struct{}) {
	j.mu.Lock()
	defer j.mu.Unlock()
	n := uint64(len(j.ring))
	oldest := uint64(1)
	if j.seq > n {
		oldest = j.seq - n + 1
	}
	p := JournalPage{Next: j.seq, Oldest: oldest, Events: []Entry{}}
	if j.seq == 0 {
		p.Oldest = 0
	}
	from := max(since+1, oldest)
	if since > j.seq {
		from = j.seq + 1 // a reader from an earlier life of the balancer
	}
	for s := from; s <= j.seq; s++ {
		if limit > 0 && len(p.Events) >= limit {
			p.Next = s - 1
			break
		}
		p.Events = append(p.Events, j.ring[(s-1)%n])
	}
	return p, j.wait
}

// Journal returns up to limit of the group's transitions after sequence
// number since (0: from the oldest kept), and a channel closed as soon as a
// newer one is recorded. Safe for concurrent use; it never takes the
// controller's lock.
func (c *Controller) Journal(since uint64, limit int) (JournalPage, <-chan struct{}) {
	return c.journal.read(since, limit)
}

// record writes a transition to the journal and to the log, at the time it
// happened.
func (c *Controller) record(e Entry) {
	if e.At.IsZero() {
		e.At = time.Now()
	}
	c.journal.add(e)
	level := slog.LevelInfo
	switch e.Kind {
	case EntryMemberDown, EntryConflict, EntryReplicaFailing, EntryUnreplicable:
		level = slog.LevelWarn
	case EntryMemberUnauthorized:
		level = slog.LevelError
	}
	ctx := context.Background()
	if !c.log.Enabled(ctx, level) {
		return
	}
	attrs := make([]slog.Attr, 0, 4)
	if e.Member != "" {
		attrs = append(attrs, slog.String("member", e.Member))
	}
	if e.Stream != "" {
		attrs = append(attrs, slog.String("stream", e.Stream))
	}
	if e.Origin != "" {
		attrs = append(attrs, slog.String("origin", e.Origin))
	}
	if e.Detail != "" {
		attrs = append(attrs, slog.String("detail", e.Detail))
	}
	c.log.LogAttrs(ctx, level, entryMessage[e.Kind], attrs...)
}

// entryMessage is the log message of each kind of entry.
var entryMessage = map[string]string{
	EntryReplicaPulled:      "replica pulled",
	EntryReplicaRemoved:     "replica removed",
	EntryReplicaFailing:     "replica failing",
	EntryReplicaRecovered:   "replica streaming again",
	EntrySourceAppeared:     "source appeared",
	EntrySourceEnded:        "source ended",
	EntryMemberDown:         "member is down; parked and probed",
	EntryMemberUp:           "member is up",
	EntryMemberUnauthorized: "wrong credentials for member; parked until the config changes",
	EntryConflict:           "name is a source on several members; one origin is replicated",
	EntryReload:             "config reload",
	EntryUnreplicable:       "source name cannot be replicated",
}
