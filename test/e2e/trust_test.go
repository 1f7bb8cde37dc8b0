package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"streamlb/internal/controller"
	"streamlb/internal/emsim"
)

// httpGetJSON decodes the JSON answer of a GET of url into v.
func httpGetJSON(t *testing.T, url string, v any) {
	t.Helper()
	hc := &http.Client{Timeout: 5 * time.Second}
	resp, err := hc.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET %s: %s %s", url, resp.Status, b)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
}

// emsimCalls returns the EMS calls the member at ip answered, by lowercased
// command, from its GET /_emsim/stats.
func emsimCalls(t *testing.T, ip string) map[string]int64 {
	t.Helper()
	var st struct {
		Calls map[string]int64 `json:"calls"`
	}
	httpGetJSON(t, "http://"+ip+":7777/_emsim/stats", &st)
	return st.Calls
}

// readOnlyCommand reports whether an EMS command only reads.
func readOnlyCommand(c string) bool {
	for _, p := range []string{"list", "get", "version", "clientsconnected", "httpclientsconnected"} {
		if strings.HasPrefix(c, p) {
			return true
		}
	}
	return false
}

// changingCalls sums the calls that change something on the members at ips.
func changingCalls(t *testing.T, ips []string) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	for _, ip := range ips {
		for c, n := range emsimCalls(t, ip) {
			if !readOnlyCommand(c) {
				out[ip+" "+c] += n
			}
		}
	}
	return out
}

// emsimControl posts to a control route of the member at ip.
func emsimControl(t *testing.T, ip, route string) {
	t.Helper()
	resp, err := http.Post("http://"+ip+":7777"+route, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST %s on %s: %s %s", route, ip, resp.Status, b)
	}
}

// balancer is a streamlb run process and its config file.
type balancer struct {
	p      *proc
	base   string // http://LISTEN
	config string
}

func (b *balancer) status(t *testing.T) controller.Status {
	t.Helper()
	var st controller.Status
	httpGetJSON(t, b.base+"/api/v1/status", &st)
	return st
}

func (b *balancer) member(t *testing.T, name string) controller.MemberStatus {
	t.Helper()
	for _, m := range b.status(t).Members {
		if m.Name == name {
			return m
		}
	}
	t.Fatalf("no member %s in status", name)
	return controller.MemberStatus{}
}

// post makes a plain POST to one of the balancer's routes and wants 200.
func (b *balancer) post(t *testing.T, route string) {
	t.Helper()
	resp, err := http.Post(b.base+route, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST %s: %s, want 200", route, resp.Status)
	}
}

// resyncedSince waits until the process's last resync began after at.
func (b *balancer) resyncedSince(t *testing.T, at time.Time, within time.Duration) {
	t.Helper()
	eventually(t, within, b.base+" resynced after "+at.Format(time.StampMilli), func() bool {
		r := b.status(t).LastResync
		return r != nil && r.At.After(at)
	})
}

// reload writes text as the config and sends SIGHUP, then waits for the
// reload to show in status.
func (b *balancer) reload(t *testing.T, text string) {
	t.Helper()
	if err := os.WriteFile(b.config, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	sent := time.Now()
	if err := b.p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, b.base+" reloaded", func() bool {
		r := b.status(t).LastReload
		return r != nil && r.At.After(sent.Add(-time.Millisecond)) && r.OK
	})
}

