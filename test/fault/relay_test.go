package fault

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// relay is the event sink the members post to. It forwards every event
// to each running balancer, from the posting member's own address (so the
// balancer sees the same peer as it would in production), and loses a
// share of them while the lost-events fault is on.
type relay struct {
	ln   net.Listener
	srv  *http.Server
	done chan struct{}
	url  string

	mu       sync.Mutex
	targets  map[string]string // balancer name → sink URL
	dropRate float64
	rng      *rand.Rand
	clients  map[netip.Addr]*http.Client

	received, forwarded, dropped atomic.Int64
}

func newRelay() (*relay, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r := &relay{
		ln:      ln,
		done:    make(chan struct{}),
		url:     "http://" + ln.Addr().String() + "/evowebservices/",
		targets: make(map[string]string),
		rng:     rand.New(rand.NewPCG(1, 2)),
		clients: make(map[netip.Addr]*http.Client),
	}
	r.srv = &http.Server{Handler: r, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		defer close(r.done)
		_ = r.srv.Serve(ln)
	}()
	return r, nil
}

func (r *relay) close() {
	_ = r.srv.Close()
	<-r.done
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range r.clients {
		c.CloseIdleConnections()
	}
}

// setTarget makes the relay forward to url under name; "" removes it.
func (r *relay) setTarget(name, url string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if url == "" {
		delete(r.targets, name)
	} else {
		r.targets[name] = url
	}
}

// setDropRate sets the share of events lost, from 0 to 1.
func (r *relay) setDropRate(p float64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.dropRate = p
}

func (r *relay) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(io.LimitReader(req.Body, 1<<20))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	r.received.Add(1)
	peer := netip.Addr{}
	if ap, err := netip.ParseAddrPort(req.RemoteAddr); err == nil {
		peer = ap.Addr().Unmap()
	}
	r.mu.Lock()
	drop := r.dropRate > 0 && r.rng.Float64() < r.dropRate
	var urls []string
	for _, u := range r.targets {
		urls = append(urls, u)
	}
	client := r.clientLocked(peer)
	r.mu.Unlock()
	if drop {
		r.dropped.Add(1)
		w.WriteHeader(http.StatusOK)
		return
	}
	var wg sync.WaitGroup
	for _, u := range urls {
		wg.Go(func() {
			if forward(req.Context(), client, u, body) == nil {
				r.forwarded.Add(1)
			}
		})
	}
	wg.Wait()
	w.WriteHeader(http.StatusOK)
}

// clientLocked returns the client that posts from peer's address.
func (r *relay) clientLocked(peer netip.Addr) *http.Client {
	if c := r.clients[peer]; c != nil {
		return c
	}
	d := &net.Dialer{Timeout: 2 * time.Second}
	if peer.IsValid() {
		d.LocalAddr = &net.TCPAddr{IP: net.IP(peer.AsSlice())}
	}
	c := &http.Client{
		Timeout:   2 * time.Second,
		Transport: &http.Transport{Proxy: nil, DialContext: d.DialContext, DisableKeepAlives: true},
	}
	r.clients[peer] = c
	return c
}

func forward(ctx context.Context, c *http.Client, url string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return &statusError{resp.StatusCode}
	}
	return nil
}

// statusError is an answer other than 200.
type statusError struct{ code int }

func (e *statusError) Error() string { return http.StatusText(e.code) }
