package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// ScenarioStatus measures what reading the status costs the balancer of
// the burst's converged group: a full GET /api/v1/status, the controller's
// lock held by a status build, and the balancer's CPU while one dashboard
// is open.
const ScenarioStatus = "status"

const (
	// statusGets is how many full status documents the scenario reads.
	statusGets = 15
	// dashboardWindow is how long the dashboard's polling is measured,
	// and before it the balancer's idle CPU.
	dashboardWindow = 20 * time.Second
	// dashboardPeriod and dashboardQuery are the page's status poll
	// (dashboard.js: PERIOD, statusURL).
	dashboardPeriod = 2 * time.Second
	dashboardQuery  = "/api/v1/status?attention=1&limit=50"
	// statusLockGauge is the controller's longest lock hold by the last
	// status build.
	statusLockGauge = "streamlb_status_build_lock_seconds"
	// clockTicks is the unit of /proc/PID/stat's CPU times (USER_HZ).
	clockTicks = 100
)

// status runs the status scenario on the converged group l.
func (r *runner) status(ctx context.Context, l *liveGroup) error {
	if err := quiesce(ctx, l); err != nil {
		return err
	}
	b := l.b
	r.progress("status: %d full status documents of %d streams × %d members, then a full rebuild after a pause and one after a reload", statusGets, r.o.Streams, r.o.Members)
	r.prof.cpu("status", map[string]string{"balancer": b.debug, "emsim": l.g.debug})
	var times []float64
	var maxLock float64
	var size int64
	read := func() error {
		start := time.Now()
		n, err := b.get(ctx, "/api/v1/status", io.Discard)
		if err != nil {
			return err
		}
		times = append(times, float64(time.Since(start))/float64(time.Millisecond))
		size = n
		m, err := b.metrics(ctx)
		if err != nil {
			return err
		}
		maxLock = max(maxLock, sumMetric(m, statusLockGauge))
		return nil
	}
	for range statusGets {
		if err := read(); err != nil {
			return err
		}
	}
	// A cold build: pausing a member makes every row of the status stale,
	// and the next build recomputes them all, the most a build holds the
	// lock. The group is otherwise quiet.
	pause := memberName(r.o.Members - 1)
	if err := b.post(ctx, "/api/v1/members/"+pause+"/pause"); err != nil {
		return err
	}
	if err := read(); err != nil {
		return err
	}
	if err := b.post(ctx, "/api/v1/members/"+pause+"/resume"); err != nil {
		return err
	}
	if err := quiesce(ctx, l); err != nil {
		return err
	}
	// A reload makes every row stale too, and starts a resync that keeps
	// both cores busy: the builds made meanwhile (every metrics scrape
	// makes one) are reported on their own, for a thread holding the
	// lock is then descheduled by the system whatever it does.
	m0, err := b.metrics(ctx)
	if err != nil {
		return err
	}
	if err := b.reload(); err != nil {
		return err
	}
	var resyncLock float64
	err = poll(ctx, time.Minute, 100*time.Millisecond, "the reload's resync", b.proc, func(ctx context.Context) (bool, error) {
		m, err := b.metrics(ctx)
		if err != nil {
			return false, err
		}
		resyncLock = max(resyncLock, sumMetric(m, statusLockGauge))
		return sumMetric(m, resyncCount) > sumMetric(m0, resyncCount), nil
	})
	if err != nil {
		return err
	}
	if err := quiesce(ctx, l); err != nil {
		return err
	}
	if err := read(); err != nil {
		return err
	}
	r.res.StatusLockResyncMS = Millis(resyncLock * 1000)
	r.prof.wait()
	slices.Sort(times)
	r.res.StatusMS = Millis(percentile(times, 50))
	r.res.StatusMaxMS = Millis(times[len(times)-1])
	r.res.StatusBytes = size
	r.res.StatusLockMS = Millis(maxLock * 1000)
	r.progress("status: p50 %.1f ms, max %.1f ms for %d bytes; longest lock hold by a build %.3f ms (%.3f ms during a resync)",
		float64(r.res.StatusMS), float64(r.res.StatusMaxMS), size, float64(r.res.StatusLockMS), float64(r.res.StatusLockResyncMS))

	// The balancer's CPU with nobody watching, then with one dashboard.
	pid := b.proc.pid()
	r.progress("status: the balancer's CPU over %v idle, then over %v with a dashboard open", dashboardWindow, dashboardWindow)
	idle, err := cpuShare(ctx, pid, dashboardWindow, nil)
	if err != nil {
		return err
	}
	r.res.DashboardIdleCPUPct = Rate(idle)
	r.prof.cpu("dashboard", map[string]string{"balancer": b.debug, "emsim": l.g.debug})
	busy, err := cpuShare(ctx, pid, dashboardWindow, func(ctx context.Context) error { return r.dashboard(ctx, b) })
	if err != nil {
		return err
	}
	r.prof.wait()
	r.res.DashboardCPUPct = Rate(busy)
	r.progress("status: balancer CPU %.2f%% of one core with a dashboard open (%.2f%% idle)", busy, idle)
	return nil
}