// startBalancer runs streamlb with the config text, which listens on
// listen, and waits until it is ready.
func startBalancer(t *testing.T, dir, name, listen, text string) *balancer {
	t.Helper()
	path := filepath.Join(dir, name+".json")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	b := &balancer{p: startProc(t, streamlbBin, "run", "-config", path), base: "http://" + listen, config: path}
	eventually(t, 10*time.Second, name+" ready", func() bool {
		resp, err := http.Get(b.base + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return b
}

// TestAnOriginThatCannotBeTrustedKeepsItsReplicas is the trust scenario as
// a new user would try it: three emsim programs (the first behind the API
// proxy) and two streamlb run programs over them. An origin whose API
// answers 500, then closes its connections, then refuses a reloaded
// config's password, keeps every replica of its live sources on every other
// member; one name published on two origins settles and stays settled; a
// name that cannot stand in a URI is pulled nowhere and the group is still
// converged; a cross-site POST cannot pause a member.
func TestAnOriginThatCannotBeTrustedKeepsItsReplicas(t *testing.T) {
	t.Parallel()
	const (
		resync = time.Second
		grace  = time.Second
	)
	ips := emsim.RandomLoopbackIPs(3)
	listenA, listenB := freePort(t), freePort(t)
	events := "http://" + listenA + "/evowebservices/"
	for i, ip := range ips {
		startEmsim(t, ip, events, "", i == 0)
	}
	dir := t.TempDir()
	text := func(listen, password string) string {
		return configText(groupOpts{members: []memberConf{{proxy: true, password: password}, {}, {}}, resync: resync, grace: grace}, ips, listen)
	}
	// Balancer a hears the members' events; b learns from its resyncs.
	a := startBalancer(t, dir, "a", listenA, text(listenA, ""))
	b := startBalancer(t, dir, "b", listenB, text(listenB, ""))
	both := []*balancer{a, b}

	// Two live sources on the origin: an external camera and an encoder.
	c1 := directClient(ips[0])
	if err := publishVia(c1, ips[0], "gate"); err != nil {
		t.Fatal(err)
	}
	emsimControl(t, ips[0], "/_emsim/publish?name=studio")
	live := []string{"gate", "studio"}
	for _, name := range live {
		for _, ip := range ips[1:] {
			eventually(t, 5*time.Second, ip+" pulls "+name, func() bool { return holds(t, ip, name, "rtmp://"+ips[0]+"/live/"+name) })
		}
	}

	if n := emsimCalls(t, ips[1])["pullstream"]; n < int64(len(live)) {
		t.Fatalf("emsim's stats count %d pullStream calls on m2, want at least %d: the call counts read here are wrong", n, len(live))
	}

	// A cross-site POST to pause is refused; a plain one works.
	req, _ := http.NewRequest(http.MethodPost, a.base+"/api/v1/members/m3/pause", nil)
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	req.Header.Set("Origin", "https://evil.example")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("cross-site POST pause: %s, want 403", resp.Status)
	}
	if a.member(t, "m3").Paused {
		t.Errorf("a cross-site POST paused m3")
	}
	for _, route := range []string{"pause", "resume"} {
		resp, err := http.Post(a.base+"/api/v1/members/m3/"+route, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("plain POST %s: %s, want 200", route, resp.Status)
		}
		if got := a.member(t, "m3").Paused; got != (route == "pause") {
			t.Errorf("after POST %s m3 paused = %v", route, got)
		}
	}

	// A name that cannot stand in an RTMP URI is pulled nowhere, and the
	// group still reports converged.
	const odd = "odd/name?x=1"
	emsimControl(t, ips[1], "/_emsim/publish?name="+url.QueryEscape(odd))
	for _, lb := range both {
		eventually(t, 5*time.Second, lb.base+" shows "+odd+" unreplicable and the group converged", func() bool {
			st := lb.status(t)
			i := slices.IndexFunc(st.Streams, func(s controller.StreamStatus) bool { return s.Name == odd })
			if i < 0 || !st.Converged || st.State != "converged" {
				return false
			}
			for _, r := range st.Streams[i].Replicas {
				if r.State != "unreplicable" || r.Reason == "" {
					return false
				}
			}
			return len(st.Streams[i].Replicas) > 0
		})
	}
	for _, ip := range ips {
		if u := listConfig(t, ip)[odd]; len(u) != 0 {
			t.Errorf("%s pulls %s: %v", ip, odd, u)
		}
	}

	// One name published on two origins: both balancers settle on one
	// winner, then make no call that changes anything for three resync
	// intervals. m3 is paused on both balancers while the encoders start,
	// so that it is not given m2's copy before its own encoder publishes.
	for _, lb := range both {
		lb.post(t, "/api/v1/members/m3/pause")
	}
	emsimControl(t, ips[1], "/_emsim/publish?name=dup")
	emsimControl(t, ips[2], "/_emsim/publish?name=dup")
	for _, lb := range both {
		lb.post(t, "/api/v1/members/m3/resume")
	}
	for _, lb := range both {
		eventually(t, 8*time.Second, lb.base+" reports dup's conflict and converges", func() bool {
			st := lb.status(t)
			return st.Converged && slices.ContainsFunc(st.Conflicts, func(c controller.Conflict) bool { return c.Stream == "dup" })
		})
	}
	eventually(t, 5*time.Second, "m1 holds one copy of dup", func() bool { return len(listConfig(t, ips[0])["dup"]) == 1 })
	var winners []string
	for _, lb := range both {
		for _, s := range lb.status(t).Streams {
			if s.Name == "dup" {
				winners = append(winners, s.Origin)
			}
		}
	}
	if len(winners) != 2 || winners[0] != winners[1] {
		t.Errorf("the two balancers replicate dup from %v, want one origin for both", winners)
	}
	settled := time.Now()
	before := changingCalls(t, ips)
	for _, lb := range both {
		lb.resyncedSince(t, settled.Add(3*resync), 3*resync+5*time.Second)
	}
	if after := changingCalls(t, ips); !maps.Equal(before, after) {
		t.Errorf("two balancers over a settled conflict changed things in three resync intervals:\nbefore %v\nafter  %v", before, after)
	}

	// The origin turns untrustworthy three ways, one after the other.
	wrong := func() {
		for _, lb := range both {
			lb.reload(t, text(strings.TrimPrefix(lb.base, "http://"), "wrong-password-e2e"))
		}
	}
	right := func() {
		for _, lb := range both {
			lb.reload(t, text(strings.TrimPrefix(lb.base, "http://"), ""))
		}
	}
	phases := []struct {
		name        string
		start, stop func()
		state       string
	}{
		{"API answers 500", func() { emsimControl(t, ips[0], "/_emsim/faults?error_rate=1") }, func() { emsimControl(t, ips[0], "/_emsim/faults") }, "down"},
		{"API closed", func() { emsimControl(t, ips[0], "/_emsim/faults?api_down=1") }, func() { emsimControl(t, ips[0], "/_emsim/faults") }, "down"},
		{"password wrong in a reloaded config", wrong, right, "unauthorized"},
	}
	for _, ph := range phases {
		removes := func() int64 { return emsimCalls(t, ips[1])["removeconfig"] + emsimCalls(t, ips[2])["removeconfig"] }
		removed := removes()
		began := time.Now()
		ph.start()
		for _, lb := range both {
			eventually(t, 3*resync+3*time.Second, fmt.Sprintf("%s: %s shows m1 %s", ph.name, lb.base, ph.state), func() bool {
				return lb.member(t, "m1").State == ph.state
			})
		}
		// Two resync intervals and a teardown grace, counted by each
		// balancer's own resyncs.
		for _, lb := range both {
			lb.resyncedSince(t, began.Add(2*resync+grace), 2*resync+grace+5*time.Second)
		}
		if n := removes() - removed; n != 0 {
			t.Errorf("%s: %d removeConfig calls on the other members", ph.name, n)
		}
		for _, name := range live {
			for _, ip := range ips[1:] {
				if !holds(t, ip, name, "rtmp://"+ips[0]+"/live/"+name) {
					t.Errorf("%s: %s lost its replica of %s: %v", ph.name, ip, name, listConfig(t, ip)[name])
				}
			}
		}
		for _, lb := range both {
			st := lb.status(t)
			if m := st.Members[0]; m.State != ph.state || m.LastError == "" {
				t.Errorf("%s: %s shows m1 %s (last_error %q), want %s with an error", ph.name, lb.base, m.State, m.LastError, ph.state)
			}
			for _, name := range live {
				i := slices.IndexFunc(st.Streams, func(s controller.StreamStatus) bool { return s.Name == name })
				if i < 0 {
					t.Errorf("%s: %s no longer lists %s", ph.name, lb.base, name)
					continue
				}
				for _, m := range []string{"m2", "m3"} {
					r, ok := st.Streams[i].Replicas[m]
					switch {
					case !ok:
						t.Errorf("%s: %s lists no cell for %s on %s", ph.name, lb.base, name, m)
					case r.State == "unknown" && r.Reason == "":
						t.Errorf("%s: %s shows %s on %s unknown without a reason", ph.name, lb.base, name, m)
					case r.State != "unknown" && r.State != "present":
						t.Errorf("%s: %s shows %s on %s %s (%s), want present or unknown", ph.name, lb.base, name, m, r.State, r.Reason)
					}
				}
			}
			if strings.Contains(fmt.Sprint(st), "wrong-password-e2e") || strings.Contains(fmt.Sprint(st), proxyPassword) {
				t.Errorf("%s: a password appears in status", ph.name)
			}
		}
		ph.stop()
		for _, lb := range both {
			eventually(t, 3*resync+3*time.Second, ph.name+": m1 back up on "+lb.base, func() bool {
				return lb.member(t, "m1").State == "up"
			})
		}
	}
	// Each balancer's journal tells the story: m1 down twice and
	// unauthorized once, and no replica removed anywhere.
	for _, lb := range both {
		var page controller.JournalPage
		httpGetJSON(t, lb.base+"/api/v1/events?since=0", &page)
		count := map[string]int{}
		for _, e := range page.Events {
			if e.Member == "m1" || e.Kind == controller.EntryReplicaRemoved {
				count[e.Kind]++
			}
		}
		if count[controller.EntryReplicaRemoved] != 0 || count[controller.EntryMemberDown] < 2 || count[controller.EntryMemberUnauthorized] < 1 {
			t.Errorf("%s's journal counts %v, want m1 down at least twice, unauthorized at least once, no replica removed", lb.base, count)
		}
	}
	for _, lb := range both {
		if out := lb.p.out.String(); strings.Contains(out, "wrong-password-e2e") || strings.Contains(out, proxyPassword) {
			t.Errorf("a password appears in %s's logs", lb.base)
		}
		if code := lb.p.stop(syscall.SIGTERM); code != 0 {
			t.Errorf("streamlb exited %d on SIGTERM:\n%s", code, lb.p.out.String())
		}
	}
}
