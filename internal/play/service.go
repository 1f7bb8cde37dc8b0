package play

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"streamlb/internal/config"
	"streamlb/internal/controller"
	"streamlb/internal/ems"
)

// Player protocols, as Sample.Viewers counts them.
const (
	ProtocolRTMP  = ems.ProtocolRTMP
	ProtocolRTSP  = ems.ProtocolRTSP
	ProtocolHLS   = ems.ProtocolHLS
	ProtocolOther = ems.ProtocolOther
)

// protocols lists them in the order status and metrics show them.
var protocols = [...]string{ProtocolRTMP, ProtocolRTSP, ProtocolHLS, ProtocolOther}

// LoadClient is what a poller calls on one member's EMS API; *ems.Client
// satisfies it. Each method returns an *ems.Error on failure.
type LoadClient interface {
	EachStream(ctx context.Context, fn func(e *ems.StreamEntry) error) error
	GetBandwidth(ctx context.Context) (ems.Bandwidth, error)
	HTTPClientsConnected(ctx context.Context, groupName string) (int, error)
	GetConnectionsCountLimit(ctx context.Context) (ems.ConnectionsLimit, error)
}

var _ LoadClient = (*ems.Client)(nil)

// Holders tells which members can serve a stream now: up, not paused,
// holding it streaming, its origin first. *controller.Controller
// satisfies it. It returns nil for a stream that is a source nowhere.
type Holders interface {
	Holders(name string) []string
}

var _ Holders = (*controller.Controller)(nil)

// Member is one EMS players may be sent to.
type Member struct {
	Name string
	// Address is where other members pull from: an outbound stream whose
	// far end is a member's address is a replica pull, not a player.
	Address   string
	Placement config.Placement
	Client    LoadClient
}

// Options configure a Service.
type Options struct {
	// Config is the play block; required.
	Config *config.Play
	// AppName is the RTMP application of player URLs; default "live".
	AppName string
	Members []Member
	Holders Holders
	// Registerer receives the metrics; nil: none are registered.
	Registerer prometheus.Registerer
	Logger     *slog.Logger // nil: discard
	// Seed seeds the random draws; 0: a random seed.
	Seed uint64
	// ConnLimitEvery is how many polls apart the connection limit of a
	// member without maxViewers is read (the first good poll reads it
	// too); default 12.
	ConnLimitEvery int
	// Now is the clock of decisions and samples; nil: time.Now. Tests and
	// benchmarks that set samples with SetSample drive it.
	Now func() time.Time
	// OnSample, when set, is called with every fresh sample (replication
	// on demand follows them); never under the Service's lock.
	OnSample SampleFunc
}

// maxSticky bounds the (client, stream) pairs remembered.
const maxSticky = 200_000

// Service reads every member's load, chooses members for players, and
// serves GET /play/{stream} and GET /api/v1/load. Create it with New;
// Run runs its pollers. Safe for concurrent use.
type Service struct {
	cfg      config.Play
	appName  string
	holders  Holders
	log      *slog.Logger
	connEach int
	metrics  *metrics
	now      func() time.Time
	onSample SampleFunc
	addrs    atomic.Pointer[map[string]bool] // every member's address
	pollers  sync.WaitGroup

	mu      sync.Mutex     // guards what follows and each memberState's target, lastErr
	members []*memberState // configuration order
	targets map[string]*Target
	runCtx  context.Context // Run's, while it runs
	rnd     *rand.Rand
	sticky  *stickyMap
	wants   map[string]time.Time // copies last asked for, by stream
}

// memberState is one member: its configuration (m, fixed), its poller
// (cancel, done) and, under Service.mu, its observed state.
type memberState struct {
	m       Member
	target  *Target
	lastErr string
	cancel  context.CancelFunc // nil while no poller runs
	done    chan struct{}
}

