package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"time"

	"streamlb/internal/config"
	"streamlb/internal/play"
)

// The play scenario measures viewer placement in-process: the decision
// code and the GET /play/{stream} handler of internal/play, driven with
// synthetic load samples on a simulated clock (no EMS, no sockets). A
// player sent to a member shows in that member's samples connectDelay
// after its answer, as a real player would after connecting.

const (
	playStream       = "cam"
	playConnectDelay = time.Second
	playPoll         = time.Second
	playStale        = 3 * time.Second
)

// playHolders is a fixed holders list.
type playHolders []string

func (h playHolders) Holders(string) []string { return h }

// playSim is one simulated group behind a play Service.
type playSim struct {
	svc      *play.Service
	h        http.Handler
	now      time.Time
	names    []string
	base     map[string]int         // players before the run
	arrivals map[string][]time.Time // when each player sent there connects
	frozen   map[string]bool        // members whose sampling stopped
	lastPoll time.Time
	clients  int
}

// newPlaySim returns n members each allowing maxViewers, member i having
// base(i) players; stale is the play block's stale_after.
func newPlaySim(n, maxViewers int, base func(i int) int, stale time.Duration, now func() time.Time) (*playSim, error) {
	s := &playSim{now: time.Unix(1_800_000_000, 0), base: map[string]int{}, arrivals: map[string][]time.Time{}, frozen: map[string]bool{}}
	var members []play.Member
	for i := range n {
		name := fmt.Sprintf("m%02d", i+1)
		s.names = append(s.names, name)
		s.base[name] = base(i)
		pl := config.Placement{PlayHost: fmt.Sprintf("10.0.%d.%d", i/250, 1+i%250), RTMPPort: 1935, RTSPPort: 5544, HTTPPort: 8888,
			MaxViewers: maxViewers, Weight: 1, Playable: true}
		members = append(members, play.Member{Name: name, Address: pl.PlayHost, Placement: pl})
	}
	if now == nil {
		now = func() time.Time { return s.now }
	}
	cfg := &config.Play{Listen: "127.0.0.1:0", PollInterval: playPoll, StaleAfter: stale, HighWater: config.DefaultPlayHighWater,
		StickyTTL: config.DefaultPlayStickyTTL, DefaultStreamBitrate: config.DefaultPlayStreamBitrate}
	svc, err := play.New(play.Options{Config: cfg, Members: members, Holders: playHolders(s.names), Now: now})
	if err != nil {
		return nil, err
	}
	s.svc, s.h = svc, svc.PlayHandler()
	s.sampleAll()
	return s, nil
}

// sampleAll gives every member that is not frozen a fresh sample: its
// base players and those sent there that have connected by now.
func (s *playSim) sampleAll() {
	for _, name := range s.names {
		if s.frozen[name] {
			continue
		}
		n := s.base[name]
		for _, at := range s.arrivals[name] {
			if !at.After(s.now) {
				n++
			}
		}
		s.svc.SetSample(name, &play.Sample{At: s.now, Viewers: map[string]int{play.ProtocolRTMP: n}, Streams: map[string]int{playStream: n}})
	}
	s.lastPoll = s.now
}

// advance moves the clock, sampling at every poll interval crossed.
func (s *playSim) advance(d time.Duration) {
	end := s.now.Add(d)
	for next := s.lastPoll.Add(playPoll); !next.After(end); next = s.lastPoll.Add(playPoll) {
		s.now = next
		s.sampleAll()
	}
	s.now = end
}

// request asks for the stream as a new client and returns the member
// chosen.
func (s *playSim) request(w *playWriter, r *http.Request) (string, error) {
	s.nextClient(r)
	w.reset()
	s.h.ServeHTTP(w, r)
	if w.Code != http.StatusOK {
		return "", fmt.Errorf("GET /play/%s: status %d: %s", playStream, w.Code, w.Body.String())
	}
	var a play.Answer
	if err := json.Unmarshal(w.Body.Bytes(), &a); err != nil {
		return "", err
	}
	s.arrivals[a.Member] = append(s.arrivals[a.Member], s.now.Add(playConnectDelay))
	return a.Member, nil
}

// playWriter is a reusable http.ResponseWriter keeping the status and
// body of the last answer.
type playWriter struct {
	h    http.Header
	Code int
	Body bytes.Buffer
}

func (w *playWriter) Header() http.Header         { return w.h }
func (w *playWriter) WriteHeader(code int)        { w.Code = code }
func (w *playWriter) Write(b []byte) (int, error) { return w.Body.Write(b) }

// reset readies w for the next answer.
func (w *playWriter) reset() {
	clear(w.h)
	w.Code = http.StatusOK
	w.Body.Reset()
}

// nextClient makes r come from a new client address.
func (s *playSim) nextClient(r *http.Request) {
	s.clients++
	r.RemoteAddr = "10." + strconv.Itoa(s.clients>>16&255) + "." + strconv.Itoa(s.clients>>8&255) + "." + strconv.Itoa(s.clients&255) + ":40000"
}

func newPlayRequest() (*playWriter, *http.Request) {
	return &playWriter{h: http.Header{}}, httptest.NewRequest(http.MethodGet, "/play/"+playStream, nil)
}

