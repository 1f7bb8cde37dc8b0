package emsim

import (
	"cmp"
	"slices"
	"strconv"
	"time"
)

const (
	emuRelease = "2.0.0"
	emuBuild   = "5580"
	emuHash    = "0000000000000000000000000000000000000000"
	emuCode    = "QBert"
	emuBuilt   = "2017-12-05T10:11:36.000"
)

// versionFields returns the data of the version command, shaped like EMS
// 2.0's; the banner names the emulator.
func versionFields() jobj {
	return jobj{
		{"banner", "EvoStream Media Server (www.evostream.com) version " + emuRelease + " build " + emuBuild +
			" with hash: " + emuHash + " on branch: emsim - " + emuCode + " - (emulated by emsim on " + emuBuilt + ")"},
		{"branchName", "emsim"},
		{"buildDate", emuBuilt},
		{"buildNumber", emuBuild},
		{"codeName", emuCode},
		{"hash", emuHash},
		{"releaseNumber", emuRelease},
	}
}

func versionData() []byte { return appendJSON(nil, versionFields()) }

func (m *Member) cmdGetServerInfo() result {
	m.mu.Lock()
	n, conns := len(m.streams)+len(m.out.outs), m.connectionsLocked()
	m.mu.Unlock()
	o := versionFields()
	acceptors := []any{jobj{
		{"ip", m.ip}, {"port", m.c.cfg.APIPort}, {"protocol", "inboundHttpJsonCli"},
		{"sslCert", ""}, {"sslKey", ""},
	}}
	o = append(o,
		jkv{"Server IP", m.ip},
		jkv{"acceptors", acceptors},
		jkv{"connectionsCount", conns},
		jkv{"mediafolder", "./media/"},
		jkv{"streamsCount", n},
	)
	return success("Server information:", o)
}

func (m *Member) cmdPullStream(p *params) result {
	if p.len() == 0 {
		return failure("Syntax error. No parameters provided")
	}
	set, u, perr := pullSettingsFromParams(p)
	if perr != nil {
		return failure(perr.msg)
	}
	now := time.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	name := set.LocalStreamName
	if _, taken := m.streams[name]; taken {
		return failure("Stream name " + name + " already taken")
	}
	if _, taken := m.configByName[name]; taken {
		return failure("Stream name " + name + " already taken")
	}
	m.lastConfigID++
	set.ConfigID = m.lastConfigID
	c := m.addConfigLocked(set, u, now)
	c.pulledAt, m.lastPull = now, now
	m.log.Debug("pull enqueued", "stream", name, "config_id", set.ConfigID, "uri", redactURI(set.URI))
	return success("Stream "+set.URI+" enqueued for pulling", jfunc(func(b []byte) []byte { return set.appendJSON(b, viewResponse, &u) }))
}

// sortedStreamsLocked returns m's inbound streams by uniqueId.
func (m *Member) sortedStreamsLocked() []*stream {
	out := make([]*stream, 0, len(m.streams))
	m.eachStreamLocked(func(st *stream) { out = append(out, st) })
	return out
}

// eachStreamLocked calls fn with each of m's inbound streams by uniqueId.
func (m *Member) eachStreamLocked(fn func(st *stream)) {
	if len(m.byID) > 2*len(m.streams)+64 {
		// Drop the closed streams: most of the list is gone.
		m.byID = slices.DeleteFunc(m.byID, func(st *stream) bool { return m.streams[st.name] != st })
	}
	if !slices.IsSortedFunc(m.byID, func(a, b *stream) int { return cmp.Compare(a.id, b.id) }) {
		slices.SortFunc(m.byID, func(a, b *stream) int { return cmp.Compare(a.id, b.id) })
	}
	for _, st := range m.byID {
		if m.streams[st.name] == st {
			fn(st)
		}
	}
}

// cmdListStreams lists m's inbound streams and, when outbound, its
// outbound streams (players and served pulls), by uniqueId.
func (m *Member) cmdListStreams(desc string, outbound bool) result {
	now := time.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	var outs []*outStream
	if outbound {
		outs = m.sortedOutsLocked()
	}
	if len(m.streams)+len(outs) == 0 {
		return success(desc, nil)
	}
	list := make([]jobj, 0, len(m.streams)+len(outs))
	for _, st := range m.sortedStreamsLocked() {
		for len(outs) > 0 && outs[0].id < st.id {
			list = append(list, outs[0].info(m, now, false, false))
			outs = outs[1:]
		}
		list = append(list, st.info(m, now, infoOpts{edgePid: true, settings: viewListed}))
	}
	for _, o := range outs {
		list = append(list, o.info(m, now, false, false))
	}
	return success(desc, list)
}

