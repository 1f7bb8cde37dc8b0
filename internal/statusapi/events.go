package statusapi

import (
	"bufio"
	"encoding/json"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"time"

	"streamlb/internal/controller"
)

const (
	// DefaultMaxStreams is how many event streams may be open at once
	// by default.
	DefaultMaxStreams = 32
	// heartbeatEvery spaces the comments an idle event stream sends, so
	// that proxies and browsers keep it open and a gone client is noticed.
	heartbeatEvery = 15 * time.Second
	// writeWait is how long one write to an event stream may take before
	// the client is taken for gone.
	writeWait = 10 * time.Second
	// maxEventsLimit bounds limit= of GET /api/v1/events, and is its
	// default.
	maxEventsLimit = 10000
	// streamBatch is how many entries an event stream reads from the
	// journal at a time.
	streamBatch = 500
)

// entryFilter keeps the journal entries of one stream or member (globs,
// path.Match); empty keeps all.
type entryFilter struct {
	stream, member string
}

func (f entryFilter) keep(e controller.Entry) bool {
	return (f.stream == "" || globMatch(f.stream, e.Stream)) && (f.member == "" || globMatch(f.member, e.Member))
}

func globMatch(pattern, s string) bool {
	if !strings.ContainsAny(pattern, `*?[\`) {
		return pattern == s
	}
	ok, _ := path.Match(pattern, s)
	return ok
}

// parseFilter reads stream= and member= of the events routes.
func parseFilter(q url.Values) (entryFilter, *paramError) {
	var f entryFilter
	var err *paramError
	if f.stream, err = globParam(q, "stream"); err != nil {
		return f, err
	}
	f.member, err = globParam(q, "member")
	return f, err
}

// parseSeq reads a sequence number: since= or Last-Event-ID.
func parseSeq(name, s string) (uint64, *paramError) {
	if s == "" {
		return 0, nil
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, &paramError{name, "want a sequence number"}
	}
	return n, nil
}

// events answers GET /api/v1/events?since=SEQ&limit=N[&stream=&member=]:
// a page of the controller's journal, oldest first. Its next is the since
// of the next page; with a filter, the page holds the matching entries of
// the limit entries read.
func (a *API) events(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if err := onlyParams(q, "since", "limit", "stream", "member", "pretty"); err != nil {
		badParam(w, err)
		return
	}
	s, perr := single(q, "since")
	if perr != nil {
		badParam(w, perr)
		return
	}
	since, perr := parseSeq("since", s)
	if perr != nil {
		badParam(w, perr)
		return
	}
	limit, perr := intParam(q, "limit", maxEventsLimit, 1, maxEventsLimit)
	if perr != nil {
		badParam(w, perr)
		return
	}
	f, perr := parseFilter(q)
	if perr != nil {
		badParam(w, perr)
		return
	}
	pretty, perr := boolParam(q, "pretty")
	if perr != nil {
		badParam(w, perr)
		return
	}
	page, _ := a.Controller.Journal(since, limit)
	if f != (entryFilter{}) {
		kept := page.Events[:0]
		for _, e := range page.Events {
			if f.keep(e) {
				kept = append(kept, e)
			}
		}
		page.Events = kept
	}
	if pretty {
		writeJSON(w, http.StatusOK, page)
		return
	}
	writeJSONCompact(w, http.StatusOK, page)
}

// eventStream answers GET /api/v1/events/stream: the journal as
// server-sent events, each entry one "message" event whose id is its
// sequence number and whose data is its JSON. It starts after the
// Last-Event-ID header (a reconnecting browser sends it), else after
// since=, else with the oldest entry kept; stream= and member= filter it.
// A "gap" event says entries were dropped from the journal before they
// could be sent; a comment is sent every 15 seconds while nothing
// happens. It ends when the client goes or the request's context ends.
func (a *API) eventStream(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if err := onlyParams(q, "since", "stream", "member"); err != nil {
		badParam(w, err)
		return
	}
	s, perr := single(q, "since")
	if perr != nil {
		badParam(w, perr)
		return
	}
	name := "since"
	if id := r.Header.Get("Last-Event-ID"); id != "" {
		s, name = id, "Last-Event-ID"
	}
	since, perr := parseSeq(name, s)
	if perr != nil {
		badParam(w, perr)
		return
	}
	f, perr := parseFilter(q)
	if perr != nil {
		badParam(w, perr)
		return
	}
	select {
	case a.streams <- struct{}{}:
		defer func() { <-a.streams }()
	default:
		w.Header().Set("Retry-After", "5")
		writeJSONCompact(w, http.StatusServiceUnavailable, map[string]string{"error": "too many event streams open; retry later"})
		return
	}

	rc := http.NewResponseController(w)
	// The server's read timeout would otherwise end the stream: the
	// request has no body, and a stream is meant to stay open.
	_ = rc.SetReadDeadline(time.Time{})
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	bw := bufio.NewWriterSize(w, 32<<10)
	flush := func() bool {
		_ = rc.SetWriteDeadline(time.Now().Add(writeWait))
		return bw.Flush() == nil && rc.Flush() == nil
	}
	bw.WriteString("retry: 2000\n\n")
	if !flush() {
		return
	}
	beat := time.NewTicker(a.heartbeat)
	defer beat.Stop()
	ctx := r.Context()
	for {
		page, newer := a.Controller.Journal(since, streamBatch)
		if since > page.Next {
			// The balancer restarted since the client's last entry:
			// start over with the new journal.
			since = 0
			continue
		}
		if since > 0 && page.Oldest > since+1 && len(page.Events) > 0 {
			gap, _ := json.Marshal(map[string]uint64{"from": since + 1, "to": page.Oldest - 1})
			bw.WriteString("event: gap\ndata: ")
			bw.Write(gap)
			bw.WriteString("\n\n")
		}
		for _, e := range page.Events {
			if !f.keep(e) {
				continue
			}
			data, err := json.Marshal(e)
			if err != nil {
				continue
			}
			bw.WriteString("id: ")
			bw.WriteString(strconv.FormatUint(e.Seq, 10))
			bw.WriteString("\ndata: ")
			bw.Write(data)
			bw.WriteString("\n\n")
		}
		if len(page.Events) > 0 {
			since = page.Next
			if !flush() {
				return
			}
			if len(page.Events) == streamBatch {
				continue
			}
		}
		select {
		case <-newer:
		case <-beat.C:
			bw.WriteString(": heartbeat\n\n")
			if !flush() {
				return
			}
		case <-ctx.Done():
			return
		}
	}
}
