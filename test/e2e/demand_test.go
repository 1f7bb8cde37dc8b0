package e2e

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"streamlb/internal/app"
	"streamlb/internal/config"
	"streamlb/internal/controller"
	"streamlb/internal/ems"
	"streamlb/internal/emsim"
	"streamlb/internal/testkit"
)

const (
	demandPoll      = time.Second
	demandScaleDown = 5 * time.Second
	demandMembers   = 6
	demandSources   = 12
)

// demandConfig is the config of a balancer listening on listen for six
// members at ips with maxViewers 200 and viewer placement on; replication
// is its "replication" block, or "" for the default (every member holds
// every source).
func demandConfig(ips []string, listen, replication string) string {
	var dests []string
	for i, ip := range ips {
		dests = append(dests, fmt.Sprintf(`{"enable": false, "address": %q, "name": "m%d", "maxViewers": 200}`, ip, i+1))
	}
	if replication != "" {
		replication = `"replication": ` + replication + ",\n"
	}
	return fmt.Sprintf(`{"StreamLoadBalancer": {"plugin_switch": "enabled", "parameters": {
	"listen": %q, "resync_interval": "2s", "teardown_grace": "2s",
	"play": {"listen": "127.0.0.1:0", "poll_interval": %q, "stale_after": "3s"},
	%s"destination_ems_apiproxies": [
		%s
	]}}}
`, listen, demandPoll.String(), replication, strings.Join(dests, ",\n\t\t"))
}

// sourceName is the name of the k-th source, published on member
// k % demandMembers.
func sourceName(k int) string { return fmt.Sprintf("src%02d", k) }

// copyCounter reads every member's listing over HTTP and counts, per
// source, the members holding it: its origin and every member with a pull
// of it from the origin.
type copyCounter struct {
	ips     []string
	clients []*ems.Client
}

func newCopyCounter(ips []string) *copyCounter {
	cc := &copyCounter{ips: ips}
	for _, ip := range ips {
		cc.clients = append(cc.clients, directClient(ip))
	}
	return cc
}

func (cc *copyCounter) close() {
	for _, c := range cc.clients {
		c.CloseIdleConnections()
	}
}

// holders returns, per source, the indices of the members holding it, or
// an error if a listing failed.
func (cc *copyCounter) holders() (map[string][]int, error) {
	out := map[string][]int{}
	for k := range demandSources {
		out[sourceName(k)] = []int{k % demandMembers}
	}
	for i, c := range cc.clients {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		cfgs, err := c.ListConfig(ctx)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("listConfig of %s: %w", cc.ips[i], err)
		}
		for _, cfg := range cfgs {
			h, ok := out[cfg.LocalStreamName]
			if !ok {
				continue
			}
			var k int
			fmt.Sscanf(cfg.LocalStreamName, "src%d", &k)
			if cfg.URI == "rtmp://"+cc.ips[k%demandMembers]+"/live/"+cfg.LocalStreamName {
				out[cfg.LocalStreamName] = append(h, i)
			}
		}
	}
	return out, nil
}

// changes counts the pullStream and removeConfig calls every member got.
func changes(cl *emsim.Cluster) map[string]int64 {
	out := map[string]int64{}
	for _, m := range cl.Members() {
		out[m.IP()+" pullstream"] = m.CallCount("pullstream")
		out[m.IP()+" removeconfig"] = m.CallCount("removeconfig")
	}
	return out
}

// startDemandMembers starts six emulated members posting their events to
// events and publishes the twelve sources across them.
func startDemandMembers(t *testing.T, events string) (*emsim.Cluster, []string) {
	t.Helper()
	ips := emsim.RandomLoopbackIPs(demandMembers)
	cl, err := emsim.Start(emsim.Config{IP: ips[0], Members: demandMembers, EventsURL: events})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl, ips
}

func publishSources(t *testing.T, cl *emsim.Cluster) {
	t.Helper()
	for k := range demandSources {
		if err := cl.Members()[k%demandMembers].Publish(sourceName(k)); err != nil {
			t.Fatal(err)
		}
	}
}

