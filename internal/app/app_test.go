package app

import (
	"bufio"
	"context"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"streamlb/internal/config"
	"streamlb/internal/emsim"
	"streamlb/internal/testkit"
)

// newSinkApp starts an App whose event sink is on ln (a fresh loopback
// listener when nil), with listen and the extra parameters in its config.
// Its one member cannot be reached (the sink does not need it); its
// address is a random 127.x.y.z with x > 0, so no test client in 127.0.0.0/24
// posts as a member.
func newSinkApp(t *testing.T, listen, params string, ln net.Listener) (*App, *testkit.Buffer) {
	t.Helper()
	cfg, err := config.Parse("app.json", []byte(`{"StreamLoadBalancer": {"plugin_switch": "enabled", "parameters": {
		"listen": "`+listen+`", `+params+`
		"destination_ems_apiproxies": [{"enable": false, "address": "`+emsim.RandomLoopbackIPs(1)[0]+`", "apiPort": 1}]}}}`))
	if err != nil {
		t.Fatal(err)
	}
	if ln == nil {
		if ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
	}
	logs := &testkit.Buffer{}
	a, err := New(Options{Config: cfg, SinkListener: ln, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	if err := a.Start(); err != nil {
		ln.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := a.Stop(ctx); err != nil {
			t.Error(err)
		}
	})
	return a, logs
}

const serverStarted = `{"type":"serverStarted","payload":{}}`

// postFrom posts an event body to url from the local address from and
// returns the status and how long the answer took.
func postFrom(t *testing.T, url, from, body string) (int, time.Duration) {
	t.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 2 * time.Second}
	tr := &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	start := time.Now()
	resp, err := hc.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatalf("POST %s from %s: %v", url, from, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, time.Since(start)
}

func TestWarnsWhenTheSinkListensBeyondLoopbackUnguarded(t *testing.T) {
	const warning = "listens beyond loopback with neither events_token nor allowed_sources"
	tests := []struct {
		name, listen, params string
		warn                 bool
	}{
		{"all interfaces, unguarded", "0.0.0.0:4000", ``, true},
		{"an outside address, unguarded", "192.0.2.10:4000", ``, true},
		{"with a token", "0.0.0.0:4000", `"events_token": "tok",`, false},
		{"with allowed sources", "0.0.0.0:4000", `"allowed_sources": ["10.0.0.0/8"],`, false},
		{"loopback", "127.0.0.1:4000", ``, false},
		{"localhost", "localhost:4000", ``, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The sink is served on a loopback listener whatever the config
			// says; the warning is about the configured address.
			_, logs := newSinkApp(t, tt.listen, tt.params, nil)
			if got := strings.Contains(logs.String(), warning); got != tt.warn {
				t.Errorf("warning logged = %v, want %v; logs:\n%s", got, tt.warn, logs)
			}
		})
	}
}

func TestServersBoundEveryRequest(t *testing.T) {
	a, _ := newSinkApp(t, "127.0.0.1:0", `"admin_listen": "127.0.0.1:0",`, nil)
	if len(a.servers) != 2 {
		t.Fatalf("%d servers, want 2 (sink and admin)", len(a.servers))
	}
	for i, srv := range a.servers {
		if srv.ReadHeaderTimeout <= 0 || srv.ReadTimeout <= 0 || srv.WriteTimeout <= 0 || srv.IdleTimeout <= 0 || srv.MaxHeaderBytes <= 0 {
			t.Errorf("server %d: ReadHeaderTimeout %v, ReadTimeout %v, WriteTimeout %v, IdleTimeout %v, MaxHeaderBytes %d; want every one set",
				i, srv.ReadHeaderTimeout, srv.ReadTimeout, srv.WriteTimeout, srv.IdleTimeout, srv.MaxHeaderBytes)
		}
	}
	// A body past 1 MiB is refused.
	big := `{"type":"serverStarted","payload":{"x":"` + strings.Repeat("a", 1<<20) + `"}}`
	if code, _ := postFrom(t, "http://"+a.Addr()+"/evowebservices/", "127.0.0.1", big); code != http.StatusRequestEntityTooLarge {
		t.Errorf("a body of %d bytes: %d, want 413", len(big), code)
	}
}

