package bench

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"streamlb/internal/config"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// buildStreamlb builds the streamlb program the benchmark runs as its
// children.
func buildStreamlb(t *testing.T) string {
	t.Helper()
	exe := filepath.Join(t.TempDir(), "streamlb")
	out, err := exec.Command("go", "build", "-o", exe, "streamlb/cmd/streamlb").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return exe
}

// TestSmallRunHasEveryFigure runs every scenario on a tiny group and checks
// that the JSON line carries every key with a plausible value.
func TestSmallRunHasEveryFigure(t *testing.T) {
	exe := buildStreamlb(t)
	var progress strings.Builder
	start := time.Now()
	res, err := Run(t.Context(), Options{
		Exe: exe, Members: 3, Streams: 200, Rate: 200, Duration: time.Second, Warmup: 500 * time.Millisecond,
		MaxInflight: 4, RecoveryResync: 2 * time.Second, Progress: &progress,
	})
	if err != nil {
		t.Fatalf("Run: %v\nprogress:\n%s", err, progress.String())
	}
	t.Logf("run took %v\n%s", time.Since(start), progress.String())

	line, err := json.Marshal(res)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(line), "\n") {
		t.Errorf("JSON form spans several lines")
	}
	var got map[string]any
	if err := json.Unmarshal(line, &got); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{
		"ack_p50_ms", "ack_p99_ms", "events_sent", "events_lost", "ack_cpu_busy_pct", "ack_steal_pct",
		"ack_cpu_balancer_pct", "ack_cpu_emulator_pct", "ack_cpu_load_pct",
		"warmup_s", "warmup_events", "warmup_events_lost", "warmup_ack_p99_ms", "warmup_propagation_p99_ms",
		"propagation_p50_ms", "propagation_p99_ms",
		"burst_streams", "burst_seconds", "burst_calls_per_s", "ceiling_calls_per_s", "burst_ratio",
		"resync_seconds", "resync_calls_per_member", "resync_cpu_seconds", "resync_gc_cycles", "recovery_seconds", "rss_mib", "heap_mib",
		"max_inflight", "event_order", "emsim_keep_alive", "separate", "replication", "copies", "replicas_held", "scale_up_seconds",
	} {
		if _, ok := got[key]; !ok {
			t.Errorf("JSON has no %q: %s", key, line)
		}
	}
	for key := range got {
		if strings.HasSuffix(key, "_ms") && !hasThreeDecimals(string(line), key) {
			t.Errorf("%s is not written with three decimals: %s", key, line)
		}
	}

	// The streams the mix announces in the warm-up's 100 events and in
	// the 200 after them.
	mix, err := loadMixFile("")
	if err != nil {
		t.Fatal(err)
	}
	orderMix(mix, MixShuffled)
	var warmStreams, streams int
	for i := range 300 {
		if mix[i%len(mix)].typ == "inStreamCreated" {
			if i < 100 {
				warmStreams++
			} else {
				streams++
			}
		}
	}

	checks := []struct {
		name string
		ok   bool
	}{
		{"events_sent = rate × duration", res.EventsSent == 200},
		{"the warm-up's 100 events measured apart", res.WarmupS == 0.5 && res.WarmupEvents == 100 && res.WarmupEventsLost == 0 &&
			res.WarmupAckP99MS > 0 && res.WarmupPropagationMissing == 0 && res.WarmupPropagationStreams == warmStreams},
		{"the measured window's streams are its own", res.PropagationStreams == streams},
		{"events_lost = 0", res.EventsLost == 0},
		{"the mix shuffled by default", res.EventOrder == MixShuffled},
		{"ack times measured", res.AckP50MS > 0 && res.AckP99MS >= res.AckP50MS},
		{"the machine's CPUs measured while sending", runtime.GOOS != "linux" || (res.AckCPUBusyPct > 0 && res.AckCPUBusyPct+res.AckStealPct <= 100)},
		{"the processes' CPUs measured while sending", runtime.GOOS != "linux" ||
			(res.AckCPUBalancerPct > 0 && res.AckCPUEmulatorPct > 0 && res.AckCPUBalancerPct+res.AckCPUEmulatorPct+res.AckCPULoadPct <= 100)},
		{"propagation measured", res.PropagationStreams > 0 && res.PropagationP99MS > 0 && res.PropagationMissing == 0},
		{"every replica pulled", res.BurstPullCalls >= 400 && res.BurstSeconds > 0 && res.BurstCallsPerS > 0},
		{"ceiling measured", res.CeilingCallsPerS > 0 && res.CeilingFailures == 0 && res.BurstRatio > 0},
		{"resync lists each member twice", res.ResyncSeconds > 0 && res.ResyncCallsPerMember == 2},
		{"recovery measured", res.RecoverySeconds > 0 && float64(res.RecoveryResyncIntervalS) == 2},
		{"memory measured", res.RSSMiB > 0 && res.HeapMiB > 0},
		{"mode all: every member holds every stream", res.Replication == ReplicationAll && res.Copies == 3 && res.ReplicasHeld == 400},
		{"no scale-up in mode all", res.ScaleUpSeconds == 0},
	}
	for _, c := range checks {
		if !c.ok {
			t.Errorf("%s: no; result %s", c.name, line)
		}
	}
}

