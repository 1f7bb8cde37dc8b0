package controller

import (
	"context"
	"fmt"
	"io"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"streamlb/internal/ems"
)

// staticEMS answers listings with fixed data, at no cost of its own, so
// that benchmarks measure the controller.
type staticEMS struct {
	configs []ems.PullConfig
	inbound []string
}

func (s *staticEMS) Version(context.Context) (ems.Version, error) { return ems.Version{}, nil }
func (s *staticEMS) PullStream(context.Context, ems.PullRequest) (ems.PullResult, error) {
	return ems.PullResult{}, nil
}
func (s *staticEMS) EachPullConfigSkipping(_ context.Context, fn func(*ems.PullConfig) error, _ func(error)) error {
	for i := range s.configs {
		if err := fn(&s.configs[i]); err != nil {
			return err
		}
	}
	return nil
}
func (s *staticEMS) ListInboundStreamNames(context.Context) ([]string, error) {
	return slices.Clone(s.inbound), nil // a new answer each time, as a client's: the caller keeps it
}
func (s *staticEMS) RemoveConfig(context.Context, uint64) error { return nil }
func (s *staticEMS) GetStreamInfo(context.Context, string) (ems.StreamInfo, error) {
	return ems.StreamInfo{}, nil
}

// staticGroup returns the specs of members members answering from
// memory: each lists names(i) as its inbound streams, and every member but
// the first also holds a replica of each, pulled from the first.
func staticGroup(members int, names func(member int) []string) []MemberSpec {
	origin := "10.0.0.1"
	var specs []MemberSpec
	for i := range members {
		f := &staticEMS{inbound: names(i)}
		if i > 0 {
			for j, n := range f.inbound {
				f.configs = append(f.configs, ems.PullConfig{
					ConfigID: uint64(j + 1), LocalStreamName: n, URI: pullURI(origin, "live", n), KeepAlive: true,
					Status: ems.PullStatus{Code: ems.PullStatusStreaming},
					Vars:   map[string]string{tagGroup: "default", tagOrigin: origin},
				})
			}
		}
		specs = append(specs, MemberSpec{Name: fmt.Sprintf("m%02d", i+1), Address: fmt.Sprintf("10.0.0.%d", i+1), API: "direct", Replicate: true, Client: f})
	}
	return specs
}

// convergedGroup returns a controller of members members whose first holds
// streams sources, every other one a replica of each: a converged group,
// listed once.
func convergedGroup(b *testing.B, streams, members int) *Controller {
	b.Helper()
	names := make([]string, streams)
	for i := range names {
		names[i] = fmt.Sprintf("stream-%05d", i)
	}
	specs := staticGroup(members, func(int) []string { return names })
	c, err := New(Options{Members: specs})
	if err != nil {
		b.Fatal(err)
	}
	// The first resync finds every source and queues its replicas
	// everywhere; the planning finds nothing to do.
	c.Resync(b.Context())
	for _, m := range c.members {
		for m.work.queue.Len() > 0 {
			name, _ := m.work.queue.Get()
			m.work.queue.Done(name)
		}
	}
	c.Resync(b.Context())
	c.mu.Lock()
	defer c.mu.Unlock()
	c.isReady = true // as after Run's first resync
	if len(c.sources) != streams {
		b.Fatalf("%d sources after a resync, want %d", len(c.sources), streams)
	}
	for _, m := range c.members {
		if n := m.work.queue.Len(); n != 0 {
			b.Fatalf("member %s has %d streams queued in a converged group", m.spec.Name, n)
		}
	}
	return c
}

// reportPerReplica adds the time per replica (stream × destination).
func reportPerReplica(b *testing.B, streams, members int) {
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(streams*(members-1)), "ns/replica")
}

// BenchmarkDiff measures the desired-vs-actual diff of every member of a
// converged group of 10,000 streams × 16 members, and reports the longest
// hold of the lock.
func BenchmarkDiff(b *testing.B) {
	const streams, members = 10000, 16
	c := convergedGroup(b, streams, members)
	b.ReportAllocs()
	var longest time.Duration
	for b.Loop() {
		longest = max(longest, c.diffAll(c.members, diffChunk))
	}
	reportPerReplica(b, streams, members)
	b.ReportMetric(float64(longest.Microseconds())/1000, "ms/longest-hold")
}

