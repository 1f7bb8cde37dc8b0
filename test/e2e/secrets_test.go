package e2e

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"streamlb/internal/app"
	"streamlb/internal/cli"
	"streamlb/internal/config"
	"streamlb/internal/emsim"
)

// Credentials that must never come out of streamlb: distinctive, so that a
// match cannot be an accident.
const (
	secretPassword = "Zq7-Unmistakable-ProxyPw-31337"
	wrongPassword  = "Wr0ng-Unmistakable-ProxyPw-27182"
	secretToken    = "tok-Unmistakable_Events-4242"
	adminPassword  = "adm-Unmistakable-AdminPw-161"
	wrongAdmin     = "adm-Unmistakable-WrongAdmin-99"
	secretUser     = "operator"
)

// secrets returns every form in which a credential could leak: as is,
// percent-escaped, and base64 (alone, and as HTTP Basic user:password).
func secrets() []string {
	var out []string
	for _, s := range []string{secretPassword, wrongPassword, secretToken, adminPassword, wrongAdmin} {
		out = append(out, s, url.QueryEscape(s),
			base64.StdEncoding.EncodeToString([]byte(s)),
			base64.StdEncoding.EncodeToString([]byte(secretUser+":"+s)),
			base64.StdEncoding.EncodeToString([]byte("admin:"+s)),
			base64.URLEncoding.EncodeToString([]byte(s)))
	}
	return out
}

// transcript gathers everything streamlb printed, served or answered.
type transcript struct {
	mu    sync.Mutex
	parts map[string]*bytes.Buffer
}

func (tr *transcript) part(name string) *bytes.Buffer {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if tr.parts == nil {
		tr.parts = map[string]*bytes.Buffer{}
	}
	if tr.parts[name] == nil {
		tr.parts[name] = &bytes.Buffer{}
	}
	return tr.parts[name]
}

