package emsim

import (
	"bytes"
	"container/heap"
	"context"
	"strconv"
	"time"
)

// Pull status codes, as in the status objects of listConfig and
// PullConfigView.StatusCode.
const (
	StatusStreaming        = 0 // the pulled stream is up.
	StatusConnecting       = 1 // a connection is being made.
	StatusWaitingForStream = 2 // pushes wait for their local stream.
	StatusConnected        = 3 // connected, not yet streaming.
	StatusDisconnected     = 4 // the connection was lost.
	StatusConnectionFailed = 5 // the connection could not be made.
)

func statusDescription(code int) string {
	switch code {
	case StatusStreaming:
		return "Streaming"
	case StatusConnecting:
		return "Connecting"
	case StatusWaitingForStream:
		return "Waiting for stream"
	case StatusConnected:
		return "Connected"
	case StatusDisconnected:
		return "Disconnected"
	case StatusConnectionFailed:
		return "Connection failed"
	}
	return "Unknown"
}

const (
	// retryPeriod is how long a keepAlive pull waits before reconnecting.
	retryPeriod = time.Second
	// connectDelay is how long connecting takes before injected latency.
	connectDelay = 20 * time.Millisecond
	// checkPeriod is how often streaming pulls check their upstream.
	checkPeriod = time.Second
	// pendingRecheck is how soon a connect attempt waiting for upstream
	// data from another process is looked at again.
	pendingRecheck = 50 * time.Millisecond
)

type pullState int

const (
	pullConnecting pullState = iota
	pullStreaming
	pullRetryWait
)

type statusEntry struct {
	code     int
	at       time.Time
	streamID uint64
}

func appendStatusEntry(b []byte, e statusEntry) []byte {
	b = append(b, `{"code":`...)
	b = strconv.AppendInt(b, int64(e.code), 10)
	b = append(b, `,"description":`...)
	b = appendString(b, statusDescription(e.code))
	b = append(b, `,"timestamp":`...)
	b = strconv.AppendInt(b, e.at.Unix(), 10)
	b = append(b, `,"uniqueStreamId":`...)
	b = strconv.AppendUint(b, e.streamID, 10)
	return append(b, '}')
}

// pullConfig is one pull configuration and its connection state. Its fields
// are guarded by the owning member's mutex; set and uri never change.
type pullConfig struct {
	set      *settings
	uri      uriInfo
	srcHost  string // member address when the source is an emulated member
	isMember bool
	// local: the source is a member of this process's Cluster, whose
	// streams closing and going down are announced to every member at
	// once (streamGone, upstreamChanged); the periodic check skips it.
	local   bool
	srcName string // stream name at the source member

	state   pullState
	gen     uint64 // bumped on every state change; stale timers are ignored
	removed bool
	cur     statusEntry
	prev    statusEntry
	hasPrev bool
	stream  *stream
	// pulledAt is when the pullStream that created it was answered; zero
	// for configurations restored from the state file.
	pulledAt time.Time

	listedBefore, listedAfter []byte // listConfig entry around "status"
}

func newPullConfig(set *settings, u uriInfo) *pullConfig {
	c := &pullConfig{set: set, uri: u, srcName: u.document}
	c.srcHost, c.isMember = u.memberHost()
	c.listedBefore, c.listedAfter = splitListed(set)
	return c
}

// splitListed returns what splitAround(set.object(viewListed, nil),
// "status") does, from settings written directly: "status" sorts right
// before "swfUrl", and the only `,"swfUrl":` in the text is that key, since
// quotes inside strings are escaped.
func splitListed(set *settings) (before, after []byte) {
	b := set.appendJSON(nil, viewListed, nil)
	i := bytes.Index(b, []byte(`,"swfUrl":`))
	if i < 0 || b[0] != '{' {
		return splitAround(set.object(viewListed, nil), "status")
	}
	return b[1:i:i], b[i+1 : len(b)-1]
}

// splitAround serializes the members of o into those sorting before key and
// those sorting after it, without braces.
func splitAround(o jobj, key string) (before, after []byte) {
	o = sortedCopy(o)
	for _, kv := range o {
		dst := &before
		if kv.k > key {
			dst = &after
		}
		if len(*dst) > 0 {
			*dst = append(*dst, ',')
		}
		*dst = appendString(*dst, kv.k)
		*dst = append(*dst, ':')
		*dst = appendJSON(*dst, kv.v)
	}
	return before, after
}

func (c *pullConfig) appendStatus(b []byte) []byte {
	b = append(b, `{"current":`...)
	b = appendStatusEntry(b, c.cur)
	if c.hasPrev {
		b = append(b, `,"previous":`...)
		b = appendStatusEntry(b, c.prev)
	}
	return append(b, '}')
}

