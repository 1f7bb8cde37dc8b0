package controller

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"streamlb/internal/ems"
	"streamlb/internal/receiver"
)

// EMS is what the controller needs from one member's API. *ems.Client
// implements it. Errors are classified with ems.IsRetryable,
// ems.IsUnauthorized and ems.IsAlreadyTaken.
type EMS interface {
	Version(ctx context.Context) (ems.Version, error)
	PullStream(ctx context.Context, req ems.PullRequest) (ems.PullResult, error)
	ListConfig(ctx context.Context) ([]ems.PullConfig, error)
	ListInboundStreamNames(ctx context.Context) ([]string, error)
	RemoveConfig(ctx context.Context, configID uint64) error
}

// MemberSpec describes one member of the group.
type MemberSpec struct {
	Name      string
	Address   string // what the other members pull RTMP from
	API       string // "direct" or "proxy", for status
	Replicate bool   // false: the member is given no replicas
	// Host marks the sidecar's local EMS: the origin of events whose
	// payload.ip and sender match no member.
	Host   bool
	Client EMS
}

// Options configure a Controller. Zero durations and counts take the
// defaults of DESIGN.md §4.
type Options struct {
	Group             string
	AppName           string
	KeepAlive         bool
	ResyncInterval    time.Duration
	TeardownGrace     time.Duration
	Include, Exclude  []string
	MaxInflight       int
	MaxPullsPerSecond float64 // 0: no cap
	// CallTimeout bounds every EMS call; default 10s.
	CallTimeout time.Duration
	// ConfirmInterval spaces the listings that confirm events on one
	// origin; events arriving meanwhile share the next one. Default 20ms.
	ConfirmInterval time.Duration
	// RetryBase and RetryMax bound the backoff of a failing replica;
	// defaults 500ms and 30s.
	RetryBase, RetryMax time.Duration
	Members             []MemberSpec
	Logger              *slog.Logger
	Registerer          prometheus.Registerer
}

