package e2e

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"streamlb/internal/app"
	"streamlb/internal/config"
	"streamlb/internal/emsim"
	"streamlb/internal/testkit"
)

// guarded is a balancer whose event sink is guarded by events_token or
// allowed_sources, with three direct members posting their events to
// eventsPath.
type guarded struct {
	cl   *emsim.Cluster
	app  *app.App
	ips  []string
	base string // http://HOST:PORT
	logs *testkit.Buffer
}

func newGuarded(t *testing.T, params func(ips []string) string, eventsPath string) *guarded {
	t.Helper()
	ips := emsim.RandomLoopbackIPs(3)
	ln := listenLoopback(t)
	base := "http://" + ln.Addr().String()
	cl, err := emsim.Start(emsim.Config{IP: ips[0], Members: len(ips), EventsURL: base + eventsPath})
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	var dests []string
	for i, ip := range ips {
		dests = append(dests, fmt.Sprintf(`{"enable": false, "address": %q, "name": "m%d"}`, ip, i+1))
	}
	text := fmt.Sprintf(`{"StreamLoadBalancer": {"plugin_switch": "enabled", "parameters": {
		"listen": %q, "resync_interval": "30s", "teardown_grace": "2s", %s
		"destination_ems_apiproxies": [%s]}}}`, ln.Addr().String(), params(ips), strings.Join(dests, ", "))
	cfg, err := config.Parse("guarded.json", []byte(text))
	if err != nil {
		ln.Close()
		t.Fatalf("config: %v\n%s", err, text)
	}
	logs := &testkit.Buffer{}
	a, err := app.New(app.Options{Config: cfg, SinkListener: ln,
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
	eventually(t, 5*time.Second, "first resync", func() bool {
		select {
		case <-a.Controller().Ready():
			return true
		default:
			return false
		}
	})
	return &guarded{cl: cl, app: a, ips: ips, base: base, logs: logs}
}

// created is an inStreamCreated event for a stream on the member at ip, as
// EMS posts it.
func created(ip, name string) string {
	return `{"id":1,"payload":{"PID":1,"customData":null,"name":"` + name + `","ip":"` + ip +
		`","connectionType":0},"processId":1,"timestamp":1,"type":"inStreamCreated"}`
}

// postStatus posts body to url, optionally from the local address from, and
// returns the answer's status code.
func postStatus(t *testing.T, url, body, from string) int {
	t.Helper()
	hc := http.DefaultClient
	if from != "" {
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 2 * time.Second}
		tr := &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true}
		defer tr.CloseIdleConnections()
		hc = &http.Client{Transport: tr, Timeout: 5 * time.Second}
	}
	resp, err := hc.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

func TestEventsTokenGuardsTheSink(t *testing.T) {
	const token = "tok-e2e-Guard_1"
	// The members post without the token: the balancer hears none of
	// their events, and learns of streams only from the test's posts.
	g := newGuarded(t, func([]string) string { return `"events_token": "` + token + `",` }, "/evowebservices/")
	m0 := g.cl.Members()[0]
	if err := m0.Publish("quiet"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 2*time.Second, "the member's own event refused", func() bool {
		return counterSum(t, g.app.Registry(), "streamlb_events_received_total", map[string]string{"result": "unauthorized"}) >= 1
	})
	refusedByMembers := counterSum(t, g.app.Registry(), "streamlb_events_received_total", map[string]string{"result": "unauthorized"})

	// An event for that real stream without the token, or with a wrong
	// one, is refused and changes nothing.
	events := counterSum(t, g.app.Registry(), "streamlb_stream_events_total", nil)
	paths := []string{
		"/evowebservices/", "/evowebservices", "/evowebservices/wrong-token/",
		"/evowebservices/?token=wrong", "/evowebservices/" + token + "x/",
	}
	for _, path := range paths {
		if code := postStatus(t, g.base+path, created(g.ips[0], "quiet"), ""); code != http.StatusUnauthorized {
			t.Errorf("POST %s without the right token: %d, want 401", path, code)
		}
	}
	confirms := func() int64 { return m0.CallCount("listinboundstreamnames") + m0.CallCount("getstreaminfo") }
	confirmsBefore := confirms()
	if n := counterSum(t, g.app.Registry(), "streamlb_events_received_total", map[string]string{"result": "unauthorized"}); n != refusedByMembers+float64(len(paths)) {
		t.Errorf("events_received_total{result=unauthorized} = %v, want %v", n, refusedByMembers+float64(len(paths)))
	}

	// The token in the path or in the query, as a sink URL may carry it,
	// is accepted, and the stream is replicated at once.
	for i, path := range []string{"/evowebservices/" + token + "/", "/evowebservices/?token=" + token} {
		name := fmt.Sprintf("heard%d", i)
		if err := m0.Publish(name); err != nil {
			t.Fatal(err)
		}
		if code := postStatus(t, g.base+path, created(g.ips[0], name), ""); code != http.StatusOK {
			t.Fatalf("POST %s: %d, want 200", strings.ReplaceAll(path, token, "TOKEN"), code)
		}
		for _, m := range g.cl.Members()[1:] {
			eventually(t, time.Second, "replica of "+name+" on "+m.IP(), func() bool { return len(pullsOf(m, name)) == 1 })
		}
	}
	// The accepted events came after the refused ones and their
	// confirmations answered every name announced before them: had a
	// refused event reached the controller, quiet (a real stream) would
	// be pulled by now.
	workIdle(t, g.app, 3*time.Second)
	if n := counterSum(t, g.app.Registry(), "streamlb_stream_events_total", nil); n != events+2 {
		t.Errorf("%v events reached the controller, want the 2 accepted ones", n-events)
	}
	if n := confirms() - confirmsBefore; n > 2 {
		t.Errorf("the origin was asked %d times to confirm names, want at most once per accepted event", n)
	}
	for _, m := range g.cl.Members()[1:] {
		if p := pullsOf(m, "quiet"); len(p) != 0 {
			t.Errorf("a refused event made %s pull: %v", m.IP(), p)
		}
	}
	if strings.Contains(g.logs.String(), token) {
		t.Errorf("the events token appears in the logs")
	}
}

func TestAllowedSourcesRefuseOtherPeers(t *testing.T) {
	// Only 127.0.0.2 may post: the members' own events are refused.
	const allowed = "127.0.0.2"
	g := newGuarded(t, func([]string) string { return `"allowed_sources": ["` + allowed + `/32"],` }, "/evowebservices/")
	m0 := g.cl.Members()[0]
	if err := m0.Publish("outsider"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 2*time.Second, "the member's own event refused", func() bool {
		return counterSum(t, g.app.Registry(), "streamlb_events_received_total", map[string]string{"result": "forbidden"}) >= 1
	})
	listings := m0.CallCount("listinboundstreamnames") + m0.CallCount("getstreaminfo")
	if code := postStatus(t, g.base+"/evowebservices/", created(g.ips[0], "outsider"), "127.0.0.1"); code != http.StatusForbidden {
		t.Errorf("POST from 127.0.0.1: %d, want 403", code)
	}
	// A marker stream announced from the allowed address after the
	// refused event: once it is replicated, the refused event, had it
	// reached the controller, would have been confirmed and pulled too.
	if err := m0.Publish("marker"); err != nil {
		t.Fatal(err)
	}
	if code := postStatus(t, g.base+"/evowebservices/", created(g.ips[0], "marker"), allowed); code != http.StatusOK {
		t.Fatalf("POST from %s: %d, want 200", allowed, code)
	}
	for _, m := range g.cl.Members()[1:] {
		eventually(t, time.Second, "replica of marker on "+m.IP(), func() bool { return len(pullsOf(m, "marker")) == 1 })
	}
	workIdle(t, g.app, 3*time.Second)
	if n := m0.CallCount("listinboundstreamnames") + m0.CallCount("getstreaminfo") - listings; n > 1 {
		t.Errorf("the origin was asked %d times to confirm names, want once (the marker)", n)
	}
	for _, m := range g.cl.Members()[1:] {
		if p := pullsOf(m, "outsider"); len(p) != 0 {
			t.Errorf("a refused event made %s pull: %v", m.IP(), p)
		}
	}
	// The same event from the allowed address is taken.
	if code := postStatus(t, g.base+"/evowebservices/", created(g.ips[0], "outsider"), allowed); code != http.StatusOK {
		t.Fatalf("POST from %s: %d, want 200", allowed, code)
	}
	for _, m := range g.cl.Members()[1:] {
		eventually(t, time.Second, "replica of outsider on "+m.IP(), func() bool { return len(pullsOf(m, "outsider")) == 1 })
	}
}

// TestForgedEventFloodIsAnsweredAndPullsNothing floods the sink with forged
// inStreamCreated events for streams that exist nowhere, attributed to a
// member: every one is answered, the member is listed at most once per
// confirmation interval, and nothing is pulled.
func TestForgedEventFloodIsAnsweredAndPullsNothing(t *testing.T) {
	const (
		n       = 8000
		workers = 16
	)
	g := newGroup(t, groupOpts{resync: 30 * time.Second})
	g.converged(5 * time.Second)
	var listings [3]int64
	for i := range 3 {
		listings[i] = g.member(i).CallCount("listinboundstreamnames")
	}
	tr := &http.Transport{MaxIdleConnsPerHost: workers}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	var answered, slowest atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for w := range workers {
		wg.Go(func() {
			for k := w; k < n; k += workers {
				body := created(g.ips[k%3], fmt.Sprintf("forged-%d", k))
				t0 := time.Now()
				resp, err := hc.Post(g.sinkURL, "application/json", strings.NewReader(body))
				if err != nil {
					t.Error(err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					answered.Add(1)
				}
				if d := int64(time.Since(t0)); d > slowest.Load() {
					slowest.Store(d)
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if answered.Load() != n {
		t.Errorf("%d of %d forged events answered 200", answered.Load(), n)
	}
	t.Logf("%d forged events answered in %v (%.0f/s, slowest answer %v)", n, elapsed.Round(time.Millisecond),
		float64(n)/elapsed.Seconds(), time.Duration(slowest.Load()).Round(time.Microsecond))
	// A real stream published on each member after the flood: the
	// confirmation that answers it answers every forged name announced
	// before it on that member, so once all three are replicated and the
	// work is done, any pull the flood caused would have been made.
	for i := range 3 {
		if err := g.member(i).Publish(fmt.Sprintf("after-flood-%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 3 {
		g.replicated(i, fmt.Sprintf("after-flood-%d", i), 10*time.Second)
	}
	workIdle(t, g.app, 5*time.Second)
	// The events attributed to one member share its listings: each listing
	// confirms every event that arrived while the previous one ran, and
	// listings are spaced (by at least 2ms, and by twice their own
	// duration), so a flood costs a few dozen listings, not thousands.
	perMember := int64(n / 3)
	for i := range 3 {
		got := g.member(i).CallCount("listinboundstreamnames") - listings[i]
		t.Logf("member %d: %d listings for %d forged events", i, got, perMember)
		if limit := min(perMember/10, int64(elapsed/(2*time.Millisecond))+2); got > limit {
			t.Errorf("member %d listed %d times for %d forged events in %v; want them batched (at most %d)", i, got, perMember, elapsed, limit)
		}
		if p := g.member(i).CallCount("pullstream"); p != 2 {
			t.Errorf("member %d got %d pullStream calls after forged events, want 2 (the other members' real streams)", i, p)
		}
	}
	for _, s := range g.app.Controller().Snapshot().Streams {
		if !strings.HasPrefix(s.Name, "after-flood-") {
			t.Errorf("the flood made a stream appear in status: %+v", s)
		}
	}
}

// TestForgedServerStartedFloodListsAtTheListersPace checks that
// serverStarted events posted from a member's address as fast as they are
// answered cost that member no more listings than its lister's pace allows
// (one at a time, at least ConfirmInterval apart), not one each, and change
// nothing.
func TestForgedServerStartedFloodListsAtTheListersPace(t *testing.T) {
	const n = 500
	g := newGroup(t, groupOpts{resync: 10 * time.Minute})
	g.converged(5 * time.Second)
	if err := g.member(0).Publish("live1"); err != nil {
		t.Fatal(err)
	}
	g.replicated(0, "live1", 2*time.Second)
	victim := g.member(1)
	listings := victim.CallCount("listconfig")
	pulls := victim.CallCount("pullstream")

	// From the member's own address, as its serverStarted would come.
	tr := &http.Transport{DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(g.ips[1])}}).DialContext}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	body := `{"id":1,"payload":{"PID":1,"customData":null,"releaseNumber":"2.0"},"processId":1,"timestamp":1,"type":"serverStarted"}`
	start := time.Now()
	for range n {
		resp, err := hc.Post(g.sinkURL, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("serverStarted answered %s, want 200", resp.Status)
		}
	}
	posted := time.Since(start)
	eventually(t, 5*time.Second, "all the events counted", func() bool {
		return counterSum(t, g.app.Registry(), "streamlb_stream_events_total", map[string]string{"outcome": "restart"}) == n
	})
	// The last event's listing, if any, is made once the lister may list.
	eventually(t, 5*time.Second, "the member listed since the first event", func() bool {
		return victim.CallCount("listconfig") > listings
	})
	made := victim.CallCount("listconfig") - listings
	t.Logf("%d serverStarted events in %v cost %d listings", n, posted, made)
	// Listings at least 2 ms apart (the default ConfirmInterval) while the
	// events came, and one more for the last of them.
	if most := int64(posted/(2*time.Millisecond)) + 2; made > most || made >= n {
		t.Errorf("%d serverStarted events in %v cost %d listings, want at most %d and fewer than the events", n, posted, made, most)
	}
	if d := victim.CallCount("pullstream") - pulls; d != 0 || !hasReplica(victim, "live1", g.uri(0, "live1")) {
		t.Errorf("after the flood: %d pulls made, replica held %v; want none and the replica kept", d, hasReplica(victim, "live1", g.uri(0, "live1")))
	}
	if n := counterSum(t, g.app.Registry(), "streamlb_replica_removals_total", nil); n != 0 {
		t.Errorf("%v replicas removed, want none", n)
	}
}