// writer returns a concurrency-safe writer appending to part name.
func (tr *transcript) writer(name string) io.Writer {
	b := tr.part(name)
	return writerFunc(func(p []byte) (int, error) {
		tr.mu.Lock()
		defer tr.mu.Unlock()
		return b.Write(p)
	})
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// get fetches url (with the admin credentials when admin) into part name.
func (tr *transcript) get(t *testing.T, name, url string, admin bool) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if admin {
		req.SetBasicAuth("admin", adminPassword)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	w := tr.writer(name)
	fmt.Fprintf(w, "%s %s\n", resp.Status, resp.Header)
	io.Copy(w, resp.Body)
	if admin && resp.StatusCode != http.StatusOK {
		t.Errorf("GET %s: %s", url, resp.Status)
	}
}

// post posts body to url into part name and returns the status code.
func (tr *transcript) post(t *testing.T, name, url, body string) int {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	w := tr.writer(name)
	fmt.Fprintf(w, "%s %s\n", resp.Status, resp.Header)
	io.Copy(w, resp.Body)
	return resp.StatusCode
}

// command runs a streamlb subcommand in process, its output into the
// transcript.
func (tr *transcript) command(ctx context.Context, args ...string) int {
	name := strings.Join(args, " ")
	return cli.Main(ctx, args, cli.Env{Stdout: tr.writer(name + " (stdout)"), Stderr: tr.writer(name + " (stderr)")})
}

// TestCredentialsNeverAppearInAnyOutput runs the balancer through the e2e
// scenarios (replication through an API proxy, wrong credentials, a member
// down, refused events, reloads, the command line) with distinctive
// credentials, and searches everything it logged (text and JSON), served
// (status, metrics, dashboard, events) or printed for them.
func TestCredentialsNeverAppearInAnyOutput(t *testing.T) {
	tr := &transcript{}
	t.Cleanup(func() {
		if t.Failed() {
			for name, b := range tr.parts {
				t.Logf("--- %s ---\n%.4000s", name, b.String())
			}
		}
	})
	dir := t.TempDir()
	ips := emsim.RandomLoopbackIPs(4)
	ln := listenLoopback(t)
	base := "http://" + ln.Addr().String()
	cl, err := emsim.Start(emsim.Config{IP: ips[0], Members: len(ips), EWSPort: ewsPort, User: secretUser, Password: secretPassword,
		EventsURL: base + "/evowebservices/" + secretToken + "/"})
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	pwFile := filepath.Join(dir, "m1.password")
	if err := os.WriteFile(pwFile, []byte(secretPassword+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("STREAMLB_E2E_M2_PASSWORD", wrongPassword)
	t.Setenv("STREAMLB_E2E_M3_PASSWORD", secretPassword)
	configFor := func(listen string) string {
		return fmt.Sprintf(`{"StreamLoadBalancer": {"plugin_switch": "enabled", "parameters": {
	"listen": %q, "resync_interval": "2s", "teardown_grace": "1s",
	"events_token": %q, "admin_password": %q,
	"destination_ems_apiproxies": [
		{"enable": true, "authentication": "basic", "pseudoDomain": "apiproxy", "address": %q, "ewsPort": %d, "userName": %q, "passwordFile": %q, "name": "m1"},
		{"enable": true, "authentication": "basic", "pseudoDomain": "apiproxy", "address": %q, "ewsPort": %d, "userName": %q, "passwordEnv": "STREAMLB_E2E_M2_PASSWORD", "name": "m2"},
		{"enable": true, "authentication": "basic", "pseudoDomain": "apiproxy", "address": %q, "ewsPort": %d, "userName": %q, "passwordEnv": "STREAMLB_E2E_M3_PASSWORD", "proxyStyle": "encoded", "name": "m3"},
		{"enable": false, "address": %q, "name": "m4"}
	]}}}`, listen, secretToken, adminPassword,
			ips[0], ewsPort, secretUser, pwFile, ips[1], ewsPort, secretUser, ips[2], ewsPort, secretUser, ips[3])
	}
	cfgPath := filepath.Join(dir, "plugins.json")
	if err := os.WriteFile(cfgPath, []byte(configFor(ln.Addr().String())), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	logger := slog.New(fanout{
		slog.NewTextHandler(tr.writer("log (text)"), &slog.HandlerOptions{Level: slog.LevelDebug}),
		slog.NewJSONHandler(tr.writer("log (json)"), &slog.HandlerOptions{Level: slog.LevelDebug}),
	})
	a, err := app.New(app.Options{Config: cfg, Logger: logger, SinkListener: ln, RetryBase: 100 * time.Millisecond, RetryMax: time.Second})
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := a.Stop(ctx); err != nil {
			t.Errorf("stop: %v", err)
		}
	})
	ms := cl.Members()

	// Replication through the API proxies; m2's wrong password parks it.
	if err := ms[3].Publish("lobby"); err != nil {
		t.Fatal(err)
	}
	for _, i := range []int{0, 2} {
		eventually(t, 3*time.Second, fmt.Sprintf("m%d pulls lobby", i+1), func() bool { return len(pullsOf(ms[i], "lobby")) == 1 })
	}
	eventually(t, 3*time.Second, "m2 unauthorized", func() bool {
		for _, m := range a.Controller().Snapshot().Members {
			if m.Name == "m2" {
				return m.State == "unauthorized"
			}
		}
		return false
	})
	// A member down and back, a source ending, a conflict.
	ms[2].SetFaults(emsim.Faults{Down: true})
	eventually(t, 5*time.Second, "m3 down", func() bool { return a.Controller().Snapshot().Members[2].State == "down" })
	ms[2].SetFaults(emsim.Faults{})
	if err := ms[0].Publish("yard"); err != nil {
		t.Fatal(err)
	}
	if err := ms[3].Unpublish("lobby"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "m3 back and holding yard", func() bool { return len(pullsOf(ms[2], "yard")) == 1 })

	// Events refused and accepted, malformed bodies.
	sink := base + "/evowebservices/"
	for _, u := range []string{sink, sink + "wrong/", sink + "?token=" + wrongAdmin, sink + secretToken + "x/"} {
		if code := tr.post(t, "refused events", u, created(ips[0], "x")); code != http.StatusUnauthorized {
			t.Errorf("event without the token: %d, want 401", code)
		}
	}
	tr.post(t, "malformed event", sink+secretToken+"/", `{"type":"inStreamCreated","payload":{"name":`)
	tr.post(t, "accepted event", sink+secretToken+"/", created(ips[0], "yard"))

	// Everything the daemon serves.
	for _, p := range []string{"/api/v1/status", "/metrics", "/", "/api/v1/events", "/healthz", "/readyz", "/assets/dashboard.js"} {
		tr.get(t, "GET "+p, base+p, true)
	}
	tr.get(t, "GET /api/v1/status (no credentials)", base+"/api/v1/status", false)
	req, _ := http.NewRequest(http.MethodPost, base+"/api/v1/members/m2/pause", nil)
	req.SetBasicAuth("admin", adminPassword)
	if resp, err := http.DefaultClient.Do(req); err == nil {
		io.Copy(tr.writer("pause"), resp.Body)
		resp.Body.Close()
	}

	// A reload with m2's password fixed.
	t.Setenv("STREAMLB_E2E_M2_PASSWORD", secretPassword)
	next, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Reload(next); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "m2 up after the reload", func() bool { return a.Controller().Snapshot().Members[1].State == "up" })
	t.Setenv("STREAMLB_E2E_M2_PASSWORD", wrongPassword)

	// The command line: status, check, sync, against good and bad input.
	ctx := context.Background()
	tr.command(ctx, "status", "-config", cfgPath, "-json")
	tr.command(ctx, "status", "-config", cfgPath)
	tr.command(ctx, "status", "-server", base, "-json")
	tr.command(ctx, "status", "-server", "http://admin:"+adminPassword+"@"+ln.Addr().String(), "-json")
	tr.command(ctx, "status", "-server", "http://admin:"+wrongAdmin+"@"+ln.Addr().String())
	tr.command(ctx, "status", "-server", "http://admin:"+wrongAdmin+"@127.0.0.1:1")
	tr.command(ctx, "check", "-config", cfgPath)
	tr.command(ctx, "sync", "-config", cfgPath, "-dry-run")
	bad := filepath.Join(dir, "bad.json")
	badText := strings.Replace(configFor(ln.Addr().String()), `"passwordEnv": "STREAMLB_E2E_M3_PASSWORD"`,
		`"passwordEnv": "STREAMLB_E2E_M3_PASSWORD", "password": "`+secretPassword+`", "pasword": "`+secretPassword+`"`, 1)
	badText = strings.Replace(badText, `"events_token": "`+secretToken+`"`, `"events_token": "`+secretToken+` !"`, 1)
	if err := os.WriteFile(bad, []byte(badText), 0o600); err != nil {
		t.Fatal(err)
	}
	if code := tr.command(ctx, "check", "-config", bad); code != 1 {
		t.Errorf("check of a bad config: exit %d, want 1", code)
	}
	tr.command(ctx, "status", "-config", bad)

	// The daemon itself, in both log formats, against the same group.
	for _, format := range []string{"text", "json"} {
		own := filepath.Join(dir, "own-"+format+".json")
		if err := os.WriteFile(own, []byte(configFor("127.0.0.1:0")), 0o600); err != nil {
			t.Fatal(err)
		}
		rctx, cancel := context.WithCancel(ctx)
		done := make(chan int)
		args := []string{"run", "-config", own, "-log-format", format, "-log-level", "debug"}
		name := strings.Join(args, " ")
		out := tr.part(name + " (stderr)")
		go func() { done <- tr.command(rctx, args...) }()
		eventually(t, 10*time.Second, "the daemon lists the members", func() bool {
			tr.mu.Lock()
			defer tr.mu.Unlock()
			return strings.Contains(out.String(), "wrong credentials")
		})
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("%s: exit %d", name, code)
		}
	}

	tr.mu.Lock()
	defer tr.mu.Unlock()
	for name, b := range tr.parts {
		for _, s := range secrets() {
			if i := strings.Index(b.String(), s); i >= 0 {
				t.Errorf("%s shows a credential (%q) at byte %d: …%s…", name, s[:4]+"…", i, b.String()[max(0, i-60):i])
			}
		}
	}
	for _, name := range []string{"log (text)", "log (json)", "GET /metrics", "GET /", "GET /api/v1/status"} {
		if n := tr.parts[name].Len(); n < 200 {
			t.Errorf("%s: only %d bytes captured", name, n)
		}
	}
}

// fanout is a slog.Handler writing every record to each of its handlers.
type fanout []slog.Handler

func (f fanout) Enabled(ctx context.Context, l slog.Level) bool {
	for _, h := range f {
		if h.Enabled(ctx, l) {
			return true
		}
	}
	return false
}

func (f fanout) Handle(ctx context.Context, r slog.Record) error {
	for _, h := range f {
		if h.Enabled(ctx, r.Level) {
			if err := h.Handle(ctx, r.Clone()); err != nil {
				return err
			}
		}
	}
	return nil
}

func (f fanout) WithAttrs(as []slog.Attr) slog.Handler {
	out := make(fanout, len(f))
	for i, h := range f {
		out[i] = h.WithAttrs(as)
	}
	return out
}

func (f fanout) WithGroup(name string) slog.Handler {
	out := make(fanout, len(f))
	for i, h := range f {
		out[i] = h.WithGroup(name)
	}
	return out
}
