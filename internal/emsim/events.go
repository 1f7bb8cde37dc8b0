package emsim

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

const (
	// eventQueueSize bounds the events a member holds before dropping (and
	// counting) more: a burst of tens of thousands of streams and replica
	// pulls (an inStreamCreated or outStreamCreated each) must not lose
	// events, and a sink that cannot be reached must not grow a member
	// without bound.
	eventQueueSize = 1 << 18
	// eventDialTimeout and eventWriteTimeout bound connecting to the sink
	// and writing one event.
	eventDialTimeout  = time.Second
	eventWriteTimeout = time.Second
	// eventAnswerTimeout is how long an event's connection stays open for
	// the sink's answer, which is read and ignored.
	eventAnswerTimeout = 2 * time.Second
	// eventAwaiting bounds the connections a member keeps open for answers;
	// beyond it an event's connection is closed once the event is written.
	eventAwaiting = 256
	// eventPosters bounds the events of one member being written at once,
	// and eventBacklog is the queue length from which more than one is:
	// events that come one at a time are written in order.
	eventPosters = 8
	eventBacklog = 64
)

// eventSender posts one member's events to the RPC sink as EMS does: one
// new connection per event from the member's own address, POST with a Host
// header and Content-Type application/json, no retry, and the answer read
// and ignored by a goroutine of its own, so that a sink that never answers
// slows nothing. Events are written in order, one at a time, unless a
// backlog builds up.
type eventSender struct {
	m       *Member
	addr    string // host:port of the sink
	tls     *tls.Config
	head    []byte          // request line and headers up to Content-Length
	enabled map[string]bool // the types sent; nil: all
	dialer  *net.Dialer
	dropped atomic.Int64
	sent    atomic.Int64
	failed  atomic.Int64

	mu      sync.Mutex
	cond    *sync.Cond
	queue   [][]byte // events waiting, oldest first
	closed  bool
	waiting map[net.Conn]struct{} // connections awaiting an answer
	answers sync.WaitGroup
}

func newEventSender(m *Member, sinkURL string, enabled []string) *eventSender {
	u, _ := url.Parse(sinkURL) // validated by Config.validate
	e := &eventSender{
		m:       m,
		addr:    u.Host,
		dialer:  &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(m.ip)}, Timeout: eventDialTimeout},
		waiting: make(map[net.Conn]struct{}),
	}
	if len(enabled) > 0 {
		e.enabled = make(map[string]bool, len(enabled))
		for _, typ := range enabled {
			e.enabled[typ] = true
		}
	}
	if u.Port() == "" {
		port := "80"
		if u.Scheme == "https" {
			port = "443"
		}
		e.addr = net.JoinHostPort(u.Hostname(), port)
	}
	if u.Scheme == "https" {
		e.tls = &tls.Config{ServerName: u.Hostname(), MinVersion: tls.VersionTLS12}
	}
	head := "POST " + u.RequestURI() + " HTTP/1.1\r\nHost: " + u.Host + "\r\n"
	if u.User != nil {
		pass, _ := u.User.Password()
		head += "Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte(u.User.Username()+":"+pass)) + "\r\n"
	}
	head += "Content-Type: application/json\r\nConnection: close\r\nContent-Length: "
	e.head = []byte(head)
	e.cond = sync.NewCond(&e.mu)
	return e
}

// sendsLocked reports whether m sends events of type typ now: events are
// on, typ is enabled and m is up.
func (m *Member) sendsLocked(typ string) bool {
	return m.ev != nil && !m.faults.Down && (m.ev.enabled == nil || m.ev.enabled[typ])
}

// checkEventTypes returns an error naming the first entry of types that
// cannot name an event type.
func checkEventTypes(types []string) error {
	for i, typ := range types {
		if !validEventType(typ) {
			return fmt.Errorf("entry %d %q is not an event type (letters only)", i+1, typ)
		}
	}
	return nil
}

// validEventType reports whether typ can name an event type: letters only,
// as every EMS event type is.
func validEventType(typ string) bool {
	if typ == "" || len(typ) > 64 {
		return false
	}
	for _, r := range typ {
		if (r < 'a' || r > 'z') && (r < 'A' || r > 'Z') {
			return false
		}
	}
	return true
}

// emitLocked queues an event about st unless events are off, typ is not
// enabled or m is down. The caller holds m.mu, so events of one member
// keep their order and come after the state change they describe. The
// pullSettings of a pulled stream carry "_callback":null, as real EMS 2.0
// events do.
func (m *Member) emitLocked(typ string, st *stream, now time.Time) {
	if !m.sendsLocked(typ) {
		return
	}
	payload := st.info(m, now, infoOpts{event: true, fresh: typ == "inStreamCreated", settings: viewListed})
	m.emitPayloadLocked(typ, payload, now)
}

// emitPayloadLocked queues an event with payload; the caller holds m.mu and
// has checked sendsLocked.
func (m *Member) emitPayloadLocked(typ string, payload jobj, now time.Time) {
	m.eventID++
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

// run posts queued events until ctx is done, then closes the connections
// still awaiting answers and waits for their readers.
func (e *eventSender) run(ctx context.Context) {
	stop := context.AfterFunc(ctx, func() {
		e.mu.Lock()
		e.closed = true
		for c := range e.waiting {
			_ = c.Close()
		}
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
	e.answers.Wait()
}

// post writes one event on a new connection and leaves its answer to a
// reader of its own.
func (e *eventSender) post(ctx context.Context, body []byte) {
	conn, err := e.dialer.DialContext(ctx, "tcp", e.addr)
	if err != nil {
		e.failed.Add(1)
		e.m.log.Debug("event not sent", "err", err)
		return
	}
	deadline := time.Now().Add(eventWriteTimeout)
	_ = conn.SetDeadline(deadline)
	if e.tls != nil {
		tc := tls.Client(conn, e.tls)
		if err := tc.HandshakeContext(ctx); err != nil {
			_ = conn.Close()
			e.failed.Add(1)
			e.m.log.Debug("event not sent", "err", err)
			return
		}
		conn = tc
	}
	req := make([]byte, 0, len(e.head)+len(body)+16)
	req = append(req, e.head...)
	req = strconv.AppendInt(req, int64(len(body)), 10)
	req = append(req, "\r\n\r\n"...)
	req = append(req, body...)
	if _, err := conn.Write(req); err != nil {
		_ = conn.Close()
		e.failed.Add(1)
		e.m.log.Debug("event not sent", "err", err)
		return
	}
	e.mu.Lock()
	if e.closed || len(e.waiting) >= eventAwaiting {
		e.mu.Unlock()
		_ = conn.Close()
		e.failed.Add(1)
		return
	}
	e.waiting[conn] = struct{}{}
	e.answers.Add(1)
	e.mu.Unlock()
	go e.awaitAnswer(conn)
}

// awaitAnswer reads and ignores the sink's answer on conn, then closes it.
func (e *eventSender) awaitAnswer(conn net.Conn) {
	defer e.answers.Done()
	_ = conn.SetDeadline(time.Now().Add(eventAnswerTimeout))
	resp, err := http.ReadResponse(bufio.NewReaderSize(conn, 1024), nil)
	if err == nil {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
		_ = resp.Body.Close()
		e.sent.Add(1)
	} else {
		e.failed.Add(1)
	}
	e.mu.Lock()
	delete(e.waiting, conn)
	e.mu.Unlock()
	_ = conn.Close()
}

// awaitingAnswers returns how many connections wait for an answer.
func (e *eventSender) awaitingAnswers() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.waiting)
}
