package emsim

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"runtime/metrics"
	"strings"
	"testing"
	"time"
)

func TestAnswerEnvelopeAndHeaders(t *testing.T) {
	c := newCluster(t, 1, Config{})
	m := c.Members()[0]
	client := newClient(t)
	for _, method := range []string{http.MethodGet, http.MethodPost} {
		r := do(t, client, method, m.APIURL()+"/version", "", "")
		if r.HTTPStatus != http.StatusOK {
			t.Fatalf("%s version: HTTP %d", method, r.HTTPStatus)
		}
		if !r.Close {
			t.Errorf("%s version: no Connection: close", method)
		}
		for k, want := range map[string]string{
			"Content-Type": "text/plain",
			"Server":       "EvoStream Media Server (www.evostream.com)",
		} {
			if got := r.Header.Get(k); got != want {
				t.Errorf("%s version: header %s = %q, want %q", method, k, got, want)
			}
		}
		if !strings.HasSuffix(r.Raw, "}\r\n\r\n") {
			t.Errorf("%s version: body %q does not end with the CLI trailer", method, r.Raw)
		}
	}
	if r := do(t, client, http.MethodPut, m.APIURL()+"/version", "", ""); r.HTTPStatus != http.StatusMethodNotAllowed {
		t.Errorf("PUT version: HTTP %d, want 405", r.HTTPStatus)
	}
}

func TestKeepAliveConfig(t *testing.T) {
	c := newCluster(t, 1, Config{KeepAlive: true})
	tr := &http.Transport{Proxy: nil}
	t.Cleanup(tr.CloseIdleConnections)
	r := do(t, &http.Client{Transport: tr}, http.MethodGet, c.Members()[0].APIURL()+"/version", "", "")
	if r.Close {
		t.Errorf("with KeepAlive, the answer asks to close the connection")
	}
}

func TestCommandDispatch(t *testing.T) {
	c := newCluster(t, 1, Config{})
	m := c.Members()[0]
	client := newClient(t)
	tests := []struct {
		name     string
		url      string
		wantDesc string
	}{
		{"lowercase", m.APIURL() + "/version", "Version"},
		{"uppercase", m.APIURL() + "/VERSION", "Version"},
		{"last path segment", m.APIURL() + "/any/thing/Version", "Version"},
		{"double slash", m.APIURL() + "//version", "Version"},
		{"alias of listConfig", m.APIURL() + "/listPullPushConfig", "Run-time configuration"},
		{"trailing slash is no command", m.APIURL() + "/version/", "command  not known. Type help for list of commands"},
		{"unknown lowercased", m.APIURL() + "/FooBar", "command foobar not known. Type help for list of commands"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := do(t, client, http.MethodGet, tt.url, "", "").description(); got != tt.wantDesc {
				t.Errorf("GET %s: description %q, want %q", tt.url, got, tt.wantDesc)
			}
		})
	}
	if got := m.CallCount("listConfig"); got != 1 {
		t.Errorf("CallCount(listConfig) = %d, want 1 (alias counted)", got)
	}
	if got := m.CallCount("VERSION"); got != 4 {
		t.Errorf("CallCount(VERSION) = %d, want 4", got)
	}
}

