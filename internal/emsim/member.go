package emsim

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Faults are the failures injected into one member.
type Faults struct {
	// Latency is added to every EMS API answer (direct or proxied) and to
	// the time the member's pulls take to connect.
	Latency time.Duration
	// ErrorRate is the share, from 0 to 1, of EMS API calls answered with
	// HTTP 500.
	ErrorRate float64
	// APIDown makes every EMS API call (direct or proxied) have its
	// connection closed without an answer.
	APIDown bool
	// Down makes every EMS API call have its connection closed without an
	// answer, stops the member's events and makes pulls from it fail.
	// Control routes keep answering.
	Down bool
}

// Latency, ErrorRate and APIDown are API faults: they never touch the media
// plane, so pulls from a member whose API fails keep streaming, as a real
// EMS's RTMP port does while its HTTP API fails. Only Down stops the media.

// PullConfigView is a snapshot of one pull configuration.
type PullConfigView struct {
	ConfigID        uint64
	LocalStreamName string
	URI             string
	KeepAlive       bool
	// StatusCode is the current status: StatusStreaming,
	// StatusConnecting, StatusConnected, StatusDisconnected or
	// StatusConnectionFailed.
	StatusCode int
	// Vars holds the user-defined variables ('_' parameters); array values
	// are joined with commas.
	Vars map[string]string
}

// Member is one emulated EMS. Its methods are safe for concurrent use. A
// Member is created by Start and lives until its Cluster is closed.
type Member struct {
	c        *Cluster
	ip       string
	idx      int
	pid      int
	log      *slog.Logger
	apiURL   string
	proxyURL string

	apiLn, proxyLn   net.Listener
	apiSrv, proxySrv *http.Server

	calls       callCounter
	mediaChecks atomic.Int64 // GET /_emsim/media answered
	fullChecks  atomic.Int64 // checks of the streaming pulls, periodic or asked for, done
	allChecks   atomic.Int64 // those that included pulls from this process's members
	ev          *eventSender // nil when events are off
	kick        chan struct{}

	pendMu   sync.Mutex // guards pendAll and pendGone; taken after mu, never before
	pendAll  bool       // check every streaming pull
	pendGone []srcRef   // check the pulls of these sources

	// checkBatch and checkRefs are checkStreaming's buffers, kept from one
	// check to the next, guarded by checkMu (the pull loop makes the
	// checks; tests may too).
	checkMu    sync.Mutex
	checkBatch []attempt
	checkRefs  []srcRef

	mu           sync.Mutex
	faults       Faults
	streams      map[string]*stream
	streamByID   map[uint64]*stream
	byID         []*stream // streams in uniqueId order, closed ones not yet dropped
	configs      map[uint64]*pullConfig
	configByName map[string]*pullConfig
	// remote counts the configs whose sources are not this process's
	// members: the periodic check has nothing to look at while it is
	// zero (at 50,000 streams × 16 members, walking every config each
	// second took a fifth of a core).
	remote       int
	bySource     map[srcRef]map[*pullConfig]struct{} // streaming pulls from members
	lastStreamID uint64
	lastConfigID uint64
	lastPull     time.Time // when the latest successful pullStream was answered
	extDown      map[string]bool
	changed      chan struct{} // closed at the next change; nil until someone waits
	due          dueHeap
	eventID      uint64
	out          outView
}

func newMember(c *Cluster, idx int, ip string) *Member {
	m := &Member{
		c:            c,
		ip:           ip,
		idx:          idx,
		pid:          c.pid + idx,
		log:          c.log.With("member", ip),
		apiURL:       "http://" + net.JoinHostPort(ip, itoa(c.cfg.APIPort)),
		kick:         make(chan struct{}, 1),
		streams:      make(map[string]*stream),
		streamByID:   make(map[uint64]*stream),
		configs:      make(map[uint64]*pullConfig),
		configByName: make(map[string]*pullConfig),
		bySource:     make(map[srcRef]map[*pullConfig]struct{}),
		extDown:      make(map[string]bool),
		out:          newOutView(),
	}
	if c.cfg.EWSPort != 0 {
		m.proxyURL = "http://" + net.JoinHostPort(ip, itoa(c.cfg.EWSPort)) + "/" + c.cfg.PseudoDomain
	}
	if c.cfg.EventsURL != "" {
		m.ev = newEventSender(m, c.cfg.EventsURL, c.cfg.EnabledEvents)
	}
	return m
}

