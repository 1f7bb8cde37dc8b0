package app

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"streamlb/internal/config"
	"streamlb/internal/emsim"
	"streamlb/internal/inflight"
	"streamlb/internal/receiver"
	"streamlb/internal/testkit"
)

// gate holds the sink's requests chosen by hold inside the listener's
// concurrency cap, as a saturated CPU does, until open is called.
type gate struct {
	hold   func(peer string) bool
	inside atomic.Int64 // requests held now
	most   atomic.Int64 // the most held at once
	opened chan struct{}
	once   sync.Once
}

func newGate(hold func(peer string) bool) *gate {
	return &gate{hold: hold, opened: make(chan struct{})}
}

func (g *gate) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if g.hold(peerKey(r.RemoteAddr)) {
			n := g.inside.Add(1)
			for m := g.most.Load(); n > m && !g.most.CompareAndSwap(m, n); m = g.most.Load() {
			}
			<-g.opened
			g.inside.Add(-1)
		}
		h.ServeHTTP(w, r)
	})
}

func (g *gate) open() { g.once.Do(func() { close(g.opened) }) }

// startMemberApp starts emulated members on random loopback addresses,
// posting their events to an App whose config lists them all, with params
// in its config and g around the sink's handler.
func startMemberApp(t testing.TB, members int, params string, g *gate) (*App, *emsim.Cluster, *testkit.Buffer) {
	t.Helper()
	ips := emsim.RandomLoopbackIPs(members)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cl, err := emsim.Start(emsim.Config{IP: ips[0], Members: members, EventsURL: "http://" + ln.Addr().String() + "/evowebservices/"})
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	var dests []string
	for i, ip := range ips {
		dests = append(dests, fmt.Sprintf(`{"enable": false, "address": %q, "name": "m%d"}`, ip, i+1))
	}
	cfg, err := config.Parse("members.json", fmt.Appendf(nil, `{"StreamLoadBalancer": {"plugin_switch": "enabled", "parameters": {
		"listen": %q, %s "destination_ems_apiproxies": [%s]}}}`, ln.Addr().String(), params, strings.Join(dests, ", ")))
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	logs := &testkit.Buffer{}
	a, err := New(Options{Config: cfg, SinkListener: ln, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	a.sinkHook = g.wrap
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		g.open()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := a.Stop(ctx); err != nil {
			t.Error(err)
		}
	})
	return a, cl, logs
}

func counter(t testing.TB, reg prometheus.Gatherer, family string, match map[string]string) int {
	t.Helper()
	v, err := testkit.CounterSum(reg, family, match)
	if err != nil {
		t.Fatal(err)
	}
	return int(v)
}

