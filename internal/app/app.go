// Package app wires streamlb together: the EMS clients, the controller, the
// event sink, the status API, metrics and the dashboard, with their HTTP
// servers. It owns every goroutine it starts, so tests run the whole daemon
// in-process.
package app

import (
	"context"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"streamlb/internal/buildinfo"
	"streamlb/internal/config"
	"streamlb/internal/controller"
	"streamlb/internal/ems"
	"streamlb/internal/inflight"
	"streamlb/internal/receiver"
	"streamlb/internal/statusapi"
)

// Options are the App's injected dependencies.
type Options struct {
	Config *config.Config
	Logger *slog.Logger // nil: discard
	// Registry receives every metric; nil: a new one with the Go and
	// process collectors and streamlb_build_info.
	Registry *prometheus.Registry
	// CallTimeout bounds every EMS call; 0: 10s.
	CallTimeout time.Duration
	// RetryBase and RetryMax tune replica backoff; 0: defaults.
	RetryBase, RetryMax time.Duration
	// SinkListener, when set, is used for the event sink instead of
	// binding Config.Listen (tests bind 127.0.0.1:0 before the emulated
	// members that post to it start).
	SinkListener net.Listener
}

// App is a running streamlb. Create it with New, then Start; Stop ends it.
type App struct {
	opts Options
	log  *slog.Logger
	reg  *prometheus.Registry
	ctl  *controller.Controller

	recv *receiver.Receiver
	// sinkLimit caps the sink listener's requests in flight; its trusted
	// peers are the members' addresses, replaced by a reload (limit.go).
	sinkLimit   *inflight.Limiter
	httpMetrics *httpMetrics
	// sinkHook, when set (by tests, before Start), wraps the sink
	// listener's handler inside its concurrency cap.
	sinkHook func(http.Handler) http.Handler
	// adminPassword is admin_password, "" for none; a reload replaces it.
	adminPassword atomic.Pointer[string]
	reloadOK      prometheus.Gauge
	reloadAt      prometheus.Gauge

	mu      sync.Mutex
	cfg     *config.Config // the config in force
	started *config.Config // the one the listeners were built from

	servers []*http.Server
	addrs   []string
	pl      playWiring // viewer placement (play.go)
	cancel  context.CancelFunc
	done    chan struct{}
}

// New builds the App from opts.Config. It binds nothing.
func New(opts Options) (*App, error) {
	if opts.Config == nil {
		return nil, errors.New("app: no config")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	reg := opts.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), buildinfo.NewCollector())
	}
	specs, err := MemberSpecs(opts.Config)
	if err != nil {
		return nil, err
	}
	cfg := opts.Config
	ctl, err := controller.New(controller.Options{
		Group:             cfg.Group,
		AppName:           cfg.AppName,
		KeepAlive:         cfg.KeepAlive,
		ResyncInterval:    cfg.ResyncInterval,
		TeardownGrace:     cfg.TeardownGrace,
		Include:           cfg.Include,
		Exclude:           cfg.Exclude,
		MaxInflight:       cfg.MaxInflight,
		MaxPullsPerSecond: cfg.MaxPullsPerSecond,
		Replication:       replication(cfg),
		JournalSize:       cfg.JournalSize,
		CallTimeout:       opts.CallTimeout,
		RetryBase:         opts.RetryBase,
		RetryMax:          opts.RetryMax,
		Members:           specs,
		Logger:            opts.Logger,
		Registerer:        reg,
	})
	if err != nil {
		return nil, err
	}
	a := &App{opts: opts, log: opts.Logger, reg: reg, ctl: ctl, cfg: cfg, started: cfg,
		sinkLimit: inflight.New(maxInflight, maxInflightPerPeer), httpMetrics: newHTTPMetrics(reg)}
	trustMembers(a.sinkLimit, cfg)
	a.recv = receiver.New(receiver.Options{
		Sink:           ctl,
		Logger:         opts.Logger,
		Registerer:     reg,
		Token:          cfg.EventsToken.Reveal(),
		AllowedSources: cfg.AllowedSources,
	})
	pw := cfg.AdminPassword.Reveal()
	a.adminPassword.Store(&pw)
	a.reloadOK = promauto.With(reg).NewGauge(prometheus.GaugeOpts{
		Name: "streamlb_config_last_reload_successful",
		Help: "1 when the last config reload (SIGHUP) was applied, 0 when it was refused; 1 before any.",
	})
	a.reloadAt = promauto.With(reg).NewGauge(prometheus.GaugeOpts{
		Name: "streamlb_config_last_reload_success_timestamp_seconds",
		Help: "Unix time of the last config load that was applied: the start, or the last good reload.",
	})
	a.reloadOK.Set(1)
	a.reloadAt.SetToCurrentTime()
	if err := a.newPlay(); err != nil {
		return nil, err
	}
	return a, nil
}

