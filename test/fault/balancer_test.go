package fault

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"streamlb/internal/app"
	"streamlb/internal/config"
	"streamlb/internal/testkit"
)

// Timings of the balancers under test: short, so that a round of faults
// and its convergence take seconds.
const (
	resyncInterval = 2 * time.Second
	teardownGrace  = 2 * time.Second
	callTimeout    = 2 * time.Second
	retryMax       = time.Second
	groupName      = "fault"
)

// sidecarText renders the config of the sidecar beside member host: host
// is its local EMS, the other members its destinations, all direct.
func sidecarText(members []*member, host int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "{\"StreamLoadBalancer\": {\"plugin_switch\": \"enabled\", \"parameters\": {\n")
	fmt.Fprintf(&b, "  \"listen\": \"127.0.0.1:0\", \"group\": %q,\n", groupName)
	fmt.Fprintf(&b, "  \"resync_interval\": %q, \"teardown_grace\": %q,\n", resyncInterval, teardownGrace)
	h := members[host]
	fmt.Fprintf(&b, "  \"host\": {\"address\": %q, \"api\": \"http://%s:%d\", \"name\": %q, \"replicate\": %v},\n", h.ip, h.ip, apiPort, h.name, h.replicate)
	b.WriteString("  \"destination_ems_apiproxies\": [\n")
	first := true
	for i, m := range members {
		if i == host {
			continue
		}
		if !first {
			b.WriteString(",\n")
		}
		first = false
		fmt.Fprintf(&b, "    {\"enable\": false, \"address\": %q, \"name\": %q, \"replicate\": %v}", m.ip, m.name, m.replicate)
	}
	b.WriteString("\n  ]\n}}}\n")
	return b.String()
}

// configText renders the balancer's config for the members: the first
// behind its API proxy with a password file, the others direct.
func configText(members []*member, passwordFile string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "{\"StreamLoadBalancer\": {\"plugin_switch\": \"enabled\", \"parameters\": {\n")
	fmt.Fprintf(&b, "  \"listen\": \"127.0.0.1:0\", \"group\": %q,\n", groupName)
	fmt.Fprintf(&b, "  \"resync_interval\": %q, \"teardown_grace\": %q,\n", resyncInterval, teardownGrace)
	b.WriteString("  \"destination_ems_apiproxies\": [\n")
	for i, m := range members {
		if i > 0 {
			b.WriteString(",\n")
		}
		if m.proxy {
			fmt.Fprintf(&b, "    {\"enable\": true, \"authentication\": \"basic\", \"pseudoDomain\": \"apiproxy\", \"address\": %q, \"ewsPort\": %d, \"userName\": %q, \"passwordFile\": %q, \"name\": %q}",
				m.ip, ewsPort, proxyUser, passwordFile, m.name)
		} else {
			fmt.Fprintf(&b, "    {\"enable\": false, \"address\": %q, \"name\": %q, \"replicate\": %v}", m.ip, m.name, m.replicate)
		}
	}
	b.WriteString("\n  ]\n}}}\n")
	return b.String()
}

// balancer is one streamlb instance run in process. It can be killed (its
// work in flight abandoned, its state lost) and started again.
type balancer struct {
	name    string
	cfg     *config.Config
	logs    io.Writer
	removed *removals
	relay   *relay

	mu     sync.Mutex
	app    *app.App
	reg    *prometheus.Registry
	killed []*app.App // stopped abruptly; reaped by the next start or stop
	starts int
	// pulls and removals count the replica pulls and removals of the
	// lifetimes that ended.
	pulls, removals float64
}

func newBalancer(name string, cfg *config.Config, logs io.Writer, removed *removals, r *relay) *balancer {
	return &balancer{name: name, cfg: cfg, logs: logs, removed: removed, relay: r}
}

// start runs a new lifetime of the balancer and points the relay at it.
func (b *balancer) start() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.app != nil {
		return fmt.Errorf("balancer %s already running", b.name)
	}
	if err := b.reapLocked(); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	h := &recorder{inner: slog.NewJSONHandler(b.logs, &slog.HandlerOptions{Level: slog.LevelInfo}), balancer: b.name, sink: b.removed}
	logger := slog.New(h).With("balancer", b.name)
	reg := prometheus.NewRegistry()
	a, err := app.New(app.Options{
		Config: b.cfg, Logger: logger, Registry: reg, SinkListener: ln,
		CallTimeout: callTimeout, RetryBase: 100 * time.Millisecond, RetryMax: retryMax,
	})
	if err != nil {
		ln.Close()
		return err
	}
	if err := a.Start(); err != nil {
		ln.Close()
		return err
	}
	b.app, b.reg = a, reg
	b.starts++
	b.relay.setTarget(b.name, "http://"+a.Addr()+"/evowebservices/")
	return nil
}

