package controller

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"streamlb/internal/ems"
)

// EMS is what the controller needs from one member's API. *ems.Client
// implements it. Errors are classified with ems.IsRetryable,
// ems.IsUnauthorized and ems.IsAlreadyTaken.
type EMS interface {
	Version(ctx context.Context) (ems.Version, error)
	PullStream(ctx context.Context, req ems.PullRequest) (ems.PullResult, error)
	// EachPullConfigSkipping lists the member's pull configs one at a
	// time (listConfig, decoded as a stream): fn must copy what it keeps;
	// an entry that does not decode is passed to skip instead.
	EachPullConfigSkipping(ctx context.Context, fn func(*ems.PullConfig) error, skip func(error)) error
	ListInboundStreamNames(ctx context.Context) ([]string, error)
	GetStreamInfo(ctx context.Context, localStreamName string) (ems.StreamInfo, error)
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
	Host bool
	// Weight weighs the member in the rendezvous hashing of demand
	// copies; default 1.
	Weight float64
	Client EMS
}

// Options configure a Controller. Zero durations and counts take the
// defaults of DESIGN.md §4.
type Options struct {
	Group            string
	AppName          string
	KeepAlive        bool
	ResyncInterval   time.Duration
	TeardownGrace    time.Duration
	Include, Exclude []string
	MaxInflight      int
	// MaxPullsPerSecond is the ceiling of new replica pulls per second
	// taken from one origin, across all destinations, under an adaptive
	// rate (pullGate); 0: no cap.
	MaxPullsPerSecond float64
	// CallTimeout bounds every EMS call; default 10s.
	CallTimeout time.Duration
	// ConfirmInterval spaces the listings that confirm events on one
	// origin: the next waits at least this long, and at least three times
	// as long as the last took; events arriving meanwhile share it. Default
	// 2ms.
	ConfirmInterval time.Duration
	// Replication says how many members hold each source; default every
	// member (ModeAll).
	Replication Replication
	// JournalSize is how many transitions the journal keeps; default
	// DefaultJournalSize.
	JournalSize int
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
		o.ConfirmInterval = 2 * time.Millisecond
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
	o.Replication.setDefaults()
}

// Controller converges a group of EMS members. Create it with New, run it
// with Run; HandleStreamEvent, Snapshot, Pause, Resume and SetMembers are
// safe for concurrent use while it runs.
type Controller struct {
	opts Options
	log  *slog.Logger
	met  *metrics

	mu sync.Mutex
	// confirmed is signalled (on mu) whenever a call confirming one name
	// ends: a listing of its member waits for those in flight.
	confirmed *sync.Cond
	members   []*member          // in configuration order
	byName    map[string]*member // by name
	byAddr    map[string]*member // by address
	sources   map[string]map[*member]*source
	unknown   map[string]struct{} // event origins already logged
	resync    ResyncStatus
	// lastReload is the result of the last config reload, nil before one.
	lastReload *ReloadStatus
	gen        uint64        // orders listings and this controller's changes
	ready      chan struct{} // closed once the first resync finished
	isReady    bool

	running  bool // Run has begun
	wg       sync.WaitGroup
	resyncCh chan struct{}
	// membersCh tells Run's member loop that SetMembers added members to
	// start or retired members to stop.
	membersCh chan struct{}
	// rediffCh tells the member loop that the members streams are placed
	// on changed (mode demand: a member went down or was paused, or was
	// listed back up), and every stream needs planning again.
	rediffCh chan struct{}
	retired  []*member
	inbox    *inbox // stream events on their way from the sink
	journal  *journal
	rows     rowCache // the status document's rows
	// stopping is set once Run stops its members: a member added later
	// is not started.
	stopping bool
	// Demand copies: the rendezvous order of each stream's members, and
	// the streams a play request wants a copy of.
	ranks  map[string][]*member
	wanted map[string]time.Time
	// resyncHold is the longest the resync in progress has held mu in one
	// go so far (applying a member's listing).
	resyncHold time.Duration
	// afterDiffChunk, when set, runs between two chunks of a diff, with
	// the lock free (tests).
	afterDiffChunk func()
	// diffedNames, when set, is told how many names each diff of some
	// streams on one member plans, with the lock free (tests).
	diffedNames func(m *member, n int)
}

