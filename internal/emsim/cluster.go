package emsim

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Config configures a Cluster. The zero value runs one member on
// 127.0.0.1:7777 without API proxy, events or persistence.
type Config struct {
	// IP is the address of the first member; default 127.0.0.1. It must be
	// an IPv4 address in 127.0.0.0/8.
	IP string
	// Members is the number of members, on consecutive addresses from IP;
	// default 1.
	Members int
	// APIPort is the EMS API port of every member; default 7777. All
	// members share it, so a pull of rtmp://H/... reaches H:APIPort.
	APIPort int
	// EWSPort is the API proxy port of every member; 0 turns the proxy off.
	EWSPort int
	// PseudoDomain, User and Password configure the API proxy; defaults
	// apiproxy, username, password.
	PseudoDomain string
	User         string
	Password     string
	// EventsURL is the RPC sink every member posts its events to; "" sends
	// no events.
	EventsURL string
	// EnabledEvents are the event types the sink gets, as the sink's
	// enabledEvents in EMS's config.lua: only those are sent; none: every
	// type.
	EnabledEvents []string
	// StatePath is the file keepAlive pull configurations persist in,
	// keyed by member address; "" persists nothing.
	StatePath string
	// KeepAlive lets clients reuse connections; by default every answer
	// carries Connection: close, as EMS does.
	KeepAlive bool
	// Bitrate is the bitrate of every stream in bits per second, which
	// players and pulls move and getBandwidth reports; default
	// DefaultBitrate (2 Mbps).
	Bitrate int
	// Logger receives the emulator's logs; nil discards them.
	Logger *slog.Logger
}

// String describes the configuration without the proxy password.
func (c Config) String() string {
	return fmt.Sprintf("emsim.Config{IP:%s Members:%d APIPort:%d EWSPort:%d PseudoDomain:%s User:%s Password:REDACTED EnabledEvents:%v StatePath:%s KeepAlive:%t Bitrate:%d}",
		c.IP, c.Members, c.APIPort, c.EWSPort, c.PseudoDomain, c.User, c.EnabledEvents, c.StatePath, c.KeepAlive, c.Bitrate)
}

