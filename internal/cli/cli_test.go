package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"streamlb/internal/buildinfo"
	"streamlb/internal/controller"
	"streamlb/internal/ems"
	"streamlb/internal/emsim"
	"streamlb/internal/testkit"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// runMain runs the command line and returns its exit status and output.
func runMain(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	code = Main(ctx, args, Env{Stdout: &out, Stderr: &errb})
	return code, out.String(), errb.String()
}

func writeFile(t *testing.T, name, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCheck(t *testing.T) {
	good := writeFile(t, "good.json", `"StreamLoadBalancer": {
  "plugin_switch": "enabled",
  "parameters": {
    "destination_ems_apiproxies": [
      {"enable": false, "address": "10.0.0.6"},
    ]
  }
},`)
	code, out, _ := runMain(t, "check", "-config", good)
	if code != 0 || !strings.Contains(out, "ok") {
		t.Errorf("check good: exit %d, out %q", code, out)
	}

	bad := writeFile(t, "bad.json", `{"StreamLoadBalancer": {
  "plugin_switch": "enabled",
  "parameters": {
    "destination_ems_apiproxies": [
      {"enable": false, "adress": "10.0.0.6"}
    ]
  }
}}`)
	code, _, errOut := runMain(t, "check", "-config", bad)
	if code != 1 {
		t.Errorf("check bad: exit %d, want 1", code)
	}
	for _, line := range strings.Split(strings.TrimSpace(errOut), "\n") {
		if !strings.HasPrefix(line, bad+":") {
			t.Errorf("error line %q does not start with FILE:", line)
		}
	}
	if !strings.Contains(errOut, bad+":5:25:") || !strings.Contains(errOut, `"adress"`) {
		t.Errorf("errors do not point at the unknown key:\n%s", errOut)
	}

	if code, _, _ := runMain(t, "check"); code != 2 {
		t.Errorf("check without -config: exit %d, want 2", code)
	}
	if code, _, _ := runMain(t, "nosuch"); code != 2 {
		t.Errorf("unknown command: exit %d, want 2", code)
	}
}

// newCluster starts three emulated members and returns them with a config
// file for them.
func newCluster(t *testing.T) (*emsim.Cluster, string) {
	t.Helper()
	cl, path, _ := newClusterWithUnreachable(t, 0)
	return cl, path
}

// newClusterWithUnreachable starts three emulated members and returns them
// with a config file that also lists n addresses where nothing listens
// (returned as unreachable).
func newClusterWithUnreachable(t *testing.T, n int) (cl *emsim.Cluster, path string, unreachable []string) {
	t.Helper()
	ips := emsim.RandomLoopbackIPs(3 + n)
	cl, err := emsim.Start(emsim.Config{IP: ips[0], Members: 3})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	var dests []string
	for _, ip := range ips {
		dests = append(dests, fmt.Sprintf(`{"enable": false, "address": %q}`, ip))
	}
	path = writeFile(t, "plugins.json", fmt.Sprintf(`{"StreamLoadBalancer": {"plugin_switch": "enabled",
	  "parameters": {"destination_ems_apiproxies": [%s]}}}`, strings.Join(dests, ",")))
	return cl, path, ips[3:]
}

func TestStatusSyncAndPrune(t *testing.T) {
	cl, cfg := newCluster(t)
	ms := cl.Members()
	if err := ms[0].Publish("cam"); err != nil {
		t.Fatal(err)
	}

	code, out, errOut := runMain(t, "status", "-config", cfg, "-json")
	if code != 3 {
		t.Fatalf("status before sync: exit %d, want 3 (not converged)\n%s%s", code, out, errOut)
	}
	var st controller.Status
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("stdout is not one JSON document: %v\n%s", err, out)
	}
	if st.Converged || len(st.Streams) != 1 || st.Streams[0].Replicas[ms[1].IP()].State != controller.StateMissing {
		t.Errorf("status = %+v", st)
	}

	code, out, _ = runMain(t, "sync", "-config", cfg, "-dry-run")
	if code != 0 || strings.Count(out, "would pull cam") != 2 {
		t.Errorf("sync -dry-run: exit %d\n%s", code, out)
	}
	if n := len(ms[1].PullConfigs()); n != 0 {
		t.Fatalf("dry run pulled: %d configs", n)
	}
	code, out, _ = runMain(t, "sync", "-config", cfg)
	if code != 0 || strings.Count(out, "pull cam on") != 2 {
		t.Errorf("sync: exit %d\n%s", code, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, m := range ms[1:3] { // status counts a replica present once it streams
		if err := m.AwaitInbound(ctx, "cam"); err != nil {
			t.Fatal(err)
		}
	}
	code, out, _ = runMain(t, "status", "-config", cfg)
	if code != 0 || !strings.Contains(out, "converged: true") {
		t.Errorf("status after sync: exit %d\n%s", code, out)
	}

	// A replica of this group whose origin left the group: prune removes it.
	c := ems.New(ems.Endpoint{Member: "m2", BaseURL: ms[1].APIURL()}, nil)
	if _, err := c.PullStream(ctx, ems.PullRequest{URI: "rtmp://10.9.9.9/live/gone", LocalStreamName: "gone",
		Vars: map[string]string{"_streamlb_group": "default", "_streamlb_origin": "10.9.9.9"}}); err != nil {
		t.Fatal(err)
	}
	code, out, _ = runMain(t, "prune", "-config", cfg, "-dry-run")
	if code != 0 || !strings.Contains(out, "would remove gone on") {
		t.Errorf("prune -dry-run: exit %d\n%s", code, out)
	}
	code, out, _ = runMain(t, "prune", "-config", cfg)
	if code != 0 || !strings.Contains(out, "remove gone on") {
		t.Errorf("prune: exit %d\n%s", code, out)
	}
	for _, p := range ms[1].PullConfigs() {
		if p.LocalStreamName == "gone" {
			t.Error("prune left the orphan replica")
		}
	}
}

func TestStatusOfUnreachableMembersIsNotConverged(t *testing.T) {
	ips := emsim.RandomLoopbackIPs(2)
	cfg := writeFile(t, "p.json", fmt.Sprintf(`{"StreamLoadBalancer": {"plugin_switch": "enabled",
	  "parameters": {"destination_ems_apiproxies": [{"enable": false, "address": %q}, {"enable": false, "address": %q}]}}}`, ips[0], ips[1]))
	code, out, _ := runMain(t, "status", "-config", cfg)
	if code != 3 || !strings.Contains(out, "down") {
		t.Errorf("status with no member answering: exit %d\n%s", code, out)
	}
	if code, _, _ := runMain(t, "status", "-server", "http://127.0.0.1:1"); code != 1 {
		t.Errorf("status -server unreachable: exit %d, want 1", code)
	}
}

func TestSyncAndPruneFailWhenAMemberCannotBeListed(t *testing.T) {
	cl, cfg, unreachable := newClusterWithUnreachable(t, 1)
	ms := cl.Members()
	if err := ms[0].Publish("cam"); err != nil {
		t.Fatal(err)
	}
	wantErr := "member " + unreachable[0] + " could not be listed: down"
	for _, args := range [][]string{{"sync", "-dry-run"}, {"sync"}, {"prune", "-dry-run"}, {"prune"}} {
		code, out, errOut := runMain(t, append(args, "-config", cfg)...)
		if code != 1 || !strings.Contains(errOut, wantErr) {
			t.Errorf("%v with %s unreachable: exit %d, stderr:\n%s\nwant exit 1 and %q", args, unreachable[0], code, errOut, wantErr)
		}
		if args[0] == "sync" && strings.Count(out, "pull cam on") != 2 {
			t.Errorf("%v: the members that answer are not synced:\n%s", args, out)
		}
	}
	// The members that answer got their replicas all the same.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, m := range ms[1:] {
		if err := m.AwaitInbound(ctx, "cam"); err != nil {
			t.Errorf("%s: %v", m.IP(), err)
		}
	}
}

func TestStatusTextEscapesNamesJSONKeepsThem(t *testing.T) {
	cl, cfg := newCluster(t)
	const name = "cam\x1b[31m"
	if err := cl.Members()[0].Publish(name); err != nil {
		t.Fatal(err)
	}
	_, out, errOut := runMain(t, "status", "-config", cfg)
	if strings.ContainsRune(out+errOut, 0x1b) {
		t.Errorf("status prints a raw escape character:\n%q", out+errOut)
	}
	if want := `"cam\x1b[31m"`; !strings.Contains(out, want) {
		t.Errorf("status does not show the name as %s:\n%s", want, out)
	}

	_, out, _ = runMain(t, "status", "-config", cfg, "-json")
	var st controller.Status
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status -json: %v\n%s", err, out)
	}
	if len(st.Streams) != 1 || st.Streams[0].Name != name {
		t.Errorf("status -json streams = %+v, want the one named %q exactly", st.Streams, name)
	}
}