// New returns a Service for opts. It starts nothing.
func New(opts Options) (*Service, error) {
	if opts.Config == nil {
		return nil, errors.New("play: no config")
	}
	if opts.Holders == nil {
		return nil, errors.New("play: no holders")
	}
	if opts.AppName == "" {
		opts.AppName = config.DefaultAppName
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.ConnLimitEvery <= 0 {
		opts.ConnLimitEvery = 12
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	seed := opts.Seed
	if seed == 0 {
		seed = rand.Uint64()
	}
	s := &Service{
		cfg:      *opts.Config,
		appName:  opts.AppName,
		holders:  opts.Holders,
		log:      opts.Logger,
		connEach: opts.ConnLimitEvery,
		targets:  map[string]*Target{},
		wants:    map[string]time.Time{},
		rnd:      rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		sticky:   newStickyMap(opts.Config.StickyTTL, maxSticky),
		now:      opts.Now,
		onSample: opts.OnSample,
	}
	if err := s.SetMembers(opts.Members); err != nil {
		return nil, err
	}
	s.metrics = newMetrics(opts.Registerer, s)
	return s, nil
}

// SetMembers replaces the members players may be sent to. A member whose
// name, address and API endpoint stay keeps its load sample and pending
// estimate (its new placement settings apply at once); a member whose API
// changed starts afresh; a removed one stops being read. While Run runs,
// pollers start and stop accordingly. It fails, changing nothing, when
// two members share a name.
func (s *Service) SetMembers(members []Member) error {
	names := map[string]bool{}
	addrs := map[string]bool{}
	for _, m := range members {
		if names[m.Name] {
			return fmt.Errorf("play: two members named %q", m.Name)
		}
		names[m.Name] = true
		addrs[m.Address] = true
	}
	s.mu.Lock()
	old := map[string]*memberState{}
	for _, ms := range s.members {
		old[ms.m.Name] = ms
	}
	var stop []*memberState
	next := make([]*memberState, 0, len(members))
	targets := make(map[string]*Target, len(members))
	for _, m := range members {
		t := &Target{Name: m.Name, Placement: m.Placement}
		if prev, ok := old[m.Name]; ok {
			delete(old, m.Name)
			stop = append(stop, prev)
			if prev.m.Address == m.Address && sameEndpoint(prev.m.Client, m.Client) {
				t = prev.target
				t.Placement = m.Placement
			}
		}
		ms := &memberState{m: m, target: t}
		next = append(next, ms)
		targets[m.Name] = t
	}
	for _, ms := range old {
		stop = append(stop, ms)
	}
	s.members, s.targets = next, targets
	s.addrs.Store(&addrs)
	for _, ms := range stop {
		if ms.cancel != nil {
			ms.cancel()
		}
	}
	if s.runCtx != nil {
		for _, ms := range next {
			s.startLocked(ms)
		}
	}
	s.mu.Unlock()
	for _, ms := range stop {
		if ms.done != nil {
			<-ms.done
		}
	}
	return nil
}

// sameEndpoint reports whether two clients reach the same API the same
// way: *ems.Client by their endpoints (credentials included), others by
// identity.
func sameEndpoint(a, b LoadClient) bool {
	ca, okA := a.(*ems.Client)
	cb, okB := b.(*ems.Client)
	if okA && okB {
		return ca.Endpoint() == cb.Endpoint()
	}
	return a == b
}

// startLocked starts ms's poller under Run's context.
func (s *Service) startLocked(ms *memberState) {
	ctx, cancel := context.WithCancel(s.runCtx)
	ms.cancel, ms.done = cancel, make(chan struct{})
	s.pollers.Add(1)
	go func() {
		defer s.pollers.Done()
		defer close(ms.done)
		s.poller(ctx, ms)
	}()
}

// params returns the decision parameters at now.
func (s *Service) params(now time.Time) Params {
	return Params{Now: now, StaleAfter: s.cfg.StaleAfter, HighWater: s.cfg.HighWater, Bitrate: s.cfg.DefaultStreamBitrate}
}

// Run polls every member's load every poll interval until ctx ends; it
// returns after every poller has stopped.
func (s *Service) Run(ctx context.Context) error {
	s.mu.Lock()
	if s.runCtx != nil {
		s.mu.Unlock()
		return errors.New("play: Run called twice")
	}
	s.runCtx = ctx
	for _, ms := range s.members {
		s.startLocked(ms)
	}
	s.mu.Unlock()
	<-ctx.Done()
	s.pollers.Wait()
	return nil
}

// Backoff of a poller whose member fails: the poll interval doubled per
// failure up to maxBackoffFactor times it, with jitter.
const maxBackoffFactor = 6

// poller samples one member until ctx ends.
func (s *Service) poller(ctx context.Context, ms *memberState) {
	log := s.log.With("member", ms.m.Name)
	interval := s.cfg.PollInterval
	// A reading starts every interval. One may take longer (an origin
	// listing thousands of streams, a loaded member): the next starts as
	// soon as it ends, never alongside it. Half of stale_after at most, so
	// that a member that stopped answering shows the error by the time its
	// sample is stale.
	timeout := max(min(max(interval, 5*time.Second), s.cfg.StaleAfter/2), interval)
	// The connection limit is read at the first good poll and every
	// connEach polls, unless the config gives maxViewers.
	var connLimit int
	limitRead := ms.m.Placement.MaxViewers > 0
	var lastErr string
	fails := 0
	timer := time.NewTimer(0)
	defer timer.Stop()
	for n := 0; ; n++ {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		started := time.Now()
		cctx, cancel := context.WithTimeout(ctx, timeout)
		sample, err := s.read(cctx, ms, !limitRead || n%s.connEach == 0 && ms.m.Placement.MaxViewers == 0, &connLimit)
		cancel()
		if ctx.Err() != nil {
			return
		}
		// The next reading starts interval after this one started, at
		// once when this one took longer.
		next := started.Add(interval)
		if err != nil {
			// A failing member is read less often: the backoff runs from
			// the end of the failed reading.
			fails++
			delay := min(interval<<min(fails, 8), maxBackoffFactor*interval)
			next = time.Now().Add(delay/2 + time.Duration(rand.Int64N(int64(delay/2)+1)))
			if msg := err.Error(); msg != lastErr {
				log.Warn("play: cannot read the member's load", "err", err)
				lastErr = msg
			}
		} else {
			if fails > 0 {
				log.Info("play: reading the member's load again")
			}
			limitRead = true
			fails, lastErr = 0, ""
		}
		s.record(ms, sample, err)
		if err == nil {
			s.notify(ms, sample)
		}
		timer.Reset(max(time.Until(next), 0))
	}
}

// read takes one sample of ms: listStreams, getBandwidth,
// httpClientsConnected and, when withLimit, getConnectionsCountLimit. A
// command the member answers FAIL to (an older EMS) leaves its term
// unknown; any other failure fails the sample.
func (s *Service) read(ctx context.Context, ms *memberState, withLimit bool, connLimit *int) (*Sample, error) {
	c := ms.m.Client
	memberAddrs := *s.addrs.Load()
	smp := &Sample{Viewers: make(map[string]int, len(protocols)), Streams: map[string]int{}}
	err := c.EachStream(ctx, func(e *ems.StreamEntry) error {
		proto, player := e.PlayerProtocol()
		if !player {
			if strings.HasPrefix(e.Type, "I") {
				smp.Streams[e.Name] += 0
				if e.Bitrate > 0 {
					if smp.Bitrates == nil {
						smp.Bitrates = map[string]float64{}
					}
					smp.Bitrates[e.Name] = e.Bitrate
				}
			}
			return nil
		}
		if strings.HasPrefix(e.UserAgent, controller.UserAgent) || memberAddrs[e.FarIP] {
			smp.ReplicaPulls++
			return nil
		}
		smp.Viewers[proto]++
		smp.Streams[e.Name]++
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list streams: %w", err)
	}
	bw, err := c.GetBandwidth(ctx)
	if _, fail := ems.IsFail(err); err != nil && !fail {
		return nil, fmt.Errorf("get bandwidth: %w", err)
	}
	smp.OutBps, smp.MaxOutBps = bw.CurrentOut*8, bw.MaxOut*8
	hls, err := c.HTTPClientsConnected(ctx, "")
	if _, fail := ems.IsFail(err); err != nil && !fail {
		return nil, fmt.Errorf("http clients connected: %w", err)
	}
	smp.Viewers[ProtocolHLS] = hls
	if withLimit {
		lim, err := c.GetConnectionsCountLimit(ctx)
		switch _, fail := ems.IsFail(err); {
		case err == nil:
			*connLimit = lim.Limit
		case !fail:
			return nil, fmt.Errorf("get connections count limit: %w", err)
		}
	}
	smp.ConnLimit = *connLimit
	if hls > 0 {
		// HLS sessions cannot be told apart by stream: for demand copies,
		// every stream of the member may be watched.
		smp.copyViewers = make(map[string]int, len(smp.Streams))
		for name, n := range smp.Streams {
			smp.copyViewers[name] = n + hls
		}
	}
	smp.At = s.now()
	return smp, nil
}

// record stores a sample (or a failure) of ms.
func (s *Service) record(ms *memberState, smp *Sample, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		ms.lastErr = err.Error()
		s.metrics.polls.WithLabelValues(ms.m.Name, "error").Inc()
		return
	}
	ms.lastErr = ""
	t := ms.target
	t.Sample = smp
	t.Pending.Viewers *= pendingDecay
	t.Pending.Bps *= pendingDecay
	if t.Pending.Viewers < 0.5 {
		t.Pending = Pending{}
	}
	s.metrics.polls.WithLabelValues(ms.m.Name, "ok").Inc()
}

// SetSample replaces member name's latest sample, as a poll would; for
// tests and benchmarks that drive the Service without EMS. It reports
// whether there is such a member.
func (s *Service) SetSample(name string, smp *Sample) bool {
	s.mu.Lock()
	var found *memberState
	for _, ms := range s.members {
		if ms.m.Name == name {
			found = ms
		}
	}
	s.mu.Unlock()
	if found == nil {
		return false
	}
	s.record(found, smp, nil)
	s.notify(found, smp)
	return true
}
