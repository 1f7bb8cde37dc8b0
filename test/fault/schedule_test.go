package fault

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"streamlb/internal/config"
)

// Kinds of fault, as counted in the figures.
const (
	faultKillState    = "member SIGKILL, restarted with -state"
	faultKillNoState  = "member SIGKILL, restarted without -state"
	faultDown         = "member down (API, events and media)"
	faultAPIDown      = "member API partition, media up (api_down)"
	faultLatency      = "member API latency spike"
	faultHang         = "member API hang (latency 4x the call timeout)"
	faultErrors       = "member API burst of 5xx"
	faultErrorsAll    = "member API all 5xx (error_rate=1)"
	faultCreds        = "wrong credentials for the proxied member (reload)"
	faultLost         = "events lost"
	faultFlap         = "source flap shorter than teardown_grace"
	faultEnd          = "source ended"
	faultStart        = "source started"
	faultBurst        = "burst of sources published"
	faultFlood        = "forged event flood"
	faultFloodDown    = "forged floods while a member is down"
	faultBalancerKill = "balancer killed and restarted"
	faultSecondJoins  = "second balancer joins (active-active)"
	faultSecondLeaves = "second balancer killed (leaves)"
)

// Sizes and paces of the schedule.
const (
	burstSize          = 25
	floodSize          = 400
	floodWorkers       = 8
	actionSpacing      = 350 * time.Millisecond
	maxFaultWindow     = 3 * time.Second
	initialConvergence = 20 * time.Second
	// hangLatency is the API latency of a hang: far beyond the call
	// timeout, so every call to the member times out. A pull the member
	// starts meanwhile connects this much later (emsim delays pulls by
	// its latency), which the convergence bound allows for.
	hangLatency = 4 * callTimeout
)

// apiFaultKinds are the faults the schedule injects into a member's API or
// the whole member for a window; faultCreds applies to the proxied member
// only.
var apiFaultKinds = []string{faultDown, faultAPIDown, faultLatency, faultHang, faultErrors, faultErrorsAll, faultCreds}

// mandatoryKinds are placed in every round before the random draws, so
// that even the short schedule injects each of them.
var mandatoryKinds = []string{faultErrorsAll, faultHang, faultAPIDown, faultCreds}

// step is one scheduled action of a round.
type step struct {
	at   time.Duration
	name string
	do   func() error
}

// runner drives the world through rounds of seeded random faults.
type runner struct {
	*world
	t     *testing.T
	rng   *rand.Rand
	count map[string]int
	seq   int
	hc    *http.Client
	// cfgText renders the group's config with the proxied member's
	// password file; pwFile is that file.
	cfgText string
	pwFile  string

	// windows counts the origin fault windows checked, by kind; held the
	// replicas of live sources seen kept through them.
	windows map[string]int
	held    int

	floods    sync.WaitGroup
	floodMu   sync.Mutex
	floodRate []float64
	// floodLost counts forged events posted to a balancer killed during
	// the flood; floodRefused those a running balancer answered with
	// anything but 200.
	floodLost, floodRefused atomic.Int64
}

