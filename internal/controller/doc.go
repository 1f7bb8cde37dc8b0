// Package controller keeps a group of EMS members holding the streams their
// viewers need. It compares the desired state (each source stream on the
// members that should hold it) with what each member lists, and converges
// them with replica pulls and removals: events are hints, listings are the
// truth.
//
// # Decisions
//
// Every decision is a pure function of what the members listed (and the
// time): plan.go decides what one replica needs (planLocked), which origin
// wins a name published on several members (winnerLocked), and, in
// replication mode "demand", which members hold a stream (demand.go). The
// planner writes nothing, so the daemon's workers, the one-shot Sync and
// Prune, the status document and every other balancer of the group reach
// the same decisions from the same listings. Two rules bound it:
//
//   - Destroy only on evidence. A source is absent only when a successful
//     listing of its origin lacked it; an origin that cannot be listed makes
//     its sources unknown, and nothing is removed on their account. A removal
//     uses a configId from a listing of the member taken after the removal
//     was decided.
//   - Bound what outsiders feed. Events only queue names for confirmation on
//     their origin (a bounded set per origin, none for a member that is
//     down); whatever they carry is clipped before it is logged or kept.
//
// # Goroutines
//
// Run starts, per member, a lister and max_inflight workers (startMemberLocked),
// plus one event loop and one member loop for the controller, and runs the
// resync loop itself:
//
//   - resyncLoop lists every member (two calls each, two members at a time)
//     every resync_interval and on demand, applies the listings and queues
//     the replicas that need work (diffAll, a chunk of streams per hold of
//     the lock).
//   - eventLoop takes stream events from the inbox, which the event sink
//     fills without waiting for the controller's lock, and queues their
//     names for confirmation on their origin.
//   - lister (one per member) runs that member's on-demand listings:
//     confirmations of more announced names than calls of their own serve,
//     relists after a pull or a name conflict, the listings removals wait
//     for (after which only the streams they changed are planned again,
//     diffNames), creation-time lookups of conflicting names, and the
//     probes of a member that is down or refuses the credentials (once it
//     is back and listed, its sources are planned on every other member,
//     diffSourcesOf).
//   - confirmByName (up to four per member, started as names are announced)
//     confirms one announced name on its origin with a getStreamInfo call
//     of its own, never while the origin is being listed.
//   - worker (max_inflight per member) takes a stream off the member's
//     deduplicating queue, plans it, and makes the one call it needs:
//     pullStream or removeConfig, paced per origin (pullGate).
//   - memberLoop starts the members a reload added (SetMembers) and stops
//     those it removed or replaced: members are started and stopped only
//     by Run.
//
// Stopping Run's context stops them all; Run returns when they have.
//
// # Locks
//
// Controller.mu guards the members' observed state, the sources, the work
// records, the status rows' dirty marks and the member list. Nothing holds
// it across an EMS call: calls are made outside it and their results
// applied under it. A member's listMu, which lets one listing of it run at
// a time, is taken before it; a listing also waits (on Controller.confirmed)
// for the calls confirming names one by one on that member to end, and none
// starts until it has listed the member's inbound streams. What those that
// start while a full listing reads the configs find is newer than the
// listing, and kept when it is applied. The journal, the inbox, each queue and each pullGate
// have their own small locks, taken after Controller.mu when both are
// held; status builds are serialised by the row cache's own lock, taken
// before Controller.mu, and hold Controller.mu a few milliseconds at a
// time.
//
// # State
//
// Per member (member), in parts named for what they hold: spec (what is
// configured), health (up, down or unauthorized, its last error, its two
// latest load samples), obs (its last listing, with when it was taken),
// work (its queue, the work records of replicas in trouble, removals
// waiting for a fresh listing, names to confirm) and run (its goroutines).
// Per stream name (sources): on which members it is a source, since when
// it is absent, its creation time where a conflict needs it.
//
// # The life of a replica
//
// desired (its source appears on a winning origin and this member should
// hold it) → missing → pulled: pending until a listing or its
// inStreamCreated shows it streaming → present → (not streaming past
// teardown_grace: failing → present again when it streams) → the source is
// absent from a successful listing of its origin for teardown_grace, or
// another origin wins, or in mode demand nobody watches a demand copy →
// removed. A replica whose origin or member cannot be listed is unknown and
// left exactly as it is.
//
// # Reading
//
// Status builds the status document from rows kept between reads
// (rows.go), recomputed only where a change marked them; the metrics read
// the same build. Journal reads the transitions, recorded where they
// happen (journal.go).
package controller