// MemberSpecs builds the controller's members, with their EMS clients, from
// a config.
func MemberSpecs(cfg *config.Config) ([]controller.MemberSpec, error) {
	var specs []controller.MemberSpec
	for _, m := range cfg.Members {
		hc, err := httpClient(m)
		if err != nil {
			return nil, fmt.Errorf("member %s: %w", m.Name, err)
		}
		api := "direct"
		if m.Proxy {
			api = "proxy"
		}
		specs = append(specs, controller.MemberSpec{
			Name: m.Name, Address: m.Address, API: api, Replicate: m.Replicate, Host: m.IsHost,
			Weight: m.Placement.Weight, Client: ems.New(m.Endpoint, hc),
		})
	}
	return specs, nil
}

// httpClient returns the HTTP client for one member: ems.NewHTTPClient
// with the member's TLS settings. It has no timeout of its own: every EMS
// call is bounded by the deadline the controller (CallTimeout) or
// placement gives its context. EMS closes the connection after each
// answer, so plain-http calls take ems's one-shot path (HTTPOptions.OneShot;
// BENCHMARKS.md measures it).
func httpClient(m config.Member) (*http.Client, error) {
	var tc *tls.Config
	if m.CAFile != "" || m.InsecureSkipVerify {
		tc = &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: m.InsecureSkipVerify} //nolint:gosec // only when configured explicitly
		if m.CAFile != "" {
			pem, err := os.ReadFile(m.CAFile)
			if err != nil {
				return nil, fmt.Errorf("read caFile: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("caFile %s: no PEM certificate", m.CAFile)
			}
			tc.RootCAs = pool
		}
	}
	return ems.NewHTTPClient(ems.HTTPOptions{TLS: tc, OneShot: true}), nil
}

// Controller returns the App's controller.
func (a *App) Controller() *controller.Controller { return a.ctl }

// Registry returns the App's metrics registry.
func (a *App) Registry() *prometheus.Registry { return a.reg }

// Start binds the listeners (bind errors come back here) and starts the
// controller and servers.
func (a *App) Start() error {
	cfg := a.started
	sink := http.NewServeMux()
	a.recv.Register(sink)

	admin := sink
	if cfg.AdminListen != "" {
		admin = http.NewServeMux()
	}
	api := &statusapi.API{Controller: a.ctl, Logger: a.log}
	api.Register(admin)
	admin.Handle("GET /metrics", promhttp.HandlerFor(a.reg, promhttp.HandlerOpts{Registry: a.reg, MaxRequestsInFlight: 4}))
	statusapi.RegisterDashboard(admin, a.ctl)
	a.registerLoad(admin)

	adminHandler := basicAuth(admin, &a.adminPassword, sink == admin)

	type bind struct {
		addr string
		h    http.Handler
	}
	// Every state-changing route, the event sink's included, refuses
	// cross-site browser requests; EMS sends none of a browser's headers.
	protect := statusapi.CrossOriginProtection()
	binds := []bind{{cfg.Listen, protect.Handler(sink)}}
	if cfg.AdminListen != "" {
		binds = append(binds, bind{cfg.AdminListen, protect.Handler(adminHandler)})
	} else {
		binds[0].h = protect.Handler(adminHandler)
	}
	if a.sinkHook != nil {
		binds[0].h = a.sinkHook(binds[0].h)
	}
	if !isLoopback(cfg.Listen) && cfg.EventsToken == "" && len(cfg.AllowedSources) == 0 {
		a.log.Warn("the event sink listens beyond loopback with neither events_token nor allowed_sources: anyone who reaches it can send events", "listen", cfg.Listen)
	}
	// The sink listener's cap trusts the members; the admin listener's
	// trusts no one.
	limits := []struct {
		name string
		lim  *inflight.Limiter
	}{{listenerSink, a.sinkLimit}, {listenerAdmin, inflight.New(maxInflight, maxInflightPerPeer)}}
	var lns []net.Listener
	for i, b := range binds {
		h := limitConcurrency(b.h, limits[i].lim, memberWait, limits[i].name, a.httpMetrics, a.log)
		if i == 0 && a.opts.SinkListener != nil {
			lns = append(lns, a.opts.SinkListener)
			a.addrs = append(a.addrs, a.opts.SinkListener.Addr().String())
			a.servers = append(a.servers, a.newServer(h))
			continue
		}
		// The servers' timeouts bound every connection, and EMS posts
		// each event on a connection of its own: TCP keep-alive probes
		// would add nothing but four setsockopt calls per connection.
		ln, err := (&net.ListenConfig{KeepAlive: -1}).Listen(context.Background(), "tcp", b.addr)
		if err != nil {
			for _, l := range lns {
				l.Close()
			}
			return fmt.Errorf("listen on %s: %w", b.addr, err)
		}
		lns = append(lns, ln)
		a.addrs = append(a.addrs, ln.Addr().String())
		a.servers = append(a.servers, a.newServer(h))
	}
	if err := a.bindPlay(); err != nil {
		for _, l := range lns {
			l.Close()
		}
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	a.cancel = cancel
	a.done = make(chan struct{})
	// Requests see their context cancelled when a stop begins, so
	// long-lived ones (the event stream) end instead of holding it up.
	reqCtx, stopRequests := context.WithCancel(context.Background())
	for _, srv := range a.servers {
		srv.BaseContext = func(net.Listener) context.Context { return reqCtx }
		srv.RegisterOnShutdown(stopRequests)
	}
	var wg sync.WaitGroup
	for i, srv := range a.servers {
		wg.Go(func() {
			if err := srv.Serve(lns[i]); err != nil && !errors.Is(err, http.ErrServerClosed) {
				a.log.Error("http server stopped", "addr", a.addrs[i], "err", err)
			}
		})
	}
	wg.Go(func() { _ = a.ctl.Run(ctx) })
	wg.Go(func() { a.runPlay(ctx) })
	go func() { wg.Wait(); stopRequests(); close(a.done) }()
	a.log.Info("streamlb started", "listen", a.addrs[0], "members", len(cfg.Members), "group", cfg.Group)
	return nil
}

// newServer returns an HTTP server of h (already under its listener's
// concurrency cap, limitConcurrency) with the timeouts and header limit
// every streamlb listener has.
func (a *App) newServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(a.log.Handler(), slog.LevelDebug),
	}
}