// startDemandApp starts an in-process balancer with the config text on
// ln.
func startDemandApp(t *testing.T, text string, ln net.Listener, logs *testkit.Buffer) *app.App {
	t.Helper()
	cfg, err := config.Parse("demand.json", []byte(text))
	if err != nil {
		ln.Close()
		t.Fatalf("config: %v\n%s", err, text)
	}
	a, err := app.New(app.Options{Config: cfg, SinkListener: ln, RetryBase: 100 * time.Millisecond, RetryMax: time.Second,
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := a.Stop(ctx); err != nil {
			t.Errorf("stop: %v", err)
		}
	})
	return a
}

// TestDemandCopiesFollowViewers is replication on demand as a new user
// would try it: six emsim members with maxViewers 200, streamlb run with
// placement on and two copies of each source, and a second balancer with
// the same config. The twelve sources settle on exactly two members each;
// the second balancer changes nothing; 80 % of maxViewers on both holders
// of a source brings a third copy within two samples, and once they leave
// it goes, no sooner than scale_down_after after the pullStream that made
// it; no source ever has fewer than two copies.
func TestDemandCopiesFollowViewers(t *testing.T) {
	t.Parallel()
	listen := freePort(t)
	cl, ips := startDemandMembers(t, "http://"+listen+"/evowebservices/")
	replication := fmt.Sprintf(`{"mode": "demand", "min_copies": 2, "scale_up_utilization": 0.7, "scale_down_after": %q}`, demandScaleDown.String())
	text := demandConfig(ips, listen, replication)
	dir := t.TempDir()
	lb := startBalancer(t, dir, "demand", listen, text)
	publishSources(t, cl)

	cc := newCopyCounter(ips)
	defer cc.close()
	var held map[string][]int
	eventually(t, 15*time.Second, "every source on exactly two members", func() bool {
		h, err := cc.holders()
		if err != nil {
			return false
		}
		held = h
		for _, on := range h {
			if len(on) != 2 {
				return false
			}
		}
		return true
	})

	// From now on, no source may have fewer than two copies: the members'
	// listings are read every 200ms until the end.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	var violations []string
	polls := 0
	wg.Go(func() {
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			h, err := cc.holders()
			mu.Lock()
			polls++
			if err != nil {
				violations = append(violations, err.Error())
			}
			for name, on := range h {
				if len(on) < 2 {
					violations = append(violations, fmt.Sprintf("%s %s on %v only", time.Now().Format(time.StampMilli), name, on))
				}
			}
			mu.Unlock()
		}
	})
	defer func() {
		close(stop)
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		t.Logf("%d polls of the members' listings", polls)
		for _, v := range violations {
			t.Errorf("fewer than two copies: %s", v)
		}
	}()

	// A second balancer with the same config changes nothing for 10s,
	// counted by its own resyncs and finished work.
	before := changes(cl)
	ln2 := listenLoopback(t)
	logs2 := &testkit.Buffer{}
	second := startDemandApp(t, demandConfig(ips, ln2.Addr().String(), replication), ln2, logs2)
	started := time.Now()
	resyncedSince(t, second, started.Add(10*time.Second), 15*time.Second)
	if st := second.Controller().Snapshot(); !st.Converged || len(st.Streams) != demandSources {
		t.Errorf("the second balancer: converged %v with %d streams, want converged with %d", st.Converged, len(st.Streams), demandSources)
	}
	if after := changes(cl); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("a second balancer with the same config changed things:\nbefore %v\nafter  %v\n%s", before, after, logs2.String())
	}

	// 160 RTMP players (80 % of maxViewers) on both holders of src00: a
	// third copy within two samples and two seconds.
	hot := sourceName(0)
	pair := held[hot]
	for _, i := range pair {
		emsimControl(t, ips[i], "/_emsim/viewers?name="+hot+"&protocol=rtmp&count=160")
	}
	heated := time.Now()
	var third int
	eventually(t, 2*demandPoll+2*time.Second, "a third copy of "+hot, func() bool {
		h, err := cc.holders()
		if err != nil || len(h[hot]) < 3 {
			return false
		}
		for _, i := range h[hot] {
			if i != pair[0] && i != pair[1] {
				third = i
			}
		}
		return true
	})
	// When the member answered the pullStream that made the copy.
	var made time.Time
	for _, p := range cl.Members()[third].PullTimes(heated) {
		if p.Name == hot {
			made = p.At
		}
	}
	if made.IsZero() {
		t.Fatalf("m%d holds a copy of %s but answered no pullStream for it", third+1, hot)
	}
	t.Logf("third copy of %s on m%d %v after its holders got hot", hot, third+1, made.Sub(heated).Round(time.Millisecond))

	// The players leave: the copy goes once scale_down_after has passed
	// since it was made, not before.
	for _, i := range pair {
		emsimControl(t, ips[i], "/_emsim/viewers?name="+hot+"&protocol=rtmp&count=0")
	}
	eventually(t, demandScaleDown+3*demandPoll+3*time.Second, "the third copy of "+hot+" removed", func() bool {
		h, err := cc.holders()
		return err == nil && len(h[hot]) == 2
	})
	gone := time.Now()
	t.Logf("third copy removed %v after it was made", gone.Sub(made).Round(time.Millisecond))
	if gone.Sub(made) < demandScaleDown {
		var page controller.JournalPage
		httpGetJSON(t, lb.base+"/api/v1/events?since=0", &page)
		var entries []string
		for _, e := range page.Events {
			if e.Stream == hot {
				entries = append(entries, fmt.Sprintf("%s %s %s %s", e.At.Format(time.StampMilli), e.Kind, e.Member, e.Detail))
			}
		}
		t.Errorf("the demand copy on m%d was answered at %s and gone by %s, %v later, before scale_down_after (%v); journal:\n%s",
			third+1, made.Format(time.StampMilli), gone.Format(time.StampMilli), gone.Sub(made), demandScaleDown, strings.Join(entries, "\n"))
	}
	st := lb.status(t)
	for _, s := range st.Streams {
		if s.Name == hot && len(s.Desired) == 0 {
			t.Errorf("status lists no desired members for %s in mode demand: %+v", hot, s)
		}
	}
}

