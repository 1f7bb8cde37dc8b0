package statusapi

import (
	"encoding/base64"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"streamlb/internal/controller"
)

var updateScreenshot = flag.Bool("update-screenshot", false, "rewrite docs/dashboard.png from headless Chromium")

// hostile is a stream name that would run script if the page parsed it as
// HTML.
const hostile = `<img src=x onerror="document.body.dataset.pwned=1">`

// browserGroup is a small group: three members up (one paused), one
// stream replicated everywhere, one in trouble, and a stream with a
// hostile name.
func browserGroup() controller.Status {
	now := time.Now()
	return controller.Status{
		Converged: true,
		Members: []controller.MemberStatus{
			member("ems-1", "127.0.0.11", "proxy", controller.MemberUp),
			member("ems-2", "127.0.0.12", "direct", controller.MemberUp),
			paused(member("ems-3", "127.0.0.13", "direct", controller.MemberUp)),
		},
		Streams: []controller.StreamStatus{
			{Name: hostile, Origin: "ems-3", Replicas: map[string]controller.ReplicaStatus{
				"ems-1": present(now), "ems-2": present(now),
			}},
			{Name: "lobby", Origin: "ems-1", Replicas: map[string]controller.ReplicaStatus{
				"ems-2": present(now), "ems-3": present(now),
			}},
			{Name: "yard", Origin: "ems-2", Replicas: map[string]controller.ReplicaStatus{
				"ems-1": {State: controller.StateFailing, Since: now},
				"ems-3": {State: controller.StatePending, Since: now, Attempts: 2, LastError: "HTTP 503"},
			}},
		},
		Conflicts:  []controller.Conflict{},
		LastResync: &controller.ResyncStatus{At: now, DurationMS: 12, Calls: 6},
	}
}

func paused(m controller.MemberStatus) controller.MemberStatus {
	m.Paused = true
	return m
}

// matrixJS returns the matrix: by stream, the classes of its cells.
const matrixJS = `Object.fromEntries([...document.querySelectorAll("#matrix tbody tr")].map(tr =>
	[tr.querySelector("th").textContent, [...tr.querySelectorAll("td.cell")].map(td => td.className).join(" | ")]))`

