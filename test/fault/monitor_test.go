package fault

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// monitor checks the invariants that hold at every moment, not only once
// the group has converged, while faults are injected: every replica
// removal is judged against the model as soon as it is logged, and every
// member's configurations are checked for what must never be seen.
type monitor struct {
	w    *world
	t    *testing.T
	stop chan struct{}
	done chan struct{}

	mu       sync.Mutex
	judgedTo time.Time
	judged   int
	sweeps   int
	reported map[string]bool
	known    map[string]int // removals matching a known issue, by issue
}

// monitorEvery is how often the monitor looks.
const monitorEvery = 500 * time.Millisecond

// startMonitor starts judging the removals logged from since on.
func startMonitor(t *testing.T, w *world, since time.Time) *monitor {
	mon := &monitor{w: w, t: t, stop: make(chan struct{}), done: make(chan struct{}), judgedTo: since, reported: map[string]bool{}, known: map[string]int{}}
	go func() {
		defer close(mon.done)
		tick := time.NewTicker(monitorEvery)
		defer tick.Stop()
		for {
			select {
			case <-mon.stop:
				return
			case <-tick.C:
				mon.sweep()
			}
		}
	}()
	return mon
}

// sweep judges the removals logged since the last sweep and checks the
// members once.
func (mon *monitor) sweep() {
	mon.judge()
	problems := mon.w.checkAlways()
	mon.mu.Lock()
	mon.sweeps++
	mon.mu.Unlock()
	mon.report("seen on a member while faults went on", problems)
}

// judge judges the removals logged since the last call.
func (mon *monitor) judge() {
	mon.mu.Lock()
	from := mon.judgedTo
	to := time.Now()
	mon.judgedTo = to
	mon.judged += len(mon.w.removed.between(from, to))
	mon.mu.Unlock()
	problems, known := mon.w.checkRemovals(from, to)
	mon.report("replica removed without cause", problems)
	mon.mu.Lock()
	for _, k := range known {
		id, _, _ := strings.Cut(k, " | ")
		mon.known[id]++
		mon.t.Logf("%s", k)
	}
	mon.mu.Unlock()
}

// report fails the test once for each problem not reported before.
func (mon *monitor) report(what string, problems []string) {
	mon.mu.Lock()
	var fresh []string
	for _, p := range problems {
		if !mon.reported[p] {
			mon.reported[p] = true
			fresh = append(fresh, p)
		}
	}
	mon.mu.Unlock()
	if len(fresh) > 0 {
		mon.t.Errorf("%s (%s):\n%s", what, time.Now().Format(tsFormat), strings.Join(fresh, "\n"))
	}
}

// close stops the monitor after a last judgement, and returns how many
// removals it judged, how many sweeps it made and the removals that
// matched a known issue.
func (mon *monitor) close() (judged, sweeps int, known map[string]int) {
	close(mon.stop)
	<-mon.done
	mon.judge()
	mon.mu.Lock()
	defer mon.mu.Unlock()
	return mon.judged, mon.sweeps, mon.known
}

// quietWindow waits until every running balancer has completed resyncs
// more resyncs (a positive marker that time for work has passed, and at
// least resyncs resync intervals), and returns the pullStream and
// removeConfig calls made meanwhile, by balancer, member, command and
// result; none while converged.
func quietWindow(t *testing.T, balancers []*balancer, resyncs int) (map[string]float64, error) {
	t.Helper()
	calls := func() map[string]float64 {
		out := map[string]float64{}
		for _, b := range balancers {
			maps.Copy(out, b.callsByLabel())
		}
		return out
	}
	before := calls()
	start := time.Now()
	base := map[*balancer]uint64{}
	for _, b := range balancers {
		if n, ok := b.resyncs(); ok {
			base[b] = n
		}
	}
	deadline := start.Add(time.Duration(2*resyncs)*resyncInterval + 5*time.Second)
	for {
		done := time.Since(start) >= time.Duration(resyncs)*resyncInterval
		for b, n0 := range base {
			if n, _ := b.resyncs(); n < n0+uint64(resyncs) {
				done = false
			}
		}
		if done {
			break
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("the balancers did not complete %d resyncs within %v", resyncs, deadline.Sub(start))
		}
		time.Sleep(100 * time.Millisecond)
	}
	after := calls()
	diff := map[string]float64{}
	for k, v := range after {
		if v != before[k] {
			diff[k] = v - before[k]
		}
	}
	return diff, nil
}

// diffString renders quietWindow's calls, one line each.
func diffString(diff map[string]float64) string {
	var lines []string
	for k, v := range diff {
		lines = append(lines, fmt.Sprintf("%s: %v", k, v))
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}
