package statusapi

import (
	"encoding/base64"
	"flag"
	"fmt"
	"os"
	"path/filepath"
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
		State:     "converged",
		Summary:   controller.Summary{Streams: 3, Replicas: map[string]int{controller.StatePresent: 4, controller.StateFailing: 1, controller.StatePending: 1}, Attention: 1},
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
	t.Run("asks the server for the streams the filter names", func(t *testing.T) {
		p.eval(t, `(() => {
			const f = document.getElementById("filter");
			f.value = "LOB"; f.dispatchEvent(new Event("input")); return true;
		})()`, new(bool))
		deadline := time.Now().Add(5 * time.Second)
		for fake.lastQuery().Stream != "*LOB*" {
			if time.Now().After(deadline) {
				t.Fatalf("last status query %+v, want stream *LOB*", fake.lastQuery())
			}
			time.Sleep(20 * time.Millisecond)
		}
		if q := fake.lastQuery(); !q.Attention || q.Limit != pageRows {
			t.Errorf("status query %+v, want attention first and a page of %d", q, pageRows)
		}
		p.eval(t, `(() => {
			const f = document.getElementById("filter");
			f.value = ""; f.dispatchEvent(new Event("input")); return true;
		})()`, new(bool))
	})
	t.Run("hides viewers without the load route", func(t *testing.T) {
		var hidden bool
		p.eval(t, `document.getElementById("viewers-kv").hidden && [...document.querySelectorAll("#matrix .viewers")].every(e => e.hidden)`, &hidden)
		if !hidden {
			t.Error("viewers shown while GET /api/v1/load answers 404")
		}
	})
	t.Run("follows the journal live", func(t *testing.T) {
		fake.record(controller.Entry{At: time.Now(), Kind: controller.EntryReplicaPulled, Member: "ems-1", Stream: "lobby", Origin: "ems-2"})
		p.waitFor(t, `[...document.querySelectorAll("#events .txt")].some(e => e.textContent === "lobby replicated to ems-1 from ems-2")`, 5*time.Second)
	})
	t.Run("shows a stream's history", func(t *testing.T) {
		fake.record(controller.Entry{At: time.Now(), Kind: controller.EntryReplicaFailing, Member: "ems-1", Stream: "yard"})
		p.waitFor(t, `[...document.querySelectorAll("#events .txt")].some(e => e.textContent === "replica of yard failing on ems-1")`, 5*time.Second)
		p.eval(t, `(() => { [...document.querySelectorAll("#matrix a.hist")].find(a => a.textContent === "yard").click(); return true; })()`, new(bool))
		p.waitFor(t, `document.querySelectorAll("#events li.ev").length > 0 &&
			[...document.querySelectorAll("#events li.ev .txt")].every(e => e.textContent.includes("yard"))`, 5*time.Second)
		var n int
		p.eval(t, `document.querySelectorAll("#events li.ev").length`, &n)
		if n != 1 {
			t.Errorf("history of yard: %d entries, want 1", n)
		}
	})
	t.Run("updates live when a stream is added", func(t *testing.T) {
		p.eval(t, `window.notReloaded = true`, new(bool))
		st := browserGroup()
		st.Converged, st.State = false, "converging"
		st.Streams = append(st.Streams, controller.StreamStatus{Name: "news", Origin: "ems-2", Replicas: map[string]controller.ReplicaStatus{
			"ems-1": {State: controller.StatePending, Attempts: 1, LastError: "HTTP 503"},
			"ems-3": {State: controller.StateUnknown, Reason: "ems-3 cannot be listed"},
		}})
		fake.set(st)
		p.waitFor(t, `[...document.querySelectorAll("#matrix tbody th")].some(th => th.textContent === "news")`, 5*time.Second)
		p.eval(t, matrixJS, &rows)
		if got, want := rows["news"], "cell st-pending | cell origin | cell st-unknown"; got != want {
			t.Errorf("matrix row news = %q, want %q", got, want)
		}
		var why string
		p.eval(t, `[...document.querySelectorAll("#matrix tbody tr")].find(tr => tr.querySelector("th").textContent === "news").querySelector(".st-unknown .why").textContent`, &why)
		if why != "ems-3 cannot be listed" {
			t.Errorf("unknown cell shows %q, want its reason", why)
		}
		var same bool
		p.eval(t, `window.notReloaded === true`, &same)
		if !same {
			t.Error("the page was reloaded; want a live update")
		}
		p.waitFor(t, `document.getElementById("state").textContent === "converging"`, 5*time.Second)
	})
	t.Run("says when the connection is lost", func(t *testing.T) {
		srv.CloseClientConnections()
		srv.Close()
		p.waitFor(t, `document.getElementById("live").classList.contains("lost")`, 10*time.Second)
	})
}

