// Package heapfloor keeps the Go collector from running while the heap is
// small: below a floor, the collector's goal is the floor, not twice the
// live heap.
//
// With GOGC=100 a process whose live heap is a few MiB collects each time
// it has allocated as much again, several times a second under load, and
// on two cores each cycle gives one of them to marking for milliseconds.
// A floor of a few tens of MiB makes those cycles rare and costs at most
// the floor in memory; above the floor nothing changes. After each cycle
// the GC percentage is set so that the next goal is the larger of the
// floor and what GOGC would give.
//
// The runtime has no such setting (GOMEMLIMIT is a ceiling), and the
// libraries that tune GOGC this way read runtime.MemStats, which stops the
// world, at each cycle; this one reads runtime/metrics, which does not.
package heapfloor

import (
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
)

const liveMetric = "/gc/heap/live:bytes"

// Start raises the collector's goal to floor bytes while the live heap is
// small, until stop is called, which restores the GC percentage found at
// the start. It does nothing, and reports false, when GOGC is set in the
// environment (the operator's choice is kept), when the collector is off,
// or when floor is 0.
func Start(floor uint64) (stop func(), started bool) {
	if floor == 0 || os.Getenv("GOGC") != "" {
		return func() {}, false
	}
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	base := int(s[0].Value.Uint64())
	if base <= 0 {
		return func() {}, false
	}
	t := &tuner{floor: floor, base: base}
	t.sample = []metrics.Sample{{Name: liveMetric}}
	t.tune()
	t.arm()
	return t.stop, true
}

// tuner sets the GC percentage after each cycle.
type tuner struct {
	floor uint64
	base  int // GOGC as found

	mu      sync.Mutex
	stopped bool
	sample  []metrics.Sample
}

// arm registers a cleanup on a new object; the collector runs it once a
// cycle has found the object unreachable, that is after each cycle. The
// object is larger than the tiny allocator's blocks, which hold several
// objects and are freed, with their cleanups, only when all are garbage.
func (t *tuner) arm() {
	sentinel := new([32]byte)
	runtime.AddCleanup(sentinel, func(t *tuner) {
		if t.tune() {
			t.arm()
		}
	}, t)
}

// tune sets the GC percentage for the live heap now, and reports whether
// the tuner still runs.
func (t *tuner) tune() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopped {
		return false
	}
	metrics.Read(t.sample)
	debug.SetGCPercent(Percent(t.sample[0].Value.Uint64(), t.floor, t.base))
	return true
}

func (t *tuner) stop() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.stopped {
		t.stopped = true
		debug.SetGCPercent(t.base)
	}
}

// heapMinimum is the runtime's least goal at GOGC=100, 4 MiB; it scales
// with the GC percentage, so a goal never falls below heapMinimum×GOGC/100.
const heapMinimum = 4 << 20

// Percent returns the GC percentage that puts the next goal at the larger
// of floor and what base gives for a live heap of live bytes (0 before
// the first cycle).
func Percent(live, floor uint64, base int) int {
	if live*uint64(100+base)/100 >= floor {
		return base
	}
	// The goal is the larger of live×(1+p/100) and heapMinimum×p/100:
	// the smaller p of the two that reach floor.
	p := floor * 100 / heapMinimum
	if live > 0 {
		p = min(p, floor*100/live-100)
	}
	return max(int(p), base)
}