// playDecisionRate returns the play requests per second one goroutine
// gets answered with 16 members holding the stream, over about d.
func playDecisionRate(ctx context.Context, d time.Duration) (float64, error) {
	s, err := newPlaySim(16, 1_000_000, func(i int) int { return 100 * i }, time.Hour, time.Now)
	if err != nil {
		return 0, err
	}
	s.now = time.Now()
	s.sampleAll()
	w, r := newPlayRequest()
	start := time.Now()
	n := 0
	for time.Since(start) < d && ctx.Err() == nil {
		for range 1000 {
			s.nextClient(r)
			w.reset()
			s.h.ServeHTTP(w, r)
			if w.Code != http.StatusOK {
				return 0, fmt.Errorf("status %d: %s", w.Code, w.Body.String())
			}
		}
		n += 1000
	}
	return float64(n) / time.Since(start).Seconds(), ctx.Err()
}

// playRun sends requests at perSecond on the simulated clock for total
// requests, calling each(i) before request i, and returns the member of
// each answer with its simulated time.
func (s *playSim) run(total, perSecond int, each func(i int)) ([]string, []time.Time, error) {
	w, r := newPlayRequest()
	step := time.Second / time.Duration(perSecond)
	members := make([]string, 0, total)
	times := make([]time.Time, 0, total)
	for i := range total {
		if each != nil {
			each(i)
		}
		m, err := s.request(w, r)
		if err != nil {
			return nil, nil, err
		}
		members = append(members, m)
		times = append(times, s.now)
		s.advance(step)
	}
	return members, times, nil
}

// playBalance returns max/min of the shares of 8 members at equal load
// over 10,000 players from distinct clients.
func playBalance() (float64, error) {
	s, err := newPlaySim(8, 10_000, func(int) int { return 500 }, playStale, nil)
	if err != nil {
		return 0, err
	}
	members, _, err := s.run(10_000, 1000, nil)
	if err != nil {
		return 0, err
	}
	counts := map[string]int{}
	for _, m := range members {
		counts[m]++
	}
	lo, hi := len(members), 0
	for _, name := range s.names {
		lo, hi = min(lo, counts[name]), max(hi, counts[name])
	}
	if lo == 0 {
		return 0, fmt.Errorf("a member got no player: %v", counts)
	}
	return float64(hi) / float64(lo), nil
}

// playIdle sends 1,000 players to 8 members, one idle and the others at
// 25% of their maxViewers; it returns the idle member's share and
// whether it got the most.
func playIdle() (float64, bool, error) {
	s, err := newPlaySim(8, 200, func(i int) int { return min(i, 1) * 50 }, playStale, nil)
	if err != nil {
		return 0, false, err
	}
	members, _, err := s.run(1000, 1000, nil)
	if err != nil {
		return 0, false, err
	}
	counts := map[string]int{}
	for _, m := range members {
		counts[m]++
	}
	idle := counts[s.names[0]]
	most := true
	for _, name := range s.names[1:] {
		if counts[name] >= idle {
			most = false
		}
	}
	return float64(idle) / float64(len(members)), most, nil
}

// playHerd runs 8 members at equal load for 12 simulated seconds at 500
// players per second; at 4 s the first member's sampling stops (its API
// fails), so its last sample misses the players sent there since and
// looks lighter and lighter than the others' until it goes stale at 7 s.
// It returns the largest share of any member in any one-second window,
// as a multiple of its fair share (one over the members eligible in that
// window).
func playHerd() (float64, error) {
	s, err := newPlaySim(8, 2000, func(int) int { return 500 }, playStale, nil)
	if err != nil {
		return 0, err
	}
	const perSecond, seconds = 500, 12
	victim := s.names[0]
	members, times, err := s.run(perSecond*seconds, perSecond, func(i int) {
		if i == 4*perSecond {
			s.frozen[victim] = true
		}
	})
	if err != nil {
		return 0, err
	}
	start := times[0]
	worst := 0.0
	for sec := range seconds {
		counts := map[string]int{}
		total := 0
		from, to := start.Add(time.Duration(sec)*time.Second), start.Add(time.Duration(sec+1)*time.Second)
		for i, at := range times {
			if !at.Before(from) && at.Before(to) {
				counts[members[i]]++
				total++
			}
		}
		eligible := len(s.names)
		if stale := start.Add(4*time.Second + playStale); !from.Before(stale) {
			eligible--
		}
		for _, name := range s.names {
			worst = max(worst, float64(counts[name])/float64(total)*float64(eligible))
		}
	}
	return worst, nil
}

// play runs the play scenario.
func (r *runner) play(ctx context.Context) error {
	r.progress("play: decisions per second, 16 members, one goroutine, in-process")
	rate, err := playDecisionRate(ctx, 2*time.Second)
	if err != nil {
		return fmt.Errorf("decision rate: %w", err)
	}
	r.res.PlayDecisionsPerS = Rate(rate)
	r.progress("play: balance of 8 equal members over 10,000 players")
	ratio, err := playBalance()
	if err != nil {
		return fmt.Errorf("balance: %w", err)
	}
	r.res.PlayShareMaxMin = Rate(ratio)
	r.progress("play: one idle member among seven at 25%%")
	share, most, err := playIdle()
	if err != nil {
		return fmt.Errorf("idle member: %w", err)
	}
	r.res.PlayIdleShare, r.res.PlayIdleGetsMost = Rate(share), most
	r.progress("play: a member's sample goes stale mid-run")
	herd, err := playHerd()
	if err != nil {
		return fmt.Errorf("herd: %w", err)
	}
	r.res.PlayHerdMaxShare = Rate(herd)
	return nil
}