func TestCommandFailures(t *testing.T) {
	c := newCluster(t, 1, Config{})
	m := c.Members()[0]
	ctx := testCtx(t, 5*time.Second)
	mustSucceed(t, m, "pullStream", "uri=rtmp://cam.example.org/live/a localStreamName=taken")
	if err := m.Publish("pub"); err != nil {
		t.Fatal(err)
	}
	if err := m.AwaitInbound(ctx, "taken"); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		command  string
		params   string
		wantDesc string
	}{
		{"pullStream without parameters", "pullStream", "", "Syntax error. No parameters provided"},
		{"pullStream without uri", "pullStream", "localStreamName=x", "Syntax error. Parameter uri is invalid"},
		{"pullStream uri with unescaped comma", "pullStream", "uri=rtmp://h/live/a,b", "Syntax error. Parameter uri is invalid"},
		{"pullStream invalid uri", "pullStream", "uri=nonsense", "Invalid URI: nonsense"},
		{"pullStream bad number", "pullStream", "uri=rtmp://h/live/x ttl=01", "Syntax error. Parameter ttl is invalid"},
		{"pullStream bad range", "pullStream", "uri=rtmp://h/live/x rangeStart=-5", "rangeStart and rangeEnd can only have positive values, -2 or -1"},
		{"pullStream name of a config", "pullStream", "uri=rtmp://h/live/x localStreamName=taken", "Stream name taken already taken"},
		{"pullStream name of a published stream", "pullStream", "uri=rtmp://h/live/x localStreamName=pub", "Stream name pub already taken"},
		{"getStreamInfo neither", "getStreamInfo", "foo=1", "id or localStreamName parameters needs to be supplied"},
		{"getStreamInfo both", "getStreamInfo", "id=1 localStreamName=x", "id and localStreamName must not go together, choose only 1"},
		{"getStreamInfo unknown name", "getStreamInfo", "localStreamName=nope", "Stream nope not found"},
		{"getStreamInfo unknown id", "getStreamInfo", "id=99", "Stream 0:99 not found"},
		{"isStreamRunning both", "isStreamRunning", "id=1 localStreamName=x", "id and localStreamName must not go together, choose only 1"},
		{"shutdownStream unknown", "shutdownStream", "localStreamName=nope", "Stream no longer available"},
		{"removeConfig without parameters", "removeConfig", "", "Syntax error. No parameters provided"},
		{"removeConfig without id", "removeConfig", "removeHlsHdsFiles=1", "No id nor group name provided"},
		{"removeConfig id 0", "removeConfig", "id=0", "No id nor group name provided"},
		{"getConfigInfo unknown", "getConfigInfo", "id=77", "Config ID not found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := call(t, m, tt.command, tt.params)
			if r.status() != "FAIL" || r.description() != tt.wantDesc || r.data() != nil {
				t.Errorf("%s %q = %s; want FAIL %q with data null", tt.command, tt.params, r.Raw, tt.wantDesc)
			}
		})
	}
}

func TestCommandSuccesses(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 1, Config{})
	m := c.Members()[0]
	ctx := testCtx(t, 5*time.Second)

	r := mustSucceed(t, m, "pullstream", `URI=rtmp://cam.example.org/live/a KEEPALIVE=0 localstreamname=a\ b commandId=42 _Tag=x\,y _list=1,2 ttl=7 forceTcp=true `)
	if got := path(r.Env, "responseId"); got != "42" {
		t.Errorf("responseId = %v, want 42", got)
	}
	if r.description() != "Stream rtmp://cam.example.org/live/a enqueued for pulling" {
		t.Errorf("description = %q", r.description())
	}
	d := r.dataObj()
	checks := map[string]any{
		"localStreamName": "a b",
		"keepAlive":       false,
		"forceTcp":        false, // atoi("true") == 0
		"ttl":             json.Number("7"),
		"_Tag":            "x,y",
		"configId":        json.Number("1"),
		"operationType":   json.Number("1"),
	}
	for k, want := range checks {
		if got := d[k]; got != want {
			t.Errorf("pullStream data[%s] = %#v, want %#v", k, got, want)
		}
	}
	if l, _ := d["_list"].([]any); len(l) != 2 || l[0] != "1" || l[1] != "2" {
		t.Errorf("pullStream data[_list] = %#v, want [\"1\",\"2\"]", d["_list"])
	}
	if got := path(d, "uri", "host"); got != "cam.example.org" {
		t.Errorf("uri.host = %v", got)
	}

	// A name is generated when none is given; configIds increase.
	r = mustSucceed(t, m, "pullStream", "uri=rtmp://cam.example.org/live/b")
	if name, _ := r.dataObj()["localStreamName"].(string); !strings.HasPrefix(name, "stream_") || len(name) != 15 {
		t.Errorf("generated localStreamName = %q, want stream_ and 8 characters", name)
	}
	if got := r.dataObj()["configId"]; got != json.Number("2") {
		t.Errorf("second configId = %v, want 2", got)
	}

	if err := m.AwaitInbound(ctx, "a b"); err != nil {
		t.Fatal(err)
	}
	if r := mustSucceed(t, m, "isStreamRunning", "localStreamName=a\\ b"); path(r.Env, "data", "Running") != true {
		t.Errorf("isStreamRunning(a b) = %s", r.Raw)
	}
	if r := mustSucceed(t, m, "isStreamRunning", "localStreamName=nope"); path(r.Env, "data", "Running") != false {
		t.Errorf("isStreamRunning(nope) = %s, want SUCCESS Running false", r.Raw)
	}
	if r := mustSucceed(t, m, "getStreamInfo", "id=1"); path(r.Env, "data", "name") != "a b" {
		t.Errorf("getStreamInfo(id=1) = %s", r.Raw)
	}
	if r := mustSucceed(t, m, "removeConfig", "id=999"); r.data() != nil || r.description() != "Configuration terminated" {
		t.Errorf("removeConfig(unknown) = %s, want SUCCESS with data null", r.Raw)
	}
}

