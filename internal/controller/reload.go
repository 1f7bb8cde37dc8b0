package controller

import (
	"slices"
	"time"
)

// Tunables are the settings a running controller applies at once on a
// config reload (SIGHUP), without a restart.
type Tunables struct {
	Include, Exclude  []string
	ResyncInterval    time.Duration
	TeardownGrace     time.Duration
	MaxInflight       int
	MaxPullsPerSecond float64 // 0: no cap
}

// ReloadStatus describes the last config reload, for the status document.
type ReloadStatus struct {
	At    time.Time `json:"at"`
	OK    bool      `json:"ok"`
	Error string    `json:"error,omitempty"`
}

// SetTunables applies t to the running controller: the scope patterns and
// timings from the next decision on, the caps from the next call on. Zero
// durations and counts take the defaults, as in Options.
func (c *Controller) SetTunables(t Tunables) {
	o := Options{ResyncInterval: t.ResyncInterval, TeardownGrace: t.TeardownGrace, MaxInflight: t.MaxInflight}
	o.setDefaults()
	c.mu.Lock()
	c.opts.Include, c.opts.Exclude = t.Include, t.Exclude
	resyncChanged := c.opts.ResyncInterval != o.ResyncInterval
	c.opts.ResyncInterval, c.opts.TeardownGrace = o.ResyncInterval, o.TeardownGrace
	c.opts.MaxInflight = o.MaxInflight
	c.opts.MaxPullsPerSecond = t.MaxPullsPerSecond
	c.allDirtyLocked()
	for _, m := range c.members {
		c.setWorkersLocked(m, o.MaxInflight)
		m.work.pulls.setCeiling(t.MaxPullsPerSecond)
	}
	members := slices.Clone(c.members)
	c.mu.Unlock()
	// The new scope may want or unwant any stream anywhere.
	c.diffAll(members, diffChunk)
	if resyncChanged {
		c.TriggerResync() // the resync loop takes the new interval
	}
}

// SetLastReload records the result of the last config reload; the status
// document carries it as last_reload.
func (c *Controller) SetLastReload(r ReloadStatus) {
	c.mu.Lock()
	c.lastReload = &r
	c.rows.changed = true
	c.mu.Unlock()
	e := Entry{At: r.At, Kind: EntryReload, Detail: "applied"}
	if !r.OK {
		e.Detail = "refused: " + r.Error
	}
	c.record(e)
}
