package controller

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"streamlb/internal/ems"
)

// metrics are the controller's Prometheus series. Gauges that describe the
// group are computed from the snapshot at scrape time by groupCollector.
type metrics struct {
	calls          *prometheus.CounterVec
	callErrors     *prometheus.CounterVec
	callDuration   *prometheus.HistogramVec
	events         *prometheus.CounterVec
	pulls          prometheus.Counter
	removals       prometheus.Counter
	retries        prometheus.Counter
	sourcesSeen    prometheus.Counter
	workDuration   prometheus.Histogram
	queueDuration  prometheus.Histogram
	adds           prometheus.Counter
	resyncDuration prometheus.Histogram
	confirmWait    prometheus.Histogram
	skipped        *prometheus.CounterVec
	demandAdded    prometheus.Counter
	demandRemoved  prometheus.Counter
	statusBuild    prometheus.Histogram
	statusLock     prometheus.Gauge
	resyncLock     prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer, c *Controller) *metrics {
	f := promauto.With(reg)
	m := &metrics{
		callErrors: f.NewCounterVec(prometheus.CounterOpts{
			Name: "streamlb_ems_call_errors_total",
			Help: "EMS API calls that failed, by member, command and why (transport, http_5xx, http_4xx, unauthorized, fail, decode, request).",
		}, []string{"member", "command", "reason"}),
		calls: f.NewCounterVec(prometheus.CounterOpts{
			Name: "streamlb_ems_calls_total",
			Help: "EMS API calls by member, command and result (ok, fail, unauthorized, error).",
		}, []string{"member", "command", "result"}),
		callDuration: f.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "streamlb_ems_call_duration_seconds",
			Help:    "EMS API call latency by member and command.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 10},
		}, []string{"member", "command"}),
		events: f.NewCounterVec(prometheus.CounterOpts{
			Name: "streamlb_stream_events_total",
			Help: "Stream events handled by the controller, by outcome (confirm, replica, restart, unknown_origin, dropped).",
		}, []string{"outcome"}),
		demandAdded: f.NewCounter(prometheus.CounterOpts{
			Name: "streamlb_demand_copies_added_total",
			Help: "Copies added beyond min_copies because every holder was hot or a player found none below its high water (replication mode demand).",
		}),
		demandRemoved: f.NewCounter(prometheus.CounterOpts{
			Name: "streamlb_demand_copies_removed_total",
			Help: "Copies removed in replication mode demand: nobody watched them for two samples, or their member left the stream's set.",
		}),
		statusBuild: f.NewHistogram(prometheus.HistogramOpts{
			Name:    "streamlb_status_build_duration_seconds",
			Help:    "Time to build the status document's parts (rows recomputed where something changed).",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}),
		statusLock: f.NewGauge(prometheus.GaugeOpts{
			Name: "streamlb_status_build_lock_seconds",
			Help: "Longest hold of the controller's lock by the last status build.",
		}),
		resyncLock: f.NewGauge(prometheus.GaugeOpts{
			Name: "streamlb_resync_lock_seconds",
			Help: "Longest hold of the controller's lock by the last resync: applying one member's listing, or one chunk of the diff after the listings.",
		}),
		skipped: f.NewCounterVec(prometheus.CounterOpts{
			Name: "streamlb_listing_entries_skipped_total",
			Help: "listConfig entries that did not decode and were left out, by member.",
		}, []string{"member"}),
		pulls: f.NewCounter(prometheus.CounterOpts{
			Name: "streamlb_replica_pulls_total", Help: "Replica pulls that EMS accepted.",
		}),
		removals: f.NewCounter(prometheus.CounterOpts{
			Name: "streamlb_replica_removals_total", Help: "Replica configs removed.",
		}),
		retries: f.NewCounter(prometheus.CounterOpts{
			Name: "streamlb_workqueue_retries_total", Help: "Replica work retried after a failure.",
		}),
		sourcesSeen: f.NewCounter(prometheus.CounterOpts{
			Name: "streamlb_sources_seen_total", Help: "Source streams discovered on their origins.",
		}),
		workDuration: f.NewHistogram(prometheus.HistogramOpts{
			Name:    "streamlb_workqueue_work_duration_seconds",
			Help:    "Time spent converging one replica, including its EMS call.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}),
		queueDuration: f.NewHistogram(prometheus.HistogramOpts{
			Name:    "streamlb_workqueue_queue_duration_seconds",
			Help:    "How long a replica waited in its member's queue before a worker took it.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 18),
		}),
		adds: f.NewCounter(prometheus.CounterOpts{
			Name: "streamlb_workqueue_adds_total", Help: "Replicas queued for work (repeated adds of a waiting replica count once).",
		}),
		resyncDuration: f.NewHistogram(prometheus.HistogramOpts{
			Name:    "streamlb_resync_duration_seconds",
			Help:    "Duration of a full resync (listing every member).",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 14),
		}),
		confirmWait: f.NewHistogram(prometheus.HistogramOpts{
			Name:    "streamlb_confirm_duration_seconds",
			Help:    "From a stream's announcement on its origin (an event, or a teardown's last look) to the end of the origin's listing that answers it.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}),
	}
	if reg != nil {
		reg.MustRegister(&groupCollector{c: c})
	}
	return m
}

func (m *metrics) observeCall(member, command string, d time.Duration, err error) {
	result, reason := "ok", ""
	if e, ok := errors.AsType[*ems.Error](err); ok {
		reason = e.Reason()
	} else if err != nil {
		reason = "other" // a context's end, say
	}
	switch reason {
	case "":
	case "unauthorized", "fail":
		result = reason
	default:
		result = "error"
	}
	m.calls.WithLabelValues(member, command, result).Inc()
	if reason != "" {
		m.callErrors.WithLabelValues(member, command, reason).Inc()
	}
	m.callDuration.WithLabelValues(member, command).Observe(d.Seconds())
}

var (
	descUp       = prometheus.NewDesc("streamlb_member_up", "1 when the member's API answers, 0 when it is down or unauthorized.", []string{"member"}, nil)
	descPaused   = prometheus.NewDesc("streamlb_member_paused", "1 while the member is paused for maintenance.", []string{"member"}, nil)
	descDepth    = prometheus.NewDesc("streamlb_workqueue_depth", "Replicas waiting for work, by member.", []string{"member"}, nil)
	descDesired  = prometheus.NewDesc("streamlb_replicas_desired", "Replicas the group should hold.", nil, nil)
	descActual   = prometheus.NewDesc("streamlb_replicas_present", "Desired replicas that are present.", nil, nil)
	descConflict = prometheus.NewDesc("streamlb_conflicts", "Stream names left alone because of a conflict.", nil, nil)
	descConv     = prometheus.NewDesc("streamlb_converged", "1 when every member is up and every desired replica on every member that is up and not paused is present.", nil, nil)
	descRate     = prometheus.NewDesc("streamlb_origin_pull_rate", "New replica pulls per second allowed from this member as origin (adaptive, under max_pulls_per_second); 0 when uncapped.", []string{"member"}, nil)
	descUnrepl   = prometheus.NewDesc("streamlb_unreplicable_streams", "Desired replicas of sources whose name cannot stand in an RTMP URI unchanged; never pulled.", nil, nil)
	descLag      = prometheus.NewDesc("streamlb_convergence_lag_seconds", "How long the oldest desired replica that is not present has been so; 0 when converged.", nil, nil)
)

// groupCollector reports the group's state, counted once per scrape.
type groupCollector struct{ c *Controller }

func (g *groupCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descUp, descPaused, descDepth, descRate, descDesired, descActual, descConflict, descUnrepl, descConv, descLag} {
		ch <- d
	}
}