func TestShutdownStream(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 1, Config{})
	m := c.Members()[0]
	ctx := testCtx(t, 5*time.Second)
	mustSucceed(t, m, "pullStream", "uri=rtmp://cam.example.org/live/p localStreamName=perm")
	mustSucceed(t, m, "pullStream", "uri=rtmp://cam.example.org/live/t localStreamName=temp")
	for _, n := range []string{"perm", "temp"} {
		if err := m.AwaitInbound(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	// permanently defaults to 1: the config goes too.
	mustSucceed(t, m, "shutdownStream", "localStreamName=perm")
	if err := m.AwaitNoPullConfig(ctx, "perm"); err != nil {
		t.Fatal(err)
	}
	// permanently=0 closes the stream; the keepAlive config reconnects.
	mustSucceed(t, m, "shutdownStream", "localStreamName=temp permanently=0")
	if err := m.AwaitPullStatus(ctx, "temp", StatusDisconnected); err != nil {
		t.Fatal(err)
	}
	if err := m.AwaitPullStatus(ctx, "temp", StatusStreaming); err != nil {
		t.Fatal(err)
	}
	if err := m.Publish("enc"); err != nil {
		t.Fatal(err)
	}
	mustSucceed(t, m, "shutdownStream", "localStreamName=enc")
	if err := m.AwaitNoInbound(ctx, "enc"); err != nil {
		t.Fatal(err)
	}
}

func TestProxy(t *testing.T) {
	ews := testPort + 1111
	c := newCluster(t, 1, Config{EWSPort: ews, PseudoDomain: "apiproxy", User: "admin", Password: "s3cret"})
	m := c.Members()[0]
	client := newClient(t)
	base := m.ProxyURL()
	if !strings.HasSuffix(base, ":8888/apiproxy") {
		t.Fatalf("ProxyURL() = %q", base)
	}
	params := "uri=rtmp://cam.example.org/live/x localStreamName=px "
	tests := []struct {
		name       string
		url        string
		user, pass string
		wantStatus int
		wantDesc   string
	}{
		{"no credentials", base + "/version", "", "", http.StatusUnauthorized, ""},
		{"wrong password", base + "/version", "admin", "nope", http.StatusUnauthorized, ""},
		{"wrong user", base + "/version", "root", "s3cret", http.StatusUnauthorized, ""},
		{"wrong pseudo domain", strings.TrimSuffix(base, "/apiproxy") + "/other/version", "admin", "s3cret", http.StatusNotFound, ""},
		{"pseudo domain only", base, "admin", "s3cret", http.StatusNotFound, ""},
		{"query form (EMS 2.0)", apiURL(base, "pullStream", params), "admin", "s3cret", http.StatusOK, "Stream rtmp://cam.example.org/live/x enqueued for pulling"},
		{"encoded form (EMS 1.7)", base + "/getConfigInfo%3fparams=" + b64("id=1"), "admin", "s3cret", http.StatusOK, "Configuration Info"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := do(t, client, http.MethodGet, tt.url, tt.user, tt.pass)
			if r.HTTPStatus != tt.wantStatus {
				t.Fatalf("GET %s: HTTP %d, want %d (%s)", tt.url, r.HTTPStatus, tt.wantStatus, r.Raw)
			}
			switch tt.wantStatus {
			case http.StatusUnauthorized:
				if got := r.Header.Get("WWW-Authenticate"); got != `Basic realm="EvoStream Web Server"` {
					t.Errorf("WWW-Authenticate = %q", got)
				}
				if !strings.Contains(r.Raw, "Access Denied") {
					t.Errorf("401 body = %q, want Access Denied", r.Raw)
				}
				if strings.Contains(r.Raw, "s3cret") {
					t.Errorf("401 body leaks the password")
				}
			case http.StatusOK:
				if r.description() != tt.wantDesc {
					t.Errorf("description = %q, want %q", r.description(), tt.wantDesc)
				}
			}
		})
	}
	// A base64 value holding '/' survives the encoded form.
	tricky := "uri=rtmp://cam.example.org/live/y?a=b localStreamName=q??? "
	if !strings.Contains(b64(tricky), "/") {
		t.Fatalf("b64(%q) has no '/'", tricky)
	}
	r := do(t, client, http.MethodGet, base+"/pullStream%3fparams="+b64(tricky), "admin", "s3cret")
	if r.status() != "SUCCESS" || path(r.Env, "data", "localStreamName") != "q???" {
		t.Errorf("encoded form with '/' in base64 = %s", r.Raw)
	}
}

