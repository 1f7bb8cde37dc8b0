package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"streamlb/internal/bench"
)

func benchCmd(ctx context.Context, env Env, args []string) int {
	fs := newFlags(env, "bench")
	var o bench.Options
	fs.IntVar(&o.Members, "members", 16, "emulated EMS members (2 to 254)")
	fs.IntVar(&o.Streams, "streams", 10000, "streams of the burst, appearing at once on one member")
	fs.IntVar(&o.Rate, "rate", 2000, "events per second posted to the event sink")
	fs.DurationVar(&o.Duration, "duration", 0, "how long events are posted (default 10s)")
	fs.DurationVar(&o.Warmup, "warmup", time.Second, "how long events are posted before the measured duration, reported apart (0: none)")
	fs.BoolVar(&o.Separate, "separate", false, "one emsim process per member (default: one for all)")
	fs.BoolVar(&o.KeepAlive, "keep-alive", false, "let the members keep connections open (EMS answers Connection: close)")
	fs.IntVar(&o.MaxInflight, "max-inflight", 0, "max_inflight of the burst (0: try 4, 8 and 16 and keep the fastest)")
	fs.BoolVar(&o.Defaults, "defaults", false, "run the balancer with the production defaults of max_inflight and max_pulls_per_second instead of the fastest max_inflight and no cap")
	fs.StringVar(&o.MemoryLimit, "memory-limit", "", "GOMEMLIMIT of the balancer process, as GOMEMLIMIT takes it (`LIMIT`, e.g. 80MiB; default: none)")
	fs.DurationVar(&o.RecoveryResync, "recovery-resync", 0, "resync_interval of the recovery scenario (default 10s)")
	fs.StringVar(&o.EventsFile, "events-file", "", "recorded event mix `FILE` (default: testdata/ems/recorded/ems-events-webuilogs.jsonl of this clone)")
	fs.StringVar(&o.MixOrder, "mix-order", bench.MixShuffled, "order the mix's events are posted in: shuffled (each type spread over the run) or recorded (the recording's stream events in one burst per pass) (`ORDER`)")
	fs.StringVar(&o.ProfileDir, "profile", "", "write CPU and heap profiles of each scenario into this `DIR`")
	fs.DurationVar(&o.ProfileWindow, "profile-window", 0, "length of each CPU profile (default 10s)")
	fs.StringVar(&o.Replication, "replication", "all", "replication mode of the burst's group: all (every member holds every stream) or demand (`MODE`)")
	fs.IntVar(&o.Copies, "copies", 2, "with -replication demand: members holding each stream, origin included (min_copies)")
	fs.DurationVar(&o.PollInterval, "poll-interval", 0, "with -replication demand: the balancer's play.poll_interval, how often it reads each member's load (default 1s)")
	scenarios := fs.String("scenarios", "ack,burst,resync,recovery", "scenarios to run, a comma-separated `LIST` of ack, burst, resync, recovery, status and play")
	asJSON := fs.Bool("json", false, "print one JSON object on one line instead of a table")
	quiet := fs.Bool("q", false, "no progress lines on stderr")
	if rc := fs.parse(args); rc >= 0 {
		return rc
	}
	for _, s := range strings.Split(*scenarios, ",") {
		if s = strings.TrimSpace(s); s != "" {
			o.Scenarios = append(o.Scenarios, s)
		}
	}
	if !*quiet {
		o.Progress = env.Stderr
	}
	res, err := bench.Run(ctx, o)
	if err != nil {
		fmt.Fprintf(env.Stderr, "streamlb bench: %v\n", err)
		return exitError
	}
	if *asJSON {
		b, err := json.Marshal(res)
		if err != nil {
			fmt.Fprintf(env.Stderr, "streamlb bench: %v\n", err)
			return exitError
		}
		fmt.Fprintln(env.Stdout, string(b))
		return exitOK
	}
	if err := res.WriteTable(env.Stdout); err != nil {
		fmt.Fprintf(env.Stderr, "streamlb bench: %v\n", err)
		return exitError
	}
	return exitOK
}
