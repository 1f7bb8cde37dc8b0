package statusapi

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"streamlb/internal/controller"
)

// entries are five transitions for the journal tests.
func entries() []controller.Entry {
	at := t0
	next := func() time.Time { at = at.Add(time.Second); return at }
	return []controller.Entry{
		{At: next(), Kind: controller.EntrySourceAppeared, Member: "ems-1", Stream: "lobby"},
		{At: next(), Kind: controller.EntryReplicaPulled, Member: "ems-2", Stream: "lobby", Origin: "ems-1"},
		{At: next(), Kind: controller.EntrySourceAppeared, Member: "ems-2", Stream: "yard"},
		{At: next(), Kind: controller.EntryReplicaPulled, Member: "ems-1", Stream: "yard", Origin: "ems-2"},
		{At: next(), Kind: controller.EntryMemberDown, Member: "ems-3"},
	}
}

func readPage(t *testing.T, url string) controller.JournalPage {
	t.Helper()
	code, _, body := get(t, url)
	if code != http.StatusOK {
		t.Fatalf("GET %s = %d %s, want 200", url, code, body)
	}
	var p controller.JournalPage
	if err := json.Unmarshal(body, &p); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return p
}

func seqs(es []controller.Entry) []uint64 {
	out := []uint64{}
	for _, e := range es {
		out = append(out, e.Seq)
	}
	return out
}

func TestEventsPages(t *testing.T) {
	fake := newFake(fixedStatus())
	fake.record(entries()...)
	srv, _ := newServer(t, fake, nil)
	tests := []struct {
		query    string
		want     []uint64
		wantNext uint64
	}{
		{"", []uint64{1, 2, 3, 4, 5}, 5},
		{"?since=0&limit=2", []uint64{1, 2}, 2},
		{"?since=2&limit=2", []uint64{3, 4}, 4},
		{"?since=4&limit=2", []uint64{5}, 5},
		{"?since=5", []uint64{}, 5},
		{"?stream=lobby", []uint64{1, 2}, 5},
		{"?stream=y*&member=ems-1", []uint64{4}, 5},
		{"?member=ems-3", []uint64{5}, 5},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			p := readPage(t, srv.URL+"/api/v1/events"+tt.query)
			if diff := cmp.Diff(tt.want, seqs(p.Events)); diff != "" || p.Next != tt.wantNext {
				t.Errorf("entries (-want +got):\n%s\nnext %d, want %d", diff, p.Next, tt.wantNext)
			}
		})
	}
	t.Run("entries keep their times", func(t *testing.T) {
		p := readPage(t, srv.URL+"/api/v1/events?since=4")
		if len(p.Events) != 1 || !p.Events[0].At.Equal(t0.Add(5*time.Second)) || p.Events[0].Kind != controller.EntryMemberDown {
			t.Errorf("entry 5 = %+v, want member_down at %v", p.Events, t0.Add(5*time.Second))
		}
	})
}

// TestBadParameters checks that every route answers a parameter it
// cannot take with 400 and a JSON error naming it.
func TestBadParameters(t *testing.T) {
	srv, _ := newServer(t, newFake(fixedStatus()), nil)
	tests := []struct {
		path, param string
	}{
		{"/api/v1/events?since=x", "since"},
		{"/api/v1/events?since=-1", "since"},
		{"/api/v1/events?limit=0", "limit"},
		{"/api/v1/events?limit=10001", "limit"},
		{"/api/v1/events?stream=%5B", "stream"},
		{"/api/v1/events?after=3", "after"},
		{"/api/v1/events/stream?since=x", "since"},
		{"/api/v1/events/stream?member=%5B", "member"},
		{"/api/v1/status?state=lost", "state"},
		{"/api/v1/status?limit=-1", "limit"},
		{"/api/v1/status?limit=ten", "limit"},
		{"/api/v1/status?attention=maybe", "attention"},
		{"/api/v1/status?stream=%5Bx", "stream"},
		{"/api/v1/status?member=nope", "member"},
		{"/api/v1/status?state=present&state=failing", "state"},
		{"/api/v1/status?pretty=2", "pretty"},
		{"/api/v1/status?sort=name", "sort"},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			code, h, body := get(t, srv.URL+tt.path)
			if code != http.StatusBadRequest {
				t.Fatalf("GET %s = %d %s, want 400", tt.path, code, body)
			}
			var e struct{ Error, Parameter string }
			if err := json.Unmarshal(body, &e); err != nil || h.Get("Content-Type") != "application/json" {
				t.Fatalf("GET %s: body %s (%v), Content-Type %q; want a JSON error", tt.path, body, err, h.Get("Content-Type"))
			}
			if e.Parameter != tt.param || !strings.HasPrefix(e.Error, tt.param+": ") {
				t.Errorf("GET %s: error %q naming %q, want it to name %q", tt.path, e.Error, e.Parameter, tt.param)
			}
		})
	}
	t.Run("Last-Event-ID", func(t *testing.T) {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL+"/api/v1/events/stream", nil)
		req.Header.Set("Last-Event-ID", "x")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("Last-Event-ID: x = %d, want 400", resp.StatusCode)
		}
	})
}

