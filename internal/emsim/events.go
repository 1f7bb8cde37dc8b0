package emsim

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

const (
	// eventQueueSize bounds the events a member holds before dropping: EMS
	// sends each event on its own connection without a queue limit, so a
	// burst of thousands of streams must not lose events here.
	eventQueueSize = 1 << 18
	// eventTimeout bounds one event POST.
	eventTimeout = 2 * time.Second
	// eventPosters bounds the events of one member in flight at once, and
	// eventBacklog is the queue length from which more than one is: EMS
	// sends asynchronously, so a burst of events goes out together, while
	// events that come one at a time arrive in order.
	eventPosters = 8
	eventBacklog = 64
)

// eventSender posts one member's events to the RPC sink as EMS does: one
// new connection per event from the member's own address, Content-Type
// application/json, no retry, the answer drained and ignored. Events go out
// in order, one at a time, unless a backlog builds up.
type eventSender struct {
	m       *Member
	url     string
	client  *http.Client
	dropped atomic.Int64
	sent    atomic.Int64
	failed  atomic.Int64

	mu     sync.Mutex
	cond   *sync.Cond
	queue  [][]byte // events waiting, oldest first
	closed bool
}

func newEventSender(m *Member, url string) *eventSender {
	d := &net.Dialer{
		LocalAddr: &net.TCPAddr{IP: net.ParseIP(m.ip)},
		Timeout:   eventTimeout,
	}
	tr := &http.Transport{
		Proxy:                  nil,
		DialContext:            d.DialContext,
		DisableKeepAlives:      true,
		ResponseHeaderTimeout:  eventTimeout,
		MaxResponseHeaderBytes: 64 << 10,
	}
	e := &eventSender{
		m:      m,
		url:    url,
		client: &http.Client{Transport: tr, Timeout: eventTimeout},
	}
	e.cond = sync.NewCond(&e.mu)
	return e
}

// emitLocked queues an event about st unless events are off or m is down.
// The caller holds m.mu, so events of one member keep their order and come
// after the state change they describe.
func (m *Member) emitLocked(typ string, st *stream, now time.Time, view settingsView) {
	if m.ev == nil || m.faults.Down {
		return
	}
	m.eventID++
	payload := st.info(m, now, infoOpts{event: true, fresh: typ == "inStreamCreated", settings: view})
	env := jobj{
		{"id", m.eventID},
		{"payload", payload},
		{"processId", m.pid},
		{"timestamp", now.Unix()},
		{"type", typ},
	}
	m.ev.enqueue(appendJSON(make([]byte, 0, 2048), env))
}

// enqueue queues one event body, or drops it when the queue is full.
func (e *eventSender) enqueue(b []byte) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.queue) >= eventQueueSize {
		e.dropped.Add(1)
		return
	}
	e.queue = append(e.queue, b)
	if n := len(e.queue); n == 1 || n == eventBacklog {
		e.cond.Broadcast()
	}
}

// take waits for a queue of at least backlog events and removes the oldest;
// it returns nil once the sender is closed.
func (e *eventSender) take(backlog int) []byte {
	e.mu.Lock()
	defer e.mu.Unlock()
	for !e.closed && len(e.queue) < backlog {
		e.cond.Wait()
	}
	if e.closed {
		return nil
	}
	b := e.queue[0]
	e.queue[0] = nil
	e.queue = e.queue[1:]
	if len(e.queue) == 0 {
		e.queue = nil // let the backing array go
	}
	return b
}

// run posts queued events until ctx is done.
func (e *eventSender) run(ctx context.Context) {
	defer e.client.CloseIdleConnections()
	stop := context.AfterFunc(ctx, func() {
		e.mu.Lock()
		e.closed = true
		e.mu.Unlock()
		e.cond.Broadcast()
	})
	defer stop()
	var wg sync.WaitGroup
	for i := range eventPosters {
		backlog := 1
		if i > 0 {
			backlog = eventBacklog
		}
		wg.Go(func() {
			for {
				b := e.take(backlog)
				if b == nil {
					return
				}
				if e.m.isDown() {
					continue
				}
				e.post(ctx, b)
			}
		})
	}
	wg.Wait()
}

func (e *eventSender) post(ctx context.Context, body []byte) {
	ctx, cancel := context.WithTimeout(ctx, eventTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.url, bytes.NewReader(body))
	if err != nil {
		e.failed.Add(1)
		e.m.log.Debug("event not sent", "err", err)
		return
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := e.client.Do(req)
	if err != nil {
		e.failed.Add(1)
		e.m.log.Debug("event not sent", "err", err)
		return
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	_ = resp.Body.Close()
	e.sent.Add(1)
}
