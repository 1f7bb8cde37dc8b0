package bench

import (
	"math"
	"slices"
	"strconv"
	"strings"
)

// The parts of an event's propagation, from the balancer's own histograms
// over the ack scenario: the confirmation of the announced stream on its
// origin, a replica's wait in its member's queue, and the pullStream call.
// Means and 99th percentiles (the upper bound of the histogram bucket that
// holds it).
type breakdown struct {
	ConfirmMS, ConfirmP99MS Millis
	QueueMS, QueueP99MS     Millis
	PullMS, PullP99MS       Millis
}

func readBreakdown(ms map[string]float64) breakdown {
	part := func(name string, labels ...string) (mean, p99 Millis) {
		n := sumMetric(ms, name+"_count", labels...)
		if n == 0 {
			return 0, 0
		}
		return Millis(sumMetric(ms, name+"_sum", labels...) / n * 1000), Millis(histQuantile(ms, name, 0.99, labels...) * 1000)
	}
	var b breakdown
	b.ConfirmMS, b.ConfirmP99MS = part("streamlb_confirm_duration_seconds")
	b.QueueMS, b.QueueP99MS = part("streamlb_workqueue_queue_duration_seconds")
	b.PullMS, b.PullP99MS = part("streamlb_ems_call_duration_seconds", `command="pullStream"`)
	return b
}

// since returns the counters of ms less those of an earlier scrape, before:
// what a window between the two scrapes added. Series absent from before
// count from 0.
func since(ms, before map[string]float64) map[string]float64 {
	out := make(map[string]float64, len(ms))
	for k, v := range ms {
		out[k] = v - before[k]
	}
	return out
}

// histQuantile returns the upper bound of the bucket of histogram name
// (summed over the series whose labels contain labels) that holds
// quantile q; the last finite bound when q is past it.
func histQuantile(ms map[string]float64, name string, q float64, labels ...string) float64 {
	counts := map[float64]float64{}
	for k, v := range ms {
		rest, ok := strings.CutPrefix(k, name+"_bucket{")
		if !ok {
			continue
		}
		all := true
		for _, l := range labels {
			all = all && strings.Contains(rest, l)
		}
		i := strings.Index(rest, `le="`)
		if !all || i < 0 {
			continue
		}
		le := rest[i+4:]
		le = le[:strings.IndexByte(le, '"')]
		bound, err := strconv.ParseFloat(le, 64)
		if err != nil {
			continue
		}
		counts[bound] += v
	}
	bounds := make([]float64, 0, len(counts))
	for b := range counts {
		bounds = append(bounds, b)
	}
	slices.Sort(bounds)
	if len(bounds) == 0 {
		return 0
	}
	total := counts[bounds[len(bounds)-1]] // cumulative: the +Inf bucket
	last := 0.0
	for _, b := range bounds {
		if math.IsInf(b, 1) {
			break
		}
		last = b
		if counts[b] >= q*total {
			return b
		}
	}
	return last
}
