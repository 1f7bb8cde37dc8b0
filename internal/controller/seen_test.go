package controller

import (
	"testing"
	"time"

	"streamlb/internal/ems"
)

// A config keeps the second it was first listed for as long as the same
// config (configId and URI) is listed again; a new one, or every one after
// the member was down, takes the listing's.
func TestListingsCarryWhenAConfigWasFirstKnown(t *testing.T) {
	t0 := time.Unix(1_000_000, 0)
	list := func(o *observed, at time.Time, back bool, cfgs ...ems.PullConfig) {
		l := newConfigListing(nil, nil, "g1", 0)
		for i := range cfgs {
			l.add(&cfgs[i])
		}
		o.replace(0, at, l, nil, back)
	}
	seen := func(o *observed, name string) int64 {
		t.Helper()
		cfgs := o.configs[name]
		if len(cfgs) != 1 {
			t.Fatalf("%d configs named %s", len(cfgs), name)
		}
		return cfgs[0].seenAt().Unix() - t0.Unix()
	}
	x := ems.PullConfig{ConfigID: 1, LocalStreamName: "x", URI: "rtmp://127.0.0.1/live/x"}
	y := ems.PullConfig{ConfigID: 2, LocalStreamName: "y", URI: "rtmp://127.0.0.1/live/y"}
	o := newObserved()
	list(&o, t0.Add(500*time.Millisecond), false, x)
	if got := seen(&o, "x"); got != 1 {
		t.Errorf("x first listed at 0.5s: seen at %ds, want 1s (rounded up)", got)
	}
	list(&o, t0.Add(10*time.Second), false, x, y)
	if got := seen(&o, "x"); got != 1 {
		t.Errorf("x listed again: seen at %ds, want 1s", got)
	}
	if got := seen(&o, "y"); got != 10 {
		t.Errorf("y first listed at 10s: seen at %ds, want 10s", got)
	}
	x2 := x
	x2.URI = "rtmp://127.0.0.2/live/x" // the same id, another config
	list(&o, t0.Add(20*time.Second), false, x2, y)
	if got := seen(&o, "x"); got != 20 {
		t.Errorf("another config under x's id: seen at %ds, want 20s", got)
	}
	list(&o, t0.Add(30*time.Second), true, x2, y)
	if got := seen(&o, "y"); got != 30 {
		t.Errorf("y listed after the member was down: seen at %ds, want 30s", got)
	}
}