// TestModeAllWithPlacementHoldsEverySourceEverywhere: without a
// replication block, the same six members and placement config give every
// member every source, as before.
func TestModeAllWithPlacementHoldsEverySourceEverywhere(t *testing.T) {
	t.Parallel()
	ln := listenLoopback(t)
	cl, ips := startDemandMembers(t, "http://"+ln.Addr().String()+"/evowebservices/")
	a := startDemandApp(t, demandConfig(ips, ln.Addr().String(), ""), ln, &testkit.Buffer{})
	publishSources(t, cl)
	cc := newCopyCounter(ips)
	defer cc.close()
	eventually(t, 15*time.Second, "every source on all six members", func() bool {
		h, err := cc.holders()
		if err != nil {
			return false
		}
		for _, on := range h {
			if len(on) != demandMembers {
				return false
			}
		}
		return true
	})
	st := waitConverged(t, a, 5*time.Second)
	if len(st.Streams) != demandSources {
		t.Errorf("status lists %d streams, want %d", len(st.Streams), demandSources)
	}
	if n := int(counterSum(t, a.Registry(), "streamlb_demand_copies_added_total", nil)); n != 0 {
		t.Errorf("%d demand copies added in mode all", n)
	}
}

// waitConverged waits until a's status says converged and its work is
// done.
func waitConverged(t *testing.T, a *app.App, within time.Duration) controller.Status {
	t.Helper()
	eventually(t, within, "status converged", func() bool { return a.Controller().Snapshot().Converged })
	workIdle(t, a, within)
	return a.Controller().Snapshot()
}