// changedLocked wakes everything waiting for a change of m's state. The
// next channel is made when someone waits (Await): a pull changes its
// member's state several times, and most members have no one waiting.
func (m *Member) changedLocked() {
	if m.changed != nil {
		close(m.changed)
		m.changed = nil
	}
}

// IP returns the member's address.
func (m *Member) IP() string { return m.ip }

// APIURL returns the base URL of the member's EMS API, "http://IP:APIPort".
func (m *Member) APIURL() string { return m.apiURL }

// ProxyURL returns the base URL of the member's API proxy,
// "http://IP:EWSPort/PSEUDODOMAIN", or "" when the proxy is off.
func (m *Member) ProxyURL() string { return m.proxyURL }

// ErrNameHeldByPull is returned by Publish for a name that a pull
// configuration of the member holds: EMS refuses such a publisher.
var ErrNameHeldByPull = errors.New("a pull configuration holds that stream name")

// Publish makes an encoder start publishing name on m: an inbound stream
// with connectionType 0 and no pullSettings. It fails when an inbound stream
// of that name exists, and with ErrNameHeldByPull (nothing changed) when a
// pull configuration of m holds the name.
func (m *Member) Publish(name string) error {
	if name == "" {
		return errors.New("publish: empty stream name")
	}
	now := time.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.publishLocked(name, now)
}

func (m *Member) publishLocked(name string, now time.Time) error {
	if _, held := m.configByName[name]; held {
		return fmt.Errorf("publish %q: %w", name, ErrNameHeldByPull)
	}
	if _, taken := m.streams[name]; taken {
		return fmt.Errorf("publish %q: stream name already taken", name)
	}
	m.lastStreamID++
	st := &stream{
		id:        m.lastStreamID,
		name:      name,
		created:   now,
		farIP:     "127.0.0.1",
		farPort:   ephemeralPort(m.lastStreamID + 7),
		nearPort:  1935,
		typ:       "INR",
		publisher: "FMLE/3.0 (compatible; FMSc/1.0)",
	}
	m.addStreamLocked(st)
	m.emitLocked("inStreamCreated", st, now)
	m.log.Debug("published", "stream", name)
	return nil
}

// Unpublish makes the encoder publishing name on m stop. It fails when no
// published stream of that name exists.
func (m *Member) Unpublish(name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	st, ok := m.streams[name]
	if !ok || st.cfg != nil {
		return fmt.Errorf("unpublish %q: no published stream of that name", name)
	}
	m.closeStreamLocked(st, time.Now())
	m.log.Debug("unpublished", "stream", name)
	return nil
}

// SetFaults replaces the faults injected into m.
func (m *Member) SetFaults(f Faults) {
	f.ErrorRate = min(max(f.ErrorRate, 0), 1)
	f.Latency = max(f.Latency, 0)
	m.mu.Lock()
	wasDown := m.faults.Down
	m.faults = f
	m.changedLocked()
	m.mu.Unlock()
	if wasDown != f.Down {
		m.c.upstreamChanged()
		m.log.Info("member down state changed", "down", f.Down)
	}
}

// Faults returns the faults injected into m.
func (m *Member) Faults() Faults {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.faults
}

func (m *Member) isDown() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.faults.Down
}

// SetExternalAvailable makes the external source uri (a pull URI exactly as
// given to pullStream whose host is not an emulated member) available or
// not to m's pulls. Unavailable sources fail to connect, and streams pulled
// from them close.
func (m *Member) SetExternalAvailable(uri string, available bool) {
	m.mu.Lock()
	if available {
		delete(m.extDown, uri)
	} else {
		m.extDown[uri] = true
	}
	m.mu.Unlock()
	if !available {
		m.requestCheck()
	}
}

// InboundNames returns the names of m's inbound streams, sorted.
func (m *Member) InboundNames() []string {
	m.mu.Lock()
	names := make([]string, 0, len(m.streams))
	for n := range m.streams {
		names = append(names, n)
	}
	m.mu.Unlock()
	slices.Sort(names)
	return names
}

// PullConfigs returns a snapshot of m's pull configurations, by configId.
func (m *Member) PullConfigs() []PullConfigView {
	m.mu.Lock()
	out := make([]PullConfigView, 0, len(m.configs))
	for _, c := range m.configs {
		out = append(out, PullConfigView{
			ConfigID:        c.set.ConfigID,
			LocalStreamName: c.set.LocalStreamName,
			URI:             c.set.URI,
			KeepAlive:       c.set.KeepAlive,
			StatusCode:      c.cur.code,
			Vars:            c.set.varsMap(),
		})
	}
	m.mu.Unlock()
	slices.SortFunc(out, func(a, b PullConfigView) int { return cmp.Compare(a.ConfigID, b.ConfigID) })
	return out
}

