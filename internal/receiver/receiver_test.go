package receiver

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"

	"streamlb/internal/testkit"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// fakeSink records the stream events it is given.
type fakeSink struct {
	mu     sync.Mutex
	events []StreamEvent
}

func (s *fakeSink) HandleStreamEvent(ev StreamEvent) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.events = append(s.events, ev)
}

func (s *fakeSink) Events() []StreamEvent {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]StreamEvent(nil), s.events...)
}

var testNow = time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)

// fixture is a Receiver under test with its fakes.
type fixture struct {
	r    *Receiver
	sink *fakeSink
	reg  *prometheus.Registry
	logs *testkit.Buffer
}

// newFixture builds a Receiver from opts, filling in a fake Sink, a fresh
// registry, a debug-level text logger and a fixed clock where unset.
func newFixture(t *testing.T, opts Options) *fixture {
	t.Helper()
	f := &fixture{sink: &fakeSink{}, reg: prometheus.NewRegistry(), logs: &testkit.Buffer{}}
	if opts.Sink == nil {
		opts.Sink = f.sink
	}
	if opts.Registerer == nil {
		opts.Registerer = f.reg
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	if opts.Now == nil {
		opts.Now = func() time.Time { return testNow }
	}
	f.r = New(opts)
	return f
}

// server serves f's Receiver through a ServeMux on a loopback port.
func (f *fixture) server(t *testing.T) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	f.r.Register(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

// count reads one series of streamlb_events_received_total.
func (f *fixture) count(typ, result string) float64 {
	return testutil.ToFloat64(f.r.metrics.events.WithLabelValues(typ, result))
}

// post sends body to srv's target and returns the status and body.
func post(t *testing.T, srv *httptest.Server, target string, body []byte) (int, string) {
	t.Helper()
	return do(t, srv, http.MethodPost, target, body)
}

func do(t *testing.T, srv *httptest.Server, method, target string, body []byte) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, srv.URL+target, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read answer to %s %s: %v", method, target, err)
	}
	return resp.StatusCode, string(b)
}

// serve calls ServeHTTP directly, as from a peer at remote.
func serve(r *Receiver, remote, target string, body []byte) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodPost, target, bytes.NewReader(body))
	req.RemoteAddr = remote
	rec := httptest.NewRecorder()
	r.ServeHTTP(rec, req)
	return rec
}

// errorOf returns the "error" member of a JSON error answer.
func errorOf(t *testing.T, body string) string {
	t.Helper()
	var v struct {
		Error *string `json:"error"`
	}
	if err := json.Unmarshal([]byte(body), &v); err != nil || v.Error == nil {
		t.Fatalf("answer %q is not a JSON error (%v)", body, err)
	}
	return *v.Error
}

const okBody = `{"status":"ok"}` + "\n"