func TestRunServesBuildInfoAndStopsWithZero(t *testing.T) {
	cl, _ := newCluster(t)
	listen := emsim.RandomLoopbackIPs(1)[0] + ":4000"
	var dests []string
	for _, m := range cl.Members() {
		dests = append(dests, fmt.Sprintf(`{"enable": false, "address": %q}`, m.IP()))
	}
	cfg := writeFile(t, "plugins.json", fmt.Sprintf(`{"StreamLoadBalancer": {"plugin_switch": "enabled",
	  "parameters": {"listen": %q, "destination_ems_apiproxies": [%s]}}}`, listen, strings.Join(dests, ",")))

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errOut testkit.Buffer
	done := make(chan int, 1)
	go func() { done <- Main(ctx, []string{"run", "-config", cfg}, Env{Stdout: &out, Stderr: &errOut}) }()

	info := buildinfo.Get()
	want := fmt.Sprintf(`streamlb_build_info{goversion=%q,revision=%q,version=%q} 1`, info.GoVersion, info.Revision, info.Version)
	client := &http.Client{Timeout: 2 * time.Second}
	var body string
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(body, want); {
		if time.Now().After(deadline) {
			t.Fatalf("within 10s /metrics did not carry %s:\n%s\n%s", want, body, errOut.String())
		}
		select {
		case code := <-done:
			t.Fatalf("run exited %d:\n%s", code, errOut.String())
		case <-time.After(20 * time.Millisecond):
		}
		resp, err := client.Get("http://" + listen + "/metrics")
		if err != nil {
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		body = string(b)
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("run exited %d when stopped, want 0\n%s", code, errOut.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("run did not stop")
	}
}
