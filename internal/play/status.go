package play

import (
	"maps"
	"net/http"
	"slices"
	"time"
)

// MemberLoad is one member in the load document.
type MemberLoad struct {
	Name     string `json:"name"`
	Playable bool   `json:"playable"`
	// Eligible reports whether players may be sent there (given it holds
	// the stream, is up and not paused); Why says why not.
	Eligible bool   `json:"eligible"`
	Why      string `json:"why,omitempty"`
	// Viewers counts players by protocol, replica pulls left out.
	Viewers        map[string]int `json:"viewers"`
	ViewersTotal   int            `json:"viewers_total"`
	ReplicaPulls   int            `json:"replica_pulls"`
	PendingViewers float64        `json:"pending_viewers"`
	// OutMbps is EMS's outbound bandwidth reading; EstimatedOutMbps adds
	// HLS sessions and the pending players.
	OutMbps          float64 `json:"out_mbps"`
	EstimatedOutMbps float64 `json:"estimated_out_mbps"`
	MaxViewers       int     `json:"max_viewers"`
	CapacityMbps     float64 `json:"capacity_mbps"`
	Utilization      float64 `json:"utilization"`
	// SampleAgeS is the age of the latest sample in seconds, -1 without
	// one.
	SampleAgeS float64 `json:"sample_age_s"`
	LastError  string  `json:"last_error,omitempty"`
}

// StreamLoad is one stream in the load document.
type StreamLoad struct {
	Name    string   `json:"name"`
	Holders []string `json:"holders"`
	// Viewers counts the stream's RTMP, RTSP and other network players
	// per member (HLS sessions are counted per member only).
	Viewers      map[string]int `json:"viewers"`
	ViewersTotal int            `json:"viewers_total"`
}

// LoadDoc is the answer of GET /api/v1/load.
type LoadDoc struct {
	At      time.Time    `json:"at"`
	Members []MemberLoad `json:"members"`
	Streams []StreamLoad `json:"streams"`
}

// Load returns the load document: every member's latest sample as
// decisions see it now, and every stream a sample lists with its holders
// and players. It changes nothing.
func (s *Service) Load() LoadDoc {
	s.mu.Lock()
	now := s.now()
	p := s.params(now)
	doc := LoadDoc{At: now, Members: make([]MemberLoad, 0, len(s.members)), Streams: []StreamLoad{}}
	perStream := map[string]map[string]int{}
	for _, ms := range s.members {
		t := ms.target
		l := Assess(t, p)
		ml := MemberLoad{
			Name: t.Name, Playable: t.Placement.Playable, Eligible: l.Eligible, Why: l.Why,
			Viewers: map[string]int{}, PendingViewers: t.Pending.Viewers,
			EstimatedOutMbps: l.OutBps / 1e6, MaxViewers: l.MaxViewers, CapacityMbps: l.CapacityBps / 1e6,
			Utilization: l.Utilization, SampleAgeS: -1, LastError: ms.lastErr,
		}
		for _, proto := range protocols {
			ml.Viewers[proto] = 0
		}
		if smp := t.Sample; smp != nil {
			maps.Copy(ml.Viewers, smp.Viewers)
			ml.ViewersTotal = smp.TotalViewers()
			ml.ReplicaPulls = smp.ReplicaPulls
			ml.OutMbps = smp.OutBps / 1e6
			ml.SampleAgeS = l.Age.Seconds()
			for name, n := range smp.Streams {
				if perStream[name] == nil {
					perStream[name] = map[string]int{}
				}
				perStream[name][t.Name] = n
			}
		}
		doc.Members = append(doc.Members, ml)
	}
	s.mu.Unlock()
	// Holders takes the controller's lock: not under ours.
	for _, name := range slices.Sorted(maps.Keys(perStream)) {
		sl := StreamLoad{Name: name, Holders: s.holders.Holders(name), Viewers: perStream[name]}
		if sl.Holders == nil {
			sl.Holders = []string{}
		}
		for _, n := range sl.Viewers {
			sl.ViewersTotal += n
		}
		doc.Streams = append(doc.Streams, sl)
	}
	return doc
}

// LoadHandler serves GET /api/v1/load: the load document as JSON.
func (s *Service) LoadHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		writeJSON(w, http.StatusOK, s.Load())
	})
}