func (c Config) withDefaults() Config {
	if c.IP == "" {
		c.IP = "127.0.0.1"
	}
	if c.Members == 0 {
		c.Members = 1
	}
	if c.APIPort == 0 {
		c.APIPort = 7777
	}
	if c.PseudoDomain == "" {
		c.PseudoDomain = "apiproxy"
	}
	if c.User == "" {
		c.User = "username"
	}
	if c.Password == "" {
		c.Password = "password"
	}
	if c.Bitrate == 0 {
		c.Bitrate = DefaultBitrate
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

func (c Config) validate() error {
	if c.Members < 1 || c.Members > 65536 {
		return fmt.Errorf("members: %d is out of range 1-65536", c.Members)
	}
	if c.APIPort < 1 || c.APIPort > 65535 {
		return fmt.Errorf("api port: %d is out of range 1-65535", c.APIPort)
	}
	if c.EWSPort < 0 || c.EWSPort > 65535 {
		return fmt.Errorf("ews port: %d is out of range 0-65535", c.EWSPort)
	}
	if c.Bitrate < 1000 || c.Bitrate > 1_000_000_000 {
		return fmt.Errorf("bitrate: %d is out of range 1000-1000000000 bits per second", c.Bitrate)
	}
	if c.EWSPort == c.APIPort {
		return fmt.Errorf("ews port: %d is also the api port", c.EWSPort)
	}
	if strings.ContainsAny(c.PseudoDomain, "/?") {
		return fmt.Errorf("pseudo domain %q: must not contain '/' or '?'", c.PseudoDomain)
	}
	if c.EventsURL != "" {
		u, err := url.Parse(c.EventsURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return errors.New("events url: must be an absolute http or https URL")
		}
	}
	if err := checkEventTypes(c.EnabledEvents); err != nil {
		return fmt.Errorf("enabled events: %w", err)
	}
	return nil
}

// memberIPs returns n consecutive addresses from first, all in 127.0.0.0/8.
func memberIPs(first string, n int) ([]string, error) {
	a, err := netip.ParseAddr(first)
	if err != nil {
		return nil, fmt.Errorf("ip %q: %w", first, err)
	}
	a = a.Unmap()
	if !a.Is4() || !a.IsLoopback() {
		return nil, fmt.Errorf("ip %s: the emulator binds only loopback addresses (127.0.0.0/8)", first)
	}
	ips := make([]string, 0, n)
	for i := 0; i < n; i++ {
		if !a.IsValid() || !a.IsLoopback() {
			return nil, fmt.Errorf("ip %s: %d members do not fit in 127.0.0.0/8", first, n)
		}
		ips = append(ips, a.String())
		a = a.Next()
	}
	return ips, nil
}

// RandomLoopbackIPs returns n distinct consecutive addresses 127.x.y.z with
// x and y random in 1..254 and z random such that all n fit in 1..254, so
// that ips[0] and n can configure one Cluster. n must be 1..254.
func RandomLoopbackIPs(n int) []string {
	if n < 1 || n > 254 {
		panic("emsim: RandomLoopbackIPs: n out of range 1-254")
	}
	x, y := 1+rand.IntN(254), 1+rand.IntN(254)
	z := 1 + rand.IntN(254-n+1)
	ips := make([]string, n)
	for i := range ips {
		ips[i] = fmt.Sprintf("127.%d.%d.%d", x, y, z+i)
	}
	return ips
}

// Cluster is a group of emulated EMS members in one process. Its methods
// are safe for concurrent use. The caller must call Close.
type Cluster struct {
	cfg     Config
	id      string // names the Cluster to members in other processes
	log     *slog.Logger
	pid     int
	members []*Member
	byIP    map[string]*Member
	remotes *remoteSet
	state   *stateStore
	version []byte // serialized version data
	bufs    bufPool

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	hmu     sync.Mutex
	closing bool
	hwg     sync.WaitGroup // HTTP handlers in progress

	closeOnce sync.Once
	closeErr  error
}

// Start binds every member's listeners (returning bind errors), restores
// persisted pull configurations, and starts serving.
func Start(cfg Config) (*Cluster, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("start emulator: %w", err)
	}
	ips, err := memberIPs(cfg.IP, cfg.Members)
	if err != nil {
		return nil, fmt.Errorf("start emulator: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &Cluster{
		cfg:    cfg,
		id:     strconv.FormatUint(rand.Uint64(), 36),
		log:    cfg.Logger,
		pid:    os.Getpid(),
		byIP:   make(map[string]*Member, len(ips)),
		ctx:    ctx,
		cancel: cancel,
	}
	c.version = versionData()
	c.remotes = newRemoteSet(c)
	for i, ip := range ips {
		m := newMember(c, i, ip)
		c.members = append(c.members, m)
		c.byIP[ip] = m
	}
	if cfg.StatePath != "" {
		c.state = newStateStore(c, cfg.StatePath)
		if err := c.state.load(); err != nil {
			cancel()
			return nil, fmt.Errorf("start emulator: %w", err)
		}
	}
	for _, m := range c.members {
		if err := m.listen(); err != nil {
			for _, m := range c.members {
				m.closeListeners()
			}
			cancel()
			return nil, fmt.Errorf("start emulator: %w", err)
		}
	}
	for _, m := range c.members {
		m.serve()
	}
	if c.state != nil {
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			c.state.run(ctx)
		}()
	}
	c.log.Info("emulator started", "members", len(c.members), "first", ips[0], "api_port", cfg.APIPort, "ews_port", cfg.EWSPort)
	return c, nil
}

// Members returns the members in address order.
func (c *Cluster) Members() []*Member {
	return append([]*Member(nil), c.members...)
}

// Member returns the member at ip, or nil.
func (c *Cluster) Member(ip string) *Member {
	return c.byIP[ip]
}

// Close stops every member and waits for all goroutines; persisted state is
// written a last time. Close is idempotent.
func (c *Cluster) Close() error {
	c.closeOnce.Do(func() {
		c.hmu.Lock()
		c.closing = true
		c.hmu.Unlock()
		c.cancel()
		var errs []error
		for _, m := range c.members {
			if err := m.closeServers(); err != nil {
				errs = append(errs, err)
			}
		}
		c.hwg.Wait()
		c.wg.Wait()
		if c.state != nil {
			if err := c.state.flush(); err != nil {
				errs = append(errs, err)
			}
		}
		c.closeErr = errors.Join(errs...)
		c.log.Info("emulator stopped")
	})
	return c.closeErr
}

// enter registers an HTTP handler in progress; false once closing.
func (c *Cluster) enter() bool {
	c.hmu.Lock()
	defer c.hmu.Unlock()
	if c.closing {
		return false
	}
	c.hwg.Add(1)
	return true
}

func (c *Cluster) leave() { c.hwg.Done() }

// upstreamChanged asks every member to check all its streaming pulls, after
// a member went up or down or a remote member's streams were fetched.
func (c *Cluster) upstreamChanged() {
	for _, m := range c.members {
		m.requestCheck()
	}
}

// streamGone asks every member to check its pulls of ref, a stream that
// just closed. It only takes the members' pendMu, so it may be called with
// any member's mu held.
func (c *Cluster) streamGone(ref srcRef) {
	for _, m := range c.members {
		m.noteGone(ref)
	}
}

// stateChanged marks the persisted state dirty.
func (c *Cluster) stateChanged() {
	if c.state != nil {
		c.state.markDirty()
	}
}

// availability resolves source streams: in memory for members of c, from
// the remote watchers for other addresses (answers to calls started at or
// after since); one lookup per member.
func (c *Cluster) availability(refs []srcRef, since time.Time) []avail {
	out := make([]avail, len(refs))
	byHost := make(map[string][]int)
	for i, r := range refs {
		byHost[r.host] = append(byHost[r.host], i)
	}
	for host, idx := range byHost {
		names := make([]string, len(idx))
		for j, i := range idx {
			names[j] = refs[i].name
		}
		var res []avail
		if m := c.byIP[host]; m != nil {
			res = m.hasInbound(names)
		} else {
			res = c.remotes.lookup(host, names, since)
		}
		for j, i := range idx {
			out[i] = res[j]
		}
	}
	return out
}

// listen binds the member's listeners. They set no TCP keep-alive on the
// connections they accept: the servers' timeouts bound them, and each API
// call is spared four setsockopt calls.
func (m *Member) listen() error {
	cfg := m.c.cfg
	lc := &net.ListenConfig{KeepAlive: -1}
	ln, err := lc.Listen(context.Background(), "tcp4", net.JoinHostPort(m.ip, itoa(cfg.APIPort)))
	if err != nil {
		return fmt.Errorf("listen api of member %s: %w", m.ip, err)
	}
	m.apiLn = ln
	if cfg.EWSPort != 0 {
		ln, err := lc.Listen(context.Background(), "tcp4", net.JoinHostPort(m.ip, itoa(cfg.EWSPort)))
		if err != nil {
			return fmt.Errorf("listen api proxy of member %s: %w", m.ip, err)
		}
		m.proxyLn = ln
	}
	return nil
}

func (m *Member) closeListeners() {
	if m.apiLn != nil {
		_ = m.apiLn.Close()
	}
	if m.proxyLn != nil {
		_ = m.proxyLn.Close()
	}
}

func (m *Member) newServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       30 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(m.log.Handler(), slog.LevelDebug),
		BaseContext:       func(net.Listener) context.Context { return m.c.ctx },
	}
}

// serve starts the member's servers and loops.
func (m *Member) serve() {
	c := m.c
	m.apiSrv = m.newServer(http.HandlerFunc(m.ServeHTTP))
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		if err := m.apiSrv.Serve(m.apiLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			m.log.Error("api server stopped", "err", err)
		}
	}()
	if m.proxyLn != nil {
		m.proxySrv = m.newServer(m.ProxyHandler())
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			if err := m.proxySrv.Serve(m.proxyLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
				m.log.Error("api proxy server stopped", "err", err)
			}
		}()
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		m.pullLoop(c.ctx)
	}()
	if m.ev != nil {
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			m.ev.run(c.ctx)
		}()
	}
}

func (m *Member) closeServers() error {
	var errs []error
	if m.apiSrv != nil {
		if err := m.apiSrv.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close api of member %s: %w", m.ip, err))
		}
	}
	if m.proxySrv != nil {
		if err := m.proxySrv.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close api proxy of member %s: %w", m.ip, err))
		}
	}
	return errors.Join(errs...)
}

func itoa(n int) string { return strconv.Itoa(n) }
