package app

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"golang.org/x/time/rate"

	"streamlb/internal/config"
	"streamlb/internal/inflight"
	"streamlb/internal/receiver"
)

// Caps on the requests one listener serves at once, in all and from one
// peer address: a client holding requests open (sending its body slowly)
// cannot take every slot, and the members, each posting from its own
// address, are still answered.
//
// On the event sink's listener the members' addresses are trusted: EMS
// posts every event on a new connection, never retries and does not wait
// for the answer before posting the next, so in a burst (an origin creating
// thousands of streams while every member pulls each of them) one member
// has hundreds of events in flight, and a 503 is an event lost for good.
// A member is therefore bounded by the total alone; when every slot is in
// use its request waits up to memberWait for one, ahead of any request
// that comes later, instead of being refused. Every other peer keeps its
// share of maxInflightPerPeer, and all of them together leave
// memberReserve slots to the members. allowed_sources already says who may
// post at all.
const (
	maxInflight        = 512
	maxInflightPerPeer = 64
	memberReserve      = maxInflight / 4
	memberWait         = 5 * time.Second
)

// Names of the listeners, the listener label of the HTTP metrics.
const (
	listenerSink  = "sink"  // listen: the event sink, and the admin routes without admin_listen
	listenerAdmin = "admin" // admin_listen
)

// refusalWarnInterval is how often each listener may log a refusal at
// warn level; the others are counted and logged at debug level.
const refusalWarnInterval = 10 * time.Second

// httpMetrics are the metrics of the listeners' concurrency caps.
type httpMetrics struct {
	refused *prometheus.CounterVec // listener, reason
	waited  *prometheus.CounterVec // listener
}

// Values of the reason label of streamlb_http_requests_refused_total.
const (
	reasonPeer       = "peer"        // the peer's share (maxInflightPerPeer) was in use
	reasonNonMembers = "non_members" // the slots open to peers that are not members were in use
	reasonTotal      = "total"       // every slot was in use (for a member: still, after memberWait)
)

func newHTTPMetrics(reg prometheus.Registerer) *httpMetrics {
	m := &httpMetrics{
		refused: promauto.With(reg).NewCounterVec(prometheus.CounterOpts{
			Name: "streamlb_http_requests_refused_total",
			Help: "Requests answered 503 because too many were in flight on the listener (sink, admin): " +
				"reason peer (the peer's share of 64 was in use), non_members (the slots open to peers " +
				"that are not members were in use) or total (every slot was in use; for a member, still after waiting 5s).",
		}, []string{"listener", "reason"}),
		waited: promauto.With(reg).NewCounterVec(prometheus.CounterOpts{
			Name: "streamlb_http_requests_waited_total",
			Help: "Requests from members that found every slot of the listener in use and waited for one.",
		}, []string{"listener"}),
	}
	for _, r := range []string{reasonPeer, reasonNonMembers, reasonTotal} {
		m.refused.WithLabelValues(listenerSink, r)
	}
	m.waited.WithLabelValues(listenerSink)
	return m
}

// limitConcurrency answers 503 (with Retry-After) to a request beyond what
// lim allows, counting and logging each refusal. A trusted peer's request
// that finds every slot in use waits up to wait for one first.
func limitConcurrency(h http.Handler, lim *inflight.Limiter, wait time.Duration, listener string, m *httpMetrics, log *slog.Logger) http.Handler {
	warn := rate.NewLimiter(rate.Every(refusalWarnInterval), 1)
	var quiet atomic.Int64 // refusals logged at debug level since the last warning
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		peer := peerKey(r.RemoteAddr)
		release, err := lim.TryAcquire(peer)
		if errors.Is(err, inflight.ErrTotal) && lim.Trusted(peer) {
			m.waited.WithLabelValues(listener).Inc()
			ctx, cancel := context.WithTimeout(r.Context(), wait)
			release, err = lim.Wait(ctx, peer)
			cancel()
		}
		if err != nil {
			reason := reasonTotal
			switch {
			case errors.Is(err, inflight.ErrPeer):
				reason = reasonPeer
			case errors.Is(err, inflight.ErrOthers):
				reason = reasonNonMembers
			}
			m.refused.WithLabelValues(listener, reason).Inc()
			if warn.Allow() {
				log.Warn("request refused: too many requests in flight (503); from a member, an event is lost until the next resync",
					"listener", listener, "reason", reason, "peer", peer, "member", lim.Trusted(peer),
					"refused_since_last_warning", quiet.Swap(0)+1)
			} else {
				quiet.Add(1)
				log.Debug("request refused: too many requests in flight (503)", "listener", listener, "reason", reason, "peer", peer)
			}
			w.Header().Set("Retry-After", "1")
			http.Error(w, "too many requests in flight", http.StatusServiceUnavailable)
			return
		}
		defer release()
		h.ServeHTTP(w, r)
	})
}

// peerKey returns the address of a request's RemoteAddr in the form
// memberPeers writes the members' (receiver.PeerAddr).
func peerKey(remote string) string { return receiver.PeerAddr(remote).String() }

// memberPeers returns the addresses members post events from: each
// member's address when it is an IP address (a host name is not resolved,
// as the origin of an event is not), and for the host member of a sidecar
// also the address of its API, which the local EMS posts from.
func memberPeers(cfg *config.Config) []string {
	var peers []string
	add := func(host string) {
		if a, err := netip.ParseAddr(host); err == nil {
			peers = append(peers, a.Unmap().WithZone("").String())
		}
	}
	for _, m := range cfg.Members {
		add(m.Address)
		if m.IsHost {
			if u, err := url.Parse(m.Endpoint.BaseURL); err == nil {
				add(u.Hostname())
			}
		}
	}
	return peers
}

// trustMembers makes the members of cfg the sink listener's trusted peers,
// with memberReserve slots kept for them (none when no member has an IP
// address).
func trustMembers(lim *inflight.Limiter, cfg *config.Config) {
	peers := memberPeers(cfg)
	reserve := memberReserve
	if len(peers) == 0 {
		reserve = 0
	}
	lim.SetTrusted(peers, reserve)
}
