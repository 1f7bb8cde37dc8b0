package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"time"
)

// ackGrace is the teardown_grace of the ack scenario: replicas of closed
// streams stay long enough for their pull times to be collected.
const ackGrace = 10 * time.Second

// closeAfter is how old a stream must be before the mix's next
// inStreamClosed ends it; younger streams are left to finish fanning out.
const closeAfter = time.Second

// created is a stream the ack scenario published and announced.
type created struct {
	name     string
	origin   int
	seq      int       // the index of its inStreamCreated in the run
	answered time.Time // when the sink answered its inStreamCreated
}

// ack posts the event mix at the configured rate to a fresh balancer and
// measures the sink's answers and the fan-out of new streams.
func (r *runner) ack(ctx context.Context) error {
	o := r.o
	mix, err := loadMixFile(o.EventsFile)
	if err != nil {
		return err
	}
	orderMix(mix, o.MixOrder)
	r.res.EventOrder = o.MixOrder
	// The members post no events of their own: the mix is the event
	// stream, at exactly the rate asked for.
	g, err := startEmsim(ctx, o.Exe, o.Members, o.Separate, o.KeepAlive, "", r.prof)
	if err != nil {
		return err
	}
	defer g.close()
	listen, err := freeListen()
	if err != nil {
		return err
	}
	k := o.MaxInflight
	if k == 0 {
		k = 8 // the config default
	}
	r.res.AckMaxInflight = k
	b, err := startBalancer(ctx, o.Exe, r.dir, listen, g.ips, balancerSettings{
		defaults: o.Defaults,
		// The warm-up's closed streams are torn down no sooner than
		// without it.
		maxInflight: k, resyncInterval: 10 * time.Minute, teardownGrace: ackGrace + o.Warmup,
		memoryLimit: o.MemoryLimit,
	}, r.prof)
	if err != nil {
		return err
	}
	stopped := false
	defer func() {
		if !stopped {
			_, _ = b.stop()
		}
	}()

	total := int(float64(o.Rate) * o.Duration.Seconds())
	warm := int(float64(o.Rate) * o.Warmup.Seconds())
	r.progress("ack: %d events of the recorded mix (%s) at %d/s to a balancer of %d members, after %d of warm-up", total, o.MixOrder, o.Rate, o.Members, warm)
	gen, err := newGenerator(g, b.sinkURL(), mix, warm+total)
	if err != nil {
		return err
	}
	pollCtx, stopPoll := context.WithCancel(ctx)
	collector := newPullCollector(g)
	phaseStart := time.Now()
	pollDone := make(chan struct{})
	go func() {
		defer close(pollDone)
		collector.run(pollCtx, phaseStart)
	}()
	var before map[string]float64 // the balancer's metrics as the measured window starts
	if warm > 0 {
		gen.run(ctx, 0, warm, o.Rate)
		if before, err = b.metrics(ctx); err != nil {
			stopPoll()
			<-pollDone
			return err
		}
	}
	r.prof.cpu("ack", map[string]string{"balancer": b.debug, "emsim": g.debug})
	pids := []int{b.proc.pid(), os.Getpid()}
	for _, p := range g.procs {
		pids = append(pids, p.pid())
	}
	cpu0, cpuErr := readMachineCPU()
	procs0, procsErr := processesCPU(pids)
	start := time.Now()
	gen.run(ctx, warm, warm+total, o.Rate)
	procs1, err := processesCPU(pids)
	if procsErr == nil && err == nil {
		// A share of all the machine's CPUs, as busy is.
		share := func(i, j int) Rate {
			var d time.Duration
			for k := i; k < j; k++ {
				d += procs1[k] - procs0[k]
			}
			return Rate(100 * float64(d) / float64(time.Since(start)) / float64(runtime.NumCPU()))
		}
		r.res.AckCPUBalancerPct, r.res.AckCPULoadPct, r.res.AckCPUEmulatorPct = share(0, 1), share(1, 2), share(2, len(pids))
	}
	if cpu1, err := readMachineCPU(); cpuErr == nil && err == nil {
		r.res.AckCPUBusyPct, r.res.AckStealPct = cpu1.since(cpu0)
	}
	sent, lost, lat, rate := gen.results(warm, warm+total)
	_, warmLost, warmLat, _ := gen.results(0, warm)
	if err := ctx.Err(); err != nil {
		stopPoll()
		<-pollDone
		return err
	}

	// Let the last fan-outs finish, then collect every pull time.
	r.progress("ack: waiting for the fan-out of %d streams", len(gen.created))
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if collector.complete(gen.created, o.Members) {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(250 * time.Millisecond):
		}
	}
	stopPoll()
	<-pollDone
	if err := collector.collect(ctx, phaseStart); err != nil {
		return err
	}
	var measured, warmed []created
	for _, c := range gen.created {
		if c.seq < warm {
			warmed = append(warmed, c)
		} else {
			measured = append(measured, c)
		}
	}
	props, missing := collector.propagation(measured, o.Members)
	warmProps, warmMissing := collector.propagation(warmed, o.Members)

	if m, err := b.metrics(ctx); err == nil {
		bd := readBreakdown(since(m, before))
		r.res.PropagationConfirmMS, r.res.PropagationConfirmP99MS = bd.ConfirmMS, bd.ConfirmP99MS
		r.res.PropagationQueueMS, r.res.PropagationQueueP99MS = bd.QueueMS, bd.QueueP99MS
		r.res.PropagationPullMS, r.res.PropagationPullP99MS = bd.PullMS, bd.PullP99MS
	}
	r.prof.heap("ack-balancer", b.debug)
	r.prof.heap("ack-emsim", g.debug)
	r.prof.metrics("ack", b.listen)
	r.prof.wait()
	rss, err := b.stop()
	stopped = true
	r.notePeaks(b, rss)
	if err != nil {
		return err
	}

	slices.Sort(lat)
	slices.Sort(warmLat)
	slices.Sort(warmProps)
	r.res.WarmupS = Rate(o.Warmup.Seconds())
	r.res.WarmupEvents, r.res.WarmupEventsLost = int64(warm), warmLost
	r.res.WarmupAckP99MS = Millis(percentile(warmLat, 99))
	r.res.WarmupPropagationStreams, r.res.WarmupPropagationMissing = len(warmProps), warmMissing
	r.res.WarmupPropagationP99MS = Millis(percentile(warmProps, 99))
	r.res.EventsSent, r.res.EventsLost, r.res.AckRateAchieved = sent, lost, Rate(rate)
	r.res.EventMix = map[string]Rate{}
	for typ, share := range mixShares(mix) {
		r.res.EventMix[typ] = Rate(share)
	}
	r.res.AckP50MS, r.res.AckP99MS = Millis(percentile(lat, 50)), Millis(percentile(lat, 99))
	if len(lat) > 0 {
		r.res.AckMaxMS = Millis(lat[len(lat)-1])
	}
	slices.Sort(props)
	r.res.PropagationStreams, r.res.PropagationMissing = len(props), missing
	r.res.PropagationP50MS, r.res.PropagationP99MS = Millis(percentile(props, 50)), Millis(percentile(props, 99))
	if len(props) > 0 {
		r.res.PropagationMaxMS = Millis(props[len(props)-1])
	}
	r.progress("ack: p99 %.3f ms, %d lost; propagation p99 %.3f ms over %d streams",
		float64(r.res.AckP99MS), lost, float64(r.res.PropagationP99MS), len(props))
	if warm > 0 {
		r.progress("ack: the warm-up's first %d events: p99 %.3f ms, %d lost; propagation p99 %.3f ms over %d streams",
			warm, float64(r.res.WarmupAckP99MS), warmLost, float64(r.res.WarmupPropagationP99MS), len(warmProps))
	}
	r.progress("ack: the machine's CPUs %.1f%% busy, %.1f%% stolen while sending; balancer %.1f%%, emulator %.1f%%, load %.1f%%",
		float64(r.res.AckCPUBusyPct), float64(r.res.AckStealPct),
		float64(r.res.AckCPUBalancerPct), float64(r.res.AckCPUEmulatorPct), float64(r.res.AckCPULoadPct))
	r.progress("ack: mean (p99) confirmation on the origin %.1f (%.1f) ms, wait in a queue %.1f (%.1f) ms, pullStream call %.1f (%.1f) ms",
		float64(r.res.PropagationConfirmMS), float64(r.res.PropagationConfirmP99MS), float64(r.res.PropagationQueueMS),
		float64(r.res.PropagationQueueP99MS), float64(r.res.PropagationPullMS), float64(r.res.PropagationPullP99MS))
	return nil
}

