package play

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"streamlb/internal/config"
)

// fakeHolders is a Holders (and CopyWanter) whose answers the test sets.
type fakeHolders struct {
	mu    sync.Mutex
	m     map[string][]string
	wants []string
}

func (f *fakeHolders) WantCopy(name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.wants = append(f.wants, name)
}

func (f *fakeHolders) wanted() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.wants...)
}

func (f *fakeHolders) Holders(name string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.m[name]...)
}

func (f *fakeHolders) set(name string, holders ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.m[name] = holders
}

// testService is a Service without pollers: samples are set by the test,
// and its clock is the test's.
type testService struct {
	*Service
	holders *fakeHolders
	reg     *prometheus.Registry
	mu      sync.Mutex
	now     time.Time
}

func newTestService(t *testing.T, members ...string) *testService {
	t.Helper()
	ts := &testService{holders: &fakeHolders{m: map[string][]string{}}, reg: prometheus.NewRegistry(), now: t0}
	var ms []Member
	for i, name := range members {
		pl := placement(200)
		pl.PlayHost = fmt.Sprintf("10.0.0.%d", i+1)
		ms = append(ms, Member{Name: name, Address: pl.PlayHost, Placement: pl})
	}
	cfg := &config.Play{Listen: "127.0.0.1:0", PollInterval: 5 * time.Second, StaleAfter: 15 * time.Second,
		HighWater: 0.8, StickyTTL: 2 * time.Minute, DefaultStreamBitrate: 2e6}
	now := func() time.Time {
		ts.mu.Lock()
		defer ts.mu.Unlock()
		return ts.now
	}
	s, err := New(Options{Config: cfg, Members: ms, Holders: ts.holders, Registerer: ts.reg, Seed: 42, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	ts.Service = s
	return ts
}

func (ts *testService) advance(d time.Duration) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	ts.now = ts.now.Add(d)
}

// sample sets a fresh sample of member with rtmp players of cam.
func (ts *testService) sample(t *testing.T, member string, rtmp int) {
	t.Helper()
	if !ts.SetSample(member, &Sample{At: ts.s().now(), Viewers: map[string]int{ProtocolRTMP: rtmp}, Streams: map[string]int{"cam": rtmp}}) {
		t.Fatalf("no member %s", member)
	}
}

func (ts *testService) s() *Service { return ts.Service }

func (ts *testService) get(t *testing.T, target, client string) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(http.MethodGet, target, nil)
	r.RemoteAddr = net.JoinHostPort(client, "50000")
	w := httptest.NewRecorder()
	ts.PlayHandler().ServeHTTP(w, r)
	return w
}

func decodeAnswer(t *testing.T, w *httptest.ResponseRecorder) Answer {
	t.Helper()
	if w.Code != http.StatusOK {
		t.Fatalf("status %d, want 200: %s", w.Code, w.Body)
	}
	var a Answer
	if err := json.Unmarshal(w.Body.Bytes(), &a); err != nil {
		t.Fatal(err)
	}
	return a
}

func TestPlayAnswersTheChosenMembersURLs(t *testing.T) {
	ts := newTestService(t, "a")
	ts.holders.set("cam 1", "a")
	ts.SetSample("a", &Sample{At: t0, Viewers: map[string]int{}, Streams: map[string]int{"cam 1": 0}})
	got := decodeAnswer(t, ts.get(t, "/play/cam%201", "192.0.2.1"))
	want := Answer{Stream: "cam 1", Member: "a", URLs: URLs{
		RTMP: "rtmp://10.0.0.1:1935/live/cam%201",
		RTSP: "rtsp://10.0.0.1:5544/cam%201",
		HLS:  "http://10.0.0.1:8888/cam%201/cam%201/playlist.m3u8",
		DASH: "http://10.0.0.1:8888/cam%201/manifest.mpd",
	}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("answer mismatch (-want +got):\n%s", diff)
	}
}

func TestPlayRedirectsHLSAndDASH(t *testing.T) {
	ts := newTestService(t, "a")
	ts.holders.set("cam", "a")
	ts.sample(t, "a", 0)
	for proto, want := range map[string]string{"hls": "http://10.0.0.1:8888/cam/cam/playlist.m3u8", "dash": "http://10.0.0.1:8888/cam/manifest.mpd"} {
		w := ts.get(t, "/play/cam?protocol="+proto+"&redirect=1", "192.0.2.1")
		if w.Code != http.StatusTemporaryRedirect || w.Header().Get("Location") != want {
			t.Errorf("%s: status %d Location %q, want 307 %q", proto, w.Code, w.Header().Get("Location"), want)
		}
	}
}