// source is one stream seen as a source on one origin.
type source struct {
	firstSeen   time.Time
	absentSince time.Time // zero while present
	// absentLook is when the look that found it absent started: the
	// absence is evidence about replicas known by then (absentSince, when
	// that look was applied, is later).
	absentLook time.Time
	// created is the stream's creationTimestamp as its EMS reports it
	// (milliseconds), looked up only for a name that is a source on
	// several members; 0 while unknown.
	created float64
}

// op records the work on one replica (member, stream).
type op struct {
	state    string
	since    time.Time
	attempts int
	lastErr  string
}

// member is one EMS of the group. Its parts say what each field holds:
// what the configuration gave (spec, idx), what was seen of it (health,
// obs), what is being done on it (work), and its goroutines (run). Unless
// a field says otherwise, it is guarded by the controller's lock.
type member struct {
	spec   MemberSpec
	idx    int // position in the configuration
	health memberHealth
	obs    observed
	work   memberWork
	run    memberRun
}

// memberHealth is what the member's calls and listings showed of it.
type memberHealth struct {
	state     string // MemberUp, MemberDown or MemberUnauthorized
	lastErr   string
	lastErrAt time.Time
	// upAt is when the member last came back up: its work waits for a
	// full listing started after it, not the view from before.
	upAt time.Time
	// skipped counts the entries of the member's last listConfig that did
	// not decode, skipErr says why.
	skipped int
	skipErr string
	// latency (nanoseconds, a moving average of its calls) and failStreak
	// are updated after every call without the controller's lock.
	latency    atomic.Int64
	failStreak atomic.Int32
	// load holds the member's two latest load samples, newest first
	// (demand copies).
	load [2]*LoadSample
	// stateChanged is closed and replaced on every change of state or
	// pause: workers waiting for the member to come back wake on it.
	stateChanged chan struct{}
}

// memberWork is what is being done on the member and what asks for it.
type memberWork struct {
	// paused is the operator's: no new work; the replicas stay.
	paused bool
	ops    map[string]*op // work records of replicas in trouble, by stream
	queue  *queue[string] // streams to work on
	pulls  *pullGate      // paces new pulls taken from this member as origin
	// removals holds, per stream, when a removal was decided (or, once
	// the grace is over, began to wait for the looks it needs): it is made
	// with a configId from a listing of the member started after that.
	removals map[string]time.Time
	// confirm holds names to confirm on this member as origin, since
	// when; lookup the names whose creation time is wanted from it (a
	// conflict's tie-break).
	confirm map[string]time.Time
	lookup  map[string]struct{}
	// recheck holds names whose removal from other members waits for a
	// look at this member as their origin, taken after the removal was
	// decided. Removals are not urgent: the next listing of the member's
	// inbound streams, at most one every removeListSpacing, answers them
	// all, instead of a call per name and member that would hold up the
	// confirmations of new streams.
	recheck map[string]struct{}
	// confirming holds the names whose own confirmation call is in
	// flight (dispatchConfirmsLocked).
	confirming map[string]struct{}
	// needList asks the lister for a full listing, needInbound for one of
	// the inbound streams only (pulls made here wait to be seen
	// streaming); wake wakes the lister. needListRemove asks for a full
	// listing that removals wait for: one at most every
	// removeListSpacing serves them all.
	needList       bool
	needInbound    bool
	needListRemove bool
	wake           chan struct{}
	// listingFull is set while a full listing of the member is in flight:
	// the changes this controller makes meanwhile are noted in obs.ownChanges.
	listingFull bool
	// listing is set while a listing of the member waits for, or makes,
	// its calls. No call confirming one name starts until its inbound
	// streams are listed (inboundListed): what such a call found could be
	// older than what the listing shows. Calls that start after that (while
	// a full listing reads the member's configs, which takes far longer)
	// are newer than the listing: what they find is applied at once and
	// kept in newer, which the listing's own result does not undo.
	listing       bool
	inboundListed bool
	newer         map[string]bool // name → a source, by its own confirmation
}

