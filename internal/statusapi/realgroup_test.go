package statusapi

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"streamlb/internal/controller"
	"streamlb/internal/ems"
	"streamlb/internal/emsim"
)

// realGroup runs the real controller over n emulated members (each on its
// own loopback address), with streams published on the first, and waits
// until it has replicated them all. It polls the members (a short resync
// interval) rather than hearing their events.
func realGroup(t *testing.T, n int, streams ...string) (*controller.Controller, *emsim.Cluster) {
	t.Helper()
	ips := emsim.RandomLoopbackIPs(n)
	cl, err := emsim.Start(emsim.Config{IP: ips[0], Members: n})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	var specs []controller.MemberSpec
	for i, m := range cl.Members() {
		name := "m" + strconv.Itoa(i+1)
		specs = append(specs, controller.MemberSpec{Name: name, Address: m.IP(), API: "direct", Replicate: true,
			Client: ems.New(ems.Endpoint{Member: name, BaseURL: m.APIURL()}, nil)})
	}
	ctl, err := controller.New(controller.Options{
		Members: specs, ResyncInterval: 200 * time.Millisecond, RetryBase: 50 * time.Millisecond, RetryMax: 500 * time.Millisecond,
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = ctl.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	for _, s := range streams {
		if err := cl.Members()[0].Publish(s); err != nil {
			t.Fatal(err)
		}
	}
	waitConverged(t, ctl, len(streams))
	return ctl, cl
}

// waitConverged waits until the group is converged with want streams.
func waitConverged(t *testing.T, ctl *controller.Controller, want int) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		st := ctl.Snapshot()
		if st.Converged && len(st.Streams) == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not converged with %d streams within 15s: converged %v, %d streams", want, st.Converged, len(st.Streams))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func getStatus(t *testing.T, url string) controller.Status {
	t.Helper()
	code, _, body := get(t, url)
	if code != http.StatusOK {
		t.Fatalf("GET %s = %d %s", url, code, body)
	}
	var st controller.Status
	if err := json.Unmarshal(body, &st); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return st
}

func names(st controller.Status) []string {
	out := []string{}
	for _, s := range st.Streams {
		out = append(out, s.Name)
	}
	return out
}

// TestStatusQueriesOnARealGroup asks the status route of a real
// controller, three emulated members holding five streams, for parts of
// the document.
func TestStatusQueriesOnARealGroup(t *testing.T) {
	all := []string{"cam1", "cam2", "news1", "news2", "news3"}
	ctl, cl := realGroup(t, 3, all...)
	srv, _ := newServer(t, ctl, nil)
	u := srv.URL + "/api/v1/status"

	t.Run("everything, compact", func(t *testing.T) {
		code, _, body := get(t, u)
		if code != http.StatusOK || bytes.Contains(body, []byte("\n ")) {
			t.Fatalf("GET %s = %d, body starting %q; want 200 and compact JSON", u, code, body[:min(40, len(body))])
		}
		st := getStatus(t, u)
		if diff := cmp.Diff(all, names(st)); diff != "" || st.State != "converged" || st.Summary.Streams != 5 {
			t.Errorf("streams (-want +got):\n%s\nstate %q, summary %+v", diff, st.State, st.Summary)
		}
	})
	t.Run("pretty", func(t *testing.T) {
		_, _, body := get(t, u+"?pretty=1")
		if len(body) < 3 || string(body[:3]) != "{\n " {
			t.Errorf("pretty=1 starts %q, want indented JSON", body[:min(10, len(body))])
		}
	})
	t.Run("by stream glob", func(t *testing.T) {
		if diff := cmp.Diff([]string{"news1", "news2", "news3"}, names(getStatus(t, u+"?stream=news*"))); diff != "" {
			t.Errorf("stream=news* (-want +got):\n%s", diff)
		}
	})
	t.Run("by state", func(t *testing.T) {
		if got := names(getStatus(t, u+"?state=present")); len(got) != 5 {
			t.Errorf("state=present: %q, want all 5", got)
		}
		if got := names(getStatus(t, u+"?state=failing")); len(got) != 0 {
			t.Errorf("state=failing: %q, want none", got)
		}
	})
	t.Run("by member", func(t *testing.T) {
		st := getStatus(t, u+"?member=m2")
		for _, s := range st.Streams {
			if len(s.Replicas) != 1 || s.Replicas["m2"].State != controller.StatePresent {
				t.Errorf("member=m2: %s has replicas %v, want m2's alone", s.Name, s.Replicas)
			}
		}
		if len(st.Streams) != 5 || st.Summary.Streams != 5 {
			t.Errorf("member=m2: %d streams (summary %d), want 5 and the whole group's 5", len(st.Streams), st.Summary.Streams)
		}
	})
	t.Run("paged", func(t *testing.T) {
		var got []string
		cursor := ""
		for page := 0; ; page++ {
			q := u + "?limit=2"
			if cursor != "" {
				q += "&cursor=" + cursor
			}
			st := getStatus(t, q)
			if len(st.Streams) > 2 || page > 3 {
				t.Fatalf("page %d: %d streams, want at most 2", page, len(st.Streams))
			}
			got = append(got, names(st)...)
			if cursor = st.NextCursor; cursor == "" {
				break
			}
		}
		if diff := cmp.Diff(all, got); diff != "" {
			t.Errorf("pages of 2 (-want +got):\n%s", diff)
		}
	})
	t.Run("attention first", func(t *testing.T) {
		// m3's API fails: the replicas there can no longer be listed.
		cl.Members()[2].SetFaults(emsim.Faults{APIDown: true})
		defer cl.Members()[2].SetFaults(emsim.Faults{})
		deadline := time.Now().Add(15 * time.Second)
		for {
			st := getStatus(t, u+"?attention=1&limit=1")
			if st.Summary.Attention > 0 {
				if len(st.Streams) != 1 || st.NextCursor == "" {
					t.Fatalf("attention=1&limit=1: %q, next %q; want one stream and a cursor", names(st), st.NextCursor)
				}
				r := st.Streams[0].Replicas["m3"]
				if r.State != controller.StateUnknown || r.Reason == "" {
					t.Errorf("with m3's API down, the first stream's m3 cell = %+v, want unknown with a reason", r)
				}
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("no stream needs attention 15s after m3's API went down: %+v", st.Summary)
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
}

// TestEventStreamOnARealGroup connects to the event stream of a real
// controller, then publishes a stream: its appearance and its replication
// to the other member come through, with their times.
func TestEventStreamOnARealGroup(t *testing.T) {
	ctl, cl := realGroup(t, 2, "lobby")
	srv, _ := newServer(t, ctl, nil)
	p, _ := ctl.Journal(0, 0)
	c := openStream(t, srv.URL+"/api/v1/events/stream?since="+strconv.FormatUint(p.Next, 10), "")
	before := time.Now()
	if err := cl.Members()[0].Publish("late"); err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for !slices.Contains(kinds, controller.EntryReplicaPulled) {
		e := c.next(t).entry(t)
		if e.Seq <= p.Next {
			t.Fatalf("entry %d, already read before connecting (next was %d)", e.Seq, p.Next)
		}
		if e.Stream != "late" {
			continue
		}
		if e.At.Before(before) || e.At.After(time.Now()) {
			t.Errorf("%s at %v, want between the publish (%v) and now", e.Kind, e.At, before)
		}
		if e.Kind == controller.EntryReplicaPulled && (e.Member != "m2" || e.Origin != "m1") {
			t.Errorf("replica_pulled %+v, want late pulled to m2 from m1", e)
		}
		kinds = append(kinds, e.Kind)
	}
	if kinds[0] != controller.EntrySourceAppeared {
		t.Errorf("entries of late: %q, want source_appeared first", kinds)
	}
}
