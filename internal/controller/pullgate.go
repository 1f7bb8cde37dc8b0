package controller

import (
	"context"
	"math"
	"sync"

	"golang.org/x/time/rate"
)

// pullGate paces the new replica pulls taken from one origin, across every
// destination: refilling members all at once does not stampede it. The
// rate adapts to what the origin sustains: it halves when a pull from the
// origin fails (EMS refuses or does not answer the call), and
// climbs back by a fiftieth of the ceiling with each pull that succeeds,
// never above the operator's ceiling (max_pulls_per_second; 0: no cap and
// no pacing). Safe for concurrent use.
type pullGate struct {
	mu      sync.Mutex
	ceiling float64 // 0: no cap
	cur     float64
	lim     *rate.Limiter
}

// minPullRate is the lowest rate a failing origin is paced down to.
const minPullRate = 2

func newPullGate(ceiling float64) *pullGate {
	g := &pullGate{lim: rate.NewLimiter(rate.Inf, 1)}
	g.setCeiling(ceiling)
	return g
}

// setCeiling applies a new ceiling; the rate starts from it.
func (g *pullGate) setCeiling(ceiling float64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.ceiling, g.cur = ceiling, ceiling
	g.applyLocked()
}

func (g *pullGate) applyLocked() {
	if g.ceiling <= 0 {
		g.lim.SetLimit(rate.Inf)
		return
	}
	g.lim.SetLimit(rate.Limit(g.cur))
	g.lim.SetBurst(max(1, int(math.Ceil(g.cur/10))))
}

// wait blocks until a pull from the origin may start.
func (g *pullGate) wait(ctx context.Context) error { return g.lim.Wait(ctx) }

// succeeded opens the rate up after a pull that worked.
func (g *pullGate) succeeded() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.ceiling <= 0 || g.cur >= g.ceiling {
		return
	}
	g.cur = min(g.ceiling, g.cur+g.ceiling/50)
	g.applyLocked()
}

// failed halves the rate after a pull from the origin failed.
func (g *pullGate) failed() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.ceiling <= 0 {
		return
	}
	g.cur = max(min(minPullRate, g.ceiling), g.cur/2)
	g.applyLocked()
}

// rate returns the current rate in pulls per second, 0 for no cap.
func (g *pullGate) rate() float64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.ceiling <= 0 {
		return 0
	}
	return g.cur
}
