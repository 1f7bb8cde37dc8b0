package controller

import (
	"context"
	"testing"
	"testing/synctest"
	"time"
)

// The gate halves on failures down to its floor, climbs back with
// successes up to the ceiling, and paces waits at its current rate.
func TestPullGateAdapts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newPullGate(100)
		if got := g.rate(); got != 100 {
			t.Fatalf("rate %v, want the ceiling 100", got)
		}
		for range 3 {
			g.failed()
		}
		if got := g.rate(); got != 12.5 {
			t.Errorf("rate after three failures %v, want 12.5", got)
		}
		for range 20 {
			g.failed()
		}
		if got := g.rate(); got != minPullRate {
			t.Errorf("rate after many failures %v, want the floor %v", got, float64(minPullRate))
		}
		// At 2/s with a burst of 1, ten pulls take about 4.5 s.
		start := time.Now()
		for range 10 {
			if err := g.wait(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
		if d := time.Since(start); d < 4*time.Second || d > 5*time.Second {
			t.Errorf("ten pulls at the floor took %v, want about 4.5s", d)
		}
		for range 100 {
			g.succeeded()
		}
		if got := g.rate(); got != 100 {
			t.Errorf("rate after successes %v, want back at the ceiling 100", got)
		}
		g.setCeiling(0)
		g.failed()
		if got := g.rate(); got != 0 {
			t.Errorf("uncapped rate %v, want 0 (no cap)", got)
		}
	})
}