func TestPlayErrors(t *testing.T) {
	ts := newTestService(t, "a", "b")
	ts.holders.set("cam", "a")
	ts.sample(t, "a", 0)
	ts.sample(t, "b", 0)
	tests := []struct {
		name, target string
		code         int
	}{
		{"unknown stream", "/play/nowhere", http.StatusNotFound},
		{"unknown protocol", "/play/cam?protocol=flv", http.StatusBadRequest},
		{"redirect without hls or dash", "/play/cam?redirect=1", http.StatusBadRequest},
		{"redirect rtmp", "/play/cam?protocol=rtmp&redirect=1", http.StatusBadRequest},
		{"other route", "/api/v1/status", http.StatusNotFound},
		{"name too long", "/play/" + strings.Repeat("x", 300), http.StatusBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if w := ts.get(t, tt.target, "192.0.2.1"); w.Code != tt.code {
				t.Errorf("GET %s: status %d, want %d: %s", tt.target, w.Code, tt.code, w.Body)
			}
		})
	}
	if got := testutil.ToFloat64(ts.metrics.requests.WithLabelValues(ResultNotFound)); got != 1 {
		t.Errorf("not_found requests = %v, want 1", got)
	}
}

func TestPlayUnavailableWhenNoHolderIsEligible(t *testing.T) {
	ts := newTestService(t, "a", "b")
	ts.holders.set("cam", "a")
	ts.sample(t, "a", 0)
	ts.sample(t, "b", 0)
	ts.advance(16 * time.Second)
	ts.sample(t, "b", 0) // b is fresh but does not hold cam
	w := ts.get(t, "/play/cam", "192.0.2.1")
	if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") != "5" {
		t.Errorf("status %d Retry-After %q, want 503 5: %s", w.Code, w.Header().Get("Retry-After"), w.Body)
	}
	// A stream listed only by a member that cannot serve it is live: 503.
	ts.holders.set("cam")
	if w := ts.get(t, "/play/cam", "192.0.2.1"); w.Code != http.StatusServiceUnavailable {
		t.Errorf("listed, no holder: status %d, want 503", w.Code)
	}
}

func TestPlayIsStickyWhileTheMemberStaysEligible(t *testing.T) {
	ts := newTestService(t, "a", "b", "c")
	ts.holders.set("cam", "a", "b", "c")
	for _, m := range []string{"a", "b", "c"} {
		ts.sample(t, m, 10)
	}
	first := decodeAnswer(t, ts.get(t, "/play/cam", "192.0.2.7")).Member
	for range 20 {
		if got := decodeAnswer(t, ts.get(t, "/play/cam", "192.0.2.7")).Member; got != first {
			t.Fatalf("the same client got %s, then %s", first, got)
		}
	}
	if got := testutil.ToFloat64(ts.metrics.requests.WithLabelValues(ResultSticky)); got != 20 {
		t.Errorf("sticky requests = %v, want 20", got)
	}
	// Its member's sample goes stale: the client moves, and stays there.
	ts.advance(10 * time.Second)
	for _, m := range []string{"a", "b", "c"} {
		if m != first {
			ts.sample(t, m, 10)
		}
	}
	ts.advance(6 * time.Second)
	moved := decodeAnswer(t, ts.get(t, "/play/cam", "192.0.2.7")).Member
	if moved == first {
		t.Fatalf("client kept %s after its sample went stale", first)
	}
	if got := decodeAnswer(t, ts.get(t, "/play/cam", "192.0.2.7")).Member; got != moved {
		t.Errorf("after moving to %s the client got %s", moved, got)
	}
	// Past sticky_ttl the pair is forgotten.
	ts.advance(3 * time.Minute)
	for _, m := range []string{"a", "b", "c"} {
		ts.sample(t, m, 10)
	}
	_ = decodeAnswer(t, ts.get(t, "/play/cam", "192.0.2.7"))
	if got := testutil.ToFloat64(ts.metrics.requests.WithLabelValues(ResultSticky)); got != 21 {
		t.Errorf("sticky requests = %v, want 21 (none after sticky_ttl)", got)
	}
}

// TestPendingSpreadsABurst: between two samples, every answer counts on
// its member, so a burst from distinct clients does not herd on the
// member that was idle at the last sample.
func TestPendingSpreadsABurst(t *testing.T) {
	ts := newTestService(t, "a", "b", "c", "d")
	ts.holders.set("cam", "a", "b", "c", "d")
	ts.sample(t, "a", 0)
	for _, m := range []string{"b", "c", "d"} {
		ts.sample(t, m, 40)
	}
	counts := map[string]int{}
	for i := range 400 {
		counts[decodeAnswer(t, ts.get(t, "/play/cam", fmt.Sprintf("198.51.%d.%d", i/250, i%250))).Member]++
	}
	// a catches up with the others (40 viewers) and then shares.
	if counts["a"] < 100 || counts["a"] > 220 {
		t.Errorf("a got %d of 400 players, want its 40-player head start filled and no herd (counts %v)", counts["a"], counts)
	}
	for _, m := range []string{"b", "c", "d"} {
		if counts[m] < 40 {
			t.Errorf("%s got %d of 400, want a share (counts %v)", m, counts[m], counts)
		}
	}
	l := ts.Load()
	if l.Members[0].PendingViewers != float64(counts["a"]) {
		t.Errorf("a's pending viewers = %v, want %d", l.Members[0].PendingViewers, counts["a"])
	}
	ts.sample(t, "a", counts["a"])
	if got := ts.Load().Members[0].PendingViewers; got != float64(counts["a"])/2 {
		t.Errorf("after a fresh sample a's pending viewers = %v, want half of %d", got, counts["a"])
	}
}

