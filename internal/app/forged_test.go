package app

import (
	"fmt"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"streamlb/internal/testkit"
)

// TestForgedEventsHoldNothing posts stream events whose payload.ip is a
// 100 KB string, each different, from a peer that is no member, as an
// outsider who can reach the sink may: each is answered 200, and once the
// controller has handled them all, neither the heap nor the log has kept
// them.
func TestForgedEventsHoldNothing(t *testing.T) {
	const (
		events  = 200
		ipBytes = 100 << 10
	)
	a, logs := newSinkApp(t, "127.0.0.1:0", ``, nil)
	url := "http://" + a.Addr() + "/evowebservices/"
	handled := func() float64 {
		n, err := testkit.CounterSum(a.Registry(), "streamlb_stream_events_total", nil)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	start := handled()

	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	logBefore := len(logs.String())
	filler := strings.Repeat("9", ipBytes)
	for i := range events {
		body := fmt.Sprintf(`{"type":"inStreamCreated","payload":{"name":"forged-%d","ip":"%d%s","connectionType":0}}`, i, i, filler)
		if code, _ := postFrom(t, url, "127.0.0.2", body); code != http.StatusOK {
			t.Fatalf("forged event %d: %d, want 200 (acknowledged)", i, code)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for handled()-start < events {
		if time.Now().After(deadline) {
			t.Fatalf("the controller handled %v of %d events", handled()-start, events)
		}
		time.Sleep(10 * time.Millisecond)
	}
	var after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)

	posted := events * ipBytes
	held := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	if held > 4<<20 {
		t.Errorf("heap grew by %d bytes after %d events carrying %d bytes of payload.ip, want at most 4 MiB", held, events, posted)
	}
	logged := len(logs.String()) - logBefore
	if logged > 16<<10 {
		t.Errorf("%d bytes of log for %d forged events, want at most 16 KiB:\n%.2000s", logged, events, logs.String()[logBefore:])
	}
	if bad, _ := testkit.CounterSum(a.Registry(), "streamlb_events_invalid_ip_total", nil); bad != events {
		t.Errorf("streamlb_events_invalid_ip_total = %v, want %d", bad, events)
	}
	t.Logf("%d events, %d bytes of payload.ip: heap %+d bytes after GC, %d bytes of log", events, posted, held, logged)
}
