package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestBalancerRestartedDuringABurstConvergesWithoutDuplicates(t *testing.T) {
	const n = 500
	g := newGroup(t, groupOpts{resync: 2 * time.Second})
	g.converged(5 * time.Second)
	addr := g.sinkURL[len("http://") : len(g.sinkURL)-len("/evowebservices/")]
	for i := range n {
		if err := g.member(0).Publish(fmt.Sprintf("burst%03d", i)); err != nil {
			t.Fatal(err)
		}
		if i == n/2 {
			// Killed mid-burst: stopped at once, work in flight abandoned.
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			_ = g.app.Stop(ctx)
			g.app = nil
		}
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen again on %s: %v", addr, err)
	}
	g.startApp(groupOpts{members: []memberConf{{proxy: true}, {}, {}}, resync: 2 * time.Second, grace: 2 * time.Second}, ln)
	for i := 1; i < 3; i++ {
		m := g.member(i)
		eventually(t, 60*time.Second, fmt.Sprintf("member %d holds all %d replicas", i, n), func() bool {
			return len(m.PullConfigs()) == n
		})
		seen := map[string]int{}
		for _, c := range m.PullConfigs() {
			seen[c.LocalStreamName]++
			if c.URI != g.uri(0, c.LocalStreamName) {
				t.Errorf("member %d pulls %s from %s", i, c.LocalStreamName, c.URI)
			}
		}
		for name, k := range seen {
			if k != 1 {
				t.Errorf("member %d holds %d configs named %s", i, k, name)
			}
		}
	}
	g.converged(10 * time.Second)
}

func TestEveryRecordedEventIsAccepted(t *testing.T) {
	g := newGroup(t, groupOpts{})
	dir := "../../testdata/ems/recorded"
	f, err := os.Open(filepath.Join(dir, "ems-events-webuilogs.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	lines := 0
	for sc.Scan() {
		postEvent(t, g.sinkURL, sc.Text(), 200)
		lines++
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if lines != 1224 {
		t.Errorf("posted %d recorded events, want 1224", lines)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "ems-event-*.json"))
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		postEvent(t, g.sinkURL, string(b), 200)
	}
	if len(files) == 0 {
		t.Error("no recorded event files found")
	}
	// None of those far-away origins is a member: nothing is pulled. A
	// stream published on a member afterwards is the marker: the
	// controller takes events in order, so once its replicas are made and
	// the work is done, every recorded event has been handled.
	if err := g.member(0).Publish("after-recorded"); err != nil {
		t.Fatal(err)
	}
	g.replicated(0, "after-recorded", 3*time.Second)
	workIdle(t, g.app, 3*time.Second)
	if n := counterSum(t, g.app.Registry(), "streamlb_stream_events_total", map[string]string{"outcome": "unknown_origin"}); n == 0 {
		t.Error("no recorded event was handled as from an unknown origin")
	}
	for i := range 3 {
		want := int64(1) // after-recorded
		if i == 0 {
			want = 0
		}
		if n := g.member(i).CallCount("pullstream"); n != want {
			t.Errorf("member %d got %d pulls, want %d (the marker's): recorded events of other servers were acted on", i, n, want)
		}
	}
}
