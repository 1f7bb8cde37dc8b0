package emsim

import (
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// result is the outcome of one API command.
type result struct {
	ok   bool
	desc string
	data any // nil writes null
}

func success(desc string, data any) result { return result{ok: true, desc: desc, data: data} }
func failure(desc string) result           { return result{desc: desc} }

// bufPool recycles answer buffers: those of most answers, and apart the
// large ones of the listings, so that a resync's listings of tens of
// megabytes each reuse a few buffers instead of leaving one each to the
// collector.
type bufPool struct{ small, large sync.Pool }

// Buffers of more than maxSmallBuf are kept in the large pool, up to
// maxLargeBuf.
const (
	maxSmallBuf = 1 << 20
	maxLargeBuf = 256 << 20
)

// get returns an empty buffer, a large one if one is free and large is set.
func (bp *bufPool) get(large bool) *[]byte {
	if large {
		if b, ok := bp.large.Get().(*[]byte); ok {
			*b = (*b)[:0]
			return b
		}
	}
	if b, ok := bp.small.Get().(*[]byte); ok {
		*b = (*b)[:0]
		return b
	}
	b := make([]byte, 0, 4096)
	return &b
}

func (bp *bufPool) put(b *[]byte) {
	switch c := cap(*b); {
	case c <= maxSmallBuf:
		bp.small.Put(b)
	case c <= maxLargeBuf:
		bp.large.Put(b)
	}
}

// isListing reports whether command (as called) is a listing whose answer
// grows with the member's streams or configurations.
func isListing(command string) bool {
	switch canonicalCommand(strings.ToLower(command)) {
	case "listconfig", "listinboundstreamnames", "liststreams", "listinboundstreams", "liststreamsids":
		return true
	}
	return false
}

// canonicalCommand maps a lowercased command to the command it stands for.
func canonicalCommand(lc string) string {
	switch lc {
	case "listpullpushconfig":
		return "listconfig"
	case "removepullpushconfig":
		return "removeconfig"
	}
	return lc
}

// lastSegment returns the text after the last '/' of p, which EMS takes as
// the command.
func lastSegment(p string) string {
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		return p[i+1:]
	}
	return p
}

// ServeHTTP serves the member's API port: the EMS HTTP API for any path,
// and the emulator's control routes under /_emsim/.
func (m *Member) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !m.c.enter() {
		dropConnection(w)
		return
	}
	defer m.c.leave()
	if r.URL.Path == "/_emsim" || strings.HasPrefix(r.URL.Path, "/_emsim/") {
		m.serveControl(w, r)
		return
	}
	m.serveEMS(w, r, lastSegment(r.URL.Path), r.URL.RawQuery)
}

// dropConnection closes the client connection without an answer.
func dropConnection(w http.ResponseWriter) {
	rc := http.NewResponseController(w)
	conn, _, err := rc.Hijack()
	if err != nil {
		// Not hijackable: answer as unhelpfully as possible.
		w.Header().Set("Connection", "close")
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	_ = conn.Close()
}

// serveEMS answers one EMS API call, applying m's faults.
func (m *Member) serveEMS(w http.ResponseWriter, r *http.Request, command, rawQuery string) {
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		w.Header().Set("Allow", "GET, POST")
		w.Header().Set("Connection", "close")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	f := m.Faults()
	if f.Down || f.APIDown {
		dropConnection(w)
		return
	}
	if f.Latency > 0 {
		t := time.NewTimer(f.Latency)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return
		}
	}
	if f.ErrorRate > 0 && rand.Float64() < f.ErrorRate {
		if !m.c.cfg.KeepAlive {
			w.Header().Set("Connection", "close")
		}
		w.Header().Set("Server", emsServerHeader)
		http.Error(w, "Internal Server Error", http.StatusInternalServerError)
		return
	}
	bp := m.c.bufs.get(isListing(command))
	*bp = m.execute(*bp, command, rawQuery)
	*bp = append(*bp, "\r\n\r\n"...)
	h := w.Header()
	h["Content-Type"] = []string{"text/plain"}
	h["Server"] = []string{emsServerHeader}
	h["Content-Length"] = []string{strconv.Itoa(len(*bp))}
	if !m.c.cfg.KeepAlive {
		h["Connection"] = []string{"close"}
	}
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(*bp)
	m.c.bufs.put(bp)
}

// execute runs one API command and appends its JSON envelope to b.
func (m *Member) execute(b []byte, command, rawQuery string) []byte {
	lc := strings.ToLower(command)
	canon := canonicalCommand(lc)
	p := parseParams(paramsFromRawQuery(rawQuery))
	res, known := m.dispatch(canon, p)
	if !known {
		res = failure("command " + lc + " not known. Type help for list of commands")
	}
	m.calls.inc(canon)
	b = append(b, `{"data":`...)
	if res.ok {
		b = appendJSON(b, res.data)
	} else {
		b = append(b, "null"...)
	}
	b = append(b, `,"description":`...)
	b = appendString(b, res.desc)
	if v, ok := p.get("commandId"); ok {
		b = append(b, `,"responseId":`...)
		b = appendString(b, v.text())
	}
	if res.ok {
		b = append(b, `,"status":"SUCCESS"}`...)
	} else {
		b = append(b, `,"status":"FAIL"}`...)
	}
	return b
}

// dispatch runs the command canon; known is false for unknown commands.
func (m *Member) dispatch(canon string, p *params) (res result, known bool) {
	switch canon {
	case "version":
		return success("Version", jraw(m.c.version)), true
	case "getserverinfo":
		return m.cmdGetServerInfo(), true
	case "pullstream":
		return m.cmdPullStream(p), true
	case "liststreams":
		return m.cmdListStreams("Available streams", true), true
	case "listinboundstreams":
		return m.cmdListStreams("Available inbound streams", false), true
	case "liststreamsids":
		return m.cmdListStreamsIDs(), true
	case "getstreaminfo":
		return m.cmdGetStreamInfo(p), true
	case "isstreamrunning":
		return m.cmdIsStreamRunning(p), true
	case "shutdownstream":
		return m.cmdShutdownStream(p), true
	case "listconfig":
		return m.cmdListConfig(), true
	case "removeconfig":
		return m.cmdRemoveConfig(p), true
	case "getconfiginfo":
		return m.cmdGetConfigInfo(p), true
	case "listinboundstreamnames":
		return m.cmdListInboundStreamNames(), true
	case "getstreamscount":
		m.mu.Lock()
		n := len(m.streams) + len(m.out.outs)
		m.mu.Unlock()
		return success("Active streams count", jobj{{"streamCount", n}}), true
	case "getinboundstreamscount":
		m.mu.Lock()
		n := len(m.streams)
		m.mu.Unlock()
		return success("Inbound stream count", jobj{{"inboundStreamsCount", n}}), true
	case "getconnectionscount":
		m.mu.Lock()
		n := m.connectionsLocked()
		m.mu.Unlock()
		return success("Active connections count", jobj{{"count", n}}), true
	case "getconnectionscountlimit":
		return m.cmdConnectionsCountLimit(p, false), true
	case "setconnectionscountlimit":
		return m.cmdConnectionsCountLimit(p, true), true
	case "clientsconnected":
		return m.cmdClientsConnected(p), true
	case "httpclientsconnected":
		return m.cmdHTTPClientsConnected(p), true
	case "getbandwidth":
		return m.cmdGetBandwidth(), true
	}
	return result{}, false
}