func TestFaults(t *testing.T) {
	t.Parallel()
	sink := newSink(t)
	c := newCluster(t, 1, Config{EWSPort: testPort + 1111, EventsURL: sink.URL()})
	m := c.Members()[0]
	client := newClient(t)
	ctx := testCtx(t, 5*time.Second)

	t.Run("error rate 1 answers 500", func(t *testing.T) {
		m.SetFaults(Faults{ErrorRate: 1})
		defer m.SetFaults(Faults{})
		before := m.CallCount("version")
		if r := do(t, client, http.MethodGet, m.APIURL()+"/version", "", ""); r.HTTPStatus != http.StatusInternalServerError {
			t.Errorf("version with error rate 1: HTTP %d, want 500", r.HTTPStatus)
		}
		if got := m.CallCount("version"); got != before {
			t.Errorf("CallCount(version) = %d after a 500, want %d", got, before)
		}
	})

	t.Run("latency delays answers", func(t *testing.T) {
		const lat = 150 * time.Millisecond
		m.SetFaults(Faults{Latency: lat})
		defer m.SetFaults(Faults{})
		start := time.Now()
		r := do(t, client, http.MethodGet, m.APIURL()+"/version", "", "")
		if el := time.Since(start); el < lat || r.status() != "SUCCESS" {
			t.Errorf("version with latency %v answered %q after %v", lat, r.status(), el)
		}
	})

	t.Run("down closes connections and sends no events", func(t *testing.T) {
		m.SetFaults(Faults{Down: true})
		for _, u := range []string{m.APIURL() + "/version", m.ProxyURL() + "/version"} {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
			req.SetBasicAuth("username", "password")
			resp, err := client.Do(req)
			if err == nil {
				resp.Body.Close()
				t.Errorf("GET %s while down: HTTP %d, want the connection closed", u, resp.StatusCode)
			} else if !errors.Is(err, io.EOF) && !strings.Contains(err.Error(), "EOF") && !strings.Contains(err.Error(), "reset") {
				t.Errorf("GET %s while down: %v, want EOF", u, err)
			}
		}
		if err := m.Publish("while-down"); err != nil {
			t.Fatal(err)
		}
		m.SetFaults(Faults{})
		if err := m.Publish("after-up"); err != nil {
			t.Fatal(err)
		}
		// after-up is the member's first event: while-down had none.
		up := sink.await(ctx, t, "inStreamCreated after-up", isEvent("inStreamCreated", "after-up", m.IP()))
		if id := fmt.Sprint(up.Env["id"]); id != "1" {
			t.Errorf("after-up's event id = %s, want 1: an event was made while down", id)
		}
		for _, e := range sink.all() {
			if path(e.Env, "payload", "name") == "while-down" {
				t.Errorf("event %s of while-down was sent while the member was down", e.Type)
			}
		}
	})
}

