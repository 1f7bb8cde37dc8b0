package bench

import (
	"fmt"
	"io"
	"math"
	"runtime"
	"strconv"
	"strings"
	"text/tabwriter"
)

// Millis is a duration in milliseconds; its JSON form has microsecond
// precision.
type Millis float64

// MarshalJSON writes m with three decimals.
func (m Millis) MarshalJSON() ([]byte, error) { return fixed(float64(m), 3), nil }

// Seconds is a duration in seconds; its JSON form has millisecond
// precision.
type Seconds float64

// MarshalJSON writes s with three decimals.
func (s Seconds) MarshalJSON() ([]byte, error) { return fixed(float64(s), 3), nil }

// Rate is a count per second, or a ratio; its JSON form has three
// decimals.
type Rate float64

// MarshalJSON writes r with three decimals.
func (r Rate) MarshalJSON() ([]byte, error) { return fixed(float64(r), 3), nil }

func fixed(v float64, prec int) []byte {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		v = 0
	}
	return strconv.AppendFloat(nil, v, 'f', prec, 64)
}

// Trial is one burst at one max_inflight.
type Trial struct {
	MaxInflight  int     `json:"max_inflight"`
	Seconds      Seconds `json:"seconds"`
	PullCalls    int64   `json:"pull_calls"`
	ConfirmCalls int64   `json:"confirm_calls"`
	CallsPerS    Rate    `json:"calls_per_s"`
}

