package play

import (
	"time"

	"streamlb/internal/controller"
)

// CopyWanter is told when a play request finds no holder of its stream
// below high water, so that replication on demand can add a copy.
// *controller.Controller satisfies it; Holders that do not are not told.
type CopyWanter interface {
	WantCopy(name string)
}

var _ CopyWanter = (*controller.Controller)(nil)

// SampleFunc receives each fresh load sample of a member, as replication
// on demand reads it: its time, the member's utilization by that sample
// alone (without the pending estimate), and its players per stream, where
// the member's HLS sessions, which EMS does not count per stream, count
// for every stream it lists (so that no copy an HLS player may use looks
// unwatched). viewers must not be changed.
type SampleFunc func(member string, at time.Time, utilization float64, viewers map[string]int)

// notify hands a fresh sample of ms to the Options.OnSample hook, outside
// the Service's lock.
func (s *Service) notify(ms *memberState, smp *Sample) {
	if s.onSample == nil {
		return
	}
	s.mu.Lock()
	u := Assess(&Target{Placement: ms.target.Placement, Sample: smp}, s.params(smp.At)).Utilization
	s.mu.Unlock()
	viewers := smp.copyViewers
	if viewers == nil {
		viewers = smp.Streams
	}
	s.onSample(ms.m.Name, smp.At, u, viewers)
}
