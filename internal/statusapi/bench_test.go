package statusapi

import (
	"encoding/json"
	"fmt"
	"io"
	"testing"
	"time"

	"streamlb/internal/controller"
)

// bigStatus is a converged group of streams × members, every replica
// present.
func bigStatus(streams, members int) controller.Status {
	st := controller.Status{Converged: true, State: "converged", Conflicts: []controller.Conflict{}}
	for i := range members {
		st.Members = append(st.Members, member(fmt.Sprintf("m%02d", i+1), fmt.Sprintf("127.0.0.%d", i+1), "direct", controller.MemberUp))
	}
	since := time.Date(2025, 3, 14, 9, 30, 0, 0, time.UTC)
	for i := range streams {
		s := controller.StreamStatus{Name: fmt.Sprintf("burst-%d", i), Origin: "m01", Replicas: map[string]controller.ReplicaStatus{}}
		for _, m := range st.Members[1:] {
			s.Replicas[m.Name] = controller.ReplicaStatus{State: controller.StatePresent, Since: since}
		}
		st.Streams = append(st.Streams, s)
	}
	return st
}

// BenchmarkStatusEncode measures the encoding of a whole status document
// of 10,000 streams × 16 members, as GET /api/v1/status writes it: the
// part of a full read that is not the controller's.
func BenchmarkStatusEncode(b *testing.B) {
	st := bigStatus(10000, 16)
	b.ReportAllocs()
	var n int
	for b.Loop() {
		w := &countingWriter{}
		if err := json.NewEncoder(w).Encode(st); err != nil {
			b.Fatal(err)
		}
		n = w.n
	}
	b.ReportMetric(float64(n), "bytes")
}

type countingWriter struct{ n int }

func (w *countingWriter) Write(p []byte) (int, error) {
	w.n += len(p)
	return io.Discard.Write(p)
}