// Result holds the figures of one run. Its JSON form is the single line
// "streamlb bench -json" prints; fields of scenarios that did not run are
// zero.
type Result struct {
	// The run's parameters and machine.
	Members        int     `json:"members"`
	Streams        int     `json:"streams"`
	Rate           int     `json:"rate"`
	DurationS      Seconds `json:"duration_s"`
	Separate       bool    `json:"separate"`
	EmsimKeepAlive bool    `json:"emsim_keep_alive"`
	CPUs           int     `json:"cpus"`
	GoVersion      string  `json:"go_version"`
	OS             string  `json:"os"`

	// Event sink answer time under the event mix at Rate.
	AckP50MS        Millis `json:"ack_p50_ms"`
	AckP99MS        Millis `json:"ack_p99_ms"`
	AckMaxMS        Millis `json:"ack_max_ms"`
	EventsSent      int64  `json:"events_sent"`
	EventsLost      int64  `json:"events_lost"`
	AckRateAchieved Rate   `json:"ack_rate_achieved"`
	AckMaxInflight  int    `json:"ack_max_inflight"`
	// AckCPUBusyPct and AckStealPct are the machine's CPU time over the
	// ack scenario's sending, as a share of all its CPUs' time: busy
	// (neither idle nor stolen) and stolen by the hypervisor. A tail the
	// balancer's code does not explain shows here (Linux only; 0
	// elsewhere).
	AckCPUBusyPct Rate `json:"ack_cpu_busy_pct"`
	AckStealPct   Rate `json:"ack_steal_pct"`
	// AckCPUBalancerPct, AckCPUEmulatorPct and AckCPULoadPct are the CPU
	// time of the balancer, the emulated members and the load generator
	// (the bench itself) over the same window and on the same scale:
	// what busy holds beyond their sum is the kernel's work outside any
	// process, such as loopback packets (Linux only; 0 elsewhere).
	AckCPUBalancerPct Rate `json:"ack_cpu_balancer_pct"`
	AckCPUEmulatorPct Rate `json:"ack_cpu_emulator_pct"`
	AckCPULoadPct     Rate `json:"ack_cpu_load_pct"`
	// WarmupS is how long the mix was posted before the measured
	// Duration (Options.Warmup); the Warmup fields are what those
	// WarmupEvents measured, apart from the figures above and below.
	WarmupS                  Rate   `json:"warmup_s"`
	WarmupEvents             int64  `json:"warmup_events"`
	WarmupEventsLost         int64  `json:"warmup_events_lost"`
	WarmupAckP99MS           Millis `json:"warmup_ack_p99_ms"`
	WarmupPropagationP99MS   Millis `json:"warmup_propagation_p99_ms"`
	WarmupPropagationStreams int    `json:"warmup_propagation_streams"`
	WarmupPropagationMissing int    `json:"warmup_propagation_missing"`
	// EventMix is the share of each event type in the recorded mix.
	EventMix map[string]Rate `json:"event_mix,omitempty"`
	// EventOrder is the order the mix was posted in: MixShuffled or
	// MixRecorded.
	EventOrder string `json:"event_order,omitempty"`

	// From an event's answer to the last destination's pullStream answer.
	PropagationP50MS   Millis `json:"propagation_p50_ms"`
	PropagationP99MS   Millis `json:"propagation_p99_ms"`
	PropagationMaxMS   Millis `json:"propagation_max_ms"`
	PropagationStreams int    `json:"propagation_streams"`
	PropagationMissing int    `json:"propagation_missing"`
	// Where an event's propagation goes, from the balancer's histograms
	// over the ack scenario (means, and p99 as the upper bound of the
	// bucket holding it): the stream's confirmation on its origin, a
	// replica's wait in its member's queue, the pullStream call.
	PropagationConfirmMS    Millis `json:"propagation_confirm_ms"`
	PropagationConfirmP99MS Millis `json:"propagation_confirm_p99_ms"`
	PropagationQueueMS      Millis `json:"propagation_queue_ms"`
	PropagationQueueP99MS   Millis `json:"propagation_queue_p99_ms"`
	PropagationPullMS       Millis `json:"propagation_pull_ms"`
	PropagationPullP99MS    Millis `json:"propagation_pull_p99_ms"`

	// The burst: Streams new streams at once on one origin.
	BurstStreams      int     `json:"burst_streams"`
	BurstSeconds      Seconds `json:"burst_seconds"`
	BurstPullCalls    int64   `json:"burst_pull_calls"`
	BurstConfirmCalls int64   `json:"burst_confirm_calls"`
	BurstCallsPerS    Rate    `json:"burst_calls_per_s"`
	CeilingCallsPerS  Rate    `json:"ceiling_calls_per_s"`
	CeilingSeconds    Seconds `json:"ceiling_seconds"`
	CeilingFailures   int64   `json:"ceiling_failures"`
	BurstRatio        Rate    `json:"burst_ratio"`
	MaxInflight       int     `json:"max_inflight"`
	MaxPullsPerSecond int     `json:"max_pulls_per_second"`
	// Defaults reports a run with the production defaults of max_inflight
	// and max_pulls_per_second.
	Defaults bool    `json:"defaults"`
	Trials   []Trial `json:"trials"`
	// MemoryLimit is the balancer's GOMEMLIMIT ("": none).
	MemoryLimit string `json:"memory_limit"`

	// Replication is the balancer's replication mode in the burst's group;
	// Copies is how many members hold each stream there, origin included
	// (every member in mode all). ReplicasHeld counts the group's pull
	// configurations once the burst settled.
	Replication  string `json:"replication"`
	Copies       int    `json:"copies"`
	ReplicasHeld int64  `json:"replicas_held"`
	// In mode demand: from putting 80 % of maxViewers players on every
	// holder of one stream to a new copy of it streaming on another
	// member, the balancer reading the members' load every
	// ScaleUpPollS.
	ScaleUpSeconds Seconds `json:"scale_up_seconds"`
	ScaleUpPollS   Seconds `json:"scale_up_poll_interval_s"`

	// One resync pass over the converged group, and what the balancer
	// spent from the reload that started it to the scrape of its metrics
	// that showed it ended: CPU time, and collections completed.
	ResyncSeconds        Seconds `json:"resync_seconds"`
	ResyncCallsPerMember Rate    `json:"resync_calls_per_member"`
	ResyncCPUSeconds     Seconds `json:"resync_cpu_seconds"`
	ResyncGCCycles       int64   `json:"resync_gc_cycles"`
	// ResyncLockMS is the longest the resync held the controller's lock
	// in one go (streamlb_resync_lock_seconds).
	ResyncLockMS Millis `json:"resync_lock_ms"`

	// A destination restarted empty, until it holds every replica again.
	RecoverySeconds         Seconds `json:"recovery_seconds"`
	RecoveryResyncIntervalS Seconds `json:"recovery_resync_interval_s"`

	// Reading the status of the converged burst group (the status
	// scenario): a full GET /api/v1/status, the longest hold of the
	// controller's lock by one status build, and the balancer's CPU (in
	// percent of one core) while one dashboard is open, and idle.
	StatusMS     Millis `json:"status_ms"`
	StatusMaxMS  Millis `json:"status_max_ms"`
	StatusBytes  int64  `json:"status_bytes"`
	StatusLockMS Millis `json:"status_lock_ms"`
	// StatusLockResyncMS is the same while the resync a reload starts
	// keeps every core busy.
	StatusLockResyncMS  Millis `json:"status_lock_resync_ms"`
	DashboardCPUPct     Rate   `json:"dashboard_cpu_pct"`
	DashboardIdleCPUPct Rate   `json:"dashboard_idle_cpu_pct"`

	// The balancer processes' peak memory.
	RSSMiB      Rate `json:"rss_mib"`
	HeapMiB     Rate `json:"heap_mib"`
	HeapLiveMiB Rate `json:"heap_live_mib"`

	// Viewer placement, in-process (the play scenario).
	PlayDecisionsPerS Rate `json:"play_decisions_per_s"`
	PlayShareMaxMin   Rate `json:"play_share_max_min"`
	PlayIdleShare     Rate `json:"play_idle_share"`
	PlayIdleGetsMost  bool `json:"play_idle_gets_most"`
	PlayHerdMaxShare  Rate `json:"play_herd_max_share"`

	TotalSeconds Seconds `json:"total_seconds"`
}

