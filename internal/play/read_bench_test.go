package play

import (
	"io"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"streamlb/internal/config"
	"streamlb/internal/controller"
	"streamlb/internal/ems"
	"streamlb/internal/emsim"
)

// originOf starts three emulated members: the first publishes sources
// streams, which the other two pull with streamlb's user agent, so that
// its listStreams lists sources inbound and 2×sources outbound streams,
// as an origin of mode demand with min_copies 3 does.
func originOf(tb testing.TB, sources int) (*emsim.Cluster, []Member) {
	tb.Helper()
	ips := emsim.RandomLoopbackIPs(3)
	cl, err := emsim.Start(emsim.Config{IP: ips[0], Members: len(ips)})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { cl.Close() })
	if n, err := cl.Members()[0].PublishMany("s", sources); err != nil || n != sources {
		tb.Fatalf("publish: %d, %v", n, err)
	}
	hc := ems.NewHTTPClient(ems.HTTPOptions{OneShot: true})
	tb.Cleanup(hc.CloseIdleConnections)
	var members []Member
	for i, ip := range ips {
		c := ems.New(ems.Endpoint{Member: "m" + strconv.Itoa(i), BaseURL: cl.Members()[i].APIURL()}, hc)
		members = append(members, Member{Name: "m" + strconv.Itoa(i), Address: ip, Placement: placement(200), Client: c})
	}
	ctx := tb.Context()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 8 {
		wg.Go(func() {
			for i := w; i < 2*sources; i += 8 {
				c := members[1+i%2].Client.(*ems.Client)
				name := "s" + strconv.Itoa(i/2)
				_, err := c.PullStream(ctx, ems.PullRequest{URI: "rtmp://" + ips[0] + "/live/" + name, LocalStreamName: name, EmulateUserAgent: controller.UserAgent})
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		tb.Fatal(err)
	}
	origin := members[0].Client.(*ems.Client)
	deadline := time.Now().Add(time.Minute)
	for {
		in, out := 0, 0
		err := origin.EachStream(ctx, func(e *ems.StreamEntry) error {
			if _, player := e.PlayerProtocol(); player {
				out++
			} else {
				in++
			}
			return nil
		})
		if err != nil {
			tb.Fatal(err)
		}
		if in == sources && out == 2*sources {
			break
		}
		if time.Now().After(deadline) {
			tb.Fatalf("origin lists %d inbound and %d outbound streams, want %d and %d", in, out, sources, 2*sources)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return cl, members
}

// BenchmarkOriginListStreams measures one load reading of an origin of
// 5,000 sources and 10,000 copy pulls, by step: emsim's answer alone (the
// body read and dropped), its decoding by EachStream, and Service.read.
func BenchmarkOriginListStreams(b *testing.B) {
	cl, members := originOf(b, 5000)
	origin := members[0].Client.(*ems.Client)
	s, err := New(Options{Config: &config.Play{PollInterval: time.Second, StaleAfter: 15 * time.Second,
		HighWater: 0.8, StickyTTL: time.Minute, DefaultStreamBitrate: 2e6}, Members: members, Holders: &fakeHolders{m: map[string][]string{}}})
	if err != nil {
		b.Fatal(err)
	}
	b.Run("answer", func(b *testing.B) {
		hc := &http.Client{Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil}}
		defer hc.CloseIdleConnections()
		for b.Loop() {
			resp, err := hc.Get(cl.Members()[0].APIURL() + "/listStreams")
			if err != nil {
				b.Fatal(err)
			}
			n, _ := io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			b.SetBytes(n)
		}
	})
	b.Run("EachStream", func(b *testing.B) {
		for b.Loop() {
			n := 0
			if err := origin.EachStream(b.Context(), func(*ems.StreamEntry) error { n++; return nil }); err != nil {
				b.Fatal(err)
			}
			if n != 15000 {
				b.Fatalf("%d entries", n)
			}
		}
	})
	b.Run("read", func(b *testing.B) {
		var limit int
		for b.Loop() {
			smp, err := s.read(b.Context(), s.members[0], false, &limit)
			if err != nil {
				b.Fatal(err)
			}
			if smp.ReplicaPulls != 10000 || len(smp.Streams) != 5000 {
				b.Fatalf("sample: %d replica pulls, %d streams", smp.ReplicaPulls, len(smp.Streams))
			}
		}
	})
}
