package controller

import (
	"fmt"
	"testing"
	"unsafe"
)

// TestResyncSharesStrings checks that the members listed by one resync
// keep one copy of each stream name and replica URI, however many members
// list them: a group holds streams × members configs.
func TestResyncSharesStrings(t *testing.T) {
	const streams, members = 50, 4
	// Each member's answer is decoded into strings of its own.
	specs := staticGroup(members, func(int) []string {
		names := make([]string, streams)
		for j := range names {
			names[j] = fmt.Sprintf("stream-%03d", j)
		}
		return names
	})
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