// schedule draws the steps of a round of faults lasting d: first one
// window of each of mandatory, then one action every actionSpacing on
// average.
func (r *runner) schedule(d time.Duration, mandatory []string) []step {
	var starts []time.Duration
	for range int(d / actionSpacing) {
		starts = append(starts, time.Duration(r.rng.Int64N(int64(d))))
	}
	slices.Sort(starts)
	busy := make([][][2]time.Duration, len(r.members)) // member fault windows
	balBusy := make([]time.Duration, len(r.balancers))
	secondOn := r.balancers[1].running()
	lostBusy := time.Duration(0)
	var steps []step
	window := func(at time.Duration) time.Duration {
		return min(at+time.Duration(300+r.rng.IntN(int(maxFaultWindow/time.Millisecond)-300))*time.Millisecond, d)
	}
	// freeMember picks a member with no fault window meeting [at, end]
	// (and a gap after it), and books the window; -1 when there is none.
	freeMember := func(at, end time.Duration, kind string) int {
		var free []int
		for i, ws := range busy {
			if kind == faultCreds && !r.members[i].proxy {
				continue
			}
			if !slices.ContainsFunc(ws, func(w [2]time.Duration) bool {
				return w[0] <= end+200*time.Millisecond && at <= w[1]+200*time.Millisecond
			}) {
				free = append(free, i)
			}
		}
		if len(free) == 0 {
			return -1
		}
		i := free[r.rng.IntN(len(free))]
		busy[i] = append(busy[i], [2]time.Duration{at, end})
		return i
	}
	for _, kind := range mandatory {
		for range 20 {
			at := time.Duration(r.rng.Int64N(int64(max(d-maxFaultWindow, time.Second))))
			end := window(at)
			if i := freeMember(at, end, kind); i >= 0 {
				steps = append(steps, r.memberFault(i, kind, at, end)...)
				break
			}
		}
	}
	for _, at := range starts {
		switch k := r.rng.IntN(100); {
		case k < 12: // member killed
			end := window(at)
			i := freeMember(at, end, "")
			if i < 0 {
				continue
			}
			steps = append(steps, r.memberKill(i, r.rng.IntN(2) == 0, at, end)...)
		case k < 32: // member API fault, or the whole member down
			kind := apiFaultKinds[r.rng.IntN(len(apiFaultKinds))]
			end := window(at)
			i := freeMember(at, end, kind)
			if i < 0 {
				continue
			}
			steps = append(steps, r.memberFault(i, kind, at, end)...)
		case k < 40: // events lost
			if lostBusy > at {
				continue
			}
			end := window(at)
			lostBusy = end
			p := 0.5 + 0.5*r.rng.Float64()
			steps = append(steps,
				step{at, fmt.Sprintf("lose %.0f%% of events", p*100), func() error { return r.loseEvents(p) }},
				step{end, "deliver events again", func() error { return r.loseEvents(0) }})
		case k < 60: // source flap
			off := time.Duration(50+r.rng.IntN(int(teardownGrace/time.Millisecond)*6/10)) * time.Millisecond
			steps = append(steps, step{at, "flap a source", func() error { return r.flap(off) }})
		case k < 72: // churn
			steps = append(steps, step{at, "end a source, start another", r.churn})
		case k < 76:
			steps = append(steps, step{at, "publish a burst", r.burst})
		case k < 82:
			steps = append(steps, step{at, "forged event flood", func() error { r.flood(); return nil }})
		case k < 92: // a balancer killed
			var free []int
			for j, b := range balBusy {
				if b <= at && (j == 0 || secondOn) {
					free = append(free, j)
				}
			}
			if len(free) == 0 {
				continue
			}
			j := free[r.rng.IntN(len(free))]
			end := min(at+time.Duration(200+r.rng.IntN(1800))*time.Millisecond, d)
			balBusy[j] = end
			b := r.balancers[j]
			steps = append(steps,
				step{at, "kill balancer " + b.name, func() error { r.count[faultBalancerKill]++; b.kill(); return nil }},
				step{end, "restart balancer " + b.name, b.start})
		default: // the second balancer joins or leaves
			if balBusy[1] > at {
				continue
			}
			b := r.balancers[1]
			if secondOn {
				steps = append(steps, step{at, "second balancer leaves", func() error { r.count[faultSecondLeaves]++; b.kill(); return nil }})
			} else {
				steps = append(steps, step{at, "second balancer joins", func() error { r.count[faultSecondJoins]++; return b.start() }})
			}
			secondOn = !secondOn
			balBusy[1] = at + 100*time.Millisecond
		}
	}
	sort.SliceStable(steps, func(a, b int) bool { return steps[a].at < steps[b].at })
	return steps
}

// memberKill returns the steps that kill member i at at and restart it at
// end, with or without its state file, checking the window of its sources
// once it is restored.
func (r *runner) memberKill(i int, withState bool, at, end time.Duration) []step {
	kind := faultKillNoState
	if withState {
		kind = faultKillState
	}
	var ow *originWindow
	return []step{
		{at, "kill " + r.members[i].name, func() error {
			r.openFault(i)
			ow = r.openWindow(i, kind)
			r.members[i].kill()
			return nil
		}},
		{end, "restart " + r.members[i].name, func() error {
			r.count[kind]++
			if err := r.members[i].start(withState); err != nil {
				return err
			}
			err := r.restore(i)
			r.closeWindowOf(ow)
			r.closeFault(i)
			return err
		}},
	}
}