// TestSlowHeadersDoNotStopTheSink opens connections that send their
// request headers a byte at a time (slowloris): every other POST is still
// answered at once, and the slow connections are closed after the read
// header timeout.
func TestSlowHeadersDoNotStopTheSink(t *testing.T) {
	t.Parallel()
	const slow = 300
	a, _ := newSinkApp(t, "127.0.0.1:0", ``, nil)
	url := "http://" + a.Addr() + "/evowebservices/"
	var conns []net.Conn
	for range slow {
		c, err := net.Dial("tcp", a.Addr())
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		if _, err := io.WriteString(c, "POST /evowebservices/ HTTP/1.1\r\nHost: sink\r\nX-Slow: "); err != nil {
			t.Fatal(err)
		}
	}
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	opened := time.Now()
	ctx, cancel := context.WithCancel(context.Background())
	var trickle sync.WaitGroup
	for _, c := range conns {
		trickle.Go(func() {
			for {
				select {
				case <-ctx.Done():
					return
				case <-time.After(200 * time.Millisecond):
				}
				if _, err := c.Write([]byte("a")); err != nil {
					return // closed by the server
				}
			}
		})
	}
	defer func() { cancel(); trickle.Wait() }()

	for i := range 20 {
		code, took := postFrom(t, url, "127.0.0.1", serverStarted)
		if code != http.StatusOK || took > time.Second {
			t.Errorf("POST %d while %d clients trickle their headers: %d after %v, want 200 at once", i, slow, code, took)
		}
	}
	// The server gives up on each slow client after its read header
	// timeout, whatever it keeps sending.
	limit := a.servers[0].ReadHeaderTimeout + 3*time.Second
	var closed atomic.Int64
	var readers sync.WaitGroup
	for _, c := range conns {
		readers.Go(func() {
			_ = c.SetReadDeadline(opened.Add(limit))
			if _, err := io.Copy(io.Discard, bufio.NewReader(c)); err == nil || !isTimeout(err) {
				closed.Add(1)
			}
		})
	}
	readers.Wait()
	if n := closed.Load(); n != slow {
		t.Errorf("%d of %d slow clients closed within %v of connecting, want all", n, slow, limit)
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// TestSlowBodiesFromOnePeerLeaveRoomForOthers opens more connections than
// the sink serves at once, each sending its headers and then its body a
// byte at a time, from one address: events from other addresses (the
// members') are still answered at once.
func TestSlowBodiesFromOnePeerLeaveRoomForOthers(t *testing.T) {
	t.Parallel()
	const slow = 600
	a, _ := newSinkApp(t, "127.0.0.1:0", ``, nil)
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range slow {
		c, err := net.Dial("tcp", a.Addr())
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		if _, err := fmt.Fprintf(c, "POST /evowebservices/ HTTP/1.1\r\nHost: sink\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n{", len(serverStarted)); err != nil {
			t.Fatal(err)
		}
	}
	url := "http://" + a.Addr() + "/evowebservices/"
	// Let the server take up the slow requests: the handlers block
	// reading their bodies.
	deadline := time.Now().Add(5 * time.Second)
	for {
		code, _ := postFrom(t, url, "127.0.0.1", serverStarted)
		if code == http.StatusServiceUnavailable || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	for i := range 20 {
		from := fmt.Sprintf("127.0.0.%d", 2+i%5)
		code, took := postFrom(t, url, from, serverStarted)
		if code != http.StatusOK || took > time.Second {
			t.Errorf("POST from %s while one peer holds %d slow requests: %d after %v, want 200 at once", from, slow, code, took)
		}
	}
}

// TestProxyRedirectsAreNotFollowed: an API proxy (or whoever answers in
// its place) that redirects from https to plain http must not get the
// member's credentials sent in clear text.
func TestProxyRedirectsAreNotFollowed(t *testing.T) {
	const password = "redirect-Secret-9"
	var leaked atomic.Int64
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, _, ok := r.BasicAuth(); ok {
			leaked.Add(1)
		}
		http.Error(w, "nothing here", http.StatusNotFound)
	}))
	defer plain.Close()
	tlsSrv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, plain.URL+r.URL.RequestURI(), http.StatusFound)
	}))
	defer tlsSrv.Close()
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: tlsSrv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(tlsSrv.Listener.Addr().String())
	cfg, err := config.Parse("redirect.json", []byte(`{"StreamLoadBalancer": {"plugin_switch": "enabled", "parameters": {
		"destination_ems_apiproxies": [{"enable": true, "address": "127.0.0.1", "ewsPort": `+port+`, "scheme": "https",
			"caFile": "`+caFile+`", "userName": "u", "password": "`+password+`"}]}}}`))
	if err != nil {
		t.Fatal(err)
	}
	specs, err := MemberSpecs(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = specs[0].Client.Version(ctx)
	if err == nil {
		t.Fatal("Version through a redirecting proxy succeeded; want an error")
	}
	if leaked.Load() != 0 {
		t.Errorf("the credentials were sent to the plain http address a redirect named")
	}
	if strings.Contains(err.Error(), password) {
		t.Errorf("the error shows the password: %v", err)
	}
}

