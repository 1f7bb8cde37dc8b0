package emsim

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"time"
)

// DefaultBitrate is the bitrate of every emulated stream, in bits per
// second, unless Config.Bitrate says otherwise.
const DefaultBitrate = 2_000_000

// Player user agents of the emulated viewers.
const (
	rtmpPlayerAgent = "WIN 11,1,102,55"
	rtspPlayerAgent = "LibVLC/3.0.8 (LIVE555 Streaming Media v2016.11.28)"
)

// ErrNoSuchStream is returned by SetViewers for a stream the member does
// not have.
var ErrNoSuchStream = errors.New("no such stream on this member")

// ErrConnectionLimit is returned by SetViewers when the member's
// connection limit (setConnectionsCountLimit) refused some players.
var ErrConnectionLimit = errors.New("connection limit reached")

// outStream is an outbound stream of a member: an RTMP or RTSP player, or a
// replica pull another member makes of one of its streams.
type outStream struct {
	id       uint64
	name     string // the stream it plays
	typ      string // ONR or ONP
	protocol string // "rtmp" or "rtsp" for players, "" for served pulls
	farIP    string
	farPort  int
	nearPort int
	ua       string
	created  time.Time
}

// servedKey names a pull another member makes of a stream of this one.
type servedKey struct {
	puller   string
	configID uint64
}

// servedNote tells a member that a pull of one of its streams started
// (add) or ended.
type servedNote struct {
	key  servedKey
	name string
	ua   string
	add  bool
}

// outView is the outbound part of a member's state, guarded by m.mu
// except pendOut, guarded by m.pendMu.
type outView struct {
	outs      map[uint64]*outStream
	served    map[servedKey]*outStream
	perName   map[string]map[uint64]*outStream // outbound streams by stream name, then uniqueId
	hls       map[string]int                   // HLS sessions by stream name
	hlsTotal  int                              // sum of hls
	lastPlay  uint64                           // players created, for their addresses
	connLimit int64                            // setConnectionsCountLimit; 0: none
	pendOut   []servedNote                     // pulls of m's streams started or ended elsewhere
	remote    map[string]*remoteServed         // by Cluster id, for Clusters elsewhere
}

// remoteServed is the last report of the pulls a Cluster in another
// process makes of m's streams.
type remoteServed struct {
	seen time.Time
	keys map[servedKey]struct{}
}

func newOutView() outView {
	return outView{
		outs:    make(map[uint64]*outStream),
		served:  make(map[servedKey]*outStream),
		perName: make(map[string]map[uint64]*outStream),
		hls:     make(map[string]int),
		remote:  make(map[string]*remoteServed),
	}
}

// reconcileRemote makes m's outbound streams for the pulls of the Cluster
// rep comes from match rep.
func (m *Member) reconcileRemote(rep mediaReport, now time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	prev := m.out.remote[rep.Cluster]
	cur := &remoteServed{seen: now, keys: make(map[servedKey]struct{}, len(rep.Pulls))}
	for _, p := range rep.Pulls {
		k := servedKey{puller: p.From, configID: p.ConfigID}
		cur.keys[k] = struct{}{}
		m.serveLocked(servedNote{key: k, name: p.Name, ua: p.UserAgent, add: true}, now)
	}
	if prev != nil {
		for k := range prev.keys {
			if _, ok := cur.keys[k]; !ok {
				m.serveLocked(servedNote{key: k}, now)
			}
		}
	}
	m.out.remote[rep.Cluster] = cur
}

// expireRemoteLocked ends the outbound streams of Clusters that stopped
// reporting (remoteIdle).
func (m *Member) expireRemoteLocked(now time.Time) {
	for id, r := range m.out.remote {
		if now.Sub(r.seen) <= remoteIdle {
			continue
		}
		for k := range r.keys {
			m.serveLocked(servedNote{key: k}, now)
		}
		delete(m.out.remote, id)
	}
}

// playerIP returns the address of the n-th player: 127.255.y.z, outside
// the addresses RandomLoopbackIPs gives members.
func playerIP(n uint64) string {
	n %= 254 * 254
	return "127.255." + strconv.FormatUint(1+n/254, 10) + "." + strconv.FormatUint(1+n%254, 10)
}