func loadMixFile(path string) ([]mixEvent, error) {
	p, err := findMix(path)
	if err != nil {
		return nil, err
	}
	return loadMix(p)
}

// generator posts the mix, one new connection per event as EMS does, at a
// fixed rate whatever the answers take (an open loop).
type generator struct {
	g       *emsimGroup
	mix     []mixEvent
	addr    string // the sink's host:port
	path    string
	dialer  net.Dialer
	readers sync.Pool // *bufio.Reader

	mu       sync.Mutex
	live     []created // published and not yet closed, oldest first
	created  []created // every stream announced, with its answer time
	nextName int
	nextOrig int

	// By event, in the order sent:
	lat    []float64 // answer time in ms
	ok     []bool    // answered 200
	sent   []int64   // when it was posted (Unix ns); 0: not posted
	failed []bool    // not posted: the emulator could not be set up for it
}

// newGenerator returns a generator of n events at most.
func newGenerator(g *emsimGroup, sink string, mix []mixEvent, n int) (*generator, error) {
	u, err := url.Parse(sink)
	if err != nil {
		return nil, fmt.Errorf("event sink URL: %w", err)
	}
	gen := &generator{g: g, mix: mix, addr: u.Host, path: u.RequestURI(),
		lat: make([]float64, n), ok: make([]bool, n), sent: make([]int64, n), failed: make([]bool, n)}
	gen.dialer.KeepAlive = -1 // one event per connection: no probes to set up
	gen.readers.New = func() any { return bufio.NewReaderSize(nil, 1024) }
	return gen, nil
}

