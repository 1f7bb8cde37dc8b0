package config

import (
	"math"
	"time"
)

// Replication modes.
const (
	ReplicationAll    = "all"
	ReplicationDemand = "demand"
)

// Defaults of the replication block.
const (
	DefaultMinCopies          = 2
	DefaultScaleUpUtilization = 0.7
	DefaultScaleDownAfter     = 5 * time.Minute
	replicationKey            = "replication"
)

// Replication says how many members hold each source: every member (mode
// "all", the default and the original's promise), or a few warm copies
// that grow where the viewers are (mode "demand").
type Replication struct {
	Mode string
	// MinCopies is how many members hold each source in mode demand, its
	// origin included.
	MinCopies int
	// MaxCopies caps the copies of a source, origin included; 0: every
	// member.
	MaxCopies int
	// ScaleUpUtilization: a copy is added when every holder stays above
	// it for two load samples.
	ScaleUpUtilization float64
	// ScaleDownAfter: a demand copy is removed no sooner than this after
	// it was made, once two samples show nobody watching it.
	ScaleDownAfter time.Duration
}

// replication decodes the replication block of p into cfg.
func (d *decoder) replication(p *object, cfg *Config) {
	cfg.Replication = Replication{Mode: ReplicationAll, MinCopies: DefaultMinCopies,
		ScaleUpUtilization: DefaultScaleUpUtilization, ScaleDownAfter: DefaultScaleDownAfter}
	v, ok := p.vals[replicationKey]
	if !ok {
		return
	}
	o := d.object(child(p.path, replicationKey), v, []string{"mode", "min_copies", "max_copies", "scale_up_utilization", "scale_down_after"})
	if o == nil {
		return
	}
	r := &cfg.Replication
	mode, _ := o.str("mode")
	if s := mode; s != "" {
		switch s {
		case ReplicationAll, ReplicationDemand:
			r.Mode = s
		default:
			o.errorf("mode", "want %q or %q, got %q", ReplicationAll, ReplicationDemand, s)
		}
	}
	if n, ok := o.integer("min_copies", 1, math.MaxInt32); ok {
		r.MinCopies = n
	}
	if n, ok := o.integer("max_copies", 0, math.MaxInt32); ok {
		if n != 0 && n < r.MinCopies {
			o.errorf("max_copies", "want 0 (every member) or at least min_copies (%d), got %d", r.MinCopies, n)
		} else {
			r.MaxCopies = n
		}
	}
	if f, ok := o.number("scale_up_utilization"); ok {
		if f <= 0 || f > 1 {
			o.errorf("scale_up_utilization", "want a utilization above 0 and at most 1, got %s", o.vals["scale_up_utilization"].Value)
		} else {
			r.ScaleUpUtilization = f
		}
	}
	if dur, ok := o.durationAtLeast("scale_down_after", time.Second); ok {
		r.ScaleDownAfter = dur
	}
	if mode == ReplicationAll {
		for _, k := range []string{"min_copies", "max_copies", "scale_up_utilization", "scale_down_after"} {
			if o.has(k) {
				o.errorf(k, "only used with \"mode\": %q; this block's mode is %q", ReplicationDemand, r.Mode)
			}
		}
	}
}
