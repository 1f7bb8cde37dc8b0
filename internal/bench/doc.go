// Package bench measures streamlb against emulated EMS members, as the
// streamlb bench command runs it.
//
// Run starts the emulated members (one emsim process holding them all, or
// one process per member) and the balancer, each as a child process of the
// running streamlb binary, so that the balancer's memory and CPU are its
// own. It then drives the scenarios one after the other, each on a fresh
// group where it needs one:
//
//   - ack: events of the recorded EMS event mix are posted to the event
//     sink at a fixed rate, each on a new connection as EMS posts them; the
//     answer time of every POST is measured, and for every stream event that
//     fans out, the time from its answer to the last destination's
//     pullStream answer (propagation).
//   - burst: thousands of streams appear at once on one origin; the burst
//     lasts until every destination holds every replica. The ceiling is the
//     same pullStream calls made by a plain HTTP client at the same
//     concurrency against a fresh emulator group, in the same run.
//   - resync: one resync pass of the converged group, triggered by a reload.
//   - recovery: a destination restarts empty; the time until it holds every
//     replica again.
//
// With Options.Replication "demand", the burst's group runs replication
// mode demand with the play block on: the burst lasts until each stream is
// held by exactly Options.Copies members, and a scale-up step, after the
// other scenarios, loads every holder of one stream with players and times
// the copy the balancer adds for them.
//
// The balancer's peak memory is its VmHWM (Linux); its peak heap comes from
// the Go runtime's GC trace.
package bench