// waitUntil polls cond until it holds, failing the test after 15s.
func waitUntil(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within 15s: %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestMemberBurstBeyondItsShareLosesNoEvent has an emulated member
// publish 200 streams at once while the sink's handlers are held (a
// saturated CPU): the member has more than 64 events in flight, and every
// one is accepted. Without the members trusted (the old rule, 64 per peer)
// the same burst loses every event past the 64th: the case measured in a
// benchmark burst, where the origin's events were answered 503.
func TestMemberBurstBeyondItsShareLosesNoEvent(t *testing.T) {
	const streams, held = 200, 100
	for _, trusted := range []bool{true, false} {
		t.Run(fmt.Sprintf("trusted=%v", trusted), func(t *testing.T) {
			g := newGate(func(string) bool { return true })
			a, cl, _ := startMemberApp(t, 1, ``, g)
			if !trusted {
				a.sinkLimit.SetTrusted(nil, 0)
			}
			reg := a.Registry()
			origin := cl.Members()[0]
			if !a.sinkLimit.Trusted(origin.IP()) && trusted {
				t.Fatalf("the member's address %s is not trusted by the sink's cap", origin.IP())
			}
			refused := func() int { return counter(t, reg, "streamlb_http_requests_refused_total", nil) }
			if n, err := origin.PublishMany("burst", streams); err != nil || n != streams {
				t.Fatalf("PublishMany: %d, %v", n, err)
			}
			// Hold the events until held of them are in flight at once, or
			// until every one is either held or refused.
			waitUntil(t, "the burst in flight", func() bool {
				in := int(g.inside.Load())
				return in >= held || in+refused() == streams
			})
			g.open()
			accepted := func() int {
				return counter(t, reg, "streamlb_events_received_total", map[string]string{"type": "inStreamCreated", "result": "accepted"})
			}
			waitUntil(t, "every event answered", func() bool { return accepted()+refused() == streams })
			most := int(g.most.Load())
			if trusted {
				if most <= maxInflightPerPeer {
					t.Errorf("at most %d events in flight at once; the test needs more than %d", most, maxInflightPerPeer)
				}
				if got := accepted(); got != streams {
					t.Errorf("%d of %d inStreamCreated events accepted (%d refused), want all", got, streams, refused())
				}
				return
			}
			if most != maxInflightPerPeer {
				t.Errorf("at most %d events in flight at once, want the share of %d", most, maxInflightPerPeer)
			}
			want := streams - maxInflightPerPeer
			if got := counter(t, reg, "streamlb_http_requests_refused_total", map[string]string{"listener": "sink", "reason": "peer"}); got != want {
				t.Errorf("refused for the peer's share: %d, want %d", got, want)
			}
		})
	}
}

// TestMemberEventsWaitForASlot fills every slot of a small cap with a
// member's events: its later events wait for a slot instead of being
// refused, and all of them reach the receiver.
func TestMemberEventsWaitForASlot(t *testing.T) {
	const streams, total = 100, 16
	ips := emsim.RandomLoopbackIPs(1)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	var events atomic.Int64
	recv := receiver.New(receiver.Options{Registerer: reg, Sink: receiver.SinkFunc(func(receiver.StreamEvent) { events.Add(1) })})
	mux := http.NewServeMux()
	recv.Register(mux)
	lim := inflight.New(total, 4)
	lim.SetTrusted(ips, total/4)
	g := newGate(func(string) bool { return true })
	m := newHTTPMetrics(reg)
	srv := &http.Server{Handler: limitConcurrency(g.wrap(mux), lim, time.Minute, listenerSink, m, slog.New(slog.DiscardHandler)),
		ReadHeaderTimeout: 5 * time.Second}
	served := make(chan struct{})
	go func() { defer close(served); _ = srv.Serve(ln) }()
	defer func() {
		g.open()
		_ = srv.Shutdown(context.Background())
		<-served
	}()
	cl, err := emsim.Start(emsim.Config{IP: ips[0], EventsURL: "http://" + ln.Addr().String() + "/evowebservices/"})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if n, err := cl.Members()[0].PublishMany("s", streams); err != nil || n != streams {
		t.Fatalf("PublishMany: %d, %v", n, err)
	}
	waitUntil(t, "every slot taken and a member's request waiting", func() bool {
		return g.inside.Load() == total && counter(t, reg, "streamlb_http_requests_waited_total", nil) > 0
	})
	g.open()
	waitUntil(t, "every event handed on", func() bool { return events.Load() == streams })
	if got := counter(t, reg, "streamlb_http_requests_refused_total", nil); got != 0 {
		t.Errorf("%d requests refused, want none", got)
	}
	if most := g.most.Load(); most != total {
		t.Errorf("at most %d requests in flight, want the total of %d", most, total)
	}
}

// TestNonMembersAreBoundedAndCounted holds requests from six addresses
// that are not members, 64 each: a seventh request from one of them is
// refused for its share, one from a seventh address because non-members
// together hold all the slots open to them, and both are counted and
// logged. A member's events still find their reserved slots.
func TestNonMembersAreBoundedAndCounted(t *testing.T) {
	outsiders := emsim.RandomLoopbackIPs(7)
	g := newGate(func(peer string) bool { return slices.Contains(outsiders, peer) })
	a, cl, logs := startMemberApp(t, 1, ``, g)
	reg := a.Registry()
	if a.sinkLimit.Trusted(outsiders[0]) {
		t.Fatalf("%s trusted, want only the member", outsiders[0])
	}
	url := "http://" + a.Addr() + "/evowebservices/"
	var posts sync.WaitGroup
	defer posts.Wait()
	defer g.open()
	held := outsiders[:6]
	for _, ip := range held {
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 2 * time.Second}
		hc := &http.Client{Transport: &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true}, Timeout: 30 * time.Second}
		for range maxInflightPerPeer {
			posts.Go(func() {
				resp, err := hc.Post(url, "application/json", strings.NewReader(serverStarted))
				if err != nil {
					t.Errorf("held POST from %s: %v", ip, err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			})
		}
	}
	open := maxInflight - memberReserve
	waitUntil(t, fmt.Sprintf("%d requests held", open), func() bool { return int(g.inside.Load()) == open })

	if code, _ := postFrom(t, url, held[0], serverStarted); code != http.StatusServiceUnavailable {
		t.Errorf("a request past %s's share: %d, want 503", held[0], code)
	}
	if code, _ := postFrom(t, url, outsiders[6], serverStarted); code != http.StatusServiceUnavailable {
		t.Errorf("a request from %s while non-members hold their %d slots: %d, want 503", outsiders[6], open, code)
	}
	for _, reason := range []string{"peer", "non_members"} {
		if got := counter(t, reg, "streamlb_http_requests_refused_total", map[string]string{"listener": "sink", "reason": reason}); got != 1 {
			t.Errorf("refused with reason %s: %d, want 1", reason, got)
		}
	}
	if !strings.Contains(logs.String(), "level=WARN msg=\"request refused: too many requests in flight") {
		t.Errorf("no warning of the refusal; logs:\n%s", logs)
	}

	const streams = 50
	if n, err := cl.Members()[0].PublishMany("m", streams); err != nil || n != streams {
		t.Fatalf("PublishMany: %d, %v", n, err)
	}
	waitUntil(t, "the member's events accepted", func() bool {
		return counter(t, reg, "streamlb_events_received_total", map[string]string{"type": "inStreamCreated", "result": "accepted"}) == streams
	})
	if got := counter(t, reg, "streamlb_http_requests_refused_total", nil); got != 2 {
		t.Errorf("%d requests refused in all, want the 2 above", got)
	}
}

// TestMemberPeersFollowTheConfig: the sink trusts each member's IP
// address, and the host member's API address (the local EMS posts from
// it); not a host name. A reload moves the trust to the new members.
func TestMemberPeersFollowTheConfig(t *testing.T) {
	parse := func(params string) *config.Config {
		t.Helper()
		cfg, err := config.Parse("peers.json", []byte(`{"StreamLoadBalancer": {"plugin_switch": "enabled", "parameters": {
			"listen": "127.0.0.1:0", `+params+`}}}`))
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	sidecar := parse(`"host": {"address": "10.0.0.5"},
		"destination_ems_apiproxies": [{"enable": false, "address": "10.0.0.6"}, {"enable": false, "address": "ems7.example"}]`)
	if got, want := memberPeers(sidecar), []string{"10.0.0.6", "10.0.0.5", "127.0.0.1"}; !sameSet(got, want) {
		t.Errorf("memberPeers = %v, want %v", got, want)
	}

	// Members on loopback addresses whose API port answers nothing.
	ips := emsim.RandomLoopbackIPs(3)
	members := func(ips ...string) *config.Config {
		var dests []string
		for _, ip := range ips {
			dests = append(dests, fmt.Sprintf(`{"enable": false, "address": %q, "apiPort": 1}`, ip))
		}
		return parse(`"destination_ems_apiproxies": [` + strings.Join(dests, ", ") + `]`)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a, err := New(Options{Config: members(ips[0], ips[1]), SinkListener: ln})
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	if err := a.Start(); err != nil {
		ln.Close()
		t.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := a.Stop(ctx); err != nil {
			t.Error(err)
		}
	}()
	trusted := func() []bool {
		return []bool{a.sinkLimit.Trusted(ips[0]), a.sinkLimit.Trusted(ips[1]), a.sinkLimit.Trusted(ips[2])}
	}
	if got, want := trusted(), []bool{true, true, false}; !slices.Equal(got, want) {
		t.Errorf("before the reload, %v trusted: %v, want %v", ips, got, want)
	}
	if err := a.Reload(members(ips[1], ips[2])); err != nil {
		t.Fatal(err)
	}
	if got, want := trusted(), []bool{false, true, true}; !slices.Equal(got, want) {
		t.Errorf("after the reload, %v trusted: %v, want %v", ips, got, want)
	}
}

func sameSet(a, b []string) bool {
	a, b = slices.Sorted(slices.Values(a)), slices.Sorted(slices.Values(b))
	return slices.Equal(a, b)
}