// Addr returns the event sink's address (host:port), once started.
func (a *App) Addr() string { return a.addrs[0] }

// AdminAddr returns the status API's address: the admin listener when
// configured, else Addr.
func (a *App) AdminAddr() string { return a.addrs[len(a.addrs)-1] }

// Stop stops accepting, drains requests and work in flight within ctx's
// deadline, and waits for every goroutine. Requests still open when three
// quarters of the time left is spent (a client holding its body back) have
// their connections closed: that is a clean stop, not an error. The error
// says only that the balancer's own work did not end in time.
func (a *App) Stop(ctx context.Context) error {
	if a.cancel == nil {
		return nil
	}
	serversCtx := ctx
	if deadline, ok := ctx.Deadline(); ok {
		var cancel context.CancelFunc
		serversCtx, cancel = context.WithDeadline(ctx, deadline.Add(-time.Until(deadline)/4))
		defer cancel()
	}
	var wg sync.WaitGroup
	for i, srv := range a.servers {
		wg.Go(func() {
			if err := srv.Shutdown(serversCtx); err != nil {
				a.log.Warn("requests still open at the stop deadline; closing their connections", "addr", a.addrs[i], "err", err)
				_ = srv.Close()
			}
		})
	}
	wg.Wait()
	a.cancel()
	select {
	case <-a.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("stop: work in flight did not end within the deadline: %w", ctx.Err())
	}
}

// Reload applies a new config at once, as far as a running daemon can:
// the member list (added members are filled, removed ones left alone,
// unchanged ones keep their state, ones with new credentials start
// afresh), events_token, allowed_sources, admin_password, include,
// exclude, resync_interval, teardown_grace, max_inflight and
// max_pulls_per_second. Settings that need a restart (listen, admin_listen,
// group, keep_alive, app_name, play.listen) are logged by key and keep
// their running values. The result is recorded for the status document
// (last_reload) and the streamlb_config_last_reload_* metrics; on error
// nothing is applied.
func (a *App) Reload(cfg *config.Config) error {
	err := a.reload(cfg)
	a.recordReload(err)
	return err
}

// ReloadFile loads the config file at path and applies it as Reload does.
// A file that cannot be read or is invalid is a failed reload too: the
// running config stays, and last_reload says why.
func (a *App) ReloadFile(path string) error {
	cfg, err := config.Load(path)
	if err != nil {
		a.recordReload(err)
		return err
	}
	return a.Reload(cfg)
}

// recordReload publishes the result of a reload.
func (a *App) recordReload(err error) {
	st := controller.ReloadStatus{At: time.Now().UTC(), OK: err == nil}
	if err != nil {
		st.Error = err.Error()
		a.reloadOK.Set(0)
		a.log.Error("reload refused; the running config stays", "err", err)
	} else {
		a.reloadOK.Set(1)
		a.reloadAt.Set(float64(st.At.UnixNano()) / 1e9)
	}
	a.ctl.SetLastReload(st)
}

