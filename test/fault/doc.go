// Package fault is streamlb's fault-injection suite: the balancer, in
// process, against emulated EMS members run as separate emsim programs,
// under a seeded random schedule of faults (members killed and restarted
// with and without their state file, API latency spikes, bursts of 5xx
// answers, members down, lost events, sources that flap faster than the
// teardown grace, forged event floods, the balancer itself killed and
// restarted, and a second balancer running active-active on the same
// group).
//
// After each round of faults the group must converge within a bound, with
// no replica of a replica, no duplicate configuration, no configuration
// streamlb did not create touched, no replica removed before its source
// was gone for the grace, no calls once converged, no goroutine leak and
// memory bounded. Every run prints its seed; a failing run reproduces with
// the same seed:
//
//	go test ./test/fault -run TestFaults -fault.seed=SEED -v
//
// By default the schedule is short (CI); -fault.duration sets how long
// faults are injected in all, e.g. a long run of ten minutes:
//
//	go test -race ./test/fault -run TestFaults -fault.duration=10m -timeout=40m -v \
//	    -fault.report=fault-report.json
//
// The figures of a run (faults injected by kind, time to converge after
// faults stop, events per second) are logged, and written as JSON to the
// -fault.report file when given.
package fault
