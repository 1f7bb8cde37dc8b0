package receiver

import (
	"bufio"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"streamlb/internal/testkit"
)

// streamEvent returns an inStreamCreated body with the given name, ip and
// pullSettings members (pull is inserted as is, without braces).
func streamEvent(name, ip, pull string) []byte {
	return fmt.Appendf(nil, `{"type":"inStreamCreated","payload":{"name":%q,"ip":%q,"connectionType":1,"pullSettings":{%s}}}`, name, ip, pull)
}

func manyVars(n, size int) string {
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `"_v%d":%q`, i, strings.Repeat("v", size))
	}
	return b.String()
}

func TestOutOfBoundsEventsAcknowledgedNotActedOn(t *testing.T) {
	uri := func(n int) string {
		return `"uri":"rtmp://10.0.0.1/live/` + strings.Repeat("u", n-len("rtmp://10.0.0.1/live/")) + `"`
	}
	tests := []struct {
		name   string
		body   []byte
		result string // "" when the event is acted on
	}{
		{"name at the limit", streamEvent(strings.Repeat("n", MaxNameBytes), "10.0.0.1", ""), ""},
		{"name past the limit", streamEvent(strings.Repeat("n", MaxNameBytes+1), "10.0.0.1", ""), resultNameTooLong},
		{"uri at the limit", streamEvent("s", "10.0.0.1", uri(MaxPullURIBytes)), ""},
		{"uri past the limit", streamEvent("s", "10.0.0.1", uri(MaxPullURIBytes+1)), resultURITooLong},
		{"vars at the limit", streamEvent("s", "10.0.0.1", manyVars(MaxVars, 8)), ""},
		{"one var too many", streamEvent("s", "10.0.0.1", manyVars(MaxVars+1, 8)), resultTooManyVars},
		{"a var at the limit", streamEvent("s", "10.0.0.1", manyVars(1, MaxVarBytes-len("_v0"))), ""},
		{"a var past the limit", streamEvent("s", "10.0.0.1", manyVars(1, MaxVarBytes-len("_v0")+1)), resultVarTooLong},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, Options{})
			rec := serve(f.r, "127.0.0.1:1", "/evowebservices/", tt.body)
			if rec.Code != http.StatusOK || rec.Body.String() != okBody {
				t.Fatalf("answered %d %q, want 200 %q", rec.Code, rec.Body, okBody)
			}
			wantEvents, wantAccepted := 1, 1.0
			if tt.result != "" {
				wantEvents, wantAccepted = 0, 0
				if got := f.count(TypeInStreamCreated, tt.result); got != 1 {
					t.Errorf("%s count = %v, want 1", tt.result, got)
				}
				if !strings.Contains(f.logs.String(), "result="+tt.result) {
					t.Errorf("no log line with result=%s:\n%.2000s", tt.result, f.logs)
				}
			}
			if n := len(f.sink.Events()); n != wantEvents {
				t.Errorf("sink got %d events, want %d", n, wantEvents)
			}
			if got := f.count(TypeInStreamCreated, resultAccepted); got != wantAccepted {
				t.Errorf("accepted count = %v, want %v", got, wantAccepted)
			}
			if n := len(f.logs.String()); n > 4096 {
				t.Errorf("%d bytes of log for one event, want at most 4096", n)
			}
		})
	}
}

