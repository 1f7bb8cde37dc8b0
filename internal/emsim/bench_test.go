package emsim

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// benchCluster starts one member for a benchmark.
func benchCluster(tb testing.TB) *Member {
	tb.Helper()
	c, err := Start(Config{IP: RandomLoopbackIPs(1)[0], APIPort: testPort})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	return c.Members()[0]
}

// BenchmarkAPI measures parallel API calls over loopback, half version and
// half pullStream, each on a new connection as EMS clients make them.
func BenchmarkAPI(b *testing.B) {
	m := benchCluster(b)
	tr := &http.Transport{DisableKeepAlives: true, Proxy: nil}
	b.Cleanup(tr.CloseIdleConnections)
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	versionURL := m.APIURL() + "/version"
	var n atomic.Int64
	var failures atomic.Int64
	start := time.Now()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			u := versionURL
			if i%2 == 1 {
				u = apiURL(m.APIURL(), "pullStream",
					fmt.Sprintf("uri=rtmp://cam.example.org/live/b%d localStreamName=b%d keepAlive=0 ", i, i))
			}
			resp, err := client.Get(u)
			if err != nil {
				failures.Add(1)
				continue
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"status":"SUCCESS"`) {
				failures.Add(1)
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "req/s")
	if f := failures.Load(); f > 0 {
		b.Errorf("%d of %d calls failed", f, b.N)
	}
}

// fillConfigs creates n pull configurations in process.
func fillConfigs(tb testing.TB, m *Member, n int) {
	tb.Helper()
	for i := range n {
		q := "params=" + b64(fmt.Sprintf("uri=rtmp://cam.example.org/live/c%d localStreamName=c%d keepAlive=1 _group=bench ", i, i))
		if out := m.execute(nil, "pullStream", q); !strings.Contains(string(out), `"SUCCESS"`) {
			tb.Fatalf("pullStream %d: %s", i, out)
		}
	}
}

// BenchmarkListConfig10k measures listConfig over loopback with 10,000
// pull configurations.
func BenchmarkListConfig10k(b *testing.B) {
	m := benchCluster(b)
	fillConfigs(b, m, 10000)
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil}}
	b.ResetTimer()
	for b.Loop() {
		resp, err := client.Get(m.APIURL() + "/listConfig")
		if err != nil {
			b.Fatal(err)
		}
		n, _ := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		b.SetBytes(n)
	}
}

// BenchmarkListConfigAnswer measures the making of a listConfig answer of
// 10,000 and 50,000 entries in process, as the API handler makes it,
// written to a response that discards it.
func BenchmarkListConfigAnswer(b *testing.B) {
	for _, entries := range []int{10000, 50000} {
		b.Run(fmt.Sprintf("entries=%d", entries), func(b *testing.B) {
			m := benchCluster(b)
			fillConfigs(b, m, entries)
			req := httptest.NewRequest(http.MethodGet, "/listConfig", nil)
			var w discardWriter
			b.ReportAllocs()
			for b.Loop() {
				w = discardWriter{h: make(http.Header)}
				m.serveEMS(&w, req, "listConfig", "")
				if w.status != http.StatusOK {
					b.Fatalf("status %d", w.status)
				}
			}
			b.SetBytes(w.n)
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(entries), "ns/entry")
		})
	}
}

// discardWriter is a ResponseWriter that counts and discards the body.
type discardWriter struct {
	h      http.Header
	status int
	n      int64
}

func (w *discardWriter) Header() http.Header  { return w.h }
func (w *discardWriter) WriteHeader(code int) { w.status = code }
func (w *discardWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	w.n += int64(len(p))
	return len(p), nil
}

// TestListConfigTenThousand checks that a listConfig of 10,000 entries is
// complete and valid. How long it takes is measured, not asserted:
// BenchmarkListConfigAnswer.
func TestListConfigTenThousand(t *testing.T) {
	t.Parallel()
	m := benchCluster(t)
	const n = 10000
	fillConfigs(t, m, n)
	client := newClient(t)
	start := time.Now()
	resp, err := client.Get(m.APIURL() + "/listConfig")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	elapsed := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	var env struct {
		Data struct {
			Pull []struct {
				ConfigID uint64 `json:"configId"`
				Group    string `json:"_group"`
			} `json:"pull"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &env); err != nil {
		t.Fatalf("decode listConfig: %v", err)
	}
	if len(env.Data.Pull) != n || env.Data.Pull[n-1].ConfigID != n || env.Data.Pull[0].Group != "bench" {
		t.Fatalf("listConfig has %d entries, want %d in configId order", len(env.Data.Pull), n)
	}
	t.Logf("listConfig of %d entries: %d bytes in %v", n, len(body), elapsed)
}

