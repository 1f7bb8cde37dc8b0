package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strconv"
	"streamlb/internal/config"
	"strings"
	"time"
)

// Scenario names, for Options.Scenarios.
const (
	ScenarioAck      = "ack"
	ScenarioBurst    = "burst"
	ScenarioResync   = "resync"
	ScenarioRecovery = "recovery"
	// ScenarioPlay measures viewer placement in-process (play.go).
	ScenarioPlay = "play"
)

// Options configure a run. Zero values take the defaults shown.
type Options struct {
	// Exe is the streamlb binary run as the balancer and the emulator;
	// default: the running executable.
	Exe string
	// Members is the group's size; default 16, at most 254.
	Members int
	// Streams is the number of streams of the burst; default 10000.
	Streams int
	// Rate is the events per second of the ack scenario; default 2000.
	Rate int
	// Duration is how long the ack scenario posts events; default 10s.
	Duration time.Duration
	// Warmup is how long the ack scenario posts the mix, at Rate, before
	// the Duration it measures: the processes it starts are then past
	// their first second (heaps, stacks and threads growing, the first
	// collections), as a balancer and EMS servers that have been running
	// are. What the warm-up measured is reported apart. 0: none.
	Warmup time.Duration
	// Separate runs one emsim process per member instead of one for all.
	Separate bool
	// KeepAlive lets the members keep connections open; by default they
	// answer Connection: close, as EMS does.
	KeepAlive bool
	// MaxInflight is the balancer's max_inflight for the burst; 0 tries
	// each of Candidates and keeps the fastest.
	MaxInflight int
	// Candidates are the max_inflight values tried; default 4, 8, 16.
	Candidates []int
	// Defaults runs the balancer with the production defaults of
	// max_inflight and max_pulls_per_second instead of the best of
	// Candidates and no cap on pulls.
	Defaults bool
	// MemoryLimit is the balancer process's GOMEMLIMIT, in the syntax
	// GOMEMLIMIT takes ("80MiB"); "": none.
	MemoryLimit string
	// RecoveryResync is the balancer's resync_interval in the recovery
	// scenario; default 10s.
	RecoveryResync time.Duration
	// EventsFile is the recorded event mix; default: found from the working
	// directory (testdata/ems/recorded/ems-events-webuilogs.jsonl).
	EventsFile string
	// MixOrder is the order the ack scenario posts the mix in: MixShuffled
	// (default) or MixRecorded.
	MixOrder string
	// Scenarios selects what runs; default all of ack, burst, resync and
	// recovery. Resync and recovery run on the burst's group.
	Scenarios []string
	// Progress receives a line as each step starts; nil discards them.
	Progress io.Writer
	// ProfileDir, when set, receives CPU profiles of the balancer, the
	// emulator and the benchmark for ProfileWindow from the start of each
	// scenario, and heap profiles of the balancer at their end.
	ProfileDir string
	// ProfileWindow is how long each CPU profile lasts; default 10s.
	ProfileWindow time.Duration
	// Replication is the balancer's replication mode in the burst's group:
	// ReplicationAll (default: every member holds every stream) or
	// ReplicationDemand (Copies members hold each stream, and the
	// scale-up step runs after the other scenarios).
	Replication string
	// Copies is min_copies in mode demand, origin included; default 2, at
	// most Members.
	Copies int
	// PollInterval is the balancer's play.poll_interval in mode demand:
	// how often it reads each member's load; default 1s.
	PollInterval time.Duration
}

// Replication modes, for Options.Replication.
const (
	ReplicationAll    = config.ReplicationAll
	ReplicationDemand = config.ReplicationDemand
)