func newResult(o Options) Result {
	res := Result{
		Members: o.Members, Streams: o.Streams, Rate: o.Rate, DurationS: Seconds(o.Duration.Seconds()),
		Separate: o.Separate, EmsimKeepAlive: o.KeepAlive, MemoryLimit: o.MemoryLimit,
		CPUs: runtime.NumCPU(), GoVersion: runtime.Version(), OS: runtime.GOOS + "/" + runtime.GOARCH,
		Trials: []Trial{},
	}
	res.Replication, res.Copies = o.Replication, o.Members
	if o.Replication == ReplicationDemand {
		res.Copies = o.Copies
		res.ScaleUpPollS = Seconds(o.PollInterval.Seconds())
	}
	return res
}

// WriteTable prints r for people: each figure with the target it is held
// to.
func (r Result) WriteTable(w io.Writer) error {
	conn := "Connection: close (as EMS)"
	if r.EmsimKeepAlive {
		conn = "keep-alive"
	}
	procs := "one emsim process for all members"
	if r.Separate {
		procs = "one emsim process per member"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "streamlb bench: %d members, %d streams, %d events/s for %gs; %s, %s; %d CPUs, %s %s\n\n",
		r.Members, r.Streams, r.Rate, float64(r.DurationS), procs, conn, r.CPUs, r.GoVersion, r.OS)
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	row := func(name, measured, target string) { fmt.Fprintf(tw, "%s\t%s\t%s\n", name, measured, target) }
	row("figure", "measured", "target")
	row("------", "--------", "------")
	row("ack p50 / p99 / max", fmt.Sprintf("%.3f / %.3f / %.3f ms", float64(r.AckP50MS), float64(r.AckP99MS), float64(r.AckMaxMS)), "p99 ≤ 5 ms")
	row("events sent / lost", fmt.Sprintf("%d / %d (%.0f/s achieved, max_inflight %d)", r.EventsSent, r.EventsLost, float64(r.AckRateAchieved), r.AckMaxInflight), "lost = 0")
	if r.WarmupEvents > 0 {
		row("warm-up before them", fmt.Sprintf("%gs, %d events, %d lost: ack p99 %.3f ms, propagation p99 %.3f ms (%d streams, %d incomplete)",
			float64(r.WarmupS), r.WarmupEvents, r.WarmupEventsLost, float64(r.WarmupAckP99MS), float64(r.WarmupPropagationP99MS),
			r.WarmupPropagationStreams, r.WarmupPropagationMissing), "")
	}
	row("the machine's CPUs while sending", fmt.Sprintf("%.1f%% busy, %.1f%% stolen", float64(r.AckCPUBusyPct), float64(r.AckStealPct)), "")
	row("  of them", fmt.Sprintf("balancer %.1f%%, emulator %.1f%%, load %.1f%%",
		float64(r.AckCPUBalancerPct), float64(r.AckCPUEmulatorPct), float64(r.AckCPULoadPct)), "")
	row("propagation p50 / p99 / max", fmt.Sprintf("%.3f / %.3f / %.3f ms (%d streams, %d incomplete)",
		float64(r.PropagationP50MS), float64(r.PropagationP99MS), float64(r.PropagationMaxMS), r.PropagationStreams, r.PropagationMissing), "p99 ≤ 10 ms")
	if r.PropagationConfirmMS+r.PropagationQueueMS+r.PropagationPullMS > 0 {
		row("  where it goes, mean (p99)", fmt.Sprintf("confirmation %.1f (%.1f) ms, queue %.1f (%.1f) ms, pullStream %.1f (%.1f) ms",
			float64(r.PropagationConfirmMS), float64(r.PropagationConfirmP99MS), float64(r.PropagationQueueMS),
			float64(r.PropagationQueueP99MS), float64(r.PropagationPullMS), float64(r.PropagationPullP99MS)), "")
	}
	row("burst", fmt.Sprintf("%d streams in %.3f s: %d pullStream calls, %.0f calls/s (+%d confirmation calls)",
		r.BurstStreams, float64(r.BurstSeconds), r.BurstPullCalls, float64(r.BurstCallsPerS), r.BurstConfirmCalls), "")
	row("ceiling", fmt.Sprintf("%.0f calls/s (plain client, %d in flight per member, %.3f s, %d failures)",
		float64(r.CeilingCallsPerS), r.MaxInflight, float64(r.CeilingSeconds), r.CeilingFailures), "")
	row("burst ratio", fmt.Sprintf("%.3f (max_inflight %d, max_pulls_per_second %d)", float64(r.BurstRatio), r.MaxInflight, r.MaxPullsPerSecond), "≥ 0.7")
	for _, t := range r.Trials {
		row(fmt.Sprintf("  trial max_inflight %d", t.MaxInflight), fmt.Sprintf("%.3f s, %.0f calls/s", float64(t.Seconds), float64(t.CallsPerS)), "")
	}
	row("replication", fmt.Sprintf("%s: each stream on %d members, %d replicas held after the burst", r.Replication, r.Copies, r.ReplicasHeld), "")
	row("resync", fmt.Sprintf("%.3f s, %.2f calls per member", float64(r.ResyncSeconds), float64(r.ResyncCallsPerMember)), "≤ 3 s, 2 calls per member")
	row("resync's lock hold", fmt.Sprintf("%.3f ms (longest)", float64(r.ResyncLockMS)), "")
	row("recovery", fmt.Sprintf("%.3f s (resync_interval %gs)", float64(r.RecoverySeconds), float64(r.RecoveryResyncIntervalS)),
		fmt.Sprintf("≤ %g s", float64(r.RecoveryResyncIntervalS)+5))
	if r.StatusMS > 0 {
		row("status p50 / max", fmt.Sprintf("%.1f / %.1f ms (%d bytes, the whole group)", float64(r.StatusMS), float64(r.StatusMaxMS), r.StatusBytes), "p50 ≤ 150 ms")
		row("status build's lock hold", fmt.Sprintf("%.3f ms (longest; %.3f ms during a resync)", float64(r.StatusLockMS), float64(r.StatusLockResyncMS)), "≤ 5 ms")
		row("balancer CPU, dashboard open", fmt.Sprintf("%.2f%% of one core (%.2f%% idle)", float64(r.DashboardCPUPct), float64(r.DashboardIdleCPUPct)), "≤ 5%")
	}
	if r.Replication == ReplicationDemand {
		row("scale-up", fmt.Sprintf("%.3f s to a new copy streaming (poll_interval %gs)", float64(r.ScaleUpSeconds), float64(r.ScaleUpPollS)),
			fmt.Sprintf("≤ %g s", 2*float64(r.ScaleUpPollS)+1))
	}
	row("balancer peak RSS / heap / live heap", fmt.Sprintf("%.1f / %.0f / %.0f MiB", float64(r.RSSMiB), float64(r.HeapMiB), float64(r.HeapLiveMiB)), "RSS ≤ 96 MiB")
	if r.PlayDecisionsPerS > 0 {
		row("play decisions", fmt.Sprintf("%.0f/s (16 members, one goroutine, in-process)", float64(r.PlayDecisionsPerS)), "≥ 20000/s")
		row("play balance max/min share", fmt.Sprintf("%.3f (8 equal members, 10,000 players)", float64(r.PlayShareMaxMin)), "≤ 1.3")
		row("play idle member's share", fmt.Sprintf("%.3f (gets the most: %t)", float64(r.PlayIdleShare), r.PlayIdleGetsMost), "the most")
		row("play herd: max share in 1 s", fmt.Sprintf("%.3f × fair share (a sample stale mid-run)", float64(r.PlayHerdMaxShare)), "≤ 2")
	}
	row("total", fmt.Sprintf("%.1f s", float64(r.TotalSeconds)), "")
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := io.WriteString(w, b.String())
	return err
}
