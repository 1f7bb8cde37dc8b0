package controller

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"streamlb/internal/ems"
)

// fakeGroup is an in-memory group of EMS members for the controller's
// timing tests, which run inside synctest bubbles where real sockets do not
// belong. The HTTP path is covered against the emulator by the e2e suite.
type fakeGroup struct {
	mu      sync.Mutex
	members map[string]*fakeEMS // by address
	nextID  uint64
}

type fakeEMS struct {
	g       *fakeGroup
	addr    string
	sources map[string]bool    // published or externally pulled streams
	created map[string]float64 // creationTimestamp of each source, ms
	configs map[uint64]ems.PullConfig
	down    bool
	unauth  bool
	// infoFails makes getStreamInfo answer a FAIL that is not "not found".
	infoFails bool
	// undecodable is how many listConfig entries that do not decode the
	// member answers besides its configs.
	undecodable int
	cut         bool // pulls from other members cannot connect
	calls       map[string]int
	// latency is how long a call of each command takes (fake time);
	// inflight and peak count the calls in flight, and overlaps the
	// getStreamInfo calls in flight at once with a listing of the inbound
	// streams.
	latency  map[string]time.Duration
	inflight map[string]int
	peak     map[string]int
	overlaps int
}

func newFakeGroup(addrs ...string) *fakeGroup {
	g := &fakeGroup{members: make(map[string]*fakeEMS)}
	for _, a := range addrs {
		g.members[a] = &fakeEMS{g: g, addr: a, sources: map[string]bool{}, created: map[string]float64{}, configs: map[uint64]ems.PullConfig{}, calls: map[string]int{},
			latency: map[string]time.Duration{}, inflight: map[string]int{}, peak: map[string]int{}}
	}
	return g
}

func (g *fakeGroup) m(addr string) *fakeEMS { return g.members[addr] }

func (g *fakeGroup) specs(names ...string) []MemberSpec {
	var out []MemberSpec
	for i, n := range names {
		addr := fmt.Sprintf("127.0.0.%d", i+1)
		out = append(out, MemberSpec{Name: n, Address: addr, API: "direct", Replicate: true, Client: g.members[addr]})
	}
	return out
}

func (f *fakeEMS) publish(name string) {
	f.g.mu.Lock()
	defer f.g.mu.Unlock()
	f.sources[name] = true
	f.created[name] = float64(time.Now().UnixNano()) / 1e6
}

func (f *fakeEMS) unpublish(name string) {
	f.g.mu.Lock()
	defer f.g.mu.Unlock()
	delete(f.sources, name)
}

func (f *fakeEMS) setDown(down bool) {
	f.g.mu.Lock()
	defer f.g.mu.Unlock()
	f.down = down
}

// addConfig stores a pull config as somebody else (or the original plugin)
// would have made it.
func (f *fakeEMS) addConfig(name, uri string, vars map[string]string) uint64 {
	f.g.mu.Lock()
	defer f.g.mu.Unlock()
	f.g.nextID++
	f.configs[f.g.nextID] = ems.PullConfig{ConfigID: f.g.nextID, LocalStreamName: name, URI: uri, KeepAlive: true, Vars: vars}
	return f.g.nextID
}

func (f *fakeEMS) count(cmd string) int {
	f.g.mu.Lock()
	defer f.g.mu.Unlock()
	return f.calls[cmd]
}

// inflightCount returns how many calls of cmd are in flight.
func (f *fakeEMS) inflightCount(cmd string) int {
	f.g.mu.Lock()
	defer f.g.mu.Unlock()
	return f.inflight[cmd]
}

// replicas returns name → uri of the member's pull configs.
func (f *fakeEMS) replicas() map[string]string {
	f.g.mu.Lock()
	defer f.g.mu.Unlock()
	out := map[string]string{}
	for _, c := range f.configs {
		out[c.LocalStreamName] = c.URI
	}
	return out
}

// begin marks a call of cmd in flight for as long as its latency; the
// call ends with the function it returns.
func (f *fakeEMS) begin(cmd string) (end func()) {
	f.g.mu.Lock()
	f.inflight[cmd]++
	f.peak[cmd] = max(f.peak[cmd], f.inflight[cmd])
	if f.inflight["getStreamInfo"] > 0 && f.inflight["listInboundStreamNames"] > 0 {
		f.overlaps++
	}
	d := f.latency[cmd]
	f.g.mu.Unlock()
	time.Sleep(d)
	return func() {
		f.g.mu.Lock()
		f.inflight[cmd]--
		f.g.mu.Unlock()
	}
}

// setLatency makes every call of cmd take d.
func (f *fakeEMS) setLatency(cmd string, d time.Duration) {
	f.g.mu.Lock()
	defer f.g.mu.Unlock()
	f.latency[cmd] = d
}

// stats returns the most calls of cmd seen in flight at once, and how
// many times a getStreamInfo call and a listing were.
func (f *fakeEMS) stats(cmd string) (peak, overlaps int) {
	f.g.mu.Lock()
	defer f.g.mu.Unlock()
	return f.peak[cmd], f.overlaps
}

func (f *fakeEMS) enter(cmd string) error {
	f.calls[cmd]++
	if f.down {
		return &ems.Error{Member: f.addr, Command: cmd, Kind: ems.KindTransport, Err: fmt.Errorf("connection refused")}
	}
	if f.unauth {
		return &ems.Error{Member: f.addr, Command: cmd, Kind: ems.KindUnauthorized, StatusCode: 401}
	}
	return nil
}

// streamingLocked reports whether a pull of uri on f would stream now. A
// chain of pulls longer than the group (a loop) never streams.
func (f *fakeEMS) streamingLocked(uri string) bool { return f.streamingDepth(uri, len(f.g.members)) }

