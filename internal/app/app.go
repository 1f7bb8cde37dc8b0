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
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"streamlb/internal/buildinfo"
	"streamlb/internal/config"
	"streamlb/internal/controller"
	"streamlb/internal/ems"
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

	mu  sync.Mutex
	cfg *config.Config

	servers []*http.Server
	addrs   []string
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
	return &App{opts: opts, log: opts.Logger, reg: reg, ctl: ctl, cfg: cfg}, nil
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
			Client: ems.New(m.Endpoint, hc),
		})
	}
	return specs, nil
}

// httpClient returns the HTTP client for one member: timeouts, connection
// reuse where the member allows it, and its TLS settings.
func httpClient(m config.Member) (*http.Client, error) {
	tr := &http.Transport{
		Proxy:                 nil,
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:          256,
		MaxIdleConnsPerHost:   64,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   5 * time.Second,
		ResponseHeaderTimeout: 30 * time.Second,
	}
	if m.CAFile != "" || m.InsecureSkipVerify {
		tc := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: m.InsecureSkipVerify} //nolint:gosec // only when configured explicitly
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
		tr.TLSClientConfig = tc
	}
	return &http.Client{
		Transport: tr,
		Timeout:   60 * time.Second,
		// EMS never redirects. Following a redirect would send the API
		// proxy's credentials wherever it points, in clear text if it
		// points to http.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}, nil
}

// Controller returns the App's controller.
func (a *App) Controller() *controller.Controller { return a.ctl }

// Registry returns the App's metrics registry.
func (a *App) Registry() *prometheus.Registry { return a.reg }

// Start binds the listeners (bind errors come back here) and starts the
// controller and servers.
func (a *App) Start() error {
	cfg := a.cfg
	sink := http.NewServeMux()
	recv := receiver.New(receiver.Options{
		Sink:           a.ctl,
		Logger:         a.log,
		Registerer:     a.reg,
		Token:          cfg.EventsToken.Reveal(),
		AllowedSources: cfg.AllowedSources,
	})
	recv.Register(sink)

	admin := sink
	if cfg.AdminListen != "" {
		admin = http.NewServeMux()
	}
	api := &statusapi.API{Controller: a.ctl, Logger: a.log}
	api.Register(admin)
	admin.Handle("GET /metrics", promhttp.HandlerFor(a.reg, promhttp.HandlerOpts{Registry: a.reg, MaxRequestsInFlight: 4}))
	statusapi.RegisterDashboard(admin, a.ctl)

	var adminHandler http.Handler = admin
	if cfg.AdminPassword != "" {
		adminHandler = basicAuth(admin, cfg.AdminPassword, sink == admin)
	}

	type bind struct {
		addr string
		h    http.Handler
	}
	binds := []bind{{cfg.Listen, sink}}
	if cfg.AdminListen != "" {
		binds = append(binds, bind{cfg.AdminListen, adminHandler})
	} else {
		binds[0].h = adminHandler
	}
	if !isLoopback(cfg.Listen) && cfg.EventsToken == "" && len(cfg.AllowedSources) == 0 {
		a.log.Warn("the event sink listens beyond loopback with neither events_token nor allowed_sources: anyone who reaches it can send events", "listen", cfg.Listen)
	}
	var lns []net.Listener
	for i, b := range binds {
		if i == 0 && a.opts.SinkListener != nil {
			lns = append(lns, a.opts.SinkListener)
			a.addrs = append(a.addrs, a.opts.SinkListener.Addr().String())
			a.servers = append(a.servers, a.newServer(b.h))
			continue
		}
		ln, err := net.Listen("tcp", b.addr)
		if err != nil {
			for _, l := range lns {
				l.Close()
			}
			return fmt.Errorf("listen on %s: %w", b.addr, err)
		}
		lns = append(lns, ln)
		a.addrs = append(a.addrs, ln.Addr().String())
		a.servers = append(a.servers, a.newServer(b.h))
	}
	ctx, cancel := context.WithCancel(context.Background())
	a.cancel = cancel
	a.done = make(chan struct{})
	var wg sync.WaitGroup
	for i, srv := range a.servers {
		wg.Go(func() {
			if err := srv.Serve(lns[i]); err != nil && !errors.Is(err, http.ErrServerClosed) {
				a.log.Error("http server stopped", "addr", a.addrs[i], "err", err)
			}
		})
	}
	wg.Go(func() { _ = a.ctl.Run(ctx) })
	go func() { wg.Wait(); close(a.done) }()
	a.log.Info("streamlb started", "listen", a.addrs[0], "members", len(cfg.Members), "group", cfg.Group)
	return nil
}