func TestDownMemberFailsPulls(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 2, Config{})
	a, b := c.Members()[0], c.Members()[1]
	ctx := testCtx(t, 10*time.Second)
	if err := a.Publish("x"); err != nil {
		t.Fatal(err)
	}
	mustSucceed(t, b, "pullStream", "uri=rtmp://"+a.IP()+"/live/x localStreamName=x keepAlive=1")
	if err := b.AwaitPullStatus(ctx, "x", StatusStreaming); err != nil {
		t.Fatal(err)
	}
	a.SetFaults(Faults{Down: true})
	if err := b.AwaitNoInbound(ctx, "x"); err != nil {
		t.Fatal(err)
	}
	if err := b.AwaitPullStatus(ctx, "x", StatusDisconnected); err != nil {
		t.Fatal(err)
	}
	// While A is down, B's retries fail.
	if err := b.AwaitPullStatus(ctx, "x", StatusConnectionFailed); err != nil {
		t.Fatal(err)
	}
	a.SetFaults(Faults{})
	if err := b.AwaitPullStatus(ctx, "x", StatusStreaming); err != nil {
		t.Fatal(err)
	}
}

func TestControlRoutes(t *testing.T) {
	c := newCluster(t, 1, Config{})
	m := c.Members()[0]
	client := newClient(t)
	post := func(route string) (int, map[string]any) {
		t.Helper()
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, m.APIURL()+route, nil)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("POST %s: %v", route, err)
		}
		defer resp.Body.Close()
		var v map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
			t.Fatalf("POST %s: decode: %v", route, err)
		}
		return resp.StatusCode, v
	}
	// gcBefore is the count of collections just before /_emsim/gc.
	var gcBefore uint64
	tests := []struct {
		route      string
		wantStatus int
		after      func() string // "" when the state is right
	}{
		{"/_emsim/publish?name=cam", 200, func() string {
			if n := m.InboundNames(); len(n) != 1 || n[0] != "cam" {
				return "inbound names " + strings.Join(n, ",")
			}
			return ""
		}},
		{"/_emsim/publish?name=cam", 400, nil},
		{"/_emsim/publish", 400, nil},
		{"/_emsim/faults?latency=50ms&error_rate=0.25&down=1", 200, func() string {
			if f := m.Faults(); f != (Faults{Latency: 50 * time.Millisecond, ErrorRate: 0.25, Down: true}) {
				return "faults not set"
			}
			return ""
		}},
		// Control routes answer while the member is down.
		{"/_emsim/unpublish?name=cam", 200, func() string {
			if n := m.InboundNames(); len(n) != 0 {
				return "still published"
			}
			return ""
		}},
		{"/_emsim/unpublish?name=cam", 400, nil},
		{"/_emsim/faults", 200, func() string {
			if f := m.Faults(); f != (Faults{}) {
				return "faults not cleared"
			}
			return ""
		}},
		{"/_emsim/faults?api_down=1", 200, func() string {
			if f := m.Faults(); f != (Faults{APIDown: true}) {
				return "api_down not set alone"
			}
			return ""
		}},
		{"/_emsim/faults?api_down=maybe", 400, nil},
		{"/_emsim/faults", 200, nil},
		{"/_emsim/faults?latency=soon", 400, nil},
		{"/_emsim/faults?error_rate=2", 400, nil},
		{"/_emsim/external?uri=rtmp://cam.example.org/live/z&available=0", 200, func() string {
			m.mu.Lock()
			defer m.mu.Unlock()
			if !m.extDown["rtmp://cam.example.org/live/z"] {
				return "external source still available"
			}
			return ""
		}},
		{"/_emsim/external?uri=rtmp://cam.example.org/live/z&available=1", 200, func() string {
			m.mu.Lock()
			defer m.mu.Unlock()
			if m.extDown["rtmp://cam.example.org/live/z"] {
				return "external source still unavailable"
			}
			return ""
		}},
		{"/_emsim/external?uri=x&available=maybe", 400, nil},
		{"/_emsim/gc", 200, func() string {
			if n := gcCycles(); n <= gcBefore {
				return fmt.Sprintf("%d collections after /_emsim/gc answered, %d before", n, gcBefore)
			}
			return ""
		}},
		{"/_emsim/nothing", 404, nil},
	}
	for _, tt := range tests {
		gcBefore = gcCycles()
		status, body := post(tt.route)
		if status != tt.wantStatus {
			t.Errorf("POST %s: HTTP %d %v, want %d", tt.route, status, body, tt.wantStatus)
			continue
		}
		if wantOK := status == 200; body["ok"] != wantOK {
			t.Errorf("POST %s: body %v, want ok %t", tt.route, body, wantOK)
		}
		if status != 200 && body["error"] == nil {
			t.Errorf("POST %s: body %v has no error", tt.route, body)
		}
		if tt.after != nil {
			if msg := tt.after(); msg != "" {
				t.Errorf("after POST %s: %s", tt.route, msg)
			}
		}
	}
	r := do(t, client, http.MethodGet, m.APIURL()+"/_emsim/publish?name=x", "", "")
	if r.HTTPStatus != http.StatusMethodNotAllowed {
		t.Errorf("GET control route: HTTP %d, want 405", r.HTTPStatus)
	}
}

