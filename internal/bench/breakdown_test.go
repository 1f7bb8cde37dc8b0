package bench

import "testing"

func TestReadBreakdown(t *testing.T) {
	ms := map[string]float64{
		`streamlb_confirm_duration_seconds_bucket{le="0.001"}`: 50,
		`streamlb_confirm_duration_seconds_bucket{le="0.002"}`: 98,
		`streamlb_confirm_duration_seconds_bucket{le="0.004"}`: 100,
		`streamlb_confirm_duration_seconds_bucket{le="+Inf"}`:  100,
		`streamlb_confirm_duration_seconds_sum`:                0.15,
		`streamlb_confirm_duration_seconds_count`:              100,
		// pullStream on two members, and another command left out.
		`streamlb_ems_call_duration_seconds_bucket{command="pullStream",member="m1",le="0.01"}`: 9,
		`streamlb_ems_call_duration_seconds_bucket{command="pullStream",member="m1",le="+Inf"}`: 10,
		`streamlb_ems_call_duration_seconds_bucket{command="pullStream",member="m2",le="0.01"}`: 10,
		`streamlb_ems_call_duration_seconds_bucket{command="pullStream",member="m2",le="+Inf"}`: 10,
		`streamlb_ems_call_duration_seconds_bucket{command="listConfig",member="m1",le="0.01"}`: 0,
		`streamlb_ems_call_duration_seconds_bucket{command="listConfig",member="m1",le="+Inf"}`: 5,
		`streamlb_ems_call_duration_seconds_sum{command="pullStream",member="m1"}`:              0.05,
		`streamlb_ems_call_duration_seconds_count{command="pullStream",member="m1"}`:            10,
		`streamlb_ems_call_duration_seconds_sum{command="pullStream",member="m2"}`:              0.03,
		`streamlb_ems_call_duration_seconds_count{command="pullStream",member="m2"}`:            10,
		`streamlb_ems_call_duration_seconds_sum{command="listConfig",member="m1"}`:              9,
		`streamlb_ems_call_duration_seconds_count{command="listConfig",member="m1"}`:            5,
	}
	b := readBreakdown(ms)
	if b.ConfirmMS != 1.5 || b.ConfirmP99MS != 4 {
		t.Errorf("confirm: mean %v p99 %v, want 1.5 and 4", b.ConfirmMS, b.ConfirmP99MS)
	}
	if b.PullMS != 4 || b.PullP99MS != 10 {
		// 19 of 20 pulls within 10 ms: the 99th percentile is past the
		// last finite bound, which is reported.
		t.Errorf("pull: mean %v p99 %v, want 4 and 10", b.PullMS, b.PullP99MS)
	}
	if b.QueueMS != 0 || b.QueueP99MS != 0 {
		t.Errorf("queue without series: %v %v, want 0", b.QueueMS, b.QueueP99MS)
	}
}

func TestSinceCountsTheWindowOnly(t *testing.T) {
	before := map[string]float64{
		`h_bucket{le="0.001"}`: 10, `h_bucket{le="0.01"}`: 10, `h_bucket{le="+Inf"}`: 10, "h_count": 10, "h_sum": 0.005,
	}
	after := map[string]float64{
		`h_bucket{le="0.001"}`: 10, `h_bucket{le="0.01"}`: 14, `h_bucket{le="+Inf"}`: 14, "h_count": 14, "h_sum": 0.025,
		"new_total": 3,
	}
	got := since(after, before)
	if got["h_count"] != 4 || got["new_total"] != 3 {
		t.Errorf("since counted %v and %v, want 4 and 3", got["h_count"], got["new_total"])
	}
	// All four of the window's observations are past 1 ms, where ten of
	// the whole run's fourteen are not.
	if q := histQuantile(got, "h", 0.5); q != 0.01 {
		t.Errorf("the window's median bucket = %v, want 0.01 (the run's was 0.001)", q)
	}
	if q := histQuantile(after, "h", 0.5); q != 0.001 {
		t.Errorf("the whole run's median bucket = %v, want 0.001", q)
	}
}
