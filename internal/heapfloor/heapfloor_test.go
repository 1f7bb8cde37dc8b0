package heapfloor

import (
	"os"
	"runtime"
	"runtime/metrics"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const mib = 1 << 20

func TestPercent(t *testing.T) {
	for _, c := range []struct {
		name        string
		live, floor uint64
		base, want  int
	}{
		{"before the first cycle: the runtime's minimum reaches the floor", 0, 64 * mib, 100, 1600},
		{"a small heap: its goal is the floor", 8 * mib, 64 * mib, 100, 700},
		{"below the runtime's minimum: the minimum reaches the floor first", 2 * mib, 64 * mib, 100, 1600},
		{"at half the floor GOGC reaches it", 32 * mib, 64 * mib, 100, 100},
		{"a large heap keeps GOGC", 200 * mib, 64 * mib, 100, 100},
		{"a higher GOGC is kept where it gives more", 16 * mib, 64 * mib, 400, 400},
		{"a lower GOGC is raised to the floor", 16 * mib, 64 * mib, 50, 300},
	} {
		if got := Percent(c.live, c.floor, c.base); got != c.want {
			t.Errorf("%s: Percent(%d MiB, %d MiB, %d) = %d, want %d", c.name, c.live/mib, c.floor/mib, c.base, got, c.want)
		}
	}
}

// read returns the current value of each runtime metric named.
func read(names ...string) []uint64 {
	s := make([]metrics.Sample, len(names))
	for i, n := range names {
		s[i].Name = n
	}
	metrics.Read(s)
	out := make([]uint64, len(s))
	for i := range s {
		out[i] = s[i].Value.Uint64()
	}
	return out
}

var sink []byte

// churn allocates total bytes of garbage in 64 KiB pieces.
func churn(total int) {
	for range total / (64 << 10) {
		sink = make([]byte, 64<<10)
	}
	sink = nil
}

// TestFloorHoldsTheGoalAndCutsCycles checks that, with a floor, the
// collector's goal for a small heap is the floor and the same garbage
// costs a fraction of the cycles, and that stopping restores GOGC.
func TestFloorHoldsTheGoalAndCutsCycles(t *testing.T) {
	if testing.Short() {
		t.Skip("allocates 512 MiB")
	}
	if os.Getenv("GOGC") != "" {
		t.Skip("GOGC is set: the floor stays off")
	}
	const floor = 64 * mib
	const garbage = 256 * mib
	runtime.GC()
	before := read("/gc/cycles/total:gc-cycles")[0]
	churn(garbage)
	plain := read("/gc/cycles/total:gc-cycles")[0] - before

	stop, ok := Start(floor)
	if !ok {
		t.Fatal("Start(64 MiB) did not start")
	}
	defer stop()
	// The goal moves once a cycle's cleanup has run. The cleanup's next
	// sentinel may be made while a cycle marks, and then outlives it: a
	// cycle is asked for on each try.
	deadline := time.Now().Add(10 * time.Second)
	var goal uint64
	for {
		runtime.GC()
		goal = read("/gc/heap/goal:bytes")[0]
		if goal >= floor*9/10 || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	if goal < floor*9/10 || goal > floor*11/10 {
		t.Errorf("goal with the floor: %d MiB, want about %d MiB", goal/mib, floor/mib)
	}
	before = read("/gc/cycles/total:gc-cycles")[0]
	churn(garbage)
	floored := read("/gc/cycles/total:gc-cycles")[0] - before
	t.Logf("cycles for %d MiB of garbage: %d at GOGC=100, %d with a %d MiB floor", garbage/mib, plain, floored, floor/mib)
	if floored > garbage/floor+2 || floored*4 > plain {
		t.Errorf("cycles with the floor: %d, want at most %d and a quarter of the %d without", floored, garbage/floor+2, plain)
	}

	// A live heap above half the floor is collected at GOGC=100 again,
	// from the next cycle.
	held := make([][]byte, 48)
	for i := range held {
		held[i] = make([]byte, mib)
	}
	deadline = time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		runtime.GC()
		if read("/gc/gogc:percent")[0] == 100 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	if p := read("/gc/gogc:percent")[0]; p != 100 {
		t.Errorf("GOGC with 48 MiB live and a 64 MiB floor: %d, want 100", p)
	}
	runtime.KeepAlive(held)

	stop()
	if p := read("/gc/gogc:percent")[0]; p != 100 {
		t.Errorf("GOGC after stop: %d, want 100", p)
	}
}

func TestGOGCInTheEnvironmentIsKept(t *testing.T) {
	t.Setenv("GOGC", "100")
	stop, ok := Start(64 * mib)
	defer stop()
	if ok {
		t.Error("Start with GOGC set: started, want the operator's GOGC kept")
	}
	if p := read("/gc/gogc:percent")[0]; p != 100 {
		t.Errorf("GOGC: %d, want 100", p)
	}
}

func TestNoFloorNoTuning(t *testing.T) {
	stop, ok := Start(0)
	defer stop()
	if ok {
		t.Error("Start(0): started, want nothing done")
	}
}