func TestPublishRefusesNameHeldByPull(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 1, Config{})
	m := c.Members()[0]
	ctx := testCtx(t, 10*time.Second)
	const uri = "rtmp://cam.example.org/live/held"
	m.SetExternalAvailable(uri, false)
	// A pull that is not streaming still holds its name.
	mustSucceed(t, m, "pullStream", "uri="+uri+" localStreamName=held keepAlive=1")
	if err := m.AwaitPullStatus(ctx, "held", StatusConnectionFailed); err != nil {
		t.Fatal(err)
	}
	postControl(t, m, "/_emsim/publish?name=held", http.StatusConflict)
	if err := m.Publish("held"); !errors.Is(err, ErrNameHeldByPull) {
		t.Errorf("Publish(held) = %v, want ErrNameHeldByPull", err)
	}
	if n := m.InboundNames(); len(n) != 0 {
		t.Errorf("inbound streams after a refused publish: %v, want none", n)
	}
	m.SetExternalAvailable(uri, true)
	if err := m.AwaitPullStatus(ctx, "held", StatusStreaming); err != nil {
		t.Fatal(err)
	}
	postControl(t, m, "/_emsim/publish?name=held", http.StatusConflict)
	if got := m.PullConfigs(); len(got) != 1 || got[0].StatusCode != StatusStreaming {
		t.Errorf("pull after a refused publish: %+v, want it streaming", got)
	}
	// Once the configuration is gone, the name is free.
	mustSucceed(t, m, "removeConfig", "id=1")
	postControl(t, m, "/_emsim/publish?name=held", http.StatusOK)
}

func TestExternalSourceAvailability(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 1, Config{})
	m := c.Members()[0]
	ctx := testCtx(t, 10*time.Second)
	const uri = "rtmp://cam.example.org/live/ext"
	m.SetExternalAvailable(uri, false)
	mustSucceed(t, m, "pullStream", "uri="+uri+" localStreamName=ext keepAlive=1")
	if err := m.AwaitPullStatus(ctx, "ext", StatusConnectionFailed); err != nil {
		t.Fatal(err)
	}
	m.SetExternalAvailable(uri, true)
	if err := m.AwaitPullStatus(ctx, "ext", StatusStreaming); err != nil {
		t.Fatal(err)
	}
	// keepAlive=0 pulls vanish when their source fails.
	mustSucceed(t, m, "pullStream", "uri="+uri+" localStreamName=once keepAlive=0")
	if err := m.AwaitInbound(ctx, "once"); err != nil {
		t.Fatal(err)
	}
	m.SetExternalAvailable(uri, false)
	if err := m.AwaitNoPullConfig(ctx, "once"); err != nil {
		t.Fatal(err)
	}
	if err := m.AwaitPullStatus(ctx, "ext", StatusDisconnected); err != nil {
		t.Fatal(err)
	}
}