// BenchmarkResync measures a whole resync of the same group, listings
// included (answered in memory).
func BenchmarkResync(b *testing.B) {
	const streams, members = 10000, 16
	c := convergedGroup(b, streams, members)
	b.ReportAllocs()
	for b.Loop() {
		c.Resync(b.Context())
	}
	reportPerReplica(b, streams, members)
}

// BenchmarkStatusCold measures the whole status document of the same
// group when every row must be recomputed (after a member's state changed).
func BenchmarkStatusCold(b *testing.B) {
	const streams, members = 10000, 16
	c := convergedGroup(b, streams, members)
	b.ReportAllocs()
	for b.Loop() {
		staleRows(c)
		if st := c.Snapshot(); !st.Converged {
			b.Fatal("not converged")
		}
	}
	reportPerReplica(b, streams, members)
}

// BenchmarkStatusWarm measures the whole status document when nothing
// changed since the last build: the rows are reused, the document is
// materialised.
func BenchmarkStatusWarm(b *testing.B) {
	const streams, members = 10000, 16
	c := convergedGroup(b, streams, members)
	b.ReportAllocs()
	for b.Loop() {
		dropBuild(c)
		if st := c.Snapshot(); !st.Converged {
			b.Fatal("not converged")
		}
	}
	reportPerReplica(b, streams, members)
}

// BenchmarkStatusPage measures a dashboard's read: the summary and the
// first 50 streams, attention first, nothing changed.
func BenchmarkStatusPage(b *testing.B) {
	const streams, members = 10000, 16
	c := convergedGroup(b, streams, members)
	b.ReportAllocs()
	for b.Loop() {
		dropBuild(c)
		if st := c.Status(StatusQuery{Attention: true, Limit: 50}); len(st.Streams) != 50 {
			b.Fatalf("%d streams", len(st.Streams))
		}
	}
}

// BenchmarkStatusEncoded measures a full read as the status API makes it:
// the document asked for encoding, and its JSON, nothing changed since the
// rows were built and encoded once.
func BenchmarkStatusEncoded(b *testing.B) {
	const streams, members = 10000, 16
	c := convergedGroup(b, streams, members)
	b.ReportAllocs()
	for b.Loop() {
		dropBuild(c)
		if err := c.Status(StatusQuery{Encoding: true}).WriteJSON(io.Discard); err != nil {
			b.Fatal(err)
		}
	}
}

// staleRows makes every status row stale and drops the last build, as a
// member's change of state does.
func staleRows(c *Controller) {
	c.mu.Lock()
	c.allDirtyLocked()
	c.mu.Unlock()
	dropBuild(c)
}

// dropBuild drops the last status build, so that the next read makes one.
func dropBuild(c *Controller) {
	c.rows.mu.Lock()
	c.rows.last = nil
	c.rows.mu.Unlock()
}

// BenchmarkStatusColdHold measures the longest hold of the controller's
// lock by a cold status build (every row recomputed), alone and while
// another goroutine allocates as a resync's decoding does, so that the
// collector runs during the build.
func BenchmarkStatusColdHold(b *testing.B) {
	const streams, members = 10000, 16
	c := convergedGroup(b, streams, members)
	for _, alloc := range []bool{false, true} {
		b.Run(fmt.Sprintf("alloc=%v", alloc), func(b *testing.B) {
			stop := make(chan struct{})
			done := make(chan struct{})
			go func() {
				defer close(done)
				var keep [][]byte
				for i := 0; alloc; i++ {
					select {
					case <-stop:
						return
					default:
					}
					keep = append(keep, make([]byte, 64<<10))
					if len(keep) > 512 { // 32 MiB live, then dropped
						keep = keep[:0]
					}
				}
			}()
			var longest time.Duration
			for b.Loop() {
				staleRows(c)
				c.rows.build(c)
				longest = max(longest, time.Duration(testutil.ToFloat64(c.met.statusLock)*float64(time.Second)))
			}
			close(stop)
			<-done
			b.ReportMetric(float64(longest)/float64(time.Millisecond), "max-hold-ms")
		})
	}
}
