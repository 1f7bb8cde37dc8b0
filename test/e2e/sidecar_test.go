package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"streamlb/internal/app"
	"streamlb/internal/config"
	"streamlb/internal/emsim"
)

// TestMeshOfSidecarsMakesNoReplicaOfAReplica runs one streamlb beside each
// of three EMS, as the original plugin was deployed: each EMS posts its
// events to its own streamlb, whose host is that EMS and whose
// destinations are the others.
func TestMeshOfSidecarsMakesNoReplicaOfAReplica(t *testing.T) {
	ips := emsim.RandomLoopbackIPs(3)
	var members []*emsim.Member
	var apps []*app.App
	for i, ip := range ips {
		ln := listenLoopback(t)
		cl, err := emsim.Start(emsim.Config{IP: ip, EventsURL: "http://" + ln.Addr().String() + "/evowebservices/"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cl.Close() })
		members = append(members, cl.Members()[0])
		var dests []string
		for j, other := range ips {
			if j != i {
				dests = append(dests, fmt.Sprintf(`{"enable": false, "address": %q, "name": "m%d"}`, other, j+1))
			}
		}
		text := fmt.Sprintf(`"StreamLoadBalancer": {"plugin_switch": "enabled", "parameters": {
			"listen": %q, "resync_interval": "2s", "teardown_grace": "2s",
			"host": {"address": %q, "api": "http://%s:7777", "name": "m%d"},
			"destination_ems_apiproxies": [%s]}},`, ln.Addr().String(), ip, ip, i+1, strings.Join(dests, ", "))
		cfg, err := config.Parse(fmt.Sprintf("sidecar%d.json", i+1), []byte(text))
		if err != nil {
			t.Fatalf("%v\n%s", err, text)
		}
		a, err := app.New(app.Options{Config: cfg, SinkListener: ln, RetryBase: 100 * time.Millisecond, RetryMax: 2 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		if err := a.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			a.Stop(ctx)
		})
		apps = append(apps, a)
	}
	for i, m := range members {
		if err := m.Publish(fmt.Sprintf("src%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	for i := range members {
		name := fmt.Sprintf("src%d", i)
		uri := "rtmp://" + ips[i] + "/live/" + name
		for j, m := range members {
			if j != i {
				eventually(t, 3*time.Second, fmt.Sprintf("member %d pulls %s", j, name), func() bool { return hasReplica(m, name, uri) })
			}
		}
	}
	for _, a := range apps {
		eventually(t, 5*time.Second, "every sidecar converged", func() bool { return a.Controller().Snapshot().Converged })
	}
	for j, m := range members {
		for _, c := range m.PullConfigs() {
			var origin int
			fmt.Sscanf(c.LocalStreamName, "src%d", &origin)
			if want := "rtmp://" + ips[origin] + "/live/" + c.LocalStreamName; c.URI != want || origin == j {
				t.Errorf("member %d: %s pulls %s, want only %s from its origin", j, c.LocalStreamName, c.URI, want)
			}
		}
		if n := len(m.PullConfigs()); n != 2 {
			t.Errorf("member %d holds %d pull configs, want 2", j, n)
		}
	}
}

// TestReloadAddsAMemberAndFillsIt sends SIGHUP to a running streamlb after
// adding a member to its config: the new member is filled, the others keep
// their state; a broken config is refused and the old one stays.
func TestReloadAddsAMemberAndFillsIt(t *testing.T) {
	ips := emsim.RandomLoopbackIPs(3)
	sink := freePort(t)
	events := "http://" + sink + "/evowebservices/"
	for _, ip := range ips {
		startEmsim(t, ip, events, "", false)
	}
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "plugins.json")
	write := func(n int, extra string) {
		var dests []string
		for _, ip := range ips[:n] {
			dests = append(dests, fmt.Sprintf(`{"enable": false, "address": %q}`, ip))
		}
		text := fmt.Sprintf(`{"StreamLoadBalancer": {"plugin_switch": "enabled", "parameters": {
			"listen": %q, "resync_interval": "30s", %s
			"destination_ems_apiproxies": [%s]}}}`, sink, extra, strings.Join(dests, ", "))
		if err := os.WriteFile(cfgPath, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(2, "")
	lb := startProc(t, streamlbBin, "run", "-config", cfgPath)
	eventually(t, 10*time.Second, "streamlb answers", func() bool {
		return exitCode(streamlbBin, "status", "-server", "http://"+sink) == 0
	})
	c0 := directClient(ips[0])
	if err := publishVia(c0, ips[0], "cam"); err != nil {
		t.Fatal(err)
	}
	uri := "rtmp://" + ips[0] + "/live/cam"
	eventually(t, 3*time.Second, "member 2 pulls cam", func() bool { return holds(t, ips[1], "cam", uri) })
	if len(listConfig(t, ips[2])) != 0 {
		t.Fatal("the member not yet in the config got a replica")
	}

	// A broken config is refused; the running one stays.
	if err := os.WriteFile(cfgPath, []byte(`{"StreamLoadBalancer": {"plugin_switch": "enabled", "parameters": {"bogus": 1}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	lb.cmd.Process.Signal(syscall.SIGHUP)
	eventually(t, 5*time.Second, "reload refused in the log", func() bool { return strings.Contains(lb.out.String(), "reload refused") })
	if !strings.Contains(lb.out.String(), `unknown key \"bogus\"`) && !strings.Contains(lb.out.String(), `unknown key "bogus"`) {
		t.Errorf("the refusal does not say what is wrong:\n%s", lb.out.String())
	}

	// The third member added: filled without waiting for the resync.
	write(3, "")
	lb.cmd.Process.Signal(syscall.SIGHUP)
	eventually(t, 5*time.Second, "the added member is filled", func() bool { return holds(t, ips[2], "cam", uri) })
	if code := lb.stop(syscall.SIGINT); code != 0 {
		t.Errorf("exit status %d on SIGINT", code)
	}
}