// appendListed appends the listConfig entry: stored settings with the uri
// as a string, "_callback":null and the status.
func (c *pullConfig) appendListed(b []byte) []byte {
	b = append(b, '{')
	b = append(b, c.listedBefore...)
	if len(c.listedBefore) > 0 {
		b = append(b, ',')
	}
	b = append(b, `"status":`...)
	b = c.appendStatus(b)
	if len(c.listedAfter) > 0 {
		b = append(b, ',')
		b = append(b, c.listedAfter...)
	}
	return append(b, '}')
}

// withStatus returns the stored settings plus status (getConfigInfo).
func (c *pullConfig) withStatus() jobj {
	o := c.set.object(viewStored, nil)
	o = append(o, jkv{"status", jraw(c.appendStatus(nil))})
	return o
}

// dueEntry is a timer of a pull configuration.
type dueEntry struct {
	at  time.Time
	cfg *pullConfig
	gen uint64
}

type dueHeap []dueEntry

func (h dueHeap) Len() int           { return len(h) }
func (h dueHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h dueHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *dueHeap) Push(x any)        { *h = append(*h, x.(dueEntry)) }
func (h *dueHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = dueEntry{}
	*h = old[:len(old)-1]
	return e
}

// setStatusLocked moves the configuration to a new status.
func (m *Member) setStatusLocked(c *pullConfig, code int, now time.Time, streamID uint64) {
	c.prev, c.hasPrev = c.cur, true
	c.cur = statusEntry{code: code, at: now, streamID: streamID}
	m.changedLocked()
}

// scheduleLocked arms the configuration's timer for at.
func (m *Member) scheduleLocked(c *pullConfig, at time.Time) {
	heap.Push(&m.due, dueEntry{at: at, cfg: c, gen: c.gen})
	if m.due[0].cfg == c && m.due[0].gen == c.gen {
		m.wake()
	}
}

func (m *Member) wake() {
	select {
	case m.kick <- struct{}{}:
	default:
	}
}

// requestCheck asks the pull loop to check every streaming pull's upstream
// at once.
func (m *Member) requestCheck() {
	m.pendMu.Lock()
	m.pendAll = true
	m.pendMu.Unlock()
	m.wake()
}

// noteGone asks the pull loop to check the pulls streaming ref.
func (m *Member) noteGone(ref srcRef) {
	m.pendMu.Lock()
	if !m.pendAll {
		m.pendGone = append(m.pendGone, ref)
	}
	m.pendMu.Unlock()
	m.wake()
}

// takePending returns and clears the checks asked for.
func (m *Member) takePending() (all bool, refs []srcRef) {
	m.pendMu.Lock()
	defer m.pendMu.Unlock()
	all, refs = m.pendAll, m.pendGone
	m.pendAll, m.pendGone = false, nil
	return all, refs
}

func (m *Member) connectDelayLocked() time.Duration {
	return connectDelay + m.faults.Latency
}

// addConfigLocked registers a new configuration and starts connecting it.
func (m *Member) addConfigLocked(set *settings, u uriInfo, now time.Time) *pullConfig {
	c := newPullConfig(set, u)
	c.local = c.isMember && m.c.byIP[c.srcHost] != nil
	if !c.local {
		m.remote++
	}
	c.cur = statusEntry{code: StatusConnecting, at: now}
	m.configs[set.ConfigID] = c
	m.configByName[set.LocalStreamName] = c
	if set.ConfigID > m.lastConfigID {
		m.lastConfigID = set.ConfigID
	}
	m.scheduleLocked(c, now.Add(m.connectDelayLocked()))
	if set.persistent() {
		m.c.stateChanged()
	}
	m.changedLocked()
	return c
}

// deleteConfigLocked removes a configuration, closing its stream if any.
func (m *Member) deleteConfigLocked(c *pullConfig, now time.Time) {
	if c.removed {
		return
	}
	if c.stream != nil {
		m.closeStreamLocked(c.stream, now)
		c.stream = nil
	}
	c.removed = true
	c.gen++
	delete(m.configs, c.set.ConfigID)
	if !c.local {
		m.remote--
	}
	if m.configByName[c.set.LocalStreamName] == c {
		delete(m.configByName, c.set.LocalStreamName)
	}
	if c.set.persistent() {
		m.c.stateChanged()
	}
	m.changedLocked()
}