// newServer returns an HTTP server with the timeouts, header and
// concurrency limits every streamlb listener has.
func (a *App) newServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           limitConcurrency(h, maxInflight, maxInflightPerPeer),
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
// deadline, and waits for every goroutine.
func (a *App) Stop(ctx context.Context) error {
	if a.cancel == nil {
		return nil
	}
	var errs []error
	for _, srv := range a.servers {
		if err := srv.Shutdown(ctx); err != nil {
			errs = append(errs, err)
			srv.Close()
		}
	}
	a.cancel()
	select {
	case <-a.done:
	case <-ctx.Done():
		errs = append(errs, fmt.Errorf("stop: %w", ctx.Err()))
	}
	return errors.Join(errs...)
}

// Reload applies a new config: the member list changes (added members are
// filled, removed ones left alone, unchanged ones keep their state, ones
// with new credentials start afresh). Settings that need a restart
// (listen addresses, group, timings) are reported and kept.
func (a *App) Reload(cfg *config.Config) error {
	specs, err := MemberSpecs(cfg)
	if err != nil {
		return err
	}
	a.mu.Lock()
	old := a.cfg
	a.mu.Unlock()
	if old.Listen != cfg.Listen || old.Group != cfg.Group || old.AdminListen != cfg.AdminListen {
		a.log.Warn("reload: listen, admin_listen and group take effect at the next restart")
	}
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
	a.mu.Lock()
	a.cfg = cfg
	a.mu.Unlock()
	a.log.Info("config reloaded", "members", len(cfg.Members))
	return nil
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

// basicAuth guards the admin routes with HTTP Basic auth (user "admin").
// When the event sink shares the mux, its routes stay open (they have
// their own token).
func basicAuth(h http.Handler, password ems.Secret, sinkShared bool) http.Handler {
	want := []byte(password.Reveal())
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if sinkShared && (r.URL.Path == "/evowebservices" || strings.HasPrefix(r.URL.Path, "/evowebservices/")) {
			h.ServeHTTP(w, r)
			return
		}
		user, pass, ok := r.BasicAuth()
		if !ok || user != "admin" || subtle.ConstantTimeCompare([]byte(pass), want) != 1 {
			w.Header().Set("WWW-Authenticate", `Basic realm="streamlb"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// Caps on the requests one listener serves at once, in all and from one
// peer address: a client holding requests open (sending its body slowly)
// cannot take every slot, and the members, each posting from its own
// address, are still answered.
const (
	maxInflight        = 512
	maxInflightPerPeer = 64
)

// limitConcurrency answers 503 beyond total requests in flight, or beyond
// perPeer from one peer address.
func limitConcurrency(h http.Handler, total, perPeer int) http.Handler {
	sem := make(chan struct{}, total)
	var mu sync.Mutex
	byPeer := make(map[string]int)
	busy := func(w http.ResponseWriter) {
		w.Header().Set("Retry-After", "1")
		http.Error(w, "too many requests in flight", http.StatusServiceUnavailable)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		peer, _, err := net.SplitHostPort(r.RemoteAddr)
		if err != nil {
			peer = r.RemoteAddr
		}
		mu.Lock()
		if byPeer[peer] >= perPeer {
			mu.Unlock()
			busy(w)
			return
		}
		byPeer[peer]++
		mu.Unlock()
		defer func() {
			mu.Lock()
			if byPeer[peer]--; byPeer[peer] == 0 {
				delete(byPeer, peer)
			}
			mu.Unlock()
		}()
		select {
		case sem <- struct{}{}:
			defer func() { <-sem }()
			h.ServeHTTP(w, r)
		default:
			busy(w)
		}
	})
}
