package emsim

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

const (
	// remoteFetchPeriod is how often a member in another process is asked
	// for the streams it serves while some pull depends on it.
	remoteFetchPeriod = time.Second
	// remoteIdle is how long a remote member stays watched after the last
	// pull that needed it.
	remoteIdle = 5 * time.Second
	// remoteTimeout bounds one media-plane check.
	remoteTimeout = 2 * time.Second
)

// remoteSet watches members in other processes: one watcher per address,
// each asking the member's media plane (GET /_emsim/media, which API faults
// do not touch) once per second while some pull of this Cluster depends on
// it.
type remoteSet struct {
	c      *Cluster
	client *http.Client

	mu    sync.Mutex
	hosts map[string]*remoteHost
}

type remoteHost struct {
	known   bool      // a first answer (or failure) is in
	ok      bool      // the last call succeeded
	fetched time.Time // when the last call started
	names   map[string]struct{}
	wanted  time.Time
}

func newRemoteSet(c *Cluster) *remoteSet {
	tr := &http.Transport{
		Proxy:                 nil,
		DialContext:           (&net.Dialer{Timeout: remoteTimeout}).DialContext,
		DisableKeepAlives:     true,
		ResponseHeaderTimeout: remoteTimeout,
	}
	return &remoteSet{
		c:      c,
		client: &http.Client{Transport: tr, Timeout: remoteTimeout},
		hosts:  make(map[string]*remoteHost),
	}
}

// lookup reports the availability of names on the remote member at host,
// from the last answer; availUnknown until an answer to a call started at
// or after since is in.
func (s *remoteSet) lookup(host string, names []string, since time.Time) []avail {
	out := make([]avail, len(names))
	s.mu.Lock()
	defer s.mu.Unlock()
	h := s.hosts[host]
	if h == nil {
		if s.c.ctx.Err() != nil {
			return out
		}
		h = &remoteHost{}
		s.hosts[host] = h
		s.c.wg.Add(1)
		go func() {
			defer s.c.wg.Done()
			s.watch(s.c.ctx, host, h)
		}()
	}
	h.wanted = time.Now()
	if !h.known || h.fetched.Before(since) {
		return out
	}
	for i, n := range names {
		out[i] = availNo
		if _, ok := h.names[n]; ok && h.ok {
			out[i] = availYes
		}
	}
	return out
}

// watch polls host until ctx is done or no pull needed it for remoteIdle.
func (s *remoteSet) watch(ctx context.Context, host string, h *remoteHost) {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		started := time.Now()
		names, err := s.fetch(ctx, host)
		s.mu.Lock()
		h.known = true
		h.ok = err == nil
		h.fetched = started
		h.names = names
		idle := time.Since(h.wanted) > remoteIdle
		if idle {
			delete(s.hosts, host)
		}
		s.mu.Unlock()
		if err != nil && ctx.Err() == nil {
			s.c.log.Debug("upstream member unreachable", "upstream", host, "err", err)
		}
		if idle {
			return
		}
		s.c.upstreamChanged()
		t.Reset(remoteFetchPeriod)
	}
}

// fetch asks the member at host which streams it serves, telling it which
// of them this Cluster's members pull (so that it lists them as outbound
// streams).
func (s *remoteSet) fetch(ctx context.Context, host string) (map[string]struct{}, error) {
	ctx, cancel := context.WithTimeout(ctx, remoteTimeout)
	defer cancel()
	url := "http://" + net.JoinHostPort(host, itoa(s.c.cfg.APIPort)) + "/_emsim/media"
	report, err := json.Marshal(mediaReport{Cluster: s.c.id, Pulls: s.c.pullsOf(host)})
	if err != nil {
		return nil, fmt.Errorf("check media of %s: %w", host, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(report))
	if err != nil {
		return nil, fmt.Errorf("check media of %s: %w", host, err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("check media of %s: %w", host, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("check media of %s: HTTP %d", host, resp.StatusCode)
	}
	var body struct {
		Streams []string `json:"streams"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(&body); err != nil {
		return nil, fmt.Errorf("check media of %s: decode: %w", host, err)
	}
	names := make(map[string]struct{}, len(body.Streams))
	for _, n := range body.Streams {
		names[n] = struct{}{}
	}
	return names, nil
}

// mediaReport is the body of POST /_emsim/media: the pulls the members of
// one Cluster make of the member asked.
type mediaReport struct {
	Cluster string       `json:"cluster"`
	Pulls   []reportPull `json:"pulls"`
}

// reportPull is one pull of a mediaReport.
type reportPull struct {
	From      string `json:"from"`      // the puller's address
	ConfigID  uint64 `json:"config_id"` // its configuration
	Name      string `json:"name"`      // the stream pulled
	UserAgent string `json:"user_agent"`
}

// pullsOf returns the streaming pulls c's members make of streams of the
// member at host.
func (c *Cluster) pullsOf(host string) []reportPull {
	var out []reportPull
	for _, m := range c.members {
		m.mu.Lock()
		for ref, set := range m.bySource {
			if ref.host != host {
				continue
			}
			for pc := range set {
				out = append(out, reportPull{From: m.ip, ConfigID: pc.set.ConfigID, Name: ref.name, UserAgent: pc.set.EmulateUserAgent})
			}
		}
		m.mu.Unlock()
	}
	return out
}
