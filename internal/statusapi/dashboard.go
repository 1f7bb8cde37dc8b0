package statusapi

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"streamlb/internal/controller"
)

// assets holds the dashboard's page template, style sheet, script and icon.
//
//go:embed assets
var assets embed.FS

// pageRows is how many streams the matrix shows at a time; the page asks
// the status route for one page (limit and cursor), never the whole group.
const pageRows = 50

// pageEvents is how many journal entries the first view shows.
const pageEvents = 100

// Dashboard serves the live dashboard: one page, rendered on the server
// from one page of the status document (so its first view needs no
// script), which a small script then keeps current: it polls the status
// route for the page it shows, follows the journal over server-sent
// events (GET /api/v1/events/stream) and, when placement is on, reads the
// load route. The page holds no credential: the status has none.
//
// Set Controller (and optionally Logger), then call Register once. Safe for
// concurrent use once registered.
type Dashboard struct {
	Controller Controller
	Logger     *slog.Logger // nil: discard

	now   func() time.Time // nil: time.Now
	loc   *time.Location   // nil: time.Local
	tmpl  *template.Template
	files map[string]asset
}

// asset is one static file of the dashboard.
type asset struct {
	body  []byte
	ctype string
	etag  string
}

// RegisterDashboard adds the dashboard for ctl to mux: the page at
// "GET /" and its files under "GET /assets/". The routes it reads are the
// API's (see API.Register).
func RegisterDashboard(mux *http.ServeMux, ctl Controller) {
	(&Dashboard{Controller: ctl}).Register(mux)
}

// Register adds the dashboard's routes to mux (see RegisterDashboard). It
// panics when the embedded page template is broken, which its tests catch.
func (d *Dashboard) Register(mux *http.ServeMux) {
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	if d.now == nil {
		d.now = time.Now
	}
	if d.loc == nil {
		d.loc = time.Local
	}
	d.tmpl = template.Must(template.New("dashboard.html").ParseFS(assets, "assets/dashboard.html"))
	d.files = make(map[string]asset)
	for name, ctype := range map[string]string{
		"dashboard.css": "text/css; charset=utf-8",
		"dashboard.js":  "text/javascript; charset=utf-8",
		"favicon.svg":   "image/svg+xml",
	} {
		b, err := fs.ReadFile(assets, "assets/"+name)
		if err != nil {
			panic(fmt.Sprintf("dashboard asset %s: %v", name, err))
		}
		sum := sha256.Sum256(b)
		d.files[name] = asset{body: b, ctype: ctype, etag: `"` + hex.EncodeToString(sum[:8]) + `"`}
	}

	mux.HandleFunc("GET /{$}", d.page)
	mux.HandleFunc("GET /assets/{file}", d.asset)
}

// securityHeaders are set on every dashboard answer: the page loads
// nothing but its own files, runs no inline script and cannot be framed.
func securityHeaders(h http.Header) {
	h.Set("Content-Security-Policy", "default-src 'self'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
}

func (d *Dashboard) page(w http.ResponseWriter, _ *http.Request) {
	st := d.Controller.Status(controller.StatusQuery{Attention: true, Limit: pageRows})
	latest, _ := d.Controller.Journal(math.MaxUint64, 1)
	evs, _ := d.Controller.Journal(latest.Next-min(latest.Next, pageEvents), pageEvents)
	var buf bytes.Buffer
	if err := d.tmpl.Execute(&buf, d.view(st, evs)); err != nil {
		d.Logger.Error("render dashboard", "err", err)
		http.Error(w, "cannot render the dashboard", http.StatusInternalServerError)
		return
	}
	securityHeaders(w.Header())
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(buf.Bytes())
}

func (d *Dashboard) asset(w http.ResponseWriter, r *http.Request) {
	a, ok := d.files[r.PathValue("file")]
	if !ok {
		http.NotFound(w, r)
		return
	}
	securityHeaders(w.Header())
	w.Header().Set("Content-Type", a.ctype)
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("ETag", a.etag)
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(a.body))
}

// The page's view of a status page: every string precomputed, so the
// template only places them. dashboard.js computes the same from the
// status JSON.

type pageView struct {
	State        string // converged, converging, needs_attention
	StateLabel   string
	StateClass   string
	MembersUp    int
	MembersTotal int
	Streams      int
	Present      int
	Desired      int
	Attention    int
	QueueDepth   int
	Resync       string
	Rendered     string
	RenderedISO  string
	Members      []memberView
	Columns      []columnView
	Rows         []rowView
	PageNote     string
	NextCursor   string
	Conflicts    []controller.Conflict
	Events       []eventView
	LastSeq      uint64
}

