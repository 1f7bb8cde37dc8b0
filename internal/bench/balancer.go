package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"streamlb/internal/config"
	"streamlb/internal/emsim"
)

// balancerSettings are the config keys a scenario sets.
type balancerSettings struct {
	// defaults: the production defaults of max_inflight and
	// max_pulls_per_second instead of maxInflight and no cap.
	defaults       bool
	maxInflight    int
	resyncInterval time.Duration
	teardownGrace  time.Duration
	// copies > 0 runs replication mode demand with min_copies copies, and
	// the play block on playListen, so that the balancer reads the
	// members' load (each allowing demandMaxViewers players) every poll.
	copies     int
	playListen string
	poll       time.Duration
	// memoryLimit is the process's GOMEMLIMIT; "": none.
	memoryLimit string
}

// demandMaxViewers is each member's maxViewers in mode demand.
const demandMaxViewers = 200

// balancer is streamlb run as a child process.
type balancer struct {
	proc   *child
	listen string // host:port of the event sink and admin routes
	debug  string // pprof address, when profiling
	http   *http.Client

	mu       sync.Mutex
	peakHeap float64 // MiB: largest heap at the start or end of a GC
	peakLive float64 // MiB: largest heap marked live by a GC
	gcs      int
}

// freeListen returns a listen address for the balancer: a random loopback
// address, so that no other program shares it, and a free port on it.
func freeListen() (string, error) {
	ip := emsim.RandomLoopbackIPs(1)[0]
	ln, err := net.Listen("tcp4", net.JoinHostPort(ip, "0"))
	if err != nil {
		return "", fmt.Errorf("find a free port: %w", err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr, nil
}

// balancerConfig renders the StreamLoadBalancer block for the members at
// ips, reached directly on the API port.
func balancerConfig(listen string, ips []string, s balancerSettings) string {
	var b strings.Builder
	b.WriteString("// streamlb bench: a group of emulated members\n{\"StreamLoadBalancer\": {\n  \"plugin_switch\": \"enabled\",\n  \"parameters\": {\n")
	fmt.Fprintf(&b, "    \"listen\": %q,\n    \"group\": \"bench\",\n", listen)
	fmt.Fprintf(&b, "    \"resync_interval\": %q,\n    \"teardown_grace\": %q,\n", s.resyncInterval.String(), s.teardownGrace.String())
	if !s.defaults {
		fmt.Fprintf(&b, "    \"max_inflight\": %d,\n    \"max_pulls_per_second\": 0,\n", s.maxInflight)
	}
	viewers := ""
	if s.copies > 0 {
		fmt.Fprintf(&b, "    \"replication\": {\"mode\": %q, \"min_copies\": %d},\n", config.ReplicationDemand, s.copies)
		fmt.Fprintf(&b, "    \"play\": {\"listen\": %q, \"poll_interval\": %q},\n", s.playListen, s.poll.String())
		viewers = fmt.Sprintf(", \"maxViewers\": %d", demandMaxViewers)
	}
	b.WriteString("    \"destination_ems_apiproxies\": [\n")
	for i, ip := range ips {
		fmt.Fprintf(&b, "      {\"enable\": false, \"address\": %q, \"apiPort\": %d, \"name\": %q%s},\n", ip, apiPort, memberName(i), viewers)
	}
	b.WriteString("    ],\n  },\n}}\n")
	return b.String()
}

func memberName(i int) string { return fmt.Sprintf("m%02d", i+1) }

// gcTrace matches the heap sizes of a GODEBUG=gctrace=1 line:
// "... 12->13->6 MB, 14 MB goal ...".
var gcTrace = regexp.MustCompile(`^gc \d+ @.* (\d+)->(\d+)->(\d+) MB`)

// startBalancer writes the config into dir and runs "exe run" on it, then
// waits until the balancer is ready (its first resync is done).
func startBalancer(ctx context.Context, exe, dir, listen string, ips []string, s balancerSettings, prof *profiler) (*balancer, error) {
	path := filepath.Join(dir, "streamlb-bench.json")
	if err := os.WriteFile(path, []byte(balancerConfig(listen, ips, s)), 0o600); err != nil {
		return nil, fmt.Errorf("write balancer config: %w", err)
	}
	b := &balancer{
		listen: listen,
		http:   &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 2}},
	}
	args := []string{"run", "-config", path, "-log-level", "warn"}
	debug, err := prof.debugAddr()
	if err != nil {
		return nil, err
	}
	if debug != "" {
		b.debug = debug
		args = append(args, "-debug-addr", debug)
	}
	env := []string{"GODEBUG=gctrace=1"}
	if s.memoryLimit != "" {
		env = append(env, "GOMEMLIMIT="+s.memoryLimit)
	}
	p, err := startChild("balancer", exe, args, env, b.gcLine)
	if err != nil {
		return nil, err
	}
	b.proc = p
	err = poll(ctx, 120*time.Second, 10*time.Millisecond, "balancer ready", p, func(ctx context.Context) (bool, error) {
		code, err := b.getStatus(ctx, "/readyz")
		return code == http.StatusOK, err
	})
	if err != nil {
		_ = p.stop()
		return nil, err
	}
	return b, nil
}

