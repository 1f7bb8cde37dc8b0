package controller

import (
	"fmt"
	"testing"
	"time"

	"streamlb/internal/ems"
)

// referenceLag is how the convergence lag was computed before it was
// counted with the other gauges: how long the oldest desired replica that
// is not present (on a member that is up and not paused) has been so.
func (c *Controller) referenceLag(now time.Time) time.Duration {
	var lag time.Duration
	for name, recs := range c.sources {
		w, _ := c.winnerLocked(name)
		if w == nil {
			continue
		}
		for _, m := range c.members {
			if m == w || m.state != MemberUp || m.paused {
				continue
			}
			a := c.planLocked(m, name, now)
			if !a.desired || !blocksConvergence(a.state) {
				continue
			}
			since := recs[w].firstSeen
			if o := m.ops[name]; o != nil && o.since.After(since) {
				since = o.since
			}
			lag = max(lag, now.Sub(since))
		}
	}
	return lag
}

// TestCountsAgreeWithSnapshot checks that the gauges a scrape counts are
// what the status snapshot shows, on a group with every kind of replica
// state: present, missing, pending after a failure, conflicting, on a
// paused member and on a member that is down.
func TestCountsAgreeWithSnapshot(t *testing.T) {
	names := []string{"a", "b", "c", "d", "e", "f"}
	origin := "10.0.0.1"
	var specs []MemberSpec
	for i := range 5 {
		f := &staticEMS{}
		if i == 0 {
			f.inbound = names
		}
		if i > 0 {
			for j, n := range names[:i+1] { // a prefix of the names is present
				f.configs = append(f.configs, ems.PullConfig{ConfigID: uint64(j + 1), LocalStreamName: n, URI: pullURI(origin, "live", n),
					Vars: map[string]string{tagGroup: "default", tagOrigin: origin}})
			}
		}
		if i == 2 {
			// Someone else's config named f, and a source named e.
			f.configs = append(f.configs, ems.PullConfig{ConfigID: 99, LocalStreamName: "f", URI: "rtsp://cam/f"})
			f.inbound = []string{"e"}
		}
		specs = append(specs, MemberSpec{Name: fmt.Sprintf("m%d", i+1), Address: fmt.Sprintf("10.0.0.%d", i+1), API: "direct", Replicate: true, Client: f})
	}
	c, err := New(Options{Members: specs})
	if err != nil {
		t.Fatal(err)
	}
	c.Resync(t.Context())
	c.mu.Lock()
	c.isReady = true
	now := time.Now()
	m3, m4, m5 := c.members[2], c.members[3], c.members[4]
	m4.paused = true
	m5.state = MemberDown
	c.members[1].ops["f"] = &op{state: StateMissing, since: now.Add(-time.Minute), attempts: 2, lastErr: "boom"}
	c.mu.Unlock()

	for _, tc := range []struct {
		name string
		edit func()
	}{
		{"as listed", func() {}},
		{"all up", func() { m5.state = MemberUp }},
		{"none paused", func() { m4.paused = false }},
		{"m3 down too", func() { m3.state = MemberDown }},
	} {
		c.mu.Lock()
		tc.edit()
		st := c.snapshotLocked(now)
		got := c.countsLocked(now)
		wantLag := c.referenceLag(now)
		c.mu.Unlock()
		want := groupCounts{converged: st.Converged, conflicts: len(st.Conflicts), lag: wantLag}
		for _, s := range st.Streams {
			for _, r := range s.Replicas {
				want.desired++
				if r.State == StatePresent {
					want.present++
				}
			}
		}
		if got != want {
			t.Errorf("%s: countsLocked() = %+v, want %+v", tc.name, got, want)
		}
		if want.desired == 0 || want.present == want.desired {
			t.Errorf("%s: the group has nothing to count: %+v", tc.name, want)
		}
	}
}
