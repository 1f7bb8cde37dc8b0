package emsim

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// silentSink accepts connections, reads one request from each and never
// answers; it counts the requests read.
type silentSink struct {
	ln net.Listener
	wg sync.WaitGroup

	mu      sync.Mutex
	conns   []net.Conn
	names   map[string]bool // payload names of the events read
	changed chan struct{}
}

func newSilentSink(t testing.TB) *silentSink {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &silentSink{ln: ln, names: make(map[string]bool), changed: make(chan struct{})}
	s.wg.Go(s.accept)
	t.Cleanup(func() {
		_ = ln.Close()
		s.mu.Lock()
		for _, c := range s.conns {
			_ = c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
	return s
}

func (s *silentSink) URL() string { return "http://" + s.ln.Addr().String() + "/evowebservices/" }

func (s *silentSink) accept() {
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		s.conns = append(s.conns, c)
		s.mu.Unlock()
		s.wg.Go(func() { s.read(c) })
	}
}

func (s *silentSink) read(c net.Conn) {
	req, err := http.ReadRequest(bufio.NewReader(c))
	if err != nil {
		return
	}
	var body struct {
		Payload struct{ Name string } `json:"payload"`
	}
	err = decodeBody(req, &body)
	s.mu.Lock()
	if err == nil {
		s.names[body.Payload.Name] = true
	}
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
	// Never answer: the connection stays open until the sender or the
	// test closes it.
}

// awaitNames waits until events about every name were read.
func (s *silentSink) awaitNames(t *testing.T, deadline time.Time, names []string) {
	t.Helper()
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	for {
		s.mu.Lock()
		missing := 0
		for _, n := range names {
			if !s.names[n] {
				missing++
			}
		}
		ch := s.changed
		s.mu.Unlock()
		if missing == 0 {
			return
		}
		select {
		case <-timer.C:
			t.Fatalf("%d of %d events not received by the deadline", missing, len(names))
		case <-ch:
		}
	}
}

// TestSilentSinkSlowsNothing: a sink that accepts and never answers gets
// every event promptly, and a member keeps a bounded number of connections
// open for answers.
func TestSilentSinkSlowsNothing(t *testing.T) {
	sink := newSilentSink(t)
	c := newCluster(t, 1, Config{EventsURL: sink.URL()})
	m := c.Members()[0]

	const n = 50
	names := make([]string, n)
	start := time.Now()
	for i := range names {
		names[i] = fmt.Sprintf("s%d", i)
		if err := m.Publish(names[i]); err != nil {
			t.Fatal(err)
		}
	}
	// Waiting for each answer (2 s) would take 100 s.
	sink.awaitNames(t, start.Add(5*time.Second), names)

	// A burst beyond the connections kept for answers is still delivered.
	more := make([]string, eventAwaiting+50)
	for i := range more {
		more[i] = fmt.Sprintf("b%d", i)
		if err := m.Publish(more[i]); err != nil {
			t.Fatal(err)
		}
	}
	sink.awaitNames(t, time.Now().Add(10*time.Second), more)
	if got := m.ev.awaitingAnswers(); got > eventAwaiting {
		t.Errorf("%d connections await answers, want at most %d", got, eventAwaiting)
	}
	if s := m.Stats(); s.EventsSent != 0 || s.EventsDropped != 0 {
		t.Errorf("stats %+v: want nothing answered and nothing dropped", s)
	}
}

// TestEventSinkGetsAnswersCounted: a sink that answers has every event
// counted as sent.
func TestEventSinkGetsAnswersCounted(t *testing.T) {
	sink := newSink(t)
	c := newCluster(t, 1, Config{EventsURL: sink.URL()})
	m := c.Members()[0]
	ctx := testCtx(t, 10*time.Second)
	for i := range 5 {
		if err := m.Publish(fmt.Sprintf("a%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 5 {
		e := sink.await(ctx, t, "inStreamCreated", isEvent("inStreamCreated", fmt.Sprintf("a%d", i), m.IP()))
		if e.ContentType != "application/json" || e.RemoteIP != m.IP() {
			t.Errorf("event from %s with Content-Type %q, want %s and application/json", e.RemoteIP, e.ContentType, m.IP())
		}
	}
	awaitCount(ctx, t, "events sent", func() int64 { return m.SentEvents() }, 5)
}

func decodeBody(r *http.Request, v any) error {
	defer r.Body.Close()
	return json.NewDecoder(r.Body).Decode(v)
}

// TestRestartPostsServerStarted checks that a restarted member posts
// serverStarted from its own address, with the version fields as payload.
func TestRestartPostsServerStarted(t *testing.T) {
	sink := newSink(t)
	c := newCluster(t, 1, Config{EventsURL: sink.URL()})
	m := c.Members()[0]
	ctx := testCtx(t, 10*time.Second)
	if err := m.Publish("before"); err != nil {
		t.Fatal(err)
	}
	sink.await(ctx, t, "inStreamCreated", isEvent("inStreamCreated", "before", m.IP()))
	m.Restart()
	e := sink.await(ctx, t, "serverStarted", func(e sinkEvent) bool { return e.Type == "serverStarted" })
	if e.RemoteIP != m.IP() {
		t.Errorf("serverStarted from %s, want %s", e.RemoteIP, m.IP())
	}
	if v, _ := path(e.Env, "payload", "releaseNumber").(string); v == "" {
		t.Errorf("serverStarted payload %s has no releaseNumber (the version fields)", e.Raw)
	}
}

// TestEnabledEventsFilters: with enabled events set, as a sink's
// enabledEvents in config.lua, a member sends only those types. A pull
// makes the origin an outbound stream, whose outStreamCreated is left
// out; the origin's next enabled event, sent after it in order, is the
// marker that it was.
func TestEnabledEventsFilters(t *testing.T) {
	sink := newSink(t)
	c := newCluster(t, 2, Config{EventsURL: sink.URL(), EnabledEvents: []string{"inStreamCreated", "inStreamClosed"}})
	a, b := c.Members()[0], c.Members()[1]
	ctx := testCtx(t, 10*time.Second)
	if err := a.Publish("cam"); err != nil {
		t.Fatal(err)
	}
	mustSucceed(t, b, "pullStream", "uri=rtmp://"+a.IP()+"/live/cam localStreamName=cam keepAlive=1")
	sink.await(ctx, t, "the pulled copy's inStreamCreated", isEvent("inStreamCreated", "cam", b.IP()))
	if got := outbound(mustSucceed(t, a, "listStreams", "")); len(got) != 1 {
		t.Fatalf("origin's outbound streams = %d, want the pull's 1", len(got))
	}
	if err := a.Unpublish("cam"); err != nil {
		t.Fatal(err)
	}
	sink.await(ctx, t, "the origin's inStreamClosed", isEvent("inStreamClosed", "cam", a.IP()))
	for _, e := range sink.all() {
		if e.Type != "inStreamCreated" && e.Type != "inStreamClosed" {
			t.Errorf("sink got a %s from %s, which is not enabled", e.Type, e.RemoteIP)
		}
	}
}

func TestEnabledEventsRefusesBadTypes(t *testing.T) {
	for _, bad := range [][]string{{""}, {"inStreamCreated", "in stream"}, {"a,b"}} {
		_, err := Start(Config{IP: "127.0.0.1", Members: 1, EventsURL: "http://127.0.0.1:1/", EnabledEvents: bad})
		if err == nil || !strings.Contains(err.Error(), "enabled events: entry") {
			t.Errorf("Start with enabled events %q: error %v, want one naming the bad entry", bad, err)
		}
	}
}
