package play

import (
	"context"
	"errors"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"streamlb/internal/config"
	"streamlb/internal/ems"
)

// fakeClient is a LoadClient whose answers the test sets; it records when
// listStreams was called.
type fakeClient struct {
	mu      sync.Mutex
	entries []ems.StreamEntry
	bw      ems.Bandwidth
	hls     int
	limit   ems.ConnectionsLimit
	err     error // of every call
	block   bool  // calls wait for their context
	calls   []time.Time
	limits  int           // getConnectionsCountLimit calls
	delay   time.Duration // listStreams takes this long before answering
	active  int           // listStreams calls under way
	overlap int           // most listStreams calls under way at once
}

func (f *fakeClient) answer(ctx context.Context) error {
	f.mu.Lock()
	err, block := f.err, f.block
	f.mu.Unlock()
	if block {
		<-ctx.Done()
		return ctx.Err()
	}
	return err
}

func (f *fakeClient) EachStream(ctx context.Context, fn func(e *ems.StreamEntry) error) error {
	f.mu.Lock()
	f.calls = append(f.calls, time.Now())
	entries := append([]ems.StreamEntry(nil), f.entries...)
	f.active++
	f.overlap = max(f.overlap, f.active)
	delay := f.delay
	f.mu.Unlock()
	defer f.set(func(f *fakeClient) { f.active-- })
	if delay > 0 {
		t := time.NewTimer(delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if err := f.answer(ctx); err != nil {
		return err
	}
	for i := range entries {
		if err := fn(&entries[i]); err != nil {
			return err
		}
	}
	return nil
}

func (f *fakeClient) GetBandwidth(ctx context.Context) (ems.Bandwidth, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.bw, nil
}

func (f *fakeClient) HTTPClientsConnected(ctx context.Context, group string) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.hls, nil
}

func (f *fakeClient) GetConnectionsCountLimit(ctx context.Context) (ems.ConnectionsLimit, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.limits++
	return f.limit, nil
}

func (f *fakeClient) set(fn func(f *fakeClient)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

func (f *fakeClient) callTimes() []time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]time.Time(nil), f.calls...)
}

