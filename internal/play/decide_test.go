package play

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"pgregory.net/rapid"

	"streamlb/internal/config"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func testParams() Params {
	return Params{Now: t0, StaleAfter: 15 * time.Second, HighWater: 0.8, Bitrate: 2e6}
}

func placement(maxViewers int) config.Placement {
	return config.Placement{PlayHost: "h", RTMPPort: 1935, RTSPPort: 5544, HTTPPort: 8888, MaxViewers: maxViewers, Weight: 1, Playable: true}
}

func sampleWith(age time.Duration, rtmp int) *Sample {
	return &Sample{At: t0.Add(-age), Viewers: map[string]int{ProtocolRTMP: rtmp}, Streams: map[string]int{"cam": rtmp}}
}

// drawTargets draws a set of members in every state decisions tell apart.
func drawTargets(t *rapid.T) (map[string]*Target, []string) {
	n := rapid.IntRange(0, 8).Draw(t, "members")
	targets := map[string]*Target{}
	var names []string
	for i := range n {
		name := fmt.Sprintf("m%d", i)
		pl := placement(rapid.SampledFrom([]int{0, 10, 200}).Draw(t, "maxViewers"))
		pl.Playable = rapid.Float64Range(0, 1).Draw(t, "playable") > 0.15
		pl.Weight = rapid.Float64Range(0.1, 5).Draw(t, "weight")
		if rapid.Bool().Draw(t, "capacity") {
			pl.CapacityOutMbps = rapid.Float64Range(1, 100).Draw(t, "mbps")
		}
		tg := &Target{Name: name, Placement: pl}
		if rapid.Float64Range(0, 1).Draw(t, "sampled") > 0.1 {
			age := time.Duration(rapid.Int64Range(0, int64(30*time.Second)).Draw(t, "age"))
			tg.Sample = sampleWith(age, rapid.IntRange(0, 250).Draw(t, "rtmp"))
			tg.Sample.Viewers[ProtocolHLS] = rapid.IntRange(0, 20).Draw(t, "hls")
			tg.Sample.OutBps = rapid.Float64Range(0, 2e8).Draw(t, "out")
			tg.Sample.ConnLimit = rapid.SampledFrom([]int{0, 100}).Draw(t, "connLimit")
		}
		tg.Pending.Viewers = float64(rapid.IntRange(0, 20).Draw(t, "pending"))
		targets[name] = tg
		names = append(names, name)
	}
	return targets, names
}

func TestChooseNeverPicksAnIneligibleMember(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		targets, names := drawTargets(t)
		var holders []string
		for _, n := range names {
			if rapid.Bool().Draw(t, "holds "+n) {
				holders = append(holders, n)
			}
		}
		if rapid.Bool().Draw(t, "unknown holder") {
			holders = append(holders, "not-configured")
		}
		sticky := ""
		if len(names) > 0 && rapid.Bool().Draw(t, "has sticky") {
			sticky = rapid.SampledFrom(names).Draw(t, "sticky")
		}
		p := testParams()
		rnd := rand.New(rand.NewPCG(rapid.Uint64().Draw(t, "seed"), 1))
		d := Choose(holders, targets, p, sticky, rnd)

		var eligible, below []string
		for _, h := range holders {
			if tg, ok := targets[h]; ok {
				if l := Assess(tg, p); l.Eligible {
					eligible = append(eligible, h)
					if l.Utilization < p.HighWater {
						below = append(below, h)
					}
				}
			}
		}
		switch {
		case len(eligible) == 0:
			if d.Member != "" {
				t.Fatalf("Choose = %q, want none: no holder is eligible", d.Member)
			}
			return
		case !slices.Contains(eligible, d.Member):
			t.Fatalf("Choose = %q, not among the eligible holders %v", d.Member, eligible)
		case d.Sticky != (d.Member == sticky) || slices.Contains(eligible, sticky) && d.Member != sticky:
			t.Fatalf("Choose = %+v with sticky %q among eligible %v", d, sticky, eligible)
		case d.Member != sticky && len(below) > 0 && !slices.Contains(below, d.Member):
			t.Fatalf("Choose = %q above high water while %v are below", d.Member, below)
		}
	})
}

// TestChooseSpreadsTies: among equal members every one is chosen about
// as often, whatever their order.
func TestChooseSpreadsTies(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		n := rapid.IntRange(2, 8).Draw(t, "members")
		targets := map[string]*Target{}
		var holders []string
		for i := range n {
			name := fmt.Sprintf("m%d", i)
			targets[name] = &Target{Name: name, Placement: placement(200), Sample: sampleWith(time.Second, 50)}
			holders = append(holders, name)
		}
		rnd := rand.New(rand.NewPCG(rapid.Uint64().Draw(t, "seed"), 2))
		counts := map[string]int{}
		const draws = 4000
		for range draws {
			counts[Choose(holders, targets, testParams(), "", rnd).Member]++
		}
		for _, h := range holders {
			share := float64(counts[h]) / draws
			if fair := 1 / float64(n); share < fair*0.75 || share > fair*1.25 {
				t.Fatalf("member %s chosen %.3f of the time, fair share %.3f (counts %v)", h, share, fair, counts)
			}
		}
	})
}

