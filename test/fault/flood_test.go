package fault

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Sizes of the forged floods sent while a member is down.
const (
	floodDownNames = 1000      // unique names claiming the down member
	floodBigEvents = 50        // events with a huge payload.ip each
	floodBigIP     = 400 << 10 // bytes of each huge payload.ip
	// maxFloodHeap bounds the heap the floods may leave in the test
	// process (both balancers), after GC; maxFloodLog the log they may
	// add.
	maxFloodHeap = 16 << 20
	maxFloodLog  = 256 << 10
)

// floodFigures are what the floods sent while a member was down cost.
type floodFigures struct {
	Member        string  `json:"member"`
	Events        int64   `json:"events_answered_200"`
	Refused       int64   `json:"events_not_answered_200"`
	NamesSeconds  float64 `json:"unique_names_seconds"`
	BigSeconds    float64 `json:"big_ip_seconds"`
	HeapBeforeMiB float64 `json:"heap_before_mib"`
	HeapAfterMiB  float64 `json:"heap_after_mib"`
	HeapPeakMiB   float64 `json:"heap_peak_mib_sampled"`
	LogBytes      int64   `json:"log_bytes_added"`
}

// floodWhileDown takes member i down (API, events and media), and while
// it is down posts to every running balancer floodDownNames forged
// inStreamCreated events for unique names claiming it as their origin,
// then floodBigEvents events whose payload.ip is floodBigIP bytes long.
// It measures the heap after GC and the log the balancers wrote, checks
// that the replicas of the member's live sources stayed, and brings the
// member back.
func (r *runner) floodWhileDown(i int, logPath string) (floodFigures, error) {
	m := r.members[i]
	fig := floodFigures{Member: m.name}
	r.count[faultFloodDown]++
	r.openFault(i)
	ow := r.openWindow(i, faultFloodDown)
	if err := m.setFaults(faults{down: true}); err != nil {
		return fig, err
	}
	// Every running balancer has seen it down before the floods.
	deadline := time.Now().Add(resyncInterval + 2*callTimeout + time.Second)
	for {
		var up []string
		for _, b := range r.balancers {
			if st, ok := b.memberState(m.name); ok && st != "down" {
				up = append(up, b.name+": "+st)
			}
		}
		if len(up) == 0 {
			break
		}
		if time.Now().After(deadline) {
			return fig, fmt.Errorf("member %s is down, but the balancers' status says %s", m.name, strings.Join(up, ", "))
		}
		time.Sleep(50 * time.Millisecond)
	}
	var urls []string
	for _, b := range r.balancers {
		b.mu.Lock()
		if b.app != nil {
			urls = append(urls, "http://"+b.app.Addr()+"/evowebservices/")
		}
		b.mu.Unlock()
	}
	logBefore := fileSize(logPath)
	heapBefore := heapInUse()
	var peak atomic.Uint64
	peak.Store(heapBefore)
	stopSampling := make(chan struct{})
	var sampler sync.WaitGroup
	sampler.Go(func() {
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stopSampling:
				return
			case <-tick.C:
				if h := heapNow(); h > peak.Load() {
					peak.Store(h)
				}
			}
		}
	})
	r.seq++
	tag := r.seq
	big := strings.Repeat("9", floodBigIP)
	start := time.Now()
	var ok, refused atomic.Int64
	post := func(n int, body func(k int) string) {
		var wg sync.WaitGroup
		for w := range floodWorkers {
			wg.Go(func() {
				for k := w; k < n; k += floodWorkers {
					b := body(k)
					for _, u := range urls {
						if err := forwardString(r.hc, u, b); err == nil {
							ok.Add(1)
						} else if _, is := errors.AsType[*statusError](err); is {
							refused.Add(1)
						}
					}
				}
			})
		}
		wg.Wait()
	}
	post(floodDownNames, func(k int) string {
		return fmt.Sprintf(`{"id":%d,"payload":{"name":"forged-down-%d-%d","ip":%q,"connectionType":0},"processId":1,"timestamp":1,"type":"inStreamCreated"}`, k, tag, k, m.ip)
	})
	fig.NamesSeconds = time.Since(start).Seconds()
	start = time.Now()
	post(floodBigEvents, func(k int) string {
		return fmt.Sprintf(`{"id":%d,"payload":{"name":"forged-big-%d-%d","ip":"%d.%s","connectionType":0},"processId":1,"timestamp":1,"type":"inStreamCreated"}`, k, tag, k, k, big)
	})
	fig.Events, fig.Refused = ok.Load(), refused.Load()
	if fig.Refused > 0 {
		r.t.Errorf("forged floods while %s was down: %d events answered with something other than 200", m.name, fig.Refused)
	}
	fig.BigSeconds = time.Since(start).Seconds()
	close(stopSampling)
	sampler.Wait()
	heapAfter := heapInUse()
	fig.HeapBeforeMiB, fig.HeapAfterMiB, fig.HeapPeakMiB = mib(heapBefore), mib(heapAfter), mib(peak.Load())
	fig.LogBytes = fileSize(logPath) - logBefore
	if heapAfter > heapBefore+maxFloodHeap {
		r.t.Errorf("forged floods while %s was down: heap after GC went from %.1f MiB to %.1f MiB; want at most %d MiB more", m.name, mib(heapBefore), mib(heapAfter), maxFloodHeap>>20)
	}
	if fig.LogBytes > maxFloodLog {
		r.t.Errorf("forged floods while %s was down added %d bytes to the balancers' log; want at most %d", m.name, fig.LogBytes, maxFloodLog)
	}
	r.closeWindowOf(ow)
	err := m.setFaults(faults{})
	r.closeFault(i)
	return fig, err
}

func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}