// SetViewers sets the number of players of stream name on m by protocol
// ("rtmp", "rtsp" or "hls"): RTMP and RTSP players are outbound streams
// (ONR, ONP) with outStreamCreated and outStreamClosed events, HLS players
// are web server sessions. count 0 removes them. It fails with
// ErrNoSuchStream when m has no inbound stream name, and with
// ErrConnectionLimit when the connection limit refused some new RTMP or
// RTSP players (those within it are added).
func (m *Member) SetViewers(name, protocol string, count int) error {
	if count < 0 {
		return errors.New("viewers: negative count")
	}
	typ := ""
	switch protocol {
	case "rtmp":
		typ = "ONR"
	case "rtsp":
		typ = "ONP"
	case "hls":
	default:
		return fmt.Errorf("viewers: protocol %q is not rtmp, rtsp or hls", protocol)
	}
	now := time.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.streams[name]; !ok {
		return fmt.Errorf("viewers of %q: %w", name, ErrNoSuchStream)
	}
	if protocol == "hls" {
		m.out.hlsTotal += count - m.out.hls[name]
		if count == 0 {
			delete(m.out.hls, name)
		} else {
			m.out.hls[name] = count
		}
		m.changedLocked()
		return nil
	}
	var have []*outStream
	for _, o := range m.out.perName[name] {
		if o.protocol == protocol {
			have = append(have, o)
		}
	}
	slices.SortFunc(have, func(a, b *outStream) int { return cmp.Compare(b.id, a.id) }) // newest first
	for len(have) > count {
		m.removeOutLocked(have[0], now)
		have = have[1:]
	}
	added := len(have)
	for ; added < count; added++ {
		if m.out.connLimit > 0 && int64(m.connectionsLocked()) >= m.out.connLimit {
			m.changedLocked()
			return fmt.Errorf("viewers of %q: %d of %d %s players: %w", name, added, count, protocol, ErrConnectionLimit)
		}
		m.out.lastPlay++
		m.lastStreamID++
		o := &outStream{
			id: m.lastStreamID, name: name, typ: typ, protocol: protocol,
			farIP: playerIP(m.out.lastPlay), farPort: ephemeralPort(m.out.lastPlay + 11),
			nearPort: 1935, ua: rtmpPlayerAgent, created: now,
		}
		if protocol == "rtsp" {
			o.nearPort, o.ua = 554, rtspPlayerAgent
		}
		m.addOutLocked(o, now)
	}
	m.changedLocked()
	return nil
}

// Viewers returns the players of stream name on m by protocol.
func (m *Member) Viewers(name string) (rtmp, rtsp, hls int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, o := range m.out.perName[name] {
		switch o.protocol {
		case "rtmp":
			rtmp++
		case "rtsp":
			rtsp++
		}
	}
	return rtmp, rtsp, m.out.hls[name]
}

func (m *Member) addOutLocked(o *outStream, now time.Time) {
	m.out.outs[o.id] = o
	byID := m.out.perName[o.name]
	if byID == nil {
		byID = make(map[uint64]*outStream)
		m.out.perName[o.name] = byID
	}
	byID[o.id] = o
	m.emitOutLocked("outStreamCreated", o, now)
}

func (m *Member) removeOutLocked(o *outStream, now time.Time) {
	if m.out.outs[o.id] != o {
		return
	}
	delete(m.out.outs, o.id)
	byID := m.out.perName[o.name]
	if delete(byID, o.id); len(byID) == 0 {
		delete(m.out.perName, o.name)
	}
	m.emitOutLocked("outStreamClosed", o, now)
}

// dropOutsLocked removes the players, HLS sessions and served pulls of
// stream name, which closed.
func (m *Member) dropOutsLocked(name string, now time.Time) {
	if n := m.out.hls[name]; n > 0 {
		m.out.hlsTotal -= n
		delete(m.out.hls, name)
	}
	byID := m.out.perName[name]
	if len(byID) == 0 {
		return
	}
	outs := slices.SortedFunc(maps.Values(byID), func(a, b *outStream) int { return cmp.Compare(a.id, b.id) })
	for _, o := range outs {
		m.removeOutLocked(o, now)
	}
	for k, o := range m.out.served {
		if o.name == name {
			delete(m.out.served, k)
		}
	}
}

