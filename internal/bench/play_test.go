package bench

import (
	"context"
	"testing"
	"time"
)

// TestPlayScenarioMeetsItsTargets runs the play scenario's measurements
// (in-process, on a simulated clock except the decision rate) and holds
// them to the targets BENCHMARKS.md states.
func TestPlayScenarioMeetsItsTargets(t *testing.T) {
	ratio, err := playBalance()
	if err != nil {
		t.Fatal(err)
	}
	if ratio > 1.3 {
		t.Errorf("balance of 8 equal members: max/min share %.3f, want ≤ 1.3", ratio)
	}
	share, most, err := playIdle()
	if err != nil {
		t.Fatal(err)
	}
	if !most {
		t.Errorf("the idle member's share %.3f is not the largest", share)
	}
	herd, err := playHerd()
	if err != nil {
		t.Fatal(err)
	}
	if herd > 2 {
		t.Errorf("a member got %.3f × its fair share in a one-second window, want ≤ 2", herd)
	}
	rate, err := playDecisionRate(context.Background(), 200*time.Millisecond)
	if err != nil || rate <= 0 {
		t.Errorf("decision rate %v, %v", rate, err)
	}
	t.Logf("balance %.3f, idle share %.3f, herd %.3f, %.0f decisions/s", ratio, share, herd, rate)
}