// BenchmarkStreamingPullsIdle measures what a check of every streaming
// pull costs the emulator with 20,000 pulls from another member: the
// bytes the process allocates per check. (The periodic check leaves these
// pulls out, their source being in the same process; a member going down
// or up asks for such a check.)
func BenchmarkStreamingPullsIdle(b *testing.B) {
	c, err := Start(Config{IP: RandomLoopbackIPs(2)[0], Members: 2, APIPort: testPort})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	src, dst := c.Members()[0], c.Members()[1]
	const n = 20000
	if _, err := src.PublishMany("s", n); err != nil {
		b.Fatal(err)
	}
	for i := range n {
		q := "params=" + b64(fmt.Sprintf("uri=rtmp://%s/live/s%d localStreamName=s%d keepAlive=1 ", src.IP(), i, i))
		if out := dst.execute(nil, "pullStream", q); !strings.Contains(string(out), `"SUCCESS"`) {
			b.Fatalf("pullStream %d: %s", i, out)
		}
	}
	deadline := time.Now().Add(time.Minute)
	for dst.Stats().Streams < n {
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d pulls streaming after a minute", dst.Stats().Streams, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	var before, after runtime.MemStats
	var bytes, checks uint64
	for b.Loop() {
		runtime.ReadMemStats(&before)
		start := dst.allChecks.Load()
		for range 2 {
			want := dst.allChecks.Load() + 1
			dst.requestCheck()
			for dst.allChecks.Load() < want {
				time.Sleep(10 * time.Millisecond)
			}
		}
		runtime.ReadMemStats(&after)
		bytes += after.TotalAlloc - before.TotalAlloc
		checks += uint64(dst.allChecks.Load() - start)
	}
	b.ReportMetric(float64(bytes)/float64(checks), "B/check")
}

// A listing answered in a reused large buffer is the listing of the moment,
// nothing of the longer one written in it before.
func TestListingBufferReused(t *testing.T) {
	t.Parallel()
	m := benchCluster(t)
	const n = 3000 // about 2 MB of listConfig: a buffer of the large pool
	fillConfigs(t, m, n)
	first := call(t, m, "listConfig", "")
	for id := 1; id <= n-10; id++ {
		if out := m.execute(nil, "removeConfig", "params="+b64("id="+strconv.Itoa(id))); !strings.Contains(string(out), `"SUCCESS"`) {
			t.Fatalf("removeConfig %d: %s", id, out)
		}
	}
	second := call(t, m, "listConfig", "")
	if len(second.Raw) >= len(first.Raw)/10 {
		t.Fatalf("listConfig of 10 configs is %d bytes, of %d it was %d", len(second.Raw), n, len(first.Raw))
	}
	var env struct {
		Data struct {
			Pull []struct {
				ConfigID uint64 `json:"configId"`
			} `json:"pull"`
		} `json:"data"`
	}
	if err := json.Unmarshal([]byte(second.Raw), &env); err != nil {
		t.Fatalf("second listConfig: %v", err)
	}
	if len(env.Data.Pull) != 10 || env.Data.Pull[0].ConfigID != n-9 || env.Data.Pull[9].ConfigID != n {
		t.Errorf("second listConfig has %d entries, want configIds %d to %d", len(env.Data.Pull), n-9, n)
	}
}

// BenchmarkEvents measures how fast a member delivers a burst of events to
// a sink that answers at once and to one that never answers.
func BenchmarkEvents(b *testing.B) {
	for _, silent := range []bool{false, true} {
		b.Run(fmt.Sprintf("silent=%t", silent), func(b *testing.B) {
			var url string
			var got func() int
			if silent {
				s := newSilentSink(b)
				url = s.URL()
				got = func() int { s.mu.Lock(); defer s.mu.Unlock(); return len(s.names) }
			} else {
				var n atomic.Int64
				srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					_, _ = io.Copy(io.Discard, r.Body)
					n.Add(1)
				}))
				b.Cleanup(srv.Close)
				url = srv.URL + "/evowebservices/"
				got = func() int { return int(n.Load()) }
			}
			c, err := Start(Config{IP: RandomLoopbackIPs(1)[0], APIPort: testPort, EventsURL: url})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { c.Close() })
			m := c.Members()[0]
			start := time.Now()
			if _, err := m.PublishMany("e", b.N); err != nil {
				b.Fatal(err)
			}
			for got() < b.N {
				if time.Since(start) > time.Minute {
					b.Fatalf("%d of %d events arrived in a minute", got(), b.N)
				}
				time.Sleep(time.Millisecond)
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
		})
	}
}
