package play

import (
	"time"

	"streamlb/internal/config"
)

// Rand is a decision's source of randomness. *math/rand/v2.Rand satisfies
// it.
type Rand interface {
	// Float64 returns a number in [0, 1).
	Float64() float64
}

// Sample is one reading of a member's load. It is never changed once
// made.
type Sample struct {
	// At is when the reading finished.
	At time.Time
	// Viewers counts players by protocol (ProtocolRTMP, ProtocolRTSP,
	// ProtocolHLS, ProtocolOther); replica pulls are not players.
	Viewers map[string]int
	// ReplicaPulls counts the outbound streams that are other members'
	// pulls.
	ReplicaPulls int
	// Streams maps each stream the member lists (inbound, or played) to
	// its RTMP, RTSP and other network players. HLS sessions are not
	// counted per stream.
	Streams map[string]int
	// Bitrates holds the bitrate, in bits per second, of the inbound
	// streams whose EMS reports one (EMS 2.0); nil when none does.
	Bitrates map[string]float64
	// OutBps is the outbound bandwidth EMS measured (getBandwidth
	// current.out), in bits per second; HLS and DASH are not in it.
	OutBps float64
	// MaxOutBps is EMS's outbound bandwidth limit in bits per second; 0:
	// none.
	MaxOutBps float64
	// ConnLimit is EMS's connection limit; 0: none or not read yet.
	ConnLimit int

	// copyViewers is Streams as demand copies read it (see
	// Service.MemberLoad); nil: Streams itself.
	copyViewers map[string]int
}

// TotalViewers returns the players of every protocol.
func (s *Sample) TotalViewers() int {
	n := 0
	for _, v := range s.Viewers {
		n += v
	}
	return n
}

// Pending is what the answers given since the member's last samples are
// expected to add to its load, before its players show up in a sample.
type Pending struct {
	Viewers float64
	Bps     float64
}

// pendingDecay is what is kept of Pending at each fresh sample: the
// players sent just before a sample may connect only after it.
const pendingDecay = 0.5

// Target is what a decision knows of one member: its placement settings,
// its latest sample (nil when none succeeded yet) and its pending load.
type Target struct {
	Name      string
	Placement config.Placement
	Sample    *Sample
	Pending   Pending
}

// Params are a decision's settings and clock.
type Params struct {
	Now        time.Time
	StaleAfter time.Duration
	HighWater  float64
	// Bitrate is the bits per second one player of the stream is assumed
	// to take; it also prices each HLS session, which EMS's bandwidth
	// reading leaves out.
	Bitrate float64
}

// Reasons a member is not eligible, as Load.Why gives them.
const (
	WhyNotPlayable = "not_playable"
	WhyNoSample    = "no_sample"
	WhyStale       = "stale"
	WhyFull        = "full"
)

// Load is a member's load as decisions see it.
type Load struct {
	// Viewers are the sampled players plus the pending ones.
	Viewers float64
	// OutBps is the estimated outbound bandwidth: EMS's reading, HLS
	// sessions at the bitrate, and the pending estimate.
	OutBps float64
	// MaxViewers and CapacityBps are the limits used (from the config,
	// else from EMS); 0: none.
	MaxViewers  int
	CapacityBps float64
	// Utilization is max(Viewers/MaxViewers, OutBps/CapacityBps) over the
	// terms with a limit; 0 when there is none.
	Utilization float64
	// Age is the sample's age; 0 without a sample.
	Age time.Duration
	// Eligible reports whether players may be sent there now; Why says
	// why not.
	Eligible bool
	Why      string
}

// Assess returns t's load at p.Now. A member is eligible when playable,
// sampled within p.StaleAfter and below a utilization of 1; whether it is
// up, not paused and holds the stream is the holders list's business.
func Assess(t *Target, p Params) Load {
	var l Load
	l.MaxViewers = t.Placement.MaxViewers
	l.CapacityBps = t.Placement.CapacityOutMbps * 1e6
	l.Viewers = t.Pending.Viewers
	l.OutBps = t.Pending.Bps
	if s := t.Sample; s != nil {
		l.Age = p.Now.Sub(s.At)
		l.Viewers += float64(s.TotalViewers())
		l.OutBps += s.OutBps + float64(s.Viewers[ProtocolHLS])*p.Bitrate
		if l.MaxViewers == 0 {
			l.MaxViewers = s.ConnLimit
		}
		if l.CapacityBps == 0 {
			l.CapacityBps = s.MaxOutBps
		}
	}
	if l.MaxViewers > 0 {
		l.Utilization = l.Viewers / float64(l.MaxViewers)
	}
	if l.CapacityBps > 0 {
		l.Utilization = max(l.Utilization, l.OutBps/l.CapacityBps)
	}
	switch {
	case !t.Placement.Playable:
		l.Why = WhyNotPlayable
	case t.Sample == nil:
		l.Why = WhyNoSample
	case l.Age > p.StaleAfter:
		l.Why = WhyStale
	case l.Utilization >= 1:
		l.Why = WhyFull
	default:
		l.Eligible = true
	}
	return l
}

// Decision is the member chosen for one play request.
type Decision struct {
	// Member is the chosen member's name; "" when no holder is eligible.
	Member string
	// Sticky reports that the client's previous member was kept.
	Sticky bool
}

// minHeadroom keeps a nearly full member drawable.
const minHeadroom = 0.05

// Choose picks the member for one player of a stream held by holders.
// sticky, when not "", is the member the client was given before: it is
// kept while it holds the stream and is eligible. Otherwise, among the
// eligible holders below p.HighWater (or every eligible holder when none
// is below), two are drawn at random, weighted by their weight and their
// headroom (1 - utilization), and the less utilized wins (on a tie, the
// one with fewer viewers, else the first drawn): no herding on a stale
// reading, no ties to the first server. Holders without a target are not
// eligible. Choose is a pure function of its arguments and rnd's draws.
func Choose(holders []string, targets map[string]*Target, p Params, sticky string, rnd Rand) Decision {
	type cand struct {
		name   string
		load   Load
		weight float64
	}
	var buf [16]cand
	all := buf[:0]
	for _, h := range holders {
		t, ok := targets[h]
		if !ok {
			continue
		}
		l := Assess(t, p)
		if !l.Eligible {
			continue
		}
		if h == sticky {
			return Decision{Member: h, Sticky: true}
		}
		w := t.Placement.Weight
		if w <= 0 {
			w = config.DefaultPlacementWeight
		}
		all = append(all, cand{name: h, load: l, weight: w * max(1-l.Utilization, minHeadroom)})
	}
	pool := all[:0:0]
	for _, c := range all {
		if c.load.Utilization < p.HighWater {
			pool = append(pool, c)
		}
	}
	if len(pool) == 0 {
		pool = all
	}
	switch len(pool) {
	case 0:
		return Decision{}
	case 1:
		return Decision{Member: pool[0].name}
	}
	total := 0.0
	for _, c := range pool {
		total += c.weight
	}
	draw := func(skip int) int {
		sum := total
		if skip >= 0 {
			sum -= pool[skip].weight
		}
		x := rnd.Float64() * sum
		last := -1
		for i, c := range pool {
			if i == skip {
				continue
			}
			last = i
			if x < c.weight {
				return i
			}
			x -= c.weight
		}
		return last // rounding
	}
	a := draw(-1)
	b := draw(a)
	ca, cb := pool[a], pool[b]
	if cb.load.Utilization < ca.load.Utilization || cb.load.Utilization == ca.load.Utilization && cb.load.Viewers < ca.load.Viewers {
		return Decision{Member: cb.name}
	}
	return Decision{Member: ca.name}
}