// sseEvent is one server-sent event as a client reads it.
type sseEvent struct {
	id, event, data string
}

// sseClient reads an event stream.
type sseClient struct {
	resp *http.Response
	r    *bufio.Reader
	// comments counts the comment lines read (heartbeats).
	comments int
}

// openStream opens url as an event stream, with Last-Event-ID when
// lastID is not empty. The stream is closed when the test ends.
func openStream(t *testing.T, url, lastID string) *sseClient {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatalf("GET %s: %v", url, err)
	}
	t.Cleanup(func() { cancel(); resp.Body.Close() })
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s = %s, want 200", url, resp.Status)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("GET %s: Content-Type %q, want text/event-stream", url, ct)
	}
	return &sseClient{resp: resp, r: bufio.NewReader(resp.Body)}
}

// next returns the next event (skipping the retry field and comments),
// failing the test when none comes within 5 seconds.
func (c *sseClient) next(t *testing.T) sseEvent {
	t.Helper()
	type result struct {
		ev  sseEvent
		err error
	}
	ch := make(chan result, 1)
	go func() {
		var ev sseEvent
		for {
			line, err := c.r.ReadString('\n')
			if err != nil {
				ch <- result{err: err}
				return
			}
			line = strings.TrimSuffix(line, "\n")
			switch {
			case line == "":
				if ev.data != "" {
					ch <- result{ev: ev}
					return
				}
			case strings.HasPrefix(line, ":"):
				c.comments++
			case strings.HasPrefix(line, "id: "):
				ev.id = line[4:]
			case strings.HasPrefix(line, "event: "):
				ev.event = line[7:]
			case strings.HasPrefix(line, "data: "):
				ev.data = line[6:]
			}
		}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatalf("event stream: %v", r.err)
		}
		return r.ev
	case <-time.After(5 * time.Second):
		c.resp.Body.Close() // ends the reader
		<-ch
		t.Fatal("no event within 5s")
	}
	return sseEvent{}
}

// entry decodes ev's data.
func (ev sseEvent) entry(t *testing.T) controller.Entry {
	t.Helper()
	var e controller.Entry
	if err := json.Unmarshal([]byte(ev.data), &e); err != nil {
		t.Fatalf("event data %q: %v", ev.data, err)
	}
	if ev.id != "" && ev.id != strings.TrimSpace(jsonNumber(e.Seq)) {
		t.Fatalf("event id %q, data seq %d: want them equal", ev.id, e.Seq)
	}
	return e
}

func jsonNumber(n uint64) string {
	b, _ := json.Marshal(n)
	return string(b)
}

func TestEventStreamResumes(t *testing.T) {
	fake := newFake(fixedStatus())
	es := entries()
	fake.record(es[:3]...)
	srv, _ := newServer(t, fake, nil)

	t.Run("after Last-Event-ID, then what is recorded later", func(t *testing.T) {
		c := openStream(t, srv.URL+"/api/v1/events/stream?since=1", "2")
		if e := c.next(t).entry(t); e.Seq != 3 || e.Stream != "yard" {
			t.Fatalf("first entry after Last-Event-ID 2 = %+v, want seq 3 (Last-Event-ID wins over since=)", e)
		}
		fake.record(es[3])
		if e := c.next(t).entry(t); e.Seq != 4 || e.Kind != controller.EntryReplicaPulled || e.Member != "ems-1" {
			t.Fatalf("entry recorded after connecting = %+v, want seq 4, yard pulled to ems-1", e)
		}
	})
	t.Run("after since", func(t *testing.T) {
		c := openStream(t, srv.URL+"/api/v1/events/stream?since=3", "")
		if e := c.next(t).entry(t); e.Seq != 4 {
			t.Fatalf("first entry after since=3 = %+v, want seq 4", e)
		}
	})
	t.Run("filtered", func(t *testing.T) {
		c := openStream(t, srv.URL+"/api/v1/events/stream?stream=yard", "")
		got := []uint64{c.next(t).entry(t).Seq, c.next(t).entry(t).Seq}
		if diff := cmp.Diff([]uint64{3, 4}, got); diff != "" {
			t.Fatalf("entries of yard (-want +got):\n%s", diff)
		}
	})
	t.Run("says what was dropped", func(t *testing.T) {
		fake.mu.Lock()
		fake.keep = 2 // entries 3 and 4 are kept
		fake.mu.Unlock()
		defer func() { fake.mu.Lock(); fake.keep = 0; fake.mu.Unlock() }()
		c := openStream(t, srv.URL+"/api/v1/events/stream", "1")
		if ev := c.next(t); ev.event != "gap" || ev.data != `{"from":2,"to":2}` {
			t.Fatalf("after Last-Event-ID 1 with entry 2 dropped: %+v, want a gap event from 2 to 2", ev)
		}
		if e := c.next(t).entry(t); e.Seq != 3 {
			t.Fatalf("after the gap: %+v, want seq 3", e)
		}
	})
	t.Run("from a balancer's earlier life", func(t *testing.T) {
		c := openStream(t, srv.URL+"/api/v1/events/stream", "900")
		if e := c.next(t).entry(t); e.Seq != 1 {
			t.Fatalf("Last-Event-ID past the journal's newest: first entry %+v, want seq 1 (the journal started over)", e)
		}
	})
}

