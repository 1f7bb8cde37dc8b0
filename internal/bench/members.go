package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"streamlb/internal/emsim"
	"streamlb/internal/receiver"
)

// apiPort is the EMS API port of every emulated member; each member has its
// own random loopback address.
const apiPort = 7777

// emsimGroup is the emulated members of one scenario, in one child process
// or one per member.
type emsimGroup struct {
	ips   []string
	procs []*child // one, or one per member
	ctl   *http.Client
	debug string // pprof address of the first process, when profiling
}

// memberStats is a member's /_emsim/stats answer.
type memberStats struct {
	IP          string           `json:"ip"`
	Streams     int              `json:"streams"`
	PullConfigs int              `json:"pull_configs"`
	Calls       map[string]int64 `json:"calls"`
	LastPullNS  int64            `json:"last_pull_unix_nano"`
	EventsSent  int64            `json:"events_sent"`
	EventsFail  int64            `json:"events_failed"`
	EventsDrop  int64            `json:"events_dropped"`
}

func (s memberStats) totalCalls() int64 {
	var n int64
	for _, v := range s.Calls {
		n += v
	}
	return n
}

// loadCalls are the commands of the balancer's load polling (the play
// block, in mode demand), lowercased as in memberStats.Calls.
var loadCalls = []string{"liststreams", "getbandwidth", "httpclientsconnected", "clientsconnected", "getconnectionscount", "getconnectionscountlimit"}

// workCalls counts the calls answered but for load polling: the calls of
// replication and resync.
func (s memberStats) workCalls() int64 {
	n := s.totalCalls()
	for _, c := range loadCalls {
		n -= s.Calls[c]
	}
	return n
}

// startEmsim starts n members on random loopback addresses, posting their
// events to eventsURL ("": no events), and waits until every one answers.
func startEmsim(ctx context.Context, exe string, n int, separate, keepAlive bool, eventsURL string, prof *profiler) (*emsimGroup, error) {
	debug, err := prof.debugAddr()
	if err != nil {
		return nil, err
	}
	g := &emsimGroup{
		debug: debug,
		ips:   emsim.RandomLoopbackIPs(n),
		ctl:   &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 4}},
	}
	args := func(ip string, members int) []string {
		a := []string{"emsim"}
		if debug != "" && ip == g.ips[0] {
			a = append(a, "-debug-addr", debug)
		}
		a = append(a, "-ip", ip, "-members", strconv.Itoa(members), "-api-port", strconv.Itoa(apiPort), "-log-level", "warn")
		if eventsURL != "" {
			// The sink's configuration README.md gives.
			a = append(a, "-events", eventsURL, "-enabled-events", strings.Join(receiver.ActedOn(), ","))
		}
		if keepAlive {
			a = append(a, "-keep-alive")
		}
		return a
	}
	if separate {
		for _, ip := range g.ips {
			p, err := startChild("emsim "+ip, exe, args(ip, 1), nil, nil)
			if err != nil {
				g.close()
				return nil, err
			}
			g.procs = append(g.procs, p)
		}
	} else {
		p, err := startChild("emsim", exe, args(g.ips[0], n), nil, nil)
		if err != nil {
			return nil, err
		}
		g.procs = append(g.procs, p)
	}
	for i := range g.ips {
		err := poll(ctx, 20*time.Second, 20*time.Millisecond, "emulated member "+g.ips[i]+" answers", g.proc(i),
			func(ctx context.Context) (bool, error) {
				_, err := g.stats(ctx, i)
				return err == nil, err
			})
		if err != nil {
			g.close()
			return nil, err
		}
	}
	return g, nil
}

// proc returns the process holding member i.
func (g *emsimGroup) proc(i int) *child {
	if len(g.procs) == 1 {
		return g.procs[0]
	}
	return g.procs[i]
}

// close stops every process.
func (g *emsimGroup) close() {
	for _, p := range g.procs {
		_ = p.stop()
	}
	g.ctl.CloseIdleConnections()
}

func (g *emsimGroup) base(i int) string {
	return "http://" + net.JoinHostPort(g.ips[i], strconv.Itoa(apiPort))
}

// control posts to a control route of member i.
func (g *emsimGroup) control(ctx context.Context, i int, route string, q url.Values) error {
	u := g.base(i) + "/_emsim/" + route
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, nil)
	if err != nil {
		return fmt.Errorf("%s on %s: %w", route, g.ips[i], err)
	}
	resp, err := g.ctl.Do(req)
	if err != nil {
		return fmt.Errorf("%s on %s: %w", route, g.ips[i], err)
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s on %s: HTTP %d: %s", route, g.ips[i], resp.StatusCode, strings.TrimSpace(string(body)))
	}
	return nil
}

// collect runs a garbage collection in every emulator process and returns
// when they are done. At 50,000 streams × 16 members the emulator holds a
// heap of 2 GiB, and a cycle of its collector costs seconds of CPU: one
// left running from the burst took most of a core through the resync
// measured after it.
func (g *emsimGroup) collect(ctx context.Context) error {
	step := 1
	if len(g.procs) == 1 {
		step = len(g.ips)
	}
	for i := 0; i < len(g.ips); i += step {
		if err := g.control(ctx, i, "gc", nil); err != nil {
			return err
		}
	}
	return nil
}

// get decodes the answer of a GET control route of member i into v.
func (g *emsimGroup) get(ctx context.Context, i int, route string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, g.base(i)+"/_emsim/"+route, nil)
	if err != nil {
		return fmt.Errorf("%s on %s: %w", route, g.ips[i], err)
	}
	resp, err := g.ctl.Do(req)
	if err != nil {
		return fmt.Errorf("%s on %s: %w", route, g.ips[i], err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s on %s: HTTP %d", route, g.ips[i], resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return fmt.Errorf("%s on %s: %w", route, g.ips[i], err)
	}
	return nil
}

func (g *emsimGroup) stats(ctx context.Context, i int) (memberStats, error) {
	var s memberStats
	err := g.get(ctx, i, "stats", &s)
	return s, err
}

// allStats returns every member's stats.
func (g *emsimGroup) allStats(ctx context.Context) ([]memberStats, error) {
	out := make([]memberStats, len(g.ips))
	for i := range g.ips {
		s, err := g.stats(ctx, i)
		if err != nil {
			return nil, err
		}
		out[i] = s
	}
	return out, nil
}

// pulls returns when member i answered the pullStream of each of its pull
// configurations created after since.
func (g *emsimGroup) pulls(ctx context.Context, i int, since time.Time) (map[string]int64, error) {
	out := map[string]int64{}
	err := g.get(ctx, i, "pulls?since="+strconv.FormatInt(since.UnixNano(), 10), &out)
	return out, err
}

func (g *emsimGroup) publish(ctx context.Context, i int, name string) error {
	return g.control(ctx, i, "publish", url.Values{"name": {name}})
}

func (g *emsimGroup) unpublish(ctx context.Context, i int, name string) error {
	return g.control(ctx, i, "unpublish", url.Values{"name": {name}})
}

func (g *emsimGroup) publishMany(ctx context.Context, i int, prefix string, n int) error {
	return g.control(ctx, i, "publish", url.Values{"prefix": {prefix}, "count": {strconv.Itoa(n)}})
}

func (g *emsimGroup) restart(ctx context.Context, i int) error {
	return g.control(ctx, i, "restart", nil)
}

// exitErr returns the error of a member process that has ended, or nil.
func (g *emsimGroup) exitErr() error {
	for _, p := range g.procs {
		if p.exited() {
			return p.exitError()
		}
	}
	return nil
}