type memberView struct {
	Name, Address, API, State, Latency, LastError string
	Paused                                        bool
}

type columnView struct {
	Name, State string
	Paused      bool
}

type rowView struct {
	Name, History string
	Problem       bool
	Cells         []cellView
	Count         string
}

type cellView struct {
	Class, Label, Title, Reason string
	Warn                        bool
}

type eventView struct {
	Seq                           uint64
	Clock, ISO, Level, Kind, Text string
	Stream, Member                string
}

// stateLabel is how the page names the group's state.
func stateLabel(state string) (label, class string) {
	switch state {
	case "converged":
		return "converged", "ok"
	case "needs_attention":
		return "needs attention", "bad"
	}
	return "converging", "warn"
}

func (d *Dashboard) view(st controller.Status, evs controller.JournalPage) pageView {
	now := d.now()
	v := pageView{
		State:        st.State,
		MembersTotal: len(st.Members),
		Streams:      st.Summary.Streams,
		Attention:    st.Summary.Attention,
		Present:      st.Summary.Replicas[controller.StatePresent],
		QueueDepth:   st.QueueDepth,
		Resync:       "not yet",
		Rendered:     d.clock(now),
		RenderedISO:  now.UTC().Format(time.RFC3339),
		Conflicts:    st.Conflicts,
		NextCursor:   st.NextCursor,
		LastSeq:      evs.Next,
	}
	v.StateLabel, v.StateClass = stateLabel(st.State)
	for _, n := range st.Summary.Replicas {
		v.Desired += n
	}
	for _, m := range st.Members {
		if m.State == controller.MemberUp {
			v.MembersUp++
		}
		v.Members = append(v.Members, memberView{
			Name: m.Name, Address: m.Address, API: m.API, State: m.State,
			Latency: latency(m.LatencyMS), LastError: m.LastError, Paused: m.Paused,
		})
		v.Columns = append(v.Columns, columnView{Name: m.Name, State: m.State, Paused: m.Paused})
	}
	if r := st.LastResync; r != nil {
		v.Resync = fmt.Sprintf("%s (%s ago) · %.0f ms · %d calls", d.clock(r.At), age(now.Sub(r.At)), r.DurationMS, r.Calls)
	}
	for _, s := range st.Streams {
		row := rowView{Name: s.Name, History: "api/v1/events?stream=" + url.QueryEscape(globEscape(s.Name))}
		present := 0
		for _, r := range s.Replicas {
			if r.State == controller.StatePresent {
				present++
			} else {
				row.Problem = true
			}
		}
		row.Count = fmt.Sprintf("%d/%d", present, len(s.Replicas))
		for _, m := range st.Members {
			row.Cells = append(row.Cells, d.cell(s, m, now))
		}
		v.Rows = append(v.Rows, row)
	}
	v.PageNote = pageNote(len(v.Rows), v.Streams, st.NextCursor != "")
	for i := len(evs.Events) - 1; i >= 0; i-- {
		e := evs.Events[i]
		v.Events = append(v.Events, eventView{
			Seq: e.Seq, Clock: d.clock(e.At), ISO: e.At.UTC().Format(time.RFC3339Nano),
			Level: entryLevel(e.Kind), Kind: strings.ReplaceAll(e.Kind, "_", " "), Text: entryText(e),
			Stream: e.Stream, Member: e.Member,
		})
	}
	return v
}

// pageNote says which streams the matrix shows; dashboard.js says the
// same.
func pageNote(shown, total int, more bool) string {
	switch {
	case total == 0:
		return "No source streams on any member yet."
	case shown == 0:
		return "No stream matches."
	case more:
		return fmt.Sprintf("%d streams shown of %d, those needing attention first: the next page has more.", shown, total)
	}
	return fmt.Sprintf("%d streams shown of %d, those needing attention first.", shown, total)
}

