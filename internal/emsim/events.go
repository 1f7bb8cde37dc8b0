package emsim

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"time"
)

const (
	// eventQueueSize bounds the events a member holds before dropping.
	eventQueueSize = 4096
	// eventTimeout bounds one event POST.
	eventTimeout = 2 * time.Second
)

// eventSender posts one member's events to the RPC sink, in order, as EMS
// does: one new connection per event from the member's own address,
// Content-Type application/json, no retry, the answer drained and ignored.
type eventSender struct {
	m       *Member
	url     string
	client  *http.Client
	q       chan []byte
	dropped atomic.Int64
	sent    atomic.Int64
	failed  atomic.Int64
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
	return &eventSender{
		m:      m,
		url:    url,
		client: &http.Client{Transport: tr, Timeout: eventTimeout},
		q:      make(chan []byte, eventQueueSize),
	}
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
	b := appendJSON(make([]byte, 0, 2048), env)
	select {
	case m.ev.q <- b:
	default:
		m.ev.dropped.Add(1)
	}
}

// run posts queued events until ctx is done.
func (e *eventSender) run(ctx context.Context) {
	defer e.client.CloseIdleConnections()
	for {
		select {
		case <-ctx.Done():
			return
		case b := <-e.q:
			if e.m.isDown() {
				continue
			}
			e.post(ctx, b)
		}
	}
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
