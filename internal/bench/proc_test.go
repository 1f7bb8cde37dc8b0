package bench

import "testing"

// TestMachineCPUShares checks the shares of the CPUs' time a run reports:
// busy is what was neither idle nor stolen.
func TestMachineCPUShares(t *testing.T) {
	prev := machineCPU{total: 1000, idle: 600, steal: 10}
	for _, tc := range []struct {
		name        string
		now         machineCPU
		busy, steal Rate
	}{
		{"half busy, a tenth stolen", machineCPU{total: 1200, idle: 680, steal: 30}, 50, 10},
		{"all idle", machineCPU{total: 1100, idle: 700, steal: 10}, 0, 0},
		{"no time passed", prev, 0, 0},
	} {
		busy, steal := tc.now.since(prev)
		if busy != tc.busy || steal != tc.steal {
			t.Errorf("%s: busy %v%%, stolen %v%%, want %v%% and %v%%", tc.name, busy, steal, tc.busy, tc.steal)
		}
	}
}