// outIDsLocked returns the uniqueIds of the outbound streams of name in
// order, or nil when there are none (EMS writes null).
func (m *Member) outIDsLocked(name string) any {
	byID := m.out.perName[name]
	if len(byID) == 0 {
		return nil
	}
	return slices.Sorted(maps.Keys(byID))
}

// sortedOutsLocked returns m's outbound streams by uniqueId.
func (m *Member) sortedOutsLocked() []*outStream {
	out := make([]*outStream, 0, len(m.out.outs))
	for _, o := range m.out.outs {
		out = append(out, o)
	}
	slices.SortFunc(out, func(a, b *outStream) int { return cmp.Compare(a.id, b.id) })
	return out
}

// connectionsLocked counts m's connections as getConnectionsCount does:
// inbound and outbound streams (the web server's sessions are not EMS's).
func (m *Member) connectionsLocked() int {
	return len(m.streams) + len(m.out.outs)
}

// noteServed tells m, the source of a pull made by another member of its
// Cluster, that the pull started or ended. It only takes m's pendMu, so the
// puller may hold its own mu.
func (m *Member) noteServed(n servedNote) {
	m.pendMu.Lock()
	m.out.pendOut = append(m.out.pendOut, n)
	m.pendMu.Unlock()
	m.wake()
}

// applyServed turns the pulls others started and ended into outbound ONR
// streams of m.
func (m *Member) applyServed() {
	m.pendMu.Lock()
	notes := m.out.pendOut
	m.out.pendOut = nil
	m.pendMu.Unlock()
	if len(notes) == 0 {
		return
	}
	now := time.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, n := range notes {
		m.serveLocked(n, now)
	}
}

// serveLocked starts or ends the outbound stream of one served pull.
func (m *Member) serveLocked(n servedNote, now time.Time) {
	o := m.out.served[n.key]
	switch {
	case n.add && o == nil:
		if _, ok := m.streams[n.name]; !ok {
			return // gone already: the puller's next check ends it
		}
		m.lastStreamID++
		o = &outStream{
			id: m.lastStreamID, name: n.name, typ: "ONR",
			farIP: n.key.puller, farPort: ephemeralPort(n.key.configID + 13), nearPort: 1935,
			ua: n.ua, created: now,
		}
		m.out.served[n.key] = o
		m.addOutLocked(o, now)
		m.changedLocked()
	case !n.add && o != nil:
		delete(m.out.served, n.key)
		m.removeOutLocked(o, now)
		m.changedLocked()
	}
}

// pullerNoteLocked tells the source member of c, when it is in m's
// Cluster, that c started (add) or stopped streaming from it.
func (m *Member) pullerNoteLocked(c *pullConfig, add bool) {
	if !c.isMember {
		return
	}
	src := m.c.byIP[c.srcHost]
	if src == nil {
		return
	}
	src.noteServed(servedNote{
		key:  servedKey{puller: m.ip, configID: c.set.ConfigID},
		name: c.srcName, ua: c.set.EmulateUserAgent, add: add,
	})
}

