package e2e

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"streamlb/internal/app"
	"streamlb/internal/config"
	"streamlb/internal/controller"
	"streamlb/internal/ems"
	"streamlb/internal/emsim"
	"streamlb/internal/testkit"
)

// Binaries built once for the tests that run streamlb and emsim as
// programs (SIGKILL, restart from -state, the new-user scenario).
var (
	binDir      string
	streamlbBin string
	emsimBin    string
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "streamlb-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	streamlbBin = filepath.Join(dir, "streamlb")
	emsimBin = filepath.Join(dir, "emsim")
	for bin, pkg := range map[string]string{streamlbBin: "streamlb/cmd/streamlb", emsimBin: "streamlb/cmd/emsim"} {
		out, err := exec.Command("go", "build", "-o", bin, pkg).CombinedOutput()
		if err != nil {
			fmt.Fprintf(os.Stderr, "build %s: %v\n%s", pkg, err, out)
			os.RemoveAll(dir)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

const (
	proxyUser     = "operator"
	proxyPassword = "s3cret-Pa55word-e2e"
	ewsPort       = 8888
)

// memberConf says how the balancer reaches one emulated member.
type memberConf struct {
	proxy     bool
	password  string // proxy password in the balancer's config (default: the right one)
	encoded   bool   // EMS 1.7 API proxy form
	replicate *bool
	name      string
}

// groupOpts configure newGroup.
type groupOpts struct {
	members     []memberConf
	group       string
	resync      time.Duration
	grace       time.Duration
	keepAlive   *bool
	noEvents    bool // the members post their events nowhere
	extraParams string
	logs        *testkit.Buffer
}

// group is a running balancer and its in-process emulated members.
type group struct {
	t       *testing.T
	cl      *emsim.Cluster
	app     *app.App
	cfg     *config.Config
	sinkURL string
	ips     []string
	clients []*ems.Client
}

// configText renders the StreamLoadBalancer block for members at ips, in
// the original plugin's format with comments.
func configText(o groupOpts, ips []string, listen string) string {
	var b strings.Builder
	b.WriteString("/* e2e group */\n{\"StreamLoadBalancer\": {\n \"plugin_switch\": \"enabled\",\n \"parameters\": {\n")
	fmt.Fprintf(&b, "  \"listen\": %q,\n", listen)
	if o.group != "" {
		fmt.Fprintf(&b, "  \"group\": %q,\n", o.group)
	}
	fmt.Fprintf(&b, "  \"resync_interval\": %q,\n  \"teardown_grace\": %q,\n", o.resync.String(), o.grace.String())
	if o.keepAlive != nil {
		fmt.Fprintf(&b, "  \"keep_alive\": %v,\n", *o.keepAlive)
	}
	b.WriteString(o.extraParams)
	b.WriteString("  \"destination_ems_apiproxies\": [\n")
	for i, m := range o.members {
		name := m.name
		if name == "" {
			name = fmt.Sprintf("m%d", i+1)
		}
		extra := ""
		if m.replicate != nil {
			extra = fmt.Sprintf(", \"replicate\": %v", *m.replicate)
		}
		if m.proxy {
			pw := m.password
			if pw == "" {
				pw = proxyPassword
			}
			style := ""
			if m.encoded {
				style = `, "proxyStyle": "encoded"`
			}
			fmt.Fprintf(&b, "   // through the API proxy\n   {\"enable\": true, \"authentication\": \"basic\", \"pseudoDomain\": \"apiproxy\", \"address\": %q, \"ewsPort\": %d, \"userName\": %q, \"password\": %q, \"name\": %q%s%s},\n",
				ips[i], ewsPort, proxyUser, pw, name, style, extra)
		} else {
			fmt.Fprintf(&b, "   {\"enable\": false, \"address\": %q, \"name\": %q%s},\n", ips[i], name, extra)
		}
	}
	b.WriteString("  ],\n },\n}}\n")
	return b.String()
}

func defaults(o *groupOpts) {
	if len(o.members) == 0 {
		o.members = []memberConf{{proxy: true}, {}, {}}
	}
	if o.resync == 0 {
		o.resync = 5 * time.Second
	}
	if o.grace == 0 {
		o.grace = 2 * time.Second
	}
}

// newGroup starts len(o.members) emulated members on random loopback
// addresses and a balancer for them; both stop at the end of the test.
func newGroup(t *testing.T, o groupOpts) *group {
	t.Helper()
	defaults(&o)
	ips := emsim.RandomLoopbackIPs(len(o.members))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sinkURL := "http://" + ln.Addr().String() + "/evowebservices/"
	events := sinkURL
	if o.noEvents {
		events = "http://127.0.0.1:1/evowebservices/"
	}
	cl, err := emsim.Start(emsim.Config{
		IP: ips[0], Members: len(ips), EWSPort: ewsPort, User: proxyUser, Password: proxyPassword, EventsURL: events,
	})
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	g := &group{t: t, cl: cl, sinkURL: sinkURL, ips: ips}
	g.startApp(o, ln)
	for _, m := range cl.Members() {
		g.clients = append(g.clients, ems.New(ems.Endpoint{Member: m.IP(), BaseURL: m.APIURL()}, nil))
	}
	return g
}

// startApp starts the balancer on ln with the config for o.
func (g *group) startApp(o groupOpts, ln net.Listener) {
	t := g.t
	t.Helper()
	text := configText(o, g.ips, ln.Addr().String())
	cfg, err := config.Parse("e2e.json", []byte(text))
	if err != nil {
		ln.Close()
		t.Fatalf("config: %v\n%s", err, text)
	}
	var logger *slog.Logger
	if o.logs != nil {
		logger = slog.New(slog.NewTextHandler(o.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	a, err := app.New(app.Options{Config: cfg, Logger: logger, SinkListener: ln,
		RetryBase: 100 * time.Millisecond, RetryMax: 2 * time.Second})
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	g.app, g.cfg = a, cfg
	t.Cleanup(func() { g.stopApp() })
}

func (g *group) stopApp() {
	if g.app == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := g.app.Stop(ctx); err != nil {
		g.t.Errorf("stop: %v", err)
	}
	g.app = nil
}

func (g *group) member(i int) *emsim.Member { return g.cl.Members()[i] }

// external makes member i pull an external camera as name.
func (g *group) external(i int, name string) {
	g.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := g.clients[i].PullStream(ctx, ems.PullRequest{URI: "rtsp://camera.example.invalid/" + name, LocalStreamName: name})
	if err != nil {
		g.t.Fatalf("external pull of %s on member %d: %v", name, i, err)
	}
}

func (g *group) uri(origin int, name string) string {
	return "rtmp://" + g.ips[origin] + "/live/" + name
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", within, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// pullsFrom returns the URIs member m's configs named name pull.
func pullsOf(m *emsim.Member, name string) []string {
	var out []string
	for _, c := range m.PullConfigs() {
		if c.LocalStreamName == name {
			out = append(out, c.URI)
		}
	}
	return out
}

// hasReplica reports whether m holds exactly one config named name,
// pulling uri, and streams it.
func hasReplica(m *emsim.Member, name, uri string) bool {
	p := pullsOf(m, name)
	return len(p) == 1 && p[0] == uri && slices.Contains(m.InboundNames(), name)
}

// replicated waits until every member other than origin holds name.
func (g *group) replicated(origin int, name string, within time.Duration) {
	g.t.Helper()
	for i, m := range g.cl.Members() {
		if i == origin {
			continue
		}
		eventually(g.t, within, fmt.Sprintf("member %d pulls %s from %s", i, name, g.uri(origin, name)), func() bool {
			return hasReplica(m, name, g.uri(origin, name))
		})
	}
}

// converged waits until the balancer's status says converged.
func (g *group) converged(within time.Duration) controller.Status {
	g.t.Helper()
	var st controller.Status
	eventually(g.t, within, "status converged", func() bool {
		st = g.app.Controller().Snapshot()
		return st.Converged
	})
	return st
}

// noPullsFromNonOrigins checks that no member pulls from a member that is
// not the stream's origin (no replica of a replica).
func (g *group) checkNoReplicaOfReplica(origins map[string]int) {
	g.t.Helper()
	for i, m := range g.cl.Members() {
		for _, c := range m.PullConfigs() {
			if o, ok := origins[c.LocalStreamName]; ok && i != o && c.URI != g.uri(o, c.LocalStreamName) {
				g.t.Errorf("member %d pulls %s from %s, want only from its origin %s", i, c.LocalStreamName, c.URI, g.ips[o])
			}
		}
	}
}

func ptr[T any](v T) *T { return &v }

type controllerConflict = controller.Conflict

func listenLoopback(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// postEvent posts an event body to the sink and checks the answer's status.
func postEvent(t *testing.T, url, body string, want int) {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != want {
		t.Fatalf("POST %s: %s, want %d", url, resp.Status, want)
	}
}

// counterSum adds up the values of a counter family in reg whose labels
// include every pair in match.
func counterSum(t *testing.T, reg prometheus.Gatherer, family string, match map[string]string) float64 {
	t.Helper()
	sum, err := testkit.CounterSum(reg, family, match)
	if err != nil {
		t.Fatal(err)
	}
	return sum
}
