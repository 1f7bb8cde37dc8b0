package emsim

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testPort is the API port shared by every emulated member in tests; each
// test uses its own random 127.x.y.z addresses.
const testPort = 7777

// newCluster starts a cluster of n members on random loopback addresses,
// closed at the end of the test.
func newCluster(t *testing.T, n int, cfg Config) *Cluster {
	t.Helper()
	if cfg.IP == "" {
		cfg.IP = RandomLoopbackIPs(n)[0]
	}
	cfg.Members = n
	if cfg.APIPort == 0 {
		cfg.APIPort = testPort
	}
	c, err := Start(cfg)
	if err != nil {
		t.Fatalf("Start(%v) = %v", cfg, err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("Close() = %v", err)
		}
	})
	return c
}

// testCtx returns a context ending after d or at the end of the test.
func testCtx(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}

// newClient returns an HTTP client that never reuses connections.
func newClient(t *testing.T) *http.Client {
	t.Helper()
	tr := &http.Transport{DisableKeepAlives: true, Proxy: nil}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// reply is one decoded API answer.
type reply struct {
	HTTPStatus int
	Header     http.Header
	Close      bool // the server asked to close the connection
	Raw        string
	Env        map[string]any
}

func (r reply) status() string      { s, _ := r.Env["status"].(string); return s }
func (r reply) description() string { s, _ := r.Env["description"].(string); return s }
func (r reply) data() any           { return r.Env["data"] }
func (r reply) dataObj() map[string]any {
	o, _ := r.Env["data"].(map[string]any)
	return o
}

// b64 encodes an API parameter string.
func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// apiURL returns base/command?params=BASE64(params), or base/command when
// params is empty.
func apiURL(base, command, params string) string {
	u := base + "/" + command
	if params != "" {
		u += "?params=" + b64(params)
	}
	return u
}

// do sends a request and decodes the EMS answer.
func do(t *testing.T, client *http.Client, method, url string, user, pass string) reply {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, nil)
	if err != nil {
		t.Fatalf("NewRequest(%s): %v", url, err)
	}
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read %s: %v", url, err)
	}
	r := reply{HTTPStatus: resp.StatusCode, Header: resp.Header, Close: resp.Close, Raw: string(body)}
	if resp.StatusCode == http.StatusOK && strings.HasPrefix(strings.TrimSpace(r.Raw), "{") {
		r.Env = decodeJSON(t, body)
	}
	return r
}

// call runs an EMS command on a member's API with GET.
func call(t *testing.T, m *Member, command, params string) reply {
	t.Helper()
	return do(t, newClient(t), http.MethodGet, apiURL(m.APIURL(), command, params), "", "")
}

// mustSucceed runs a command and fails the test unless it answers SUCCESS.
func mustSucceed(t *testing.T, m *Member, command, params string) reply {
	t.Helper()
	r := call(t, m, command, params)
	if r.status() != "SUCCESS" {
		t.Fatalf("%s %q on %s = %s", command, params, m.IP(), r.Raw)
	}
	return r
}

// decodeJSON decodes JSON keeping numbers exact.
func decodeJSON(t *testing.T, b []byte) map[string]any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v map[string]any
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("decode %q: %v", b, err)
	}
	return v
}

// path walks a decoded JSON value along keys (strings) and indexes (ints).
func path(v any, steps ...any) any {
	for _, s := range steps {
		switch k := s.(type) {
		case string:
			o, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = o[k]
		case int:
			a, ok := v.([]any)
			if !ok || k >= len(a) {
				return nil
			}
			v = a[k]
		}
	}
	return v
}

// sinkEvent is one event received by a sink.
type sinkEvent struct {
	Type        string
	Env         map[string]any
	Raw         []byte
	RemoteIP    string
	ContentType string
	// Listed reports whether the stream was listed by its member's
	// listInboundStreamNames when the event arrived.
	Listed bool
}

// eventSink is an RPC sink on 127.0.0.1:0 recording events.
type eventSink struct {
	srv    *httptest.Server
	client *http.Client

	mu      sync.Mutex
	events  []sinkEvent
	changed chan struct{}
}

func newSink(t *testing.T) *eventSink {
	t.Helper()
	s := &eventSink{changed: make(chan struct{}), client: newClient(t)}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *eventSink) URL() string { return s.srv.URL + "/evowebservices/" }

func (s *eventSink) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	var env map[string]any
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&env); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	host, _, _ := net.SplitHostPort(r.RemoteAddr)
	ev := sinkEvent{Env: env, Raw: body, RemoteIP: host, ContentType: r.Header.Get("Content-Type")}
	ev.Type, _ = env["type"].(string)
	// Ask the member, from inside the delivery, whether it lists the stream.
	ip, _ := path(env, "payload", "ip").(string)
	name, _ := path(env, "payload", "name").(string)
	if ip != "" {
		ev.Listed = s.listed(r.Context(), ip, name)
	}
	s.mu.Lock()
	s.events = append(s.events, ev)
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
	w.WriteHeader(http.StatusOK)
}

func (s *eventSink) listed(ctx context.Context, ip, name string) bool {
	url := "http://" + net.JoinHostPort(ip, itoa(testPort)) + "/listInboundStreamNames"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	var env struct {
		Data []struct{ Name string } `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&env); err != nil {
		return false
	}
	for _, d := range env.Data {
		if d.Name == name {
			return true
		}
	}
	return false
}

// await returns the first event satisfying match, waiting until ctx ends.
func (s *eventSink) await(ctx context.Context, t *testing.T, what string, match func(sinkEvent) bool) sinkEvent {
	t.Helper()
	for {
		s.mu.Lock()
		ch := s.changed
		for _, e := range s.events {
			if match(e) {
				s.mu.Unlock()
				return e
			}
		}
		s.mu.Unlock()
		select {
		case <-ctx.Done():
			t.Fatalf("no event %s: %v", what, context.Cause(ctx))
		case <-ch:
		}
	}
}

func (s *eventSink) all() []sinkEvent {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]sinkEvent(nil), s.events...)
}

// isEvent matches an event by type, stream name and member address.
func isEvent(typ, name, ip string) func(sinkEvent) bool {
	return func(e sinkEvent) bool {
		return e.Type == typ && path(e.Env, "payload", "name") == name && path(e.Env, "payload", "ip") == ip
	}
}
