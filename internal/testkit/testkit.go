// Package testkit holds the small helpers several packages' tests share: a
// log buffer safe for concurrent use and a sum over a Prometheus counter
// family. It is imported by tests only.
package testkit

import (
	"bytes"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// Buffer is a bytes.Buffer safe for concurrent writers (a log handler, a
// child process's output) and a reading test.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// String returns everything written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// CounterSum sums the counters of family in reg whose labels include every
// pair in match (nil matches all).
func CounterSum(reg prometheus.Gatherer, family string, match map[string]string) (float64, error) {
	mfs, err := reg.Gather()
	if err != nil {
		return 0, err
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != family {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			labels := make(map[string]string, len(m.GetLabel()))
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			for k, v := range match {
				if labels[k] != v {
					continue metrics
				}
			}
			sum += m.GetCounter().GetValue()
		}
	}
	return sum, nil
}