// gcLine records the heap sizes of a GC trace line.
func (b *balancer) gcLine(line string) bool {
	m := gcTrace.FindStringSubmatch(line)
	if m == nil {
		return strings.HasPrefix(line, "gc ") // other runtime trace lines
	}
	start, _ := strconv.ParseFloat(m[1], 64)
	end, _ := strconv.ParseFloat(m[2], 64)
	live, _ := strconv.ParseFloat(m[3], 64)
	b.mu.Lock()
	b.peakHeap = max(b.peakHeap, start, end)
	b.peakLive = max(b.peakLive, live)
	b.gcs++
	b.mu.Unlock()
	return true
}

// noteHeapNow counts the heap the balancer holds now toward its peak heap:
// a balancer that never collected (a short run, a small heap) has no GC
// trace line to read it from.
func (b *balancer) noteHeapNow() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	m, err := b.metrics(ctx)
	if err != nil {
		return // a balancer gone is reported by the RSS read
	}
	heap := sumMetric(m, "go_memstats_heap_alloc_bytes") / (1 << 20)
	b.mu.Lock()
	b.peakHeap = max(b.peakHeap, heap)
	b.mu.Unlock()
}

// heap returns the peak heap and peak live heap seen so far, in MiB.
func (b *balancer) heap() (peak, live float64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.peakHeap, b.peakLive
}

// sinkURL is where EMS members post their events.
func (b *balancer) sinkURL() string { return "http://" + b.listen + "/evowebservices/" }

func (b *balancer) getStatus(ctx context.Context, path string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+b.listen+path, nil)
	if err != nil {
		return 0, err
	}
	resp, err := b.http.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

// metrics returns the balancer's Prometheus series by their full name with
// labels, as written ("name{a=\"b\"}").
func (b *balancer) metrics(ctx context.Context) (map[string]float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+b.listen+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := b.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("read balancer metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("read balancer metrics: HTTP %d", resp.StatusCode)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		out[line[:i]] = v
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read balancer metrics: %w", err)
	}
	return out, nil
}

// sumMetric adds up the series of name whose labels contain every one of
// labels (each written as key="value").
func sumMetric(ms map[string]float64, name string, labels ...string) float64 {
	var sum float64
	for k, v := range ms {
		rest, ok := strings.CutPrefix(k, name)
		if !ok || (rest != "" && rest[0] != '{') {
			continue
		}
		all := true
		for _, l := range labels {
			if !strings.Contains(rest, l) {
				all = false
				break
			}
		}
		if all {
			sum += v
		}
	}
	return sum
}

// reload sends SIGHUP: the balancer reloads its config and resyncs.
func (b *balancer) reload() error { return b.proc.signal(syscall.SIGHUP) }

// peakRSS returns the process's peak resident set size so far.
func (b *balancer) peakRSS() (uint64, error) {
	if b.proc.exited() {
		return 0, b.proc.exitError()
	}
	return peakRSS(b.proc.pid())
}

// stop ends the balancer and returns its peak resident set size, read just
// before it was asked to stop.
func (b *balancer) stop() (uint64, error) {
	b.noteHeapNow()
	rss, rerr := b.peakRSS()
	err := b.proc.stop()
	b.http.CloseIdleConnections()
	if err == nil {
		err = rerr
	}
	return rss, err
}