// globEscape makes name a path.Match pattern matching name alone.
func globEscape(name string) string {
	var b strings.Builder
	for _, r := range name {
		if strings.ContainsRune(`*?[\`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// entryLevel sorts journal entries for the eye: action (streamlb changed
// the group), info, warn, error.
func entryLevel(kind string) string {
	switch kind {
	case controller.EntryReplicaPulled, controller.EntryReplicaRecovered, controller.EntryReplicaRemoved:
		return "action"
	case controller.EntryReplicaFailing, controller.EntryConflict, controller.EntryUnreplicable:
		return "warn"
	case controller.EntryMemberDown, controller.EntryMemberUnauthorized:
		return "error"
	}
	return "info"
}

// entryText is a journal entry as a sentence; dashboard.js writes the
// same.
func entryText(e controller.Entry) string {
	var s string
	switch e.Kind {
	case controller.EntryReplicaPulled:
		s = e.Stream + " replicated to " + e.Member
		if e.Origin != "" {
			s += " from " + e.Origin
		}
	case controller.EntryReplicaRemoved:
		s = "replica of " + e.Stream + " removed from " + e.Member
	case controller.EntryReplicaFailing:
		s = "replica of " + e.Stream + " failing on " + e.Member
	case controller.EntryReplicaRecovered:
		s = "replica of " + e.Stream + " streaming again on " + e.Member
	case controller.EntrySourceAppeared:
		s = "source " + e.Stream + " appeared on " + e.Member
	case controller.EntrySourceEnded:
		s = "source " + e.Stream + " ended on " + e.Member
	case controller.EntryMemberDown:
		s = e.Member + " is down"
	case controller.EntryMemberUp:
		s = e.Member + " is up"
	case controller.EntryMemberUnauthorized:
		s = e.Member + " refuses the credentials"
	case controller.EntryConflict:
		s = e.Stream + " left alone on " + e.Member + " (conflict)"
	case controller.EntryReload:
		s = "configuration reloaded"
	case controller.EntryUnreplicable:
		s = e.Stream + " cannot be replicated"
	default:
		s = strings.TrimSpace(e.Kind + " " + e.Stream + " " + e.Member)
	}
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	return s
}

// cell describes stream s on member m.
func (d *Dashboard) cell(s controller.StreamStatus, m controller.MemberStatus, now time.Time) cellView {
	var c cellView
	switch r, ok := s.Replicas[m.Name]; {
	case m.Name == s.Origin:
		c = cellView{Class: "cell origin", Label: "origin", Title: s.Name + " is a source on " + m.Name}
	case ok:
		c.Class = "cell st-" + stateClass(r.State)
		c.Label = r.State
		if r.Attempts > 0 {
			c.Label += " (" + strconv.Itoa(r.Attempts) + ")"
		}
		title := []string{r.State + " on " + m.Name}
		if !r.Since.IsZero() {
			title = append(title, "since "+d.clock(r.Since)+" ("+age(now.Sub(r.Since))+")")
		}
		if r.Attempts > 0 {
			title = append(title, strconv.Itoa(r.Attempts)+" attempts")
		}
		if r.Demand {
			title = append(title, "a copy for viewers")
		}
		if r.Reason != "" {
			title = append(title, r.Reason)
			c.Reason = r.Reason
		}
		if r.LastError != "" {
			title = append(title, "last error: "+r.LastError)
			c.Warn = true
		}
		c.Title = strings.Join(title, " · ")
	default:
		c = cellView{Class: "cell none", Label: "—", Title: "no replica wanted on " + m.Name}
	}
	if m.State != controller.MemberUp {
		c.Class += " off"
		c.Title += " · " + m.Name + " is " + m.State
	}
	return c
}

// stateClass bounds the CSS class of a replica state.
func stateClass(s string) string {
	switch s {
	case controller.StatePresent, controller.StateMissing, controller.StatePending, controller.StateFailing,
		controller.StateConflict, controller.StateUnknown, controller.StateUnreplicable:
		return s
	}
	return "other"
}

// latency formats a member's last call latency; 0 (no answer yet) is "—".
func latency(ms float64) string {
	if ms <= 0 {
		return "—"
	}
	return fmt.Sprintf("%.1f ms", ms)
}

func (d *Dashboard) clock(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return t.In(d.loc).Format("15:04:05")
}

// age formats a duration the way the page does: 42s, 5m, 3h, 2d.
func age(dur time.Duration) string {
	s := int64(dur / time.Second)
	switch {
	case s < 0:
		return "0s"
	case s < 60:
		return strconv.FormatInt(s, 10) + "s"
	case s < 3600:
		return strconv.FormatInt(s/60, 10) + "m"
	case s < 86400:
		return strconv.FormatInt(s/3600, 10) + "h"
	}
	return strconv.FormatInt(s/86400, 10) + "d"
}