func TestDashboardInBrowser(t *testing.T) {
	bin := findChromium(t)
	fake := newFake(browserGroup())
	srv, _ := newServer(t, fake, nil)
	p := startBrowser(t, bin).page(t)
	p.call(t, "Emulation.setDeviceMetricsOverride", map[string]any{"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": false}, nil)

	// The first view, rendered on the server, needs no script.
	p.call(t, "Emulation.setScriptExecutionDisabled", map[string]any{"value": true}, nil)
	p.navigate(t, srv.URL+"/")
	var serverMatrix, jsMatrix string
	p.eval(t, `document.getElementById("matrix").innerText`, &serverMatrix)
	var ran bool
	p.eval(t, `document.body.dataset.live === "1"`, &ran)
	if ran {
		t.Fatal("the script ran with scripts disabled")
	}
	var rows map[string]string
	p.eval(t, matrixJS, &rows)
	if len(rows) != 3 {
		t.Fatalf("server-rendered matrix rows = %q, want 3", rows)
	}

	// With the script, the page goes live and shows the same matrix.
	p.call(t, "Emulation.setScriptExecutionDisabled", map[string]any{"value": false}, nil)
	p.navigate(t, srv.URL+"/")
	p.waitFor(t, `document.body.dataset.live === "1"`, 5*time.Second)
	p.eval(t, `document.getElementById("matrix").innerText`, &jsMatrix)
	if diff := cmp.Diff(serverMatrix, jsMatrix); diff != "" {
		t.Errorf("the script renders the matrix differently from the server (-server +script):\n%s", diff)
	}

	t.Run("shows the members", func(t *testing.T) {
		var names []string
		p.eval(t, `[...document.querySelectorAll("#members .mname")].map(e => e.textContent)`, &names)
		if diff := cmp.Diff([]string{"ems-1", "ems-2", "ems-3"}, names); diff != "" {
			t.Errorf("member cards (-want +got):\n%s", diff)
		}
		var heads []string
		p.eval(t, `[...document.querySelectorAll("#matrix thead th.col")].map(e => e.textContent)`, &heads)
		if diff := cmp.Diff([]string{"ems-1", "ems-2", "ems-3 paused"}, heads); diff != "" {
			t.Errorf("matrix columns (-want +got):\n%s", diff)
		}
	})
	t.Run("shows a replicated stream with its origin", func(t *testing.T) {
		p.eval(t, matrixJS, &rows)
		if got, want := rows["lobby"], "cell origin | cell st-present | cell st-present"; got != want {
			t.Errorf("matrix row lobby = %q, want %q", got, want)
		}
	})
	t.Run("shows a hostile name as text", func(t *testing.T) {
		var got struct {
			Name  string `json:"name"`
			Imgs  int    `json:"imgs"`
			Pwned bool   `json:"pwned"`
		}
		p.eval(t, `({name: document.querySelector("#matrix tbody th").textContent,
			imgs: document.querySelectorAll("main img").length,
			pwned: document.body.dataset.pwned === "1"})`, &got)
		if got.Name != hostile || got.Imgs != 0 || got.Pwned {
			t.Errorf("hostile stream name: shown as %q, %d img elements, script ran: %v; want it as text only", got.Name, got.Imgs, got.Pwned)
		}
	})
	t.Run("filters streams", func(t *testing.T) {
		var shown []string
		filter := func(text string, problems bool) {
			t.Helper()
			p.eval(t, `(() => {
				const f = document.getElementById("filter"), c = document.getElementById("problems");
				f.value = `+jsString(text)+`; c.checked = `+map[bool]string{true: "true", false: "false"}[problems]+`;
				f.dispatchEvent(new Event("input"));
				return [...document.querySelectorAll("#matrix tbody th")].map(th => th.textContent);
			})()`, &shown)
		}
		filter("LOB", false)
		if diff := cmp.Diff([]string{"lobby"}, shown); diff != "" {
			t.Errorf("rows matching LOB (-want +got):\n%s", diff)
		}
		filter("", true)
		if diff := cmp.Diff([]string{"yard"}, shown); diff != "" {
			t.Errorf("rows needing attention (-want +got):\n%s", diff)
		}
		filter("", false)
		if len(shown) != 3 {
			t.Errorf("rows without a filter = %q, want all 3", shown)
		}
	})
	t.Run("updates live when a stream is added", func(t *testing.T) {
		p.eval(t, `window.notReloaded = true`, new(bool))
		st := browserGroup()
		st.Converged = false
		st.Streams = append(st.Streams, controller.StreamStatus{Name: "news", Origin: "ems-2", Replicas: map[string]controller.ReplicaStatus{
			"ems-1": {State: controller.StatePending, Attempts: 1, LastError: "HTTP 503"},
			"ems-3": present(time.Now()),
		}})
		fake.set(st)
		p.waitFor(t, `[...document.querySelectorAll("#matrix tbody th")].some(th => th.textContent === "news")`, 5*time.Second)
		p.eval(t, matrixJS, &rows)
		if got, want := rows["news"], "cell st-pending | cell origin | cell st-present"; got != want {
			t.Errorf("matrix row news = %q, want %q", got, want)
		}
		var same bool
		p.eval(t, `window.notReloaded === true`, &same)
		if !same {
			t.Error("the page was reloaded; want a live update")
		}
		p.waitFor(t, `document.getElementById("converged").textContent === "converging"`, 5*time.Second)
		p.waitFor(t, `[...document.querySelectorAll("#events .txt")].some(e => e.textContent.startsWith("source news appeared on ems-2"))`, 5*time.Second)
	})
	t.Run("says when the connection is lost", func(t *testing.T) {
		srv.CloseClientConnections()
		srv.Close()
		p.waitFor(t, `document.getElementById("live").classList.contains("lost")`, 10*time.Second)
	})
}

// clock is the dashboard's clock in the screenshot test: a set time, or
// the real one.
type clock struct {
	mu sync.Mutex
	at time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.at.IsZero() {
		return time.Now()
	}
	return c.at
}

func (c *clock) set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.at = t
}

