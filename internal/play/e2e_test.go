package play_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"streamlb/internal/app"
	"streamlb/internal/config"
	"streamlb/internal/ems"
	"streamlb/internal/emsim"
	"streamlb/internal/play"
)

// group is the balancer with viewer placement and four emulated members.
type group struct {
	t    *testing.T
	cl   *emsim.Cluster
	app  *app.App
	ips  []string
	base string // http://PLAY_ADDR
	text string // the config
}

// newGroup starts the group; destExtra is added to every destination's
// keys, params to the parameters.
func newGroup(t *testing.T, destExtra string, params ...string) *group {
	t.Helper()
	ips := emsim.RandomLoopbackIPs(4)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cl, err := emsim.Start(emsim.Config{IP: ips[0], Members: len(ips), EventsURL: "http://" + ln.Addr().String() + "/evowebservices/"})
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	var dests []string
	for i, ip := range ips {
		dests = append(dests, fmt.Sprintf(`{"enable": false, "address": %q, "name": "m%d"%s}`, ip, i+1, destExtra))
	}
	text := fmt.Sprintf(`{"StreamLoadBalancer": {"plugin_switch": "enabled", "parameters": {
		"listen": %q, "resync_interval": "1s", "teardown_grace": "2s", %s
		"play": {"listen": "127.0.0.1:0", "poll_interval": "200ms", "stale_after": "1s", "sticky_ttl": "1m"},
		"destination_ems_apiproxies": [%s]}}}`, ln.Addr().String(), strings.Join(params, ""), strings.Join(dests, ",\n"))
	cfg, err := config.Parse("play-e2e.json", []byte(text))
	if err != nil {
		ln.Close()
		t.Fatalf("config: %v\n%s", err, text)
	}
	a, err := app.New(app.Options{Config: cfg, SinkListener: ln, RetryBase: 100 * time.Millisecond, RetryMax: time.Second})
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
	return &group{t: t, cl: cl, app: a, ips: ips, base: "http://" + a.PlayAddr(), text: text}
}

// control posts to an emulated member's control route.
func (g *group) control(i int, route string) {
	g.t.Helper()
	resp, err := http.Post(g.cl.Members()[i].APIURL()+route, "", nil)
	if err != nil {
		g.t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		g.t.Fatalf("POST %s on member %d: %d %s", route, i, resp.StatusCode, body)
	}
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", within, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// clientFrom returns an HTTP client whose connections leave from the
// loopback address ip, and which does not follow redirects.
func clientFrom(ip string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	return &http.Client{
		Transport:     &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true},
		Timeout:       10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// clientIPs returns n distinct loopback addresses, none a member's.
func clientIPs(n int) []string {
	x, y := 1+rand.IntN(254), 1+rand.IntN(200)
	var out []string
	for i := range n {
		out = append(out, fmt.Sprintf("127.%d.%d.%d", x, y+i/250, 1+i%250))
	}
	return out
}

func (g *group) play(client, path string) (*http.Response, play.Answer) {
	g.t.Helper()
	resp, err := clientFrom(client).Get(g.base + path)
	if err != nil {
		g.t.Fatal(err)
	}
	defer resp.Body.Close()
	var ans play.Answer
	if resp.StatusCode == http.StatusOK {
		if err := json.NewDecoder(resp.Body).Decode(&ans); err != nil {
			g.t.Fatal(err)
		}
	}
	return resp, ans
}

func (g *group) get(url string) string {
	g.t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		g.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		g.t.Fatal(err)
	}
	return string(b)
}

func (g *group) load() play.LoadDoc {
	g.t.Helper()
	resp, err := http.Get("http://" + g.app.AdminAddr() + "/api/v1/load")
	if err != nil {
		g.t.Fatal(err)
	}
	defer resp.Body.Close()
	var doc play.LoadDoc
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		g.t.Fatal(err)
	}
	return doc
}

func memberLoad(doc play.LoadDoc, name string) play.MemberLoad {
	for _, m := range doc.Members {
		if m.Name == name {
			return m
		}
	}
	return play.MemberLoad{}
}