// hasThreeDecimals reports whether key's value in line has exactly three
// decimals.
func hasThreeDecimals(line, key string) bool {
	_, rest, ok := strings.Cut(line, `"`+key+`":`)
	if !ok {
		return false
	}
	end := strings.IndexAny(rest, ",}")
	v := rest[:end]
	dot := strings.IndexByte(v, '.')
	return dot >= 0 && len(v)-dot-1 == 3
}

func TestPercentile(t *testing.T) {
	v := []float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	tests := []struct {
		p    float64
		want float64
	}{{50, 5}, {99, 10}, {100, 10}, {10, 1}, {1, 1}}
	for _, tt := range tests {
		if got := percentile(v, tt.p); got != tt.want {
			t.Errorf("percentile(1..10, %v) = %v, want %v", tt.p, got, tt.want)
		}
	}
	if got := percentile(nil, 99); got != 0 {
		t.Errorf("percentile(nil, 99) = %v, want 0", got)
	}
}

func TestBalancerConfigParses(t *testing.T) {
	text := balancerConfig("127.0.0.1:4000", []string{"127.1.2.3", "127.1.2.4"}, balancerSettings{
		maxInflight: 8, resyncInterval: time.Minute, teardownGrace: 10 * time.Second,
	})
	for _, want := range []string{`"max_pulls_per_second": 0`, `"max_inflight": 8`, `"address": "127.1.2.4"`, `"resync_interval": "1m0s"`} {
		if !strings.Contains(text, want) {
			t.Errorf("config lacks %s:\n%s", want, text)
		}
	}
}

// TestDemandRunHoldsCopiesAndScalesUp runs mode demand on a tiny group:
// the burst settles with each stream on exactly Copies members, the resync
// lists each member twice, and loading every holder of a stream adds a
// copy within the target.
func TestDemandRunHoldsCopiesAndScalesUp(t *testing.T) {
	exe := buildStreamlb(t)
	var progress strings.Builder
	res, err := Run(t.Context(), Options{
		Exe: exe, Members: 4, Streams: 20, MaxInflight: 4, Scenarios: []string{ScenarioBurst, ScenarioResync},
		Replication: ReplicationDemand, Copies: 2, Progress: &progress,
	})
	if err != nil {
		t.Fatalf("Run: %v\nprogress:\n%s", err, progress.String())
	}
	line, _ := json.Marshal(res)
	if res.Replication != ReplicationDemand || res.Copies != 2 {
		t.Errorf("replication %q, copies %d, want demand, 2: %s", res.Replication, res.Copies, line)
	}
	if res.ReplicasHeld != 20 {
		t.Errorf("replicas_held = %d, want 20 (one copy beside the origin for each of 20 streams): %s", res.ReplicasHeld, line)
	}
	if res.ResyncCallsPerMember != 2 {
		t.Errorf("resync_calls_per_member = %v, want 2: %s", res.ResyncCallsPerMember, line)
	}
	// The target is 2 × poll_interval + 1 s; a loaded test machine gets
	// some slack, but a copy made only by a later resync (10 minutes) or
	// never fails.
	if res.ScaleUpSeconds <= 0 || float64(res.ScaleUpSeconds) > 4*float64(res.ScaleUpPollS)+2 {
		t.Errorf("scale_up_seconds = %v, want above 0 and within 2 × poll_interval + 1 s (with slack): %s\n%s", res.ScaleUpSeconds, line, progress.String())
	}
	var table strings.Builder
	if err := res.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"demand: each stream on 2 members, 20 replicas held", "scale-up"} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, table.String())
		}
	}
}

