package testkit

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestCounterSumMatchesLabels(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "x_total", Help: "x"}, []string{"a", "b"})
	reg.MustRegister(c)
	c.WithLabelValues("1", "p").Add(2)
	c.WithLabelValues("1", "q").Add(3)
	c.WithLabelValues("2", "p").Add(5)
	for _, tc := range []struct {
		match map[string]string
		want  float64
	}{
		{nil, 10},
		{map[string]string{"a": "1"}, 5},
		{map[string]string{"a": "1", "b": "p"}, 2},
		{map[string]string{"b": "none"}, 0},
	} {
		got, err := CounterSum(reg, "x_total", tc.match)
		if err != nil || got != tc.want {
			t.Errorf("CounterSum(%v) = %v, %v; want %v", tc.match, got, err, tc.want)
		}
	}
	if got, _ := CounterSum(reg, "other_total", nil); got != 0 {
		t.Errorf("CounterSum of an absent family = %v", got)
	}
}

func TestBufferConcurrentWrites(t *testing.T) {
	var b Buffer
	done := make(chan struct{})
	for range 4 {
		go func() {
			for range 100 {
				_, _ = b.Write([]byte("x"))
			}
			done <- struct{}{}
		}()
	}
	for range 4 {
		<-done
	}
	if n := len(b.String()); n != 400 {
		t.Errorf("buffer holds %d bytes, want 400", n)
	}
}
