package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"streamlb/internal/ems"
	"streamlb/internal/emsim"
	"streamlb/internal/testkit"
)

// proc is a program started by a test and killed at its end.
type proc struct {
	t    *testing.T
	cmd  *exec.Cmd
	args []string
	out  *testkit.Buffer
	done chan error
}

func startProc(t *testing.T, bin string, args ...string) *proc {
	t.Helper()
	p := &proc{t: t, args: args, out: &testkit.Buffer{}}
	p.start(bin)
	t.Cleanup(func() { p.kill() })
	return p
}

func (p *proc) start(bin string) {
	p.t.Helper()
	p.cmd = exec.Command(bin, p.args...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	p.done = make(chan error, 1)
	go func(cmd *exec.Cmd, done chan error) { done <- cmd.Wait() }(p.cmd, p.done)
}

// kill sends SIGKILL and waits for the process to go.
func (p *proc) kill() {
	if p.cmd == nil || p.cmd.Process == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
	p.cmd = nil
}

// signal sends sig and waits for the exit status.
func (p *proc) stop(sig os.Signal) int {
	p.t.Helper()
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		p.t.Fatalf("%s did not stop on %v:\n%s", p.cmd.Path, sig, p.out.String())
	}
	code := p.cmd.ProcessState.ExitCode()
	p.cmd = nil
	return code
}

// startEmsim runs one emulated member as its own process and waits until
// its API answers.
func startEmsim(t *testing.T, ip, events, state string, proxy bool) *proc {
	t.Helper()
	args := []string{"-ip", ip, "-events", events}
	if state != "" {
		args = append(args, "-state", state)
	}
	if proxy {
		args = append(args, "-ews-port", strconv.Itoa(ewsPort), "-user", proxyUser, "-password", proxyPassword)
	}
	p := startProc(t, emsimBin, args...)
	waitAPI(t, ip)
	return p
}

func waitAPI(t *testing.T, ip string) {
	t.Helper()
	c := ems.New(ems.Endpoint{Member: ip, BaseURL: "http://" + ip + ":7777"}, nil)
	eventually(t, 10*time.Second, "emsim on "+ip+" answers", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := c.Version(ctx)
		return err == nil
	})
}