// memberRun is the member's goroutines: its lister and workers.
type memberRun struct {
	ctx    context.Context // set by startMemberLocked
	cancel context.CancelFunc
	done   sync.WaitGroup
	// workers is how many workers run, workerTarget how many should:
	// workers past it stop after the work they took. Atomic.
	workers      atomic.Int32
	workerTarget atomic.Int32
	stopped      bool       // stopMember has begun: no more goroutines
	listMu       sync.Mutex // one listing of this member at a time
}

// New returns a Controller for opts.Members. It starts nothing.
func New(opts Options) (*Controller, error) {
	opts.setDefaults()
	c := &Controller{
		opts:      opts,
		log:       opts.Logger,
		byName:    make(map[string]*member),
		byAddr:    make(map[string]*member),
		sources:   make(map[string]map[*member]*source),
		unknown:   make(map[string]struct{}),
		ready:     make(chan struct{}),
		resyncCh:  make(chan struct{}, 1),
		membersCh: make(chan struct{}, 1),
		rediffCh:  make(chan struct{}, 1),
		inbox:     newInbox(),
		journal:   newJournal(opts.JournalSize),
		rows:      newRowCache(),
		ranks:     make(map[string][]*member),
		wanted:    make(map[string]time.Time),
	}
	c.confirmed = sync.NewCond(&c.mu)
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
	m := c.newMember(s, idx)
	c.members = append(c.members, m)
	c.byName[s.Name] = m
	c.byAddr[s.Address] = m
	return nil
}

// newMember returns the state of a member that has not been listed yet.
func (c *Controller) newMember(s MemberSpec, idx int) *member {
	return &member{
		spec:   s,
		idx:    idx,
		health: memberHealth{state: MemberUp, stateChanged: make(chan struct{})},
		obs:    newObserved(),
		work: memberWork{
			ops:        make(map[string]*op),
			queue:      newQueue[string](),
			pulls:      newPullGate(c.opts.MaxPullsPerSecond),
			wake:       make(chan struct{}, 1),
			confirm:    make(map[string]time.Time),
			confirming: make(map[string]struct{}),
			newer:      make(map[string]bool),
			lookup:     make(map[string]struct{}),
			recheck:    make(map[string]struct{}),
			removals:   make(map[string]time.Time),
		},
	}
}

// Ready returns a channel closed once the first resync has finished.
func (c *Controller) Ready() <-chan struct{} { return c.ready }

// Run runs the controller until ctx is cancelled, then stops its workers
// and waits for them. Calls in flight are cancelled with ctx.
func (c *Controller) Run(ctx context.Context) error {
	c.mu.Lock()
	if c.running {
		c.mu.Unlock()
		return errors.New("controller already running")
	}
	c.running = true
	for _, m := range c.members {
		c.startMemberLocked(ctx, m)
	}
	c.mu.Unlock()
	c.wg.Go(func() { c.eventLoop(ctx) })
	c.wg.Go(func() { c.memberLoop(ctx) })

	c.resyncLoop(ctx)

	c.mu.Lock()
	c.stopping = true // the member loop starts no member from now on
	ms := slices.Concat(c.members, c.retired)
	c.retired = nil
	c.mu.Unlock()
	for _, m := range ms {
		c.stopMember(m)
	}
	c.wg.Wait()
	return nil
}