// TestDemandConfigParses checks that the balancer config of mode demand
// is one streamlb accepts, with the play block and each member's
// maxViewers.
func TestDemandConfigParses(t *testing.T) {
	text := balancerConfig("127.0.0.1:4000", []string{"127.1.2.3", "127.1.2.4", "127.1.2.5"}, balancerSettings{
		maxInflight: 8, resyncInterval: time.Minute, teardownGrace: 10 * time.Second, copies: 2, playListen: "127.0.0.2:4001", poll: 1500 * time.Millisecond,
	})
	cfg, err := config.Parse("bench.json", []byte(text))
	if err != nil {
		t.Fatalf("Parse: %v\n%s", err, text)
	}
	if cfg.Replication.Mode != config.ReplicationDemand || cfg.Replication.MinCopies != 2 {
		t.Errorf("replication = %+v, want mode demand, min_copies 2", cfg.Replication)
	}
	if cfg.Play == nil || cfg.Play.Listen != "127.0.0.2:4001" || cfg.Play.PollInterval != 1500*time.Millisecond {
		t.Errorf("play = %+v, want listen 127.0.0.2:4001, poll_interval 1.5s", cfg.Play)
	}
	for _, m := range cfg.Members {
		if m.Placement.MaxViewers != demandMaxViewers {
			t.Errorf("member %s: maxViewers %d, want %d", m.Name, m.Placement.MaxViewers, demandMaxViewers)
		}
	}
}

func TestGCTraceLine(t *testing.T) {
	b := &balancer{}
	lines := []string{
		"gc 1 @0.004s 3%: 0.017+0.85+0.027 ms clock, 0.035+0.31/0.49/0+0.055 ms cpu, 3->4->1 MB, 4 MB goal, 0 MB stacks, 0 MB globals, 2 P",
		"gc 2 @0.104s 2%: 0.017+0.85+0.027 ms clock, 0.035+0.31/0.49/0+0.055 ms cpu, 30->41->12 MB, 40 MB goal, 0 MB stacks, 0 MB globals, 2 P",
	}
	for _, l := range lines {
		if !b.gcLine(l) {
			t.Errorf("gcLine(%q) = false, want the line consumed", l)
		}
	}
	if b.gcLine(`time=2026-01-01T00:00:00Z level=WARN msg="member is down"`) {
		t.Errorf("a log line was taken for a GC trace")
	}
	if peak, live := b.heap(); peak != 41 || live != 12 {
		t.Errorf("heap() = %v, %v, want 41, 12", peak, live)
	}
}

// TestCPUTimeCountsThisProcess checks that cpuTime reads the CPU this
// process spends.
func TestCPUTimeCountsThisProcess(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("CPU time is read from /proc")
	}
	c0, err := cpuTime(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		c1, err := cpuTime(os.Getpid())
		if err != nil {
			t.Fatal(err)
		}
		if c1-c0 >= 50*time.Millisecond {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("CPU time grew by %v while spinning for 10s, want at least 50ms", c1-c0)
		}
		for i := range 1_000_000 { // burn a little CPU
			spin += i * i
		}
	}
}

var spin int

