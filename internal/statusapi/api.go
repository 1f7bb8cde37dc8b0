package statusapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strconv"
	"time"

	"streamlb/internal/controller"
)

// Controller is what the status API needs from the balancer.
type Controller interface {
	// Status returns the status document restricted to q.
	Status(q controller.StatusQuery) controller.Status
	// Journal returns up to limit transitions after seq since, and a
	// channel closed when a newer one is recorded.
	Journal(since uint64, limit int) (controller.JournalPage, <-chan struct{})
	Pause(name string) error
	Resume(name string) error
	Ready() <-chan struct{}
}

var _ Controller = (*controller.Controller)(nil)

// API serves the status and events routes of DESIGN.md §4.
//
// The event stream's requests end when their context does: a server
// whose BaseContext is cancelled when it shuts down (as internal/app's
// are) is never held up by an open stream.
type API struct {
	Controller Controller
	Logger     *slog.Logger // nil: discard
	// MaxStreams bounds the event streams open at once; past it, a new
	// one is answered 503. Zero: DefaultMaxStreams.
	MaxStreams int

	heartbeat time.Duration // zero: heartbeatEvery
	streams   chan struct{} // one token per open event stream
}

// Register adds the routes to mux. The state-changing ones (POST) refuse
// cross-site browser requests (see CrossOriginProtection).
func (a *API) Register(mux *http.ServeMux) {
	if a.Logger == nil {
		a.Logger = slog.New(slog.DiscardHandler)
	}
	if a.MaxStreams <= 0 {
		a.MaxStreams = DefaultMaxStreams
	}
	if a.heartbeat <= 0 {
		a.heartbeat = heartbeatEvery
	}
	a.streams = make(chan struct{}, a.MaxStreams)
	protect := CrossOriginProtection()
	mux.HandleFunc("GET /api/v1/status", a.status)
	mux.HandleFunc("GET /api/v1/events", a.events)
	mux.HandleFunc("GET /api/v1/events/stream", a.eventStream)
	mux.Handle("POST /api/v1/members/{name}/pause", protect.Handler(http.HandlerFunc(a.pause)))
	mux.Handle("POST /api/v1/members/{name}/resume", protect.Handler(http.HandlerFunc(a.resume)))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", a.readyz)
}

// statusStates are the values state= takes: the replica states.
var statusStates = []string{
	controller.StatePresent, controller.StateMissing, controller.StatePending, controller.StateFailing,
	controller.StateConflict, controller.StateUnknown, controller.StateUnreplicable,
}

// paramError is a query parameter the route cannot take; it is answered
// 400 with the parameter named.
type paramError struct {
	param, msg string
}

func (e *paramError) Error() string { return e.param + ": " + e.msg }

// badParam answers 400 for err.
func badParam(w http.ResponseWriter, err *paramError) {
	writeJSONCompact(w, http.StatusBadRequest, map[string]string{"error": err.Error(), "parameter": err.param})
}

// onlyParams returns an error naming the first parameter of q not among
// known.
func onlyParams(q url.Values, known ...string) *paramError {
	for k := range q {
		if !slices.Contains(known, k) {
			return &paramError{k, "unknown parameter; this route takes " + fmt.Sprint(known)}
		}
	}
	return nil
}

// single returns the one value of parameter k, or an error when it is
// given more than once.
func single(q url.Values, k string) (string, *paramError) {
	switch vs := q[k]; len(vs) {
	case 0:
		return "", nil
	case 1:
		return vs[0], nil
	}
	return "", &paramError{k, "given more than once"}
}

// boolParam parses parameter k: 1/true or 0/false; absent is false.
func boolParam(q url.Values, k string) (bool, *paramError) {
	s, perr := single(q, k)
	if perr != nil || s == "" {
		return false, perr
	}
	b, err := strconv.ParseBool(s)
	if err != nil {
		return false, &paramError{k, "want 1 or 0"}
	}
	return b, nil
}