// listConfig returns name → uris of a member's pull configs, over HTTP.
func listConfig(t *testing.T, ip string) map[string][]string {
	t.Helper()
	c := ems.New(ems.Endpoint{Member: ip, BaseURL: "http://" + ip + ":7777"}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cfgs, err := c.ListConfig(ctx)
	if err != nil {
		return nil
	}
	out := map[string][]string{}
	for _, cfg := range cfgs {
		out[cfg.LocalStreamName] = append(out[cfg.LocalStreamName], cfg.URI)
	}
	return out
}

func holds(t *testing.T, ip, name, uri string) bool {
	u := listConfig(t, ip)[name]
	return len(u) == 1 && u[0] == uri
}

// TestNewUserScenario is the balancer issue's "done when", as a new user
// would try it: three emsim programs (one behind the API proxy with
// credentials), a config in the seed's format with comments, streamlb run.
func TestNewUserScenario(t *testing.T) {
	ips := emsim.RandomLoopbackIPs(3)
	sink := freePort(t)
	events := "http://" + sink + "/evowebservices/"
	dir := t.TempDir()
	state3 := filepath.Join(dir, "m3.state")
	members := []*proc{
		startEmsim(t, ips[0], events, "", true),
		startEmsim(t, ips[1], events, "", false),
		startEmsim(t, ips[2], events, state3, false),
	}
	cfgPath := filepath.Join(dir, "plugins.json")
	cfg := fmt.Sprintf(`"StreamLoadBalancer": {
    "plugin_switch": "enabled",
    "parameters": {
        "listen": %q,
        "resync_interval": "3s",
        "teardown_grace": "2s",
        "destination_ems_apiproxies": [
            {
                /* for Enabled API Proxy */
                "enable" : true,
                "authentication": "basic",
                "pseudoDomain": "apiproxy",
                "address": %q,
                "ewsPort": %d,
                "userName": %q,
                "password": %q
            },
            {
                /* for Disabled API Proxy */
                "enable" : false,
                "address": %q,
            },
            {"enable": false, "address": %q},
        ]
    }
},
`, sink, ips[0], ewsPort, proxyUser, proxyPassword, ips[1], ips[2])
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	lb := startProc(t, streamlbBin, "run", "-config", cfgPath)
	eventually(t, 10*time.Second, "streamlb ready", func() bool {
		return exec.Command(streamlbBin, "status", "-server", "http://"+sink).Run() == nil
	})

	// A stream pulled from an external camera on member 1.
	c1 := ems.New(ems.Endpoint{Member: ips[0], BaseURL: "http://" + ips[0] + ":7777"}, nil)
	if _, err := c1.PullStream(context.Background(), ems.PullRequest{URI: "rtsp://camera1.example.invalid/live", LocalStreamName: "lobby"}); err != nil {
		t.Fatal(err)
	}
	uri1 := "rtmp://" + ips[0] + "/live/lobby"
	for _, ip := range ips[1:] {
		eventually(t, 2*time.Second, ip+" pulls lobby", func() bool { return holds(t, ip, "lobby", uri1) })
	}

	// Member 3 killed, a second stream created, member 3 restarted.
	members[2].kill()
	if _, err := c1.PullStream(context.Background(), ems.PullRequest{URI: "rtsp://camera2.example.invalid/live", LocalStreamName: "parking"}); err != nil {
		t.Fatal(err)
	}
	uri2 := "rtmp://" + ips[0] + "/live/parking"
	eventually(t, 2*time.Second, "member 2 pulls parking", func() bool { return holds(t, ips[1], "parking", uri2) })
	restarted := time.Now()
	members[2] = startEmsim(t, ips[2], events, state3, false)
	eventually(t, 3*time.Second+3*time.Second, "member 3 holds both", func() bool {
		return holds(t, ips[2], "lobby", uri1) && holds(t, ips[2], "parking", uri2)
	})
	t.Logf("member 3 refilled %v after its restart", time.Since(restarted))

	// The source removed on member 1: its replicas go after the grace.
	cfgs, err := c1.ListConfig(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cfgs {
		if c.LocalStreamName == "lobby" {
			if err := c1.RemoveConfig(context.Background(), c.ConfigID); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, ip := range ips[1:] {
		eventually(t, 6*time.Second, ip+" drops lobby", func() bool { return len(listConfig(t, ip)["lobby"]) == 0 })
	}

	// No member ever pulls from a member that is not the origin.
	for _, ip := range ips {
		for name, uris := range listConfig(t, ip) {
			for _, u := range uris {
				if strings.HasPrefix(u, "rtmp://") && u != "rtmp://"+ips[0]+"/live/"+name {
					t.Errorf("%s pulls %s from %s", ip, name, u)
				}
			}
		}
	}

	out, err := exec.Command(streamlbBin, "status", "-config", cfgPath, "-json").Output()
	if err != nil {
		t.Fatalf("status -config -json: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), `"converged": true`) {
		t.Errorf("status says not converged:\n%s", out)
	}
	if strings.Contains(string(out), proxyPassword) || strings.Contains(lb.out.String(), proxyPassword) {
		t.Error("the proxy password appears in status or logs")
	}
	if code := lb.stop(syscall.SIGTERM); code != 0 {
		t.Errorf("streamlb exited %d on SIGTERM:\n%s", code, lb.out.String())
	}
}

func TestRestartedMembersAreRefilledOrKeptFromState(t *testing.T) {
	ips := emsim.RandomLoopbackIPs(3)
	ln := listenLoopback(t)
	events := "http://" + ln.Addr().String() + "/evowebservices/"
	dir := t.TempDir()
	p := []*proc{
		startEmsim(t, ips[0], events, "", false),
		startEmsim(t, ips[1], events, "", false),
		startEmsim(t, ips[2], events, filepath.Join(dir, "m3.state"), false),
	}
	g := &group{t: t, ips: ips}
	g.startApp(groupOpts{members: []memberConf{{}, {}, {}}, resync: 2 * time.Second, grace: 3 * time.Second}, ln)
	c0 := ems.New(ems.Endpoint{Member: ips[0], BaseURL: "http://" + ips[0] + ":7777"}, nil)
	if _, err := c0.PullStream(context.Background(), ems.PullRequest{URI: "rtsp://cam.example.invalid/a", LocalStreamName: "a"}); err != nil {
		t.Fatal(err)
	}
	uri := "rtmp://" + ips[0] + "/live/a"
	for _, ip := range ips[1:] {
		eventually(t, 2*time.Second, ip+" pulls a", func() bool { return holds(t, ip, "a", uri) })
	}
	// Member 2 restarted empty: refilled.
	p[1].kill()
	p[1] = startEmsim(t, ips[1], events, "", false)
	eventually(t, 5*time.Second, "member 2 refilled", func() bool { return holds(t, ips[1], "a", uri) })

	// Member 3 restarted from its state file: keeps its replica, and is
	// not pulled twice.
	pullsBefore := counterSum(t, g.app.Registry(), "streamlb_ems_calls_total", map[string]string{"member": "m3", "command": "pullStream"})
	p[2].kill()
	p[2] = startEmsim(t, ips[2], events, filepath.Join(dir, "m3.state"), false)
	if !holds(t, ips[2], "a", uri) {
		t.Fatalf("member 3 lost its replica over a restart with -state: %v", listConfig(t, ips[2]))
	}
	eventually(t, 5*time.Second, "member 3 back up in status", func() bool {
		for _, m := range g.app.Controller().Snapshot().Members {
			if m.Name == "m3" {
				return m.State == "up"
			}
		}
		return false
	})
	// A resync begun after its return has listed it and done its work: a
	// needless pull would have been made.
	resyncedSince(t, g.app, time.Now(), 5*time.Second)
	g.converged(5 * time.Second)
	pullsAfter := counterSum(t, g.app.Registry(), "streamlb_ems_calls_total", map[string]string{"member": "m3", "command": "pullStream"})
	if pullsAfter != pullsBefore {
		t.Errorf("member 3 got %v pullStream calls after a restart that kept its replica", pullsAfter-pullsBefore)
	}
	if u := listConfig(t, ips[2])["a"]; len(u) != 1 {
		t.Errorf("member 3 holds %v, want one config", u)
	}
}

// freePort returns a loopback host:port that was free a moment ago, for a
// program that binds it itself.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func directClient(ip string) *ems.Client {
	return ems.New(ems.Endpoint{Member: ip, BaseURL: "http://" + ip + ":7777"}, nil)
}

// publishVia makes the member at ip pull an external camera as name.
func publishVia(c *ems.Client, ip, name string) error {
	_, err := c.PullStream(context.Background(), ems.PullRequest{URI: "rtsp://cam.example.invalid/" + name, LocalStreamName: name})
	return err
}

// exitCode runs a program and returns its exit status.
func exitCode(bin string, args ...string) int {
	cmd := exec.Command(bin, args...)
	if err := cmd.Run(); err != nil {
		if cmd.ProcessState != nil {
			return cmd.ProcessState.ExitCode()
		}
		return -1
	}
	return 0
}