// memberLoop starts the members SetMembers added and stops those it
// retired, until ctx ends; Run stops whatever is left then.
func (c *Controller) memberLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.membersCh:
		case <-c.rediffCh:
			c.mu.Lock()
			ms := slices.Clone(c.members)
			c.mu.Unlock()
			c.diffAll(ms, diffChunk)
			continue
		}
		c.mu.Lock()
		if c.stopping {
			c.mu.Unlock()
			return
		}
		for _, m := range c.members {
			if m.run.ctx == nil {
				c.startMemberLocked(ctx, m)
				c.wakeLocked(m)
			}
		}
		stop := c.retired
		c.retired = nil
		c.mu.Unlock()
		for _, m := range stop {
			c.stopMember(m)
		}
	}
}

// startMemberLocked starts m's workers and lister.
func (c *Controller) startMemberLocked(parent context.Context, m *member) {
	ctx, cancel := context.WithCancel(parent)
	m.run.cancel = cancel
	m.run.ctx = ctx
	m.work.queue.setHooks(c.met.adds.Inc, func(d time.Duration) { c.met.queueDuration.Observe(d.Seconds()) })
	c.setWorkersLocked(m, c.opts.MaxInflight)
	m.run.done.Go(func() { c.lister(ctx, m) })
}

// setWorkersLocked makes n the number of m's workers: more are started at
// once; those past n stop after the work they are doing.
func (c *Controller) setWorkersLocked(m *member, n int) {
	m.run.workerTarget.Store(int32(n))
	if m.run.stopped || m.run.ctx == nil {
		return
	}
	for m.run.workers.Load() < int32(n) {
		m.run.workers.Add(1)
		m.run.done.Go(func() { c.worker(m.run.ctx, m) })
	}
}

func (c *Controller) stopMember(m *member) {
	c.mu.Lock()
	m.run.stopped = true
	c.mu.Unlock()
	if m.run.cancel != nil {
		m.run.cancel()
	}
	m.work.queue.ShutDown()
	m.run.done.Wait()
}

