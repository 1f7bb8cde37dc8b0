package fault

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"streamlb/internal/ems"
)

// Ports every emulated member listens on, each on its own address.
const (
	apiPort = 7777
	ewsPort = 8888
)

// Credentials of the member behind its API proxy.
const (
	proxyUser     = "operator"
	proxyPassword = "fault-Pa55word-proxy"
)

// member is one emulated EMS run as its own emsim program, so that it can
// be killed with SIGKILL and restarted, with or without its state file.
type member struct {
	t         *testing.T
	name      string
	ip        string
	proxy     bool
	replicate bool
	statePath string
	events    string
	api       *ems.Client
	hc        *http.Client
	out       *tailBuffer

	mu        sync.Mutex
	cmd       *exec.Cmd
	done      chan struct{}
	withState bool // the running lifetime persists its configs
}

func newMember(t *testing.T, name, ip string, proxy, replicate bool, stateDir, events string, hc *http.Client) *member {
	return &member{
		t: t, name: name, ip: ip, proxy: proxy, replicate: replicate,
		statePath: stateDir + "/" + name + ".state",
		events:    events,
		api:       ems.New(ems.Endpoint{Member: name, BaseURL: "http://" + ip + ":" + strconv.Itoa(apiPort)}, hc),
		hc:        hc,
		out:       newTailBuffer(32 << 10),
	}
}

// start runs the member's program and waits until its API answers. With
// withState the member restores and persists its keepAlive configurations;
// a lifetime with state following one without starts from an empty file,
// as a server whose disk was wiped.
func (m *member) start(withState bool) error {
	m.mu.Lock()
	if m.cmd != nil {
		m.mu.Unlock()
		return fmt.Errorf("member %s: already running", m.name)
	}
	args := []string{"-ip", m.ip, "-api-port", strconv.Itoa(apiPort), "-events", m.events}
	if withState {
		if !m.withState {
			if err := os.Remove(m.statePath); err != nil && !errors.Is(err, os.ErrNotExist) {
				m.mu.Unlock()
				return err
			}
		}
		args = append(args, "-state", m.statePath)
	}
	if m.proxy {
		args = append(args, "-ews-port", strconv.Itoa(ewsPort), "-user", proxyUser, "-password", proxyPassword)
	}
	cmd := exec.Command(emsimBin, args...)
	cmd.Stdout, cmd.Stderr = m.out, m.out
	if err := cmd.Start(); err != nil {
		m.mu.Unlock()
		return fmt.Errorf("member %s: %w", m.name, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	m.cmd, m.done, m.withState = cmd, done, withState
	m.mu.Unlock()
	return m.awaitAPI(10 * time.Second)
}

func (m *member) awaitAPI(within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := m.api.Version(ctx)
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("member %s does not answer after %v: %w\n%s", m.name, within, err, m.out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// kill sends SIGKILL and waits for the program to end.
func (m *member) kill() {
	m.mu.Lock()
	cmd, done := m.cmd, m.done
	m.cmd = nil
	m.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-done
}

func (m *member) running() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.cmd != nil
}

// control posts to one of emsim's control routes.
func (m *member) control(route string, q url.Values) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	u := "http://" + m.ip + ":" + strconv.Itoa(apiPort) + "/_emsim/" + route + "?" + q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, nil)
	if err != nil {
		return err
	}
	resp, err := m.hc.Do(req)
	if err != nil {
		return fmt.Errorf("member %s: %s: %w", m.name, route, err)
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("member %s: %s: %s: %s", m.name, route, resp.Status, body)
	}
	return nil
}

func (m *member) publish(name string) error {
	return m.control("publish", url.Values{"name": {name}})
}

func (m *member) unpublish(name string) error {
	return m.control("unpublish", url.Values{"name": {name}})
}

// faults are the failures injected into a member through emsim's control
// route; the zero value is none.
type faults struct {
	latency   time.Duration
	errorRate float64
	apiDown   bool // API connections closed unanswered, media up
	down      bool // the whole member down: API, events and media
}

// setFaults replaces the member's injected faults; the zero value clears
// them.
func (m *member) setFaults(f faults) error {
	q := url.Values{}
	if f.latency > 0 {
		q.Set("latency", f.latency.String())
	}
	if f.errorRate > 0 {
		q.Set("error_rate", strconv.FormatFloat(f.errorRate, 'f', 2, 64))
	}
	if f.apiDown {
		q.Set("api_down", "1")
	}
	if f.down {
		q.Set("down", "1")
	}
	return m.control("faults", q)
}

// listing is one member's configurations and inbound streams.
type listing struct {
	configs []ems.PullConfig
	inbound map[string]bool
}

func (m *member) list() (listing, error) { return m.listWithin(5 * time.Second) }

// listWithin lists the member, giving up after d.
func (m *member) listWithin(d time.Duration) (listing, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	cfgs, err := m.api.ListConfig(ctx)
	if err != nil {
		return listing{}, err
	}
	names, err := m.api.ListInboundStreamNames(ctx)
	if err != nil {
		return listing{}, err
	}
	l := listing{configs: cfgs, inbound: make(map[string]bool, len(names))}
	for _, n := range names {
		l.inbound[n] = true
	}
	return l, nil
}

// tailBuffer keeps the last bytes written to it: a program's recent output.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func newTailBuffer(max int) *tailBuffer { return &tailBuffer{max: max} }

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if over := len(t.b) - t.max; over > 0 {
		t.b = append(t.b[:0], t.b[over:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}