func (a *App) reload(cfg *config.Config) error {
	if cfg == nil {
		return errors.New("reload: no config")
	}
	specs, err := MemberSpecs(cfg)
	if err != nil {
		return err
	}
	a.mu.Lock()
	old, started := a.cfg, a.started
	a.mu.Unlock()
	oldByName := make(map[string]config.Member)
	for _, m := range old.Members {
		oldByName[m.Name] = m
	}
	newByName := make(map[string]config.Member)
	for _, m := range cfg.Members {
		newByName[m.Name] = m
	}
	same := func(x, y controller.MemberSpec) bool {
		a, b := oldByName[x.Name], newByName[y.Name]
		return a.Address == b.Address && a.Endpoint == b.Endpoint && a.CAFile == b.CAFile && a.InsecureSkipVerify == b.InsecureSkipVerify
	}
	if err := a.ctl.SetMembers(specs, same); err != nil {
		return err
	}
	if tunables(old) != tunables(cfg) {
		a.ctl.SetTunables(controller.Tunables{
			Include:           slices.Clone(cfg.Include),
			Exclude:           slices.Clone(cfg.Exclude),
			ResyncInterval:    cfg.ResyncInterval,
			TeardownGrace:     cfg.TeardownGrace,
			MaxInflight:       cfg.MaxInflight,
			MaxPullsPerSecond: cfg.MaxPullsPerSecond,
		})
	}
	a.recv.SetAccess(cfg.EventsToken.Reveal(), cfg.AllowedSources)
	trustMembers(a.sinkLimit, cfg)
	a.reloadPlay(cfg)
	pw := cfg.AdminPassword.Reveal()
	a.adminPassword.Store(&pw)
	a.mu.Lock()
	a.cfg = cfg
	a.mu.Unlock()

	if keys := restartKeys(started, cfg); len(keys) > 0 {
		a.log.Warn("reload: these settings take effect at the next restart; their running values stay", "keys", keys)
	}
	if !isLoopback(started.Listen) && cfg.EventsToken == "" && len(cfg.AllowedSources) == 0 {
		a.log.Warn("the event sink listens beyond loopback with neither events_token nor allowed_sources: anyone who reaches it can send events", "listen", started.Listen)
	}
	return nil // the controller logs the reload (SetLastReload)
}

// tunables returns the settings the controller applies live, in a form
// that compares with ==.
func tunables(c *config.Config) string {
	return fmt.Sprintf("%q %q %v %v %d %v", c.Include, c.Exclude, c.ResyncInterval, c.TeardownGrace, c.MaxInflight, c.MaxPullsPerSecond)
}

// restartKeys names the settings of next that differ from running and
// that only a restart applies.
func restartKeys(running, next *config.Config) []string {
	var keys []string
	add := func(changed bool, key string) {
		if changed {
			keys = append(keys, key)
		}
	}
	add(running.Listen != next.Listen, "listen")
	add(running.AdminListen != next.AdminListen, "admin_listen")
	add(running.Group != next.Group, "group")
	add(running.Replication != next.Replication, "replication")
	add(running.JournalSize != next.JournalSize, "journal_size")
	add(running.KeepAlive != next.KeepAlive, "keep_alive")
	add(running.AppName != next.AppName, "app_name")
	add(playListen(running) != playListen(next), "play.listen")
	add(playChanged(running, next), "play")
	return keys
}

// playListen returns the play listener's address, "" without a play block.
func playListen(c *config.Config) string {
	if c.Play == nil {
		return ""
	}
	return c.Play.Listen
}

func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// basicAuth guards the admin routes with HTTP Basic auth (user "admin")
// while *password is not empty; it is read at every request, so a reload
// applies at once. When the event sink shares the mux, its routes stay open
// (they have their own token).
func basicAuth(h http.Handler, password *atomic.Pointer[string], sinkShared bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		want := *password.Load()
		if want == "" || sinkShared && (r.URL.Path == "/evowebservices" || strings.HasPrefix(r.URL.Path, "/evowebservices/")) {
			h.ServeHTTP(w, r)
			return
		}
		user, pass, ok := r.BasicAuth()
		if !ok || user != "admin" || subtle.ConstantTimeCompare([]byte(pass), []byte(want)) != 1 {
			w.Header().Set("WWW-Authenticate", `Basic realm="streamlb"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// replication returns the controller's replication settings for cfg.
func replication(cfg *config.Config) controller.Replication {
	r := controller.Replication{
		Mode: cfg.Replication.Mode, MinCopies: cfg.Replication.MinCopies, MaxCopies: cfg.Replication.MaxCopies,
		ScaleUpUtilization: cfg.Replication.ScaleUpUtilization, ScaleDownAfter: cfg.Replication.ScaleDownAfter,
	}
	if cfg.Play != nil {
		r.LoadStaleAfter = cfg.Play.StaleAfter
	}
	return r
}