func TestChoosePrefersTheLessUtilized(t *testing.T) {
	targets := map[string]*Target{
		"busy1": {Name: "busy1", Placement: placement(200), Sample: sampleWith(time.Second, 50)},
		"busy2": {Name: "busy2", Placement: placement(200), Sample: sampleWith(time.Second, 50)},
		"busy3": {Name: "busy3", Placement: placement(200), Sample: sampleWith(time.Second, 50)},
		"idle":  {Name: "idle", Placement: placement(200), Sample: sampleWith(time.Second, 0)},
	}
	holders := []string{"busy1", "busy2", "busy3", "idle"}
	rnd := rand.New(rand.NewPCG(7, 7))
	counts := map[string]int{}
	for range 1000 {
		counts[Choose(holders, targets, testParams(), "", rnd).Member]++
	}
	// Two drawn, weighted by headroom: idle is in the pair about 58% of
	// the time, and then wins.
	if counts["idle"] < 500 {
		t.Errorf("idle chosen %d of 1000 times, want more than half (counts %v)", counts["idle"], counts)
	}
	for _, b := range holders[:3] {
		if counts[b] >= counts["idle"] {
			t.Errorf("%s chosen %d times, idle %d", b, counts[b], counts["idle"])
		}
	}
}

func TestAssess(t *testing.T) {
	p := testParams()
	tests := []struct {
		name     string
		target   Target
		eligible bool
		why      string
		util     float64
	}{
		{"fresh", Target{Placement: placement(200), Sample: sampleWith(time.Second, 50)}, true, "", 0.25},
		{"pending counts", Target{Placement: placement(200), Sample: sampleWith(time.Second, 50), Pending: Pending{Viewers: 50}}, true, "", 0.5},
		{"stale", Target{Placement: placement(200), Sample: sampleWith(16*time.Second, 0)}, false, WhyStale, 0},
		{"no sample", Target{Placement: placement(200)}, false, WhyNoSample, 0},
		{"not playable", Target{Placement: config.Placement{MaxViewers: 200}, Sample: sampleWith(0, 0)}, false, WhyNotPlayable, 0},
		{"full", Target{Placement: placement(200), Sample: sampleWith(0, 200)}, false, WhyFull, 1},
		{"connection limit when maxViewers unset", Target{Placement: placement(0), Sample: &Sample{At: t0, Viewers: map[string]int{ProtocolRTSP: 25}, ConnLimit: 100}}, true, "", 0.25},
		{"bandwidth: HLS sessions at the bitrate", Target{Placement: config.Placement{Playable: true, Weight: 1, CapacityOutMbps: 100},
			Sample: &Sample{At: t0, Viewers: map[string]int{ProtocolHLS: 10}, OutBps: 30e6}}, true, "", 0.5},
		{"EMS bandwidth limit", Target{Placement: placement(0), Sample: &Sample{At: t0, Viewers: map[string]int{}, OutBps: 90e6, MaxOutBps: 100e6}}, true, "", 0.9},
		{"no limit known", Target{Placement: placement(0), Sample: sampleWith(0, 1000)}, true, "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := Assess(&tt.target, p)
			if l.Eligible != tt.eligible || l.Why != tt.why || l.Utilization != tt.util {
				t.Errorf("Assess = eligible %v why %q utilization %v, want %v %q %v", l.Eligible, l.Why, l.Utilization, tt.eligible, tt.why, tt.util)
			}
		})
	}
}

func TestStickyMapIsBoundedAndExpires(t *testing.T) {
	m := newStickyMap(time.Minute, 100)
	now := t0
	for i := range 1000 {
		m.put(stickyKey{client: fmt.Sprint(i), stream: "cam"}, "a", now)
		if m.len() > 100 {
			t.Fatalf("after %d puts the map holds %d entries, max 100", i+1, m.len())
		}
	}
	k := stickyKey{client: "x", stream: "cam"}
	m.put(k, "b", now)
	if got, ok := m.get(k, now.Add(59*time.Second)); !ok || got != "b" {
		t.Errorf("get before ttl = %q, %v, want b, true", got, ok)
	}
	if _, ok := m.get(k, now.Add(61*time.Second)); ok {
		t.Error("get after ttl found the entry")
	}
}
