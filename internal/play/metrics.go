package play

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// metrics are the play counters; the per-member gauges are computed from
// the samples at scrape time by loadCollector.
type metrics struct {
	requests *prometheus.CounterVec
	polls    *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer, s *Service) *metrics {
	f := promauto.With(reg)
	m := &metrics{
		requests: f.NewCounterVec(prometheus.CounterOpts{
			Name: "streamlb_play_requests_total",
			Help: "Play requests by result (chosen, sticky, not_found, unavailable, bad_request; refused by the listener's limits: too_large, rate_limited, busy).",
		}, []string{"result"}),
		polls: f.NewCounterVec(prometheus.CounterOpts{
			Name: "streamlb_play_polls_total",
			Help: "Load readings of members by member and result (ok, error).",
		}, []string{"member", "result"}),
	}
	for _, r := range []string{ResultChosen, ResultSticky, ResultNotFound, ResultUnavailable, ResultBadRequest, ResultTooLarge, ResultRateLimited, ResultBusy} {
		m.requests.WithLabelValues(r)
	}
	if reg != nil {
		reg.MustRegister(&loadCollector{s: s})
	}
	return m
}

var (
	descViewers = prometheus.NewDesc("streamlb_member_viewers",
		"Players on a member by protocol (rtmp, rtsp, hls, other) in its latest load sample, replica pulls left out.",
		[]string{"member", "protocol"}, nil)
	descOut = prometheus.NewDesc("streamlb_play_out_bits_per_second",
		"Outbound bandwidth of a member as EMS measured it (getBandwidth current.out), in bits per second.",
		[]string{"member"}, nil)
	descEstOut = prometheus.NewDesc("streamlb_play_estimated_out_bits_per_second",
		"Outbound bandwidth placement assumes for a member: EMS's reading, HLS sessions and pending players at the stream bitrate.",
		[]string{"member"}, nil)
	descUtil = prometheus.NewDesc("streamlb_play_utilization",
		"A member's utilization as placement computes it: max(viewers / max viewers, estimated out bandwidth / capacity); 1 is full.",
		[]string{"member"}, nil)
	descPending = prometheus.NewDesc("streamlb_play_pending_viewers",
		"Players sent to a member that its samples do not show yet (decayed at each fresh sample).",
		[]string{"member"}, nil)
	descAge = prometheus.NewDesc("streamlb_play_sample_age_seconds",
		"Age of a member's latest load sample; absent before the first.",
		[]string{"member"}, nil)
	descEligible = prometheus.NewDesc("streamlb_play_eligible",
		"1 when players may be sent to a member (playable, fresh sample, below full), else 0.",
		[]string{"member"}, nil)
	descSticky = prometheus.NewDesc("streamlb_play_sticky_entries",
		"(client, stream) pairs remembered for stickiness.", nil, nil)
)

// loadCollector reports the per-member gauges from the samples.
type loadCollector struct{ s *Service }

// Describe implements prometheus.Collector.
func (c *loadCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descViewers, descOut, descEstOut, descUtil, descPending, descAge, descEligible, descSticky} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *loadCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.s
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.params(s.now())
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	for _, ms := range s.members {
		t := ms.target
		name := t.Name
		l := Assess(t, p)
		eligible := 0.0
		if l.Eligible {
			eligible = 1
		}
		gauge(descEligible, eligible, name)
		gauge(descUtil, l.Utilization, name)
		gauge(descPending, t.Pending.Viewers, name)
		gauge(descEstOut, l.OutBps, name)
		if smp := t.Sample; smp != nil {
			for _, proto := range protocols {
				gauge(descViewers, float64(smp.Viewers[proto]), name, proto)
			}
			gauge(descOut, smp.OutBps, name)
			gauge(descAge, l.Age.Seconds(), name)
		}
	}
	gauge(descSticky, float64(s.sticky.len()))
}