func TestEventStreamHeartbeat(t *testing.T) {
	fake := newFake(fixedStatus())
	srv, _ := newServerWith(t, &API{Controller: fake, heartbeat: 20 * time.Millisecond}, nil)
	c := openStream(t, srv.URL+"/api/v1/events/stream", "")
	deadline := time.Now().Add(5 * time.Second)
	for c.comments < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("%d heartbeats within 5s, want 2", c.comments)
		}
		line, err := c.r.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(line, ":") {
			c.comments++
		}
	}
}

func TestEventStreamsAreBounded(t *testing.T) {
	fake := newFake(fixedStatus())
	srv, _ := newServerWith(t, &API{Controller: fake, MaxStreams: 1}, nil)
	openStream(t, srv.URL+"/api/v1/events/stream", "")
	code, h, body := get(t, srv.URL+"/api/v1/events/stream")
	if code != http.StatusServiceUnavailable || h.Get("Retry-After") == "" {
		t.Errorf("a second stream past MaxStreams 1 = %d (Retry-After %q) %s, want 503 with Retry-After", code, h.Get("Retry-After"), body)
	}
}

// TestEventStreamEndsOnShutdown checks that an open stream ends when the
// server's base context does, as internal/app cancels it when it stops:
// Shutdown then returns at once instead of waiting for the client.
func TestEventStreamEndsOnShutdown(t *testing.T) {
	fake := newFake(fixedStatus())
	mux := http.NewServeMux()
	(&API{Controller: fake}).Register(mux)
	ctx, stop := context.WithCancel(context.Background())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: time.Second, BaseContext: func(net.Listener) context.Context { return ctx }}
	srv.RegisterOnShutdown(stop)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	c := openStream(t, "http://"+ln.Addr().String()+"/api/v1/events/stream", "")
	if _, err := c.r.ReadString('\n'); err != nil { // the retry field: the stream is open
		t.Fatal(err)
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	if err := srv.Shutdown(sctx); err != nil {
		t.Fatalf("Shutdown with a stream open: %v after %v, want it to end the stream", err, time.Since(start))
	}
	if _, err := io.ReadAll(c.r); err != nil {
		t.Errorf("the stream did not end cleanly: %v", err)
	}
	if err := <-served; err != http.ErrServerClosed {
		t.Errorf("Serve: %v", err)
	}
}

// TestEventStreamOutlivesServerTimeouts serves the stream from a server
// with read and write timeouts far shorter than the stream stays open (as
// internal/app's servers have 30 s ones): entries recorded after both
// have passed still arrive.
func TestEventStreamOutlivesServerTimeouts(t *testing.T) {
	fake := newFake(fixedStatus())
	mux := http.NewServeMux()
	(&API{Controller: fake, heartbeat: 50 * time.Millisecond}).Register(mux)
	ctx, stop := context.WithCancel(context.Background())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: time.Second, ReadTimeout: 200 * time.Millisecond, WriteTimeout: 200 * time.Millisecond,
		BaseContext: func(net.Listener) context.Context { return ctx }}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan struct{})
	go func() { defer close(served); _ = srv.Serve(ln) }()
	defer func() { stop(); srv.Close(); <-served }()

	c := openStream(t, "http://"+ln.Addr().String()+"/api/v1/events/stream", "")
	start := time.Now()
	for time.Since(start) < 600*time.Millisecond { // heartbeats mark the time passing
		if _, err := c.r.ReadString('\n'); err != nil {
			t.Fatalf("the stream ended after %v: %v", time.Since(start), err)
		}
	}
	fake.record(entries()[0])
	if e := c.next(t).entry(t); e.Seq != 1 {
		t.Fatalf("entry recorded %v after connecting: %+v, want seq 1", time.Since(start), e)
	}
}