// memberFault returns the steps that inject a fault of kind into member i
// from at to end. While the fault lasts, the replicas of the member's live
// sources must stay where they are: that is checked just before it is
// cleared.
func (r *runner) memberFault(i int, kind string, at, end time.Duration) []step {
	m := r.members[i]
	var f faults
	switch kind {
	case faultDown:
		f.down = true
	case faultAPIDown:
		f.apiDown = true
	case faultLatency:
		f.latency = time.Duration(100+r.rng.IntN(2900)) * time.Millisecond
	case faultHang:
		f.latency = hangLatency
	case faultErrors:
		f.errorRate = 0.3 + 0.69*r.rng.Float64()
	case faultErrorsAll:
		f.errorRate = 1
	}
	var ow *originWindow
	return []step{
		{at, kind + " on " + m.name, func() error {
			r.count[kind]++
			r.openFault(i)
			ow = r.openWindow(i, kind)
			if kind == faultCreds {
				return r.setPassword(proxyPassword + "-wrong")
			}
			return m.setFaults(f)
		}},
		{end, "clear " + kind + " on " + m.name, func() error {
			if kind == faultCreds {
				r.awaitUnauthorized(m.name)
			}
			r.closeWindowOf(ow)
			var err error
			if kind == faultCreds {
				err = r.setPassword(proxyPassword)
			} else {
				err = m.setFaults(faults{})
			}
			r.closeFault(i)
			return err
		}},
	}
}

// closeWindowOf checks an origin fault window, reporting what it finds.
func (r *runner) closeWindowOf(ow *originWindow) {
	problems, checked := r.closeWindow(ow)
	r.windows[ow.kind]++
	r.held += checked
	for _, p := range problems {
		r.t.Errorf("replica of a live source not kept: %s", p)
	}
}

// setPassword writes pw to the proxied member's password file and has
// every balancer reload its config: the running ones at once, the others
// when they next start.
func (r *runner) setPassword(pw string) error {
	if err := os.WriteFile(r.pwFile, []byte(pw+"\n"), 0o600); err != nil {
		return err
	}
	cfg, err := config.Parse("fault.json", []byte(r.cfgText))
	if err != nil {
		return err
	}
	for _, b := range r.balancers {
		if err := b.reload(cfg); err != nil {
			return err
		}
	}
	return nil
}

