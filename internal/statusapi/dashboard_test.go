package statusapi

import (
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"streamlb/internal/controller"
)

func fixedClock() time.Time { return t0 }

// fixedJournal is the journal of the golden page.
func fixedJournal(f *fakeController) *fakeController {
	f.record(
		controller.Entry{At: t0.Add(-time.Hour), Kind: controller.EntrySourceAppeared, Member: "ems-1", Stream: "lobby"},
		controller.Entry{At: t0.Add(-time.Hour), Kind: controller.EntryReplicaPulled, Member: "ems-2", Stream: "lobby", Origin: "ems-1"},
		controller.Entry{At: t0.Add(-40 * time.Second), Kind: controller.EntryReplicaFailing, Member: "ems-1", Stream: "yard", Detail: "pull ended"},
		controller.Entry{At: t0.Add(-30 * time.Second), Kind: controller.EntryMemberDown, Member: "ems-3", Detail: "connection refused"},
	)
	return f
}

func TestDashboardGolden(t *testing.T) {
	srv, _ := newServer(t, fixedJournal(newFake(fixedStatus())), fixedClock)
	code, _, body := get(t, srv.URL+"/")
	if code != http.StatusOK {
		t.Fatalf("GET / = %d, want 200", code)
	}
	golden(t, "dashboard.golden.html", body)
}

func TestDashboardShowsTheGroup(t *testing.T) {
	srv, _ := newServer(t, fixedJournal(newFake(fixedStatus())), fixedClock)
	_, _, b := get(t, srv.URL+"/")
	body := string(b)
	tests := []struct {
		name string
		want string
	}{
		{"member name", `<span class="mname">ems-1</span>`},
		{"member state", `<article class="member m-down">`},
		{"member API kind", `<dt>API</dt><dd>proxy</dd>`},
		{"member latency", `<dd>1.5 ms</dd>`},
		{"member last error", `dial tcp 10.0.0.13:7777: connect: connection refused</p>`},
		{"stream row linking to its history", `<th class="sname" scope="row"><a class="hist" href="api/v1/events?stream=lobby" title="history of this stream">lobby</a></th>`},
		{"unknown replica with its reason", `<td class="cell st-unknown off" title="unknown on ems-3 · ems-3 cannot be listed · ems-3 is down">unknown<small class="why">ems-3 cannot be listed</small></td>`},
		{"origin cell", `<td class="cell origin" title="lobby is a source on ems-1">origin</td>`},
		{"present replica", `<td class="cell st-present" title="present on ems-2 · since 08:30:00 (1h)">present</td>`},
		{"pending replica with its attempts and error", `<td class="cell st-pending" title="pending on ems-2 · since 09:29:48 (12s) · 2 attempts · last error: ems member &#34;ems-2&#34;: pullStream: HTTP 503 Service Unavailable">pending (2)<span class="warnmark"`},
		{"replica on a down member", `<td class="cell st-missing off"`},
		{"replica count", `<td class="count">0/2</td>`},
		{"conflict", `<li><b>backup</b> on <b>ems-1</b> <span class="muted">(origin ems-2)</span><br><span class="reason">a pull config named &#34;backup&#34; that streamlb did not create`},
		{"queue depth", `<b id="queue-depth">2</b>`},
		{"last resync", `<b id="last-resync">09:29:52 (8s ago) · 35 ms · 6 calls</b>`},
		{"group state", `<span id="state" class="pill bad" data-state="needs_attention">needs attention</span>`},
		{"members up", `<b id="members-up">2/3</b>`},
		{"replicas present", `<b id="replicas">3/8</b>`},
		{"streams needing attention", `<b id="attention" class="alert">2</b>`},
		{"which streams are shown", `4 streams shown of 4, those needing attention first.`},
		{"an entry, newest first", `<li class="ev ev-error" data-seq="4"><time datetime="2025-03-14T09:29:30Z">09:29:30</time><span class="lvl">member down</span><span class="txt">ems-3 is down: connection refused</span></li>`},
		{"the journal sequence for the script", `<body data-seq="4"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !strings.Contains(body, tt.want) {
				t.Errorf("the page lacks %s", tt.want)
			}
		})
	}
}

func TestDashboardHeaders(t *testing.T) {
	srv, _ := newServer(t, newFake(fixedStatus()), nil)
	tests := []struct {
		path, ctype string
	}{
		{"/", "text/html; charset=utf-8"},
		{"/assets/dashboard.css", "text/css; charset=utf-8"},
		{"/assets/dashboard.js", "text/javascript; charset=utf-8"},
		{"/assets/favicon.svg", "image/svg+xml"},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			code, h, body := get(t, srv.URL+tt.path)
			if code != http.StatusOK || len(body) == 0 {
				t.Fatalf("GET %s = %d with %d bytes, want 200 and a body", tt.path, code, len(body))
			}
			for k, want := range map[string]string{
				"Content-Type":            tt.ctype,
				"Content-Security-Policy": "default-src 'self'",
				"X-Content-Type-Options":  "nosniff",
			} {
				if got := h.Get(k); got != want {
					t.Errorf("GET %s: %s = %q, want %q", tt.path, k, got, want)
				}
			}
		})
	}
	t.Run("unknown asset", func(t *testing.T) {
		if code, _, _ := get(t, srv.URL+"/assets/nope.js"); code != http.StatusNotFound {
			t.Errorf("GET /assets/nope.js = %d, want 404", code)
		}
	})
	t.Run("unknown page", func(t *testing.T) {
		if code, _, _ := get(t, srv.URL+"/nope"); code != http.StatusNotFound {
			t.Errorf("GET /nope = %d, want 404", code)
		}
	})
	t.Run("revalidated asset", func(t *testing.T) {
		_, h, _ := get(t, srv.URL+"/assets/dashboard.js")
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL+"/assets/dashboard.js", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("If-None-Match", h.Get("ETag"))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotModified {
			t.Errorf("GET with If-None-Match %s = %d, want 304", h.Get("ETag"), resp.StatusCode)
		}
	})
}

// TestDashboardWithinCSP checks that the page needs nothing the policy
// default-src 'self' forbids: no inline script, style or handler, and
// nothing from another origin.
func TestDashboardWithinCSP(t *testing.T) {
	srv, _ := newServer(t, newFake(fixedStatus()), nil)
	_, _, b := get(t, srv.URL+"/")
	tests := []struct {
		name string
		bad  *regexp.Regexp
	}{
		{"inline script", regexp.MustCompile(`<script(?:\s[^>]*)?>\s*[^<\s]`)},
		{"script without src", regexp.MustCompile(`<script(?:\s(?:[^s>]|s[^r])*)?>`)},
		{"style element", regexp.MustCompile(`<style`)},
		{"style attribute", regexp.MustCompile(`\sstyle=`)},
		{"event handler attribute", regexp.MustCompile(`\son[a-z]+=`)},
		{"another origin", regexp.MustCompile(`(?:src|href)="(?:https?:)?//`)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if m := tt.bad.Find(b); m != nil {
				t.Errorf("the page has %s: %q", tt.name, m)
			}
		})
	}
}