func TestRecordedEventsPostedAccepted(t *testing.T) {
	f := newFixture(t, Options{})
	srv := f.server(t)

	var bodies [][]byte
	bodies = append(bodies, readLines(t, recordedLines)...)
	files := recordedEventFiles(t)
	for _, file := range files {
		bodies = append(bodies, readFile(t, file))
	}
	if want := 1224 + 17; len(bodies) != want {
		t.Fatalf("have %d fixture events (%d files), want %d", len(bodies), len(files), want)
	}
	for i, body := range bodies {
		target := "/evowebservices/"
		if i%2 == 1 {
			target = "/evowebservices" // both forms, as EMS sinks are configured either way
		}
		status, answer := post(t, srv, target, body)
		if status != http.StatusOK || answer != okBody {
			t.Fatalf("event %d: answered %d %q, want 200 %q", i, status, answer, okBody)
		}
	}

	got := f.sink.Events()
	// 169 + 95 stream events in the jsonl, 4 in the single-event files.
	if len(got) != 264+4 {
		t.Fatalf("sink got %d stream events, want %d", len(got), 264+4)
	}
	first := got[0]
	want := StreamEvent{
		Type: TypeInStreamCreated, Name: "5", IP: "192.168.2.196",
		Peer: netip.MustParseAddr("127.0.0.1"), ConnectionType: 1,
		PullURI: "rtmp://webcasting.thefloridachannel.org/live/tvweb1", Received: testNow,
	}
	if diff := cmp.Diff(want, first, equateAddr()); diff != "" {
		t.Errorf("first stream event mismatch (-want +got):\n%s", diff)
	}
	for i, ev := range got {
		if ev.Peer != netip.MustParseAddr("127.0.0.1") || !ev.Received.Equal(testNow) {
			t.Errorf("stream event %d: Peer %v Received %v, want 127.0.0.1 and %v", i, ev.Peer, ev.Received, testNow)
		}
	}

	counts := []struct {
		typ, result string
		want        float64
	}{
		{TypeInStreamCreated, resultAccepted, 169 + 2},
		{TypeInStreamClosed, resultAccepted, 95 + 2},
		{"outStreamCreated", resultIgnored, 87 + 4},
		{"outStreamClosed", resultIgnored, 57 + 4},
		{"webRtcServiceStarted", resultIgnored, 800 + 1},
		{"recordChunkCreated", resultIgnored, 10 + 1},
		{"recordChunkClosed", resultIgnored, 2 + 1},
		{"processStarted", resultIgnored, 2 + 1},
		{"processStopped", resultIgnored, 2 + 1},
		{typeOther, resultIgnored, 0},
		{typeUnknown, resultMalformed, 0},
	}
	for _, c := range counts {
		if got := f.count(c.typ, c.result); got != c.want {
			t.Errorf("streamlb_events_received_total{type=%q,result=%q} = %v, want %v", c.typ, c.result, got, c.want)
		}
	}
}

func TestStreamEventPeer(t *testing.T) {
	body := []byte(`{"payload":{"name":"a","ip":"","connectionType":0},"type":"inStreamCreated"}`)
	tests := []struct {
		remote string
		want   netip.Addr
	}{
		{"10.1.2.3:5555", netip.MustParseAddr("10.1.2.3")},
		{"[::ffff:10.1.2.3]:5555", netip.MustParseAddr("10.1.2.3")},
		{"[::1]:80", netip.MustParseAddr("::1")},
		{"[fe80::1%eth0]:80", netip.MustParseAddr("fe80::1")},
		{"127.0.0.9", netip.MustParseAddr("127.0.0.9")},
		{"not an address", netip.Addr{}},
	}
	for _, tt := range tests {
		t.Run(tt.remote, func(t *testing.T) {
			f := newFixture(t, Options{})
			rec := serve(f.r, tt.remote, "/evowebservices/", body)
			if rec.Code != http.StatusOK {
				t.Fatalf("answered %d %q, want 200", rec.Code, rec.Body)
			}
			evs := f.sink.Events()
			if len(evs) != 1 {
				t.Fatalf("sink got %d events, want 1", len(evs))
			}
			if evs[0].Peer != tt.want {
				t.Errorf("Peer = %v, want %v", evs[0].Peer, tt.want)
			}
		})
	}
}

func TestProvenanceVarsReachSink(t *testing.T) {
	f := newFixture(t, Options{})
	srv := f.server(t)
	body := []byte(`{"id":3,"payload":{"PID":1,"connectionType":1,"ip":"127.0.0.3","name":"cam1",` +
		`"pullSettings":{"_streamlb_group":"studio","_streamlb_origin":"127.0.0.2","_callback":null,` +
		`"configId":4,"keepAlive":true,"localStreamName":"cam1","uri":"rtmp://127.0.0.2/live/cam1"}},` +
		`"processId":1,"timestamp":1700000000,"type":"inStreamClosed"}`)
	if status, answer := post(t, srv, "/evowebservices/", body); status != http.StatusOK {
		t.Fatalf("answered %d %q, want 200", status, answer)
	}
	want := []StreamEvent{{
		Type: TypeInStreamClosed, Name: "cam1", IP: "127.0.0.3", Peer: netip.MustParseAddr("127.0.0.1"),
		ConnectionType: 1, PullURI: "rtmp://127.0.0.2/live/cam1",
		Vars:     map[string]string{"_streamlb_group": "studio", "_streamlb_origin": "127.0.0.2"},
		Received: testNow,
	}}
	if diff := cmp.Diff(want, f.sink.Events(), equateAddr()); diff != "" {
		t.Errorf("sink events mismatch (-want +got):\n%s", diff)
	}
}