func (m *Member) cmdListStreamsIDs() result {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.streams)+len(m.out.outs) == 0 {
		return success("Available stream IDs", nil)
	}
	ids := make([]uint64, 0, len(m.streams)+len(m.out.outs))
	for _, st := range m.sortedStreamsLocked() {
		ids = append(ids, st.id)
	}
	for id := range m.out.outs {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return success("Available stream IDs", ids)
}

func (m *Member) cmdListInboundStreamNames() result {
	// Written in place into the answer: this listing is made often, and of
	// every stream.
	return success("Inbound local stream names", jfunc(m.appendInboundNames))
}

// appendInboundNames appends the array of listInboundStreamNames entries
// to b, or null when m has no inbound stream (as EMS answers).
func (m *Member) appendInboundNames(b []byte) []byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.streams) == 0 {
		return append(b, "null"...)
	}
	b = slices.Grow(b, 2+len(m.streams)*32)
	b = append(b, '[')
	first := true
	m.eachStreamLocked(func(st *stream) {
		if !first {
			b = append(b, ',')
		}
		first = false
		b = append(b, `{"name":`...)
		b = appendString(b, st.name)
		b = append(b, '}')
	})
	return append(b, ']')
}

// streamSelector is the id-or-localStreamName choice of getStreamInfo,
// isStreamRunning and shutdownStream.
type streamSelector struct {
	id     uint64
	byID   bool
	name   string
	byName bool
}

func selectStream(p *params) (streamSelector, *paramError) {
	var s streamSelector
	id, hasID, perr := p.optUint("id")
	if perr != nil {
		return s, perr
	}
	name, perr := p.optString("localStreamName", "")
	if perr != nil {
		return s, perr
	}
	_, hasName := p.get("localStreamName")
	s = streamSelector{id: id, byID: hasID, name: name, byName: hasName}
	switch {
	case !s.byID && !s.byName:
		return s, &paramError{msg: "id or localStreamName parameters needs to be supplied"}
	case s.byID && s.byName:
		return s, &paramError{msg: "id and localStreamName must not go together, choose only 1"}
	}
	return s, nil
}

func (m *Member) findLocked(s streamSelector) *stream {
	if s.byID {
		return m.streamByID[s.id]
	}
	return m.streams[s.name]
}

func (s streamSelector) notFound() string {
	if s.byID {
		return "Stream 0:" + strconv.FormatUint(s.id, 10) + " not found"
	}
	return "Stream " + s.name + " not found"
}

func (m *Member) cmdGetStreamInfo(p *params) result {
	if p.len() == 0 {
		return failure("Syntax error. No parameters provided")
	}
	sel, perr := selectStream(p)
	if perr != nil {
		return failure(perr.msg)
	}
	now := time.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	st := m.findLocked(sel)
	if st == nil {
		return failure(sel.notFound())
	}
	return success("Stream information", st.info(m, now, infoOpts{settings: viewListed}))
}

func (m *Member) cmdIsStreamRunning(p *params) result {
	if p.len() == 0 {
		return failure("Syntax error. No parameters provided")
	}
	sel, perr := selectStream(p)
	if perr != nil {
		return failure(perr.msg)
	}
	m.mu.Lock()
	running := m.findLocked(sel) != nil
	m.mu.Unlock()
	return success("Stream status:", jobj{{"Running", running}})
}

func (m *Member) cmdShutdownStream(p *params) result {
	if p.len() == 0 {
		return failure("Syntax error. No parameters provided")
	}
	sel, perr := selectStream(p)
	if perr != nil {
		return failure(perr.msg)
	}
	permanently, perr := p.optBool("permanently", true)
	if perr != nil {
		return failure(perr.msg)
	}
	now := time.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	st := m.findLocked(sel)
	if st == nil {
		return failure("Stream no longer available")
	}
	info := st.info(m, now, infoOpts{settings: viewStored})
	data := jobj{
		{"protocolStackInfo", m.protocolStackInfo(st, now, info)},
		{"streamInfo", info},
	}
	switch {
	case st.cfg == nil:
		m.closeStreamLocked(st, now)
	case permanently:
		m.deleteConfigLocked(st.cfg, now)
	default:
		m.disconnectLocked(st.cfg, now)
	}
	return success("Stream closed", data)
}

