package bench

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"

	"streamlb/internal/ems"
)

// Replication mode demand (DESIGN §6): the burst settles when each stream
// is held by exactly Copies members, origin included, and a scale-up step
// loads every holder of one stream and times the copy the balancer adds.

// demandTag is the user variable a copy added for load carries.
const demandTag = "_streamlb_demand"

// scaleUpShare is the part of demandMaxViewers put on each holder: above
// the default scale_up_utilization (0.7).
const scaleUpShare = 0.8

// holdings returns, for each member, the names of the pull configurations
// a pullStream created on it after since.
func (g *emsimGroup) holdings(ctx context.Context, since time.Time) ([]map[string]int64, error) {
	out := make([]map[string]int64, len(g.ips))
	for i := range g.ips {
		p, err := g.pulls(ctx, i, since)
		if err != nil {
			return nil, err
		}
		out[i] = p
	}
	return out, nil
}

// awaitCopies waits until the members hold Streams×(Copies-1) pull
// configurations made since the burst's start, one on each of Copies-1
// members for every stream, and returns every member's stats at that
// point.
func (r *runner) awaitCopies(ctx context.Context, l *liveGroup, start time.Time) ([]memberStats, error) {
	o := r.o
	want := o.Streams * (o.Copies - 1)
	within := max(2*time.Minute, time.Duration(want)*time.Second/300)
	since := start.Add(-time.Second)
	var out []memberStats
	err := poll(ctx, within, 50*time.Millisecond, fmt.Sprintf("%d streams each on %d members", o.Streams, o.Copies), l.b.proc,
		func(ctx context.Context) (bool, error) {
			if err := l.g.exitErr(); err != nil {
				return true, err
			}
			all, err := l.g.allStats(ctx)
			if err != nil {
				return false, err
			}
			n := 0
			for _, s := range all {
				n += s.PullConfigs
			}
			if n != want {
				return false, nil
			}
			held, err := l.g.holdings(ctx, since)
			if err != nil {
				return false, err
			}
			copies := map[string]int{}
			for _, h := range held {
				for name := range h {
					copies[name]++
				}
			}
			for i := range o.Streams {
				if copies[burstPrefix+strconv.Itoa(i)] != o.Copies-1 {
					return false, nil
				}
			}
			out = all
			return true, nil
		})
	return out, err
}

// scaleUp picks the burst's first stream, puts scaleUpShare of
// demandMaxViewers RTMP players on each of its holders, and measures until
// a copy made for that load streams on another member.
func (r *runner) scaleUp(ctx context.Context, l *liveGroup) error {
	o := r.o
	if o.Copies >= o.Members {
		r.progress("scale-up: skipped, every member already holds every stream (copies %d, members %d)", o.Copies, o.Members)
		return nil
	}
	name := burstPrefix + "0"
	held, err := l.g.holdings(ctx, time.Unix(0, 0))
	if err != nil {
		return err
	}
	holders := []int{0}
	for i := 1; i < len(held); i++ {
		if _, ok := held[i][name]; ok {
			holders = append(holders, i)
		}
	}
	if len(holders) != o.Copies {
		return fmt.Errorf("%s is held by %d members, want %d", name, len(holders), o.Copies)
	}
	count := int(scaleUpShare * demandMaxViewers)
	r.progress("scale-up: %d RTMP players of %s on each of its %d holders (maxViewers %d, poll_interval %v)", count, name, len(holders), demandMaxViewers, o.PollInterval)
	start := time.Now()
	for _, h := range holders {
		q := url.Values{"name": {name}, "protocol": {"rtmp"}, "count": {strconv.Itoa(count)}}
		if err := l.g.control(ctx, h, "viewers", q); err != nil {
			return err
		}
	}
	hc := ems.NewHTTPClient(ems.HTTPOptions{OneShot: true})
	defer hc.CloseIdleConnections()
	copyAt := -1
	var took time.Duration
	err = poll(ctx, max(time.Minute, 10*o.PollInterval), 100*time.Millisecond, "a copy of "+name+" streaming on a member that did not hold it", l.b.proc,
		func(ctx context.Context) (bool, error) {
			for i := range l.g.ips {
				if slices.Contains(holders, i) {
					continue
				}
				p, err := l.g.pulls(ctx, i, start)
				if err != nil {
					return false, err
				}
				if _, ok := p[name]; !ok {
					continue
				}
				names, err := l.g.client(i, hc).ListInboundStreamNames(ctx)
				if err != nil {
					return false, err
				}
				if slices.Contains(names, name) {
					took, copyAt = time.Since(start), i
					return true, nil
				}
			}
			return false, nil
		})
	if err != nil {
		return err
	}
	r.res.ScaleUpSeconds = Seconds(took.Seconds())
	cfgs, err := l.g.client(copyAt, hc).ListConfig(ctx)
	if err != nil {
		return err
	}
	tagged := false
	for _, c := range cfgs {
		if c.LocalStreamName == name && c.Vars[demandTag] != "" {
			tagged = true
		}
	}
	if !tagged {
		return fmt.Errorf("the new copy of %s on %s carries no %s", name, l.g.ips[copyAt], demandTag)
	}
	r.progress("scale-up: a copy streams on %s after %.3f s", l.g.ips[copyAt], took.Seconds())
	return nil
}

// client returns an EMS API client for member i, over hc.
func (g *emsimGroup) client(i int, hc *http.Client) *ems.Client {
	return ems.New(ems.Endpoint{Member: memberName(i), BaseURL: g.base(i)}, hc)
}