func TestLoadDocument(t *testing.T) {
	ts := newTestService(t, "a", "b")
	ts.holders.set("cam", "a", "b")
	ts.SetSample("a", &Sample{At: t0, Viewers: map[string]int{ProtocolRTMP: 50, ProtocolHLS: 3}, ReplicaPulls: 1,
		Streams: map[string]int{"cam": 50}, OutBps: 8e6})
	ts.advance(2 * time.Second)
	req := httptest.NewRequest(http.MethodGet, "/api/v1/load", nil)
	w := httptest.NewRecorder()
	ts.LoadHandler().ServeHTTP(w, req)
	var doc LoadDoc
	if err := json.Unmarshal(w.Body.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	a := doc.Members[0]
	if a.Name != "a" || a.Viewers[ProtocolRTMP] != 50 || a.Viewers[ProtocolHLS] != 3 || a.ViewersTotal != 53 || a.ReplicaPulls != 1 ||
		a.OutMbps != 8 || a.EstimatedOutMbps != 14 || a.MaxViewers != 200 || a.Utilization != 53.0/200 || a.SampleAgeS != 2 || !a.Eligible {
		t.Errorf("member a = %+v", a)
	}
	if b := doc.Members[1]; b.Eligible || b.Why != WhyNoSample || b.SampleAgeS != -1 {
		t.Errorf("member b = %+v, want ineligible without a sample", b)
	}
	want := []StreamLoad{{Name: "cam", Holders: []string{"a", "b"}, Viewers: map[string]int{"a": 50}, ViewersTotal: 50}}
	if diff := cmp.Diff(want, doc.Streams); diff != "" {
		t.Errorf("streams mismatch (-want +got):\n%s", diff)
	}
	if n := testutil.CollectAndCount(ts.reg, "streamlb_member_viewers"); n != 4 {
		t.Errorf("streamlb_member_viewers has %d series, want 4 (a's protocols)", n)
	}
}

// TestServerLimits: the public listener caps requests in flight per
// client address and refuses large headers and other routes, and counts
// each refusal.
func TestServerLimits(t *testing.T) {
	var refusedMu sync.Mutex
	refusals := map[string]int{}
	refused := func(result string) {
		refusedMu.Lock()
		defer refusedMu.Unlock()
		refusals[result]++
	}
	entered := make(chan struct{})
	release := make(chan struct{})
	h := limit(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		<-release
	}), 100, 2, newPeerRates(1000, 1000, 10), refused)
	serve := func(peer string) chan int {
		done := make(chan int, 1)
		go func() {
			r := httptest.NewRequest(http.MethodGet, "/play/cam", nil)
			r.RemoteAddr = peer + ":1"
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			done <- w.Code
		}()
		return done
	}
	a1, a2 := serve("192.0.2.1"), serve("192.0.2.1")
	<-entered
	<-entered
	if code := <-serve("192.0.2.1"); code != http.StatusServiceUnavailable {
		t.Errorf("third request in flight from one address: %d, want 503", code)
	}
	b := serve("192.0.2.2")
	<-entered
	close(release)
	for _, c := range []chan int{a1, a2, b} {
		if code := <-c; code != http.StatusOK {
			t.Errorf("request within the caps: %d, want 200", code)
		}
	}

	// Past its rate, a client address gets 429; another address does not.
	rated := limit(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}), 100, 2, newPeerRates(0.001, 3, 10), refused)
	codes := func(peer string, n int) []int {
		var out []int
		for range n {
			r := httptest.NewRequest(http.MethodGet, "/play/cam", nil)
			r.RemoteAddr = peer + ":1"
			w := httptest.NewRecorder()
			rated.ServeHTTP(w, r)
			out = append(out, w.Code)
		}
		return out
	}
	if got, want := codes("192.0.2.1", 4), []int{200, 200, 200, 429}; !cmp.Equal(got, want) {
		t.Errorf("four requests from one address with a burst of 3: %v, want %v", got, want)
	}
	if got := codes("192.0.2.2", 1); got[0] != http.StatusOK {
		t.Errorf("another address: %v, want 200", got)
	}
	if want := map[string]int{ResultBusy: 1, ResultRateLimited: 1}; !cmp.Equal(refusals, want) {
		t.Errorf("refusals counted: %v, want %v", refusals, want)
	}

	ts := newTestService(t, "a")
	srv := ts.NewServer(nil)
	if srv.ReadTimeout == 0 || srv.WriteTimeout == 0 || srv.IdleTimeout == 0 || srv.ReadHeaderTimeout == 0 || srv.MaxHeaderBytes > 64<<10 {
		t.Errorf("server limits: %+v", srv)
	}
	r := httptest.NewRequest(http.MethodGet, "/play/cam", strings.NewReader(strings.Repeat("x", 4096)))
	w := httptest.NewRecorder()
	srv.Handler.ServeHTTP(w, r)
	if w.Code != http.StatusRequestEntityTooLarge {
		t.Errorf("GET with a 4 KiB body: %d, want 413", w.Code)
	}
	if got := testutil.ToFloat64(ts.metrics.requests.WithLabelValues(ResultTooLarge)); got != 1 {
		t.Errorf("streamlb_play_requests_total{result=%q} = %v, want 1", ResultTooLarge, got)
	}
}