func TestPlayEndToEnd(t *testing.T) {
	g := newGroup(t, `, "maxViewers": 200`)
	g.control(0, "/_emsim/publish?name=cam")
	eventually(t, 15*time.Second, "cam held by all four members", func() bool {
		return len(g.app.Controller().Holders("cam")) == 4
	})
	names := []string{"m1", "m2", "m3", "m4"}

	// A holder with its rtmp:// URL.
	resp, ans := g.play("127.0.0.1", "/play/cam")
	if resp.StatusCode != http.StatusOK || !slices.Contains(names, ans.Member) {
		t.Fatalf("GET /play/cam: %d %+v", resp.StatusCode, ans)
	}
	idx := slices.Index(names, ans.Member)
	if want := "rtmp://" + g.ips[idx] + ":1935/live/cam"; ans.URLs.RTMP != want {
		t.Errorf("rtmp URL %q, want %q", ans.URLs.RTMP, want)
	}

	// 50 RTMP players on three holders, none on the fourth.
	for i := range 3 {
		g.control(i, "/_emsim/viewers?name=cam&protocol=rtmp&count=50")
	}
	eventually(t, 5*time.Second, "the load shows 50 players on m1-m3 and none on m4", func() bool {
		doc := g.load()
		for i, n := range names {
			want := 50
			if i == 3 {
				want = 0
			}
			if m := memberLoad(doc, n); m.Viewers[play.ProtocolRTMP] != want || !m.Eligible {
				return false
			}
		}
		return true
	})
	// The origin serves three replica pulls: not viewers.
	origin := memberLoad(g.load(), "m1")
	if origin.ViewersTotal != 50 || origin.ReplicaPulls != 3 {
		t.Errorf("origin load: %d viewers, %d replica pulls; want 50 and 3", origin.ViewersTotal, origin.ReplicaPulls)
	}
	if metrics := g.get("http://" + g.app.AdminAddr() + "/metrics"); !strings.Contains(metrics, `streamlb_member_viewers{member="m1",protocol="rtmp"} 50`+"\n") {
		t.Errorf("/metrics lacks m1's 50 RTMP players:\n%s", metrics)
	}

	// 100 players from distinct addresses: the idle member gets at least
	// 40.
	counts := map[string]int{}
	clients := clientIPs(100)
	for _, c := range clients {
		resp, ans := g.play(c, "/play/cam")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET /play/cam from %s: %d", c, resp.StatusCode)
		}
		counts[ans.Member]++
	}
	if counts["m4"] < 40 {
		t.Errorf("the idle member got %d of 100 players, want at least 40 (counts %v)", counts["m4"], counts)
	}

	// The same client asking again gets the same member.
	_, first := g.play(clients[0], "/play/cam")
	_, again := g.play(clients[0], "/play/cam")
	if first.Member != again.Member {
		t.Errorf("the same client got %s, then %s", first.Member, again.Member)
	}

	// HLS with redirect: 307 to a member's playlist.
	resp, _ = g.play(clientIPs(1)[0], "/play/cam?protocol=hls&redirect=1")
	loc := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusTemporaryRedirect || !slices.ContainsFunc(g.ips, func(ip string) bool {
		return loc == "http://"+ip+":8888/cam/cam/playlist.m3u8"
	}) {
		t.Errorf("hls redirect: %d Location %q", resp.StatusCode, loc)
	}

	// Unknown stream: 404.
	if resp, _ := g.play("127.0.0.1", "/play/nowhere"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("unknown stream: %d, want 404", resp.StatusCode)
	}
	// The play listener serves nothing else.
	for _, path := range []string{"/api/v1/status", "/api/v1/load", "/metrics", "/", "/healthz"} {
		if resp, _ := g.play("127.0.0.1", path); resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s on the play listener: %d, want 404", path, resp.StatusCode)
		}
	}
	if resp, err := clientFrom("127.0.0.1").Post(g.base+"/evowebservices/", "application/json", strings.NewReader("{}")); err != nil || resp.StatusCode == http.StatusOK {
		t.Errorf("POST /evowebservices/ on the play listener: %v %v, want refused", resp, err)
	} else {
		resp.Body.Close()
	}

	// m4 goes down: once its sample is stale it is never chosen.
	g.control(3, "/_emsim/faults?down=1")
	eventually(t, 5*time.Second, "m4's sample is stale", func() bool {
		m := memberLoad(g.load(), "m4")
		return !m.Eligible && m.Why == play.WhyStale
	})
	for _, c := range clientIPs(50) {
		resp, ans := g.play(c, "/play/cam")
		if resp.StatusCode != http.StatusOK || ans.Member == "m4" {
			t.Fatalf("after m4 went down, GET /play/cam from %s: %d %s", c, resp.StatusCode, ans.Member)
		}
	}
}