// newPolledService returns a Service polling member "a" through fc, with
// placement pl, and others.
func newPolledService(t *testing.T, fc *fakeClient, pl config.Placement, others ...Member) *Service {
	t.Helper()
	cfg := &config.Play{Listen: "127.0.0.1:0", PollInterval: time.Second, StaleAfter: 3 * time.Second,
		HighWater: 0.8, StickyTTL: time.Minute, DefaultStreamBitrate: 2e6}
	members := append([]Member{{Name: "a", Address: "10.0.0.1", Placement: pl, Client: fc}}, others...)
	s, err := New(Options{Config: cfg, Members: members, Holders: &fakeHolders{m: map[string][]string{}}})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestReadTellsPlayersFromReplicaPulls: outbound streams are players
// unless they carry streamlb's user agent or come from a member's
// address; file writers are not players; inbound streams give their
// bitrate.
func TestReadTellsPlayersFromReplicaPulls(t *testing.T) {
	fc := &fakeClient{
		entries: []ems.StreamEntry{
			{Name: "cam", Type: "INR", FarIP: "192.0.2.9", Bitrate: 1.5e6},
			{Name: "cam", Type: "ONR", FarIP: "10.0.0.2", UserAgent: "streamlb"},
			{Name: "cam", Type: "ONR", FarIP: "10.0.0.3", UserAgent: "EvoStream Media Server (www.evostream.com) player"},
			{Name: "cam", Type: "ONR", FarIP: "192.0.2.50", UserAgent: "LNX 9,0,124,2"},
			{Name: "cam", Type: "ONR", FarIP: "192.0.2.51", UserAgent: "EvoStream Media Server (www.evostream.com) player"},
			{Name: "cam", Type: "ONP", FarIP: "192.0.2.52"},
			{Name: "cam", Type: "OFHLS"},
			{Name: "other", Type: "ONTS", FarIP: "192.0.2.53"},
		},
		bw:    ems.Bandwidth{CurrentOut: 1e6, MaxOut: 12.5e6},
		hls:   7,
		limit: ems.ConnectionsLimit{Current: 20, Limit: 300},
	}
	s := newPolledService(t, fc, placement(200), Member{Name: "b", Address: "10.0.0.3", Placement: placement(200), Client: &fakeClient{}})
	var limit int
	smp, err := s.read(t.Context(), s.members[0], true, &limit)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int{ProtocolRTMP: 2, ProtocolRTSP: 1, ProtocolHLS: 7, ProtocolOther: 1}
	for proto, n := range want {
		if smp.Viewers[proto] != n {
			t.Errorf("%s viewers = %d, want %d (all: %v)", proto, smp.Viewers[proto], n, smp.Viewers)
		}
	}
	if smp.ReplicaPulls != 2 || smp.Streams["cam"] != 3 || smp.Streams["other"] != 1 || smp.Bitrates["cam"] != 1.5e6 {
		t.Errorf("sample = %+v, want 2 replica pulls, 3 players of cam, 1 of other, cam at 1.5 Mbps", smp)
	}
	if smp.OutBps != 8e6 || smp.MaxOutBps != 100e6 || smp.ConnLimit != 300 {
		t.Errorf("sample bandwidth %v of %v bits/s, limit %d; want 8e6 of 1e8, 300", smp.OutBps, smp.MaxOutBps, smp.ConnLimit)
	}
}

// TestPollerBacksOffAndRecovers: a member whose API fails is read less
// and less often (never more than six intervals apart) and is not
// eligible; once it answers, it is read every interval and eligible.
func TestPollerBacksOffAndRecovers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fc := &fakeClient{err: &ems.Error{Member: "a", Command: "listStreams", Kind: ems.KindTransport, Err: errors.New("connection refused")}}
		s := newPolledService(t, fc, placement(200))
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() { _ = s.Run(ctx); close(done) }()

		time.Sleep(60 * time.Second)
		synctest.Wait()
		calls := fc.callTimes()
		if len(calls) < 8 || len(calls) > 30 {
			t.Errorf("%d reads of a failing member in 60s, want backoff (8 to 30)", len(calls))
		}
		for i := 1; i < len(calls); i++ {
			if gap := calls[i].Sub(calls[i-1]); gap > 6*time.Second {
				t.Errorf("reads %d and %d are %v apart, want at most 6s", i-1, i, gap)
			}
		}
		if m := s.Load().Members[0]; m.Eligible || m.Why != WhyNoSample || m.LastError == "" {
			t.Errorf("failing member's load = %+v, want ineligible without a sample, with its error", m)
		}

		fc.set(func(f *fakeClient) { f.err = nil })
		time.Sleep(7 * time.Second)
		synctest.Wait()
		if m := s.Load().Members[0]; !m.Eligible || m.LastError != "" || m.SampleAgeS >= 1 {
			t.Errorf("recovered member's load = %+v, want eligible with a fresh sample", m)
		}
		before := len(fc.callTimes())
		time.Sleep(10 * time.Second)
		synctest.Wait()
		if n := len(fc.callTimes()) - before; n != 10 {
			t.Errorf("%d reads in 10s of a healthy member, want 10 (one per interval)", n)
		}
		cancel()
		<-done
	})
}

// TestPollerTimesOutAndGoesStale: a member that stops answering is given
// up on at the call timeout, and its last sample goes stale.
func TestPollerTimesOutAndGoesStale(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fc := &fakeClient{}
		s := newPolledService(t, fc, placement(200))
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() { _ = s.Run(ctx); close(done) }()
		synctest.Wait()
		if m := s.Load().Members[0]; !m.Eligible {
			t.Fatalf("answering member's load = %+v, want eligible", m)
		}
		fc.set(func(f *fakeClient) { f.block = true })
		time.Sleep(3*time.Second + time.Millisecond)
		synctest.Wait()
		m := s.Load().Members[0]
		if m.Eligible || m.Why != WhyStale || m.LastError == "" {
			t.Errorf("silent member's load after stale_after = %+v, want stale with a timeout error", m)
		}
		cancel()
		<-done
	})
}

