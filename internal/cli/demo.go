package cli

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"time"

	"streamlb/internal/app"
	"streamlb/internal/config"
	"streamlb/internal/controller"
	"streamlb/internal/ems"
	"streamlb/internal/emsim"
	"streamlb/internal/receiver"
)

// Demo defaults: the members' addresses and the API proxy's settings.
const (
	demoFirstIP  = "127.0.0.11"
	demoEWSPort  = 8888
	demoUser     = "demo"
	demoPassword = "demo-password"
)

func demoCmd(ctx context.Context, env Env, args []string) int {
	fs := newFlags(env, "demo")
	members := fs.Int("members", 3, "emulated EMS members (2 to 50)")
	listen := fs.String("listen", "127.0.0.1:4000", "`ADDR` of the dashboard, status API and event sink (a loopback host:port)")
	firstIP := fs.String("ip", demoFirstIP, "the first emulated member's `IP` address; the others follow it")
	logLevel := fs.String("log-level", "warn", "log `LEVEL` of the balancer: debug, info, warn or error")
	if rc := fs.parse(args); rc >= 0 {
		return rc
	}
	if *members < 2 || *members > 50 {
		return fs.usageError("-members must be between 2 and 50")
	}
	if host, _, err := net.SplitHostPort(*listen); err != nil || !isLoopbackHost(host) {
		return fs.usageError("-listen %q: want a loopback host:port such as 127.0.0.1:4000", *listen)
	}
	log, err := newLogger(env.Stderr, "text", *logLevel)
	if err != nil {
		return fs.usageError("%v", err)
	}
	d, err := startDemo(demoOptions{members: *members, listen: *listen, firstIP: *firstIP, log: log})
	if err != nil {
		fmt.Fprintf(env.Stderr, "streamlb demo: %v\n", err)
		return exitError
	}
	fmt.Fprintf(env.Stdout, "streamlb demo: %d emulated EMS members, dashboard at http://%s/\n", *members, d.app.AdminAddr())
	for i, m := range d.cluster.Members() {
		how := "direct API " + m.APIURL()
		if i == 0 {
			how = "API proxy " + m.ProxyURL() + " (with credentials)"
		}
		fmt.Fprintf(env.Stdout, "  member %s: %s\n", demoName(i), how)
	}
	fmt.Fprintf(env.Stdout, "  players: http://%s/play/lobby (JSON), ?protocol=hls&redirect=1 (307)\n", d.app.PlayAddr())
	fmt.Fprintln(env.Stdout, "Sources and viewers come and go on their own; Ctrl-C stops.")
	d.run(ctx, env.Stdout)
	sctx, cancel := context.WithTimeout(context.Background(), drainTimeout)
	defer cancel()
	if err := d.stop(sctx); err != nil {
		fmt.Fprintf(env.Stderr, "streamlb demo: stop: %v\n", err)
		return exitError
	}
	fmt.Fprintln(env.Stdout, "streamlb demo: stopped")
	return exitOK
}

func isLoopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}

type demoOptions struct {
	members int
	listen  string
	firstIP string
	log     *slog.Logger
}

// demo is a simulated group: emulated members, the balancer wired to them
// as in production, and a script of sources coming and going.
type demo struct {
	cluster *emsim.Cluster
	app     *app.App
	clients []*ems.Client
}

func demoName(i int) string { return fmt.Sprintf("ems-%d", i+1) }

// demoConfig writes the group's config in the format users have: the first
// member behind its API proxy, the others direct.
func demoConfig(c *emsim.Cluster, listen string) string {
	var b strings.Builder
	b.WriteString("// streamlb demo: a simulated EMS group\n\"StreamLoadBalancer\": {\n  \"plugin_switch\": \"enabled\",\n  \"parameters\": {\n")
	fmt.Fprintf(&b, "    \"listen\": %q,\n    \"group\": \"demo\",\n    \"resync_interval\": \"10s\",\n    \"teardown_grace\": \"5s\",\n", listen)
	// Viewer placement on a port of its own, next to the dashboard.
	host, _, _ := net.SplitHostPort(listen)
	fmt.Fprintf(&b, "    \"play\": {\"listen\": %q, \"poll_interval\": \"2s\"},\n", net.JoinHostPort(host, "0"))
	b.WriteString("    \"destination_ems_apiproxies\": [\n")
	for i, m := range c.Members() {
		if i == 0 {
			fmt.Fprintf(&b, "      {\"enable\": true, \"authentication\": \"basic\", \"pseudoDomain\": \"apiproxy\", \"address\": %q, \"ewsPort\": %d, \"userName\": %q, \"password\": %q, \"name\": %q, \"maxViewers\": 100},\n",
				m.IP(), demoEWSPort, demoUser, demoPassword, demoName(i))
			continue
		}
		fmt.Fprintf(&b, "      {\"enable\": false, \"address\": %q, \"name\": %q, \"maxViewers\": 100},\n", m.IP(), demoName(i))
	}
	b.WriteString("    ],\n  },\n},\n")
	return b.String()
}