func (f *fakeEMS) streamingDepth(uri string, depth int) bool {
	if depth == 0 {
		return false
	}
	rest, ok := strings.CutPrefix(uri, "rtmp://")
	if !ok {
		return false
	}
	host, path, _ := strings.Cut(rest, "/")
	up := f.g.members[host]
	if up == nil {
		return true // an external camera
	}
	_, name, _ := strings.Cut(path, "/")
	return !f.cut && !up.down && up.inboundDepth(depth - 1)[name]
}

func (f *fakeEMS) inboundLocked() map[string]bool { return f.inboundDepth(len(f.g.members)) }

func (f *fakeEMS) inboundDepth(depth int) map[string]bool {
	in := maps.Clone(f.sources)
	for _, c := range f.configs {
		if f.streamingDepth(c.URI, depth) {
			in[c.LocalStreamName] = true
		}
	}
	return in
}

func (f *fakeEMS) Version(context.Context) (ems.Version, error) {
	f.g.mu.Lock()
	defer f.g.mu.Unlock()
	return ems.Version{ReleaseNumber: "2.0.0"}, f.enter("version")
}

func (f *fakeEMS) PullStream(_ context.Context, req ems.PullRequest) (ems.PullResult, error) {
	f.g.mu.Lock()
	defer f.g.mu.Unlock()
	if err := f.enter("pullStream"); err != nil {
		return ems.PullResult{}, err
	}
	for _, c := range f.configs {
		if c.LocalStreamName == req.LocalStreamName {
			return ems.PullResult{}, &ems.Error{Member: f.addr, Command: "pullStream", Kind: ems.KindFail, Description: "Stream name " + req.LocalStreamName + " already taken"}
		}
	}
	if f.sources[req.LocalStreamName] {
		return ems.PullResult{}, &ems.Error{Member: f.addr, Command: "pullStream", Kind: ems.KindFail, Description: "Stream name " + req.LocalStreamName + " already taken"}
	}
	f.g.nextID++
	f.configs[f.g.nextID] = ems.PullConfig{ConfigID: f.g.nextID, LocalStreamName: req.LocalStreamName, URI: req.URI, KeepAlive: *req.KeepAlive, Vars: maps.Clone(req.Vars)}
	return ems.PullResult{ConfigID: f.g.nextID, LocalStreamName: req.LocalStreamName, URI: req.URI}, nil
}

// EachPullConfigSkipping lists the configs as the production client hands
// them over: one at a time, the struct reused, undecodable entries passed
// to skip.
func (f *fakeEMS) EachPullConfigSkipping(ctx context.Context, fn func(*ems.PullConfig) error, skip func(error)) error {
	defer f.begin("listConfig")()
	configs, err := f.listConfig(ctx)
	if err != nil {
		return err
	}
	f.g.mu.Lock()
	bad := f.undecodable
	f.g.mu.Unlock()
	for range bad {
		skip(fmt.Errorf("decode listConfig entry: configId: not a number"))
	}
	var pc ems.PullConfig
	for _, c := range configs {
		pc = c
		if err := fn(&pc); err != nil {
			return err
		}
		pc = ems.PullConfig{ConfigID: 999999, LocalStreamName: "reused", URI: "rtmp://reused/"} // fn must have copied
	}
	return nil
}

func (f *fakeEMS) listConfig(context.Context) ([]ems.PullConfig, error) {
	f.g.mu.Lock()
	defer f.g.mu.Unlock()
	if err := f.enter("listConfig"); err != nil {
		return nil, err
	}
	var out []ems.PullConfig
	for _, id := range slices.Sorted(maps.Keys(f.configs)) {
		c := f.configs[id]
		c.Status.Code = ems.PullStatusStreaming
		if !f.streamingLocked(c.URI) {
			c.Status.Code = ems.PullStatusConnectionFailed
		}
		out = append(out, c)
	}
	return out, nil
}

func (f *fakeEMS) ListInboundStreamNames(context.Context) ([]string, error) {
	defer f.begin("listInboundStreamNames")()
	f.g.mu.Lock()
	defer f.g.mu.Unlock()
	if err := f.enter("listInboundStreamNames"); err != nil {
		return nil, err
	}
	return slices.Sorted(maps.Keys(f.inboundLocked())), nil
}

func (f *fakeEMS) GetStreamInfo(_ context.Context, name string) (ems.StreamInfo, error) {
	defer f.begin("getStreamInfo")()
	f.g.mu.Lock()
	defer f.g.mu.Unlock()
	if err := f.enter("getStreamInfo"); err != nil {
		return ems.StreamInfo{}, err
	}
	if f.infoFails {
		return ems.StreamInfo{}, &ems.Error{Member: f.addr, Command: "getStreamInfo", Kind: ems.KindFail, Description: "Syntax error. Parameter localStreamName is invalid"}
	}
	if !f.inboundLocked()[name] {
		return ems.StreamInfo{}, &ems.Error{Member: f.addr, Command: "getStreamInfo", Kind: ems.KindFail, Description: "Stream " + name + " not found"}
	}
	info := ems.StreamInfo{Name: name, Type: "INR", Created: f.created[name]}
	for _, c := range f.configs {
		if c.LocalStreamName == name {
			pc := c
			info.PullSettings, info.ConnectionType = &pc, ems.ConnectionPulled
		}
	}
	return info, nil
}

func (f *fakeEMS) RemoveConfig(_ context.Context, id uint64) error {
	f.g.mu.Lock()
	defer f.g.mu.Unlock()
	if err := f.enter("removeConfig"); err != nil {
		return err
	}
	delete(f.configs, id)
	return nil
}
