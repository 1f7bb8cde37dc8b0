package statusapi

import (
	"encoding/json"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"streamlb/internal/controller"
)

func fixedClock() time.Time { return t0 }

func TestDashboardGolden(t *testing.T) {
	srv, _ := newServer(t, newFake(fixedStatus()), fixedClock)
	code, _, body := get(t, srv.URL+"/")
	if code != http.StatusOK {
		t.Fatalf("GET / = %d, want 200", code)
	}
	golden(t, "dashboard.golden.html", body)
}

func TestDashboardShowsTheGroup(t *testing.T) {
	srv, _ := newServer(t, newFake(fixedStatus()), fixedClock)
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
		{"stream row", `<th class="sname" scope="row">lobby</th>`},
		{"origin cell", `<td class="cell origin" title="lobby is a source on ems-1">origin</td>`},
		{"present replica", `<td class="cell st-present" title="present on ems-2 · since 08:30:00 (1h)">present</td>`},
		{"pending replica with its attempts and error", `<td class="cell st-pending" title="pending on ems-2 · since 09:29:48 (12s) · 2 attempts · last error: ems member &#34;ems-2&#34;: pullStream: HTTP 503 Service Unavailable">pending (2)<span class="warnmark"`},
		{"replica on a down member", `<td class="cell st-missing off"`},
		{"replica count", `<td class="count">0/2</td>`},
		{"conflict", `<li><b>backup</b> on <b>ems-1</b> <span class="muted">(origin ems-2)</span><br><span class="reason">a pull config named &#34;backup&#34; that streamlb did not create`},
		{"queue depth", `<b id="queue-depth">2</b>`},
		{"last resync", `<b id="last-resync">09:29:52 (8s ago) · 35 ms · 6 calls</b>`},
		{"converged flag", `<span id="converged" class="pill warn">converging</span>`},
		{"members up", `<b id="members-up">2/3</b>`},
		{"replicas present", `<b id="replicas">3/7</b>`},
		{"an event", `<span class="txt">watching 3 members (2 up) and 4 sources</span>`},
		{"the events sequence for the script", `<body data-seq="4">`},
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

func TestDashboardRowCap(t *testing.T) {
	st := fixedStatus()
	st.Streams = nil
	for i := range maxRows + 7 {
		st.Streams = append(st.Streams, controller.StreamStatus{Name: "s" + strings.Repeat("x", i%3) + string(rune('a'+i%26)), Origin: "ems-1",
			Replicas: map[string]controller.ReplicaStatus{"ems-2": present(t0)}})
	}
	srv, _ := newServer(t, newFake(st), nil)
	_, _, b := get(t, srv.URL+"/")
	if n := strings.Count(string(b), `scope="row"`); n != maxRows {
		t.Errorf("the page shows %d rows, want %d", n, maxRows)
	}
	if !strings.Contains(string(b), "7 more streams not shown") {
		t.Errorf("the page does not say that 7 streams are not shown")
	}
}

func TestEventsRoute(t *testing.T) {
	fake := newFake(fixedStatus())
	srv, _ := newServer(t, fake, nil)
	var ans eventsAnswer
	read := func(query string) {
		t.Helper()
		code, _, body := get(t, srv.URL+"/api/v1/events"+query)
		if code != http.StatusOK {
			t.Fatalf("GET /api/v1/events%s = %d %s, want 200", query, code, body)
		}
		ans = eventsAnswer{}
		if err := json.Unmarshal(body, &ans); err != nil {
			t.Fatalf("GET /api/v1/events%s: %v", query, err)
		}
	}
	read("")
	if len(ans.Events) != 4 || ans.Last != 4 {
		t.Fatalf("first read: %d events, last %d; want 4 and 4", len(ans.Events), ans.Last)
	}
	fake.set(edit(fixedStatus(), func(st *controller.Status) { st.Members[2].State = controller.MemberUp }))
	read("?after=4")
	if len(ans.Events) != 1 || ans.Events[0].Text != "ems-3 is up" || ans.Last != 5 {
		t.Errorf("after=4: %+v (last %d), want one event: ems-3 is up", ans.Events, ans.Last)
	}
	read("?after=5")
	if len(ans.Events) != 0 || ans.Last != 5 {
		t.Errorf("after=5: %+v (last %d), want none", ans.Events, ans.Last)
	}
	if code, _, _ := get(t, srv.URL+"/api/v1/events?after=x"); code != http.StatusBadRequest {
		t.Errorf("after=x: %d, want 400", code)
	}
}