func (g *groupCollector) Collect(ch chan<- prometheus.Metric) {
	c := g.c
	c.mu.Lock()
	for _, m := range c.members {
		ch <- prometheus.MustNewConstMetric(descUp, prometheus.GaugeValue, b2f(m.health.state == MemberUp), m.spec.Name)
		ch <- prometheus.MustNewConstMetric(descPaused, prometheus.GaugeValue, b2f(m.work.paused), m.spec.Name)
		ch <- prometheus.MustNewConstMetric(descDepth, prometheus.GaugeValue, float64(m.work.queue.Len()), m.spec.Name)
		ch <- prometheus.MustNewConstMetric(descRate, prometheus.GaugeValue, m.work.pulls.rate(), m.spec.Name)
	}
	c.mu.Unlock()
	// Counted from the status build: a scrape runs no plan for the rows
	// that did not change.
	b := c.rows.build(c)
	var desired, present, conflicts, unreplicable int
	for _, r := range b.rows {
		desired += r.counts.total()
		present += r.counts.present
		unreplicable += r.counts.unreplicable
		conflicts += len(r.conflicts)
	}
	ch <- prometheus.MustNewConstMetric(descLag, prometheus.GaugeValue, b.lag.Seconds())
	ch <- prometheus.MustNewConstMetric(descDesired, prometheus.GaugeValue, float64(desired))
	ch <- prometheus.MustNewConstMetric(descActual, prometheus.GaugeValue, float64(present))
	ch <- prometheus.MustNewConstMetric(descConflict, prometheus.GaugeValue, float64(conflicts))
	ch <- prometheus.MustNewConstMetric(descUnrepl, prometheus.GaugeValue, float64(unreplicable))
	ch <- prometheus.MustNewConstMetric(descConv, prometheus.GaugeValue, b2f(b.converged))
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