// protocolStackInfo describes the connection carrying st, in the shape of
// shutdownStream's answer.
func (m *Member) protocolStackInfo(st *stream, now time.Time, info jobj) jobj {
	created := msFloat(st.created)
	query := msFloat(now)
	carrierType, top := "IOHT_TCP_CARRIER", "IR"
	if st.cfg != nil {
		top = "OR"
	}
	id := st.id * 3
	app := jobj{
		{"applicationId", 1}, {"creationTimestamp", created}, {"id", id + 1},
		{"isEnqueueForDelete", false}, {"queryTimestamp", query},
		{"rxInvokes", 0}, {"streams", []jobj{info}}, {"txInvokes", 0}, {"type", top},
	}
	if st.cfg != nil {
		app = append(app, jkv{"serverAgent", st.serverUA})
	}
	return jobj{
		{"carrier", jobj{
			{"farIP", st.farIP}, {"farPort", st.farPort}, {"id", id + 2},
			{"nearIP", m.ip}, {"nearPort", st.nearPort}, {"rx", 0}, {"tx", 0},
			{"type", carrierType},
		}},
		{"stack", []jobj{
			{
				{"applicationId", 0}, {"creationTimestamp", created}, {"id", id},
				{"isEnqueueForDelete", false}, {"queryTimestamp", query}, {"type", "TCP"},
			},
			app,
		}},
	}
}

// configCategories are the listConfig categories of EMS 2.0.
func configCategories() []string {
	return []string{"dash", "hds", "hls", "metalistener", "mss", "process", "pull", "push", "record", "webrtc"}
}

func (m *Member) cmdListConfig() result {
	o := make(jobj, 0, 10)
	for _, cat := range configCategories() {
		if cat == "pull" {
			o = append(o, jkv{cat, jfunc(m.appendListedConfigs)})
		} else {
			o = append(o, jkv{cat, jraw("[]")})
		}
	}
	return success("Run-time configuration", o)
}

// listedStatusSize is about the length of a listConfig entry's status with
// its current and previous states.
const listedStatusSize = 224

// appendListedConfigs appends the array of listConfig entries of m's pull
// configurations, in configId order, to b: written in place into the
// answer, whose buffer is grown once to about its final size.
func (m *Member) appendListedConfigs(b []byte) []byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	// Sorted by the configId held beside each config: a sort that read
	// it through the pointer would wait on memory at every comparison.
	type byID struct {
		id uint64
		c  *pullConfig
	}
	cfgs := make([]byID, 0, len(m.configs))
	size := 2
	for id, c := range m.configs {
		cfgs = append(cfgs, byID{id, c})
		size += len(c.listedBefore) + len(c.listedAfter) + listedStatusSize
	}
	slices.SortFunc(cfgs, func(a, b byID) int { return cmp.Compare(a.id, b.id) })
	b = slices.Grow(b, size)
	b = append(b, '[')
	for i, e := range cfgs {
		if i > 0 {
			b = append(b, ',')
		}
		b = e.c.appendListed(b)
	}
	return append(b, ']')
}

func (m *Member) cmdRemoveConfig(p *params) result {
	if p.len() == 0 {
		return failure("Syntax error. No parameters provided")
	}
	id, _, perr := p.optUint("id")
	if perr != nil {
		return failure(perr.msg)
	}
	group, perr := p.optString("groupName", "")
	if perr != nil {
		return failure(perr.msg)
	}
	if group == "" {
		if group, perr = p.optString("hlsHdsMssGroup", ""); perr != nil {
			return failure(perr.msg)
		}
	}
	if _, perr := p.optBool("removeHlsHdsFiles", false); perr != nil {
		return failure(perr.msg)
	}
	if id == 0 && group == "" {
		return failure("No id nor group name provided")
	}
	if id == 0 {
		// No HLS/HDS/MSS/DASH/process groups are emulated.
		return success("Configuration terminated", nil)
	}
	now := time.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	c := m.configs[id]
	if c == nil {
		return success("Configuration terminated", nil)
	}
	var data any
	if c.stream != nil {
		data = c.set.object(viewStored, nil)
	}
	m.deleteConfigLocked(c, now)
	m.log.Debug("config removed", "config_id", id, "stream", c.set.LocalStreamName)
	return success("Configuration terminated", data)
}

func (m *Member) cmdGetConfigInfo(p *params) result {
	if p.len() == 0 {
		return failure("Syntax error. No parameters provided")
	}
	id, hasID, perr := p.optUint("id")
	if perr != nil {
		return failure(perr.msg)
	}
	if !hasID || id == 0 {
		return failure("Syntax error. Parameter id is invalid")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	c := m.configs[id]
	if c == nil {
		return failure("Config ID not found")
	}
	return success("Configuration Info", c.withStatus())
}
