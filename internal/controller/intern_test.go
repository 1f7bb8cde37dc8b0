package controller

import (
	"fmt"
	"strings"
	"testing"
	"unsafe"

	"streamlb/internal/ems"
)

// TestResyncSharesStrings checks that the members listed by one resync
// keep one copy of each stream name and replica URI, however many members
// list them: a group holds streams × members configs.
func TestResyncSharesStrings(t *testing.T) {
	const streams, members = 50, 4
	origin := "10.0.0.1"
	var specs []MemberSpec
	for i := range members {
		f := &staticEMS{}
		for j := range streams {
			// Each member's answer is decoded into strings of its own.
			name := strings.Clone(fmt.Sprintf("stream-%03d", j))
			if i == 0 {
				f.inbound = append(f.inbound, name)
				continue
			}
			f.inbound = append(f.inbound, strings.Clone(name))
			f.configs = append(f.configs, ems.PullConfig{
				ConfigID: uint64(j + 1), LocalStreamName: name, URI: pullURI(origin, "live", name), KeepAlive: true,
				Status: ems.PullStatus{Code: ems.PullStatusStreaming},
				Vars:   map[string]string{tagGroup: "default", tagOrigin: origin},
			})
		}
		specs = append(specs, MemberSpec{Name: fmt.Sprintf("m%02d", i+1), Address: fmt.Sprintf("10.0.0.%d", i+1), API: "direct", Replicate: true, Client: f})
	}
	c, err := New(Options{Members: specs})
	if err != nil {
		t.Fatal(err)
	}
	c.Resync(t.Context())

	c.mu.Lock()
	defer c.mu.Unlock()
	names := map[string]*byte{} // a name's first copy seen
	uris := map[string]*byte{}
	same := func(kind string, seen map[string]*byte, s, member string) {
		t.Helper()
		p := unsafe.StringData(s)
		if first, ok := seen[s]; !ok {
			seen[s] = p
		} else if first != p {
			t.Errorf("member %s: %s %q is a copy of its own", member, kind, s)
		}
	}
	for _, m := range c.members[1:] {
		if len(m.obs.configs) != streams {
			t.Fatalf("member %s: %d configs after a resync, want %d", m.spec.Name, len(m.obs.configs), streams)
		}
		for name, cfgs := range m.obs.configs {
			same("name", names, name, m.spec.Name)
			for _, cfg := range cfgs {
				same("URI", uris, cfg.uri, m.spec.Name)
			}
		}
	}
}