// kill stops the balancer at once: no drain, work in flight abandoned.
func (b *balancer) kill() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.app == nil {
		return
	}
	b.relay.setTarget(b.name, "")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_ = b.app.Stop(ctx)
	b.killed = append(b.killed, b.app)
	b.endLifetimeLocked()
}

// endLifetimeLocked keeps the counts of the lifetime that ends.
func (b *balancer) endLifetimeLocked() {
	b.pulls += counterSum(b.reg, "streamlb_replica_pulls_total", nil)
	b.removals += counterSum(b.reg, "streamlb_replica_removals_total", nil)
	b.app, b.reg = nil, nil
}

// reapLocked waits for the goroutines of the killed lifetimes, which end
// on their own soon after the kill.
func (b *balancer) reapLocked() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, a := range b.killed {
		_ = a.Stop(ctx) // Stop again waits for them
	}
	b.killed = nil
	if ctx.Err() != nil {
		return fmt.Errorf("balancer %s: a killed lifetime did not end within 10s", b.name)
	}
	return nil
}

// totals returns the replica pulls and removals of every lifetime.
func (b *balancer) totals() (pulls, removals float64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	pulls, removals = b.pulls, b.removals
	if b.reg != nil {
		pulls += counterSum(b.reg, "streamlb_replica_pulls_total", nil)
		removals += counterSum(b.reg, "streamlb_replica_removals_total", nil)
	}
	return pulls, removals
}

func (b *balancer) running() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.app != nil
}

// stop stops the balancer cleanly and waits for every goroutine of every
// lifetime.
func (b *balancer) stop() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.relay.setTarget(b.name, "")
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	var errs []error
	if b.app != nil {
		if err := b.app.Stop(ctx); err != nil {
			errs = append(errs, err)
		}
		b.endLifetimeLocked()
	}
	if err := b.reapLocked(); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return fmt.Errorf("stop balancer %s: %v", b.name, errs)
	}
	return nil
}

// reload makes cfg the balancer's config: the running lifetime applies it
// with App.Reload, and the next lifetimes start with it.
func (b *balancer) reload(cfg *config.Config) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.cfg = cfg
	if b.app == nil {
		return nil
	}
	if err := b.app.Reload(cfg); err != nil {
		return fmt.Errorf("balancer %s: reload: %w", b.name, err)
	}
	return nil
}

// memberState returns the state the running lifetime's status gives
// member, and false when the balancer is not running.
func (b *balancer) memberState(member string) (string, bool) {
	b.mu.Lock()
	a := b.app
	b.mu.Unlock()
	if a == nil {
		return "", false
	}
	for _, ms := range a.Controller().Snapshot().Members {
		if ms.Name == member {
			return ms.State, true
		}
	}
	return "", true
}

// resyncs returns how many resyncs the running lifetime has completed, and
// false when the balancer is not running.
func (b *balancer) resyncs() (uint64, bool) {
	b.mu.Lock()
	reg := b.reg
	b.mu.Unlock()
	if reg == nil {
		return 0, false
	}
	mfs, err := reg.Gather()
	if err != nil {
		return 0, true
	}
	var n uint64
	for _, mf := range mfs {
		if mf.GetName() == "streamlb_resync_duration_seconds" {
			for _, m := range mf.GetMetric() {
				n += m.GetHistogram().GetSampleCount()
			}
		}
	}
	return n, true
}

// callsByLabel returns the running lifetime's pullStream and removeConfig
// calls by member, command and result.
func (b *balancer) callsByLabel() map[string]float64 {
	b.mu.Lock()
	reg := b.reg
	b.mu.Unlock()
	out := map[string]float64{}
	if reg == nil {
		return out
	}
	mfs, err := reg.Gather()
	if err != nil {
		return out
	}
	for _, mf := range mfs {
		if mf.GetName() != "streamlb_ems_calls_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if c := labels["command"]; c == "pullStream" || c == "removeConfig" {
				out[b.name+" "+labels["member"]+" "+c+" "+labels["result"]] = m.GetCounter().GetValue()
			}
		}
	}
	return out
}

