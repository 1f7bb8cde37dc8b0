package play

import (
	"encoding/json"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"golang.org/x/time/rate"

	"streamlb/internal/inflight"
)

// URLs are a member's player URLs for one stream.
type URLs struct {
	RTMP string `json:"rtmp"`
	RTSP string `json:"rtsp"`
	HLS  string `json:"hls"`
	DASH string `json:"dash"`
}

// Answer is the body of a 200 answer to GET /play/{stream}.
type Answer struct {
	Stream string `json:"stream"`
	Member string `json:"member"`
	URLs   URLs   `json:"urls"`
}

// Results of play requests, the label of streamlb_play_requests_total.
const (
	ResultChosen      = "chosen"
	ResultSticky      = "sticky"
	ResultNotFound    = "not_found"
	ResultUnavailable = "unavailable"
	ResultBadRequest  = "bad_request"
	// Refused by the listener's limits before any placement: a body too
	// large (413), a client address past its rate (429), too many
	// requests in flight in all or from the address (503).
	ResultTooLarge    = "too_large"
	ResultRateLimited = "rate_limited"
	ResultBusy        = "busy"
)

// maxStreamName bounds a stream name in a play request.
const maxStreamName = 256

// urlsFor returns the player URLs of stream name on a member: RTMP
// rtmp://HOST:PORT/APP/NAME, RTSP rtsp://HOST:PORT/NAME, HLS
// http://HOST:PORT/NAME/NAME/playlist.m3u8 and DASH
// http://HOST:PORT/NAME/manifest.mpd (EMS's HLS and DASH group name
// defaults to the stream's name).
func urlsFor(t *Target, appName, name string) URLs {
	pl := t.Placement
	seg := url.PathEscape(name)
	hostPort := func(port int) string { return net.JoinHostPort(pl.PlayHost, strconv.Itoa(port)) }
	return URLs{
		RTMP: "rtmp://" + hostPort(pl.RTMPPort) + "/" + appName + "/" + seg,
		RTSP: "rtsp://" + hostPort(pl.RTSPPort) + "/" + seg,
		HLS:  "http://" + hostPort(pl.HTTPPort) + "/" + seg + "/" + seg + "/playlist.m3u8",
		DASH: "http://" + hostPort(pl.HTTPPort) + "/" + seg + "/manifest.mpd",
	}
}

// validStreamName reports whether a requested name can be a stream's.
func validStreamName(name string) bool {
	if name == "" || len(name) > maxStreamName || !utf8.ValidString(name) {
		return false
	}
	return !strings.ContainsFunc(name, func(r rune) bool { return r < 0x20 || r == 0x7f })
}

// clientAddr returns the address a request came from.
func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// Place chooses the member for a player at client of stream name and
// counts it in that member's pending load. It returns the answer and
// the result (ResultChosen, ResultSticky, ResultNotFound,
// ResultUnavailable).
func (s *Service) Place(name, client string) (Answer, string) {
	holders := s.holders.Holders(name)
	ans, result, hot := s.place(name, client, holders)
	if hot {
		// Outside our lock: the controller takes its own.
		if cw, ok := s.holders.(CopyWanter); ok {
			cw.WantCopy(name)
		}
	}
	return ans, result
}

// place is Place under the lock, given the holders. hot reports that no
// holder was eligible below high water.
func (s *Service) place(name, client string, holders []string) (_ Answer, _ string, hot bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	if len(holders) == 0 {
		if s.listedLocked(name, now) {
			return Answer{}, ResultUnavailable, s.wantLocked(name, now)
		}
		return Answer{}, ResultNotFound, false
	}
	key := stickyKey{client: client, stream: name}
	stuck, _ := s.sticky.get(key, now)
	p := s.params(now)
	d := Choose(holders, s.targets, p, stuck, s.rnd)
	if d.Member == "" {
		return Answer{}, ResultUnavailable, s.wantLocked(name, now)
	}
	t := s.targets[d.Member]
	hot = !d.Sticky && Assess(t, p).Utilization >= p.HighWater && s.wantLocked(name, now)
	s.sticky.put(key, d.Member, now)
	result := ResultSticky
	if !d.Sticky {
		result = ResultChosen
		t.Pending.Viewers++
		t.Pending.Bps += s.bitrateLocked(name, holders)
	}
	return Answer{Stream: name, Member: d.Member, URLs: urlsFor(t, s.appName, name)}, result, hot
}

// Bounds of the copies asked for: at most one request per stream per
// wantEvery, and maxWants streams remembered.
const (
	wantEvery = time.Second
	maxWants  = 4096
)

// wantLocked reports whether a copy of name may be asked for now, and
// notes it.
func (s *Service) wantLocked(name string, now time.Time) bool {
	if at, ok := s.wants[name]; ok && now.Sub(at) < wantEvery {
		return false
	}
	if len(s.wants) >= maxWants {
		clear(s.wants)
	}
	s.wants[name] = now
	return true
}

// bitrateLocked returns the bitrate of stream name as a holder's sample
// reports it, else the configured default.
func (s *Service) bitrateLocked(name string, holders []string) float64 {
	for _, h := range holders {
		if t, ok := s.targets[h]; ok && t.Sample != nil {
			if b := t.Sample.Bitrates[name]; b > 0 {
				return b
			}
		}
	}
	return s.cfg.DefaultStreamBitrate
}