func TestInvalidIPHandledAsAbsent(t *testing.T) {
	tests := []struct {
		ip, want string
		bad      bool
	}{
		{"10.0.0.1", "10.0.0.1", false},
		{"2001:db8::1", "2001:db8::1", false},
		{"fe80::1%eth0", "fe80::1%eth0", false},
		{"", "", false},
		{"not an address", "", true},
		{"10.0.0.1:1935", "", true},
		{"fe80::1%" + strings.Repeat("z", 100), "", true},
		{strings.Repeat("9", 400<<10), "", true},
	}
	for _, tt := range tests {
		t.Run(clip(tt.ip, 20), func(t *testing.T) {
			f := newFixture(t, Options{})
			rec := serve(f.r, "127.0.0.1:1", "/evowebservices/", streamEvent("s", tt.ip, ""))
			if rec.Code != http.StatusOK {
				t.Fatalf("answered %d %q, want 200", rec.Code, rec.Body)
			}
			evs := f.sink.Events()
			if len(evs) != 1 || evs[0].IP != tt.want {
				t.Fatalf("sink got %+v, want one event with IP %q", evs, clip(tt.want, 40))
			}
			wantBad := 0.0
			if tt.bad {
				wantBad = 1
			}
			if got := testutil.ToFloat64(f.r.metrics.badIP); got != wantBad {
				t.Errorf("streamlb_events_invalid_ip_total = %v, want %v", got, wantBad)
			}
			if got := f.count(TypeInStreamCreated, resultAccepted); got != 1 {
				t.Errorf("accepted count = %v, want 1", got)
			}
			if n := len(f.logs.String()); n > 2048 {
				t.Errorf("%d bytes of log for one event, want at most 2048:\n%.3000s", n, f.logs)
			}
		})
	}
}

// TestLogLinesBoundAttackerStrings posts events whose every field is huge
// and checks that no log line, at debug level, carries more than a clipped
// excerpt of any of them, and that repeated warnings are rate limited.
func TestLogLinesBoundAttackerStrings(t *testing.T) {
	warns := &testkit.Buffer{}
	f := newFixture(t, Options{})
	w := New(Options{Sink: f.sink, Logger: slog.New(slog.NewTextHandler(warns, nil)), Now: func() time.Time { return testNow }})
	huge := strings.Repeat("A", 64<<10)
	bodies := [][]byte{
		streamEvent("s", huge, ""),
		streamEvent(huge, "10.0.0.1", ""),
		streamEvent("s", "10.0.0.1", `"uri":"`+huge+`"`),
		streamEvent("s", "10.0.0.1", `"_`+huge+`":"v"`),
		fmt.Appendf(nil, `{"type":%q,"payload":{}}`, huge),
		fmt.Appendf(nil, `{"type":"inStreamCreated","payload":{"name":"s","pullSettings":{"_%s":"\ud800x\q"}}}`, huge),
	}
	targets := []string{"/evowebservices/", "/evowebservices" + huge}
	const rounds = 3
	for range rounds {
		for _, b := range bodies {
			for _, target := range targets {
				serve(f.r, "127.0.0.1:1", target, b)
				serve(w, "127.0.0.1:1", target, b)
			}
		}
	}
	for i, line := range strings.Split(f.logs.String(), "\n") {
		if len(line) > 2048 {
			t.Errorf("debug log line %d is %d bytes, want at most 2048: %.300s", i, len(line), line)
		}
	}
	if !strings.Contains(f.logs.String(), "…(+") {
		t.Errorf("no clipped string marked in the debug log:\n%.3000s", f.logs)
	}
	// One warning per kind of complaint in the instant the clock shows.
	if n := strings.Count(warns.String(), "level=WARN"); n == 0 || n > 8 {
		t.Errorf("%d warnings for %d forged events in one instant, want 1 to 8:\n%.3000s", n, rounds*len(bodies)*len(targets), warns)
	}
}

// TestDeclaredLengthReservesNothing: a body announced as 1 MiB that sends a
// few bytes costs a few bytes, not the announced size.
func TestDeclaredLengthReservesNothing(t *testing.T) {
	f := newFixture(t, Options{Logger: slog.New(slog.DiscardHandler)})
	body := []byte(`{"type":"serverStarted","payload":{}}`)
	const n = 50
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for range n {
		req := httptest.NewRequest(http.MethodPost, "/evowebservices/", strings.NewReader(string(body)))
		req.ContentLength = DefaultMaxBodyBytes
		rec := httptest.NewRecorder()
		f.r.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			t.Fatalf("answered %d %q", rec.Code, rec.Body)
		}
	}
	runtime.ReadMemStats(&after)
	if per := (after.TotalAlloc - before.TotalAlloc) / n; per > 64<<10 {
		t.Errorf("%d bytes allocated per request declaring %d bytes and sending %d, want at most 64 KiB", per, DefaultMaxBodyBytes, len(body))
	}
}