// gcCycles returns how many collections this process has completed.
func gcCycles() uint64 {
	s := []metrics.Sample{{Name: "/gc/cycles/total:gc-cycles"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// TestRemoteCountFollowsConfigs checks the count the periodic check relies
// on to skip members whose pulls all come from this process's members: a
// pull from an emulated member is not counted, one from elsewhere is until
// it is removed.
func TestRemoteCountFollowsConfigs(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 2, Config{})
	origin, m := c.Members()[0], c.Members()[1]
	remote := func() int {
		m.mu.Lock()
		defer m.mu.Unlock()
		return m.remote
	}
	if err := origin.Publish("local"); err != nil {
		t.Fatal(err)
	}
	mustSucceed(t, m, "pullStream", "uri=rtmp://"+origin.IP()+"/live/local localStreamName=local keepAlive=1")
	if got := remote(); got != 0 {
		t.Fatalf("remote = %d with one pull from a member of the cluster, want 0", got)
	}
	mustSucceed(t, m, "pullStream", "uri=rtmp://cam.example.org/live/ext localStreamName=ext keepAlive=1")
	if got := remote(); got != 1 {
		t.Fatalf("remote = %d after a pull from an outside source, want 1", got)
	}
	var id uint64
	for _, pc := range m.PullConfigs() {
		if pc.LocalStreamName == "ext" {
			id = pc.ConfigID
		}
	}
	mustSucceed(t, m, "removeConfig", fmt.Sprintf("id=%d", id))
	if got := remote(); got != 0 {
		t.Fatalf("remote = %d after the outside pull was removed, want 0", got)
	}
}

func TestStartRefusesBadConfigs(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{"non-loopback address", Config{IP: "10.1.2.3"}, "only loopback"},
		{"IPv6 loopback", Config{IP: "::1"}, "only loopback"},
		{"not an address", Config{IP: "localhost"}, "ip \"localhost\""},
		{"too many members for 127/8", Config{IP: "127.255.255.250", Members: 10}, "do not fit"},
		{"same ports", Config{IP: "127.0.0.1", APIPort: 7000, EWSPort: 7000}, "also the api port"},
		{"bad events url", Config{IP: "127.0.0.1", EventsURL: "ftp://x"}, "events url"},
		{"negative members", Config{IP: "127.0.0.1", Members: -1}, "members"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Start(tt.cfg)
			if err == nil {
				c.Close()
				t.Fatalf("Start(%v) succeeded, want an error containing %q", tt.cfg, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Start(%v) = %v, want an error containing %q", tt.cfg, err, tt.wantErr)
			}
		})
	}
	t.Run("bind error", func(t *testing.T) {
		first := newCluster(t, 2, Config{})
		c, err := Start(Config{IP: first.Members()[1].IP(), APIPort: testPort})
		if err == nil {
			c.Close()
			t.Fatal("Start on a bound address succeeded")
		}
		if !strings.Contains(err.Error(), "address already in use") {
			t.Errorf("Start on a bound address = %v", err)
		}
	})
}

func TestConfigStringHidesPassword(t *testing.T) {
	cfg := Config{Password: "hunter2", User: "u"}
	if s := cfg.String(); strings.Contains(s, "hunter2") {
		t.Errorf("Config.String() = %q leaks the password", s)
	}
}

func TestRandomLoopbackIPs(t *testing.T) {
	for _, n := range []int{1, 3, 254} {
		ips := RandomLoopbackIPs(n)
		if len(ips) != n {
			t.Fatalf("RandomLoopbackIPs(%d) returned %d addresses", n, len(ips))
		}
		got, err := memberIPs(ips[0], n)
		if err != nil {
			t.Fatalf("memberIPs(%s, %d): %v", ips[0], n, err)
		}
		for i := range ips {
			if ips[i] != got[i] {
				t.Fatalf("RandomLoopbackIPs(%d) = %v, not consecutive", n, ips)
			}
			if strings.HasPrefix(ips[i], "127.0.0.") || strings.HasSuffix(ips[i], ".0") || strings.HasSuffix(ips[i], ".255") {
				t.Fatalf("RandomLoopbackIPs(%d) = %v has a reserved address", n, ips)
			}
		}
	}
}