// TestLoadReadsEveryProtocolAndTheConnectionLimit: RTSP players and HLS
// sessions count, EMS's bandwidth reading shows, and without maxViewers
// EMS's connection limit is the member's capacity.
func TestLoadReadsEveryProtocolAndTheConnectionLimit(t *testing.T) {
	g := newGroup(t, "")
	g.control(0, "/_emsim/publish?name=cam")
	eventually(t, 15*time.Second, "cam held by m2", func() bool {
		return slices.Contains(g.app.Controller().Holders("cam"), "m2")
	})
	g.control(1, "/_emsim/viewers?name=cam&protocol=rtsp&count=3")
	g.control(1, "/_emsim/viewers?name=cam&protocol=hls&count=4")
	c := ems.New(ems.Endpoint{Member: "m2", BaseURL: g.cl.Members()[1].APIURL()}, nil)
	defer c.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.Call(ctx, "setConnectionsCountLimit", ems.Params{{Key: "count", Value: "100"}}); err != nil {
		t.Fatal(err)
	}
	var m play.MemberLoad
	eventually(t, 10*time.Second, "m2's load shows 3 RTSP players, 4 HLS sessions and the limit of 100", func() bool {
		m = memberLoad(g.load(), "m2")
		return m.Viewers[play.ProtocolRTSP] == 3 && m.Viewers[play.ProtocolHLS] == 4 && m.MaxViewers == 100
	})
	if m.Viewers[play.ProtocolRTMP] != 0 || m.ViewersTotal != 7 || m.Utilization < 0.07 || m.OutMbps <= 0 || !m.Eligible {
		t.Errorf("m2's load: %+v", m)
	}
}

// TestReloadAppliesPlacementKeys: a reload that makes a member not
// playable takes it out of placement at once.
func TestReloadAppliesPlacementKeys(t *testing.T) {
	g := newGroup(t, `, "maxViewers": 200`)
	g.control(0, "/_emsim/publish?name=cam")
	eventually(t, 15*time.Second, "cam held by all four members and their load read", func() bool {
		doc := g.load()
		for _, m := range doc.Members {
			if !m.Eligible {
				return false
			}
		}
		return len(g.app.Controller().Holders("cam")) == 4
	})
	text := strings.Replace(g.text, `"name": "m4", "maxViewers": 200`, `"name": "m4", "maxViewers": 200, "playable": false`, 1)
	cfg, err := config.Parse("play-e2e.json", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	if err := g.app.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	if m := memberLoad(g.load(), "m4"); m.Playable || m.Eligible || m.Why != play.WhyNotPlayable || m.SampleAgeS < 0 {
		t.Errorf("m4 after the reload: %+v, want not playable, its readings kept", m)
	}
	for _, c := range clientIPs(40) {
		if resp, ans := g.play(c, "/play/cam"); resp.StatusCode != http.StatusOK || ans.Member == "m4" {
			t.Fatalf("GET /play/cam from %s after m4 was made not playable: %d %s", c, resp.StatusCode, ans.Member)
		}
	}
}

// TestDemandCopyFollowsTheLoad: with replication on demand, placement's
// load samples reach the controller: when both holders of a stream stay
// above scale_up_utilization, a third member gets a copy, and players can
// be sent there.
func TestDemandCopyFollowsTheLoad(t *testing.T) {
	g := newGroup(t, `, "maxViewers": 200`, `"replication": {"mode": "demand", "min_copies": 2, "scale_up_utilization": 0.7},`)
	g.control(0, "/_emsim/publish?name=cam")
	var holders []string
	eventually(t, 15*time.Second, "cam held by two members", func() bool {
		holders = g.app.Controller().Holders("cam")
		return len(holders) == 2
	})
	for _, h := range holders {
		g.control(slices.Index([]string{"m1", "m2", "m3", "m4"}, h), "/_emsim/viewers?name=cam&protocol=rtmp&count=180")
	}
	eventually(t, 15*time.Second, "a third copy of cam", func() bool {
		return len(g.app.Controller().Holders("cam")) == 3
	})
	third := ""
	for _, h := range g.app.Controller().Holders("cam") {
		if !slices.Contains(holders, h) {
			third = h
		}
	}
	eventually(t, 5*time.Second, "the new copy is eligible", func() bool {
		return memberLoad(g.load(), third).Eligible
	})
	counts := map[string]int{}
	for _, c := range clientIPs(20) {
		_, ans := g.play(c, "/play/cam")
		counts[ans.Member]++
	}
	if counts[third] < 10 {
		t.Errorf("the new copy on %s got %d of 20 players, want most (counts %v)", third, counts[third], counts)
	}
}
