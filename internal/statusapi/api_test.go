package statusapi

import (
	"bytes"
	"encoding/json"
	"flag"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"streamlb/internal/controller"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// get fetches url and returns the status code, headers and body.
func get(t *testing.T, url string) (int, http.Header, []byte) {
	t.Helper()
	return do(t, http.MethodGet, url)
}

func do(t *testing.T, method, url string) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, url, err)
	}
	return resp.StatusCode, resp.Header, body
}

// golden compares got with testdata/name, or rewrites it under -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("%s differs from the golden file (-want +got; go test -update rewrites it):\n%s", name, diff)
	}
}

// TestStatusGolden compares the indented document (pretty=1) with the
// golden file, and checks that the default answer is the same document,
// compact.
func TestStatusGolden(t *testing.T) {
	srv, _ := newServer(t, newFake(fixedStatus()), nil)
	code, h, body := get(t, srv.URL+"/api/v1/status?pretty=1")
	if code != http.StatusOK {
		t.Fatalf("GET /api/v1/status?pretty=1 = %d, want 200", code)
	}
	if ct := h.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	golden(t, "status.golden.json", body)
	_, _, compact := get(t, srv.URL+"/api/v1/status")
	var want bytes.Buffer
	if err := json.Compact(&want, body); err != nil {
		t.Fatal(err)
	}
	if got := bytes.TrimSpace(compact); !bytes.Equal(got, want.Bytes()) {
		t.Errorf("GET /api/v1/status is not the compact form of pretty=1:\n%s", got)
	}
}

// TestStatusShape checks the keys of DESIGN.md §4, which scripts rely on.
func TestStatusShape(t *testing.T) {
	srv, _ := newServer(t, newFake(fixedStatus()), nil)
	_, _, body := get(t, srv.URL+"/api/v1/status")
	var doc map[string]any
	if err := json.Unmarshal(body, &doc); err != nil {
		t.Fatalf("status is not a JSON object: %v\n%s", err, body)
	}
	member := doc["members"].([]any)[0].(map[string]any)
	stream := doc["streams"].([]any)[1].(map[string]any)
	replica := stream["replicas"].(map[string]any)["ems-2"].(map[string]any)
	tests := []struct {
		name string
		obj  map[string]any
		keys []string
	}{
		{"top level", doc, []string{"converged", "members", "streams", "conflicts", "queue_depth", "last_resync"}},
		{"member", member, []string{"name", "address", "api", "state", "last_error", "latency_ms"}},
		{"stream", stream, []string{"name", "origin", "replicas"}},
		{"replica", replica, []string{"state", "since", "attempts", "last_error"}},
		{"last_resync", doc["last_resync"].(map[string]any), []string{"at", "duration_ms", "calls"}},
		{"conflict", doc["conflicts"].([]any)[0].(map[string]any), []string{"stream", "member", "origin", "reason"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, k := range tt.keys {
				if _, ok := tt.obj[k]; !ok {
					t.Errorf("key %q missing from %v", k, tt.obj)
				}
			}
		})
	}
	if api := member["api"]; api != "proxy" && api != "direct" {
		t.Errorf(`members[0].api = %v, want "proxy" or "direct"`, api)
	}
	if _, ok := doc["converged"].(bool); !ok {
		t.Errorf("converged = %v, want a bool", doc["converged"])
	}
	if _, ok := doc["queue_depth"].(float64); !ok {
		t.Errorf("queue_depth = %v, want a number", doc["queue_depth"])
	}
}

// TestStatusEmptyLists checks that an empty group gives [] rather than
// null, and a null last_resync before the first resync.
func TestStatusEmptyLists(t *testing.T) {
	empty := controller.Status{Members: []controller.MemberStatus{}, Streams: []controller.StreamStatus{}, Conflicts: []controller.Conflict{}}
	srv, _ := newServer(t, newFake(empty), nil)
	_, _, body := get(t, srv.URL+"/api/v1/status")
	for _, want := range []string{`"members":[]`, `"streams":[]`, `"conflicts":[]`, `"last_resync":null`} {
		if !bytes.Contains(body, []byte(want)) {
			t.Errorf("status lacks %s:\n%s", want, body)
		}
	}
}