// run sends events from to to (indexes into the run, the mix taken in
// turn) at rate per second and waits for every answer.
func (gen *generator) run(ctx context.Context, from, to, rate int) {
	interval := time.Second / time.Duration(rate)
	start := time.Now().Add(20 * time.Millisecond)
	var wg sync.WaitGroup
	for i := from; i < to; i++ {
		due := start.Add(time.Duration(i-from) * interval)
		if d := time.Until(due); d > 0 {
			select {
			case <-ctx.Done():
			case <-time.After(d):
			}
		}
		if ctx.Err() != nil {
			break
		}
		ev := gen.mix[i%len(gen.mix)]
		wg.Go(func() { gen.send(ctx, i, ev) })
	}
	wg.Wait()
}

// send makes the world match one event (a stream published or ended on a
// member) and posts it.
func (gen *generator) send(ctx context.Context, i int, ev mixEvent) {
	body := ev.body
	var announced *created
	if ev.stream() {
		gen.mu.Lock()
		var c created
		closing := false
		if ev.typ == "inStreamCreated" {
			c = created{name: fmt.Sprintf("ack-%06d", gen.nextName), origin: gen.nextOrig % len(gen.g.ips), seq: i}
			gen.nextName++
			gen.nextOrig++
		} else if len(gen.live) > 0 && time.Since(gen.live[0].answered) > closeAfter && !gen.live[0].answered.IsZero() {
			c, closing = gen.live[0], true
			gen.live = gen.live[1:]
		} else {
			// Nothing old enough to end: a stale event about a stream
			// that is gone already.
			c = created{name: fmt.Sprintf("ack-gone-%06d", i), origin: i % len(gen.g.ips)}
		}
		gen.mu.Unlock()
		var err error
		switch {
		case ev.typ == "inStreamCreated":
			err = gen.g.publish(ctx, c.origin, c.name)
			announced = &c
		case closing:
			err = gen.g.unpublish(ctx, c.origin, c.name)
		}
		if err != nil {
			gen.mu.Lock()
			gen.failed[i] = true
			gen.mu.Unlock()
			return
		}
		body = ev.render(gen.g.ips[c.origin], c.name)
	}
	t0 := time.Now()
	ok := gen.post(ctx, body)
	t1 := time.Now()
	gen.mu.Lock()
	defer gen.mu.Unlock()
	gen.sent[i] = t0.UnixNano()
	gen.lat[i] = float64(t1.Sub(t0).Nanoseconds()) / 1e6
	gen.ok[i] = ok
	if announced != nil && ok {
		announced.answered = t1
		gen.created = append(gen.created, *announced)
		gen.live = append(gen.live, *announced)
	}
}