func (o *Options) setDefaults() {
	if o.Group == "" {
		o.Group = "default"
	}
	if o.AppName == "" {
		o.AppName = "live"
	}
	if o.ResyncInterval <= 0 {
		o.ResyncInterval = 30 * time.Second
	}
	if o.TeardownGrace <= 0 {
		o.TeardownGrace = 10 * time.Second
	}
	if o.MaxInflight <= 0 {
		o.MaxInflight = 8
	}
	if o.CallTimeout <= 0 {
		o.CallTimeout = 10 * time.Second
	}
	if o.ConfirmInterval <= 0 {
		o.ConfirmInterval = 20 * time.Millisecond
	}
	if o.RetryBase <= 0 {
		o.RetryBase = 500 * time.Millisecond
	}
	if o.RetryMax <= 0 {
		o.RetryMax = 30 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// Controller converges a group of EMS members. Create it with New, run it
// with Run; HandleStreamEvent, Snapshot, Pause, Resume and SetMembers are
// safe for concurrent use while it runs.
type Controller struct {
	opts Options
	log  *slog.Logger
	met  *metrics

	mu      sync.Mutex
	members []*member          // in configuration order
	byName  map[string]*member // by name
	byAddr  map[string]*member // by address
	sources map[string]map[*member]*source
	unknown map[string]struct{} // event origins already logged
	resync  ResyncStatus
	gen     uint64        // orders listings and this controller's changes
	ready   chan struct{} // closed once the first resync finished
	isReady bool

	runCtx   context.Context // set by Run; member goroutines derive from it
	wg       sync.WaitGroup
	resyncCh chan struct{}
}

// source is one stream seen as a source on one origin.
type source struct {
	firstSeen   time.Time
	absentSince time.Time // zero while present
}

// op records the work on one replica (member, stream).
type op struct {
	state    string
	since    time.Time
	attempts int
	lastErr  string
}

// member is one EMS and everything the controller keeps about it.
type member struct {
	spec  MemberSpec
	idx   int
	state string
	// paused members get no new work; their replicas stay.
	paused     bool
	lastErr    string
	latency    time.Duration
	failStreak int
	obs        observed
	ops        map[string]*op
	queue      *queue[string]
	limiter    *rate.Limiter
	changed    chan struct{} // closed and replaced on every state change
	wake       chan struct{} // wakes the member's lister
	needList   bool
	confirm    map[string]struct{}
	listMu     sync.Mutex // one listing of this member at a time
	cancel     context.CancelFunc
	done       sync.WaitGroup
}

// New returns a Controller for opts.Members. It starts nothing.
func New(opts Options) (*Controller, error) {
	opts.setDefaults()
	c := &Controller{
		opts:     opts,
		log:      opts.Logger,
		byName:   make(map[string]*member),
		byAddr:   make(map[string]*member),
		sources:  make(map[string]map[*member]*source),
		unknown:  make(map[string]struct{}),
		ready:    make(chan struct{}),
		resyncCh: make(chan struct{}, 1),
	}
	for i, s := range opts.Members {
		if err := c.addMemberLocked(s, i); err != nil {
			return nil, err
		}
	}
	c.met = newMetrics(opts.Registerer, c)
	return c, nil
}

func (c *Controller) addMemberLocked(s MemberSpec, idx int) error {
	if s.Name == "" || s.Address == "" || s.Client == nil {
		return fmt.Errorf("member %q: name, address and client are required", s.Name)
	}
	if _, ok := c.byName[s.Name]; ok {
		return fmt.Errorf("member %q: name used twice", s.Name)
	}
	if _, ok := c.byAddr[s.Address]; ok {
		return fmt.Errorf("member %q: address %s used twice", s.Name, s.Address)
	}
	lim := rate.NewLimiter(rate.Inf, 1)
	if c.opts.MaxPullsPerSecond > 0 {
		lim = rate.NewLimiter(rate.Limit(c.opts.MaxPullsPerSecond), max(1, int(c.opts.MaxPullsPerSecond)))
	}
	m := &member{
		spec:    s,
		idx:     idx,
		state:   MemberUp,
		obs:     newObserved(),
		ops:     make(map[string]*op),
		queue:   newQueue[string](),
		limiter: lim,
		changed: make(chan struct{}),
		wake:    make(chan struct{}, 1),
		confirm: make(map[string]struct{}),
	}
	c.members = append(c.members, m)
	c.byName[s.Name] = m
	c.byAddr[s.Address] = m
	return nil
}

// Ready returns a channel closed once the first resync has finished.
func (c *Controller) Ready() <-chan struct{} { return c.ready }

// Run runs the controller until ctx is cancelled, then stops its workers
// and waits for them. Calls in flight are cancelled with ctx.
func (c *Controller) Run(ctx context.Context) error {
	c.mu.Lock()
	if c.runCtx != nil {
		c.mu.Unlock()
		return errors.New("controller already running")
	}
	c.runCtx = ctx
	for _, m := range c.members {
		c.startMemberLocked(ctx, m)
	}
	c.mu.Unlock()

	c.resyncLoop(ctx)

	c.mu.Lock()
	ms := slices.Clone(c.members)
	c.mu.Unlock()
	for _, m := range ms {
		c.stopMember(m)
	}
	c.wg.Wait()
	return nil
}

// startMemberLocked starts m's workers and lister.
func (c *Controller) startMemberLocked(parent context.Context, m *member) {
	ctx, cancel := context.WithCancel(parent)
	m.cancel = cancel
	m.queue.setHooks(c.met.adds.Inc, func(d time.Duration) { c.met.queueDuration.Observe(d.Seconds()) })
	for range c.opts.MaxInflight {
		m.done.Go(func() { c.worker(ctx, m) })
	}
	m.done.Go(func() { c.lister(ctx, m) })
}

func (c *Controller) stopMember(m *member) {
	if m.cancel != nil {
		m.cancel()
	}
	m.queue.ShutDown()
	m.done.Wait()
}

// resyncLoop runs a resync at once and then every ResyncInterval, or when
// asked through resyncCh.
func (c *Controller) resyncLoop(ctx context.Context) {
	t := time.NewTicker(c.opts.ResyncInterval)
	defer t.Stop()
	for {
		c.Resync(ctx)
		c.mu.Lock()
		if !c.isReady {
			c.isReady = true
			close(c.ready)
			for _, m := range c.members {
				c.wakeLocked(m) // events waiting for the first resync
			}
		}
		c.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-c.resyncCh:
		}
	}
}

// Resync lists every member that is up (two calls each, concurrently),
// updates the sources, and queues every replica that needs work. It returns
// when the listings are done, not when the work is.
func (c *Controller) Resync(ctx context.Context) {
	start := time.Now()
	c.mu.Lock()
	var ms []*member
	for _, m := range c.members {
		if m.state == MemberUp {
			ms = append(ms, m)
		}
	}
	c.mu.Unlock()

	var wg sync.WaitGroup
	calls := make([]int, len(ms))
	for i, m := range ms {
		wg.Go(func() { calls[i] = c.listMember(ctx, m, true) })
	}
	wg.Wait()
	if ctx.Err() != nil {
		return
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	c.gcSourcesLocked(now)
	for _, m := range c.members {
		c.diffLocked(m, now)
	}
	total := 0
	for _, n := range calls {
		total += n
	}
	d := time.Since(start)
	c.resync = ResyncStatus{At: start, DurationMS: ms64(d), Calls: total}
	c.met.resyncDuration.Observe(d.Seconds())
}

// TriggerResync asks for a resync soon, without waiting for it.
func (c *Controller) TriggerResync() {
	select {
	case c.resyncCh <- struct{}{}:
	default:
	}
}

// listMember lists m: listConfig (when full) and listInboundStreamNames. It
// returns the number of calls made.
func (c *Controller) listMember(ctx context.Context, m *member, full bool) int {
	m.listMu.Lock()
	defer m.listMu.Unlock()
	c.mu.Lock()
	c.gen++
	start := c.gen
	c.mu.Unlock()
	calls := 0
	var configs []ems.PullConfig
	var err error
	if full {
		calls++
		err = c.call(ctx, m, "listConfig", func(ctx context.Context) error {
			configs, err = m.spec.Client.ListConfig(ctx)
			return err
		})
	}
	var inbound []string
	if err == nil {
		calls++
		err = c.call(ctx, m, "listInboundStreamNames", func(ctx context.Context) error {
			inbound, err = m.spec.Client.ListInboundStreamNames(ctx)
			return err
		})
	}
	if ctx.Err() != nil {
		return calls
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	if err != nil {
		c.memberFailedLocked(m, err, true)
		return calls
	}
	if full {
		m.obs.replace(start, now, configs, inbound)
	} else {
		m.obs.replaceInbound(inbound)
	}
	c.applyListingLocked(m, now)
	return calls
}

// isSourceLocked reports whether name is a source stream on m: an inbound
// stream that is not a replica (no streamlb tag, not pulled from a member).
func (c *Controller) isSourceLocked(m *member, name string) bool {
	if _, ok := m.obs.inbound[name]; !ok {
		return false
	}
	for _, cfg := range m.obs.configs[name] {
		if cfg.tagged {
			return false
		}
		if _, ok := c.byAddr[uriHost(cfg.uri)]; ok {
			return false
		}
	}
	return true
}

// applyListingLocked updates the sources of origin m after a listing.
func (c *Controller) applyListingLocked(m *member, now time.Time) {
	for name := range m.obs.inbound {
		if !c.isSourceLocked(m, name) {
			continue
		}
		recs := c.sources[name]
		if recs == nil {
			recs = make(map[*member]*source)
			c.sources[name] = recs
		}
		rec := recs[m]
		switch {
		case rec == nil:
			recs[m] = &source{firstSeen: now}
			c.met.sourcesSeen.Inc()
			c.enqueueAllLocked(name, 0)
		case !rec.absentSince.IsZero():
			rec.absentSince = time.Time{}
			c.enqueueAllLocked(name, 0)
		}
	}
	for name, recs := range c.sources {
		rec := recs[m]
		if rec == nil || !rec.absentSince.IsZero() || c.isSourceLocked(m, name) {
			continue
		}
		rec.absentSince = now
		c.enqueueAllLocked(name, 0)
		c.enqueueAllLocked(name, c.opts.TeardownGrace)
	}
}

// gcSourcesLocked forgets sources absent for long after their grace: their
// replicas have been removed by then.
func (c *Controller) gcSourcesLocked(now time.Time) {
	horizon := 3*c.opts.TeardownGrace + c.opts.ResyncInterval
	for name, recs := range c.sources {
		for m, rec := range recs {
			if c.byName[m.spec.Name] != m || (!rec.absentSince.IsZero() && now.Sub(rec.absentSince) > horizon) {
				delete(recs, m)
			}
		}
		if len(recs) == 0 {
			delete(c.sources, name)
		}
	}
}

// diffLocked queues every stream that needs work on destination m.
func (c *Controller) diffLocked(m *member, now time.Time) {
	if m.state != MemberUp {
		return
	}
	for name := range c.sources {
		if a := c.planLocked(m, name, now); a.kind != actNone {
			m.queue.Add(name)
		}
	}
	for name := range m.obs.configs {
		if _, ok := c.sources[name]; ok {
			continue
		}
		if a := c.planLocked(m, name, now); a.kind != actNone {
			m.queue.Add(name)
		}
	}
}

func (c *Controller) enqueueAllLocked(name string, after time.Duration) {
	for _, m := range c.members {
		m.queue.AddAfter(name, after)
	}
}

// winnerLocked returns the origin whose copy of name is replicated: of the
// members where it is a present source, the one that had it first.
func (c *Controller) winnerLocked(name string) *member {
	var best *member
	var bestRec *source
	for m, rec := range c.sources[name] {
		if !rec.absentSince.IsZero() || m.state != MemberUp {
			continue
		}
		if best == nil || rec.firstSeen.Before(bestRec.firstSeen) ||
			(rec.firstSeen.Equal(bestRec.firstSeen) && m.idx < best.idx) {
			best, bestRec = m, rec
		}
	}
	return best
}

// ownsLocked reports whether cfg on m is this group's to remove: tagged
// with its group, or adopted (an untagged pull of exactly a member's
// rtmp://ADDRESS/APP/NAME, as the original plugin leaves them).
func (c *Controller) ownsLocked(m *member, name string, cfg pullCfg) bool {
	if cfg.tagged {
		return cfg.tagGroup == c.opts.Group
	}
	o := c.byAddr[uriHost(cfg.uri)]
	return o != nil && o != m && isAdoptable(cfg, name, o.spec.Address, c.opts.AppName)
}

// originOfLocked returns the member a replica config pulls from, or nil.
func (c *Controller) originOfLocked(cfg pullCfg) *member {
	if cfg.tagOrigin != "" {
		return c.byAddr[cfg.tagOrigin]
	}
	return c.byAddr[uriHost(cfg.uri)]
}

type actionKind int

const (
	actNone actionKind = iota
	actPull
	actRemove
	actWait // re-check after a delay (teardown grace)
)

// action is what one (member, stream) needs, and the state to report.
type action struct {
	kind     actionKind
	desired  bool
	state    string
	origin   *member
	configID uint64
	after    time.Duration
	reason   string
}

// planLocked decides what stream name needs on member m. It is the whole
// policy: desired vs actual for one replica.
func (c *Controller) planLocked(m *member, name string, now time.Time) action {
	w := c.winnerLocked(name)
	cfgs := m.obs.configs[name]
	if w != nil && w != m && m.spec.Replicate && matches(name, c.opts.Include, c.opts.Exclude) {
		want := pullURI(w.spec.Address, c.opts.AppName, name)
		for _, cfg := range cfgs {
			if cfg.uri == want {
				st := StatePresent
				if since, ok := m.obs.failing[cfg.id]; ok && now.Sub(since) > c.opts.TeardownGrace {
					st = StateFailing
				}
				return action{kind: actNone, desired: true, state: st, origin: w}
			}
		}
		for _, cfg := range cfgs {
			if c.ownsLocked(m, name, cfg) {
				return action{kind: actRemove, desired: true, state: StatePending, origin: w, configID: cfg.id, reason: "origin changed"}
			}
		}
		if len(cfgs) > 0 {
			return action{kind: actNone, desired: true, state: StateConflict, origin: w,
				reason: fmt.Sprintf("a pull config named %q that streamlb did not create (%s)", name, cfgs[0].uri)}
		}
		if _, ok := m.obs.inbound[name]; ok {
			return action{kind: actNone, desired: true, state: StateConflict, origin: w,
				reason: fmt.Sprintf("%q is also a source on this member", name)}
		}
		return action{kind: actPull, desired: true, state: StateMissing, origin: w}
	}
	for _, cfg := range cfgs {
		if !c.ownsLocked(m, name, cfg) {
			continue
		}
		o := c.originOfLocked(cfg)
		if o == nil || o == m {
			continue // its origin left the group: prune's business
		}
		if w != nil && w != o {
			return action{kind: actRemove, configID: cfg.id, reason: "origin changed"}
		}
		recs := c.sources[name]
		if recs == nil {
			recs = make(map[*member]*source)
			c.sources[name] = recs
		}
		rec := recs[o]
		if rec == nil {
			rec = &source{firstSeen: now, absentSince: now}
			recs[o] = rec
		}
		if rec.absentSince.IsZero() {
			continue
		}
		if gone := now.Sub(rec.absentSince); gone < c.opts.TeardownGrace {
			return action{kind: actWait, after: c.opts.TeardownGrace - gone}
		}
		return action{kind: actRemove, configID: cfg.id, reason: "source ended"}
	}
	return action{kind: actNone}
}

// worker takes streams off m's queue and converges each on m.
func (c *Controller) worker(ctx context.Context, m *member) {
	for {
		name, ok := m.queue.Get()
		if !ok {
			return
		}
		if c.waitUsable(ctx, m) {
			c.work(ctx, m, name)
		}
		m.queue.Done(name)
		if ctx.Err() != nil {
			return
		}
	}
}

// waitUsable blocks until m is up, not paused, and the first resync is
// done. It reports false when ctx ends first.
func (c *Controller) waitUsable(ctx context.Context, m *member) bool {
	for {
		c.mu.Lock()
		ok := c.isReady && m.state == MemberUp && !m.paused
		wait := m.changed
		if !c.isReady {
			wait = c.ready
		}
		c.mu.Unlock()
		if ok {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-wait:
		}
	}
}

// work converges one replica.
func (c *Controller) work(ctx context.Context, m *member, name string) {
	start := time.Now()
	defer func() { c.met.workDuration.Observe(time.Since(start).Seconds()) }()

	c.mu.Lock()
	a := c.planLocked(m, name, start)
	c.recordLocked(m, name, a, start)
	c.mu.Unlock()

	switch a.kind {
	case actNone:
		return
	case actWait:
		m.queue.AddAfter(name, a.after)
		return
	case actPull:
		if err := m.limiter.Wait(ctx); err != nil {
			return
		}
		c.pull(ctx, m, name, a.origin)
	case actRemove:
		c.remove(ctx, m, name, a)
	}
}

func (c *Controller) pull(ctx context.Context, m *member, name string, origin *member) {
	uri := pullURI(origin.spec.Address, c.opts.AppName, name)
	keep := c.opts.KeepAlive
	req := ems.PullRequest{
		URI:             uri,
		LocalStreamName: name,
		KeepAlive:       &keep,
		Vars:            map[string]string{tagGroup: c.opts.Group, tagOrigin: origin.spec.Address},
	}
	var res ems.PullResult
	err := c.call(ctx, m, "pullStream", func(ctx context.Context) error {
		var err error
		res, err = m.spec.Client.PullStream(ctx, req)
		return err
	})
	if ctx.Err() != nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	o := c.opLocked(m, name, now)
	switch {
	case err == nil:
		m.obs.configs[name] = append(m.obs.configs[name], pullCfg{
			id: res.ConfigID, uri: uri, tagGroup: c.opts.Group, tagOrigin: origin.spec.Address, tagged: true,
		})
		c.gen++
		m.obs.changed[name] = c.gen
		o.attempts, o.lastErr = 0, ""
		c.met.pulls.Inc()
		m.log(c.log).Debug("replica pulled", "stream", name, "origin", origin.spec.Name, "config_id", res.ConfigID)
	case ems.IsAlreadyTaken(err):
		// Someone holds the name: look at the member's configs, then
		// decide (ours: done; someone else's: conflict).
		o.attempts++
		o.lastErr = trimErr(err)
		m.needList = true
		c.wakeLocked(m)
		m.queue.AddAfter(name, backoff(o.attempts, c.opts.RetryBase, c.opts.RetryMax))
	default:
		c.failedLocked(m, name, o, err)
	}
}

func (c *Controller) remove(ctx context.Context, m *member, name string, a action) {
	err := c.call(ctx, m, "removeConfig", func(ctx context.Context) error {
		return m.spec.Client.RemoveConfig(ctx, a.configID)
	})
	if ctx.Err() != nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	o := c.opLocked(m, name, now)
	if err != nil {
		c.failedLocked(m, name, o, err)
		return
	}
	cfgs := slices.DeleteFunc(m.obs.configs[name], func(cfg pullCfg) bool { return cfg.id == a.configID })
	if len(cfgs) == 0 {
		delete(m.obs.configs, name)
	} else {
		m.obs.configs[name] = cfgs
	}
	c.gen++
	m.obs.changed[name] = c.gen
	o.attempts, o.lastErr = 0, ""
	c.met.removals.Inc()
	m.log(c.log).Info("replica removed", "stream", name, "config_id", a.configID, "reason", a.reason)
	m.queue.Add(name) // a changed origin is pulled next
}

// failedLocked records a failed call on replica (m, name) and schedules
// its retry.
func (c *Controller) failedLocked(m *member, name string, o *op, err error) {
	o.attempts++
	msg := trimErr(err)
	if msg != o.lastErr {
		m.log(c.log).Warn("replica work failed", "stream", name, "attempt", o.attempts, "err", err)
	}
	o.lastErr = msg
	c.met.retries.Inc()
	c.memberFailedLocked(m, err, false)
	m.queue.AddAfter(name, backoff(o.attempts, c.opts.RetryBase, c.opts.RetryMax))
}

// memberFailedLocked counts a failed call against m's health: a 401 parks
// it as unauthorized; a failed listing, or three transport or 5xx failures
// in a row, park it as down.
func (c *Controller) memberFailedLocked(m *member, err error, listing bool) {
	switch {
	case ems.IsUnauthorized(err):
		c.setStateLocked(m, MemberUnauthorized, err)
	case ems.IsRetryable(err):
		m.failStreak++
		if listing || m.failStreak >= 3 {
			c.setStateLocked(m, MemberDown, err)
		}
	default:
		if listing {
			c.setStateLocked(m, MemberDown, err)
		}
	}
}

func (c *Controller) setStateLocked(m *member, state string, err error) {
	if err != nil {
		m.lastErr = trimErr(err)
	}
	if m.state == state {
		return
	}
	prev := m.state
	m.state = state
	close(m.changed)
	m.changed = make(chan struct{})
	now := time.Now()
	switch state {
	case MemberUp:
		m.failStreak = 0
		m.needList = true
		m.log(c.log).Info("member is back", "was", prev)
	default:
		// Its sources count as absent from now: their replicas elsewhere
		// are removed if it stays away past the grace.
		for name, recs := range c.sources {
			if rec := recs[m]; rec != nil && rec.absentSince.IsZero() {
				rec.absentSince = now
				c.enqueueAllLocked(name, c.opts.TeardownGrace)
			}
		}
		if state == MemberUnauthorized {
			m.log(c.log).Error("wrong credentials for member; parked until the config changes", "err", err)
		} else {
			m.log(c.log).Warn("member is down; parked and probed", "err", err)
		}
	}
	c.wakeLocked(m)
}

func (c *Controller) wakeLocked(m *member) {
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// lister runs m's on-demand listings: confirmations of events, relists
// after a name conflict or a return, and the probes of a parked member.
func (c *Controller) lister(ctx context.Context, m *member) {
	probes := 0
	var timer <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-m.wake:
		case <-timer:
		}
		timer = nil
		c.mu.Lock()
		if !c.isReady {
			c.mu.Unlock()
			continue // woken again once the first resync is done
		}
		state := m.state
		needList, confirm := m.needList, len(m.confirm) > 0
		if state == MemberUp {
			m.needList = false
			clear(m.confirm)
		}
		c.mu.Unlock()
		if state != MemberUp {
			if c.probe(ctx, m) {
				probes = 0
				continue
			}
			probes++
			// A down member is probed sooner at first; wrong credentials
			// will not fix themselves, so that member waits a full interval.
			wait := min(backoff(probes, time.Second, c.opts.ResyncInterval), c.opts.ResyncInterval)
			if state == MemberUnauthorized {
				wait = c.opts.ResyncInterval
			}
			timer = time.After(wait)
			continue
		}
		switch {
		case needList:
			c.listMember(ctx, m, true)
			c.mu.Lock()
			c.diffLocked(m, time.Now())
			c.mu.Unlock()
		case confirm:
			c.listMember(ctx, m, false)
		default:
			continue
		}
		// Events arriving meanwhile share the next listing.
		select {
		case <-ctx.Done():
			return
		case <-time.After(c.opts.ConfirmInterval):
		}
	}
}

// probe checks a parked member with one call; on success the member is up
// again and its resync is queued.
func (c *Controller) probe(ctx context.Context, m *member) bool {
	err := c.call(ctx, m, "version", func(ctx context.Context) error {
		_, err := m.spec.Client.Version(ctx)
		return err
	})
	if ctx.Err() != nil {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		if m.state != MemberUnauthorized || ems.IsUnauthorized(err) {
			m.lastErr = trimErr(err)
		}
		return false
	}
	c.setStateLocked(m, MemberUp, nil)
	return true
}

// call runs one EMS call on m with a deadline, and records its latency and
// result.
func (c *Controller) call(ctx context.Context, m *member, command string, fn func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, c.opts.CallTimeout)
	defer cancel()
	start := time.Now()
	err := fn(ctx)
	d := time.Since(start)
	c.met.observeCall(m.spec.Name, command, d, err)
	c.mu.Lock()
	if m.latency == 0 {
		m.latency = d
	} else {
		m.latency = (m.latency*7 + d) / 8
	}
	if err == nil {
		m.failStreak = 0
	}
	c.mu.Unlock()
	return err // an *ems.Error names the member and the command
}

// opLocked returns the work record of replica (m, name), creating it.
func (c *Controller) opLocked(m *member, name string, now time.Time) *op {
	o := m.ops[name]
	if o == nil {
		o = &op{since: now}
		m.ops[name] = o
	}
	return o
}

// recordLocked keeps the replica's reported state and when it changed;
// records of replicas that are fine are dropped, so memory follows the
// trouble, not the group's size.
func (c *Controller) recordLocked(m *member, name string, a action, now time.Time) {
	o := m.ops[name]
	if !a.desired || (a.state == StatePresent && (o == nil || o.attempts == 0)) {
		if o != nil && a.kind == actNone {
			delete(m.ops, name)
		}
		return
	}
	if o == nil {
		o = &op{since: now}
		m.ops[name] = o
	}
	if o.state != a.state {
		o.state, o.since = a.state, now
		if a.state == StateConflict {
			m.log(c.log).Warn("name conflict; left alone", "stream", name, "reason", a.reason)
		}
	}
}

// HandleStreamEvent takes an inStreamCreated or inStreamClosed event as a
// hint: the stream is confirmed on its origin (one listing per origin
// serves every event that arrived meanwhile) before anything is pulled. It
// never blocks.
func (c *Controller) HandleStreamEvent(ev receiver.StreamEvent) {
	c.mu.Lock()
	defer c.mu.Unlock()
	o := c.byAddr[ev.IP]
	if o == nil && ev.Peer.IsValid() {
		o = c.byAddr[ev.Peer.Unmap().String()]
	}
	if o == nil {
		o = c.hostLocked()
	}
	if o == nil {
		c.met.events.WithLabelValues("unknown_origin").Inc()
		key := ev.IP + "|" + ev.Peer.String()
		if _, seen := c.unknown[key]; !seen && len(c.unknown) < 1024 {
			c.unknown[key] = struct{}{}
			c.log.Warn("event from an unknown origin; acknowledged, not acted on", "payload_ip", ev.IP, "peer", ev.Peer.String(), "stream", ev.Name)
		}
		return
	}
	replica := false
	if _, ok := ev.Vars[tagGroup]; ok {
		replica = true
	} else if _, ok := c.byAddr[uriHost(ev.PullURI)]; ok && ev.PullURI != "" {
		replica = true
	}
	if replica && ev.Type == "inStreamCreated" {
		c.met.events.WithLabelValues("replica").Inc()
		return
	}
	if replica {
		// A replica ended on o; with keepAlive=0 its config is gone.
		c.met.events.WithLabelValues("replica").Inc()
		if !c.opts.KeepAlive {
			o.needList = true
			c.wakeLocked(o)
		}
		return
	}
	c.met.events.WithLabelValues("confirm").Inc()
	o.confirm[ev.Name] = struct{}{}
	c.wakeLocked(o)
}

// hostLocked returns the sidecar's local member, or nil.
func (c *Controller) hostLocked() *member {
	for _, m := range c.members {
		if m.spec.Host {
			return m
		}
	}
	return nil
}

// Pause stops giving new work to the named member; its replicas stay.
func (c *Controller) Pause(name string) error { return c.setPaused(name, true) }

// Resume gives work to a paused member again.
func (c *Controller) Resume(name string) error { return c.setPaused(name, false) }

// ErrUnknownMember is returned for a member name that is not in the group.
var ErrUnknownMember = errors.New("unknown member")

func (c *Controller) setPaused(name string, paused bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := c.byName[name]
	if m == nil {
		return fmt.Errorf("%w %q", ErrUnknownMember, name)
	}
	if m.paused == paused {
		return nil
	}
	m.paused = paused
	close(m.changed)
	m.changed = make(chan struct{})
	if !paused {
		m.needList = true
		c.wakeLocked(m)
	}
	m.log(c.log).Info("member paused", "paused", paused)
	return nil
}

// SetMembers applies a reloaded member list: new members are added and
// filled, removed members are forgotten (their replicas stay, for prune),
// members whose spec is unchanged keep their state and workers, and a
// member whose client changed (new credentials) starts afresh.
func (c *Controller) SetMembers(specs []MemberSpec, same func(a, b MemberSpec) bool) error {
	c.mu.Lock()
	var stop []*member
	keep := make(map[string]bool)
	var next []*member
	byName := make(map[string]*member)
	byAddr := make(map[string]*member)
	for i, s := range specs {
		old := c.byName[s.Name]
		if old != nil && same(old.spec, s) {
			old.idx = i
			old.spec.Replicate = s.Replicate
			next = append(next, old)
			keep[s.Name] = true
		} else {
			if old != nil {
				stop = append(stop, old)
				keep[s.Name] = true
			}
			lim := rate.NewLimiter(rate.Inf, 1)
			if c.opts.MaxPullsPerSecond > 0 {
				lim = rate.NewLimiter(rate.Limit(c.opts.MaxPullsPerSecond), max(1, int(c.opts.MaxPullsPerSecond)))
			}
			next = append(next, &member{
				spec: s, idx: i, state: MemberUp, obs: newObserved(), ops: make(map[string]*op),
				queue: newQueue[string](), limiter: lim, changed: make(chan struct{}),
				wake: make(chan struct{}, 1), confirm: make(map[string]struct{}), needList: true,
			})
		}
		m := next[len(next)-1]
		if _, dup := byName[s.Name]; dup {
			c.mu.Unlock()
			return fmt.Errorf("member %q: name used twice", s.Name)
		}
		if _, dup := byAddr[s.Address]; dup {
			c.mu.Unlock()
			return fmt.Errorf("member %q: address %s used twice", s.Name, s.Address)
		}
		byName[s.Name], byAddr[s.Address] = m, m
	}
	for _, m := range c.members {
		if !keep[m.spec.Name] {
			stop = append(stop, m)
		}
	}
	// Sources follow a member that was replaced (new credentials) and are
	// forgotten with a member that left: it is no origin any more, and its
	// replicas elsewhere are left for prune.
	for name, recs := range c.sources {
		for m, rec := range recs {
			if byName[m.spec.Name] == m {
				continue
			}
			delete(recs, m)
			if nm := byName[m.spec.Name]; nm != nil && nm.spec.Address == m.spec.Address {
				recs[nm] = rec
			}
		}
		if len(recs) == 0 {
			delete(c.sources, name)
		}
	}
	c.members, c.byName, c.byAddr = next, byName, byAddr
	for _, m := range next {
		if m.cancel == nil && c.runCtx != nil {
			c.startMemberLocked(c.runCtx, m)
			c.wakeLocked(m)
		}
	}
	c.mu.Unlock()
	for _, m := range stop {
		c.stopMember(m)
	}
	c.TriggerResync()
	return nil
}

func (m *member) log(l *slog.Logger) *slog.Logger {
	return l.With("member", m.spec.Name)
}

func ms64(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