// counterSum adds up the counters of family in reg whose labels include
// every pair in match.
func counterSum(reg prometheus.Gatherer, family string, match map[string]string) float64 {
	sum, _ := testkit.CounterSum(reg, family, match)
	return sum
}

// removal is one "replica removed" log line of a balancer, or one of the
// lines kept to explain removals: "replica pulled" (member, stream,
// config id), "source appeared" and "source ended" (member is the origin).
type removal struct {
	at       time.Time
	balancer string
	kind     string // the log message
	member   string
	stream   string
	reason   string
	configID uint64
}

// removals collects the replica removals every balancer logs, and the
// pulls and source transitions that explain them.
type removals struct {
	mu      sync.Mutex
	list    []removal
	context []removal
}

// note keeps a pull or a source transition.
func (r *removals) note(x removal) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.context = append(r.context, x)
}

// lines returns the kept pulls and source transitions of stream logged in
// [from, to].
func (r *removals) lines(stream string, from, to time.Time) []removal {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []removal
	for _, x := range r.context {
		if x.stream == stream && !x.at.Before(from) && !x.at.After(to) {
			out = append(out, x)
		}
	}
	return out
}

func (r *removals) add(x removal) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.list = append(r.list, x)
}

func (r *removals) since(t time.Time) []removal { return r.between(t, time.Time{}) }

// repeats returns the removals logged since t of a config that another
// balancer had removed from the same member shortly before: two
// balancers that see the same group decide the same removal, and the
// second call finds the config gone (EMS answers SUCCESS, and nothing
// changes on the member).
func (r *removals) repeats(t time.Time) []removal {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []removal
	for _, x := range r.list {
		if x.at.Before(t) {
			continue
		}
		for _, y := range r.list {
			if y.balancer != x.balancer && y.member == x.member && y.configID == x.configID &&
				y.at.Before(x.at) && x.at.Sub(y.at) < 5*time.Second {
				out = append(out, x)
				break
			}
		}
	}
	return out
}

// between returns the removals logged in [from, to); a zero to is now.
func (r *removals) between(from, to time.Time) []removal {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []removal
	for _, x := range r.list {
		if !x.at.Before(from) && (to.IsZero() || x.at.Before(to)) {
			out = append(out, x)
		}
	}
	return out
}

// recorder is a slog.Handler that passes records on and keeps the replica
// removals, with the member each is about.
type recorder struct {
	inner    slog.Handler
	attrs    []slog.Attr
	balancer string
	sink     *removals
}

func (h *recorder) Enabled(ctx context.Context, l slog.Level) bool { return h.inner.Enabled(ctx, l) }

func (h *recorder) Handle(ctx context.Context, r slog.Record) error {
	switch r.Message {
	case "replica removed", "replica pulled", "source appeared", "source ended":
		x := removal{at: r.Time, balancer: h.balancer, kind: r.Message}
		set := func(a slog.Attr) bool {
			switch a.Key {
			case "member":
				x.member = a.Value.String()
			case "stream":
				x.stream = a.Value.String()
			case "reason":
				x.reason = a.Value.String()
			case "detail":
				// "source ended (config 12)", "config 12": the reason,
				// then the config id.
				d := a.Value.String()
				if why, id, ok := strings.Cut(d, " (config "); ok {
					x.reason, d = why, strings.TrimSuffix(id, ")")
				}
				x.configID, _ = strconv.ParseUint(strings.TrimPrefix(d, "config "), 10, 64)
			}
			return true
		}
		for _, a := range h.attrs {
			set(a)
		}
		r.Attrs(set)
		if r.Message == "replica removed" {
			h.sink.add(x)
		} else {
			h.sink.note(x)
		}
	}
	return h.inner.Handle(ctx, r)
}

func (h *recorder) WithAttrs(as []slog.Attr) slog.Handler {
	return &recorder{inner: h.inner.WithAttrs(as), attrs: append(slices.Clone(h.attrs), as...), balancer: h.balancer, sink: h.sink}
}

func (h *recorder) WithGroup(name string) slog.Handler {
	return &recorder{inner: h.inner.WithGroup(name), attrs: h.attrs, balancer: h.balancer, sink: h.sink}
}