var screenshotURL = flag.String("screenshot-url", "", "the dashboard to photograph under -update-screenshot, e.g. that of streamlb demo: http://127.0.0.1:4000/")

// TestDashboardScreenshot rewrites docs/dashboard.png under
// -update-screenshot, from a running dashboard (-screenshot-url): that of
// `streamlb demo`.
func TestDashboardScreenshot(t *testing.T) {
	if !*updateScreenshot || *screenshotURL == "" {
		t.Skip("run with -update-screenshot -screenshot-url URL to rewrite docs/dashboard.png")
	}
	bin := findChromium(t)
	p := startBrowser(t, bin).page(t)
	p.call(t, "Emulation.setDeviceMetricsOverride", map[string]any{"width": 1360, "height": 900, "deviceScaleFactor": 1, "mobile": false}, nil)
	p.navigate(t, *screenshotURL)
	p.waitFor(t, `document.body.dataset.live === "1" && document.body.dataset.following === "1"`, 10*time.Second)
	// Let the journal's first burst and the load route's answer land.
	p.waitFor(t, `document.querySelectorAll("#events li.ev").length > 0`, 10*time.Second)
	var height float64
	p.eval(t, `document.documentElement.scrollHeight`, &height)
	p.call(t, "Emulation.setDeviceMetricsOverride", map[string]any{"width": 1360, "height": int(min(height, 2400)), "deviceScaleFactor": 1, "mobile": false}, nil)
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

// TestDashboardLargeGroupInBrowser opens the dashboard of 10,000 streams ×
// 16 members with a full journal: it asks for one page of 50 streams at a
// time, pages through them, keeps its journal list short, and renders a
// page quickly.
func TestDashboardLargeGroupInBrowser(t *testing.T) {
	bin := findChromium(t)
	fake := newFake(bigStatus(10000, 16))
	fake.paged = true
	var es []controller.Entry
	for i := range 10000 {
		es = append(es, controller.Entry{At: time.Now(), Kind: controller.EntryReplicaPulled, Stream: fmt.Sprintf("burst-%d", i), Member: "m02", Origin: "m01"})
	}
	fake.record(es...)
	srv, _ := newServer(t, fake, nil)
	p := startBrowser(t, bin).page(t)
	p.call(t, "Emulation.setDeviceMetricsOverride", map[string]any{"width": 1360, "height": 900, "deviceScaleFactor": 1, "mobile": false}, nil)
	p.navigate(t, srv.URL+"/")
	p.waitFor(t, `document.body.dataset.live === "1" && document.body.dataset.following === "1"`, 10*time.Second)

	var shape struct {
		Rows, Cells, Events int
		First, Note         string
	}
	const shapeJS = `({rows: document.querySelectorAll("#matrix tbody tr").length,
		cells: document.querySelectorAll("#matrix tbody td.cell").length,
		events: document.querySelectorAll("#events li.ev").length,
		first: document.querySelector("#matrix tbody th").textContent,
		note: document.getElementById("streams-note").textContent})`
	p.eval(t, shapeJS, &shape)
	if shape.Rows != pageRows || shape.Cells != pageRows*16 || shape.First != "burst-0" {
		t.Errorf("first page: %d rows, %d cells, first %q; want %d rows of 16 cells from burst-0", shape.Rows, shape.Cells, shape.First, pageRows)
	}
	if shape.Events > 200 {
		t.Errorf("%d journal entries in the page, want at most 200", shape.Events)
	}
	if q := fake.lastQuery(); q.Limit != pageRows {
		t.Errorf("the page asked for %+v, want a page of %d", q, pageRows)
	}

	// The next page, rendered from the controller's answer within a
	// second of the click.
	var took float64
	p.eval(t, `new Promise(resolve => {
		const t0 = performance.now();
		const seen = () => document.querySelector("#matrix tbody th").textContent !== "burst-0";
		document.getElementById("next").click();
		const check = () => seen() ? resolve(performance.now() - t0) : requestAnimationFrame(check);
		check();
	})`, &took)
	p.eval(t, shapeJS, &shape)
	if shape.Rows != pageRows || shape.First != "burst-50" {
		t.Errorf("second page: %d rows from %q, want %d from burst-50", shape.Rows, shape.First, pageRows)
	}
	if took > 1000 {
		t.Errorf("the next page took %.0f ms to show, want under a second", took)
	}
	if q := fake.lastQuery(); q.Cursor != "burst-49" {
		t.Errorf("next page query %+v, want the cursor burst-49", q)
	}
}
