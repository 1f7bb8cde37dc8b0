package emsim

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"runtime"
	"strconv"
	"time"
)

// serveControl serves the emulator's control routes, which keep answering
// while the member is down:
//
//	POST /_emsim/publish?name=X
//	POST /_emsim/unpublish?name=X
//	POST /_emsim/faults?latency=50ms&error_rate=0.1&api_down=1&down=1 (no parameters: clear)
//	POST /_emsim/external?uri=U&available=0|1
//	POST /_emsim/viewers?name=X&protocol=rtmp|rtsp|hls&count=N (see Member.SetViewers)
//	POST /_emsim/publish?prefix=P&count=N (P0 … PN-1 at once)
//	POST /_emsim/restart (see Member.Restart)
//	POST /_emsim/gc (a garbage collection of the emulator's process, done
//	when it answers: a benchmark clears the emulator's collector out of the
//	window it measures)
//	GET /_emsim/stats (see Member.Stats)
//	GET /_emsim/pulls?since=UNIXNANO (see Member.PullTimes)
//	GET /_emsim/media (the media plane: see serveMedia)
//
// The POST routes answer {"ok":true}, or 400 (409 for a name a pull holds,
// 404 for an unknown stream) with {"ok":false,"error":"..."}.
func (m *Member) serveControl(w http.ResponseWriter, r *http.Request) {
	var err error
	status := http.StatusBadRequest
	switch r.URL.Path {
	case "/_emsim/stats", "/_emsim/pulls":
		m.serveObservation(w, r)
		return
	case "/_emsim/media":
		m.serveMedia(w, r)
		return
	case "/_emsim/publish", "/_emsim/unpublish", "/_emsim/faults", "/_emsim/external", "/_emsim/restart", "/_emsim/viewers", "/_emsim/gc":
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			writeControl(w, http.StatusMethodNotAllowed, errors.New("method not allowed: use POST"))
			return
		}
		q, perr := url.ParseQuery(r.URL.RawQuery)
		if perr != nil {
			writeControl(w, http.StatusBadRequest, fmt.Errorf("query: %w", perr))
			return
		}
		switch r.URL.Path {
		case "/_emsim/publish":
			if q.Has("prefix") {
				var n int
				if n, err = parseCount(q.Get("count")); err == nil {
					_, err = m.PublishMany(q.Get("prefix"), n)
				}
			} else if err = m.Publish(q.Get("name")); errors.Is(err, ErrNameHeldByPull) {
				status = http.StatusConflict
			}
		case "/_emsim/restart":
			m.Restart()
		case "/_emsim/gc":
			runtime.GC()
		case "/_emsim/unpublish":
			err = m.Unpublish(q.Get("name"))
		case "/_emsim/faults":
			var f Faults
			if f, err = parseFaults(q); err == nil {
				m.SetFaults(f)
			}
		case "/_emsim/external":
			err = m.controlExternal(q)
		case "/_emsim/viewers":
			var n int
			if n, err = parseCount(q.Get("count")); err == nil {
				err = m.SetViewers(q.Get("name"), q.Get("protocol"), n)
			}
			switch {
			case errors.Is(err, ErrNoSuchStream):
				status = http.StatusNotFound
			case errors.Is(err, ErrConnectionLimit):
				status = http.StatusConflict
			}
		}
	default:
		status = http.StatusNotFound
		err = fmt.Errorf("unknown control route %s", r.URL.Path)
	}
	if err != nil {
		writeControl(w, status, err)
		return
	}
	writeControl(w, http.StatusOK, nil)
}

// serveObservation answers GET /_emsim/stats (the member's Stats) and
// GET /_emsim/pulls?since=UNIXNANO (its PullTimes).
func (m *Member) serveObservation(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		writeControl(w, http.StatusMethodNotAllowed, errors.New("method not allowed: use GET"))
		return
	}
	var b []byte
	if r.URL.Path == "/_emsim/stats" {
		b = appendStatsJSON(nil, m.ip, m.Stats())
	} else {
		var since time.Time
		if v := r.URL.Query().Get("since"); v != "" {
			ns, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				writeControl(w, http.StatusBadRequest, fmt.Errorf("since %q is not a number of nanoseconds", v))
				return
			}
			since = time.Unix(0, ns)
		}
		b = appendPullTimesJSON(nil, m.PullTimes(since))
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)+1))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(append(b, '\n'))
}

// serveMedia answers GET or POST /_emsim/media with the names of the
// streams m serves to pulls, {"streams":["a","b"]}: the media plane of a
// member, which emulators in other processes check instead of the EMS API.
// The body of a POST is a mediaReport of the pulls another Cluster makes of
// m's streams, which m lists as outbound streams. API faults do not touch
// the route; while m is down its connection is closed unanswered.
func (m *Member) serveMedia(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		w.Header().Set("Allow", "GET, POST")
		writeControl(w, http.StatusMethodNotAllowed, errors.New("method not allowed: use GET or POST"))
		return
	}
	if m.isDown() {
		dropConnection(w)
		return
	}
	if r.Method == http.MethodPost {
		var rep mediaReport
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<20)).Decode(&rep); err != nil || rep.Cluster == "" {
			writeControl(w, http.StatusBadRequest, errors.New("media: the body is not a report of pulls"))
			return
		}
		m.reconcileRemote(rep, time.Now())
	}
	m.mu.Lock()
	if m.faults.Down {
		m.mu.Unlock()
		dropConnection(w)
		return
	}
	b := make([]byte, 0, 16+len(m.streams)*24)
	b = append(b, `{"streams":[`...)
	first := true
	m.eachStreamLocked(func(st *stream) {
		if !first {
			b = append(b, ',')
		}
		first = false
		b = appendString(b, st.name)
	})
	m.mu.Unlock()
	b = append(b, "]}\n"...)
	m.mediaChecks.Add(1)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
}

func (m *Member) controlExternal(q url.Values) error {
	uri := q.Get("uri")
	if uri == "" {
		return errors.New("external: uri is required")
	}
	switch q.Get("available") {
	case "0":
		m.SetExternalAvailable(uri, false)
	case "1":
		m.SetExternalAvailable(uri, true)
	default:
		return errors.New("external: available must be 0 or 1")
	}
	return nil
}

// parseFaults reads latency (a Go duration), error_rate (0 to 1), api_down
// and down (0/1/true/false); parameters left out are zero, so no parameters clear
// every fault.
func parseFaults(q url.Values) (Faults, error) {
	var f Faults
	if v := q.Get("latency"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			return f, fmt.Errorf("faults: latency %q is not a non-negative duration", v)
		}
		f.Latency = d
	}
	if v := q.Get("error_rate"); v != "" {
		x, err := strconv.ParseFloat(v, 64)
		if err != nil || x < 0 || x > 1 {
			return f, fmt.Errorf("faults: error_rate %q is not a number from 0 to 1", v)
		}
		f.ErrorRate = x
	}
	if v := q.Get("api_down"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return f, fmt.Errorf("faults: api_down %q is not a boolean", v)
		}
		f.APIDown = b
	}
	if v := q.Get("down"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return f, fmt.Errorf("faults: down %q is not a boolean", v)
		}
		f.Down = b
	}
	return f, nil
}

func writeControl(w http.ResponseWriter, status int, err error) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	var b []byte
	if err == nil {
		b = appendJSON(b, jobj{{"ok", true}})
	} else {
		b = appendJSON(b, jobj{{"error", err.Error()}, {"ok", false}})
	}
	_, _ = w.Write(append(b, '\n'))
}