func TestMalformedBodiesAnswered400(t *testing.T) {
	tests := []struct {
		name     string
		body     string
		wantType string // type label counted
		wantErr  string
	}{
		{"empty", ``, typeUnknown, "empty body"},
		{"invalid JSON", `{"type":"inStreamCreated",}`, typeUnknown,
			"invalid JSON at offset 27: invalid character '}' looking for beginning of object key string"},
		{"not an object", `["inStreamCreated"]`, typeUnknown, "body is a JSON array, not an object"},
		{"missing type", `{"payload":{"name":"a"}}`, typeUnknown, `missing "type"`},
		{"missing payload", `{"type":"inStreamCreated"}`, TypeInStreamCreated, `missing "payload"`},
		{"non-object payload", `{"type":"serverStarted","payload":42}`, "serverStarted",
			`"payload" is a JSON number, not an object`},
		{"stream without name", `{"type":"inStreamClosed","payload":{"ip":"127.0.0.2"}}`, TypeInStreamClosed,
			`missing "payload.name"`},
		{"stream with non-string name", `{"type":"inStreamCreated","payload":{"name":["a"]}}`, TypeInStreamCreated,
			`"payload.name" is a JSON array, not a string`},
		{"unknown type with missing payload", `{"type":"somethingNew"}`, typeOther, `missing "payload"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, Options{})
			srv := f.server(t)
			status, answer := post(t, srv, "/evowebservices/", []byte(tt.body))
			if status != http.StatusBadRequest {
				t.Fatalf("answered %d %q, want 400", status, answer)
			}
			if got := errorOf(t, answer); got != tt.wantErr {
				t.Errorf("error = %q, want %q", got, tt.wantErr)
			}
			if n := len(f.sink.Events()); n != 0 {
				t.Errorf("sink got %d events, want 0", n)
			}
			if got := f.count(tt.wantType, resultMalformed); got != 1 {
				t.Errorf("malformed count for type %q = %v, want 1", tt.wantType, got)
			}
		})
	}
}

// validPadded returns a valid inStreamCreated event of exactly n bytes.
func validPadded(t *testing.T, n int) []byte {
	t.Helper()
	b := []byte(`{"payload":{"name":"big","connectionType":0},"type":"inStreamCreated"}`)
	if n < len(b) {
		t.Fatalf("cannot pad %d bytes into %d", len(b), n)
	}
	return append(b, bytes.Repeat([]byte(" "), n-len(b))...)
}

func TestBodyLimit(t *testing.T) {
	tests := []struct {
		name       string
		max        int64
		size       int
		wantStatus int
	}{
		{"default limit exactly", 0, DefaultMaxBodyBytes, http.StatusOK},
		{"default limit plus one", 0, DefaultMaxBodyBytes + 1, http.StatusRequestEntityTooLarge},
		{"small limit exactly", 100, 100, http.StatusOK},
		{"small limit plus one", 100, 101, http.StatusRequestEntityTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// A 413 closes the connection with a short linger; run them side by side.
			t.Parallel()
			f := newFixture(t, Options{MaxBodyBytes: tt.max})
			srv := f.server(t)
			status, answer := post(t, srv, "/evowebservices/", validPadded(t, tt.size))
			if status != tt.wantStatus {
				t.Fatalf("answered %d %q, want %d", status, answer, tt.wantStatus)
			}
			limit := tt.max
			if limit == 0 {
				limit = DefaultMaxBodyBytes
			}
			wantEvents, wantTooLarge := 1, 0.0
			if tt.wantStatus == http.StatusRequestEntityTooLarge {
				wantEvents, wantTooLarge = 0, 1
				if got, want := errorOf(t, answer), fmt.Sprintf("body larger than %d bytes", limit); got != want {
					t.Errorf("error = %q, want %q", got, want)
				}
			}
			if n := len(f.sink.Events()); n != wantEvents {
				t.Errorf("sink got %d events, want %d", n, wantEvents)
			}
			if got := f.count(typeUnknown, resultTooLarge); got != wantTooLarge {
				t.Errorf("too_large count = %v, want %v", got, wantTooLarge)
			}
		})
	}
}

func TestEventsToken(t *testing.T) {
	const token = "s3cr3t-T0ken"
	event := []byte(`{"payload":{"name":"a","connectionType":0},"type":"inStreamCreated"}`)
	tests := []struct {
		name       string
		target     string
		body       []byte
		wantStatus int
	}{
		{"path form with slash", "/evowebservices/" + token + "/", event, http.StatusOK},
		{"path form without slash", "/evowebservices/" + token, event, http.StatusOK},
		{"query form", "/evowebservices/?token=" + token, event, http.StatusOK},
		{"query form without slash", "/evowebservices?token=" + token, event, http.StatusOK},
		{"query form among other parameters", "/evowebservices/?a=b&token=" + token, event, http.StatusOK},
		{"missing", "/evowebservices/", event, http.StatusUnauthorized},
		{"missing without slash", "/evowebservices", event, http.StatusUnauthorized},
		{"wrong path token", "/evowebservices/wrong/", event, http.StatusUnauthorized},
		{"token prefix", "/evowebservices/" + token[:6], event, http.StatusUnauthorized},
		{"token with extra", "/evowebservices/" + token + "x/", event, http.StatusUnauthorized},
		{"wrong query token", "/evowebservices/?token=wrong", event, http.StatusUnauthorized},
		{"empty query token", "/evowebservices/?token=", event, http.StatusUnauthorized},
		{"wrong path token, right query", "/evowebservices/wrong?token=" + token, event, http.StatusUnauthorized},
		{"missing, malformed body", "/evowebservices/", []byte(`{`), http.StatusUnauthorized},
		{"right token, malformed body", "/evowebservices/" + token + "/", []byte(`{`), http.StatusBadRequest},
		{"deeper path", "/evowebservices/" + token + "/more", event, http.StatusNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, Options{Token: token})
			srv := f.server(t)
			status, answer := post(t, srv, tt.target, tt.body)
			if status != tt.wantStatus {
				t.Fatalf("POST %s answered %d %q, want %d", tt.target, status, answer, tt.wantStatus)
			}
			wantEvents := 0
			switch tt.wantStatus {
			case http.StatusOK:
				wantEvents = 1
			case http.StatusUnauthorized:
				if got := errorOf(t, answer); got != "missing or wrong events token" {
					t.Errorf("error = %q, want %q", got, "missing or wrong events token")
				}
				if got := f.count(typeUnknown, resultUnauthorized); got != 1 {
					t.Errorf("unauthorized count = %v, want 1", got)
				}
			}
			if n := len(f.sink.Events()); n != wantEvents {
				t.Errorf("sink got %d events, want %d", n, wantEvents)
			}
			logs := f.logs.String()
			if strings.Contains(logs, token[:6]) {
				t.Errorf("logs show the token:\n%s", logs)
			}
			if tt.wantStatus == http.StatusUnauthorized && strings.Contains(tt.target, "token=") &&
				!strings.Contains(logs, "REDACTED") {
				t.Errorf("logs of a rejected token lack REDACTED:\n%s", logs)
			}
		})
	}
}

func TestTokenNeverLogged(t *testing.T) {
	const token = "tok-9f8e7d"
	f := newFixture(t, Options{Token: token})
	srv := f.server(t)
	for _, target := range []string{
		"/evowebservices/" + token + "/",
		"/evowebservices/?token=" + token,
		"/evowebservices/" + token + "X/",
		"/evowebservices/?token=" + token + "X",
		"/evowebservices/" + token + "/deeper",
	} {
		post(t, srv, target, []byte(`{"type":"inStreamCreated","payload":{}}`))
		post(t, srv, target, []byte(`{"payload":{"name":"a"},"type":"inStreamCreated"}`))
	}
	logs := f.logs.String()
	if !strings.Contains(logs, "/evowebservices/REDACTED/") || !strings.Contains(logs, "?token=REDACTED") {
		t.Errorf("logs lack the redacted paths:\n%s", logs)
	}
	if strings.Contains(logs, token) {
		t.Errorf("logs show the token:\n%s", logs)
	}
	opts := Options{Token: token}
	for _, s := range []string{opts.String(), fmt.Sprintf("%v %+v %#v", opts, opts, opts), opts.LogValue().String()} {
		if strings.Contains(s, token) {
			t.Errorf("Options printed as %q shows the token", s)
		}
	}
}

func TestRoutesWithoutToken(t *testing.T) {
	event := []byte(`{"payload":{},"type":"timerTriggered"}`)
	tests := []struct {
		method, target string
		wantStatus     int
	}{
		{http.MethodPost, "/evowebservices/", http.StatusOK},
		{http.MethodPost, "/evowebservices", http.StatusOK},
		{http.MethodPost, "/evowebservices/?token=ignored", http.StatusOK},
		{http.MethodPost, "/evowebservices/something", http.StatusNotFound},
		{http.MethodGet, "/evowebservices/", http.StatusMethodNotAllowed},
		{http.MethodPut, "/evowebservices", http.StatusMethodNotAllowed},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.target, func(t *testing.T) {
			f := newFixture(t, Options{})
			srv := f.server(t)
			status, answer := do(t, srv, tt.method, tt.target, event)
			if status != tt.wantStatus {
				t.Errorf("answered %d %q, want %d", status, answer, tt.wantStatus)
			}
		})
	}
}

func TestServeHTTPRejectsOtherMethodsAndPaths(t *testing.T) {
	f := newFixture(t, Options{})
	req := httptest.NewRequest(http.MethodGet, "/evowebservices/", nil)
	rec := httptest.NewRecorder()
	f.r.ServeHTTP(rec, req)
	if rec.Code != http.StatusMethodNotAllowed || rec.Header().Get("Allow") != http.MethodPost {
		t.Errorf("GET answered %d with Allow %q, want 405 with Allow POST", rec.Code, rec.Header().Get("Allow"))
	}
	for _, target := range []string{"/", "/evowebservicesx", "/other/evowebservices/"} {
		if rec := serve(f.r, "127.0.0.1:1", target, []byte(`{"payload":{},"type":"a"}`)); rec.Code != http.StatusNotFound {
			t.Errorf("POST %s answered %d, want 404", target, rec.Code)
		}
	}
}

func TestAllowedSources(t *testing.T) {
	allowed := []netip.Prefix{
		netip.MustParsePrefix("127.0.0.0/8"),
		netip.MustParsePrefix("10.0.0.0/24"),
		netip.MustParsePrefix("::1/128"),
	}
	event := []byte(`{"payload":{"name":"a"},"type":"inStreamCreated"}`)
	tests := []struct {
		remote     string
		wantStatus int
	}{
		{"127.0.0.5:4000", http.StatusOK},
		{"10.0.0.9:4000", http.StatusOK},
		{"[::ffff:10.0.0.9]:4000", http.StatusOK},
		{"[::1]:4000", http.StatusOK},
		{"10.0.1.1:4000", http.StatusForbidden},
		{"192.0.2.1:4000", http.StatusForbidden},
		{"[2001:db8::1]:4000", http.StatusForbidden},
		{"garbage", http.StatusForbidden},
	}
	for _, tt := range tests {
		t.Run(tt.remote, func(t *testing.T) {
			f := newFixture(t, Options{AllowedSources: allowed, Token: "tok"})
			// No token: a peer outside is refused before the token is looked at.
			target := "/evowebservices/tok/"
			if tt.wantStatus == http.StatusForbidden {
				target = "/evowebservices/"
			}
			rec := serve(f.r, tt.remote, target, event)
			if rec.Code != tt.wantStatus {
				t.Fatalf("answered %d %q, want %d", rec.Code, rec.Body, tt.wantStatus)
			}
			wantEvents, wantForbidden := 1, 0.0
			if tt.wantStatus == http.StatusForbidden {
				wantEvents, wantForbidden = 0, 1
				if got := errorOf(t, rec.Body.String()); got != "source address not allowed" {
					t.Errorf("error = %q, want %q", got, "source address not allowed")
				}
			}
			if n := len(f.sink.Events()); n != wantEvents {
				t.Errorf("sink got %d events, want %d", n, wantEvents)
			}
			if got := f.count(typeUnknown, resultForbidden); got != wantForbidden {
				t.Errorf("forbidden count = %v, want %v", got, wantForbidden)
			}
		})
	}
}

func TestAllowedSourcesOverLoopback(t *testing.T) {
	event := []byte(`{"payload":{"name":"a"},"type":"inStreamCreated"}`)
	for _, tt := range []struct {
		prefix     string
		wantStatus int
	}{
		{"127.0.0.1/32", http.StatusOK},
		{"10.0.0.0/8", http.StatusForbidden},
	} {
		t.Run(tt.prefix, func(t *testing.T) {
			f := newFixture(t, Options{AllowedSources: []netip.Prefix{netip.MustParsePrefix(tt.prefix)}})
			srv := f.server(t)
			if status, answer := post(t, srv, "/evowebservices/", event); status != tt.wantStatus {
				t.Errorf("answered %d %q, want %d", status, answer, tt.wantStatus)
			}
		})
	}
}

func TestMetricCounts(t *testing.T) {
	f := newFixture(t, Options{})
	bodies := []string{
		`{"payload":{"name":"a"},"type":"inStreamCreated"}`,
		`{"payload":{"name":"b"},"type":"inStreamCreated"}`,
		`{"payload":{"name":"a"},"type":"inStreamClosed"}`,
		`{"payload":{},"type":"timerTriggered"}`,
		`{"payload":{},"type":"vmCreated"}`,
		`{"payload":{},"type":"somethingElse"}`,
		`{"payload":{},"type":"inStreamCreated"}`,
		`not json`,
	}
	for _, b := range bodies {
		serve(f.r, "127.0.0.1:1", "/evowebservices/", []byte(b))
	}
	tests := []struct {
		typ, result string
		want        float64
	}{
		{TypeInStreamCreated, resultAccepted, 2},
		{TypeInStreamClosed, resultAccepted, 1},
		{"timerTriggered", resultIgnored, 1},
		{typeOther, resultIgnored, 2},
		{TypeInStreamCreated, resultMalformed, 1},
		{typeUnknown, resultMalformed, 1},
	}
	for _, tt := range tests {
		if got := f.count(tt.typ, tt.result); got != tt.want {
			t.Errorf("streamlb_events_received_total{type=%q,result=%q} = %v, want %v", tt.typ, tt.result, got, tt.want)
		}
	}
	// The series are on the injected registry, and unknown types did not
	// become labels of their own.
	n, err := testutil.GatherAndCount(f.reg, "streamlb_events_received_total")
	if err != nil {
		t.Fatal(err)
	}
	// Pre-created: 2 types x 2 results + 5 unknown; then timerTriggered and other.
	if n != 11 {
		t.Errorf("registry holds %d series of streamlb_events_received_total, want 11", n)
	}
}

func TestNilRegistererAndLogger(t *testing.T) {
	sink := &fakeSink{}
	r := New(Options{Sink: sink})
	rec := serve(r, "127.0.0.1:1", "/evowebservices/", []byte(`{"payload":{"name":"a"},"type":"inStreamCreated"}`))
	if rec.Code != http.StatusOK || len(sink.Events()) != 1 {
		t.Errorf("answered %d with %d events, want 200 with 1", rec.Code, len(sink.Events()))
	}
	if ev := sink.Events()[0]; ev.Received.IsZero() {
		t.Errorf("Received is zero with the default clock")
	}
}

func TestNewPanicsWithoutSink(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Errorf("New without a Sink did not panic")
		}
	}()
	New(Options{})
}

func TestSinkFunc(t *testing.T) {
	var got []string
	r := New(Options{Sink: SinkFunc(func(ev StreamEvent) { got = append(got, ev.Name) })})
	serve(r, "127.0.0.1:1", "/evowebservices", []byte(`{"payload":{"name":"x"},"type":"inStreamClosed"}`))
	if diff := cmp.Diff([]string{"x"}, got, equateAddr()); diff != "" {
		t.Errorf("SinkFunc calls mismatch (-want +got):\n%s", diff)
	}
}

func TestMalformedWarningsRateLimited(t *testing.T) {
	var mu sync.Mutex
	now := testNow
	logs := &testkit.Buffer{}
	f := newFixture(t, Options{
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelWarn})),
		Now: func() time.Time {
			mu.Lock()
			defer mu.Unlock()
			return now
		},
	})
	bad := []byte(`{"type":"inStreamCreated","payload":{"ip":"1.2.3.4"},"padding":"` + strings.Repeat("x", 500) + `"}`)
	for range 5 {
		serve(f.r, "127.0.0.1:1", "/evowebservices/", bad)
	}
	if n := strings.Count(logs.String(), "level=WARN"); n != 1 {
		t.Fatalf("5 malformed bodies in one instant logged %d warnings, want 1:\n%s", n, logs)
	}
	if !strings.Contains(logs.String(), `body_excerpt="{\"type\":\"inStreamCreated\"`) ||
		!strings.Contains(logs.String(), `error="missing \"payload.name\""`) {
		t.Errorf("warning lacks the error or the body excerpt:\n%s", logs)
	}
	if strings.Contains(logs.String(), strings.Repeat("x", 300)) {
		t.Errorf("warning holds the whole body, want an excerpt:\n%s", logs)
	}
	mu.Lock()
	now = now.Add(complaintInterval)
	mu.Unlock()
	serve(f.r, "127.0.0.1:1", "/evowebservices/", bad)
	serve(f.r, "127.0.0.1:1", "/evowebservices/", bad)
	if n := strings.Count(logs.String(), "level=WARN"); n != 2 {
		t.Errorf("after %v, logged %d warnings in all, want 2", complaintInterval, n)
	}
	if got := f.count(TypeInStreamCreated, resultMalformed); got != 7 {
		t.Errorf("malformed count = %v, want 7 (every one counted)", got)
	}
}

func TestRecordedFixtureNamesMatchCount(t *testing.T) {
	// Guards TestRecordedEventsPostedAccepted's arithmetic: 17 files, of
	// which 4 are stream events.
	files := recordedEventFiles(t)
	stream := 0
	for _, f := range files {
		b := filepath.Base(f)
		if strings.HasPrefix(b, "ems-event-inStreamCreated-") || strings.HasPrefix(b, "ems-event-inStreamClosed-") {
			stream++
		}
	}
	if len(files) != 17 || stream != 4 {
		t.Errorf("recorded event files: %d with %d stream events, want 17 with 4", len(files), stream)
	}
}

// startSink is a fakeSink that also takes serverStarted events.
type startSink struct {
	fakeSink
	starts []netip.Addr
}

func (s *startSink) HandleServerStarted(peer netip.Addr, received time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if received != testNow {
		peer = netip.Addr{} // shows as a wrong peer
	}
	s.starts = append(s.starts, peer)
}

// TestServerStartedReachesStartSink checks that serverStarted goes, with
// its sender's address, to a Sink that takes it, and is ignored by one
// that does not.
func TestServerStartedReachesStartSink(t *testing.T) {
	body := []byte(`{"id":1,"payload":{"PID":7,"customData":null,"releaseNumber":"2.0"},"processId":7,"timestamp":1,"type":"serverStarted"}`)

	ss := &startSink{}
	f := newFixture(t, Options{Sink: ss})
	if rec := serve(f.r, "[::ffff:10.1.2.3]:5555", "/evowebservices/", body); rec.Code != http.StatusOK {
		t.Fatalf("answered %d %q, want 200", rec.Code, rec.Body)
	}
	ss.mu.Lock()
	starts, evs := ss.starts, ss.events
	ss.mu.Unlock()
	if want := []netip.Addr{netip.MustParseAddr("10.1.2.3")}; !slices.Equal(starts, want) || len(evs) != 0 {
		t.Errorf("starts %v and %d stream events, want %v and none", starts, len(evs), want)
	}
	if n := f.count("serverStarted", "accepted"); n != 1 {
		t.Errorf("accepted serverStarted counted %v times, want 1", n)
	}

	plain := newFixture(t, Options{})
	if rec := serve(plain.r, "10.1.2.3:5555", "/evowebservices/", body); rec.Code != http.StatusOK {
		t.Fatalf("answered %d %q, want 200", rec.Code, rec.Body)
	}
	if n := plain.count("serverStarted", "ignored"); n != 1 || len(plain.sink.Events()) != 0 {
		t.Errorf("a Sink without HandleServerStarted: ignored counted %v times, %d events, want 1 and none", n, len(plain.sink.Events()))
	}
}
