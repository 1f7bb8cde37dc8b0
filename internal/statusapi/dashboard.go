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
	"net/http"
	"strconv"
	"strings"
	"time"

	"streamlb/internal/controller"
)

// assets holds the dashboard's page template, style sheet, script and icon.
//
//go:embed assets
var assets embed.FS

// maxRows caps the streams shown in the matrix; the filter narrows the
// rest down.
const maxRows = 500

// Dashboard serves the live dashboard: one page, rendered on the server
// from a status snapshot (so its first view needs no script), which a small
// script then keeps current by polling the status and events routes every
// second. The page holds no credential: the snapshot has none.
//
// Set Controller (and optionally Logger), then call Register once. Safe for
// concurrent use once registered.
type Dashboard struct {
	Controller Controller
	Logger     *slog.Logger // nil: discard

	now     func() time.Time // nil: time.Now
	loc     *time.Location   // nil: time.Local
	tmpl    *template.Template
	files   map[string]asset
	journal *journal
}

// asset is one static file of the dashboard.
type asset struct {
	body  []byte
	ctype string
	etag  string
}

// RegisterDashboard adds the dashboard for ctl to mux: the page at
// "GET /", its files under "GET /assets/" and the list of recent events at
// "GET /api/v1/events".
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
	d.journal = &journal{ctl: d.Controller, now: d.now}

	mux.HandleFunc("GET /{$}", d.page)
	mux.HandleFunc("GET /assets/{file}", d.asset)
	mux.HandleFunc("GET /api/v1/events", d.events)
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
	st := d.journal.poll()
	evs, last := d.journal.since(0)
	var buf bytes.Buffer
	if err := d.tmpl.Execute(&buf, d.view(st, evs, last)); err != nil {
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

// eventsAnswer is the JSON of GET /api/v1/events.
type eventsAnswer struct {
	Events []Event `json:"events"` // oldest first
	Last   uint64  `json:"last"`   // seq of the newest event; pass it as ?after= next time
}

func (d *Dashboard) events(w http.ResponseWriter, r *http.Request) {
	var after uint64
	if s := r.URL.Query().Get("after"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "after: want a sequence number"})
			return
		}
		after = n
	}
	d.journal.poll()
	evs, last := d.journal.since(after)
	if evs == nil {
		evs = []Event{}
	}
	writeJSON(w, http.StatusOK, eventsAnswer{Events: evs, Last: last})
}

// The page's view of a snapshot: every string precomputed, so the template
// only places them. dashboard.js computes the same from the status JSON.

type pageView struct {
	Converged    bool
	MembersUp    int
	MembersTotal int
	Sources      int
	Present      int
	Desired      int
	QueueDepth   int
	Resync       string
	Rendered     string
	RenderedISO  string
	Members      []memberView
	Columns      []columnView
	Rows         []rowView
	Hidden       int
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
	Name    string
	Problem bool
	Cells   []cellView
	Count   string
}

type cellView struct {
	Class, Label, Title string
	Warn                bool
}

type eventView struct {
	Clock, ISO, Level, Text string
}

func (d *Dashboard) view(st controller.Status, evs []Event, last uint64) pageView {
	now := d.now()
	v := pageView{
		Converged:    st.Converged,
		MembersTotal: len(st.Members),
		Sources:      len(st.Streams),
		QueueDepth:   st.QueueDepth,
		Resync:       "not yet",
		Rendered:     d.clock(now),
		RenderedISO:  now.UTC().Format(time.RFC3339),
		Conflicts:    st.Conflicts,
		LastSeq:      last,
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
		row := rowView{Name: s.Name}
		present := 0
		for _, r := range s.Replicas {
			v.Desired++
			if r.State == controller.StatePresent {
				present++
			} else {
				row.Problem = true
			}
		}
		v.Present += present
		row.Count = fmt.Sprintf("%d/%d", present, len(s.Replicas))
		if len(v.Rows) >= maxRows {
			v.Hidden++
			continue
		}
		for _, m := range st.Members {
			row.Cells = append(row.Cells, d.cell(s, m, now))
		}
		v.Rows = append(v.Rows, row)
	}
	for i := len(evs) - 1; i >= 0 && len(v.Events) < 100; i-- {
		e := evs[i]
		v.Events = append(v.Events, eventView{Clock: d.clock(e.At), ISO: e.At.UTC().Format(time.RFC3339), Level: e.Level, Text: e.Text})
	}
	return v
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
	case controller.StatePresent, controller.StateMissing, controller.StatePending, controller.StateFailing, controller.StateConflict:
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