func (o *Options) setDefaults() error {
	if o.Exe == "" {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("find the streamlb executable: %w", err)
		}
		o.Exe = exe
	}
	if o.Members == 0 {
		o.Members = 16
	}
	if o.Streams == 0 {
		o.Streams = 10000
	}
	if o.Rate == 0 {
		o.Rate = 2000
	}
	if o.Duration == 0 {
		o.Duration = 10 * time.Second
	}
	if len(o.Candidates) == 0 {
		o.Candidates = []int{4, 8, 16}
	}
	if o.Defaults {
		o.Candidates = []int{defaultMaxInflight}
	}
	if o.RecoveryResync == 0 {
		o.RecoveryResync = 10 * time.Second
	}
	if len(o.Scenarios) == 0 {
		o.Scenarios = []string{ScenarioAck, ScenarioBurst, ScenarioResync, ScenarioRecovery}
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	if o.ProfileWindow == 0 {
		o.ProfileWindow = 10 * time.Second
	}
	if o.Replication == "" {
		o.Replication = ReplicationAll
	}
	if o.MixOrder == "" {
		o.MixOrder = MixShuffled
	}
	if o.Copies == 0 {
		o.Copies = config.DefaultMinCopies
	}
	if o.PollInterval == 0 {
		o.PollInterval = time.Second
	}
	switch {
	case o.Members < 2 || o.Members > 254:
		return errors.New("members: want 2 to 254")
	case o.Streams < 1 || o.Streams > 1_000_000:
		return errors.New("streams: want 1 to 1000000")
	case o.Rate < 1 || o.Rate > 100_000:
		return errors.New("rate: want 1 to 100000 events per second")
	case o.Duration < 100*time.Millisecond || o.Duration > time.Hour:
		return errors.New("duration: want 100ms to 1h")
	case o.Warmup < 0 || o.Warmup > time.Hour:
		return errors.New("warmup: want 0 (none) to 1h")
	case o.MaxInflight < 0 || o.MaxInflight > 1024:
		return errors.New("max-inflight: want 0 (search) to 1024")
	case o.RecoveryResync < time.Second:
		return errors.New("recovery resync interval: want 1s or more")
	case o.Replication != ReplicationAll && o.Replication != ReplicationDemand:
		return fmt.Errorf("replication %q: want %s or %s", o.Replication, ReplicationAll, ReplicationDemand)
	case o.MixOrder != MixShuffled && o.MixOrder != MixRecorded:
		return fmt.Errorf("mix order %q: want %s or %s", o.MixOrder, MixShuffled, MixRecorded)
	case o.PollInterval < 100*time.Millisecond || o.PollInterval > time.Minute:
		return errors.New("poll interval: want 100ms to 1m")
	case o.Copies < 1 || o.Copies > o.Members:
		return fmt.Errorf("copies: want 1 to the number of members (%d)", o.Members)
	}
	if o.MemoryLimit != "" {
		if _, err := parseMemoryLimit(o.MemoryLimit); err != nil {
			return err
		}
	}
	for _, k := range o.Candidates {
		if k < 1 || k > 1024 {
			return fmt.Errorf("max_inflight candidate %d: want 1 to 1024", k)
		}
	}
	for _, s := range o.Scenarios {
		if !slices.Contains([]string{ScenarioAck, ScenarioBurst, ScenarioResync, ScenarioRecovery, ScenarioStatus, ScenarioPlay}, s) {
			return fmt.Errorf("scenario %q: want ack, burst, resync, recovery, status or play", s)
		}
	}
	if (o.has(ScenarioResync) || o.has(ScenarioRecovery) || o.has(ScenarioStatus)) && !o.has(ScenarioBurst) {
		return errors.New("scenarios resync, recovery and status run on the burst's group: add burst")
	}
	return nil
}

func (o *Options) has(s string) bool { return slices.Contains(o.Scenarios, s) }

// runner is one run's shared state.
type runner struct {
	o    Options
	dir  string // balancer configs
	res  Result
	prof *profiler // nil unless profiling
}

func (r *runner) progress(format string, args ...any) {
	fmt.Fprintf(r.o.Progress, "bench: "+format+"\n", args...)
}

// notePeaks folds a stopped balancer's peak memory into the result.
func (r *runner) notePeaks(b *balancer, rss uint64) {
	r.res.RSSMiB = Rate(max(float64(r.res.RSSMiB), float64(rss)/(1<<20)))
	heap, live := b.heap()
	r.progress("balancer stopped: peak RSS %.1f MiB, peak heap %.0f MiB, peak live heap %.0f MiB", float64(rss)/(1<<20), heap, live)
	r.res.HeapMiB = Rate(max(float64(r.res.HeapMiB), heap))
	r.res.HeapLiveMiB = Rate(max(float64(r.res.HeapLiveMiB), live))
}