// info returns the stream-info object of an outbound stream, shaped as
// EMS's outStreamCreated payloads and listStreams entries.
func (o *outStream) info(m *Member, now time.Time, event, closing bool) jobj {
	up := max(now.Sub(o.created), time.Millisecond)
	fresh := !closing && (event || up < time.Second)
	audio, video := mediaBlocks(fresh, up.Seconds(), m.c.cfg.Bitrate)
	audio = withoutRates(audio)
	video = withoutRates(video)
	var in any
	if st := m.streams[o.name]; st != nil && !(event && !closing) {
		in = st.id
	}
	scheme := "rtmp://" + m.ip + "/live/"
	if o.typ == "ONP" {
		scheme = "rtsp://" + m.ip + "/"
	}
	info := jobj{
		{"appName", "evostreamms"},
		{"audio", audio},
		{"bandwidth", 0},
		{"canDropFrames", true},
		{"connectionType", 0},
		{"creationTimestamp", msFloat(o.created)},
		{"farIp", o.farIP},
		{"farPort", o.farPort},
		{"inStreamUniqueId", in},
		{"ip", m.ip},
		{"name", o.name},
		{"nearIp", m.ip},
		{"nearPort", o.nearPort},
		{"port", o.nearPort},
		{"processId", m.pid},
		{"processType", "origin"},
		{"queryTimestamp", msFloat(now)},
		{"streamAlias", o.name},
		{"swfUrl", scheme + o.name},
		{"tcUrl", scheme + o.name},
		{"type", o.typ},
		{"typeNumeric", tag(o.typ)},
		{"uniqueId", o.id},
		{"upTime", float64(up.Nanoseconds()) / 1e6},
		{"userAgent", o.ua},
		{"video", video},
	}
	if event {
		info = append(info, jkv{"PID", m.pid}, jkv{"customData", nil})
	} else {
		info = append(info, jkv{"edgePid", 0})
	}
	return info
}

// withoutRates drops the EMS 2.0 rate fields, which outbound streams do
// not carry.
func withoutRates(o jobj) jobj {
	return slices.DeleteFunc(o, func(kv jkv) bool {
		return len(kv.k) > 3 && (kv.k[:3] == "ave" || (len(kv.k) > 4 && kv.k[:4] == "curr"))
	})
}

func (m *Member) emitOutLocked(typ string, o *outStream, now time.Time) {
	if !m.sendsLocked(typ) {
		return
	}
	m.emitPayloadLocked(typ, o.info(m, now, true, typ == "outStreamClosed"), now)
}

// bandwidthLocked returns m's traffic in bytes per second: every inbound
// stream in, every player, HLS session and served pull out, at the
// stream bitrate.
func (m *Member) bandwidthLocked() (in, out float64) {
	rate := float64(m.c.cfg.Bitrate) / 8
	return float64(len(m.streams)) * rate, float64(len(m.out.outs)+m.out.hlsTotal) * rate
}

func (m *Member) cmdClientsConnected(p *params) result {
	name, perr := p.optString("localStreamName", "")
	if perr != nil {
		return failure(perr.msg)
	}
	m.mu.Lock()
	n := 0
	if name == "" {
		n = len(m.out.outs)
	} else {
		n = len(m.out.perName[name])
	}
	m.mu.Unlock()
	desc := "EMS outbound client connections count"
	if name != "" {
		desc += " for the corresponding localstreamname: " + name
	}
	return success(desc, jobj{{"outboundCount", n}})
}

func (m *Member) cmdHTTPClientsConnected(p *params) result {
	group, perr := p.optString("groupName", "")
	if perr != nil {
		return failure(perr.msg)
	}
	m.mu.Lock()
	n := m.out.hlsTotal
	if group != "" {
		n = m.out.hls[group]
	}
	m.mu.Unlock()
	desc := "Number of clients connected to Evostream Web Server"
	if group != "" {
		desc += " under groupname: " + group
	}
	return success(desc, jobj{{"groupName", group}, {"httpStreamingSessionsCount", n}})
}

func (m *Member) cmdGetBandwidth() result {
	m.mu.Lock()
	in, out := m.bandwidthLocked()
	m.mu.Unlock()
	return success("Bandwidth in B/s", jobj{
		{"current", jobj{{"in", in}, {"out", out}}},
		{"max", jobj{{"in", 0.0}, {"out", 0.0}}},
	})
}

func (m *Member) cmdConnectionsCountLimit(p *params, set bool) result {
	if set {
		if p.len() == 0 {
			return failure("Syntax error. No parameters provided")
		}
		if _, ok := p.get("count"); !ok {
			return failure("Syntax error. Parameter count is invalid")
		}
	}
	n, perr := p.optInt("count", 0, 0, 1<<31-1)
	if perr != nil {
		return failure(perr.msg)
	}
	m.mu.Lock()
	if set {
		m.out.connLimit = n
	}
	cur, limit := m.connectionsLocked(), m.out.connLimit
	m.mu.Unlock()
	return success("Connection counters", jobj{{"current", cur}, {"limit", limit}})
}