// resyncLoop runs a resync at once and then every ResyncInterval, or when
// asked through resyncCh.
func (c *Controller) resyncLoop(ctx context.Context) {
	c.mu.Lock()
	every := c.opts.ResyncInterval
	c.mu.Unlock()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		c.Resync(ctx)
		c.mu.Lock()
		if c.opts.ResyncInterval != every { // changed by a reload
			every = c.opts.ResyncInterval
			t.Reset(every)
		}
		if !c.isReady {
			c.isReady = true
			c.allDirtyLocked()
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

// Resync lists every member that is up (two calls each, two members at a time),
// updates the sources, and queues every replica that needs work. It returns
// when the listings are done, not when the work is.
func (c *Controller) Resync(ctx context.Context) {
	start := time.Now()
	c.mu.Lock()
	var ms []*member
	for _, m := range c.members {
		if m.health.state == MemberUp {
			ms = append(ms, m)
		}
	}
	c.resyncHold = 0
	c.mu.Unlock()

	// Two members are listed at a time: the work is decoding, which two
	// goroutines keep the CPUs busy with, and each listing in flight holds
	// a member's whole new listing beside its last one (at 10,000 streams
	// × 16 members, four at a time cost 7 MiB more peak RSS and were no
	// faster).
	var g errgroup.Group
	g.SetLimit(resyncListings)
	calls := make([]int, len(ms))
	c.mu.Lock()
	shared := newStrtab(2 * len(c.sources))
	c.mu.Unlock()
	for i, m := range ms {
		g.Go(func() error {
			calls[i], _ = c.listMember(ctx, m, true, nil, shared, nil)
			return nil
		})
	}
	_ = g.Wait() // a listing's failure parks its member
	if ctx.Err() != nil {
		return
	}

	c.mu.Lock()
	now := time.Now()
	c.gcSourcesLocked(now)
	for name, at := range c.wanted {
		if now.Sub(at) > wantedFor {
			delete(c.wanted, name)
		}
	}
	for name, recs := range c.sources {
		if len(recs) > 1 {
			c.needCreatedLocked(name)
		}
	}
	longest := max(c.resyncHold, time.Since(now))
	c.mu.Unlock()

	longest = max(longest, c.diffAll(ms, diffChunk))

	c.mu.Lock()
	defer c.mu.Unlock()
	total := 0
	for _, n := range calls {
		total += n
	}
	d := time.Since(start)
	c.resync = ResyncStatus{At: start, DurationMS: ms64(d), Calls: total}
	c.rows.changed = true
	c.met.resyncDuration.Observe(d.Seconds())
	c.met.resyncLock.Set(longest.Seconds())
}

// resyncListings is how many members a resync lists at the same time.
const resyncListings = 2

// TriggerResync asks for a resync soon, without waiting for it.
func (c *Controller) TriggerResync() {
	select {
	case c.resyncCh <- struct{}{}:
	default:
	}
}

// listMember lists m: listInboundStreamNames and, when full, listConfig. It
// returns the number of calls made. The inbound streams are listed first,
// so that every pull among them still has its config in the listing that
// follows, even one made meanwhile by another balancer of the group. An
// inbound-only listing confirms the announced names; other names it shows
// for the first time wait for a full listing to tell sources from pulls.
//
// shared, when not nil, is the string table of the resync the listing is
// part of. changed, when not nil, is called under the controller's lock
// with each name a full listing found changed on m since the listing
// before (listingChangesLocked), and each name confirmed one by one while
// it read the configs. It also returns how long the listing of the
// inbound streams took.
func (c *Controller) listMember(ctx context.Context, m *member, full bool, announced map[string]time.Time, shared *strtab, changed func(name string)) (calls int, inboundTook time.Duration) {
	m.run.listMu.Lock()
	defer m.run.listMu.Unlock()
	c.mu.Lock()
	// A name's own confirmation answered after this listing would undo
	// what it shows: the listing waits for those in flight, and no other
	// starts until its inbound streams are listed.
	m.work.listing = true
	for len(m.work.confirming) > 0 {
		c.confirmed.Wait()
	}
	c.gen++
	start := c.gen
	m.work.listingFull = full
	var intern map[string]string
	var size int
	if full {
		intern = c.internLocked()
		size = len(m.obs.configs)
	}
	c.mu.Unlock()
	started := time.Now()
	var inbound []string
	var err error
	calls++
	err = c.call(ctx, m, "listInboundStreamNames", func(ctx context.Context) error {
		inbound, err = m.spec.Client.ListInboundStreamNames(ctx)
		if full {
			// Every member lists the replicas it holds: one copy of each
			// name serves them all. (A confirming listing's names, of
			// which the member keeps its sources only until its next
			// listing, are not interned: that would cost more than it
			// saves.)
			for i, n := range inbound {
				inbound[i] = shared.get(n)
			}
		}
		return err
	})
	inboundTook = time.Since(started)
	var listed *configListing
	if err == nil && full {
		// The inbound streams are listed: names announced since may be
		// confirmed one by one while the configs are read.
		c.mu.Lock()
		m.work.inboundListed = true
		c.dispatchConfirmsLocked(m)
		c.mu.Unlock()
		calls++
		listed = newConfigListing(intern, shared, c.opts.Group, size)
		err = c.call(ctx, m, "listConfig", func(ctx context.Context) error {
			return listConfigs(ctx, m.spec.Client, listed)
		})
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if shared != nil {
		locked := time.Now()
		defer func() { c.resyncHold = max(c.resyncHold, time.Since(locked)) }()
	}
	m.work.listingFull = false
	m.work.listing, m.work.inboundListed = false, false
	newer := m.work.newer
	m.work.newer = make(map[string]bool)
	defer c.dispatchConfirmsLocked(m) // the names announced meanwhile
	if ctx.Err() != nil {
		return calls, inboundTook
	}
	now := time.Now()
	if err != nil {
		c.memberFailedLocked(m, err, true)
		return calls, inboundTook
	}
	var wasPull map[string][]pullCfg
	var gone []string
	if full {
		wasPull = m.obs.configs
		oldInbound, oldStalled := m.obs.inbound, m.obs.stalled
		m.obs.replace(start, now, listed, inbound, m.obs.fullAt.Before(m.health.upAt))
		if changed == nil {
			c.dirtyListingLocked(m, wasPull, oldInbound, oldStalled)
		} else {
			// One comparison marks the rows and tells the caller.
			c.listingChangesLocked(m, wasPull, oldInbound, oldStalled, func(name string) {
				c.dirtyLocked(name)
				changed(name)
			})
		}
		// Names confirmed one by one while the configs were read were
		// looked at after the inbound streams were listed.
		for name, source := range newer {
			if source {
				m.obs.inbound[name] = struct{}{}
			} else {
				delete(m.obs.inbound, name)
			}
			c.dirtyLocked(name)
			if changed != nil {
				changed(name)
			}
		}
	} else {
		var appeared []string
		gone, appeared = m.obs.replaceInbound(inbound)
		for _, name := range gone {
			c.dirtyLocked(name)
		}
		c.shownUnaskedLocked(m, appeared, announced)
		// Pulls made by this controller that stream now.
		for _, name := range inbound {
			cfgs := m.obs.configs[name]
			for i := range cfgs {
				if (cfgs[i].pulledAt != 0 || cfgs[i].hinted) && cfgs[i].pulledAt < started.UnixNano() {
					cfgs[i].pulledAt, cfgs[i].hinted = 0, false
					c.dirtyLocked(name)
				}
			}
		}
		for name := range announced {
			c.dirtyLocked(name)
		}
	}
	m.obs.inboundAt = started
	// The listing supersedes the names confirmed one by one before it,
	// not those confirmed while it read the configs.
	for name := range m.obs.checked {
		if _, ok := newer[name]; !ok {
			delete(m.obs.checked, name)
		}
	}
	if full {
		m.obs.fullAt = started
		c.failingTransitionsLocked(m, now)
		m.health.skipped, m.health.skipErr = listed.skipped, ""
		if listed.skipped > 0 {
			m.health.skipErr = trimErr(listed.skipErr)
			c.met.skipped.WithLabelValues(m.spec.Name).Add(float64(listed.skipped))
			m.log(c.log).Warn("listConfig entries skipped: they do not decode", "skipped", listed.skipped, "err", listed.skipErr)
		}
	}
	c.applyListingLocked(m, started, now, full, announced, wasPull, gone)
	return calls, inboundTook
}

// listConfigs lists client's pull configs into listed: only the compact
// form of each is kept, never the whole listing. An entry that does not
// decode is counted in listed and skipped; the member stays up.
func listConfigs(ctx context.Context, client EMS, listed *configListing) error {
	return client.EachPullConfigSkipping(ctx, func(pc *ems.PullConfig) error {
		listed.add(pc)
		return nil
	}, func(err error) {
		listed.skipped++
		listed.skipErr = err
	})
}

// internLocked returns the strings a listing's configs share with the
// controller: the members' addresses.
func (c *Controller) internLocked() map[string]string {
	in := make(map[string]string, len(c.members))
	for _, m := range c.members {
		in[m.spec.Address] = m.spec.Address
	}
	return in
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
	if prev := time.Duration(m.health.latency.Load()); prev == 0 {
		m.health.latency.Store(int64(d))
	} else {
		m.health.latency.Store(int64((prev*7 + d) / 8))
	}
	if err == nil && m.health.failStreak.Load() != 0 {
		m.health.failStreak.Store(0)
	}
	return err // an *ems.Error names the member and the command
}

func ms64(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