// Run runs the selected scenarios and returns their figures. Every child
// process it starts is stopped before it returns. It fails when a scenario
// cannot complete within its bounds.
func Run(ctx context.Context, o Options) (Result, error) {
	if err := o.setDefaults(); err != nil {
		return Result{}, fmt.Errorf("bench: %w", err)
	}
	start := time.Now()
	dir, err := os.MkdirTemp("", "streamlb-bench-")
	if err != nil {
		return Result{}, fmt.Errorf("bench: %w", err)
	}
	defer os.RemoveAll(dir)
	prof, err := newProfiler(o.ProfileDir, o.ProfileWindow)
	if err != nil {
		return Result{}, fmt.Errorf("bench: %w", err)
	}
	r := &runner{o: o, dir: dir, res: newResult(o), prof: prof}
	err = r.run(ctx)
	prof.wait()
	r.res.TotalSeconds = Seconds(time.Since(start).Seconds())
	if err != nil {
		return r.res, fmt.Errorf("bench: %w", err)
	}
	return r.res, nil
}

func (r *runner) run(ctx context.Context) error {
	o := r.o
	if o.has(ScenarioPlay) {
		if err := r.play(ctx); err != nil {
			return fmt.Errorf("play: %w", err)
		}
	}
	if o.has(ScenarioAck) {
		if err := r.ack(ctx); err != nil {
			return fmt.Errorf("ack: %w", err)
		}
	}
	if !o.has(ScenarioBurst) {
		return nil
	}
	g, err := r.bursts(ctx)
	if err != nil {
		return fmt.Errorf("burst: %w", err)
	}
	defer g.close(r)
	if o.has(ScenarioStatus) {
		if err := r.status(ctx, g); err != nil {
			return fmt.Errorf("status: %w", err)
		}
	}
	if o.has(ScenarioResync) {
		if err := r.resync(ctx, g); err != nil {
			return fmt.Errorf("resync: %w", err)
		}
	}
	if o.has(ScenarioRecovery) {
		if err := r.recovery(ctx, g); err != nil {
			return fmt.Errorf("recovery: %w", err)
		}
	}
	if o.Replication == ReplicationDemand {
		if err := r.scaleUp(ctx, g); err != nil {
			return fmt.Errorf("scale-up: %w", err)
		}
	}
	// The ceiling runs last, on its own group, once the balancer's group
	// is gone.
	g.close(r)
	if err := r.ceiling(ctx); err != nil {
		return fmt.Errorf("ceiling: %w", err)
	}
	if r.res.CeilingCallsPerS > 0 {
		r.res.BurstRatio = r.res.BurstCallsPerS / r.res.CeilingCallsPerS
	}
	return nil
}

// percentile returns the p-th percentile (0 < p ≤ 100) of sorted values.
func percentile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted))*p/100+0.999999) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// join lists ints for a progress line.
func join(ks []int) string {
	s := make([]string, len(ks))
	for i, k := range ks {
		s[i] = fmt.Sprint(k)
	}
	return strings.Join(s, ", ")
}

// defaultMaxInflight is the production default of max_inflight, which
// Defaults runs with.
const defaultMaxInflight = config.DefaultMaxInflight

// parseMemoryLimit returns the bytes of a limit written as GOMEMLIMIT takes
// it: a whole number with an optional unit B, KiB, MiB, GiB or TiB.
func parseMemoryLimit(v string) (int64, error) {
	num := strings.TrimRight(v, "BKMGTi")
	unit := v[len(num):]
	mult, ok := map[string]int64{"": 1, "B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40}[unit]
	n, err := strconv.ParseInt(num, 10, 64)
	if !ok || err != nil || n <= 0 || n > math.MaxInt64/mult {
		return 0, fmt.Errorf("memory limit %q: want a positive whole number of bytes with an optional unit B, KiB, MiB, GiB or TiB, as GOMEMLIMIT takes (80MiB)", v)
	}
	return n * mult, nil
}