// TestBalancerRunsWithTheMemoryLimit checks that -memory-limit reaches the
// balancer process as its GOMEMLIMIT, as the balancer's own metrics report.
func TestBalancerRunsWithTheMemoryLimit(t *testing.T) {
	exe := buildStreamlb(t)
	ctx := t.Context()
	g, err := startEmsim(ctx, exe, 2, false, false, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer g.close()
	listen, err := freeListen()
	if err != nil {
		t.Fatal(err)
	}
	b, err := startBalancer(ctx, exe, t.TempDir(), listen, g.ips, balancerSettings{
		maxInflight: 4, resyncInterval: time.Minute, teardownGrace: time.Second, memoryLimit: "64MiB",
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.stop()
	m, err := b.metrics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := sumMetric(m, "go_gc_gomemlimit_bytes"); got != 64<<20 {
		t.Errorf("the balancer's go_gc_gomemlimit_bytes = %v, want %d", got, 64<<20)
	}
}

func TestParseMemoryLimit(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
	}{
		{"80MiB", 80 << 20}, {"1GiB", 1 << 30}, {"4096", 4096}, {"512B", 512}, {"3KiB", 3 << 10}, {"2TiB", 2 << 40},
	} {
		if got, err := parseMemoryLimit(tc.in); err != nil || got != tc.want {
			t.Errorf("parseMemoryLimit(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}
	for _, in := range []string{"80MB", "80 MiB", "1.5GiB", "-1MiB", "0", "MiB", "80mib", "9999999999TiB", "80MiBB"} {
		if _, err := parseMemoryLimit(in); err == nil || !strings.Contains(err.Error(), "GOMEMLIMIT") {
			t.Errorf("parseMemoryLimit(%q): error %v, want one that names the syntax GOMEMLIMIT takes", in, err)
		}
	}
	o := Options{MemoryLimit: "80MB"}
	if err := o.setDefaults(); err == nil || !strings.Contains(err.Error(), `"80MB"`) {
		t.Errorf("setDefaults with memory limit 80MB: %v, want an error naming it", err)
	}
}

// TestShuffledMixSpreadsStreamEvents checks that the shuffled order posts
// the same events as the recording, with its new streams spread over the
// run instead of the recording's one burst per pass.
func TestShuffledMixSpreadsStreamEvents(t *testing.T) {
	path, err := findMix("")
	if err != nil {
		t.Fatal(err)
	}
	recorded, err := loadMix(path)
	if err != nil {
		t.Fatal(err)
	}
	shuffled := slices.Clone(recorded)
	orderMix(shuffled, MixShuffled)
	again := slices.Clone(recorded)
	orderMix(again, MixShuffled)
	kept := slices.Clone(recorded)
	orderMix(kept, MixRecorded)

	types := func(mix []mixEvent) []string {
		var out []string
		for _, e := range mix {
			out = append(out, e.typ)
		}
		return out
	}
	if !slices.Equal(types(kept), types(recorded)) {
		t.Errorf("the recorded order changed the mix")
	}
	if !slices.Equal(types(again), types(shuffled)) {
		t.Errorf("two shuffles differ: the order is not the same from run to run")
	}
	if a, b := slices.Sorted(slices.Values(types(shuffled))), slices.Sorted(slices.Values(types(recorded))); !slices.Equal(a, b) {
		t.Errorf("the shuffled mix holds other events than the recording")
	}

	o := Options{Exe: "streamlb", MixOrder: "random"}
	if err := o.setDefaults(); err == nil || !strings.Contains(err.Error(), `"random"`) {
		t.Errorf("setDefaults with mix order random: %v, want an error naming it", err)
	}

	// The most new streams in any 200 events in a row, the mix repeating
	// as the scenario repeats it.
	const window = 200
	busiest := func(mix []mixEvent) (most int, mean float64) {
		created := 0
		for _, e := range mix {
			if e.typ == "inStreamCreated" {
				created++
			}
		}
		for start := range mix {
			n := 0
			for i := range window {
				if mix[(start+i)%len(mix)].typ == "inStreamCreated" {
					n++
				}
			}
			most = max(most, n)
		}
		return most, float64(created) * window / float64(len(mix))
	}
	most, mean := busiest(shuffled)
	recMost, _ := busiest(recorded)
	t.Logf("new streams in the busiest %d events: shuffled %d, recorded %d, mean %.1f", window, most, recMost, mean)
	if float64(most) > 1.6*mean {
		t.Errorf("shuffled: %d new streams in the busiest %d events, want at most 1.6 × the mean %.1f", most, window, mean)
	}
}