// startStreamLocked completes a successful connection: Connected, then
// Streaming with a new inbound stream, listed before inStreamCreated is
// queued.
func (m *Member) startStreamLocked(c *pullConfig, now time.Time) {
	if _, taken := m.streams[c.set.LocalStreamName]; taken {
		m.failLocked(c, now)
		return
	}
	m.lastStreamID++
	st := &stream{
		id:       m.lastStreamID,
		name:     c.set.LocalStreamName,
		cfg:      c,
		created:  now,
		farIP:    c.uri.ip,
		farPort:  c.uri.port,
		nearPort: ephemeralPort(m.lastStreamID),
		typ:      streamType(c.uri.scheme),
		serverUA: "FMS/3,5,7,7009",
	}
	if c.isMember {
		st.serverUA = emsServerHeader
	}
	m.setStatusLocked(c, StatusConnected, now, 0)
	m.setStatusLocked(c, StatusStreaming, now, st.id)
	c.state = pullStreaming
	c.gen++
	c.stream = st
	m.addStreamLocked(st)
	m.emitLocked("inStreamCreated", st, now)
	m.log.Debug("pull streaming", "stream", st.name, "config_id", c.set.ConfigID, "uri", redactURI(c.set.URI))
}

// failLocked records a failed connection attempt.
func (m *Member) failLocked(c *pullConfig, now time.Time) {
	m.setStatusLocked(c, StatusConnectionFailed, now, 0)
	m.afterLossLocked(c, now)
}

// disconnectLocked closes a streaming (or connecting) pull: Disconnected,
// then a retry a second later (keepAlive) or removal.
func (m *Member) disconnectLocked(c *pullConfig, now time.Time) {
	if c.stream != nil {
		m.closeStreamLocked(c.stream, now)
		c.stream = nil
	}
	m.setStatusLocked(c, StatusDisconnected, now, 0)
	m.afterLossLocked(c, now)
}

func (m *Member) afterLossLocked(c *pullConfig, now time.Time) {
	if !c.set.KeepAlive {
		m.deleteConfigLocked(c, now)
		return
	}
	c.state = pullRetryWait
	c.gen++
	m.scheduleLocked(c, now.Add(retryPeriod))
}

func (m *Member) addStreamLocked(st *stream) {
	m.streams[st.name] = st
	m.byID = append(m.byID, st)
	m.streamByID[st.id] = st
	if c := st.cfg; c != nil && c.isMember {
		ref := srcRef{host: c.srcHost, name: c.srcName}
		set := m.bySource[ref]
		if set == nil {
			set = make(map[*pullConfig]struct{})
			m.bySource[ref] = set
		}
		set[c] = struct{}{}
		m.pullerNoteLocked(c, true)
	}
	m.changedLocked()
}

// closeStreamLocked removes an inbound stream and queues inStreamClosed.
func (m *Member) closeStreamLocked(st *stream, now time.Time) {
	if m.streams[st.name] != st {
		return
	}
	delete(m.streams, st.name)
	delete(m.streamByID, st.id)
	if c := st.cfg; c != nil && c.isMember {
		ref := srcRef{host: c.srcHost, name: c.srcName}
		if set := m.bySource[ref]; set != nil {
			delete(set, c)
			if len(set) == 0 {
				delete(m.bySource, ref)
			}
		}
		m.pullerNoteLocked(c, false)
	}
	m.dropOutsLocked(st.name, now)
	m.emitLocked("inStreamClosed", st, now)
	m.changedLocked()
	m.c.streamGone(srcRef{host: m.ip, name: st.name})
}

func ephemeralPort(id uint64) int { return 32768 + int(id%28000) }

// streamType returns the EMS stream type of an inbound stream pulled over
// scheme.
func streamType(scheme string) string {
	switch scheme {
	case "rtsp", "rtp":
		return "INP"
	case "http", "https", "udp", "tcp", "dstcp", "dsudp", "mpegtsudp", "mpegtstcp":
		return "INT"
	}
	return "INR"
}

// srcRef names a stream on a member.
type srcRef struct {
	host string
	name string
}

// availability of a source stream.
type avail int

const (
	availUnknown avail = iota
	availNo
	availYes
)

type attempt struct {
	cfg *pullConfig
	gen uint64
}

// pullLoop drives the pull configurations of m: connect attempts, retries
// and upstream checks. It returns when ctx is done.
func (m *Member) pullLoop(ctx context.Context) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	nextCheck := time.Now().Add(checkPeriod)
	for {
		m.mu.Lock()
		next := nextCheck
		if len(m.due) > 0 && m.due[0].at.Before(next) {
			next = m.due[0].at
		}
		m.mu.Unlock()
		timer.Reset(time.Until(next))
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case <-m.kick:
		}
		now := time.Now()
		m.runDue(now)
		m.applyServed()
		all, refs := m.takePending()
		if m.checkPending(now, all, refs, !now.Before(nextCheck)) {
			nextCheck = time.Now().Add(checkPeriod)
		}
	}
}

