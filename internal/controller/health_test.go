package controller

import (
	"context"
	"errors"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"streamlb/internal/ems"
)

// flakyEMS answers every other call with a 500, as a member behind a
// failing load balancer or an overloaded web server does.
type flakyEMS struct {
	*fakeEMS
	mu    sync.Mutex
	on    bool
	n     int
	calls int
}

func (f *flakyEMS) fail(cmd string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if !f.on {
		return nil
	}
	f.n++
	if f.n%2 == 0 {
		return &ems.Error{Member: f.addr, Command: cmd, Kind: ems.KindHTTP, StatusCode: 500, Err: errors.New("500")}
	}
	return nil
}

func (f *flakyEMS) Version(ctx context.Context) (ems.Version, error) {
	if err := f.fail("version"); err != nil {
		return ems.Version{}, err
	}
	return f.fakeEMS.Version(ctx)
}

func (f *flakyEMS) ListConfig(ctx context.Context) ([]ems.PullConfig, error) {
	if err := f.fail("listConfig"); err != nil {
		return nil, err
	}
	return f.fakeEMS.ListConfig(ctx)
}

func (f *flakyEMS) ListInboundStreamNames(ctx context.Context) ([]string, error) {
	if err := f.fail("listInboundStreamNames"); err != nil {
		return nil, err
	}
	return f.fakeEMS.ListInboundStreamNames(ctx)
}

func (f *flakyEMS) PullStream(ctx context.Context, req ems.PullRequest) (ems.PullResult, error) {
	if err := f.fail("pullStream"); err != nil {
		return ems.PullResult{}, err
	}
	return f.fakeEMS.PullStream(ctx, req)
}

func (f *flakyEMS) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

// A member failing every other call is parked, not hammered: each probe
// that succeeds brings it back, the next failure parks it again, and the
// probes of such a flapping member back off as those of one that stays
// down. Once it answers again it is refilled.
func TestFlappingMemberIsNotHammered(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newFakeGroup(addrA, addrB, addrC)
		specs := g.specs("a", "b", "c")
		c := &flakyEMS{fakeEMS: g.m(addrC)}
		specs[2].Client = c
		h := newHarness(t, func(o *Options) { o.Members = specs; o.ResyncInterval = 10 * time.Second })
		h.g = g
		defer h.end()
		for i := range 20 {
			name := string(rune('a' + i))
			g.m(addrA).publish(name)
			h.event("inStreamCreated", addrA, name)
		}
		c.mu.Lock()
		c.on = true
		c.mu.Unlock()
		before := c.count()
		h.settle(time.Minute)
		// Each return costs a probe, a listing and a few pulls before
		// three failures park the member again; the returns back off
		// from a second to the resync interval: ten or so in a minute.
		// (Without the backoff, tens of thousands.)
		if n := c.count() - before; n > 120 {
			t.Errorf("a member failing every other call got %d calls in a minute; want it parked and probed", n)
		}
		c.mu.Lock()
		c.on = false
		c.mu.Unlock()
		h.settle(25 * time.Second)
		if n := len(g.m(addrC).replicas()); n != 20 {
			t.Errorf("member c holds %d replicas once it answers again, want 20", n)
		}
	})
}