// TestSlowBodyAnswered408 sends headers and then part of the body and
// stops: the handler gives up after BodyTimeout and answers 408, freeing
// its slot, while a prompt request on another connection is answered.
func TestSlowBodyAnswered408(t *testing.T) {
	const timeout = 300 * time.Millisecond
	f := newFixture(t, Options{BodyTimeout: timeout})
	srv := f.server(t)
	c, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	if _, err := io.WriteString(c, "POST /evowebservices/ HTTP/1.1\r\nHost: sink\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"ty"); err != nil {
		t.Fatal(err)
	}
	if status, _ := post(t, srv, "/evowebservices/", []byte(`{"type":"serverStarted","payload":{}}`)); status != http.StatusOK {
		t.Errorf("a prompt POST beside the slow one: %d, want 200", status)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("no answer to the slow body: %v", err)
	}
	resp.Body.Close()
	took := time.Since(start)
	if resp.StatusCode != http.StatusRequestTimeout {
		t.Errorf("slow body answered %s, want 408", resp.Status)
	}
	if took < timeout || took > timeout+2*time.Second {
		t.Errorf("answered after %v, want about %v", took, timeout)
	}
	if got := f.count(typeUnknown, resultTimeout); got != 1 {
		t.Errorf("timeout count = %v, want 1", got)
	}
}

