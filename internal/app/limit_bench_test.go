package app

import (
	"testing"
	"time"
)

// BenchmarkMemberBurst measures what the sink refuses in a burst: one
// origin of 8 emulated members publishes 3,000 streams at once, the 7
// others pull each of them (max_inflight 16, no pull rate cap), so the sink
// receives about 45,000 events: the origin's inStreamCreated and one
// outStreamCreated per pull, and each puller's inStreamCreated. It reports
// the requests refused (each one an event lost) and the members' requests
// that waited for a slot, with the members trusted as the sink runs, and
// under the old rule (64 per address for every peer, no waiting). Each
// iteration's group lives until the benchmark ends: run it with
// -benchtime=1x. In one process the emulated members share the CPU with
// the sink and slow down with it, so even the old rule refused nothing here
// (3,000 streams on 8 members; 10,000 on 16 for a minute): the refusals
// come when the balancer runs apart from busy members, as in streamlb bench.
func BenchmarkMemberBurst(b *testing.B) {
	const members, streams = 8, 3000
	for _, trusted := range []bool{true, false} {
		name := "members-trusted"
		if !trusted {
			name = "old-rule"
		}
		b.Run(name, func(b *testing.B) {
			var refused, waited, events int
			start := time.Now()
			for b.Loop() {
				g := newGate(func(string) bool { return false })
				a, cl, _ := startMemberApp(b, members, `"max_inflight": 16, "max_pulls_per_second": 0, "resync_interval": "10m",`, g)
				if !trusted {
					a.sinkLimit.SetTrusted(nil, 0)
				}
				reg := a.Registry()
				// Let the first resync end before the burst.
				select {
				case <-a.Controller().Ready():
				case <-time.After(30 * time.Second):
					b.Fatal("the first resync did not end within 30s")
				}
				if n, err := cl.Members()[0].PublishMany("burst-", streams); err != nil || n != streams {
					b.Fatalf("PublishMany: %d, %v", n, err)
				}
				want := streams * (1 + 2*(members-1))
				answered := func() int {
					return counter(b, reg, "streamlb_events_received_total", nil) + counter(b, reg, "streamlb_http_requests_refused_total", nil)
				}
				deadline := time.Now().Add(time.Minute)
				for answered() < want && time.Now().Before(deadline) {
					time.Sleep(50 * time.Millisecond)
				}
				if got := answered(); got < want {
					b.Logf("%d of %d events answered within a minute", got, want)
				}
				refused += counter(b, reg, "streamlb_http_requests_refused_total", nil)
				waited += counter(b, reg, "streamlb_http_requests_waited_total", nil)
				events += answered()
			}
			b.ReportMetric(float64(refused)/float64(b.N), "refused/op")
			b.ReportMetric(float64(waited)/float64(b.N), "waited/op")
			b.ReportMetric(float64(events)/float64(b.N), "events/op")
			b.Logf("%s: %d events, %d refused, %d waited in %v", name, events, refused, waited, time.Since(start).Round(time.Millisecond))
		})
	}
}