// post sends one event on a new connection, as EMS does, and reports
// whether the sink answered 200. It speaks HTTP/1.1 itself, with no
// goroutine of its own, so that the load generator disturbs the machine it
// measures as little as it can.
func (gen *generator) post(ctx context.Context, body []byte) bool {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	conn, err := gen.dialer.DialContext(ctx, "tcp", gen.addr)
	if err != nil {
		return false
	}
	defer conn.Close()
	if d, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(d)
	}
	req := make([]byte, 0, 160+len(body))
	req = append(req, "POST "+gen.path+" HTTP/1.1\r\nHost: "+gen.addr+"\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: "...)
	req = strconv.AppendInt(req, int64(len(body)), 10)
	req = append(req, "\r\n\r\n"...)
	req = append(req, body...)
	if _, err := conn.Write(req); err != nil {
		return false
	}
	br := gen.readers.Get().(*bufio.Reader)
	defer gen.readers.Put(br)
	br.Reset(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return false
	}
	_, err = io.Copy(io.Discard, resp.Body)
	return err == nil && resp.StatusCode == http.StatusOK
}

// results returns, of the events from to to, those posted, those without
// a 200 answer (or not posted because the emulator could not be set up for
// them), the answer times of the others in ms, and the rate achieved.
func (gen *generator) results(from, to int) (sent, lost int64, lat []float64, rate float64) {
	gen.mu.Lock()
	defer gen.mu.Unlock()
	var first, last int64
	for i := from; i < to; i++ {
		switch {
		case gen.failed[i]:
			sent++
			lost++
			continue
		case gen.sent[i] == 0:
			continue // not sent
		}
		sent++
		if first == 0 || gen.sent[i] < first {
			first = gen.sent[i]
		}
		last = max(last, gen.sent[i])
		if !gen.ok[i] {
			lost++
			continue
		}
		lat = append(lat, gen.lat[i])
	}
	if d := float64(last-first) / 1e9; d > 0 {
		rate = float64(sent-1) / d
	}
	return sent, lost, lat, rate
}

// pullCollector gathers, from every member, when each replica's pullStream
// was answered.
type pullCollector struct {
	g  *emsimGroup
	mu sync.Mutex
	at []map[string]int64 // by member: stream name → Unix ns
}

func newPullCollector(g *emsimGroup) *pullCollector {
	c := &pullCollector{g: g, at: make([]map[string]int64, len(g.ips))}
	for i := range c.at {
		c.at[i] = map[string]int64{}
	}
	return c
}

// run collects every second until ctx ends, so that replicas removed later
// are not missed.
func (c *pullCollector) run(ctx context.Context, since time.Time) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			// Only what is new since the last round, with a margin.
			next := time.Now().Add(-2 * time.Second)
			if c.collect(ctx, since) == nil && next.After(since) {
				since = next
			}
		}
	}
}

func (c *pullCollector) collect(ctx context.Context, since time.Time) error {
	for i := range c.g.ips {
		m, err := c.g.pulls(ctx, i, since)
		if err != nil {
			return err
		}
		c.mu.Lock()
		for name, ns := range m {
			if _, ok := c.at[i][name]; !ok {
				c.at[i][name] = ns
			}
		}
		c.mu.Unlock()
	}
	return nil
}

// complete reports whether every stream has been pulled by every other
// member, collecting once more first.
func (c *pullCollector) complete(streams []created, members int) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if c.collect(ctx, time.Time{}) != nil {
		return false
	}
	_, missing := c.propagation(streams, members)
	return missing == 0
}

// propagation returns, in ms, the time from each stream's announcement to
// the last of its pulls, and how many streams some member never pulled.
func (c *pullCollector) propagation(streams []created, members int) (ms []float64, missing int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, s := range streams {
		var last int64
		all := true
		for i := range members {
			if i == s.origin {
				continue
			}
			ns, ok := c.at[i][s.name]
			if !ok {
				all = false
				break
			}
			last = max(last, ns)
		}
		if !all {
			missing++
			continue
		}
		ms = append(ms, float64(last-s.answered.UnixNano())/1e6)
	}
	return ms, missing
}