// TestHotStreamsAskForACopy: a play request that finds no holder below
// high water (or none eligible) tells the controller, which may add a
// demand copy; one that finds room does not.
func TestHotStreamsAskForACopy(t *testing.T) {
	ts := newTestService(t, "a", "b")
	ts.holders.set("cam", "a", "b")
	ts.sample(t, "a", 100) // 0.5
	ts.sample(t, "b", 170) // 0.85
	decodeAnswer(t, ts.get(t, "/play/cam", "192.0.2.1"))
	if w := ts.holders.wanted(); len(w) != 0 {
		t.Errorf("a copy was wanted while a is below high water: %v", w)
	}
	ts.sample(t, "a", 190)
	decodeAnswer(t, ts.get(t, "/play/cam", "192.0.2.2"))
	if w := ts.holders.wanted(); !cmp.Equal(w, []string{"cam"}) {
		t.Errorf("wanted copies %v, want [cam] once every holder is above high water", w)
	}
	ts.sample(t, "a", 200)
	ts.sample(t, "b", 200)
	if w := ts.get(t, "/play/cam", "192.0.2.3"); w.Code != http.StatusServiceUnavailable {
		t.Fatalf("every holder full: %d, want 503", w.Code)
	}
	if w := ts.holders.wanted(); len(w) != 1 {
		t.Errorf("wanted copies %v, want no second one within a second", w)
	}
	ts.advance(time.Second)
	ts.sample(t, "a", 200)
	ts.sample(t, "b", 200)
	if w := ts.get(t, "/play/cam", "192.0.2.4"); w.Code != http.StatusServiceUnavailable {
		t.Fatalf("every holder full: %d, want 503", w.Code)
	}
	if w := ts.holders.wanted(); len(w) != 2 {
		t.Errorf("wanted copies %v, want a second one a second later, when no holder can take a player", w)
	}
}

// TestOnSampleForDemandCopies: every fresh sample is handed on with the
// utilization it shows alone, without the pending estimate.
func TestOnSampleForDemandCopies(t *testing.T) {
	type seen struct {
		member string
		at     time.Time
		util   float64
		cam    int
	}
	var got []seen
	cfg := &config.Play{Listen: "127.0.0.1:0", PollInterval: 5 * time.Second, StaleAfter: 15 * time.Second,
		HighWater: 0.8, StickyTTL: time.Minute, DefaultStreamBitrate: 2e6}
	h := &fakeHolders{m: map[string][]string{"cam": {"a"}}}
	s, err := New(Options{Config: cfg, Holders: h, Now: func() time.Time { return t0 },
		Members: []Member{{Name: "a", Address: "10.0.0.1", Placement: placement(200)}},
		OnSample: func(member string, at time.Time, u float64, viewers map[string]int) {
			got = append(got, seen{member, at, u, viewers["cam"]})
		}})
	if err != nil {
		t.Fatal(err)
	}
	s.SetSample("a", &Sample{At: t0, Viewers: map[string]int{ProtocolRTMP: 20}, Streams: map[string]int{"cam": 20}})
	if a, _ := s.Place("cam", "192.0.2.1"); a.Member != "a" {
		t.Fatalf("Place chose %q", a.Member)
	}
	s.SetSample("a", &Sample{At: t0, Viewers: map[string]int{ProtocolRTMP: 40}, Streams: map[string]int{"cam": 40}})
	want := []seen{{"a", t0, 0.1, 20}, {"a", t0, 0.2, 40}}
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(seen{})); diff != "" {
		t.Errorf("samples handed on (-want +got):\n%s", diff)
	}
}