// checkPending runs the checks of streaming pulls asked for (all, or the
// pulls of refs) and, when due, the periodic one, and reports whether it
// ran a check of every pull. The periodic check leaves out pulls from
// this process's own members, whose sources' ends are announced as they
// happen: the announced ones (refs) are checked all the same.
func (m *Member) checkPending(now time.Time, all bool, refs []srcRef, due bool) bool {
	if !all && !due {
		if len(refs) > 0 {
			m.checkStreaming(time.Now(), refs, false)
		}
		return false
	}
	m.mu.Lock()
	m.expireRemoteLocked(now)
	m.mu.Unlock()
	m.checkStreaming(time.Now(), nil, !all)
	if !all && len(refs) > 0 {
		m.checkStreaming(time.Now(), refs, false)
	}
	return true
}

// runDue handles every timer that is due: retry waits turn into connect
// attempts, connect attempts are resolved against their sources.
func (m *Member) runDue(now time.Time) {
	var batch []attempt
	var refs []srcRef
	var since time.Time
	m.mu.Lock()
	for len(m.due) > 0 && !m.due[0].at.After(now) {
		e := heap.Pop(&m.due).(dueEntry)
		c := e.cfg
		if e.gen != c.gen || c.removed {
			continue
		}
		switch c.state {
		case pullRetryWait:
			c.state = pullConnecting
			c.gen++
			m.setStatusLocked(c, StatusConnecting, now, 0)
			m.scheduleLocked(c, now.Add(m.connectDelayLocked()))
		case pullConnecting:
			if !c.isMember {
				if m.extDown[c.set.URI] {
					m.failLocked(c, now)
				} else {
					m.startStreamLocked(c, now)
				}
				continue
			}
			batch = append(batch, attempt{cfg: c, gen: c.gen})
			refs = append(refs, srcRef{host: c.srcHost, name: c.srcName})
			if c.cur.at.After(since) {
				since = c.cur.at
			}
		}
	}
	m.mu.Unlock()
	if len(batch) == 0 {
		return
	}
	// A connect attempt trusts only upstream answers newer than itself.
	res := m.c.availability(refs, since)
	now = time.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	for i, a := range batch {
		c := a.cfg
		if c.gen != a.gen || c.removed {
			continue
		}
		switch res[i] {
		case availYes:
			m.startStreamLocked(c, now)
		case availNo:
			m.failLocked(c, now)
		default:
			c.gen++
			m.scheduleLocked(c, now.Add(pendingRecheck))
		}
	}
}

// checkStreaming closes streaming pulls whose source went away: every
// streaming pull when only is nil (but those of this process's members
// when skipLocal is set), else those pulling one of only.
func (m *Member) checkStreaming(now time.Time, only []srcRef, skipLocal bool) {
	if only == nil {
		defer m.fullChecks.Add(1)
		if !skipLocal {
			defer m.allChecks.Add(1)
		}
	}
	// The buffers are reused: a member streaming 50,000 pulls checks them
	// every second, and growing them anew each time kept the collector
	// busy on the emulator's whole heap.
	m.checkMu.Lock()
	defer m.checkMu.Unlock()
	batch, refs := m.checkBatch[:0], m.checkRefs[:0]
	defer func() {
		clear(batch) // holds no config past the check
		clear(refs)
		m.checkBatch, m.checkRefs = batch[:0], refs[:0]
	}()
	m.mu.Lock()
	switch {
	case only != nil:
		for _, ref := range only {
			for c := range m.bySource[ref] {
				batch = append(batch, attempt{cfg: c, gen: c.gen})
				refs = append(refs, ref)
			}
		}
	case skipLocal && m.remote == 0:
		// Every config pulls from a member of this process.
	default:
		for _, c := range m.configs {
			if c.state != pullStreaming || (skipLocal && c.local) {
				continue
			}
			if !c.isMember {
				if m.extDown[c.set.URI] {
					m.disconnectLocked(c, now)
				}
				continue
			}
			batch = append(batch, attempt{cfg: c, gen: c.gen})
			refs = append(refs, srcRef{host: c.srcHost, name: c.srcName})
		}
	}
	m.mu.Unlock()
	if len(batch) == 0 {
		return
	}
	res := m.c.availability(refs, time.Time{})
	now = time.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	for i, a := range batch {
		c := a.cfg
		if c.gen != a.gen || c.removed || res[i] != availNo {
			continue
		}
		m.disconnectLocked(c, now)
	}
}