func TestSetAccessAppliesToTheNextRequest(t *testing.T) {
	f := newFixture(t, Options{Token: "old-T0ken"})
	srv := f.server(t)
	event := []byte(`{"type":"serverStarted","payload":{}}`)
	if status, _ := post(t, srv, "/evowebservices/old-T0ken/", event); status != http.StatusOK {
		t.Fatalf("old token before the change: %d, want 200", status)
	}
	f.r.SetAccess("new-T0ken", nil)
	if status, _ := post(t, srv, "/evowebservices/old-T0ken/", event); status != http.StatusUnauthorized {
		t.Errorf("old token after the change: %d, want 401", status)
	}
	if status, _ := post(t, srv, "/evowebservices/new-T0ken/", event); status != http.StatusOK {
		t.Errorf("new token: %d, want 200", status)
	}
	f.r.SetAccess("", []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")})
	if status, _ := post(t, srv, "/evowebservices/", event); status != http.StatusForbidden {
		t.Errorf("loopback peer outside allowed_sources: %d, want 403", status)
	}
	f.r.SetAccess("", nil)
	if status, _ := post(t, srv, "/evowebservices/", event); status != http.StatusOK {
		t.Errorf("no token and no allowed_sources: %d, want 200", status)
	}
	if status, _ := post(t, srv, "/evowebservices/new-T0ken/", event); status != http.StatusNotFound {
		t.Errorf("a token path with no token set: %d, want 404", status)
	}
}

func TestClip(t *testing.T) {
	tests := []struct {
		s    string
		n    int
		want string
	}{
		{"short", 10, "short"},
		{"exactly10!", 10, "exactly10!"},
		{"0123456789abc", 10, "0123456789…(+3 bytes)"},
		{"ééééé", 3, "é…(+8 bytes)"},
		{"a\xffb", 10, "a\uFFFDb"},
	}
	for _, tt := range tests {
		if got := clip(tt.s, tt.n); got != tt.want {
			t.Errorf("clip(%q, %d) = %q, want %q", tt.s, tt.n, got, tt.want)
		}
	}
}

// TestBufferedBytesBudget: the body bytes all requests hold at once are
// bounded. A client holding half a body keeps its share; a request that
// needs more than what is left gets 503, a small one still passes, and
// every share comes back once its request ends.
func TestBufferedBytesBudget(t *testing.T) {
	f := newFixture(t, Options{MaxBufferedBytes: 8 << 10, BodyTimeout: 10 * time.Second})
	srv := f.server(t)
	small := validPadded(t, 100)
	large := validPadded(t, 5000) // grows its buffer to 2, 4 then 8 KiB

	if status, answer := post(t, srv, "/evowebservices/", large); status != http.StatusOK {
		t.Fatalf("a 5000-byte event alone: %d %q, want 200", status, answer)
	}
	// The holder sends half of its body and waits. Its first bytes may
	// be read while one of the large events below holds the whole budget:
	// then the holder is answered 503 and holds nothing, and it sends its
	// half body again.
	holder, refused := holdHalf(t, srv, 3000)
	defer func() { holder.Close() }()
	// The holder's 3000 bytes take 4 KiB of the budget once read: from
	// then on the large event does not fit.
	deadline := time.Now().Add(5 * time.Second)
	for {
		status, answer := post(t, srv, "/evowebservices/", large)
		select {
		case <-refused:
			t.Logf("the holder was answered before the large event's %d: sending it again", status)
			holder.Close()
			holder, refused = holdHalf(t, srv, 3000)
			continue
		default:
		}
		if status == http.StatusServiceUnavailable {
			if got := errorOf(t, answer); !strings.Contains(got, "retry") {
				t.Errorf("503 error = %q, want it to say retry", got)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a 5000-byte event beside a held body: %d, want 503 within 5 s", status)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if status, _ := post(t, srv, "/evowebservices/", small); status != http.StatusOK {
		t.Errorf("a small event beside the held body: %d, want 200", status)
	}
	if got := f.count(typeUnknown, resultBusy); got < 1 {
		t.Errorf("busy count = %v, want at least 1", got)
	}
	holder.Close()
	deadline = time.Now().Add(5 * time.Second)
	for {
		status, _ := post(t, srv, "/evowebservices/", large)
		if status == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the 5000-byte event after the holder left: %d, want 200 within 5 s", status)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Nothing leaks: many requests in a row, each taking its share and
	// giving it back.
	for i := range 50 {
		if status, _ := post(t, srv, "/evowebservices/", large); status != http.StatusOK {
			t.Fatalf("event %d of 50 in a row: %d, want 200", i, status)
		}
	}
}

// A body refused because the budget is spent is answered at once, and not
// read further: a sender that sends slowly does not wait for its 503 until
// the body's deadline, and its connection is not kept for another request.
func TestRefusedBodyIsAnsweredAtOnce(t *testing.T) {
	f := newFixture(t, Options{MaxBufferedBytes: firstChunk, BodyTimeout: 10 * time.Second})
	srv := f.server(t)
	// The holder takes the whole budget once its first bytes are read,
	// unless a small event below took it first: then the holder is
	// answered 503, and sends its half body again.
	holder, refused := holdHalf(t, srv, 100)
	defer func() { holder.Close() }()
	deadline := time.Now().Add(5 * time.Second)
	for {
		status, _ := post(t, srv, "/evowebservices/", validPadded(t, 100))
		select {
		case <-refused:
			holder.Close()
			holder, refused = holdHalf(t, srv, 100)
			continue
		default:
		}
		if status == http.StatusServiceUnavailable {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a small event beside a body holding the whole budget: %d, want 503 within 5 s", status)
		}
		time.Sleep(10 * time.Millisecond)
	}

	slow := halfSend(t, srv, 100)
	defer slow.Close()
	// Well within the body's deadline (10 s): the refusal does not wait
	// for the rest of the body.
	if err := slow.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(slow), nil)
	if err != nil {
		t.Fatalf("no answer to a body refused for the budget within 5 s: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("status %d, want 503", resp.StatusCode)
	}
	if !resp.Close {
		t.Errorf("the connection of a body read in part is kept (Connection: %q)", resp.Header.Get("Connection"))
	}
}

// halfSend sends srv's event sink a POST declaring a body of 6,000 bytes
// and only the first n of them.
func halfSend(t *testing.T, srv *httptest.Server, n int) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fmt.Fprintf(c, "POST /evowebservices/ HTTP/1.1\r\nHost: sink\r\nContent-Length: 6000\r\n\r\n%s", strings.Repeat(" ", n)); err != nil {
		c.Close()
		t.Fatal(err)
	}
	return c
}

// holdHalf is halfSend for a body meant to stay held: the channel is
// closed if the sink answers it.
func holdHalf(t *testing.T, srv *httptest.Server, n int) (net.Conn, <-chan struct{}) {
	t.Helper()
	c := halfSend(t, srv, n)
	answered := make(chan struct{})
	go func() {
		if n, _ := c.Read(make([]byte, 1)); n > 0 {
			close(answered)
		}
	}()
	return c, answered
}