// TestConnectionLimitIsReadWhenNeeded: without maxViewers, EMS's limit is
// read at the first good poll (even after failures) and then every few
// polls; with maxViewers, never.
func TestConnectionLimitIsReadWhenNeeded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fc := &fakeClient{err: errors.New("down"), limit: ems.ConnectionsLimit{Limit: 50}}
		configured := &fakeClient{}
		s := newPolledService(t, fc, placement(0), Member{Name: "b", Address: "10.0.0.2", Placement: placement(200), Client: configured})
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() { _ = s.Run(ctx); close(done) }()
		time.Sleep(5 * time.Second)
		fc.set(func(f *fakeClient) { f.err = nil })
		time.Sleep(6*time.Second + 500*time.Millisecond)
		synctest.Wait()
		if m := s.Load().Members[0]; m.MaxViewers != 50 {
			t.Errorf("a's max viewers = %d after it answered, want EMS's limit 50", m.MaxViewers)
		}
		time.Sleep(30 * time.Second)
		synctest.Wait()
		fc.set(func(f *fakeClient) {
			if f.limits < 3 || f.limits > 5 {
				t.Errorf("a's limit read %d times over about 36 good polls, want one every 12", f.limits)
			}
		})
		configured.set(func(f *fakeClient) {
			if f.limits != 0 {
				t.Errorf("b (maxViewers configured) had its limit read %d times, want 0", f.limits)
			}
		})
		cancel()
		<-done
	})
}

// TestHLSSessionsKeepEveryStreamWatchedForDemandCopies: HLS sessions are
// not counted per stream, so for demand copies each stream of the member
// counts them.
func TestHLSSessionsKeepEveryStreamWatchedForDemandCopies(t *testing.T) {
	fc := &fakeClient{entries: []ems.StreamEntry{{Name: "cam", Type: "INR"}, {Name: "news", Type: "INR"}, {Name: "news", Type: "ONR", FarIP: "192.0.2.1"}}, hls: 2}
	s := newPolledService(t, fc, placement(200))
	var got map[string]int
	s.onSample = func(_ string, _ time.Time, _ float64, viewers map[string]int) { got = viewers }
	var limit int
	smp, err := s.read(t.Context(), s.members[0], false, &limit)
	if err != nil {
		t.Fatal(err)
	}
	s.SetSample("a", smp)
	if got["cam"] != 2 || got["news"] != 3 {
		t.Errorf("viewers handed on %v, want cam 2 (HLS) and news 3", got)
	}
	if d := s.Load(); d.Streams[0].Viewers["a"] != 0 || d.Streams[1].Viewers["a"] != 1 {
		t.Errorf("load document streams %+v, want the network players only", d.Streams)
	}
}

// TestSetMembers: a member kept keeps its sample and poller's work, a new
// one is read, a removed one is no longer.
func TestSetMembers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fa, fb, fc2 := &fakeClient{}, &fakeClient{}, &fakeClient{}
		s := newPolledService(t, fa, placement(200), Member{Name: "b", Address: "10.0.0.2", Placement: placement(200), Client: fb})
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() { _ = s.Run(ctx); close(done) }()
		time.Sleep(2500 * time.Millisecond)
		synctest.Wait()
		bCalls := len(fb.callTimes())
		pl := placement(50)
		if err := s.SetMembers([]Member{
			{Name: "a", Address: "10.0.0.1", Placement: pl, Client: fa},
			{Name: "c", Address: "10.0.0.3", Placement: placement(200), Client: fc2},
		}); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		doc := s.Load()
		if len(doc.Members) != 2 || doc.Members[0].Name != "a" || doc.Members[0].MaxViewers != 50 || !doc.Members[0].Eligible || doc.Members[1].Name != "c" {
			t.Errorf("members after SetMembers: %+v", doc.Members)
		}
		time.Sleep(3 * time.Second)
		synctest.Wait()
		if n := len(fb.callTimes()); n != bCalls {
			t.Errorf("removed member b read %d more times", n-bCalls)
		}
		if len(fc2.callTimes()) < 3 {
			t.Errorf("new member c read %d times in 3s, want every second", len(fc2.callTimes()))
		}
		if err := s.SetMembers([]Member{{Name: "x"}, {Name: "x"}}); err == nil {
			t.Error("SetMembers accepted two members named x")
		}
		cancel()
		<-done
	})
}