// dashboard does what one open dashboard does until ctx ends: it follows
// the journal's event stream and polls the page's status query.
func (r *runner) dashboard(ctx context.Context, b *balancer) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+b.listen+"/api/v1/events/stream", nil)
	if err != nil {
		return err
	}
	sse := &http.Client{Transport: &http.Transport{Proxy: nil}} // no timeout: the stream stays open
	resp, err := sse.Do(req)
	if err != nil {
		return fmt.Errorf("open the event stream: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return fmt.Errorf("open the event stream: HTTP %d", resp.StatusCode)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = io.Copy(io.Discard, resp.Body)
	}()
	defer func() { resp.Body.Close(); <-done; sse.CloseIdleConnections() }()
	t := time.NewTicker(dashboardPeriod)
	defer t.Stop()
	for {
		if _, err := b.get(ctx, dashboardQuery, io.Discard); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// cpuShare runs load (nil: nothing) for window and returns the CPU time
// process pid used meanwhile, in percent of one core.
func cpuShare(ctx context.Context, pid int, window time.Duration, load func(context.Context) error) (float64, error) {
	c0, err := cpuTime(pid)
	if err != nil {
		return 0, err
	}
	start := time.Now()
	wctx, cancel := context.WithTimeout(ctx, window)
	defer cancel()
	if load != nil {
		if err := load(wctx); err != nil {
			return 0, err
		}
	}
	<-wctx.Done()
	if ctx.Err() != nil {
		return 0, ctx.Err()
	}
	c1, err := cpuTime(pid)
	if err != nil {
		return 0, err
	}
	return 100 * float64(c1-c0) / float64(time.Since(start)), nil
}

// processesCPU returns the CPU time of each process in pids.
func processesCPU(pids []int) ([]time.Duration, error) {
	out := make([]time.Duration, len(pids))
	for i, pid := range pids {
		d, err := cpuTime(pid)
		if err != nil {
			return nil, err
		}
		out[i] = d
	}
	return out, nil
}

// cpuTime returns the user and system CPU time process pid has used, from
// /proc (Linux).
func cpuTime(pid int) (time.Duration, error) {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, fmt.Errorf("read the CPU time of process %d (Linux only): %w", pid, err)
	}
	defer f.Close()
	line, err := bufio.NewReader(f).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return 0, fmt.Errorf("read the CPU time of process %d: %w", pid, err)
	}
	// The command name, in parentheses, may hold spaces: fields count
	// from after it. utime and stime are fields 14 and 15.
	i := strings.LastIndexByte(line, ')')
	if i < 0 {
		return 0, fmt.Errorf("read the CPU time of process %d: unexpected /proc/%d/stat", pid, pid)
	}
	f2 := strings.Fields(line[i+1:])
	if len(f2) < 13 {
		return 0, fmt.Errorf("read the CPU time of process %d: unexpected /proc/%d/stat", pid, pid)
	}
	var ticks int64
	for _, s := range f2[11:13] {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("read the CPU time of process %d: %w", pid, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / clockTicks, nil
}

// post sends an empty POST to path on the balancer's listener.
func (b *balancer) post(ctx context.Context, path string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+b.listen+path, nil)
	if err != nil {
		return err
	}
	resp, err := b.http.Do(req)
	if err != nil {
		return fmt.Errorf("POST %s: %w", path, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("POST %s: HTTP %d", path, resp.StatusCode)
	}
	return nil
}

// get reads path from the balancer into w and returns the body's size.
func (b *balancer) get(ctx context.Context, path string, w io.Writer) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+b.listen+path, nil)
	if err != nil {
		return 0, err
	}
	resp, err := b.http.Do(req)
	if err != nil {
		return 0, fmt.Errorf("GET %s: %w", path, err)
	}
	defer resp.Body.Close()
	n, err := io.Copy(w, resp.Body)
	if err != nil {
		return n, fmt.Errorf("GET %s: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return n, fmt.Errorf("GET %s: HTTP %d", path, resp.StatusCode)
	}
	return n, nil
}
