package app

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"streamlb/internal/config"
	"streamlb/internal/testkit"
)

// appConfig returns the text of a config with one unreachable member and
// the extra parameters.
func appConfig(params string) string {
	return `{"StreamLoadBalancer": {"plugin_switch": "enabled", "parameters": {
		"listen": "127.0.0.1:0", ` + params + `
		"destination_ems_apiproxies": [{"enable": false, "address": "127.0.0.1", "apiPort": 1}]}}}`
}

func parseConfig(t *testing.T, params string) *config.Config {
	t.Helper()
	cfg, err := config.Parse("reload.json", []byte(appConfig(params)))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// startLogged starts an App from params, logging to the returned buffer.
func startLogged(t *testing.T, params string) (*App, *testkit.Buffer) {
	t.Helper()
	logs := &testkit.Buffer{}
	a, err := New(Options{Config: parseConfig(t, params), Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := a.Stop(ctx); err != nil {
			t.Error(err)
		}
	})
	return a, logs
}

func gauge(t *testing.T, a *App, name string) float64 {
	t.Helper()
	mfs, err := a.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("no gauge %s", name)
	return 0
}

func TestReloadRotatesTheEventsToken(t *testing.T) {
	a, _ := startLogged(t, `"events_token": "old-T0ken",`)
	base := "http://" + a.Addr() + "/evowebservices/"
	if code := postEvent(t, base+"old-T0ken/"); code != http.StatusOK {
		t.Fatalf("old token before the reload: %d, want 200", code)
	}
	startedAt := gauge(t, a, "streamlb_config_last_reload_success_timestamp_seconds")
	if ok := gauge(t, a, "streamlb_config_last_reload_successful"); ok != 1 || startedAt <= 0 {
		t.Errorf("before any reload: successful %v, timestamp %v; want 1 and the start time", ok, startedAt)
	}
	if a.Controller().Snapshot().LastReload != nil {
		t.Errorf("last_reload set before any reload")
	}

	before := time.Now()
	if err := a.Reload(parseConfig(t, `"events_token": "new-T0ken",`)); err != nil {
		t.Fatal(err)
	}
	if code := postEvent(t, base+"old-T0ken/"); code != http.StatusUnauthorized {
		t.Errorf("old token after the reload: %d, want 401", code)
	}
	if code := postEvent(t, base+"new-T0ken/"); code != http.StatusOK {
		t.Errorf("new token after the reload: %d, want 200", code)
	}
	lr := a.Controller().Snapshot().LastReload
	if lr == nil || !lr.OK || lr.Error != "" || lr.At.Before(before.Add(-time.Second)) {
		t.Errorf("last_reload after a good reload = %+v, want ok at about %v", lr, before)
	}
	goodAt := gauge(t, a, "streamlb_config_last_reload_success_timestamp_seconds")
	if ok := gauge(t, a, "streamlb_config_last_reload_successful"); ok != 1 || goodAt < float64(before.Unix()) {
		t.Errorf("after a good reload: successful %v, timestamp %v; want 1 and at least %d", ok, goodAt, before.Unix())
	}

	// A bad file: refused, said why, the running config stays.
	bad := filepath.Join(t.TempDir(), "bad.json")
	if err := os.WriteFile(bad, []byte(appConfig(`"events_token": "third-T0ken", "resync_interval": "soon",`)), 0o600); err != nil {
		t.Fatal(err)
	}
	err := a.ReloadFile(bad)
	if err == nil || !strings.Contains(err.Error(), "resync_interval") {
		t.Fatalf("reload of a bad file: %v, want an error naming resync_interval", err)
	}
	lr = a.Controller().Snapshot().LastReload
	if lr == nil || lr.OK || !strings.Contains(lr.Error, "bad.json:") || !strings.Contains(lr.Error, "resync_interval") {
		t.Errorf("last_reload after a bad reload = %+v, want not ok with the file's error", lr)
	}
	if ok := gauge(t, a, "streamlb_config_last_reload_successful"); ok != 0 {
		t.Errorf("after a bad reload: successful %v, want 0", ok)
	}
	if at := gauge(t, a, "streamlb_config_last_reload_success_timestamp_seconds"); at != goodAt {
		t.Errorf("after a bad reload the success timestamp moved from %v to %v", goodAt, at)
	}
	if code := postEvent(t, base+"new-T0ken/"); code != http.StatusOK {
		t.Errorf("token in force after the bad reload: %d, want 200", code)
	}
	if code := postEvent(t, base+"third-T0ken/"); code != http.StatusUnauthorized {
		t.Errorf("token of the refused file: %d, want 401", code)
	}
	// The status document carries it.
	code, body := get(t, "http://"+a.AdminAddr()+"/api/v1/status", "", "")
	if code != http.StatusOK || !strings.Contains(body, `"last_reload"`) || !strings.Contains(body, `"ok":false`) {
		t.Errorf("status document lacks the failed last_reload: %d %.500s", code, body)
	}
}

func TestReloadAppliesAccessAtOnce(t *testing.T) {
	a, _ := startLogged(t, ``)
	admin := "http://" + a.AdminAddr() + "/api/v1/status"
	sink := "http://" + a.Addr() + "/evowebservices/"
	if code, _ := get(t, admin, "", ""); code != http.StatusOK {
		t.Fatalf("status without a password set: %d", code)
	}
	if err := a.Reload(parseConfig(t, `"admin_password": "adm1n-pw", "allowed_sources": ["10.0.0.0/8"],`)); err != nil {
		t.Fatal(err)
	}
	if code, _ := get(t, admin, "", ""); code != http.StatusUnauthorized {
		t.Errorf("status without credentials after admin_password was set: %d, want 401", code)
	}
	if code, _ := get(t, admin, "admin", "adm1n-pw"); code != http.StatusOK {
		t.Errorf("status with the new password: %d, want 200", code)
	}
	if code := postEvent(t, sink); code != http.StatusForbidden {
		t.Errorf("event from loopback outside the new allowed_sources: %d, want 403", code)
	}
	if err := a.Reload(parseConfig(t, `"allowed_sources": ["127.0.0.0/8"],`)); err != nil {
		t.Fatal(err)
	}
	if code, _ := get(t, admin, "", ""); code != http.StatusOK {
		t.Errorf("status after admin_password was removed: %d, want 200", code)
	}
	if code := postEvent(t, sink); code != http.StatusOK {
		t.Errorf("event from inside allowed_sources: %d, want 200", code)
	}
}

func TestReloadNamesTheSettingsThatNeedARestart(t *testing.T) {
	a, logs := startLogged(t, ``)
	if err := a.Reload(parseConfig(t, `"group": "other", "app_name": "vod",`)); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "take effect at the next restart") || !strings.Contains(logs.String(), "keys=\"[group app_name]\"") {
		t.Errorf("reload log does not name exactly group and app_name:\n%s", logs)
	}
	// The sink still answers on the address it started with.
	if code := postEvent(t, "http://"+a.Addr()+"/evowebservices/"); code != http.StatusOK {
		t.Errorf("event after the reload: %d", code)
	}
	seen := len(logs.String())
	if err := a.Reload(parseConfig(t, ``)); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(logs.String()[seen:], "next restart") {
		t.Errorf("reload back to the running settings still asks for a restart:\n%s", logs)
	}
}