// runPolled runs a Service polling member "a" through fc every second,
// with stale_after 15s (so a reading may take up to 5s), for d; onSample
// sees its samples.
func runPolled(t *testing.T, fc *fakeClient, d time.Duration, onSample SampleFunc) *Service {
	t.Helper()
	cfg := &config.Play{Listen: "127.0.0.1:0", PollInterval: time.Second, StaleAfter: 15 * time.Second,
		HighWater: 0.8, StickyTTL: time.Minute, DefaultStreamBitrate: 2e6}
	s, err := New(Options{Config: cfg, Members: []Member{{Name: "a", Address: "10.0.0.1", Placement: placement(200), Client: fc}},
		Holders: &fakeHolders{m: map[string][]string{}}, OnSample: onSample})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { _ = s.Run(ctx); close(done) }()
	time.Sleep(d)
	synctest.Wait()
	cancel()
	<-done
	return s
}

// TestPollerPeriodIsIntervalOrReading: a reading starts every poll
// interval when it takes less; one that takes longer is followed at once
// by the next; two readings of a member never overlap; each sample is
// taken when its reading ends.
func TestPollerPeriodIsIntervalOrReading(t *testing.T) {
	for _, tc := range []struct{ reading, period time.Duration }{
		{300 * time.Millisecond, time.Second},
		{time.Second, time.Second},
		{2500 * time.Millisecond, 2500 * time.Millisecond},
	} {
		t.Run(tc.reading.String(), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				fc := &fakeClient{delay: tc.reading}
				var samples []time.Time
				runPolled(t, fc, 20*time.Second, func(_ string, at time.Time, _ float64, _ map[string]int) { samples = append(samples, at) })
				calls := fc.callTimes()
				if want := int(20 * time.Second / tc.period); len(calls) < want {
					t.Fatalf("%d readings in 20s, want %d", len(calls), want)
				}
				for i := 1; i < len(calls); i++ {
					if gap := calls[i].Sub(calls[i-1]); gap != tc.period {
						t.Errorf("readings %d and %d started %v apart, want %v", i-1, i, gap, tc.period)
					}
				}
				if len(samples) < len(calls)-1 {
					t.Fatalf("%d samples of %d readings", len(samples), len(calls))
				}
				for i, at := range samples {
					if want := calls[i].Add(tc.reading); !at.Equal(want) {
						t.Errorf("sample %d taken at %v, want at the end of its reading, %v", i, at, want)
					}
				}
				fc.set(func(f *fakeClient) {
					if f.overlap != 1 {
						t.Errorf("%d readings of one member under way at once, want 1", f.overlap)
					}
				})
			})
		})
	}
}

// TestPollerBackoffRunsFromTheFailedReadingsEnd: a member whose readings
// fail after a while is read again after the backoff (the interval
// doubled per failure, six intervals at most, with jitter down to half),
// counted from the end of the failed reading, not from its start.
func TestPollerBackoffRunsFromTheFailedReadingsEnd(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const reading = 1500 * time.Millisecond
		fc := &fakeClient{delay: reading, err: &ems.Error{Member: "a", Command: "listStreams", Kind: ems.KindTransport, Err: errors.New("connection reset")}}
		s := runPolled(t, fc, 90*time.Second, nil)
		calls := fc.callTimes()
		if len(calls) < 10 {
			t.Fatalf("%d readings of a failing member in 90s, want at least 10", len(calls))
		}
		for i := 1; i < len(calls); i++ {
			backoff := min(time.Second<<min(i, 8), 6*time.Second)
			gap := calls[i].Sub(calls[i-1])
			if lo, hi := reading+backoff/2, reading+backoff; gap < lo || gap > hi {
				t.Errorf("readings %d and %d started %v apart, want %v to %v (reading %v, then backoff %v with jitter)", i-1, i, gap, lo, hi, reading, backoff)
			}
		}
		if m := s.Load().Members[0]; m.Eligible || m.LastError == "" {
			t.Errorf("failing member's load = %+v, want ineligible with its error", m)
		}
	})
}