func startDemo(o demoOptions) (*demo, error) {
	cl, err := emsim.Start(emsim.Config{
		IP: o.firstIP, Members: o.members, EWSPort: demoEWSPort,
		User: demoUser, Password: demoPassword,
		EventsURL: "http://" + o.listen + "/evowebservices/",
		// The sink's configuration README.md gives.
		EnabledEvents: receiver.ActedOn(),
	})
	if err != nil {
		return nil, fmt.Errorf("start emulated members: %w", err)
	}
	cfg, err := config.Parse("demo.json", []byte(demoConfig(cl, o.listen)))
	if err != nil {
		cl.Close()
		return nil, err
	}
	a, err := app.New(app.Options{Config: cfg, Logger: o.log})
	if err != nil {
		cl.Close()
		return nil, err
	}
	if err := a.Start(); err != nil {
		cl.Close()
		return nil, err
	}
	d := &demo{cluster: cl, app: a}
	for _, m := range cfg.Members {
		d.clients = append(d.clients, ems.New(m.Endpoint, nil))
	}
	return d, nil
}

func (d *demo) stop(ctx context.Context) error {
	err := d.app.Stop(ctx)
	if cerr := d.cluster.Close(); err == nil {
		err = cerr
	}
	return err
}

// step is one scripted change of the demo.
type step struct {
	at   time.Duration
	what string
	do   func(ctx context.Context) error
}

// script returns the demo's scenario; it repeats every period.
func (d *demo) script() (steps []step, period time.Duration) {
	ms := d.cluster.Members()
	last := len(ms) - 1
	camera := func(i int, name string) func(ctx context.Context) error {
		return func(ctx context.Context) error {
			_, err := d.clients[i].PullStream(ctx, ems.PullRequest{
				URI: "rtsp://camera-" + name + ".demo.invalid/stream", LocalStreamName: name,
			})
			if ems.IsAlreadyTaken(err) {
				return nil
			}
			return err
		}
	}
	publish := func(i int, name string) func(context.Context) error {
		return func(context.Context) error { return ignoreTaken(ms[i].Publish(name)) }
	}
	unpublish := func(i int, name string) func(context.Context) error {
		return func(context.Context) error { return ms[i].Unpublish(name) }
	}
	down := func(i int, on bool) func(context.Context) error {
		return func(context.Context) error { ms[i].SetFaults(emsim.Faults{Down: on}); return nil }
	}
	viewers := func(i int, name string, n int) func(context.Context) error {
		return func(context.Context) error { return ms[i].SetViewers(name, "rtmp", n) }
	}
	steps = []step{
		{1 * time.Second, "camera lobby starts on " + demoName(0), camera(0, "lobby")},
		{2 * time.Second, "an encoder publishes studio on " + demoName(1%len(ms)), publish(1%len(ms), "studio")},
		{3 * time.Second, "camera parking starts on " + demoName(last), camera(last, "parking")},
		{6 * time.Second, "40 players watch lobby on " + demoName(1%len(ms)), viewers(1%len(ms), "lobby", 40)},
		{8 * time.Second, "25 players watch lobby on " + demoName(0), viewers(0, "lobby", 25)},
		{15 * time.Second, "studio ends (its replicas go after the 5s grace)", unpublish(1%len(ms), "studio")},
		{40 * time.Second, "the lobby's players leave", func(ctx context.Context) error {
			if err := viewers(0, "lobby", 0)(ctx); err != nil {
				return err
			}
			return viewers(1%len(ms), "lobby", 0)(ctx)
		}},
		{25 * time.Second, demoName(last) + " goes down", down(last, true)},
		{27 * time.Second, "an encoder publishes news on " + demoName(0) + " while " + demoName(last) + " is down", publish(0, "news")},
		{33 * time.Second, demoName(last) + " is back (resync fills it)", down(last, false)},
		{45 * time.Second, "studio is back on " + demoName(1%len(ms)), publish(1%len(ms), "studio")},
		{55 * time.Second, "news ends", unpublish(0, "news")},
	}
	return steps, 60 * time.Second
}

func ignoreTaken(err error) error {
	if err != nil && strings.Contains(err.Error(), "already taken") {
		return nil
	}
	return err
}

// run plays the script and prints a summary every five seconds until ctx
// ends.
func (d *demo) run(ctx context.Context, w io.Writer) {
	steps, period := d.script()
	start := time.Now()
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	for cycle := 0; ; cycle++ {
		for _, s := range steps {
			due := start.Add(time.Duration(cycle)*period + s.at)
			timer := time.NewTimer(time.Until(due))
		wait:
			for {
				select {
				case <-ctx.Done():
					timer.Stop()
					return
				case <-tick.C:
					printSummary(w, time.Since(start), d.app.Controller().Snapshot())
				case <-timer.C:
					break wait
				}
			}
			fmt.Fprintf(w, "%6.1fs  %s\n", time.Since(start).Seconds(), s.what)
			sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			if err := s.do(sctx); err != nil && ctx.Err() == nil {
				fmt.Fprintf(w, "        (%v)\n", err)
			}
			cancel()
		}
	}
}

func printSummary(w io.Writer, t time.Duration, st controller.Status) {
	up := 0
	for _, m := range st.Members {
		if m.State == controller.MemberUp {
			up++
		}
	}
	desired, present := 0, 0
	for _, s := range st.Streams {
		for _, r := range s.Replicas {
			desired++
			if r.State == controller.StatePresent {
				present++
			}
		}
	}
	state := "converging"
	if st.Converged {
		state = "converged"
	}
	fmt.Fprintf(w, "%6.1fs  members up %d/%d · sources %d · replicas present %d/%d · %s\n",
		t.Seconds(), up, len(st.Members), len(st.Streams), present, desired, state)
}
