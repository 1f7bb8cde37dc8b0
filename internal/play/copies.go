package play

import (
	"streamlb/internal/controller"
)

var _ controller.LoadView = (*Service)(nil)

// CopyWanter is told when a play request finds no holder of its stream
// below high water, so that replication on demand can add a copy.
// *controller.Controller satisfies it; Holders that do not are not told.
type CopyWanter interface {
	WantCopy(name string)
}

var _ CopyWanter = (*controller.Controller)(nil)

// MemberLoad returns member's two latest load samples as demand copies
// read them (controller.LoadView): their utilization (without the pending
// estimate) and their players per stream, where a member's HLS sessions,
// which EMS does not count per stream, count for every stream it lists.
// ok is false while the member has no fresh sample. Safe for concurrent
// use; it takes the Service's lock, never the controller's.
func (s *Service) MemberLoad(member string) (controller.MemberLoad, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.targets[member]
	if !ok || t.Sample == nil {
		return controller.MemberLoad{}, false
	}
	p := s.params(s.now())
	if p.Now.Sub(t.Sample.At) > p.StaleAfter {
		return controller.MemberLoad{}, false
	}
	l := controller.MemberLoad{At: t.Sample.At, Utilization: [2]float64{-1, -1}}
	for i, smp := range [2]*Sample{t.Sample, t.Prev} {
		if smp == nil {
			break
		}
		l.Utilization[i] = Assess(&Target{Placement: t.Placement, Sample: smp}, p).Utilization
		l.Viewers[i] = smp.copyViewers
		if l.Viewers[i] == nil {
			l.Viewers[i] = smp.Streams
		}
	}
	return l, true
}