// CallCount returns how many EMS API calls (direct or proxied) m answered
// with an EMS envelope for the command, unknown commands included. The
// command is case-insensitive; listPullPushConfig and removePullPushConfig
// count as listConfig and removeConfig. Calls dropped while down or
// answered HTTP 500 are not counted.
func (m *Member) CallCount(command string) int64 {
	return m.calls.get(canonicalCommand(strings.ToLower(command)))
}

// DroppedEvents returns how many events m dropped because its queue was
// full.
func (m *Member) DroppedEvents() int64 {
	if m.ev == nil {
		return 0
	}
	return m.ev.dropped.Load()
}

// SentEvents returns how many events m posted and got an answer for.
func (m *Member) SentEvents() int64 {
	if m.ev == nil {
		return 0
	}
	return m.ev.sent.Load()
}

// Await blocks until cond returns true, evaluating it at once and after
// every change of m's streams, configurations or faults. cond may call m's
// snapshot methods. It returns the cause of ctx when ctx ends first.
func (m *Member) Await(ctx context.Context, cond func() bool) error {
	for {
		m.mu.Lock()
		if m.changed == nil {
			m.changed = make(chan struct{})
		}
		ch := m.changed
		m.mu.Unlock()
		if cond() {
			return nil
		}
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-ch:
		}
	}
}

func (m *Member) hasStream(name string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, ok := m.streams[name]
	return ok
}

// AwaitInbound blocks until name is an inbound stream of m.
func (m *Member) AwaitInbound(ctx context.Context, name string) error {
	if err := m.Await(ctx, func() bool { return m.hasStream(name) }); err != nil {
		return fmt.Errorf("await inbound stream %q on %s: %w", name, m.ip, err)
	}
	return nil
}

// AwaitNoInbound blocks until name is not an inbound stream of m.
func (m *Member) AwaitNoInbound(ctx context.Context, name string) error {
	if err := m.Await(ctx, func() bool { return !m.hasStream(name) }); err != nil {
		return fmt.Errorf("await no inbound stream %q on %s: %w", name, m.ip, err)
	}
	return nil
}

// AwaitPullStatus blocks until m has a pull configuration named name whose
// current status code is code.
func (m *Member) AwaitPullStatus(ctx context.Context, name string, code int) error {
	cond := func() bool {
		m.mu.Lock()
		defer m.mu.Unlock()
		c, ok := m.configByName[name]
		return ok && c.cur.code == code
	}
	if err := m.Await(ctx, cond); err != nil {
		return fmt.Errorf("await pull %q status %d on %s: %w", name, code, m.ip, err)
	}
	return nil
}

// AwaitNoPullConfig blocks until m has no pull configuration named name.
func (m *Member) AwaitNoPullConfig(ctx context.Context, name string) error {
	cond := func() bool {
		m.mu.Lock()
		defer m.mu.Unlock()
		_, ok := m.configByName[name]
		return !ok
	}
	if err := m.Await(ctx, cond); err != nil {
		return fmt.Errorf("await no pull config %q on %s: %w", name, m.ip, err)
	}
	return nil
}

// hasInbound reports, for each name, whether it is an inbound stream of m
// that others can pull: false for all while m is down.
func (m *Member) hasInbound(names []string) []avail {
	out := make([]avail, len(names))
	m.mu.Lock()
	defer m.mu.Unlock()
	for i, n := range names {
		out[i] = availNo
		if _, ok := m.streams[n]; ok && !m.faults.Down {
			out[i] = availYes
		}
	}
	return out
}

// callCounter counts answered API calls by command.
type callCounter struct {
	mu sync.RWMutex
	m  map[string]*atomic.Int64
}

func (c *callCounter) inc(cmd string) {
	c.mu.RLock()
	n := c.m[cmd]
	c.mu.RUnlock()
	if n == nil {
		c.mu.Lock()
		if c.m == nil {
			c.m = make(map[string]*atomic.Int64)
		}
		if n = c.m[cmd]; n == nil {
			n = new(atomic.Int64)
			c.m[cmd] = n
		}
		c.mu.Unlock()
	}
	n.Add(1)
}

// all returns every count by command.
func (c *callCounter) all() map[string]int64 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := make(map[string]int64, len(c.m))
	for k, n := range c.m {
		out[k] = n.Load()
	}
	return out
}

func (c *callCounter) get(cmd string) int64 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if n := c.m[cmd]; n != nil {
		return n.Load()
	}
	return 0
}