// listedLocked reports whether a fresh sample of any member lists stream
// name: it is live, though no member can serve it now.
func (s *Service) listedLocked(name string, now time.Time) bool {
	for _, t := range s.targets {
		if t.Sample == nil || now.Sub(t.Sample.At) > s.cfg.StaleAfter {
			continue
		}
		if _, ok := t.Sample.Streams[name]; ok {
			return true
		}
	}
	return false
}

// PlayHandler serves GET /play/{stream} and nothing else.
func (s *Service) PlayHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /play/{stream}", s.servePlay)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "not found: the only route is GET /play/{stream}")
	})
	return mux
}

func (s *Service) servePlay(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("stream")
	q := r.URL.Query()
	proto := q.Get("protocol")
	redirect := q.Get("redirect")
	bad := func(msg string) {
		s.metrics.requests.WithLabelValues(ResultBadRequest).Inc()
		writeError(w, http.StatusBadRequest, msg)
	}
	switch {
	case !validStreamName(name):
		bad("invalid stream name")
		return
	case !slices.Contains([]string{"", "rtmp", "rtsp", "hls", "dash"}, proto):
		bad("protocol: want rtmp, rtsp, hls or dash")
		return
	case redirect != "" && redirect != "0" && redirect != "1":
		bad("redirect: want 1 or 0")
		return
	case redirect == "1" && proto != "hls" && proto != "dash":
		bad("redirect=1 needs protocol=hls or protocol=dash")
		return
	}
	ans, result := s.Place(name, clientAddr(r))
	s.metrics.requests.WithLabelValues(result).Inc()
	w.Header().Set("Cache-Control", "no-store")
	switch result {
	case ResultNotFound:
		writeError(w, http.StatusNotFound, "stream not live on any member")
		return
	case ResultUnavailable:
		w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(s.cfg.PollInterval.Seconds()))))
		writeError(w, http.StatusServiceUnavailable, "no member can take a player of this stream now")
		return
	}
	if redirect == "1" {
		target := ans.URLs.HLS
		if proto == "dash" {
			target = ans.URLs.DASH
		}
		w.Header().Set("Location", target)
		w.WriteHeader(http.StatusTemporaryRedirect)
		return
	}
	writeJSON(w, http.StatusOK, ans)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_, _ = w.Write(append(b, '\n'))
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}

// Limits of the public play listener.
const (
	maxInflight        = 1024
	maxInflightPerPeer = 16
	maxHeaderBytes     = 16 << 10
	maxBodyBytes       = 1 << 10
	// A client address may ask peerRate requests per second, in bursts of
	// peerBurst; maxPeers addresses are tracked at once.
	peerRate  = 20
	peerBurst = 40
	maxPeers  = 100_000
)

// NewServer returns the public play listener's server: GET /play/{stream}
// only, with read, write and idle timeouts, small header and body limits,
// caps on requests in flight in all and per client address (503 with
// Retry-After beyond), and on requests per second per client address (429
// with Retry-After beyond). The caller binds it (Serve) and shuts it down.
func (s *Service) NewServer(log *slog.Logger) *http.Server {
	if log == nil {
		log = s.log
	}
	return &http.Server{
		Handler: limit(s.PlayHandler(), maxInflight, maxInflightPerPeer, newPeerRates(peerRate, peerBurst, maxPeers),
			func(result string) { s.metrics.requests.WithLabelValues(result).Inc() }),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      10 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
}

// peerRates keeps a token bucket per client address, for at most max
// addresses: past that, the buckets start afresh (a bound, not a hole: a
// client still gets no more than a burst at a time).
type peerRates struct {
	mu     sync.Mutex
	every  rate.Limit
	burst  int
	max    int
	bucket map[string]*rate.Limiter
}

func newPeerRates(perSecond float64, burst, max int) *peerRates {
	return &peerRates{every: rate.Limit(perSecond), burst: burst, max: max, bucket: map[string]*rate.Limiter{}}
}

// allow reports whether peer may make a request now.
func (p *peerRates) allow(peer string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	l, ok := p.bucket[peer]
	if !ok {
		if len(p.bucket) >= p.max {
			clear(p.bucket)
		}
		l = rate.NewLimiter(p.every, p.burst)
		p.bucket[peer] = l
	}
	return l.Allow()
}

// limit refuses bodies past maxBodyBytes (413), answers 429 to a client
// address past its rate, and 503 beyond total requests in flight, or
// beyond perPeer from one client address, telling refused which of those
// it answered (ResultTooLarge, ResultRateLimited, ResultBusy).
func limit(h http.Handler, total, perPeer int, rates *peerRates, refused func(result string)) http.Handler {
	lim := inflight.New(total, perPeer)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > maxBodyBytes {
			refused(ResultTooLarge)
			writeError(w, http.StatusRequestEntityTooLarge, "request body too large")
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxBodyBytes)
		peer := clientAddr(r)
		if !rates.allow(peer) {
			refused(ResultRateLimited)
			w.Header().Set("Retry-After", "1")
			writeError(w, http.StatusTooManyRequests, "too many requests from this address")
			return
		}
		release, ok := lim.Acquire(peer)
		if !ok {
			refused(ResultBusy)
			w.Header().Set("Retry-After", "1")
			writeError(w, http.StatusServiceUnavailable, "too many requests in flight")
			return
		}
		defer release()
		h.ServeHTTP(w, r)
	})
}
