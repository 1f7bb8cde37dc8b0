package controller

import (
	"cmp"
	"context"
	"slices"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
)

// Survey lists every member once, as a running controller's first resync
// does, and returns the status. It is for the status command and starts
// nothing; the Controller must not be running.
func (c *Controller) Survey(ctx context.Context) Status {
	c.Resync(ctx)
	c.mu.Lock()
	if !c.isReady {
		c.isReady = true
		close(c.ready)
	}
	c.allDirtyLocked()
	c.mu.Unlock()
	return c.Snapshot()
}

// Action is one change a sync or prune pass makes (or would make).
type Action struct {
	Kind     string `json:"kind"` // "pull" or "remove"
	Member   string `json:"member"`
	Stream   string `json:"stream"`
	Origin   string `json:"origin,omitempty"`
	ConfigID uint64 `json:"config_id,omitempty"`
	Reason   string `json:"reason,omitempty"`
	Err      string `json:"error,omitempty"`
}

// Sync runs one resync pass and makes every change it finds needed: pulls
// of missing replicas and removals of replicas whose origin changed.
// Replicas of ended sources are left to the daemon, which removes them
// after teardown_grace. With dryRun nothing is changed. report is called
// for every action, from one goroutine at a time, after it was made (or
// decided, with dryRun). The Controller must not be running.
func (c *Controller) Sync(ctx context.Context, dryRun bool, report func(Action)) []Action {
	c.Survey(ctx)
	type job struct {
		m *member
		a action
		n string
	}
	var jobs []job
	c.mu.Lock()
	now := time.Now()
	for _, m := range c.members {
		if m.health.state != MemberUp || m.work.paused {
			continue
		}
		names := make(map[string]struct{})
		for n := range c.sources {
			names[n] = struct{}{}
		}
		for n := range m.obs.configs {
			names[n] = struct{}{}
		}
		for n := range names {
			a := c.planLocked(m, n, now)
			if a.kind == actPull || a.kind == actRemove {
				jobs = append(jobs, job{m, a, n})
			}
		}
	}
	c.mu.Unlock()
	slices.SortFunc(jobs, func(x, y job) int {
		return cmp.Or(cmp.Compare(x.m.idx, y.m.idx), cmp.Compare(x.n, y.n))
	})
	return c.runActions(ctx, dryRun, report, len(jobs), func(i int) (Action, func(ctx context.Context) error) {
		j := jobs[i]
		act := Action{Member: j.m.spec.Name, Stream: j.n, ConfigID: j.a.configID, Reason: j.a.reason}
		if j.a.origin != nil {
			act.Origin = j.a.origin.spec.Name
		}
		if j.a.kind == actPull {
			act.Kind = "pull"
			return act, func(ctx context.Context) error {
				if err := j.a.origin.work.pulls.wait(ctx); err != nil {
					return err
				}
				c.pull(ctx, j.m, j.n, j.a.origin, j.a.demand)
				return c.opErr(j.m, j.n)
			}
		}
		act.Kind = "remove"
		return act, func(ctx context.Context) error {
			c.remove(ctx, j.m, j.n, j.a)
			return c.opErr(j.m, j.n)
		}
	})
}

// Prune removes this group's replicas whose origin is no longer a member
// (left behind on purpose when a member leaves the config). With dryRun it
// only reports them. The Controller must not be running.
func (c *Controller) Prune(ctx context.Context, dryRun bool, report func(Action)) []Action {
	c.Survey(ctx)
	type job struct {
		m    *member
		name string
		cfg  pullCfg
	}
	var jobs []job
	c.mu.Lock()
	for _, m := range c.members {
		if m.health.state != MemberUp {
			continue
		}
		for name, cfgs := range m.obs.configs {
			for _, cfg := range cfgs {
				if cfg.ours && c.originOfLocked(cfg) == nil {
					jobs = append(jobs, job{m, name, cfg})
				}
			}
		}
	}
	c.mu.Unlock()
	slices.SortFunc(jobs, func(x, y job) int {
		return cmp.Or(cmp.Compare(x.m.idx, y.m.idx), cmp.Compare(x.name, y.name))
	})
	return c.runActions(ctx, dryRun, report, len(jobs), func(i int) (Action, func(ctx context.Context) error) {
		j := jobs[i]
		act := Action{Kind: "remove", Member: j.m.spec.Name, Stream: j.name, ConfigID: j.cfg.id,
			Reason: "origin " + j.cfg.tagOrigin + " is no longer a member"}
		return act, func(ctx context.Context) error {
			return c.call(ctx, j.m, "removeConfig", func(ctx context.Context) error {
				return j.m.spec.Client.RemoveConfig(ctx, j.cfg.id)
			})
		}
	})
}

// runActions runs n actions, at most MaxInflight per member at a time,
// reports each, and returns when every call it started has returned.
func (c *Controller) runActions(ctx context.Context, dryRun bool, report func(Action), n int,
	job func(i int) (Action, func(context.Context) error)) []Action {
	out := make([]Action, 0, n)
	var mu sync.Mutex
	var g errgroup.Group
	g.SetLimit(c.opts.MaxInflight * max(1, len(c.members)))
	for i := range n {
		act, run := job(i)
		if dryRun {
			out = append(out, act)
			if report != nil {
				report(act)
			}
			continue
		}
		if ctx.Err() != nil {
			break
		}
		g.Go(func() error {
			if err := run(ctx); err != nil {
				act.Err = trimErr(err)
			}
			mu.Lock()
			defer mu.Unlock()
			out = append(out, act)
			if report != nil {
				report(act)
			}
			return nil
		})
	}
	_ = g.Wait() // the actions' errors are in their Err
	return out
}

// opErr returns the last error recorded on replica (m, name), or nil.
func (c *Controller) opErr(m *member, name string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if o := m.work.ops[name]; o != nil && o.lastErr != "" && o.attempts > 0 {
		return opError(o.lastErr)
	}
	return nil
}

type opError string

func (e opError) Error() string { return string(e) }