func TestPauseResume(t *testing.T) {
	fake := newFake(fixedStatus())
	srv, _ := newServer(t, fake, nil)
	tests := []struct {
		name       string
		path       string
		wantCode   int
		wantBody   string
		wantPaused bool
	}{
		{"pause a member", "/api/v1/members/ems-2/pause", http.StatusOK, `"paused": true`, true},
		{"pause it again", "/api/v1/members/ems-2/pause", http.StatusOK, `"paused": true`, true},
		{"resume it", "/api/v1/members/ems-2/resume", http.StatusOK, `"paused": false`, false},
		{"pause an unknown member", "/api/v1/members/nope/pause", http.StatusNotFound, `unknown member`, false},
		{"resume an unknown member", "/api/v1/members/nope/resume", http.StatusNotFound, `unknown member`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, body := do(t, http.MethodPost, srv.URL+tt.path)
			if code != tt.wantCode {
				t.Errorf("POST %s = %d, want %d", tt.path, code, tt.wantCode)
			}
			if !strings.Contains(string(body), tt.wantBody) {
				t.Errorf("POST %s body = %s, want it to contain %s", tt.path, body, tt.wantBody)
			}
			i := slices.IndexFunc(fake.Status(controller.StatusQuery{}).Members, func(m controller.MemberStatus) bool { return m.Name == "ems-2" })
			if got := fake.Status(controller.StatusQuery{}).Members[i].Paused; got != tt.wantPaused {
				t.Errorf("ems-2 paused = %v, want %v", got, tt.wantPaused)
			}
		})
	}
	t.Run("GET is not allowed", func(t *testing.T) {
		if code, _, _ := get(t, srv.URL+"/api/v1/members/ems-2/pause"); code != http.StatusMethodNotAllowed {
			t.Errorf("GET pause = %d, want 405", code)
		}
	})
}

// TestPauseRefusesCrossSiteBrowsers sends pause and resume with the
// headers a browser adds to a form or fetch from another site: 403, and the
// member stays as it was; the same requests as curl sends them pass.
func TestPauseRefusesCrossSiteBrowsers(t *testing.T) {
	fake := newFake(fixedStatus())
	srv, _ := newServer(t, fake, nil)
	paused := func() bool {
		i := slices.IndexFunc(fake.Status(controller.StatusQuery{}).Members, func(m controller.MemberStatus) bool { return m.Name == "ems-2" })
		return fake.Status(controller.StatusQuery{}).Members[i].Paused
	}
	send := func(path string, header map[string]string) (int, []byte) {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, srv.URL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range header {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, body
	}
	crossSite := []map[string]string{
		{"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"},
		{"Sec-Fetch-Site": "same-site", "Origin": "https://sub.evil.example"},
		{"Origin": "https://evil.example"}, // an older browser: no Sec-Fetch-Site
	}
	for _, h := range crossSite {
		for _, path := range []string{"/api/v1/members/ems-2/pause", "/api/v1/members/ems-2/resume"} {
			code, body := send(path, h)
			if code != http.StatusForbidden || !strings.Contains(string(body), `"error"`) {
				t.Errorf("POST %s with %v = %d %s, want 403 with a JSON error", path, h, code, body)
			}
			if paused() {
				t.Fatalf("POST %s with %v paused the member", path, h)
			}
		}
	}
	for _, h := range []map[string]string{nil, {"Sec-Fetch-Site": "same-origin"}, {"Sec-Fetch-Site": "none"}} {
		if code, body := send("/api/v1/members/ems-2/pause", h); code != http.StatusOK || !paused() {
			t.Errorf("POST pause with %v = %d %s, paused %v; want 200 and paused", h, code, body, paused())
		}
		if code, body := send("/api/v1/members/ems-2/resume", h); code != http.StatusOK || paused() {
			t.Errorf("POST resume with %v = %d %s, paused %v; want 200 and resumed", h, code, body, paused())
		}
	}
	// Reading stays open to any page that can reach it, as before.
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL+"/api/v1/status", nil)
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("cross-site GET status = %d, want 200", resp.StatusCode)
	}
}

func TestHealthz(t *testing.T) {
	srv, _ := newServer(t, newFake(fixedStatus()), nil)
	code, _, body := get(t, srv.URL+"/healthz")
	if code != http.StatusOK || !strings.Contains(string(body), `"ok"`) {
		t.Errorf("GET /healthz = %d %s, want 200 ok", code, body)
	}
}

func TestReadyz(t *testing.T) {
	fake := newFake(fixedStatus())
	srv, _ := newServer(t, fake, nil)
	if code, _, body := get(t, srv.URL+"/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("GET /readyz before the first resync = %d %s, want 503", code, body)
	}
	close(fake.ready)
	if code, _, body := get(t, srv.URL+"/readyz"); code != http.StatusOK {
		t.Errorf("GET /readyz after the first resync = %d %s, want 200", code, body)
	}
}