// intParam parses parameter k, an integer from lo to hi; absent is def.
func intParam(q url.Values, k string, def, lo, hi int) (int, *paramError) {
	s, perr := single(q, k)
	if perr != nil || s == "" {
		return def, perr
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < lo || n > hi {
		return 0, &paramError{k, fmt.Sprintf("want an integer from %d to %d", lo, hi)}
	}
	return n, nil
}

// globParam returns parameter k, checked to be a valid path.Match
// pattern.
func globParam(q url.Values, k string) (string, *paramError) {
	s, perr := single(q, k)
	if perr != nil {
		return "", perr
	}
	if _, err := path.Match(s, ""); err != nil {
		return "", &paramError{k, "not a valid glob pattern (path.Match)"}
	}
	return s, nil
}

// maxStatusLimit bounds limit= of the status route.
const maxStatusLimit = 100000

// parseStatusQuery reads the parameters of GET /api/v1/status.
func parseStatusQuery(q url.Values) (controller.StatusQuery, bool, *paramError) {
	var sq controller.StatusQuery
	if err := onlyParams(q, "state", "member", "stream", "attention", "limit", "cursor", "pretty"); err != nil {
		return sq, false, err
	}
	var err *paramError
	if sq.State, err = single(q, "state"); err != nil {
		return sq, false, err
	}
	if sq.State != "" && !slices.Contains(statusStates, sq.State) {
		return sq, false, &paramError{"state", fmt.Sprintf("want one of %v", statusStates)}
	}
	if sq.Member, err = single(q, "member"); err != nil {
		return sq, false, err
	}
	if sq.Stream, err = globParam(q, "stream"); err != nil {
		return sq, false, err
	}
	if sq.Attention, err = boolParam(q, "attention"); err != nil {
		return sq, false, err
	}
	if sq.Limit, err = intParam(q, "limit", 0, 0, maxStatusLimit); err != nil {
		return sq, false, err
	}
	if sq.Cursor, err = single(q, "cursor"); err != nil {
		return sq, false, err
	}
	pretty, err := boolParam(q, "pretty")
	if err != nil {
		return sq, false, err
	}
	return sq, pretty, nil
}

// status answers GET /api/v1/status: the whole document with no
// parameters, else the part the query selects.
func (a *API) status(w http.ResponseWriter, r *http.Request) {
	q, pretty, perr := parseStatusQuery(r.URL.Query())
	if perr != nil {
		badParam(w, perr)
		return
	}
	q.Encoding = true // each stream's JSON is kept with its status row
	st := a.Controller.Status(q)
	if q.Member != "" && !slices.ContainsFunc(st.Members, func(m controller.MemberStatus) bool { return m.Name == q.Member }) {
		badParam(w, &paramError{"member", fmt.Sprintf("no member named %q", q.Member)})
		return
	}
	if pretty {
		writeJSON(w, http.StatusOK, st)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	_ = st.WriteJSON(w)
}

func (a *API) readyz(w http.ResponseWriter, _ *http.Request) {
	select {
	case <-a.Controller.Ready():
		writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	default:
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "waiting for the first resync"})
	}
}

func (a *API) pause(w http.ResponseWriter, r *http.Request)  { a.setPaused(w, r, true) }
func (a *API) resume(w http.ResponseWriter, r *http.Request) { a.setPaused(w, r, false) }

func (a *API) setPaused(w http.ResponseWriter, r *http.Request, paused bool) {
	name := r.PathValue("name")
	var err error
	if paused {
		err = a.Controller.Pause(name)
	} else {
		err = a.Controller.Resume(name)
	}
	switch {
	case errors.Is(err, controller.ErrUnknownMember):
		writeJSON(w, http.StatusNotFound, map[string]string{"error": err.Error()})
	case err != nil:
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
	default:
		writeJSON(w, http.StatusOK, map[string]any{"member": name, "paused": paused})
	}
}

// writeJSONCompact writes v as JSON without indentation.
func writeJSONCompact(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// writeJSON writes v as indented JSON.
func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// CrossOriginProtection returns the guard of streamlb's state-changing
// routes: a request that a browser marks as cross-site (Sec-Fetch-Site), or
// whose Origin names another host than the one it was sent to, is answered
// 403 with a JSON error. Safe methods (GET, HEAD, OPTIONS) and requests
// without browser headers (curl, scripts, EMS event sinks) pass.
func CrossOriginProtection() *http.CrossOriginProtection {
	p := http.NewCrossOriginProtection()
	p.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusForbidden, map[string]string{"error": "cross-origin request refused: state-changing routes are not for web pages of other sites"})
	}))
	return p
}
