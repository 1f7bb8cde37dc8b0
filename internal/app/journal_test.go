package app

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"streamlb/internal/config"
	"streamlb/internal/controller"
	"streamlb/internal/emsim"
)

// TestJournalOverHTTP runs the balancer with three emulated members and
// no dashboard open: a stream replicated to the two others and a member
// going down are in GET /api/v1/events afterwards, in order, with the
// times they happened; an event stream opened before a stream is published
// receives its replication.
func TestJournalOverHTTP(t *testing.T) {
	ips := emsim.RandomLoopbackIPs(3)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cl, err := emsim.Start(emsim.Config{IP: ips[0], Members: len(ips), EventsURL: "http://" + ln.Addr().String() + "/evowebservices/"})
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	defer cl.Close()
	cfg, err := config.Parse("journal.json", fmt.Appendf(nil, `{"StreamLoadBalancer": {"plugin_switch": "enabled", "parameters": {
		"listen": %q, "resync_interval": "1s",
		"destination_ems_apiproxies": [
			{"enable": false, "address": %q, "name": "m1"},
			{"enable": false, "address": %q, "name": "m2"},
			{"enable": false, "address": %q, "name": "m3"}]}}}`, ln.Addr().String(), ips[0], ips[1], ips[2]))
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	a, err := New(Options{Config: cfg, SinkListener: ln, RetryBase: 100 * time.Millisecond, RetryMax: time.Second})
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := a.Stop(ctx); err != nil {
			t.Errorf("stop: %v", err)
		}
	}()
	base := "http://" + a.AdminAddr()
	readJournal := func() controller.JournalPage {
		t.Helper()
		resp, err := http.Get(base + "/api/v1/events?since=0")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var p controller.JournalPage
		if err := json.NewDecoder(resp.Body).Decode(&p); err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("GET /api/v1/events: %s, %v", resp.Status, err)
		}
		return p
	}
	<-a.Controller().Ready()

	published := time.Now()
	if err := cl.Members()[0].Publish("lobby"); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "lobby held by all three members", func() bool { return len(a.Controller().Holders("lobby")) == 3 })
	downAt := time.Now()
	cl.Members()[2].SetFaults(emsim.Faults{Down: true})
	var p controller.JournalPage
	waitUntil(t, "member_down of m3 in the journal", func() bool {
		p = readJournal()
		return slices.ContainsFunc(p.Events, func(e controller.Entry) bool { return e.Kind == controller.EntryMemberDown && e.Member == "m3" })
	})

	var got []string
	for i, e := range p.Events {
		if i > 0 && (e.Seq != p.Events[i-1].Seq+1 || e.At.Before(p.Events[i-1].At)) {
			t.Errorf("entry %d (%s at %v) follows entry %d (at %v): want consecutive numbers and times in order", e.Seq, e.Kind, e.At, p.Events[i-1].Seq, p.Events[i-1].At)
		}
		if e.Stream == "lobby" || e.Kind == controller.EntryMemberDown {
			got = append(got, e.Kind+" "+e.Stream+" "+e.Member)
		}
		switch {
		case e.Stream == "lobby" && (e.At.Before(published) || e.At.After(downAt)):
			t.Errorf("%s of lobby at %v, want between its publishing (%v) and m3's fault (%v)", e.Kind, e.At, published, downAt)
		case e.Kind == controller.EntryMemberDown && e.At.Before(downAt):
			t.Errorf("member_down at %v, before m3 went down (%v)", e.At, downAt)
		}
	}
	// The two pulls may come in either order.
	if len(got) != 4 || got[0] != "source_appeared lobby m1" || got[3] != "member_down  m3" ||
		!slices.Contains(got, "replica_pulled lobby m2") || !slices.Contains(got, "replica_pulled lobby m3") {
		t.Errorf("journal: %q, want lobby appearing on m1, pulled to m2 and m3, then m3 down", got)
	}

	// An event stream open before a stream is published.
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/api/v1/events/stream?since="+strconv.FormatUint(p.Next, 10), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /api/v1/events/stream: %s", resp.Status)
	}
	if err := cl.Members()[0].Publish("late"); err != nil {
		t.Fatal(err)
	}
	entries := make(chan controller.Entry)
	go func() {
		defer close(entries)
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			data, ok := strings.CutPrefix(sc.Text(), "data: ")
			if !ok {
				continue
			}
			var e controller.Entry
			if json.Unmarshal([]byte(data), &e) == nil {
				select {
				case entries <- e:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	timeout := time.After(15 * time.Second)
	for {
		select {
		case e, ok := <-entries:
			if !ok {
				t.Fatal("the event stream ended before late was replicated")
			}
			if e.Kind == controller.EntryReplicaPulled && e.Stream == "late" && e.Member == "m2" {
				cancel()
				_, _ = io.Copy(io.Discard, resp.Body)
				for range entries {
				}
				return
			}
		case <-timeout:
			t.Fatal("no replica_pulled of late to m2 on the event stream within 15s")
		}
	}
}