func TestDashboardEscapes(t *testing.T) {
	st := fixedStatus()
	st.Streams[1].Name = `<script>alert("x")</script>`
	st.Members[2].LastError = `"><img src=x onerror=alert(1)>`
	st.Conflicts[0].Reason = `<b>bold</b>`
	srv, _ := newServer(t, newFake(st), nil)
	_, _, b := get(t, srv.URL+"/")
	body := string(b)
	for _, raw := range []string{`<script>alert`, `<img src=x`, `<b>bold</b>`} {
		if strings.Contains(body, raw) {
			t.Errorf("the page holds %s unescaped", raw)
		}
	}
	for _, esc := range []string{`&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;`, `&#34;&gt;&lt;img src=x onerror=alert(1)&gt;`, `&lt;b&gt;bold&lt;/b&gt;`} {
		if !strings.Contains(body, esc) {
			t.Errorf("the page lacks the escaped %s", esc)
		}
	}
}

// TestDashboardAsksForOnePage checks that the page asks the controller for
// the first page of streams, those needing attention first, never the
// whole group.
func TestDashboardAsksForOnePage(t *testing.T) {
	fake := newFake(fixedStatus())
	srv, _ := newServer(t, fake, nil)
	if code, _, _ := get(t, srv.URL+"/"); code != http.StatusOK {
		t.Fatalf("GET / = %d", code)
	}
	if got, want := fake.lastQuery(), (controller.StatusQuery{Attention: true, Limit: pageRows}); got != want {
		t.Errorf("the page asked for %+v, want %+v", got, want)
	}
}