// TestMalformedInputIsRefusedAndTheDaemonGoesOn posts malformed bodies to
// the sink and gives it a member answering garbage: each body gets a 400
// with a message, the member is parked with a clear error, and the daemon
// keeps serving.
func TestMalformedInputIsRefusedAndTheDaemonGoesOn(t *testing.T) {
	garbage := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, "<html>\x00\xff not an EMS envelope")
	}))
	defer garbage.Close()
	_, port, _ := net.SplitHostPort(garbage.Listener.Addr().String())
	cfg, err := config.Parse("garbage.json", []byte(`{"StreamLoadBalancer": {"plugin_switch": "enabled", "parameters": {
		"listen": "127.0.0.1:0", "destination_ems_apiproxies": [{"enable": false, "address": "127.0.0.1", "apiPort": `+port+`, "name": "g"}]}}}`))
	if err != nil {
		t.Fatal(err)
	}
	a, err := New(Options{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := a.Stop(ctx); err != nil {
			t.Error(err)
		}
	}()
	url := "http://" + a.Addr() + "/evowebservices/"
	for _, body := range []string{
		``, `null`, `[]`, `{`, `{"type":"inStreamCreated"}`, `{"type":42,"payload":{}}`,
		`{"type":"inStreamCreated","payload":{"name":""}}`,
		`{"type":"inStreamCreated","payload":{"name":"a","connectionType":1e999}}`,
		strings.Repeat("[", 100000),
		`{"type":"inStreamCreated","payload":{"name":"a","pullSettings":{"uri":["x"]}}}`,
	} {
		resp, err := http.Post(url, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		msg, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(msg), `"error"`) {
			t.Errorf("POST %.120q: %s %s, want 400 with an error message", body, resp.Status, msg)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		m := a.Controller().Snapshot().Members[0]
		if m.State == "down" && strings.Contains(m.LastError, "decode") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("member answering garbage: state %s, last_error %q; want down with a decode error", m.State, m.LastError)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if code, _ := postFrom(t, url, "127.0.0.1", serverStarted); code != http.StatusOK {
		t.Errorf("a well-formed event after all that: %d, want 200", code)
	}
	resp, err := http.Get("http://" + a.Addr() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("healthz: %s", resp.Status)
	}
}