// TestDashboardScreenshot rewrites docs/dashboard.png under
// -update-screenshot: a group of three members, one of them down, with
// several streams, a conflict and the events that led there.
func TestDashboardScreenshot(t *testing.T) {
	if !*updateScreenshot {
		t.Skip("run with -update-screenshot to rewrite docs/dashboard.png")
	}
	bin := findChromium(t)
	now := time.Now()
	story := screenshotStory(now)
	fake := newFake(story[0].st)
	clk := &clock{}
	srv, _ := newServer(t, fake, clk.now)
	for _, s := range story {
		clk.set(now.Add(s.at))
		fake.set(s.st)
		if code, _, body := get(t, srv.URL+"/api/v1/events"); code != 200 {
			t.Fatalf("GET /api/v1/events = %d %s", code, body)
		}
	}
	clk.set(time.Time{})

	p := startBrowser(t, bin).page(t)
	p.call(t, "Emulation.setDeviceMetricsOverride", map[string]any{"width": 1360, "height": 900, "deviceScaleFactor": 1, "mobile": false}, nil)
	p.navigate(t, srv.URL+"/")
	p.waitFor(t, `document.body.dataset.live === "1"`, 5*time.Second)
	var height float64
	p.eval(t, `document.documentElement.scrollHeight`, &height)
	p.call(t, "Emulation.setDeviceMetricsOverride", map[string]any{"width": 1360, "height": int(height), "deviceScaleFactor": 1, "mobile": false}, nil)
	p.waitFor(t, `document.documentElement.scrollHeight <= innerHeight`, 5*time.Second)
	var shot struct {
		Data string `json:"data"`
	}
	p.call(t, "Page.captureScreenshot", map[string]any{"format": "png"}, &shot)
	png, err := base64.StdEncoding.DecodeString(shot.Data)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join("..", "..", "docs", "dashboard.png")
	if err := os.WriteFile(out, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %s (%d bytes)", out, len(png))
}

type storyStep struct {
	at time.Duration // before now
	st controller.Status
}

// screenshotStory is a quarter of an hour of a group's life, ending with
// ems-3 down, a conflict, a failing and a pending replica.
func screenshotStory(now time.Time) []storyStep {
	errDown := `ems member "ems-3": listConfig: dial tcp 10.0.0.13:7777: connect: connection refused`
	err503 := `ems member "ems-2": pullStream: HTTP 503 Service Unavailable`
	m1 := member("ems-1", "10.0.0.11", "proxy", controller.MemberUp)
	m1.LatencyMS = 2.4
	m2 := member("ems-2", "10.0.0.12", "direct", controller.MemberUp)
	m2.LatencyMS = 1.1
	m3 := member("ems-3", "10.0.0.13", "direct", controller.MemberUp)
	m3.LatencyMS = 1.3
	at := func(d time.Duration) time.Time { return now.Add(d) }
	rep := func(state string, since time.Duration) controller.ReplicaStatus {
		return controller.ReplicaStatus{State: state, Since: at(since)}
	}
	P, M := controller.StatePresent, controller.StateMissing
	stream := func(name, origin string, reps map[string]controller.ReplicaStatus) controller.StreamStatus {
		return controller.StreamStatus{Name: name, Origin: origin, Replicas: reps}
	}
	long := -3 * time.Hour

	st := controller.Status{
		Converged: true,
		Members:   []controller.MemberStatus{m1, m2, m3},
		Streams: []controller.StreamStatus{
			stream("cam-entrance", "ems-2", map[string]controller.ReplicaStatus{"ems-1": rep(P, long), "ems-3": rep(P, long)}),
			stream("lobby", "ems-1", map[string]controller.ReplicaStatus{"ems-2": rep(P, long), "ems-3": rep(P, long)}),
			stream("parking", "ems-3", map[string]controller.ReplicaStatus{"ems-1": rep(P, long), "ems-2": rep(P, long)}),
			stream("studio", "ems-2", map[string]controller.ReplicaStatus{"ems-1": rep(P, long), "ems-3": rep(P, long)}),
		},
		Conflicts:  []controller.Conflict{},
		QueueDepth: 0,
		LastResync: &controller.ResyncStatus{At: at(-15*time.Minute - 3*time.Second), DurationMS: 31, Calls: 6},
	}
	var steps []storyStep
	step := func(d time.Duration, fn func(st *controller.Status)) {
		if fn != nil {
			st = edit(st, fn)
		}
		steps = append(steps, storyStep{at: d, st: cloneStatus(st)})
	}
	add := func(st *controller.Status, s controller.StreamStatus) {
		st.Streams = append(st.Streams, s)
		sortStreams(st)
	}
	step(-15*time.Minute, nil)
	step(-11*time.Minute, func(st *controller.Status) {
		st.Converged = false
		add(st, stream("news", "ems-1", map[string]controller.ReplicaStatus{"ems-2": rep(M, -11*time.Minute), "ems-3": rep(M, -11*time.Minute)}))
	})
	step(-11*time.Minute+time.Second, func(st *controller.Status) {
		st.Converged = true
		setReplica(st, "news", "ems-2", rep(P, -11*time.Minute+time.Second))
		setReplica(st, "news", "ems-3", rep(P, -11*time.Minute+time.Second))
	})
	step(-8*time.Minute, func(st *controller.Status) {
		add(st, stream("backup", "ems-2", map[string]controller.ReplicaStatus{
			"ems-1": rep(controller.StateConflict, -8*time.Minute), "ems-3": rep(M, -8*time.Minute),
		}))
		st.Conflicts = append(st.Conflicts, controller.Conflict{Stream: "backup", Member: "ems-1", Origin: "ems-2",
			Reason: `a pull config named "backup" that streamlb did not create (rtmp://10.0.0.99/live/backup)`})
	})
	step(-8*time.Minute+time.Second, func(st *controller.Status) {
		setReplica(st, "backup", "ems-3", rep(P, -8*time.Minute+time.Second))
	})
	step(-6*time.Minute, func(st *controller.Status) {
		add(st, stream("yard", "ems-2", map[string]controller.ReplicaStatus{"ems-1": rep(M, -6*time.Minute), "ems-3": rep(M, -6*time.Minute)}))
	})
	step(-6*time.Minute+time.Second, func(st *controller.Status) {
		setReplica(st, "yard", "ems-1", rep(P, -6*time.Minute+time.Second))
		setReplica(st, "yard", "ems-3", rep(P, -6*time.Minute+time.Second))
	})
	step(-4*time.Minute, func(st *controller.Status) {
		st.Members[2].State, st.Members[2].LastError, st.Members[2].LatencyMS = controller.MemberDown, errDown, 0
	})
	step(-3*time.Minute-50*time.Second, func(st *controller.Status) {
		st.Streams = append(st.Streams[:streamIndex(st, "parking")], st.Streams[streamIndex(st, "parking")+1:]...)
	})
	step(-2*time.Minute, func(st *controller.Status) {
		st.Converged = false
		add(st, stream("stage", "ems-1", map[string]controller.ReplicaStatus{"ems-2": rep(M, -2*time.Minute), "ems-3": rep(M, -2*time.Minute)}))
		st.QueueDepth = 2
	})
	step(-2*time.Minute+time.Second, func(st *controller.Status) {
		setReplica(st, "stage", "ems-2", controller.ReplicaStatus{State: controller.StatePending, Since: at(-2*time.Minute + time.Second), Attempts: 1, LastError: err503})
	})
	step(-90*time.Second, func(st *controller.Status) {
		setReplica(st, "yard", "ems-1", rep(controller.StateFailing, -90*time.Second))
	})
	step(-40*time.Second, func(st *controller.Status) {
		r := st.Streams[streamIndex(st, "stage")].Replicas["ems-2"]
		r.Attempts = 3
		setReplica(st, "stage", "ems-2", r)
		st.QueueDepth = 3
		st.LastResync = &controller.ResyncStatus{At: at(-9 * time.Second), DurationMS: 42, Calls: 6}
	})
	return steps
}

func sortStreams(st *controller.Status) {
	slices.SortFunc(st.Streams, func(a, b controller.StreamStatus) int { return strings.Compare(a.Name, b.Name) })
}