// awaitUnauthorized waits until every running balancer's status shows
// member unauthorized, and reports those that do not within the time a
// reload and a probe take.
func (r *runner) awaitUnauthorized(member string) {
	deadline := time.Now().Add(resyncInterval + 2*callTimeout + time.Second)
	for {
		var wrong []string
		for _, b := range r.balancers {
			if st, ok := b.memberState(member); ok && st != "unauthorized" {
				wrong = append(wrong, fmt.Sprintf("balancer %s says %q", b.name, st))
			}
		}
		if len(wrong) == 0 {
			return
		}
		if time.Now().After(deadline) {
			r.t.Errorf("member %s has refused the balancers' credentials since a reload, but its status is not unauthorized: %s", member, strings.Join(wrong, "; "))
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// run executes steps, each at its time from now.
func (r *runner) run(steps []step) {
	start := time.Now()
	for _, s := range steps {
		if wait := time.Until(start.Add(s.at)); wait > 0 {
			time.Sleep(wait) // the schedule's pace, not a wait for a condition
		}
		r.t.Logf("%s %s", time.Now().Format(tsFormat), s.name)
		if err := s.do(); err != nil {
			r.t.Fatalf("%s: %v", s.name, err)
		}
	}
	r.floods.Wait()
}

func (r *runner) openFault(i int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.faults[i] = append(r.faults[i], interval{start: time.Now()})
}

func (r *runner) closeFault(i int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if n := len(r.faults[i]); n > 0 && r.faults[i][n-1].end.IsZero() {
		r.faults[i][n-1].end = time.Now()
	}
}

func (r *runner) loseEvents(p float64) error {
	r.mu.Lock()
	now := time.Now()
	if p > 0 {
		r.count[faultLost]++
		r.lost = append(r.lost, interval{start: now})
	} else if n := len(r.lost); n > 0 {
		r.lost[n-1].end = now
	}
	r.mu.Unlock()
	r.relay.setDropRate(p)
	return nil
}

// pick returns a random source that ok accepts, or nil.
func (r *runner) pick(ok func(*source) bool) *source {
	r.mu.Lock()
	defer r.mu.Unlock()
	var names []string
	for n, s := range r.sources {
		if ok(s) {
			names = append(names, n)
		}
	}
	if len(names) == 0 {
		return nil
	}
	slices.Sort(names)
	return r.sources[names[r.rng.IntN(len(names))]]
}

// flap turns an encoder off and on again within off.
func (r *runner) flap(off time.Duration) error {
	s := r.pick(func(s *source) bool {
		return s.on && !s.external && r.members[s.origin].running()
	})
	if s == nil {
		return nil
	}
	r.count[faultFlap]++
	m := r.members[s.origin]
	r.mu.Lock()
	s.setOff(time.Now())
	r.mu.Unlock()
	if err := m.unpublish(s.name); err != nil {
		return err
	}
	time.Sleep(off) // the flap itself: the source stays off this long
	r.mu.Lock()
	s.setOn(time.Now())
	r.mu.Unlock()
	if !m.running() {
		return nil // published again when the member restarts
	}
	return m.publish(s.name)
}

// churn ends a source and starts a new one.
func (r *runner) churn() error {
	s := r.pick(func(s *source) bool {
		return s.on && !s.external && !strings.HasPrefix(s.name, "pin-")
	})
	if s != nil {
		r.count[faultEnd]++
		r.mu.Lock()
		s.setOff(time.Now())
		s.ended = true
		r.mu.Unlock()
		if m := r.members[s.origin]; m.running() {
			if err := m.unpublish(s.name); err != nil {
				return err
			}
		}
	}
	return r.startSources(1, faultStart)
}

// burst ends the sources of the previous burst, all at once, and
// publishes as many new ones on one member.
func (r *runner) burst() error {
	r.mu.Lock()
	var ending []*source
	for _, s := range r.sources {
		if s.burst && s.on {
			ending = append(ending, s)
		}
	}
	now := time.Now()
	for _, s := range ending {
		s.setOff(now)
		s.ended = true
	}
	r.mu.Unlock()
	for _, s := range ending {
		if m := r.members[s.origin]; m.running() {
			if err := m.unpublish(s.name); err != nil {
				return err
			}
		}
	}
	return r.startSources(burstSize, faultBurst)
}

// startSources publishes n new encoders on one running member.
func (r *runner) startSources(n int, kind string) error {
	var up []int
	for i, m := range r.members {
		if m.running() {
			up = append(up, i)
		}
	}
	if len(up) == 0 {
		return nil
	}
	i := up[r.rng.IntN(len(up))]
	r.count[kind]++
	for range n {
		r.seq++
		name := fmt.Sprintf("s%04d-%s", r.seq, r.members[i].name)
		r.mu.Lock()
		r.sources[name] = &source{name: name, origin: i, on: true, burst: kind == faultBurst}
		r.mu.Unlock()
		if err := r.members[i].publish(name); err != nil {
			return err
		}
	}
	return nil
}

// flood posts forged inStreamCreated events, for streams that exist
// nowhere, to every running balancer, in the background.
func (r *runner) flood() {
	r.count[faultFlood]++
	var urls []string
	for _, b := range r.balancers {
		b.mu.Lock()
		if b.app != nil {
			urls = append(urls, "http://"+b.app.Addr()+"/evowebservices/")
		}
		b.mu.Unlock()
	}
	r.seq++
	tag := r.seq
	ips := make([]string, len(r.members))
	for i, m := range r.members {
		ips[i] = m.ip
	}
	r.floods.Go(func() {
		start := time.Now()
		var sent atomic.Int64
		var wg sync.WaitGroup
		for w := range floodWorkers {
			wg.Go(func() {
				for k := w; k < floodSize; k += floodWorkers {
					body := fmt.Sprintf(`{"id":%d,"payload":{"name":"forged-%d-%d","ip":%q,"connectionType":0},"processId":1,"timestamp":1,"type":"inStreamCreated"}`,
						k, tag, k, ips[k%len(ips)])
					for _, u := range urls {
						if err := forwardString(r.hc, u, body); err != nil {
							if _, ok := errors.AsType[*statusError](err); ok {
								r.floodRefused.Add(1)
							} else {
								r.floodLost.Add(1)
							}
							continue
						}
						sent.Add(1)
					}
				}
			})
		}
		wg.Wait()
		if d := time.Since(start); sent.Load() > 0 {
			r.floodMu.Lock()
			r.floodRate = append(r.floodRate, float64(sent.Load())/d.Seconds())
			r.floodMu.Unlock()
		}
	})
}

func forwardString(hc *http.Client, url, body string) error {
	return forward(context.Background(), hc, url, []byte(body))
}