// TestCrossSiteBrowserRequestsRefused drives the daemon as a browser on
// another site would, and as curl and EMS do.
func TestCrossSiteBrowserRequestsRefused(t *testing.T) {
	for _, params := range []string{``, `"admin_listen": "127.0.0.1:0",`} {
		t.Run("params "+params, func(t *testing.T) {
			a, _ := startLogged(t, params)
			admin := "http://" + a.AdminAddr()
			send := func(url string, header map[string]string, body string) int {
				t.Helper()
				req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, url, strings.NewReader(body))
				if err != nil {
					t.Fatal(err)
				}
				req.Header.Set("Content-Type", "application/json")
				for k, v := range header {
					req.Header.Set(k, v)
				}
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				return resp.StatusCode
			}
			browser := map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"}
			for _, route := range []string{"/api/v1/members/127.0.0.1/pause", "/api/v1/members/127.0.0.1/resume"} {
				if code := send(admin+route, browser, ""); code != http.StatusForbidden {
					t.Errorf("cross-site POST %s: %d, want 403", route, code)
				}
				if a.Controller().Snapshot().Members[0].Paused {
					t.Fatalf("cross-site POST %s paused the member", route)
				}
			}
			if code := send(admin+"/api/v1/members/127.0.0.1/pause", nil, ""); code != http.StatusOK || !a.Controller().Snapshot().Members[0].Paused {
				t.Errorf("curl-like pause: %d, want 200 and the member paused", code)
			}
			if code := send(admin+"/api/v1/members/127.0.0.1/resume", nil, ""); code != http.StatusOK || a.Controller().Snapshot().Members[0].Paused {
				t.Errorf("curl-like resume: %d, want 200 and the member resumed", code)
			}
			// EMS posts with no browser headers at all.
			sink := "http://" + a.Addr() + "/evowebservices/"
			if code := send(sink, nil, serverStarted); code != http.StatusOK {
				t.Errorf("event as EMS posts it (no Sec-Fetch-Site, no Origin): %d, want 200", code)
			}
			if code := send(sink, browser, serverStarted); code != http.StatusForbidden {
				t.Errorf("event posted by a page of another site: %d, want 403", code)
			}
		})
	}
}

// TestStopWithAClientHoldingItsBody: a client that sent its headers and
// holds its body back does not make the stop fail or overrun its deadline.
func TestStopWithAClientHoldingItsBody(t *testing.T) {
	a, err := New(Options{Config: parseConfig(t, `"admin_listen": "127.0.0.1:0",`)})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for _, addr := range []string{a.Addr(), a.AdminAddr()} {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		if _, err := fmt.Fprintf(c, "POST /evowebservices/ HTTP/1.1\r\nHost: sink\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n{", len(serverStarted)); err != nil {
			t.Fatal(err)
		}
	}
	// The server has taken the held requests in hand once a request
	// after them on the same listener is answered.
	if code := postEvent(t, "http://"+a.Addr()+"/evowebservices/"); code != http.StatusOK {
		t.Fatalf("event beside the held one: %d", code)
	}
	const deadline = 2 * time.Second // shorter than the receiver's body timeout
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	start := time.Now()
	err = a.Stop(ctx)
	took := time.Since(start)
	if err != nil {
		t.Errorf("Stop with a client holding its body: %v, want nil", err)
	}
	if took > deadline+500*time.Millisecond {
		t.Errorf("Stop took %v, deadline %v", took, deadline)
	}
	for _, c := range conns {
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := io.Copy(io.Discard, bufio.NewReader(c)); err != nil && isTimeout(err) {
			t.Errorf("the held connection is still open after Stop")
		}
	}
}

func TestReloadMetricsOnTheInjectedRegistry(t *testing.T) {
	a, _ := startLogged(t, ``)
	for _, name := range []string{"streamlb_config_last_reload_successful", "streamlb_config_last_reload_success_timestamp_seconds"} {
		if n, err := testutil.GatherAndCount(a.Registry(), name); err != nil || n != 1 {
			t.Errorf("%s: %d series (%v), want 1", name, n, err)
		}
	}
}
